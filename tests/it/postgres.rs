//! PostgreSQL and several daemons on one database: the whole suite on PostgreSQL, work
//! divided by claims, a daemon killed mid-sweep, shared budgets, alerts sent once, and the
//! move of a SQLite database. These need a PostgreSQL server (`.ci/run` starts one and sets
//! `SOCIALSYNCER_TEST_POSTGRES_URL`), or the one the tests start themselves with
//! `.ci/postgres`; `SOCIALSYNCER_SKIP_POSTGRES=1` skips them on purpose, and says so.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use socialsyncer::alerts::deliver;
use socialsyncer::app::AppState;
use socialsyncer::config::Config;
use socialsyncer::domain::{self, Platform};
use socialsyncer::simulator::{Behavior, Simulator, TokenSpec, TokenState};
use socialsyncer::store::NewAccount;
use tokio_util::sync::CancellationToken;

use crate::common::{any_pool, fresh_postgres_database, new_account, postgres_pass, postgres_url};
use crate::smtp::SmtpServer;

const BIN: &str = env!("CARGO_BIN_EXE_socialsyncer");

/// Whether a test cluster is there (the PostgreSQL pass itself runs none of these).
fn have_postgres(test: &str) -> bool {
    if postgres_pass() {
        return false;
    }
    if postgres_url().is_none() {
        eprintln!("{test}: skipped on purpose: SOCIALSYNCER_SKIP_POSTGRES=1");
        return false;
    }
    true
}

/// A daemon's config on database `url` with platforms `sim`, the key file in `dir`;
/// `[platforms.P]` tables in `extra` are merged into the simulator's.
fn config_toml(dir: &std::path::Path, sim: &Simulator, url: &str, extra: &str) -> String {
    let key = dir.join("token.key");
    socialsyncer::crypto::Sealer::load_or_create(&key).unwrap();
    let mut platforms = sim.config_toml(dir).unwrap();
    let mut rest = String::new();
    let mut table: Option<String> = None;
    for line in extra.lines() {
        if line.starts_with('[') {
            table = line.starts_with("[platforms.").then(|| format!("{line}\n"));
            if table.is_none() {
                rest.push_str(line);
                rest.push('\n');
            }
        } else if let Some(t) = &table {
            platforms = platforms.replace(t.as_str(), &format!("{t}{line}\n"));
        } else {
            rest.push_str(line);
            rest.push('\n');
        }
    }
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"\"\n[database]\nurl = \"{url}\"\n\
         [security]\ntoken_key_file = \"{}\"\n{rest}\n{platforms}",
        key.display()
    )
}

/// `n` Threads accounts, all due, registered through the store; their access tokens.
async fn fill(state: &AppState, sim: &Simulator, n: usize) -> Vec<String> {
    let ws = state.store.ensure_workspace("acme", domain::now()).await.unwrap();
    let (accounts, tokens): (Vec<NewAccount>, Vec<String>) = (0..n)
        .map(|i| {
            let id = format!("{}", 5_000 + i);
            new_account(
                state,
                sim,
                ws,
                Platform::Threads,
                &id,
                TokenSpec::valid(Platform::Threads, &id),
            )
        })
        .unzip();
    state.store.insert_accounts(&accounts).await.unwrap();
    tokens
}

#[test]
fn the_suite_passes_on_postgresql() {
    if !have_postgres("the_suite_passes_on_postgresql") {
        return;
    }
    // The same integration tests, run again by this binary with the PostgreSQL backend: every
    // test that starts an app gets a fresh PostgreSQL database instead of a SQLite file. The
    // CLI and fault tests drive SQLite files and processes of their own and are not repeated.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--skip", "cli::", "--skip", "faults::", "--skip", "postgres::"])
        .env("SOCIALSYNCER_TEST_BACKEND", "postgres")
        // The same cluster, whether .ci/run or this process started it.
        .env("SOCIALSYNCER_TEST_POSTGRES_URL", postgres_url().unwrap())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("test result:"))
        .unwrap_or("");
    eprintln!("PostgreSQL pass: {summary}");
    assert!(
        out.status.success(),
        "the suite fails on PostgreSQL:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: usize = summary
        .split_whitespace()
        .zip(summary.split_whitespace().skip(1))
        .find(|(_, w)| *w == "passed;")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 50, "the PostgreSQL pass ran the suite ({summary})");
}

