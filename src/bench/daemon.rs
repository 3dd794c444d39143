//! A daemon in its own process for the benchmarks (`socialsyncer serve`, as by hand), and
//! its memory.

use std::time::{Duration, Instant};

use anyhow::Context;

/// Resident memory of process `pid` ("self" for this one) now, in MiB (`VmRSS`).
pub(super) fn rss_of(pid: &str) -> Option<f64> {
    status_mib(pid, "VmRSS:")
}

/// A `/proc/{pid}/status` figure given in kB (`VmRSS:`, `VmHWM:` the peak, `RssAnon:`,
/// `RssFile:`), in MiB.
pub(super) fn status_mib(pid: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// The daemon's resident memory at its largest sample, split as the kernel counts it.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Resident {
    /// Heap, stacks and the allocator's arenas, MiB.
    pub anon: f64,
    /// File pages: the binary's code, mapped libraries, MiB.
    pub file: f64,
    /// Shared memory: SQLite's WAL index, MiB.
    pub shmem: f64,
    /// The WAL file beside the database at its largest, bytes.
    pub wal: u64,
}

impl Resident {
    pub(super) fn total(&self) -> f64 {
        self.anon + self.file + self.shmem
    }
}

/// Samples process `pid` every 100 ms until `stop` (and the size of the file `wal`, if
/// given): the sample with the largest total, and the largest WAL.
pub(super) fn sample_resident(
    pid: String,
    wal: Option<std::path::PathBuf>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<Resident> {
    tokio::spawn(async move {
        let mut peak = Resident::default();
        while !stop.is_cancelled() {
            let now = Resident {
                anon: status_mib(&pid, "RssAnon:").unwrap_or_default(),
                file: status_mib(&pid, "RssFile:").unwrap_or_default(),
                shmem: status_mib(&pid, "RssShmem:").unwrap_or_default(),
                wal: 0,
            };
            let wal_now = wal
                .as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.len());
            if now.total() > peak.total() {
                peak = Resident { wal: peak.wal, ..now };
            }
            peak.wal = peak.wal.max(wal_now);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        peak
    })
}

/// Starts `socialsyncer serve --config config` as by hand (its log in
/// `dir/daemon.log`) and waits until it answers `/healthz` on `port`; the process and its
/// ID.
pub(super) async fn spawn_daemon(
    dir: &std::path::Path,
    config: &std::path::Path,
    port: u16,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let log = std::fs::File::create(dir.join("daemon.log"))?;
    let mut daemon = tokio::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        // As by hand: the allocators' options are set in code (src/main.rs), not here.
        .env_remove("MIMALLOC_ARENA_EAGER_COMMIT")
        .env_remove("MALLOC_ARENA_MAX")
        .kill_on_drop(true)
        .spawn()?;
    let pid = daemon.id().context("the daemon exited at once")?.to_string();
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(30) || daemon.try_wait()?.is_some() {
            let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
            anyhow::bail!("the daemon did not start:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((daemon, pid))
}
