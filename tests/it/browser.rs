//! Connect links in a real browser (issue 23): headless Chromium, driven by
//! `tests/browser/connect.cjs`, opens the links `socialsyncer demo` prints, posts the
//! simulated consents, chooses Facebook Pages on socialsyncer's page and lands on the success
//! page; screenshots at desktop and phone width go to `target/screenshots/`. Chromium and
//! puppeteer-core come from `.ci/browser-tools` (installed there when missing);
//! `SOCIALSYNCER_SKIP_CHROMIUM=1` skips this on purpose, and says so.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_socialsyncer");

/// The demo's output line that ends with `label` and a link.
fn link_after<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default())
        .unwrap_or_else(|| panic!("the demo printed no '{label}' line:\n{out}"))
}

#[test]
fn the_demos_connect_links_work_in_headless_chromium() {
    if crate::common::postgres_pass() {
        return;
    }
    if std::env::var("SOCIALSYNCER_SKIP_CHROMIUM").as_deref() == Ok("1") {
        eprintln!(
            "the_demos_connect_links_work_in_headless_chromium: skipped on purpose: SOCIALSYNCER_SKIP_CHROMIUM=1"
        );
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let tools = Command::new("bash")
        .arg(format!("{root}/.ci/browser-tools"))
        .stderr(Stdio::inherit())
        .output()
        .expect("bash runs");
    assert!(
        tools.status.success(),
        "the browser test needs headless Chromium and puppeteer-core: `bash .ci/browser-tools` \
         installs them (as root: apt-get install chromium; npm for puppeteer-core), or set \
         SOCIALSYNCER_TEST_CHROMIUM; SOCIALSYNCER_SKIP_CHROMIUM=1 skips this test on purpose"
    );
    let tools = String::from_utf8_lossy(&tools.stdout).into_owned();
    let mut lines = tools.lines();
    let (chromium, node_modules) = (lines.next().unwrap().to_owned(), lines.next().unwrap().to_owned());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut demo = Command::new(BIN)
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the demo starts");
    // The demo prints its links, then serves; read until the last link line.
    let mut out = String::new();
    let mut reader = BufReader::new(demo.stdout.take().unwrap());
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        out.push_str(&line);
        if line.contains("Facebook Pages:") {
            break;
        }
    }
    let x = link_after(&out, "an X account:").to_owned();
    let fb = link_after(&out, "Facebook Pages:").to_owned();
    let key = link_after(&out, "API key (workspace \"demo\"):").to_owned();
    let public = x.split("/connect/").next().unwrap().to_owned();
    let shots = format!("{root}/target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let run = Command::new("node")
        .arg(format!("{root}/tests/browser/connect.cjs"))
        .args([&chromium, &x, &fb, &public, &shots])
        .env("NODE_PATH", &node_modules)
        .output()
        .expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    // What the browser did is in the daemon: the X account and the one chosen Page.
    let api = |path: &str| {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {key}"))
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let (x_account, page_1, page_2) = (
        api("/v1/accounts/twitter/4242"),
        api("/v1/accounts/facebook/2000000000000001"),
        api("/v1/accounts/facebook/2000000000000002"),
    );
    let _ = demo.kill();
    let _ = demo.wait();
    assert!(run.status.success(), "{report}");
    for name in ["connect-done", "connect-chooser"] {
        for width in ["desktop", "phone"] {
            let png = std::fs::read(format!("{shots}/{name}-{width}.png")).unwrap_or_default();
            assert!(
                png.starts_with(b"\x89PNG") && png.len() > 5_000,
                "{name}-{width}.png: a screenshot"
            );
        }
    }
    assert_eq!(
        (x_account.as_str(), page_1.as_str(), page_2.as_str()),
        ("200", "404", "200"),
        "the X account and only the chosen Page are stored: {report}"
    );
}