/// Exactly once comes from the claims: a claim statement re-checks `claimed_until` on every
/// row it takes, so a row a peer claimed meanwhile is passed over (this holds with a plain
/// `FOR UPDATE` too; what `SKIP LOCKED` adds is tested below).
#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_check_each_due_account_exactly_once_per_round() {
    if !have_postgres("two_daemons_check_each_due_account_exactly_once_per_round") {
        return;
    }
    let url = fresh_postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    sim.set_latency(Platform::Threads, Duration::from_millis(5));
    let toml = config_toml(
        dir.path(),
        &sim,
        &url,
        "[schedule]\ncron = \"\"\nconcurrency = 40\nbatch_size = 200\n[platforms.threads]\nrate_limit = 0",
    );
    let a = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    let b = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    let n = 2_000;
    let tokens = fill(&a, &sim, n).await;
    // Both daemons' cron fire together: two sweeps over the same due accounts at once.
    let cancel = CancellationToken::new();
    let (ra, rb) = tokio::join!(
        socialsyncer::scheduler::sweep(&a.sweeper, &cancel),
        socialsyncer::scheduler::sweep(&b.sweeper, &cancel)
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.checked + rb.checked, n, "{ra:?} {rb:?}");
    assert!(
        ra.checked > 0 && rb.checked > 0,
        "both daemons took work: {} and {}",
        ra.checked,
        rb.checked
    );
    // The platform saw each token exactly once.
    assert_eq!(sim.calls(Platform::Threads), n as u64);
    let twice: Vec<&String> = tokens.iter().filter(|t| sim.calls_with(t) != 1).collect();
    assert!(twice.is_empty(), "{} tokens were not checked exactly once", twice.len());
    let db = any_pool(&url).await;
    let most: i64 =
        sqlx::query_scalar("SELECT MAX(c) FROM (SELECT COUNT(*) AS c FROM health_history GROUP BY account_ref) x")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(most, 1);
    let claimed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM account_health WHERE claimed_until IS NOT NULL")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(claimed, 0, "every claim was released with its result");
    // A second round finds nothing due.
    let again = socialsyncer::scheduler::sweep(&b.sweeper, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(again.checked, 0);
    a.store.close().await;
    b.store.close().await;
}

/// `SKIP LOCKED`: a daemon claiming due accounts is not held behind the rows a peer's claim
/// statement has locked; it takes the others at once, and none of the locked ones.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_is_not_held_behind_the_page_a_peer_is_claiming() {
    if !have_postgres("a_daemon_is_not_held_behind_the_page_a_peer_is_claiming") {
        return;
    }
    use sqlx::Connection;
    let url = fresh_postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    let toml = config_toml(dir.path(), &sim, &url, "[schedule]\ncron = \"\"");
    let b = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    fill(&b, &sim, 100).await;
    // The peer's claim statement, caught mid-way: the first 50 due rows locked in an open
    // transaction.
    let mut peer = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut tx = peer.begin().await.unwrap();
    let locked: Vec<i64> = sqlx::query_scalar(
        "SELECT account_ref FROM account_health ORDER BY next_check_at, account_ref LIMIT 50 FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    assert_eq!(locked.len(), 50);
    let claim = socialsyncer::store::Claim {
        holder: "b",
        now: domain::now() + 60,
        lease: 300,
    };
    let page = tokio::time::timeout(
        Duration::from_secs(5),
        b.store
            .due_accounts(Platform::Threads, domain::now() + 60, None, 100, &claim),
    )
    .await
    .expect("the claim is not held behind the rows the peer has locked")
    .unwrap();
    let got: Vec<i64> = page.accounts.iter().map(|(a, _)| a.id.0).collect();
    assert_eq!(got.len(), 50, "the unlocked half is claimed");
    assert!(got.iter().all(|id| !locked.contains(id)), "no locked row is claimed");
    tx.rollback().await.unwrap();
    b.store.close().await;
}

