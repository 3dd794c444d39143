//! Values a reload may replace while the daemon runs. An engine that reads a live value
//! holds a [`Live`] and reads it when it needs it; the composition root (`app.rs`) holds the
//! [`Setter`] and is the only one that replaces it. What does not reload is plain data.

use tokio::sync::watch;

/// A value a reload may replace: every read sees the newest one. Cheap to clone.
#[derive(Debug)]
pub struct Live<T>(watch::Receiver<T>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(self.0.clone())
    }
}

impl<T: Clone> Live<T> {
    /// The value in force now.
    pub fn get(&self) -> T {
        self.0.borrow().clone()
    }
}

impl<T> Live<T> {
    /// Waits until the value is replaced (a reload). Fails when the setter is gone.
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.0.changed().await
    }
}

/// Replaces a live value for every [`Live`] made from it.
#[derive(Debug)]
pub struct Setter<T>(watch::Sender<T>);

impl<T> Setter<T> {
    /// A live value starting at `value`.
    pub fn new(value: T) -> Setter<T> {
        Setter(watch::Sender::new(value))
    }

    /// A reader of the value.
    pub fn live(&self) -> Live<T> {
        Live(self.0.subscribe())
    }

    /// Puts `value` in force.
    pub fn set(&self, value: T) {
        self.0.send_replace(value);
    }
}

impl<T: Clone> Setter<T> {
    /// The value in force now.
    pub fn get(&self) -> T {
        self.0.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_reader_sees_the_replacement_and_is_woken() {
        let s = Setter::new(1);
        let (a, mut b) = (s.live(), s.live());
        assert_eq!(a.get(), 1);
        let waiter = tokio::spawn(async move {
            b.changed().await.unwrap();
            b.get()
        });
        tokio::task::yield_now().await;
        s.set(2);
        assert_eq!(a.get(), 2);
        assert_eq!(waiter.await.unwrap(), 2);
    }
}
