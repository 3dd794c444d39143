//! What a connection may hold (issue 20): a write that makes no progress for
//! `server.write_timeout` ends its connection ([`DeadlineStream`]), and the open connections
//! are bounded in all and per client address by a [`Registry`] that makes room for a new one
//! by closing the oldest idle one (no request in flight, nothing being sent), as nginx
//! reuses idle keep-alive connections. So connections that say nothing, that idle on HTTP/2
//! while answering PINGs, or that sent a request and went quiet never keep a real client
//! out; only as many requests in flight as `max_connections` can.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// A stream whose writes must make progress: a write (or flush) that stays pending for
/// `timeout` fails with `TimedOut`, which ends the connection (a client that never reads
/// its answers holds nothing for longer).
pub struct DeadlineStream<S> {
    inner: S,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    /// Whether a write is waiting for the client to read (the registry closes such a
    /// connection first when it needs room and none is idle).
    waiting: Arc<std::sync::atomic::AtomicBool>,
}

impl<S> DeadlineStream<S> {
    /// `inner`, with writes bounded by `timeout`; `waiting` says when a write waits.
    pub fn new(inner: S, timeout: Duration, waiting: Arc<std::sync::atomic::AtomicBool>) -> Self {
        DeadlineStream {
            inner,
            timeout,
            stalled: None,
            waiting,
        }
    }

