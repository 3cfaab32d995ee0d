//! `e2e/run` names the e2e test binaries it runs (kwok ones many at once, real-node ones a few at
//! once); a test file it does not name would never run, silently. This fails when one is missing.

#[test]
fn every_e2e_test_file_is_run_by_e2e_run() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = std::fs::read_to_string(root.join("e2e/run")).expect("e2e/run");
    let mut missing = vec![];
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("e2e/suite/tests")).expect("e2e/suite/tests") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a UTF-8 file name");
        seen += 1;
        let listed = run
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .any(|w| w[0] == "--test" && w[1] == name);
        if !listed {
            missing.push(name.to_string());
        }
    }
    assert!(seen >= 10, "found only {seen} e2e test files");
    assert!(
        missing.is_empty(),
        "e2e/run does not run {missing:?}: add `--test <name>` to its kwok or real-node cargo test line"
    );
}
