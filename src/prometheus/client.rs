//! A small Prometheus HTTP API client: instant and range queries with typed errors.

use std::{borrow::Cow, collections::BTreeMap, time::Duration};

use serde::Deserialize;

use super::{Point, Series};

/// How to authenticate to Prometheus.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print credentials.
        match self {
            Self::None => f.write_str("None"),
            Self::Bearer(_) => f.write_str("Bearer(***)"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
        }
    }
}

/// Everything needed to build a client.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URL, e.g. `http://prometheus:9090`.
    pub url: String,
    /// Credentials.
    pub auth: Auth,
    /// Extra CA certificate (PEM) to trust.
    pub ca_pem: Option<Vec<u8>>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// The largest answer read (bytes); a larger one is refused with [`PromError::TooLarge`].
    pub max_body: usize,
}

/// The default cap on one Prometheus answer: 16 MiB, about 50 000 series of 240 points.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;

impl ClientConfig {
    /// An unauthenticated config with a 10 s timeout and a [`DEFAULT_MAX_BODY`] cap.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            auth: Auth::None,
            ca_pem: None,
            timeout: Duration::from_secs(10),
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Why a query gave no data.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// The client could not be built (bad URL, bad CA).
    #[error("invalid Prometheus client configuration: {0}")]
    Config(String),
    /// No connection could be made.
    #[error("Prometheus at {url} is unreachable: {message}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// The transport error.
        message: String,
    },
    /// No answer within the timeout.
    #[error("Prometheus at {url} did not answer within {timeout:?}")]
    Timeout {
        /// The base URL.
        url: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// Prometheus refused the query; `message` is Prometheus' own.
    #[error("Prometheus rejected the query ({error_type}): {message}; query: {query}")]
    Rejected {
        /// Prometheus' error type (`bad_data`, `execution`, `timeout`, ...).
        error_type: String,
        /// Prometheus' error message.
        message: String,
        /// The query sent.
        query: String,
    },
    /// An HTTP error without a Prometheus error body (401, 403, 502 from a proxy, ...).
    #[error("Prometheus at {url} answered HTTP {status}: {body}")]
    Http {
        /// The base URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer was larger than the operator reads.
    #[error(
        "Prometheus at {url} answered more than {cap} bytes (the operator's --prometheus-max-response-bytes); narrow the query or raise the cap; query: {query}"
    )]
    TooLarge {
        /// The base URL.
        url: String,
        /// The cap, in bytes.
        cap: usize,
        /// The query sent.
        query: String,
    },
    /// The answer is incomplete: it says `"isPartial": true` (VictoriaMetrics cluster) or carries
    /// warnings (Thanos' partial responses, a failed remote read). Treated as no data, never as a
    /// complete answer in which a missing series would look healthy.
    #[error(
        "Prometheus at {url} answered incompletely ({what}); treating it as no data; query: {query}"
    )]
    Partial {
        /// The base URL.
        url: String,
        /// `isPartial` and/or the warnings, bounded.
        what: String,
        /// The query sent.
        query: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from Prometheus at {url}: {message}")]
    Decode {
        /// The base URL.
        url: String,
        /// What was wrong.
        message: String,
    },
}

impl PromError {
    /// A bounded category, used as a metric label and condition reason.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Config(_) => "PrometheusConfig",
            Self::Unreachable { .. } => "PrometheusUnreachable",
            Self::Timeout { .. } => "PrometheusTimeout",
            Self::Rejected { .. } => "QueryRejected",
            Self::Http { .. } => "PrometheusHTTPError",
            Self::TooLarge { .. } => "PrometheusAnswerTooLarge",
            Self::Partial { .. } => "PrometheusPartialAnswer",
            Self::Decode { .. } => "PrometheusBadAnswer",
        }
    }

    /// Whether the policy itself is at fault (retrying without a spec change will not help).
    pub fn is_spec_error(&self) -> bool {
        matches!(self, Self::Rejected { error_type, .. } if error_type == "bad_data")
    }
}

/// A Prometheus HTTP API client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PromClient {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    timeout: Duration,
    max_body: usize,
}

/// An answer, read in place: the result stays raw JSON until its type is known, and sample
/// values are borrowed from the body, so decoding allocates the points and labels only (a
/// `serde_json::Value` tree of a 5 MB answer held about eight times its size).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiResponse<'a> {
    status: String,
    #[serde(default, borrow)]
    data: Option<ApiData<'a>>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    /// VictoriaMetrics (cluster) sets it when some storage nodes did not answer.
    #[serde(default)]
    is_partial: Option<bool>,
    /// Prometheus' and Thanos' warnings (remote-read failures, partial responses); may be null.
    #[serde(default)]
    warnings: Option<Vec<String>>,
}

/// Warnings that do not make an answer incomplete: PromQL's informational annotations
/// ("PromQL info: metric might not be a counter, ..."), which some Prometheus versions put into
/// `warnings` instead of `infos`.
const INFO_PREFIX: &str = "PromQL info:";

