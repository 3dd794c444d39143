//! The shape of the source tree that the review asked to keep (issue 21): the platform
//! adapters and the simulator never name each other, so the simulator can only agree with an
//! adapter through what the platforms document.

use std::path::Path;

/// Every `.rs` file under `dir` (relative to the crate), with its text.
fn sources(dir: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    assert!(!out.is_empty(), "no sources under {dir}");
    out
}

/// Lines of code (not comments) that name `needle`.
fn naming(files: &[(String, String)], needle: &str) -> Vec<String> {
    files
        .iter()
        .flat_map(|(path, text)| {
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim_start().starts_with("//") && l.contains(needle))
                .map(move |(n, l)| format!("{path}:{}: {}", n + 1, l.trim()))
        })
        .collect()
}

#[test]
fn the_adapters_and_the_simulator_never_name_each_other() {
    let adapters = sources("src/platforms");
    let simulator = sources("src/simulator");
    let found = naming(&adapters, "simulator");
    assert!(
        found.is_empty(),
        "src/platforms names the simulator:\n{}",
        found.join("\n")
    );
    let found: Vec<String> = ["crate::platforms", "super::super::platforms", "socialsyncer::platforms"]
        .iter()
        .flat_map(|n| naming(&simulator, n))
        .collect();
    assert!(
        found.is_empty(),
        "src/simulator names the adapters:\n{}",
        found.join("\n")
    );
}
