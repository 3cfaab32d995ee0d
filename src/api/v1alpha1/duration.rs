//! A Go-style duration string (`30s`, `2m`, `1h30m`) usable in CRD specs.

use std::{borrow::Cow, fmt, str::FromStr, time::Duration as StdDuration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern the apiserver enforces on every duration field.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// The longest duration accepted, in seconds (about 31 years): the schema refuses what
/// [`Duration::from_str`] would refuse, so an accepted object can always be read back.
pub const DURATION_MAX: u64 = 1_000_000_000;

/// The CEL rule the apiserver enforces on every duration field (Go's `time.ParseDuration`, exact).
const DURATION_RULE: &str = "duration(self) <= duration('1000000000s')";

/// A duration written as `90s`, `2m` or `1h30m`; validated by the CRD schema and parsed on read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Duration(pub StdDuration);

impl Duration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(StdDuration::from_secs(secs))
    }

    /// The wrapped standard duration.
    pub const fn get(self) -> StdDuration {
        self.0
    }

    /// The duration in seconds as a float.
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }
}

/// Why a duration string was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid duration {input:?}: expected a number and a unit (ms, s, m, h), like 30s, 2m or 1h30m"
)]
pub struct ParseDurationError {
    input: String,
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDurationError {
            input: s.to_string(),
        };
        if s.is_empty() {
            return Err(err());
        }
        let mut total = 0.0_f64;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(err)?;
            if num_len == 0 {
                return Err(err());
            }
            let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
            rest = &rest[num_len..];
            let (unit, factor) = if rest.starts_with("ms") {
                ("ms", 0.001)
            } else if rest.starts_with('s') {
                ("s", 1.0)
            } else if rest.starts_with('m') {
                ("m", 60.0)
            } else if rest.starts_with('h') {
                ("h", 3600.0)
            } else {
                return Err(err());
            };
            total += value * factor;
            rest = &rest[unit.len()..];
        }
        if !total.is_finite() || total > DURATION_MAX as f64 {
            return Err(err());
        }
        Ok(Self(StdDuration::from_secs_f64(total)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        if !ms.is_multiple_of(1000) {
            return write!(f, "{ms}ms");
        }
        let mut secs = ms / 1000;
        let h = secs / 3600;
        secs %= 3600;
        let m = secs / 60;
        secs %= 60;
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if secs > 0 {
            write!(f, "{secs}s")?;
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": 32,
            "description": "A duration such as 30s, 2m or 1h30m.",
            "x-kubernetes-validations": [{
                "rule": DURATION_RULE,
                "message": "a duration must be at most 1000000000s (277777h46m40s)"
            }]
        })
    }
}

impl From<StdDuration> for Duration {
    fn from(d: StdDuration) -> Self {
        Self(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        let cases = [
            ("30s", 30_000),
            ("2m", 120_000),
            ("1h30m", 5_400_000),
            ("1.5s", 1_500),
            ("250ms", 250),
        ];
        for (s, ms) in cases {
            let d: Duration = s.parse().expect(s);
            assert_eq!(d.0.as_millis(), ms, "{s}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in ["", "10", "m", "5x", "1h-2m", "s5", "1.2.3s"] {
            assert!(s.parse::<Duration>().is_err(), "{s} should fail");
        }
    }

    #[test]
    fn refuses_what_the_schema_refuses() {
        let max = format!("{DURATION_MAX}s");
        assert!(
            DURATION_RULE.contains(&max),
            "the CEL bound is the parser's"
        );
        assert_eq!(
            max.parse::<Duration>().expect("max").0.as_secs(),
            DURATION_MAX
        );
        assert_eq!(
            "277777h46m40s"
                .parse::<Duration>()
                .expect("max")
                .0
                .as_secs(),
            DURATION_MAX
        );
        for over in [
            "1000000001s",
            "277778h",
            "16666667m",
            "999999999999999999999h",
        ] {
            assert!(over.parse::<Duration>().is_err(), "{over}");
        }
    }

    #[test]
    fn round_trips_through_display() {
        for s in ["30s", "2m", "1h30m", "250ms", "1h", "0s"] {
            let d: Duration = s.parse().expect(s);
            assert_eq!(d.to_string(), s);
        }
    }
}
