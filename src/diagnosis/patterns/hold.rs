//! The adaptive hold: a sequential test on a subject's per-point evidence.
//!
//! The fixed hold acts once the rule held at `persistence` of the `for` window's points, however
//! far past its bound the evidence was. The adaptive hold is a one-sided CUSUM: every interval
//! between two points adds its length times the newer point's weight, `clamp(strength - 0.5, 0.5,
//! for / minHold)` (a hot point's strength is 1 at the rule's bound, see the detectors), and a
//! cold point takes away twice its interval. The action is due once the sum reaches `for` and the
//! current run of evidence has held at least `minHold`. So evidence at 1.5 times its bound acts
//! after `for`, as the fixed hold does; at the bound itself after 2 x `for`; at 4.5 times it or more
//! after `minHold`. A short burst at full strength is acted on once it outlasts `minHold`: that
//! bound is the price of speed, and a policy setting.

/// Seconds a cold point takes away per second of its interval.
const COLD_COST: f64 = 2.0;
/// The weight of evidence at the rule's bound: it takes twice `for` to act on.
pub(super) const MARGINAL_WEIGHT: f64 = 0.5;
/// How much more than one step an interval between points may count (a gap is not evidence).
const MAX_GAP_STEPS: f64 = 1.5;

/// The adaptive hold's settings for one fault.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Adaptive {
    /// Evidence (seconds at weight 1) that makes the action due: the fault's `for`.
    pub budget: f64,
    /// Never due before the current run of evidence has held this long.
    pub min_hold: f64,
}

impl Adaptive {
    /// Seconds of history the test may need: evidence at the bound takes 2 x `for`.
    pub fn lookback(&self) -> f64 {
        self.budget / MARGINAL_WEIGHT
    }

    /// The weight of a hot point of this strength.
    fn weight(&self, strength: f64) -> f64 {
        let max = (self.budget / self.min_hold.max(1e-9)).max(MARGINAL_WEIGHT);
        (strength - 0.5).clamp(MARGINAL_WEIGHT, max)
    }
}

/// The outcome of the test over one subject's points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Outcome {
    /// The action is due now.
    pub due: bool,
    /// Evidence gathered, as a share of the budget (1 = due, if held long enough).
    pub share: f64,
    /// How long the current run of evidence has held (seconds; 0 when there is none).
    pub held_for: f64,
    /// Seconds until due if the newest point's strength holds (0 when due).
    pub due_in: Option<f64>,
}