/// A claim whose daemon stopped beating is taken over at once, not when its lease runs out
/// (15 minutes by default); a claim of a daemon that beats is left alone, and so is one of a
/// claimant without a heartbeat row (it never beat: its lease decides).
#[tokio::test(flavor = "multi_thread")]
async fn the_claims_of_a_daemon_that_stopped_beating_are_taken_over_before_their_lease_ends() {
    if !have_postgres("the_claims_of_a_daemon_that_stopped_beating_are_taken_over_before_their_lease_ends") {
        return;
    }
    let url = fresh_postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    let toml = config_toml(dir.path(), &sim, &url, "[schedule]\ncron = \"\"");
    let b = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    fill(&b, &sim, 30).await;
    let db = any_pool(&url).await;
    // Three peers claimed ten accounts each for 15 minutes: one beats now, one last beat a
    // minute ago, one never wrote a heartbeat.
    let now = domain::now();
    for (id, beat) in [("alive-1-aa", Some(0)), ("dead-2-bb", Some(60)), ("gone-3-cc", None)] {
        if let Some(ago) = beat {
            sqlx::query("INSERT INTO instances (id, started_at, heartbeat_at) VALUES ($1, $2, unixepoch() - $3)")
                .bind(id)
                .bind(now - 600)
                .bind(ago)
                .execute(&db)
                .await
                .unwrap();
        }
        sqlx::query(
            "UPDATE account_health SET claimed_until = unixepoch() + 900, claimed_by = $1 WHERE account_ref IN \
             (SELECT account_ref FROM account_health WHERE claimed_by IS NULL ORDER BY account_ref LIMIT 10)",
        )
        .bind(format!("{id}/sweep/00"))
        .execute(&db)
        .await
        .unwrap();
    }
    let claim = socialsyncer::store::Claim {
        holder: "b/sweep/01",
        now: domain::now() + 60,
        lease: 300,
    };
    let page = b
        .store
        .due_accounts(Platform::Threads, domain::now() + 60, None, 100, &claim)
        .await
        .unwrap();
    assert_eq!(page.accounts.len(), 10, "the dead peer's accounts are taken");
    assert_eq!(page.taken_over, 10);
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT claimed_by FROM account_health WHERE claimed_by <> 'b/sweep/01' ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(
        left,
        ["alive-1-aa/sweep/00", "gone-3-cc/sweep/00"],
        "the live peer and the one that never beat keep their claims"
    );
    b.store.close().await;
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `socialsyncer serve` with `toml` on `port`.
fn serve(dir: &std::path::Path, name: &str, toml: &str, port: u16) -> std::process::Child {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml.replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))).unwrap();
    crate::faults::serve(&path)
}

async fn get_text(port: u16, path: &str) -> Option<String> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await.ok()?;
    r.text().await.ok()
}

