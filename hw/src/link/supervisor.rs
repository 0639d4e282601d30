//! Runs a [`LinkDriver`] for ever, restarting it with capped exponential
//! back-off and reporting every state change as a [`LinkEvent`].

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{DriverIo, LinkDriver, LinkEvent, LinkHandle};

/// Capped exponential back-off. A run that lasted longer than `reset_after`,
/// or that came up and stayed up for [`STABLE_UP`], starts the next retry
/// from `initial` again.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay after `delay`, doubled and capped.
    pub fn next(&self, delay: Duration) -> Duration {
        (delay * 2).min(self.max)
    }
}

/// A run that came up and stayed up this long proved its device works, so
/// its failure is a new incident (a cable pulled and plugged back) retried
/// from `initial`, not the next step of a failing start; a device that drops
/// within a second of coming up keeps backing off.
pub const STABLE_UP: Duration = Duration::from_secs(1);

/// Queue depths: 50 frames is one second of audio either way.
const COMMAND_QUEUE: usize = 64;
const EVENT_QUEUE: usize = 256;

/// Spawns `driver` under a supervisor. Returns the handle and the event
/// receiver; the task ends when `cancel` fires.
pub fn spawn_supervised(
    id: impl Into<String>,
    mut driver: Box<dyn LinkDriver>,
    backoff: Backoff,
    cancel: CancellationToken,
) -> (
    LinkHandle,
    mpsc::Receiver<LinkEvent>,
    tokio::task::JoinHandle<()>,
) {
    let id = id.into();
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
    let handle = LinkHandle::new(id.clone(), cmd_tx);
    let task = tokio::spawn(async move {
        let mut io = DriverIo::new(ev_tx, cmd_rx);
        let mut delay = backoff.initial;
        loop {
            let started = tokio::time::Instant::now();
            let what = driver.describe();
            tracing::debug!(link = %id, %what, "starting link driver");
            let result = driver.run(&mut io, cancel.clone()).await;
            if cancel.is_cancelled() {
                tracing::info!(link = %id, "link driver stopped");
                break;
            }
            let stable = io.take_up_at().is_some_and(|t| t.elapsed() >= STABLE_UP);
            if stable || started.elapsed() >= backoff.reset_after {
                delay = backoff.initial;
            }
            let reason = match result {
                Ok(()) => "driver ended".to_string(),
                Err(e) => e.to_string(),
            };
            tracing::warn!(link = %id, %what, %reason, retry_in = ?delay, "link down");
            io.emit(LinkEvent::Down {
                reason,
                retry_in: delay,
            })
            .await;
            // Commands that arrive while down are stale (old PTT, old audio).
            while io.commands.try_recv().is_ok() {}
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = backoff.next(delay);
        }
    });
    (handle, ev_rx, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{BoxFuture, LinkError};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    struct Flaky {
        runs: Arc<AtomicU32>,
    }

    impl LinkDriver for Flaky {
        fn describe(&self) -> String {
            "flaky".into()
        }
        fn run<'a>(
            &'a mut self,
            io: &'a mut DriverIo,
            cancel: CancellationToken,
        ) -> BoxFuture<'a, Result<(), LinkError>> {
            Box::pin(async move {
                let n = self.runs.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    return Err(LinkError::Protocol(format!("attempt {n} failed")));
                }
                io.emit(LinkEvent::Up).await;
                cancel.cancelled().await;
                Ok(())
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_with_growing_backoff_until_up() {
        let runs = Arc::new(AtomicU32::new(0));
        let cancel = CancellationToken::new();
        let (_h, mut events, task) = spawn_supervised(
            "l1",
            Box::new(Flaky { runs: runs.clone() }),
            Backoff::default(),
            cancel.clone(),
        );
        let mut delays = Vec::new();
        loop {
            match events.recv().await.unwrap() {
                LinkEvent::Down { retry_in, reason } => {
                    assert!(reason.contains("failed"));
                    delays.push(retry_in)
                }
                LinkEvent::Up => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            delays,
            vec![
                Duration::from_millis(250),
                Duration::from_millis(500),
                Duration::from_millis(1000)
            ]
        );
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 4);
    }

    /// Comes up, stays up `up_for`, then fails: a device unplugged again and
    /// again.
    struct Unplugged {
        up_for: Duration,
    }

    impl LinkDriver for Unplugged {
        fn describe(&self) -> String {
            "unplugged".into()
        }
        fn run<'a>(
            &'a mut self,
            io: &'a mut DriverIo,
            _cancel: CancellationToken,
        ) -> BoxFuture<'a, Result<(), LinkError>> {
            Box::pin(async move {
                io.emit(LinkEvent::Up).await;
                tokio::time::sleep(self.up_for).await;
                Err(LinkError::Protocol("device disappeared".into()))
            })
        }
    }

    async fn retry_delays(up_for: Duration, n: usize) -> Vec<Duration> {
        let cancel = CancellationToken::new();
        let (_h, mut events, task) = spawn_supervised(
            "l1",
            Box::new(Unplugged { up_for }),
            Backoff::default(),
            cancel.clone(),
        );
        let mut delays = Vec::new();
        while delays.len() < n {
            if let LinkEvent::Down { retry_in, .. } = events.recv().await.unwrap() {
                delays.push(retry_in);
            }
        }
        cancel.cancel();
        task.await.unwrap();
        delays
    }

    #[tokio::test(start_paused = true)]
    async fn a_device_that_worked_is_retried_at_once_after_each_loss() {
        let delays = retry_delays(Duration::from_secs(2), 8).await;
        assert_eq!(delays, vec![Duration::from_millis(250); 8]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flapping_device_still_backs_off() {
        let delays = retry_delays(Duration::from_millis(100), 4).await;
        assert_eq!(
            delays,
            [250, 500, 1000, 2000].map(Duration::from_millis).to_vec()
        );
    }

    #[test]
    fn backoff_caps() {
        let b = Backoff::default();
        let mut d = b.initial;
        for _ in 0..20 {
            d = b.next(d);
        }
        assert_eq!(d, b.max);
    }
}