/// Runs the test over `points` (time, `Some(strength)` when the rule holds there, `None` when it
/// does not), in time order, with `step` the evaluation resolution.
pub(super) fn sequential(points: &[(f64, Option<f64>)], step: f64, a: &Adaptive) -> Outcome {
    let mut sum = 0.0_f64;
    let mut run_start: Option<f64> = None;
    let mut prev: Option<f64> = None;
    let mut last_weight = None;
    for &(t, strength) in points {
        let dt = prev.map_or(0.0, |p| (t - p).clamp(0.0, MAX_GAP_STEPS * step));
        prev = Some(t);
        match strength {
            Some(s) => {
                let w = a.weight(s);
                if run_start.is_none() {
                    run_start = Some(t);
                } else {
                    sum += dt * w;
                }
                last_weight = Some(w);
            }
            None => {
                sum = (sum - COLD_COST * dt.max(step)).max(0.0);
                last_weight = None;
                if sum == 0.0 {
                    run_start = None;
                }
            }
        }
    }
    let held_for = match (run_start, prev) {
        (Some(s), Some(p)) => p - s,
        _ => 0.0,
    };
    let due = sum >= a.budget && held_for + 1e-6 >= a.min_hold;
    let due_in = if due {
        Some(0.0)
    } else {
        last_weight.map(|w| ((a.budget - sum) / w).max(a.min_hold - held_for).max(0.0))
    };
    Outcome {
        due,
        share: (sum / a.budget.max(1e-9)).min(1.0),
        held_for,
        due_in,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: f64 = 15.0;

    fn series(from: f64, strengths: &[Option<f64>]) -> Vec<(f64, Option<f64>)> {
        strengths
            .iter()
            .enumerate()
            .map(|(i, s)| (from + i as f64 * STEP, *s))
            .collect()
    }

    fn hold(for_: f64) -> Adaptive {
        Adaptive {
            budget: for_,
            min_hold: for_ / 4.0,
        }
    }

    /// The first point of a run at which the test is due, as seconds after the run began.
    fn due_after(strength: f64, a: &Adaptive) -> Option<f64> {
        let pts = series(0.0, &vec![Some(strength); 40]);
        (1..=pts.len())
            .find(|n| sequential(&pts[..*n], STEP, a).due)
            .map(|n| pts[n - 1].0)
    }

    #[test]
    fn overwhelming_evidence_acts_after_min_hold() {
        let a = hold(60.0);
        assert_eq!(due_after(80.0, &a), Some(15.0));
        assert_eq!(due_after(4.5, &a), Some(15.0));
    }

    #[test]
    fn evidence_at_one_and_a_half_times_its_bound_holds_for_for() {
        assert_eq!(due_after(1.5, &hold(60.0)), Some(60.0));
    }

    #[test]
    fn marginal_evidence_holds_twice_as_long() {
        assert_eq!(due_after(1.0, &hold(60.0)), Some(120.0));
        assert_eq!(hold(60.0).lookback(), 120.0);
    }

    #[test]
    fn the_speed_up_is_bounded_by_min_hold() {
        let a = Adaptive {
            budget: 60.0,
            min_hold: 30.0,
        };
        assert_eq!(due_after(100.0, &a), Some(30.0));
    }

    #[test]
    fn a_burst_shorter_than_min_hold_is_never_due() {
        let a = Adaptive {
            budget: 60.0,
            min_hold: 30.0,
        };
        let mut s = vec![None; 4];
        s.extend([Some(50.0), Some(50.0)]);
        s.extend(vec![None; 10]);
        let pts = series(0.0, &s);
        assert!((1..=pts.len()).all(|n| !sequential(&pts[..n], STEP, &a).due));
    }

    #[test]
    fn a_cold_point_costs_twice_its_interval_and_a_run_of_them_resets() {
        let a = hold(60.0);
        // 3 intervals at weight 1 (45 s), one cold point (-30 s), one more interval: 30 s, not due.
        let s = [Some(1.5), Some(1.5), Some(1.5), Some(1.5), None, Some(1.5)];
        let o = sequential(&series(0.0, &s), STEP, &a);
        assert!(!o.due);
        assert!((o.share - 30.0 / 60.0).abs() < 1e-9, "{o:?}");
        // Two cold points wipe it out and restart the run.
        let s = [Some(1.5), Some(1.5), None, None, Some(1.5)];
        let o = sequential(&series(0.0, &s), STEP, &a);
        assert_eq!((o.share, o.held_for), (0.0, 0.0));
    }

    #[test]
    fn a_gap_in_the_data_is_not_evidence() {
        let a = hold(60.0);
        // Two points 5 minutes apart count one and a half steps, not 300 s.
        let o = sequential(&[(0.0, Some(1.5)), (300.0, Some(1.5))], STEP, &a);
        assert!(!o.due);
        assert!((o.share - 22.5 / 60.0).abs() < 1e-9, "{o:?}");
    }

    #[test]
    fn due_in_projects_the_newest_weight_and_nothing_when_cold() {
        let a = hold(60.0);
        let o = sequential(&series(0.0, &[Some(1.5), Some(1.5)]), STEP, &a);
        assert_eq!(o.due_in, Some(45.0));
        let o = sequential(&series(0.0, &[Some(1.5), Some(1.5), None]), STEP, &a);
        assert_eq!(o.due_in, None);
        assert_eq!(sequential(&[], STEP, &a).share, 0.0);
    }
}
