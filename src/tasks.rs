//! The daemon's background tasks: each is spawned through one [`Tasks`] under a name, logs
//! how it ended (a panic at ERROR), and shutdown waits for all of them at once, then names
//! those still running.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio_util::task::TaskTracker;

/// Every background task of one daemon. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    /// Tasks running now, by name.
    running: Arc<Mutex<HashMap<&'static str, usize>>>,
}

/// Takes a task off the running count when it ends, however it ends.
struct Running {
    name: &'static str,
    running: Arc<Mutex<HashMap<&'static str, usize>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut r = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = r.get_mut(self.name) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Tasks {
    /// A new, empty set of tasks.
    pub fn new() -> Tasks {
        Tasks::default()
    }

    /// Spawns `fut` as the task `name`. Its end is logged: at DEBUG for the many short tasks
    /// (`quiet`), else at INFO; a panic at ERROR, always. The handle gives its output.
    pub fn spawn<F>(&self, name: &'static str, quiet: bool, fut: F) -> tokio::task::JoinHandle<Option<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        *self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name)
            .or_default() += 1;
        let guard = Running {
            name,
            running: self.running.clone(),
        };
        let inner = tokio::spawn(fut);
        self.tracker.spawn(async move {
            let _guard = guard;
            match inner.await {
                Ok(out) => {
                    if quiet {
                        tracing::debug!(task = name, "task ended");
                    } else {
                        tracing::info!(task = name, "task ended");
                    }
                    Some(out)
                }
                Err(e) => {
                    tracing::error!(task = name, error = %e, "task failed");
                    None
                }
            }
        })
    }

    /// How many tasks named `name` are running.
    pub fn running(&self, name: &str) -> usize {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// No more tasks may start; waits up to `timeout` for those running. Returns the names
    /// (with counts) of the tasks still running then.
    pub async fn finish(&self, timeout: std::time::Duration) -> Vec<(&'static str, usize)> {
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait()).await.is_ok() {
            return Vec::new();
        }
        let mut left: Vec<_> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (*k, *n))
            .collect();
        left.sort();
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_by_name_survives_a_panic_and_names_what_outlives_the_wait() {
        let tasks = Tasks::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let slow = tasks.spawn("slow", false, async move {
            let _ = rx.await;
            7
        });
        let boom = tasks.spawn("boom", true, async { panic!("on purpose") });
        assert_eq!(boom.await.unwrap(), None, "a panic is reported, not propagated");
        assert_eq!(tasks.running("boom"), 0);
        assert_eq!(tasks.running("slow"), 1);
        let left = tasks.finish(std::time::Duration::from_millis(50)).await;
        assert_eq!(left, vec![("slow", 1)]);
        tx.send(()).unwrap();
        assert_eq!(slow.await.unwrap(), Some(7));
        assert!(tasks.finish(std::time::Duration::from_secs(5)).await.is_empty());
    }
}
