//! Robust statistics over small samples: median, MAD, Theil–Sen slope, counter increase.

/// The median of the finite values, or `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The median absolute deviation from the median, scaled by 1.4826 to estimate a standard deviation.
pub fn mad(values: &[f64]) -> Option<f64> {
    let m = median(values)?;
    let dev: Vec<f64> = values
        .iter()
        .filter(|x| x.is_finite())
        .map(|x| (x - m).abs())
        .collect();
    median(&dev).map(|d| d * 1.4826)
}

/// The Theil–Sen slope (median of pairwise slopes) of `(t, v)` points, robust to outliers.
/// Long inputs are thinned to at most `max_points` evenly spaced points first.
pub fn theil_sen(points: &[(f64, f64)], max_points: usize) -> Option<f64> {
    let pts: Vec<(f64, f64)> = thin(points, max_points.max(2))
        .into_iter()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let mut slopes = Vec::with_capacity(pts.len() * (pts.len() - 1) / 2);
    for (i, a) in pts.iter().enumerate() {
        for b in &pts[i + 1..] {
            let dt = b.0 - a.0;
            if dt > 0.0 {
                slopes.push((b.1 - a.1) / dt);
            }
        }
    }
    median(&slopes)
}

/// The fraction of ordered pairs that increase, among pairs that differ (Kendall-style trend strength).
pub fn increasing_pair_fraction(points: &[(f64, f64)], max_points: usize) -> f64 {
    let pts = thin(points, max_points.max(2));
    let (mut up, mut total) = (0usize, 0usize);
    for (i, a) in pts.iter().enumerate() {
        for b in &pts[i + 1..] {
            if b.1 > a.1 {
                up += 1;
                total += 1;
            } else if b.1 < a.1 {
                total += 1;
            }
        }
    }
    if total == 0 {
        0.0
    } else {
        up as f64 / total as f64
    }
}

fn thin(points: &[(f64, f64)], max_points: usize) -> Vec<(f64, f64)> {
    if points.len() <= max_points {
        return points.to_vec();
    }
    let stride = points.len() as f64 / max_points as f64;
    (0..max_points)
        .map(|i| points[((i as f64 * stride) as usize).min(points.len() - 1)])
        .collect()
}

/// The increase of a counter over the points, counting a drop as a reset (the new value is the increase).
/// NaN samples are skipped.
pub fn counter_increase(points: &[(f64, f64)]) -> f64 {
    let mut prev: Option<f64> = None;
    let mut total = 0.0;
    for &(_, v) in points {
        if !v.is_finite() {
            continue;
        }
        if let Some(p) = prev {
            total += if v >= p { v - p } else { v };
        }
        prev = Some(v);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 1.0]), Some(1.0));
        let m = mad(&[1.0, 1.0, 2.0, 2.0, 4.0, 6.0, 9.0]).expect("mad");
        assert!((m - 1.4826).abs() < 1e-9, "{m}");
    }

    #[test]
    fn theil_sen_ignores_an_outlier() {
        let mut pts: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, 2.0 * i as f64)).collect();
        pts[10].1 = 1000.0;
        let s = theil_sen(&pts, 100).expect("slope");
        assert!((s - 2.0).abs() < 1e-9, "{s}");
        assert_eq!(theil_sen(&[(0.0, 1.0)], 10), None);
    }

    #[test]
    fn trend_strength() {
        let up: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, i as f64)).collect();
        assert_eq!(increasing_pair_fraction(&up, 100), 1.0);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 5.0)).collect();
        assert_eq!(increasing_pair_fraction(&flat, 100), 0.0);
    }

    #[test]
    fn counter_increase_handles_resets_and_nan() {
        let pts = [
            (0.0, 5.0),
            (1.0, 7.0),
            (2.0, f64::NAN),
            (3.0, 1.0),
            (4.0, 3.0),
        ];
        // 5→7 (+2), reset to 1 (+1), 1→3 (+2)
        assert_eq!(counter_increase(&pts), 5.0);
        assert_eq!(counter_increase(&[]), 0.0);
    }
}
