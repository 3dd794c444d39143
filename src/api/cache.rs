//! Serialized list answers cached per workspace and query, with an `ETag`. An entry is valid
//! while the workspace's generation (bumped in the same transaction as every write to its
//! accounts or their health, by any process) is unchanged and until the earliest moment one
//! of its accounts turns stale (time alone changes that answer). One build per key at a
//! time: concurrent requests for the same list wait for it and share the bytes.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use sha2::{Digest, Sha256};

use crate::domain::UnixTime;

/// Bodies up to this size are kept in one piece.
const JOIN_UP_TO: usize = 1 << 20;

/// A cached answer. A large body stays in the pieces it was built in: requests share them
/// and no copy of the whole body is ever made (a 50,000-account list is 16 MB).
#[derive(Debug, Clone)]
pub struct Cached {
    generation: i64,
    valid_until: Option<UnixTime>,
    body: Arc<[Bytes]>,
    etag: String,
    content_type: &'static str,
}

impl Cached {
    /// An answer built at `generation`, valid until `valid_until` (if time alone changes it),
    /// whose body is `pieces` one after the other.
    pub fn new(generation: i64, valid_until: Option<UnixTime>, mut pieces: Vec<Bytes>) -> Cached {
        // A body of up to 1 MiB is joined: one write per answer serves faster (measured with
        // wrk: 0.65x nginx in two pieces of 160 KB against 0.9x in one).
        if pieces.len() > 1 && pieces.iter().map(Bytes::len).sum::<usize>() <= JOIN_UP_TO {
            pieces = vec![Bytes::from(pieces.concat())];
        }
        let mut digest = Sha256::new();
        for p in &pieces {
            digest.update(p);
        }
        Cached {
            generation,
            valid_until,
            etag: format!("\"{}\"", hex::encode(&digest.finalize()[..12])),
            body: pieces.into(),
            content_type: "application/json",
        }
    }

    /// The same answer, served as `content_type` (HTML pages).
    pub fn with_content_type(mut self, content_type: &'static str) -> Cached {
        self.content_type = content_type;
        self
    }

    /// The body in one piece (copied when it is in several).
    pub fn body_bytes(&self) -> Bytes {
        match &*self.body {
            [one] => one.clone(),
            pieces => Bytes::from(pieces.concat()),
        }
    }

    /// Bytes this answer holds.
    pub fn size(&self) -> usize {
        self.body.iter().map(Bytes::len).sum::<usize>() + self.etag.len()
    }

    fn fresh(&self, generation: i64, now: UnixTime) -> bool {
        self.generation == generation && self.valid_until.is_none_or(|t| now < t)
    }

    /// 304 when `If-None-Match` names this answer, else the answer; both with the `ETag`.
    pub fn respond(&self, request: &HeaderMap) -> Response {
        let etag = HeaderValue::from_str(&self.etag).unwrap_or(HeaderValue::from_static("\"\""));
        let matches = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| {
                let t = t.trim();
                t == "*" || t.trim_start_matches("W/") == self.etag
            });
        if matches {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
        }
        (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(self.content_type)),
                (header::ETAG, etag),
            ],
            Body::new(Pieces {
                left: self.body.iter().cloned().collect(),
                size: self.body.iter().map(|p| p.len() as u64).sum(),
            }),
        )
            .into_response()
    }
}

/// A body sent piece by piece, with its length known (so it has a `Content-Length`).
struct Pieces {
    left: VecDeque<Bytes>,
    size: u64,
}

impl http_body::Body for Pieces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.left.pop_front();
        if let Some(p) = &next {
            self.size -= p.len() as u64;
        }
        Poll::Ready(next.map(|p| Ok(Frame::data(p))))
    }

    fn is_end_stream(&self) -> bool {
        self.left.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size)
    }
}

/// What an entry costs besides its body: its key, the slot and the map's share.
const ENTRY_OVERHEAD: usize = 512;

/// One cached answer's place: the answer (built once, behind its own lock), the workspace it
/// belongs to, what it costs and when it was last used.
#[derive(Debug)]
struct Slot {
    cell: Arc<tokio::sync::Mutex<Option<Cached>>>,
    workspace: i64,
    bytes: usize,
    used: u64,
}

