//! End-to-end tests of homeostat live in `tests/`; run them with `e2e/run`.
