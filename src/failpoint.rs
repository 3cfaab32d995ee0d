//! Crash points for resilience tests: with `HOMEOSTAT_FAILPOINT=<name>` the process exits with code 86
//! when it reaches that point, as if killed there. Unset in production: a no-op.

/// The exit code of a failpoint.
pub const EXIT_CODE: i32 = 86;

/// Exits the process if the failpoint `name` is armed.
pub fn hit(name: &str) {
    if std::env::var("HOMEOSTAT_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::warn!(failpoint = name, "failpoint reached: exiting as if killed");
        std::process::exit(EXIT_CODE);
    }
}