#[derive(Debug, Default)]
struct Slots {
    map: HashMap<String, Slot>,
    /// Bytes held per workspace, and in all.
    by_workspace: HashMap<i64, usize>,
    total: usize,
    /// A counter that orders uses (least recently used first).
    tick: u64,
}

impl Slots {
    fn remove(&mut self, key: &str) {
        if let Some(slot) = self.map.remove(key) {
            self.total -= slot.bytes;
            if let Some(b) = self.by_workspace.get_mut(&slot.workspace) {
                *b -= slot.bytes;
                if *b == 0 {
                    self.by_workspace.remove(&slot.workspace);
                }
            }
        }
    }

    fn resize(&mut self, key: &str, bytes: usize) {
        if let Some(slot) = self.map.get_mut(key) {
            let (old, ws) = (slot.bytes, slot.workspace);
            slot.bytes = bytes;
            self.total = self.total - old + bytes;
            let b = self.by_workspace.entry(ws).or_default();
            *b = *b - old + bytes;
        }
    }

    /// The least recently used entry of `workspace` other than `except`.
    fn oldest_of(&self, workspace: i64, except: &str) -> Option<String> {
        self.map
            .iter()
            .filter(|(k, s)| s.workspace == workspace && k.as_str() != except)
            .min_by_key(|(_, s)| s.used)
            .map(|(k, _)| k.clone())
    }
}

/// The cache: one slot per (route, workspace, query), bounded in bytes. Each workspace may
/// hold at most a share of the bound (a quarter), and makes room only by evicting its own
/// least recently used entries: no workspace ever evicts another's. An answer that finds no
/// room is served without being kept.
#[derive(Debug)]
pub struct ListCache {
    slots: Mutex<Slots>,
    capacity: usize,
    share: usize,
    builds: std::sync::atomic::AtomicU64,
    recent: Mutex<HashMap<String, (std::time::Instant, i64, i64)>>,
}

/// How long a lookup [`ListCache::remember`]s is reused.
const RECENT: std::time::Duration = std::time::Duration::from_secs(1);
/// Lookups remembered at most (all are dropped when full: a flood of tokens costs nothing).
const RECENT_MAX: usize = 10_000;

impl Default for ListCache {
    fn default() -> Self {
        ListCache::new(64 << 20)
    }
}

impl ListCache {
    /// A cache of at most `capacity` bytes (`server.list_cache_bytes`).
    pub fn new(capacity: usize) -> ListCache {
        ListCache {
            slots: Mutex::default(),
            capacity,
            share: capacity / 4,
            builds: std::sync::atomic::AtomicU64::new(0),
            recent: Mutex::default(),
        }
    }