    /// After a pending write: arms the deadline, and fails once it has passed.
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Error> {
        let timeout = self.timeout;
        self.waiting.store(true, Ordering::Relaxed);
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing for server.write_timeout",
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(&mut self, r: Poll<std::io::Result<T>>, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                if self.stalled.take().is_some() {
                    self.waiting.store(false, Ordering::Relaxed);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.check_stall(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for DeadlineStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for DeadlineStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.progress(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.progress(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.progress(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An answer's body that keeps its request counted in flight until it has been sent (or
/// the connection ended): a connection sending a large list is not idle.
pub struct HoldBody {
    inner: axum::body::Body,
    _busy: Busy,
}

impl HoldBody {
    /// `inner`, holding `busy` until dropped.
    pub fn new(inner: axum::body::Body, busy: Busy) -> Self {
        HoldBody { inner, _busy: busy }
    }
}

impl http_body::Body for HoldBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// One open connection as the registry sees it.
#[derive(Debug)]
struct Entry {
    addr: IpAddr,
    /// Requests in flight, answers being sent included.
    busy: Arc<AtomicUsize>,
    /// When it last started or finished a request (or was accepted).
    last_active: Arc<Mutex<Instant>>,
    /// Whether a write waits for the client to read.
    waiting: Arc<std::sync::atomic::AtomicBool>,
    /// Requests it has started, all told.
    served: Arc<AtomicUsize>,
    close: CancellationToken,
}

impl Entry {
    fn last_active(&self) -> Instant {
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn idle_since(&self) -> Option<Instant> {
        (self.busy.load(Ordering::Acquire) == 0).then(|| self.last_active())
    }

    /// Since when it may be closed to make room, in order of `rank`: 0, idle between
    /// requests (keep-alive); 1, its client not reading what it is sent; 2, not one whole
    /// request yet (so a new client that has just connected goes last, after every older
    /// one that has said nothing).
    fn closable_since(&self, rank: u8) -> Option<Instant> {
        let served = self.served.load(Ordering::Relaxed) > 0;
        match rank {
            0 => self.idle_since().filter(|_| served),
            1 => self.waiting.load(Ordering::Relaxed).then(|| self.last_active()),
            _ => self.idle_since().filter(|_| !served),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    conns: HashMap<u64, Entry>,
    per_addr: HashMap<IpAddr, usize>,
    next_id: u64,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        if let Some(n) = self.per_addr.get_mut(&e.addr) {
            *n -= 1;
            if *n == 0 {
                self.per_addr.remove(&e.addr);
            }
        }
        Some(e)
    }

    /// Closes the connection idle the longest, of `addr` only when given; when none is idle,
    /// the one whose client has not read its answer the longest.
    fn evict_oldest_idle(&mut self, addr: Option<IpAddr>) -> bool {
        let oldest = |rank: u8| {
            self.conns
                .iter()
                .filter(|(_, e)| addr.is_none_or(|a| e.addr == a))
                .filter_map(|(id, e)| e.closable_since(rank).map(|t| (*id, t)))
                .min_by_key(|(_, t)| *t)
                .map(|(id, _)| id)
        };
        let victim = oldest(0).or_else(|| oldest(1)).or_else(|| oldest(2));
        match victim.and_then(|id| self.remove(id)) {
            Some(e) => {
                e.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// The open connections, at most `max` in all and `per_address` from one client address.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<Inner>,
    max: usize,
    per_address: usize,
    evicted: AtomicUsize,
}

/// A connection admitted by the [`Registry`]: its place is given up when this is dropped.
#[derive(Debug)]
pub struct Admitted {
    registry: Arc<Registry>,
    id: u64,
    /// Cancelled when the registry closes this connection to make room.
    pub close: CancellationToken,
    busy: Arc<AtomicUsize>,
    last_active: Arc<Mutex<Instant>>,
    /// Whether a write waits for the client to read (given to its [`DeadlineStream`]).
    pub waiting: Arc<std::sync::atomic::AtomicBool>,
    served: Arc<AtomicUsize>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.registry.lock().remove(self.id);
    }
}

impl Admitted {
    /// Marks a request in flight until the returned guard is dropped (when its answer has
    /// been sent, or the connection ends).
    pub fn request(&self) -> Busy {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::AcqRel);
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Busy {
            busy: self.busy.clone(),
            last_active: self.last_active.clone(),
        }
    }
}

/// A request in flight on a connection (see [`Admitted::request`]).
#[derive(Debug)]
pub struct Busy {
    busy: Arc<AtomicUsize>,
    last_active: Arc<Mutex<Instant>>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Registry {
    /// A registry of at most `max` connections, `per_address` from one address.
    pub fn new(max: usize, per_address: usize) -> Arc<Registry> {
        Arc::new(Registry {
            inner: Mutex::default(),
            max: max.max(1),
            per_address: per_address.max(1),
            evicted: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `addr`, closing the oldest idle one (of that address when
    /// it is at its cap, else of all) to make room; `None` when every connection in the way
    /// has a request in flight (the new one is then closed).
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Option<Admitted> {
        let mut inner = self.lock();
        if inner.per_addr.get(&addr).copied().unwrap_or(0) >= self.per_address {
            if !inner.evict_oldest_idle(Some(addr)) {
                return None;
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        if inner.conns.len() >= self.max {
            if !inner.evict_oldest_idle(None) {
                return None;
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let (busy, last_active, waiting, served, close) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Mutex::new(Instant::now())),
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
            CancellationToken::new(),
        );
        inner.conns.insert(
            id,
            Entry {
                addr,
                busy: busy.clone(),
                last_active: last_active.clone(),
                waiting: waiting.clone(),
                served: served.clone(),
                close: close.clone(),
            },
        );
        *inner.per_addr.entry(addr).or_default() += 1;
        Some(Admitted {
            registry: self.clone(),
            id,
            close,
            busy,
            last_active,
            waiting,
            served,
        })
    }

    /// Closes the connections idle for longer than `idle` (HTTP/2 connections that only
    /// answer PINGs; HTTP/1's header timer does the same for its own).
    pub fn close_idle(&self, idle: Duration) -> usize {
        let mut inner = self.lock();
        let now = Instant::now();
        let stale: Vec<u64> = inner
            .conns
            .iter()
            .filter(|(_, e)| e.idle_since().is_some_and(|t| now.duration_since(t) > idle))
            .map(|(id, _)| *id)
            .collect();
        for id in &stale {
            if let Some(e) = inner.remove(*id) {
                e.close.cancel();
            }
        }
        stale.len()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().conns.len()
    }

    /// Connections closed so far to make room for others.
    pub fn evicted(&self) -> usize {
        self.evicted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_registry_closes_the_oldest_idle_connection_never_a_busy_one() {
        let r = Registry::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = r.admit(a).unwrap();
        let busy = first.request();
        tokio::time::sleep(Duration::from_millis(2)).await;
        let second = r.admit(a).unwrap();
        // a is at its cap: the third from a closes a's oldest idle one (second; first is busy).
        let third = r.admit(a).unwrap();
        assert!(second.close.is_cancelled() && !first.close.is_cancelled());
        drop(second);
        let fourth = r.admit(b).unwrap();
        assert_eq!(r.open(), 3);
        // Full: the next closes the oldest idle of all (third).
        let fifth = r.admit(b).unwrap();
        assert!(third.close.is_cancelled());
        // Every one in the way busy: refused; unless one's client does not read its answer.
        let _busy = (fourth.request(), fifth.request());
        drop(third);
        let sixth = r.admit(b);
        assert!(sixth.is_none(), "b is at its cap with both busy");
        fifth.waiting.store(true, Ordering::Relaxed);
        let _seventh = r.admit(b).unwrap();
        assert!(fifth.close.is_cancelled() && !fourth.close.is_cancelled());
        drop(busy);
        assert_eq!(r.evicted(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alive_idle_goes_first_then_stalled_then_the_oldest_of_those_that_said_nothing() {
        let r = Registry::new(4, 10);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let silent_old = r.admit(a).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let stalled = r.admit(a).unwrap();
        let _sending = stalled.request();
        stalled.waiting.store(true, Ordering::Relaxed);
        tokio::time::advance(Duration::from_millis(10)).await;
        let kept_alive = r.admit(a).unwrap();
        drop(kept_alive.request());
        let newcomer = r.admit(a).unwrap();
        let _x = r.admit(a).unwrap();
        assert!(kept_alive.close.is_cancelled(), "idle between requests goes first");
        let _y = r.admit(a).unwrap();
        assert!(stalled.close.is_cancelled(), "then a client that does not read");
        let _z = r.admit(a).unwrap();
        assert!(silent_old.close.is_cancelled(), "then the oldest that said nothing");
        assert!(!newcomer.close.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed_after_the_idle_time() {
        let r = Registry::new(10, 10);
        let a = r.admit("10.0.0.1".parse().unwrap()).unwrap();
        let b = r.admit("10.0.0.1".parse().unwrap()).unwrap();
        let _working = b.request();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(r.close_idle(Duration::from_secs(10)), 1);
        assert!(a.close.is_cancelled() && !b.close.is_cancelled());
    }
}