impl ApiResponse<'_> {
    /// Why the answer is incomplete, if it is.
    fn incomplete(&self) -> Option<String> {
        let warnings: Vec<&str> = self
            .warnings
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|w| !w.starts_with(INFO_PREFIX))
            .collect();
        let partial = self.is_partial == Some(true);
        if !partial && warnings.is_empty() {
            return None;
        }
        let mut what = vec![];
        if partial {
            what.push("isPartial: true".to_string());
        }
        if !warnings.is_empty() {
            what.push(format!(
                "warnings: {}",
                crate::bounded::truncate(&warnings.join("; "), 300)
            ));
        }
        Some(what.join(", "))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiData<'a> {
    result_type: String,
    #[serde(borrow)]
    result: &'a serde_json::value::RawValue,
}

#[derive(Deserialize)]
struct RawSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// A range answer's `[time, "value"]` pairs, each value parsed as it is read: no list of
    /// strings is built first (it took twice the memory of the points, for every point at once).
    #[serde(default)]
    values: Vec<Sample>,
    #[serde(default)]
    value: Option<Sample>,
}

/// One `[time, "value"]` pair of an answer.
#[derive(Deserialize)]
struct Sample(f64, SampleValue);

/// A sample's value, read from its string without keeping the string.
struct SampleValue(f64);

impl<'de> Deserialize<'de> for SampleValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SampleValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sample value as a string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<SampleValue, E> {
                Ok(SampleValue(parse_value(s)))
            }
        }
        d.deserialize_str(V)
    }
}

fn parse_value(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or(f64::NAN),
    }
}

