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

#[test]
fn only_the_composition_root_and_its_callers_take_the_whole_state() {
    let allowed = |path: &str| {
        let rel = path.split("/src/").nth(1).unwrap_or(path);
        rel == "app.rs" || rel == "server.rs" || rel == "demo.rs" || rel.starts_with("cli") || rel.starts_with("bench/")
    };
    let found: Vec<String> = naming(&sources("src"), "AppState")
        .into_iter()
        .filter(|l| !allowed(l.split(':').next().unwrap_or_default()))
        .collect();
    assert!(
        found.is_empty(),
        "an engine takes the whole AppState (give it a context of its own):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_file_import_graph_has_no_cycle_and_no_file_is_over_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(root.join(".ci/imports"))
        .output()
        .expect("python3 runs .ci/imports (install Python 3)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), ".ci/imports refused the graph:\n{said}");
    assert!(said.contains("0 cycle(s)"), "{said}");
    let long: Vec<String> = sources("src")
        .into_iter()
        .filter(|(_, text)| text.lines().count() > 600)
        .map(|(p, text)| format!("{p}: {} lines", text.lines().count()))
        .collect();
    assert!(long.is_empty(), "files over 600 lines:\n{}", long.join("\n"));
}

#[test]
fn the_tests_take_scopes_from_the_documentation_not_from_the_simulator() {
    let needle = ["default", "_scopes"].concat();
    let found = naming(&sources("tests"), &needle);
    assert!(
        found.is_empty(),
        "a test takes its expectation from the simulator (use common::documented_scopes):\n{}",
        found.join("\n")
    );
}

/// Issue 25 item 8: `docs/configuration.md` is what `socialsyncer config reference` prints
/// now: a config key added or redocumented without regenerating it fails here.
#[test]
fn the_configuration_reference_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    let now = socialsyncer::config::reference();
    assert!(
        on_disk == now,
        "docs/configuration.md is stale: regenerate it with `cargo run -q -- config reference > docs/configuration.md`"
    );
    for key in [
        "listen",
        "smtp_url",
        "rate_limit",
        "login_base_url",
        "public_url",
        "default_custody",
    ] {
        assert!(now.contains(&format!("| `{key}` |")), "{key} is in the reference");
    }
}
