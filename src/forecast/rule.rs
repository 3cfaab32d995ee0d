//! The scaling rule for a forecast: scale out ahead, never in on the forecast alone, within bounds.

/// Replica bounds of the Scale action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Never below this.
    pub min: u32,
    /// Never above this.
    pub max: u32,
}

impl Bounds {
    fn clamp(self, n: u32) -> u32 {
        n.clamp(self.min.min(self.max), self.max)
    }
}

/// What the forecast asks for this sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Leave the replicas as they are, and why.
    Hold(&'static str),
    /// Scale out to `to` replicas; `ahead` when the forecast, not current demand, asks for it.
    ScaleOut {
        /// The target replicas.
        to: u32,
        /// The forecast need exceeds the current need.
        ahead: bool,
    },
}

/// Replicas needed for `demand` at `per_pod` each: `ceil(demand / per_pod)`; `None` on unusable input.
pub fn need(demand: f64, per_pod: f64) -> Option<u32> {
    if !demand.is_finite() || demand < 0.0 || !per_pod.is_finite() || per_pod <= 0.0 {
        return None;
    }
    // Tolerate float noise just above a whole number of pods (4.00001 pods is 4): the model works in f32.
    let n = (demand / per_pod - 1e-4).ceil().max(0.0);
    Some(if n >= u32::MAX as f64 {
        u32::MAX
    } else {
        n as u32
    })
}

/// The rule: target = max(forecast need, current need), bounded by min/max; only ever a scale-out.
///
/// `current_need` is `None` when the current signal is missing or stale: no action then, whatever the
/// forecast says. `forecast_need` is `None` when there is no forecast (short or stale history): the
/// caller's reactive scaling stands alone. The rule never returns fewer replicas than `replicas`.
pub fn decide(
    replicas: u32,
    current_need: Option<u32>,
    forecast_need: Option<u32>,
    bounds: Bounds,
) -> Decision {
    let Some(current) = current_need else {
        return Decision::Hold("the current signal is missing or stale");
    };
    let Some(ahead) = forecast_need else {
        return Decision::Hold("no forecast: reactive scaling only");
    };
    let to = bounds.clamp(ahead.max(current));
    if to <= replicas {
        return Decision::Hold(if ahead < replicas {
            "the forecast is below the current replicas: never scale in on the forecast"
        } else {
            "the replicas already cover the forecast (or the maximum is reached)"
        });
    }
    Decision::ScaleOut {
        to,
        ahead: ahead > current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds { min: 2, max: 10 };

    #[test]
    fn need_is_the_ceiling_of_demand_per_pod() {
        assert_eq!(need(0.0, 10.0), Some(0));
        assert_eq!(need(10.0, 10.0), Some(1));
        assert_eq!(need(10.5, 10.0), Some(2));
        assert_eq!(need(40.000_1, 10.0), Some(4));
        assert_eq!(need(40.01, 10.0), Some(5));
        assert_eq!(need(f64::NAN, 10.0), None);
        assert_eq!(need(5.0, 0.0), None);
        assert_eq!(need(-1.0, 1.0), None);
    }

    #[test]
    fn scales_out_ahead_of_a_forecast_rise() {
        assert_eq!(
            decide(3, Some(3), Some(6), B),
            Decision::ScaleOut { to: 6, ahead: true }
        );
        // Current need above the forecast: the max wins, and it is not "ahead".
        assert_eq!(
            decide(3, Some(7), Some(5), B),
            Decision::ScaleOut {
                to: 7,
                ahead: false
            }
        );
    }

    #[test]
    fn never_scales_in_on_the_forecast() {
        assert!(matches!(decide(8, Some(8), Some(2), B), Decision::Hold(_)));
        assert!(matches!(decide(8, Some(1), Some(1), B), Decision::Hold(_)));
    }

    #[test]
    fn bounded_by_min_and_max() {
        assert_eq!(
            decide(4, Some(4), Some(50), B),
            Decision::ScaleOut {
                to: 10,
                ahead: true
            }
        );
        assert!(matches!(
            decide(10, Some(4), Some(50), B),
            Decision::Hold(_)
        ));
        assert_eq!(
            decide(0, Some(0), Some(1), B),
            Decision::ScaleOut { to: 2, ahead: true }
        );
    }

    #[test]
    fn no_action_without_current_data_or_forecast() {
        assert!(matches!(decide(3, None, Some(9), B), Decision::Hold(r) if r.contains("stale")));
        assert!(matches!(decide(3, Some(3), None, B), Decision::Hold(r) if r.contains("reactive")));
    }
}
