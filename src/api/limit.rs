//! A token bucket per API key (`server.key_rate_limit` requests a second, bursts of
//! `server.key_burst`), so that one client cannot starve the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use sha2::{Digest, Sha256};

/// The buckets of the keys seen, by a hash of the key (the key itself is never kept).
#[derive(Debug, Default)]
pub struct KeyLimiter {
    buckets: Mutex<HashMap<[u8; 32], Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets kept at most; full (idle) ones are dropped first when there are more.
const MAX_BUCKETS: usize = 10_000;

impl KeyLimiter {
    /// Takes one request from `key`'s bucket, or says in how many seconds one is available.
    /// A `rate` of 0 (or less) turns the limit off.
    pub fn check(&self, key: &str, rate: f64, burst: f64) -> Result<(), u64> {
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = burst.max(1.0);
        let id: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let now = Instant::now();
        let mut m = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= MAX_BUCKETS && !m.contains_key(&id) {
            m.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = m.entry(id).or_insert(Bucket { tokens: burst, at: now });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let l = KeyLimiter::default();
        for _ in 0..5 {
            assert!(l.check("k", 1.0, 5.0).is_ok());
        }
        assert_eq!(l.check("k", 1.0, 5.0), Err(1));
        assert!(l.check("other", 1.0, 5.0).is_ok(), "keys have their own buckets");
        assert!(l.check("k", 0.0, 5.0).is_ok(), "0 turns it off");
    }
}
