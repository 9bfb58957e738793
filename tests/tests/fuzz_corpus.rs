//! Replays every fuzz target's corpus (`fuzz/corpus/TARGET`) and every input that once
//! crashed it (`fuzz/regressions/TARGET`) through the same body libFuzzer runs, on stable:
//! what a fuzzing campaign found stays found. docs/reliability.md says how to run one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use alknet_tests::fuzz::TARGETS;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_every_crash_found_replays_cleanly() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut failures = Vec::new();
    for (name, body) in TARGETS {
        let corpus = inputs(&fuzz.join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name} is empty: the target's seeds are missing"
        );
        let regressions = inputs(&fuzz.join("regressions").join(name));
        for path in corpus.iter().chain(&regressions) {
            let data = std::fs::read(path).unwrap();
            if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
                failures.push(path.display().to_string());
            }
        }
        eprintln!(
            "{name}: {} corpus inputs, {} regressions",
            corpus.len(),
            regressions.len()
        );
    }
    assert!(failures.is_empty(), "inputs that fail: {failures:#?}");
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let targets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets");
    for (name, _) in TARGETS {
        let source = std::fs::read_to_string(targets.join(format!("{name}.rs")))
            .unwrap_or_else(|err| panic!("fuzz/fuzz_targets/{name}.rs: {err}"));
        assert!(
            source.contains(&format!("fuzz::{name}(")),
            "fuzz/fuzz_targets/{name}.rs does not run alknet_tests::fuzz::{name}"
        );
    }
}
