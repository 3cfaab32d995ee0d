//! Parsing of Kubernetes resource quantities ("500m", "1", "512Mi", "1e3", "2G").

/// Parses a Kubernetes quantity string into a plain number (cores for CPU,
/// bytes for memory). Returns `None` for anything that is not a valid,
/// finite, non-negative quantity.
pub fn parse_quantity(raw: &str) -> Option<f64> {
    let s = raw.trim();
    let split = s
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .map_or(s.len(), |(i, _)| i);
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number == "+" || number == "-" {
        return None;
    }
    let base: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "Pi" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "Ei" => 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp.get(1..)?.parse().ok()?;
            10f64.powi(e)
        }
        _ => return None,
    };
    let value = base * multiplier;
    (value.is_finite() && value >= 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::parse_quantity;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
    }

    #[test]
    fn cpu_quantities() {
        assert!(close(parse_quantity("1"), 1.0));
        assert!(close(parse_quantity("500m"), 0.5));
        assert!(close(parse_quantity("0.25"), 0.25));
        assert!(close(parse_quantity("2500m"), 2.5));
        assert!(close(parse_quantity("100000u"), 0.1));
    }

    #[test]
    fn memory_quantities() {
        assert!(close(parse_quantity("512Mi"), 536_870_912.0));
        assert!(close(parse_quantity("1Gi"), 1_073_741_824.0));
        assert!(close(parse_quantity("128974848"), 128_974_848.0));
        assert!(close(parse_quantity("129e6"), 129_000_000.0));
        assert!(close(parse_quantity("123M"), 123_000_000.0));
        assert!(close(parse_quantity("64Ki"), 65_536.0));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_quantity(""), None);
        assert_eq!(parse_quantity("Mi"), None);
        assert_eq!(parse_quantity("12XB"), None);
        assert_eq!(parse_quantity("-1"), None);
        assert_eq!(parse_quantity("1e"), None);
    }
}
