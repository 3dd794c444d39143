//! Faults: kill -9 in the middle of a sweep, a database locked by another process, a state
//! directory that cannot be written, and key rotation — through the real binary and file.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use socialsyncer::app::AppState;
use socialsyncer::config::Config;
use socialsyncer::domain::{self, Platform};
use socialsyncer::simulator::{Simulator, TokenSpec};
use socialsyncer::store::NewAccount;
use sqlx::SqlitePool;

const BIN: &str = env!("CARGO_BIN_EXE_socialsyncer");

/// Writes a config into `dir` whose platforms are `sim`, and fills its database with `n`
/// accounts, all due.
async fn prepared(dir: &std::path::Path, sim: &Simulator, n: usize, threads: &str) -> std::path::PathBuf {
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://{}/state/db.sqlite\"\n\
         [schedule]\ncron = \"* * * * * *\"\nconcurrency = 50\nbatch_size = 100\n{}",
        dir.display(),
        sim.config_toml(dir)
            .unwrap()
            .replace("[platforms.threads]\n", &format!("[platforms.threads]\n{threads}"))
    );
    let path = dir.join("socialsyncer.toml");
    std::fs::write(&path, &toml).unwrap();
    let state = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    let ws = state.store.ensure_workspace("acme", domain::now()).await.unwrap();
    let accounts: Vec<NewAccount> = (0..n)
        .map(|i| {
            let id = format!("{}", 5_000 + i);
            let spec = TokenSpec::valid(Platform::Threads, &id);
            crate::common::new_account(&state, sim, ws, Platform::Threads, &id, spec).0
        })
        .collect();
    state.store.insert_accounts(&accounts).await.unwrap();
    state.store.close().await;
    path
}

async fn count(db: &SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

async fn wait_for(db: &SqlitePool, sql: &'static str, at_least: i64, limit: Duration) -> i64 {
    let started = Instant::now();
    loop {
        let n = count(db, sql).await;
        if n >= at_least || started.elapsed() > limit {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `socialsyncer serve` on `config`, quiet.
pub(crate) fn serve(config: &std::path::Path) -> std::process::Child {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

const CHECKED: &str = "SELECT COUNT(*) FROM account_health WHERE last_checked_at IS NOT NULL";

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_sweep_loses_nothing_committed_and_the_next_start_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    sim.set_latency(Platform::Threads, Duration::from_millis(20));
    let n = 3000;
    let config = prepared(dir.path(), &sim, n, "rate_limit = 0\n").await;
    let start = || serve(&config);
    let db = SqlitePool::connect(&format!("sqlite://{}/state/db.sqlite", dir.path().display()))
        .await
        .unwrap();

    let mut child = start();
    // Some results are committed, but the sweep is far from done (3000 x 20 ms / 50 = 1.2 s).
    let seen = wait_for(&db, CHECKED, 200, Duration::from_secs(30)).await;
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    assert!(seen >= 200, "the daemon committed results before the kill ({seen})");
    let after_kill = count(&db, CHECKED).await;
    assert!(after_kill >= seen, "nothing committed was lost ({after_kill} < {seen})");
    assert!(after_kill < n as i64, "the kill landed mid-sweep ({after_kill} of {n})");
    let ok: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(ok, "ok");
    let history = count(&db, "SELECT COUNT(*) FROM health_history").await;
    assert!(history >= after_kill, "every committed health row has its history row");

    // The next start picks up where the last one stopped: what was checked before the kill
    // is not checked again (its next check is hours away), the rest is.
    let mut child = start();
    let done = wait_for(&db, CHECKED, n as i64, Duration::from_secs(60)).await;
    let most = count(
        &db,
        "SELECT MAX(c) FROM (SELECT COUNT(*) AS c FROM health_history GROUP BY account_ref)",
    )
    .await;
    assert_eq!(most, 1, "no account was checked twice across the kill and the restart");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(done, n as i64, "every account was checked after the restart");
    assert!(status.success(), "SIGTERM stops cleanly: {status:?}");
    let healthy = count(&db, "SELECT COUNT(*) FROM account_health WHERE health = 'healthy'").await;
    assert_eq!(healthy, n as i64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_locked_by_another_process_delays_writes_without_losing_them() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    let n = 300;
    let config = prepared(dir.path(), &sim, n, "").await;
    let db_path = dir.path().join("state/db.sqlite");
    // The daemon's state first: opening it migrates, which would wait for the lock itself.
    let toml = std::fs::read_to_string(&config).unwrap();
    let state = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    // Another process holds the write lock for 3 s.
    let mut locker = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\ntime.sleep(3)\nc.execute('ROLLBACK')\n",
        )
        .arg(&db_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(locker.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
    }
    let report = socialsyncer::scheduler::sweep(&state.sweeper, &tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.checked, n);
    // The first batch is written within a second of the start and waits for the lock: the
    // time spent writing (not the sweep's, which pacing alone stretches) shows it.
    assert!(
        report.write_time >= Duration::from_secs(2),
        "the writes waited for the lock: {:?}",
        report.write_time
    );
    // Results are written in batches as the paced sweep goes (one at most every 200 ms):
    // neither one at a time nor all at the end.
    assert!(
        (2..=n / 4).contains(&report.batches),
        "{} batches for {n} results",
        report.batches
    );
    locker.wait().unwrap();
    let db = SqlitePool::connect(&format!("sqlite://{}", db_path.display()))
        .await
        .unwrap();
    assert_eq!(
        count(&db, CHECKED).await,
        n as i64,
        "every result was written once the lock was gone"
    );
}

#[test]
fn an_unwritable_state_directory_is_a_clear_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // The state "directory" is a file: nothing can be created in it (root included).
    std::fs::write(dir.path().join("state"), "not a directory").unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}/state/db.sqlite\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Failed to open the database") && err.contains("state/db.sqlite"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_token_key_reseals_every_token() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    let config = prepared(dir.path(), &sim, 5, "").await;
    let new_key = dir.path().join("new.key");
    std::fs::write(&new_key, [9u8; 32]).unwrap();
    crate::common::owner_only(&new_key);
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["rotate-token-key", "--new-key-file"])
        .arg(&new_key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("5 account(s)"));
    // With the new key every token opens and checks fine; with the old one none does.
    let toml = std::fs::read_to_string(&config).unwrap()
        + &format!("[security]\ntoken_key_file = \"{}\"\n", new_key.display());
    let state = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    for a in state.store.all_accounts(None).await.unwrap() {
        let (fresh, _) = socialsyncer::checks::check_and_record(&state.checker, a).await.unwrap();
        assert_eq!(fresh.state.health, domain::Health::Healthy);
    }
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["rotate-token-key", "--new-key-file"])
        .arg(&new_key)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the old key no longer opens the tokens");
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_hears_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    let config = prepared(dir.path(), &sim, 1, "").await;
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).trim().to_owned()
    };
    assert_eq!(recv(), "READY=1");
    assert_eq!(recv(), "WATCHDOG=1", "pings at half of WatchdogSec");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let m = recv();
        if m == "STOPPING=1" {
            break;
        }
        seen.push(m);
        assert!(seen.len() < 10, "no STOPPING=1: {seen:?}");
    }
    assert!(child.wait().unwrap().success());
}

