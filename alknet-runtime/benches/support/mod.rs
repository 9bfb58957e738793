//! Ratios between benchmarks of one criterion run: each of the project's paths against
//! its baseline, read from criterion's own estimates and printed at the end of the run.

use std::path::PathBuf;

/// Where criterion writes its estimates; set on the `Criterion` so this file can read them.
/// It is `criterion` in the target directory this benchmark was built in (the benchmark
/// runs as `TARGET/PROFILE/deps/NAME`), which every crate's benchmarks share.
pub fn output_directory() -> PathBuf {
    let exe = std::env::current_exe().expect("the benchmark knows its own path");
    exe.ancestors()
        .nth(3)
        .expect("the benchmark runs from TARGET/PROFILE/deps")
        .join("criterion")
}

/// The median of `group/bench` in nanoseconds, from this run's estimates.
pub fn median_ns(group: &str, bench: &str) -> Option<f64> {
    let path = output_directory()
        .join(group)
        .join(bench)
        .join("new/estimates.json");
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

/// One line of the ratio table: `path / baseline` against a target (its text, and the
/// ratio it allows), or for reference only; or why it is missing.
pub fn report(group: &str, path: &str, baseline: &str, target: Option<(&str, f64)>) {
    match (median_ns(group, path), median_ns(group, baseline)) {
        (Some(p), Some(b)) => {
            let ratio = p / b;
            let verdict = match target {
                Some((text, within)) if ratio <= within => format!("meets target {text}"),
                Some((text, _)) => format!("MISSES target {text}"),
                None => "for reference, no target".to_string(),
            };
            println!(
                "ratio {group}: {path} {p:.1} ns / {baseline} {b:.1} ns = {ratio:.2}x ({verdict})"
            );
        }
        _ => {
            println!("ratio {group}: {path} / {baseline}: not measured in this run (filtered out?)")
        }
    }
}
