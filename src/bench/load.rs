//! The load generator of the benchmarks: concurrent clients on one URL.

use std::time::{Duration, Instant};

/// Requests a second that `clients` concurrent clients get for `duration` on `url`.
pub(super) async fn throughput(
    url: &str,
    key: &str,
    etag: Option<&str>,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
    let until = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, url, key, etag) = (http.clone(), url.to_owned(), key.to_owned(), etag.map(str::to_owned));
        tasks.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let mut r = http.get(&url).bearer_auth(&key);
                if let Some(e) = &etag {
                    r = r.header("if-none-match", e);
                }
                let resp = r.send().await?;
                let ok = resp.status().is_success() || resp.status().as_u16() == 304;
                let _ = resp.bytes().await?;
                anyhow::ensure!(ok, "an answer was not 200/304");
                n += 1;
            }
            anyhow::Ok(n)
        });
    }
    let started = Instant::now();
    let mut total = 0;
    while let Some(n) = tasks.join_next().await {
        total += n??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