/// Starts `serve` under a file limit of 1,024 (as the unit's LimitNOFILE) and returns it with
/// its API address and the rest of its log lines.
fn serve_with_file_limit(config: &std::path::Path) -> (std::process::Child, String, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 1024 && exec {BIN} --config '{}' serve",
            config.display()
        ))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon did not start");
        };
        if line.contains("socialsyncer is serving") {
            let addr = line
                .split("listen=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned();
            return (child, addr, rx);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_slow_clients_never_take_the_api_down_and_never_hold_up_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    let config = prepared(dir.path(), &sim, 1, "").await;
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "metrics_listen = \"127.0.0.1:0\"\n",
        "metrics_listen = \"127.0.0.1:0\"\nheader_timeout = \"1s\"\nshutdown_timeout = \"2s\"\n",
    );
    std::fs::write(&config, text).unwrap();
    let (mut child, addr, _logs) = serve_with_file_limit(&config);

    // 2,000 connections that never send a byte: twice the file limit.
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&addr)).await {
            Ok(Ok(s)) => idle.push(s),
            _ => break,
        }
    }
    assert_eq!(idle.len(), 2_000, "the backlog takes them all");
    let started = Instant::now();
    let client = reqwest::Client::new();
    let r = client
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("a real request is answered beside 2,000 idle connections");
    assert_eq!(r.status().as_u16(), 200);
    eprintln!(
        "answered after {:?} beside {} idle connections",
        started.elapsed(),
        idle.len()
    );
    // The daemon never ran out of files: it answers again at once.
    let r = client.get(format!("http://{addr}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    drop(idle);

    // Slow clients: headers sent a byte at a time and a request never finished. SIGTERM still
    // stops the daemon within its bound (shutdown_timeout 2 s, header_timeout 1 s).
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let mut body = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut body,
        b"POST /v1/accounts HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nContent-Type: application/json\r\n\r\n{",
    )
    .await
    .unwrap();
    let started = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(8), "stopped in {took:?}");
    drop((slow, body));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_sweep_finishes_the_checks_in_flight_and_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    // 400 checks of 300 ms, 50 at a time: a sweep of about 2.4 s.
    sim.set_latency(Platform::Threads, Duration::from_millis(300));
    let n = 400;
    let config = prepared(dir.path(), &sim, n, "rate_limit = 0\n").await;
    let db = SqlitePool::connect(&format!("sqlite://{}/state/db.sqlite", dir.path().display()))
        .await
        .unwrap();
    let mut child = serve(&config);
    let seen = wait_for(&db, CHECKED, 50, Duration::from_secs(30)).await;
    assert!(seen >= 50, "the sweep is under way ({seen})");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM stops cleanly: {status:?}");
    let checked = count(&db, CHECKED).await;
    assert!(
        checked < n as i64,
        "SIGTERM stopped the sweep taking new accounts ({checked} of {n})"
    );
    // Every request the platform received belongs to a check that finished and was written:
    // the checks in flight at SIGTERM were not dropped.
    assert_eq!(
        checked as u64,
        sim.calls(Platform::Threads),
        "every check the platform answered was written"
    );
}

#[tokio::test]
async fn the_watchdog_is_pinged_only_while_the_database_answers() {
    let app = crate::common::spawn_app().await;
    let pings = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = {
        let pings = pings.clone();
        tokio::spawn(socialsyncer::systemd::watchdog(
            app.state.store.clone(),
            cancel.clone(),
            Duration::from_millis(20),
            move || {
                pings.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            },
        ))
    };
    let load = |p: &std::sync::atomic::AtomicUsize| p.load(std::sync::atomic::Ordering::SeqCst);
    while load(&pings) < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The database goes away: no more pings, however long we wait.
    app.state.store.close().await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    let after = load(&pings);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(load(&pings), after, "pings withheld while the database is dead");
    cancel.cancel();
    task.await.unwrap();
}