impl PromClient {
    /// Builds a client; fails on a malformed URL or CA.
    pub fn new(cfg: ClientConfig) -> Result<Self, PromError> {
        let base = cfg.url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| PromError::Config(format!("URL {base:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(PromError::Config(format!(
                "URL {base:?}: scheme must be http or https"
            )));
        }
        let mut builder = reqwest::Client::builder()
            // A redirect would send the query (and the credentials' destination) elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("homeostat/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &cfg.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| PromError::Config(format!("CA certificate: {e}")))?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| PromError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            auth: cfg.auth,
            timeout: cfg.timeout,
            max_body: cfg.max_body,
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Evaluates `query` at `time` (unix seconds); returns one single-sample series per result.
    pub async fn instant(&self, query: &str, time: f64) -> Result<Vec<Series>, PromError> {
        let t = format!("{time:.3}");
        self.call("query", query, &[("query", query), ("time", &t)])
            .await
    }

    /// Evaluates `query` over `[start, end]` every `step` seconds.
    pub async fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, PromError> {
        let (s, e, st) = (
            format!("{start:.3}"),
            format!("{end:.3}"),
            format!("{step:.3}"),
        );
        self.call(
            "query_range",
            query,
            &[("query", query), ("start", &s), ("end", &e), ("step", &st)],
        )
        .await
    }

    async fn call(
        &self,
        endpoint: &str,
        query: &str,
        form: &[(&str, &str)],
    ) -> Result<Vec<Series>, PromError> {
        let url = format!("{}/api/v1/{endpoint}", self.base);
        let mut req = self.http.post(&url).form(form);
        req = match &self.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Basic { username, password } => req.basic_auth(username, Some(password)),
        };
        let mut resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let too_large = || PromError::TooLarge {
            url: self.base.clone(),
            cap: self.max_body,
            query: query.to_string(),
        };
        let body = match crate::egress::read_capped(&mut resp, self.max_body).await {
            Ok(Some(b)) => b,
            Ok(None) => return Err(too_large()),
            Err(e) => return Err(self.transport_error(e)),
        };
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("?");
            return Err(PromError::Http {
                url: self.base.clone(),
                status: status.as_u16(),
                body: format!(
                    "redirect to {} not followed",
                    crate::bounded::truncate(to, 200)
                ),
            });
        }
        self.parse(status, &body, query)
    }

    /// Reads an answer body: the series of a complete success, else the error it describes.
    fn parse(
        &self,
        status: reqwest::StatusCode,
        body: &[u8],
        query: &str,
    ) -> Result<Vec<Series>, PromError> {
        match serde_json::from_slice::<ApiResponse>(body) {
            Ok(api) if api.status == "success" => match api.incomplete() {
                Some(what) => Err(PromError::Partial {
                    url: self.base.clone(),
                    what,
                    query: query.to_string(),
                }),
                None => self.decode(api, query),
            },
            Ok(api) => Err(PromError::Rejected {
                error_type: api.error_type.unwrap_or_else(|| "unknown".into()),
                message: api.error.unwrap_or_default(),
                query: query.to_string(),
            }),
            Err(_) if !status.is_success() => Err(PromError::Http {
                url: self.base.clone(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            }),
            Err(e) => Err(PromError::Decode {
                url: self.base.clone(),
                message: e.to_string(),
            }),
        }
    }

    fn decode(&self, api: ApiResponse<'_>, query: &str) -> Result<Vec<Series>, PromError> {
        let bad = |m: String| PromError::Decode {
            url: self.base.clone(),
            message: m,
        };
        let data = api
            .data
            .ok_or_else(|| bad("no data in a success answer".into()))?;
        match data.result_type.as_str() {
            "matrix" | "vector" => {
                let raw: Vec<RawSeries> = serde_json::from_str(data.result.get())
                    .map_err(|e| bad(format!("{e} (query {query})")))?;
                Ok(raw
                    .into_iter()
                    .map(|r| {
                        let mut points: Vec<Point> =
                            r.values.into_iter().map(|Sample(t, v)| (t, v.0)).collect();
                        if let Some(Sample(t, v)) = r.value {
                            points.push((t, v.0));
                        }
                        Series {
                            labels: r.metric,
                            points,
                        }
                    })
                    .collect())
            }
            "scalar" => {
                let (t, v): (f64, Cow<'_, str>) = serde_json::from_str(data.result.get())
                    .map_err(|e| bad(format!("{e} (query {query})")))?;
                Ok(vec![Series {
                    labels: BTreeMap::new(),
                    points: vec![(t, parse_value(&v))],
                }])
            }
            other => Err(bad(format!("result type {other} is not supported"))),
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> PromError {
        if e.is_timeout() {
            PromError::Timeout {
                url: self.base.clone(),
                timeout: self.timeout,
            }
        } else {
            // The source chain carries the useful part ("connection refused").
            let mut message = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                message = format!("{message}: {s}");
                src = s.source();
            }
            PromError::Unreachable {
                url: self.base.clone(),
                message,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_special_values() {
        assert!(parse_value("NaN").is_nan());
        assert_eq!(parse_value("+Inf"), f64::INFINITY);
        assert_eq!(parse_value("-Inf"), f64::NEG_INFINITY);
        assert_eq!(parse_value("1.5e3"), 1500.0);
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(matches!(
            PromClient::new(ClientConfig::new("ftp://x")),
            Err(PromError::Config(_))
        ));
        assert!(matches!(
            PromClient::new(ClientConfig::new("not a url")),
            Err(PromError::Config(_))
        ));
    }

    fn parse(body: &str) -> Result<Vec<Series>, PromError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = PromClient::new(ClientConfig::new("http://127.0.0.1:1")).expect("a client");
        c.parse(reqwest::StatusCode::OK, body.as_bytes(), "up")
    }

    const MATRIX: &str =
        r#""data":{"resultType":"matrix","result":[{"metric":{"pod":"a"},"values":[[1,"1"]]}]}"#;

    /// Values are parsed as they are read, in range and instant answers alike; a value that is not
    /// a string is a decode error, not a panic.
    #[test]
    fn sample_values_decode_in_place() {
        let m = parse(r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"pod":"a"},"values":[[1,"0.5"],[2,"NaN"],[3,"+Inf"],[4,"1e3"],[5,"\u0032"]]}]}}"#)
            .expect("series");
        let p = &m[0].points;
        assert_eq!((p[0], p[3], p[4]), ((1.0, 0.5), (4.0, 1000.0), (5.0, 2.0)));
        assert!(p[1].1.is_nan() && p[2].1 == f64::INFINITY);
        let v = parse(r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[7,"3"]}]}}"#)
            .expect("series");
        assert_eq!(v[0].points, vec![(7.0, 3.0)]);
        let bad = parse(
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[[1,2]]}]}}"#,
        );
        assert!(matches!(bad, Err(PromError::Decode { .. })), "{bad:?}");
    }

    #[test]
    fn a_complete_answer_is_read() {
        let complete = format!(r#"{{"status":"success","isPartial":false,{MATRIX}}}"#);
        assert_eq!(parse(&complete).expect("series").len(), 1);
        // PromQL's informational annotations do not make an answer incomplete.
        let info = format!(
            r#"{{"status":"success",{MATRIX},"warnings":["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"x\""],"infos":["PromQL info: y"]}}"#
        );
        assert_eq!(parse(&info).expect("series").len(), 1);
        let null = format!(r#"{{"status":"success",{MATRIX},"warnings":null,"isPartial":null}}"#);
        assert_eq!(parse(&null).expect("series").len(), 1);
    }

    #[test]
    fn a_partial_or_warned_answer_is_no_data() {
        // VictoriaMetrics cluster: a vmstorage node did not answer.
        let vm = format!(r#"{{"status":"success","isPartial":true,{MATRIX}}}"#);
        // Thanos Query with partial responses on: a store did not answer.
        let thanos = format!(
            r#"{{"status":"success",{MATRIX},"warnings":["receive 10.0.0.3:10901: rpc error: code = Unavailable"]}}"#
        );
        for (body, want) in [(vm, "isPartial: true"), (thanos, "rpc error")] {
            match parse(&body) {
                Err(e @ PromError::Partial { .. }) => {
                    assert!(e.to_string().contains(want), "{e}");
                    assert!(e.to_string().contains("treating it as no data"), "{e}");
                    assert_eq!(e.category(), "PrometheusPartialAnswer");
                    assert!(!e.is_spec_error());
                }
                other => panic!("want Partial for {body}, got {other:?}"),
            }
        }
    }

    #[test]
    fn never_prints_credentials() {
        let a = Auth::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
        assert!(!format!("{:?}", Auth::Bearer("tok".into())).contains("tok"));
    }
}