    /// What [`ListCache::remember`] kept for `key` less than a second ago (a status page's
    /// share link: its workspace and that workspace's generation). A page served by it may be
    /// a second behind a change made by another process; this one forgets on a revocation.
    pub fn recent(&self, key: &str) -> Option<(i64, i64)> {
        let map = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(at, ..)| at.elapsed() < RECENT)
            .map(|(_, a, b)| (*a, *b))
    }

    /// Keeps a lookup for [`ListCache::recent`].
    pub fn remember(&self, key: &str, a: i64, b: i64) {
        let mut map = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= RECENT_MAX {
            map.clear();
        }
        map.insert(key.to_owned(), (std::time::Instant::now(), a, b));
    }

    /// Forgets every remembered lookup (a share link was revoked).
    pub fn forget_recent(&self) {
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The answer for `key` (of `workspace`) at `generation`, built by `build` when there is
    /// none fresh.
    pub async fn get_or_build<F, Fut, E>(
        &self,
        workspace: i64,
        key: String,
        generation: i64,
        now: UnixTime,
        build: F,
    ) -> Result<Cached, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Cached, E>>,
    {
        let cell = {
            let mut slots = self.lock();
            slots.tick += 1;
            let tick = slots.tick;
            match slots.map.get_mut(&key) {
                Some(slot) => {
                    slot.used = tick;
                    slot.cell.clone()
                }
                None => {
                    let cell = Arc::default();
                    slots.map.insert(
                        key.clone(),
                        Slot {
                            cell: Arc::clone(&cell),
                            workspace,
                            bytes: 0,
                            used: tick,
                        },
                    );
                    slots.resize(&key, ENTRY_OVERHEAD + key.len());
                    cell
                }
            }
        };
        let mut guard = cell.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| c.fresh(generation, now)) {
            return Ok(c.clone());
        }
        let built = match build().await {
            Ok(b) => b,
            Err(e) => {
                // Nothing kept for a failed build.
                drop(guard);
                self.forget(&key, &cell);
                return Err(e);
            }
        };
        self.builds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.admit(workspace, &key, &cell, built.size()) {
            *guard = Some(built.clone());
        }
        Ok(built)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes `key` if it is still the slot `cell` (a racing eviction may have replaced it).
    fn forget(&self, key: &str, cell: &Arc<tokio::sync::Mutex<Option<Cached>>>) {
        let mut slots = self.lock();
        if slots.map.get(key).is_some_and(|s| Arc::ptr_eq(&s.cell, cell)) {
            slots.remove(key);
        }
    }

    /// Accounts a built answer of `size` bytes to its slot, evicting the workspace's own
    /// least recently used entries until it is within its share and the whole cache within
    /// its bound. False (and the slot dropped) when it cannot fit.
    fn admit(&self, workspace: i64, key: &str, cell: &Arc<tokio::sync::Mutex<Option<Cached>>>, size: usize) -> bool {
        let mut slots = self.lock();
        if !slots.map.get(key).is_some_and(|s| Arc::ptr_eq(&s.cell, cell)) {
            return false;
        }
        slots.resize(key, ENTRY_OVERHEAD + key.len() + size);
        loop {
            let mine = slots.by_workspace.get(&workspace).copied().unwrap_or(0);
            if mine <= self.share && slots.total <= self.capacity {
                return true;
            }
            match slots.oldest_of(workspace, key) {
                Some(old) => slots.remove(&old),
                None => {
                    slots.remove(key);
                    return false;
                }
            }
        }
    }

    /// Answers built so far (each one shared by every request that waited for it).
    pub fn builds(&self) -> u64 {
        self.builds.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes the cache holds now (bodies and the cost of their entries), in all and for
    /// `workspace`.
    pub fn held_bytes(&self, workspace: i64) -> (usize, usize) {
        let slots = self.lock();
        (slots.total, slots.by_workspace.get(&workspace).copied().unwrap_or(0))
    }

    /// Whether an answer for `key` is kept now.
    pub fn holds(&self, key_prefix: &str) -> usize {
        self.lock().map.keys().filter(|k| k.starts_with(key_prefix)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(bytes: usize) -> Cached {
        Cached::new(1, None, vec![Bytes::from(vec![b'x'; bytes])])
    }

    async fn put(cache: &ListCache, ws: i64, key: &str, bytes: usize) {
        cache
            .get_or_build(ws, key.into(), 1, 0, || async { Ok::<_, ()>(answer(bytes)) })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_workspace_stays_within_its_share_and_never_evicts_another() {
        let cache = ListCache::new(400_000);
        put(&cache, 2, "b|1", 50_000).await;
        for i in 0..1_000 {
            put(&cache, 1, &format!("a|{i}"), 20_000).await;
            let (total, mine) = cache.held_bytes(1);
            assert!(mine <= 100_000, "a workspace holds at most a quarter: {mine}");
            assert!(total <= 400_000, "the cache holds at most its bound: {total}");
        }
        assert_eq!(cache.holds("b|"), 1, "the other workspace's answer is still kept");
        let builds = cache.builds();
        put(&cache, 2, "b|1", 50_000).await;
        assert_eq!(cache.builds(), builds, "and served without a rebuild");
        // The most recent of workspace 1 are kept, the oldest were evicted.
        assert_eq!(cache.holds("a|999"), 1);
        assert_eq!(cache.holds("a|0"), 0);
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_share_is_served_but_not_kept() {
        let cache = ListCache::new(100_000);
        put(&cache, 1, "big", 60_000).await;
        assert_eq!(cache.holds("big"), 0);
        assert_eq!(cache.held_bytes(1), (0, 0));
    }
}
