//! `socialsyncer bench conns`: a daemon at the shipped connection limits, held by N hostile
//! connections of each kind in turn (silent, half a request line, idle after one request,
//! an HTTP/2 preface, a client that pipelines requests and never reads), while a real
//! client with a key asks `GET /v1/accounts`: how long its answer took, and what each
//! held connection costs the daemon in memory and descriptors.

use tokio::io::AsyncWriteExt;

use super::daemon::rss_of;
use super::*;

/// Open file descriptors of process `pid`.
fn fds_of(pid: &str) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(Iterator::count)
}

/// One kind of hostile connection: a name and what it sends once connected.
struct Kind {
    name: &'static str,
    sends: Vec<u8>,
}

/// Runs the benchmark with `n` connections of each kind.
pub async fn conns(n: usize) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("socialsyncer-bench-").tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    // The shipped [server] defaults, on a free port.
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nmetrics_listen = \"\"\n\
         [database]\nurl = \"sqlite://{}/bench.db\"\n[schedule]\ncron = \"\"\n[log]\nlevel = \"warn\"\n",
        dir.path().display()
    );
    let config_path = dir.path().join("bench.toml");
    std::fs::write(&config_path, &toml)?;
    let defaults = Config::from_toml(&toml)?.server;
    // The probe is a real client: it has a key (requests without one are limited per
    // address, and the hostile connections come from the same address).
    let key = {
        let state = AppState::build(Config::from_toml(&toml)?).await?;
        let (_, key) = super::workspace_key(&state, "probe").await?;
        state.store.close().await;
        key
    };
    let (mut daemon, pid) = super::daemon::spawn_daemon(dir.path(), &config_path, port).await?;
    let base = format!("http://127.0.0.1:{port}");
    // A new connection for every probe, as a new client makes (a pooled one may have been
    // closed to make room while it idled).
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()?;
    // Pipelined requests for the OpenAPI document, never read: 10 a connection (a slow
    // reader), and 100 (a flood of 500,000 requests at 5,000 connections: what it measures
    // is the CPU a request costs, not a connection slot).
    let one = b"GET /v1/openapi.json HTTP/1.1\r\nhost: x\r\n\r\n";
    let (slow, flood) = (one.repeat(10), one.repeat(100));
    let kinds = [
        Kind {
            name: "silent (connected, nothing sent)",
            sends: Vec::new(),
        },
        Kind {
            name: "half a request line",
            sends: b"GET /healthz HT".to_vec(),
        },
        Kind {
            name: "idle after one request",
            sends: b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
        },
        Kind {
            name: "HTTP/2 preface (h2c)",
            sends: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec(),
        },
        Kind {
            name: "10 requests, never reads",
            sends: slow,
        },
        Kind {
            name: "100 requests, never reads",
            sends: flood,
        },
    ];
    out!("socialsyncer bench conns");
    out!(
        "  shipped limits          max_connections {}, per address {}, header_timeout {:?}, write_timeout {:?}",
        defaults.max_connections,
        defaults.max_connections_per_address,
        defaults.header_timeout.0,
        defaults.write_timeout.0
    );
    for kind in kinds {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rss0, fds0) = (rss_of(&pid).unwrap_or(0.0), fds_of(&pid).unwrap_or(0));
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                Ok(mut s) => {
                    if !kind.sends.is_empty() {
                        let _ = s.write_all(&kind.sends).await;
                    }
                    held.push(s);
                }
                Err(e) => bail!("connection {} of {n}: {e}", held.len() + 1),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rss1, fds1) = (rss_of(&pid).unwrap_or(0.0), fds_of(&pid).unwrap_or(0));
        let mut worst = Duration::ZERO;
        for _ in 0..5 {
            let t = Instant::now();
            let r = probe.get(format!("{base}/v1/accounts")).bearer_auth(&key).send().await;
            let took = t.elapsed();
            match r {
                Ok(r) if r.status().is_success() => {}
                other => {
                    eprintln!("  probe failed after {took:?}: {other:?}");
                    worst = Duration::MAX;
                    break;
                }
            }
            worst = worst.max(took);
        }
        let kept = fds1.saturating_sub(fds0);
        let per_conn_kib = if kept > 0 {
            (rss1 - rss0) * 1024.0 / kept as f64
        } else {
            0.0
        };
        out!(
            "  {:<32} {n} held: probe's slowest answer {}, daemon keeps {kept} (+{:.1} MiB RSS, {:.1} KiB each)",
            kind.name,
            if worst == Duration::MAX {
                "FAILED".to_owned()
            } else {
                format!("{:.1} ms", worst.as_secs_f64() * 1e3)
            },
            rss1 - rss0,
            per_conn_kib
        );
        drop(held);
    }
    let _ = daemon.kill().await;
    Ok(())
}
