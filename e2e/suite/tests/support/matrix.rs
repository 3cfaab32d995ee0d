//! The fault matrix: each case records one row (fault, expected, observed, verdict) to
//! `$HOMEOSTAT_E2E_LOGS/matrix.rows`; `e2e/run` prints the collected table at the end.

use std::io::Write as _;

/// One row of the matrix, written when the case records what it observed, or as FAIL when the
/// case panics first (a timeout, a failed assertion).
pub struct Case {
    fault: String,
    expected: String,
    written: bool,
    /// For [`Case::asserted`]: what the test's assertions establish, written as PASS when the
    /// test ends without a panic.
    on_success: Option<String>,
}

impl Case {
    /// Starts the case `fault`, whose safe outcome is `expected`.
    pub fn new(fault: &str, expected: &str) -> Self {
        Self {
            fault: fault.to_string(),
            expected: expected.to_string(),
            written: false,
            on_success: None,
        }
    }

    /// A case whose outcome is the test's own assertions: PASS with `observed` (what they
    /// establish) when the test ends, FAIL when one of them panics.
    pub fn asserted(fault: &str, expected: &str, observed: &str) -> Self {
        let mut c = Self::new(fault, expected);
        c.on_success = Some(observed.to_string());
        c
    }

    /// Records what was observed; `pass` says whether it is the expected safe outcome.
    /// Returns `pass`, so the case can assert on it after the row is written.
    pub fn observed(&mut self, observed: &str, pass: bool) -> bool {
        self.write(observed, pass);
        pass
    }

    fn write(&mut self, observed: &str, pass: bool) {
        if self.written {
            return;
        }
        self.written = true;
        let clean = |s: &str| s.replace(['|', '\n'], " ");
        let line = format!(
            "MATRIX | {} | {} | {} | {}\n",
            clean(&self.fault),
            clean(&self.expected),
            clean(observed),
            if pass { "PASS" } else { "FAIL" }
        );
        print!("{line}");
        let Ok(dir) = std::env::var("HOMEOSTAT_E2E_LOGS") else {
            return;
        };
        // One write of a short line to a file opened for append: rows of parallel cases do
        // not interleave.
        let path = std::path::Path::new(&dir).join("matrix.rows");
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(mut f) => {
                if let Err(e) = f.write_all(line.as_bytes()) {
                    eprintln!("matrix row not written to {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("matrix row not written to {}: {e}", path.display()),
        }
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        if self.written {
            return;
        }
        if std::thread::panicking() {
            self.write(
                "the case failed before an outcome (see the test log)",
                false,
            );
        } else if let Some(observed) = self.on_success.take() {
            self.write(&observed, true);
        }
    }
}
