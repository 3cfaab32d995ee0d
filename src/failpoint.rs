//! Crash points for resilience tests: with `HOMEOSTAT_FAILPOINT=<name>` the process exits with code 86
//! when it reaches that point, as if killed there. Unset in production: a no-op.
//!
//! The points of the incident lifecycle (`controller/apply.rs`), in order:
//! `after-opened` (the Remediation exists, no status yet), `after-pending-saved` (the attempt is
//! saved, the action not taken), `after-action` (taken, its outcome not saved),
//! `after-outcome-saved` (verification begins), `before-saving-<Phase>` (a change of an open
//! incident computed, not saved: `before-saving-Verifying`, `-Succeeded`, `-Escalated`, ...).

/// The exit code of a failpoint.
pub const EXIT_CODE: i32 = 86;

/// Exits the process if the failpoint `name` is armed.
pub fn hit(name: &str) {
    if std::env::var("HOMEOSTAT_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::warn!(failpoint = name, "failpoint reached: exiting as if killed");
        std::process::exit(EXIT_CODE);
    }
}

/// Freezes the process (SIGSTOP to itself, as a stalled VM or a long GC pause would) if the
/// failpoint `name` is armed; it goes on where it stopped once something sends SIGCONT. Once per
/// process.
pub fn pause(name: &str) {
    static FIRED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var("HOMEOSTAT_FAILPOINT").is_ok_and(|v| v == name)
        && !FIRED.swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        tracing::warn!(
            failpoint = name,
            "failpoint reached: freezing (SIGSTOP) until SIGCONT"
        );
        let pid = std::process::id().to_string();
        if let Err(e) = std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
        {
            tracing::error!(failpoint = name, error = %e, "cannot freeze: `kill` did not run");
        }
    }
}

/// Exits the process if the failpoint `<step>-<at>` is armed (no allocation when none is).
pub fn hit_at(step: &str, at: &str) {
    if std::env::var("HOMEOSTAT_FAILPOINT").is_ok_and(|v| {
        v.strip_prefix(step)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|rest| rest == at)
    }) {
        tracing::warn!(
            failpoint = step,
            at,
            "failpoint reached: exiting as if killed"
        );
        std::process::exit(EXIT_CODE);
    }
}