/// The value of an unlabelled metric in a scrape.
fn metric(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_killed_mid_sweep_leaves_claims_that_its_peer_takes_over() {
    if !have_postgres("a_daemon_killed_mid_sweep_leaves_claims_that_its_peer_takes_over") {
        return;
    }
    let url = fresh_postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start_in_thread().unwrap();
    sim.set_latency(Platform::Threads, Duration::from_millis(20));
    let toml = config_toml(
        dir.path(),
        &sim,
        &url,
        "[schedule]\ncron = \"* * * * * *\"\nconcurrency = 20\nbatch_size = 100\nclaim_lease = \"4s\"\n\
         [platforms.threads]\nrate_limit = 0",
    );
    let n = 3_000;
    {
        let setup = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
        fill(&setup, &sim, n).await;
        setup.store.close().await;
    }
    let db = any_pool(&url).await;
    let checked = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM account_health WHERE last_checked_at IS NOT NULL")
            .fetch_one(&db)
            .await
            .unwrap()
    };
    let (pa, pb) = (free_port(), free_port());
    let mut a = serve(dir.path(), "a", &toml, pa);
    let mut b = serve(dir.path(), "b", &toml, pb);
    // Both are up and see each other.
    let started = Instant::now();
    loop {
        let h = get_text(pb, "/healthz").await.unwrap_or_default();
        if h.contains("\"peers\":2") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the daemons never saw each other: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Mid-sweep (3,000 x 20 ms / 40 in flight = 1.5 s): kill one daemon outright.
    while checked().await < 300 {
        assert!(started.elapsed() < Duration::from_secs(60), "no sweep started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Command::new("kill")
        .args(["-KILL", &a.id().to_string()])
        .status()
        .unwrap();
    a.wait().unwrap();
    let at_kill = checked().await;
    assert!(at_kill < n as i64, "the kill landed mid-sweep ({at_kill} of {n})");
    // The survivor finishes its own accounts, then, once the dead daemon's claims expire,
    // checks the accounts it held.
    let deadline = Instant::now() + Duration::from_secs(60);
    while checked().await < n as i64 {
        assert!(
            Instant::now() < deadline,
            "the survivor did not check every account ({} of {n})",
            checked().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let most: i64 =
        sqlx::query_scalar("SELECT MAX(c) FROM (SELECT COUNT(*) AS c FROM health_history GROUP BY account_ref) x")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(most, 1, "no account was recorded twice");
    let scrape = get_text(pb, "/metrics").await.unwrap();
    assert!(metric(&scrape, "socialsyncer_claims_expired_total") >= 1.0, "{scrape}");
    // It now counts itself alone.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = get_text(pb, "/healthz").await.unwrap_or_default();
        if h.contains("\"peers\":1") {
            break;
        }
        assert!(Instant::now() < deadline, "the dead peer is still counted: {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(get_text(pb, "/metrics").await.unwrap().contains("socialsyncer_peers 1"));
    Command::new("kill")
        .args(["-TERM", &b.id().to_string()])
        .status()
        .unwrap();
    assert!(b.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn daemons_share_a_platforms_rate_limit_and_its_throttle() {
    if !have_postgres("daemons_share_a_platforms_rate_limit_and_its_throttle") {
        return;
    }
    let url = fresh_postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    let toml = config_toml(
        dir.path(),
        &sim,
        &url,
        "[schedule]\ncron = \"\"\n[platforms.tiktok]\nrate_limit = 8",
    );
    let a = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    let b = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    assert_eq!(a.gates.rate(Platform::Tiktok), Some(8.0));
    socialsyncer::cluster::beat(&a.cluster).await.unwrap();
    socialsyncer::cluster::beat(&b.cluster).await.unwrap();
    socialsyncer::cluster::beat(&a.cluster).await.unwrap();
    assert_eq!((a.instance.peers(), b.instance.peers()), (2, 2));
    // Together they stay under the platform's budget: each paces at half.
    assert_eq!(a.gates.rate(Platform::Tiktok), Some(4.0));
    assert_eq!(b.gates.rate(Platform::Tiktok), Some(4.0));

    // A 429 seen by one daemon holds the other back until its retry time.
    let ws = a.store.ensure_workspace("acme", domain::now()).await.unwrap();
    let (account, _) = new_account(
        &a,
        &sim,
        ws,
        Platform::Tiktok,
        "tt1",
        TokenSpec::valid(Platform::Tiktok, "tt1"),
    );
    a.store.insert_accounts(&[account]).await.unwrap();
    sim.set_platform_behavior(Platform::Tiktok, Behavior::RateLimited);
    let r = socialsyncer::scheduler::sweep(&a.sweeper, &CancellationToken::new())
        .await
        .unwrap();
    // The platform was asked once and answered 429: the account is deferred.
    assert_eq!((r.checked, r.deferred), (1, 1), "{r:?}");
    let calls = sim.calls(Platform::Tiktok);
    assert_eq!(calls, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        socialsyncer::cluster::beat(&b.cluster).await.unwrap();
        if b.gates.held_until(Platform::Tiktok, b.clock.now()).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the hold never reached the other daemon");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The other daemon's sweep defers the account without asking the platform.
    let db = any_pool(&url).await;
    sqlx::query("UPDATE account_health SET next_check_at = 0")
        .execute(&db)
        .await
        .unwrap();
    let r = socialsyncer::scheduler::sweep(&b.sweeper, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((r.checked, r.deferred), (1, 1), "{r:?}");
    assert_eq!(sim.calls(Platform::Tiktok), calls);
    a.store.close().await;
    b.store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_is_sent_once_with_two_daemons_delivering() {
    if !have_postgres("an_alert_is_sent_once_with_two_daemons_delivering") {
        return;
    }
    let url = fresh_postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    let smtp = SmtpServer::start().await;
    let toml = config_toml(
        dir.path(),
        &sim,
        &url,
        &format!(
            "[schedule]\ncron = \"\"\n[email]\nsmtp_url = \"{}\"\nfrom = \"alerts@example.com\"\nto = [\"ops@example.com\"]",
            smtp.url()
        ),
    );
    let a = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    let b = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    // Ten workspaces, each with a revoked account: ten alerts, one email each.
    for w in 0..10 {
        let ws = a
            .store
            .ensure_workspace(&format!("ws{w}"), domain::now())
            .await
            .unwrap();
        let id = format!("{}", 100 + w);
        let spec = TokenSpec {
            state: TokenState::Revoked,
            ..TokenSpec::valid(Platform::Threads, &id)
        };
        let (account, _) = new_account(&a, &sim, ws, Platform::Threads, &id, spec);
        a.store.insert_accounts(&[account]).await.unwrap();
    }
    let r = socialsyncer::scheduler::sweep(&a.sweeper, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.invalid, 10, "{r:?}");
    // Both daemons' delivery loops wake at once, several times.
    for _ in 0..3 {
        let (ra, rb) = tokio::join!(deliver(&a.outbox), deliver(&b.outbox));
        ra.unwrap();
        rb.unwrap();
    }
    let mails = smtp.mails();
    assert_eq!(
        mails.len(),
        10,
        "{:?}",
        mails.iter().map(|m| m.subject()).collect::<Vec<_>>()
    );
    let mut subjects: Vec<String> = mails.iter().map(|m| m.subject()).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 10, "no workspace got its email twice");
    assert_eq!(a.store.undelivered_alerts().await.unwrap(), 0);
    a.store.close().await;
    b.store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_moves_a_sqlite_database_to_postgresql_and_its_tokens_still_open() {
    if !have_postgres("migrate_moves_a_sqlite_database_to_postgresql_and_its_tokens_still_open") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start_in_thread().unwrap();
    // A populated SQLite installation: accounts registered, checked, a key.
    let sqlite_url = format!("sqlite://{}/state/socialsyncer.db", dir.path().display());
    let sqlite_toml = format!(
        "[database]\nurl = \"{sqlite_url}\"\n[schedule]\ncron = \"\"\n{}",
        sim.config_toml(dir.path()).unwrap()
    );
    let state = AppState::build(Config::from_toml(&sqlite_toml).unwrap()).await.unwrap();
    let tokens = fill(&state, &sim, 25).await;
    let r = socialsyncer::scheduler::sweep(&state.sweeper, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.ok, 25);
    state.store.close().await;

    let pg = fresh_postgres_database().await;
    let pg_toml = config_toml(dir.path(), &sim, &pg, "[schedule]\ncron = \"\"");
    // config_toml created a new key beside; the installation's key is state/token.key.
    let pg_toml = pg_toml.replace(
        &format!("{}/token.key", dir.path().display()),
        &format!("{}/state/token.key", dir.path().display()),
    );
    let pg_config = dir.path().join("pg.toml");
    std::fs::write(&pg_config, &pg_toml).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&pg_config)
        .args(["migrate", "--from", &sqlite_url, "--to", &pg])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("accounts: 25 row(s)"), "{stderr}");
    // A second copy into the now populated database is refused.
    let again = Command::new(BIN)
        .arg("--config")
        .arg(&pg_config)
        .args(["migrate", "--from", &sqlite_url, "--to", &pg])
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // On PostgreSQL the tokens open with the same key: `check` calls the platform with them.
    let before = sim.calls(Platform::Threads);
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&pg_config)
        .arg("check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sim.calls(Platform::Threads), before + 25);
    assert!(
        tokens.iter().all(|t| sim.calls_with(t) == 2),
        "each token was used once on each database"
    );
    // The history came along, and new rows get new IDs.
    let db = any_pool(&pg).await;
    let history: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM health_history")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(history, 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn daemons_whose_clocks_are_off_agree_on_leases_claims_heartbeats_and_holds() {
    if !have_postgres("daemons_whose_clocks_are_off_agree_on_leases_claims_heartbeats_and_holds") {
        return;
    }
    let url = fresh_postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    let toml = config_toml(dir.path(), &sim, &url, "[schedule]\ncron = \"\"");
    let a = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    let b = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    // The database's clock runs 120 s ahead of both hosts' (as a host 120 s behind would
    // see it); the daemons' own clocks also disagree with each other by 120 s.
    let db = any_pool(&url).await;
    sqlx::query(
        "CREATE OR REPLACE FUNCTION unixepoch() RETURNS BIGINT LANGUAGE SQL STABLE \
         AS $$ SELECT CAST(floor(EXTRACT(EPOCH FROM now())) AS BIGINT) + 120 $$",
    )
    .execute(&db)
    .await
    .unwrap();
    b.clock.advance(120);

    // Heartbeats: each counts the other as live, and says its clock is off.
    socialsyncer::cluster::beat(&a.cluster).await.unwrap();
    socialsyncer::cluster::beat(&b.cluster).await.unwrap();
    socialsyncer::cluster::beat(&a.cluster).await.unwrap();
    assert_eq!((a.instance.peers(), b.instance.peers()), (2, 2));
    let skew = a.instance.skew.load(std::sync::atomic::Ordering::Relaxed);
    assert!((-122..=-118).contains(&skew), "{skew}");

    // A refresh lease held by one is not taken by the other.
    let ws = a.store.ensure_workspace("acme", domain::now()).await.unwrap();
    let (account, _) = new_account(
        &a,
        &sim,
        ws,
        Platform::Threads,
        "1",
        TokenSpec::valid(Platform::Threads, "1"),
    );
    a.store.insert_accounts(&[account]).await.unwrap();
    let account_ref: socialsyncer::domain::AccountRef =
        sqlx::query_scalar("SELECT id FROM accounts WHERE account_id = '1'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(a.store.try_refresh_lease(account_ref, "a", 90).await.unwrap());
    assert!(!b.store.try_refresh_lease(account_ref, "b", 90).await.unwrap());

    // A page claimed by one is not claimed again by the other, however far ahead its clock.
    async fn claim_due(d: &AppState, holder: &str) -> usize {
        let claim = socialsyncer::store::Claim {
            holder,
            now: d.clock.now(),
            lease: 900,
        };
        let page = d
            .store
            .due_accounts(Platform::Threads, d.clock.now() + 10, None, 10, &claim);
        page.await.unwrap().accounts.len()
    }
    assert_eq!(claim_due(&a, "a").await, 1);
    assert_eq!(claim_due(&b, "b").await, 0, "the claim holds on the database's clock");

    // A hold one daemon shares reaches the other for the time the platform gave.
    a.store.hold_platform(Platform::Tiktok, 60).await.unwrap();
    socialsyncer::cluster::beat(&b.cluster).await.unwrap();
    let held = b.gates.held_until(Platform::Tiktok, b.clock.now()).unwrap();
    assert!((58..=61).contains(&(held - b.clock.now())), "{}", held - b.clock.now());

    // /healthz says the clock is off.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(socialsyncer::server::serve_http(listener, a.clone(), stop.clone()));
    let h: serde_json::Value = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(h["clockSkewSeconds"].as_i64().is_some_and(|s| s < -100), "{h}");
    assert!(h["problems"].to_string().contains("clock"), "{h}");
    stop.cancel();
    server.await.unwrap().unwrap();
    a.store.close().await;
    b.store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_refuses_to_seal_with_a_key_rotate_token_key_replaced() {
    if !have_postgres("a_daemon_refuses_to_seal_with_a_key_rotate_token_key_replaced") {
        return;
    }
    let url = fresh_postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    let toml = config_toml(dir.path(), &sim, &url, "[schedule]\ncron = \"\"");
    let a = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    let ws = a.store.ensure_workspace("acme", domain::now()).await.unwrap();
    let (account, _) = new_account(
        &a,
        &sim,
        ws,
        Platform::Threads,
        "1",
        TokenSpec::valid(Platform::Threads, "1"),
    );
    a.store.insert_accounts(&[account]).await.unwrap();
    // rotate-token-key, with the daemon not beating (as if its host's clock were far off).
    let new_key = dir.path().join("new.key");
    socialsyncer::crypto::Sealer::load_or_create(&new_key).unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, &toml).unwrap();
    let out = Command::new(BIN)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "rotate-token-key",
            "--new-key-file",
            new_key.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The running daemon still has the old key: it refuses to seal a new account with it.
    let (account, _) = new_account(
        &a,
        &sim,
        ws,
        Platform::Threads,
        "2",
        TokenSpec::valid(Platform::Threads, "2"),
    );
    let err = a.store.insert_accounts(&[account]).await.unwrap_err();
    assert!(matches!(err, socialsyncer::store::StoreError::KeyChanged), "{err}");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
        .fetch_one(&any_pool(&url).await)
        .await
        .unwrap();
    assert_eq!(n, 1, "nothing sealed under the old key was stored");
    // And a daemon started with the old key refuses to start.
    let err = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("not the key"), "{err}");
    a.store.close().await;
}

/// Issue 25 item 1: PostgreSQL over TLS. A throwaway cluster with `ssl=on` and a certificate
/// made for the test: `sslmode=require` and `verify-full` (with the CA in `sslrootcert`)
/// connect through the daemon's own path (`keys create` migrates and writes), the session is
/// encrypted, and a CA that signed nothing is refused with a message that says so.
#[test]
fn postgresql_over_tls_connects_with_require_and_verify_full_and_refuses_a_wrong_ca() {
    if !have_postgres("postgresql_over_tls") {
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/postgres");
    let out = Command::new("bash")
        .arg(&script)
        .args(["--owner", &std::process::id().to_string(), "--tls"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "`.ci/postgres --tls` could not start a TLS cluster: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (base, ca) = printed.split_once("?sslrootcert=").expect("the URL names its CA");
    let other = ca.replace("/ca.crt", "/other-ca.crt");
    // verify-full checks the name: the certificate is for localhost and 127.0.0.1.
    let by_name = base.replace("127.0.0.1", "localhost");
    let dir = tempfile::tempdir().unwrap();
    let sim_dir = dir.path();
    let run = |url: &str| {
        let cfg = sim_dir.join("tls.toml");
        std::fs::write(
            &cfg,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"\"\n[database]\nurl = \"{url}\"\n\
                 [security]\ntoken_key_file = \"{}\"\n",
                sim_dir.join("token.key").display()
            ),
        )
        .unwrap();
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .args(["keys", "create", "--workspace", "acme"])
            .output()
            .unwrap()
    };
    for url in [
        format!("{base}?sslmode=require"),
        format!("{by_name}?sslmode=verify-full&sslrootcert={ca}"),
    ] {
        let out = run(&url);
        assert!(out.status.success(), "{url}: {}", String::from_utf8_lossy(&out.stderr));
        let encrypted: bool = tokio::runtime::Runtime::new().unwrap().block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&mut c)
                .await
                .unwrap()
        });
        assert!(encrypted, "{url}: the session is not encrypted");
    }
    for url in [
        format!("{by_name}?sslmode=verify-full&sslrootcert={other}"),
        format!("{base}?sslmode=verify-ca&sslrootcert={other}"),
    ] {
        let out = run(&url);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url}: a wrong CA was accepted");
        assert!(
            stderr.to_lowercase().contains("certificate"),
            "{url}: the refusal names the certificate: {stderr}"
        );
        assert!(!stderr.contains("SQLx was built without TLS"), "{stderr}");
    }
}

/// Issue 26 item 1: a health change is one transition even when two daemons checked the same
/// account and record their results at once (both saw it `unknown`, both found it
/// unhealthy): the second finds the change already written.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_two_daemons_record_at_once_is_one_transition() {
    if !have_postgres("a_change_two_daemons_record_at_once_is_one_transition") {
        return;
    }
    let url = fresh_postgres_database().await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start().await.unwrap();
    let toml = config_toml(dir.path(), &sim, &url, "[schedule]\ncron = \"\"");
    let a = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    let b = AppState::build(Config::from_toml(&toml).unwrap()).await.unwrap();
    let ws = a.store.ensure_workspace("acme", domain::now()).await.unwrap();
    let accounts: Vec<NewAccount> = (0..20)
        .map(|i| {
            let id = format!("{}", 7_000 + i);
            let spec = TokenSpec {
                state: TokenState::Revoked,
                ..TokenSpec::valid(Platform::Threads, &id)
            };
            new_account(&a, &sim, ws, Platform::Threads, &id, spec).0
        })
        .collect();
    a.store.insert_accounts(&accounts).await.unwrap();
    for account in a.store.all_accounts(None).await.unwrap() {
        let (ca, cb) = tokio::join!(
            socialsyncer::checks::check(&a.checker, account.clone()),
            socialsyncer::checks::check(&b.checker, account.clone())
        );
        let (ua, ub) = (ca.unwrap().update, cb.unwrap().update);
        assert_eq!(ua.state.health, socialsyncer::domain::Health::Unhealthy);
        let (ra, rb) = tokio::join!(
            a.store.record_checks(std::slice::from_ref(&ua)),
            b.store.record_checks(std::slice::from_ref(&ub))
        );
        ra.unwrap();
        rb.unwrap();
        let t = a.store.transitions(account.id, 0).await.unwrap();
        assert_eq!(t.len(), 1, "{}: {t:?}", account.account_id);
    }
    a.store.close().await;
    b.store.close().await;
}
