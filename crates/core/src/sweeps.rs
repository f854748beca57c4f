//! The work no request asks for: the database probe, presence that lapsed,
//! the event log and messages past their retention, and files nothing
//! references any more. Started with the node ([`crate::Core::start_sweeps`])
//! and stopped by its shutdown; a sweep in progress finishes its batch first.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::chat::Chat;
use crate::files::Files;
use crate::presence::Presence;
use crate::store::Store;

/// How often the database is asked whether it answers; while it does not,
/// requests fail fast (`unavailable`) instead of each waiting on the pool.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How often lapsed presence is swept.
pub const PRESENCE_EVERY: Duration = Duration::from_secs(10);
/// How often retention and the collection of orphaned files run.
pub const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// How long stopping waits for a sweep in progress.
pub const STOP_WAIT: Duration = Duration::from_secs(5);

/// Events pruned per statement, messages deleted per batch, files removed per batch.
const EVENT_BATCH: i64 = 5_000;
const MESSAGE_BATCH: i64 = 1_000;
const FILE_BATCH: i64 = 500;

/// What the sweeps keep.
#[derive(Debug, Clone)]
pub struct SweepsConfig {
    /// Days the room event log keeps events for resume; 0 keeps them forever.
    pub event_retention_days: u32,
}

impl Default for SweepsConfig {
    fn default() -> Self {
        SweepsConfig {
            event_retention_days: 30,
        }
    }
}

/// The parts the sweeps work on.
pub(crate) struct Parts {
    pub store: Store,
    pub presence: Presence,
    pub chat: Chat,
    pub files: Files,
}

/// The running sweeps. [`Sweeps::stop`] ends them; dropping them without
/// stopping aborts them wherever they are.
pub struct Sweeps {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sweeps {
    pub(crate) fn start(parts: Parts, config: SweepsConfig) -> Sweeps {
        let (stop, stopped) = watch::channel(false);
        let probe = {
            let store = parts.store.clone();
            every(PROBE_EVERY, stopped.clone(), move || {
                let store = store.clone();
                async move {
                    store.probe().await;
                }
            })
        };
        let presence = {
            let presence = parts.presence.clone();
            every(PRESENCE_EVERY, stopped.clone(), move || {
                let presence = presence.clone();
                async move { presence.sweep().await }
            })
        };
        let retention = every(RETENTION_EVERY, stopped, move || {
            let (store, chat, files) =
                (parts.store.clone(), parts.chat.clone(), parts.files.clone());
            let days = config.event_retention_days;
            async move { retention(&store, &chat, &files, days).await }
        });
        Sweeps {
            stop,
            tasks: vec![probe, presence, retention],
        }
    }

    /// Ends the sweeps, letting a batch in progress finish for up to
    /// [`STOP_WAIT`]; what still runs then is aborted (its transaction rolls back).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for mut task in self.tasks.drain(..) {
            if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl Drop for Sweeps {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Runs `work` at once and then every `period` until `stopped` turns true;
/// a run that takes longer than `period` delays the next rather than
/// queueing runs behind it.
fn every<F, Fut>(
    period: Duration,
    mut stopped: watch::Receiver<bool>,
    mut work: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stop = tokio::select! {
                _ = ticks.tick() => false,
                _ = stopped.wait_for(|s| *s) => true,
            };
            if stop {
                return;
            }
            work().await;
        }
    })
}

/// One round: events and messages past their retention, then files nothing
/// references any more, each in bounded batches.
async fn retention(store: &Store, chat: &Chat, files: &Files, event_retention_days: u32) {
    if event_retention_days > 0 {
        let before =
            chrono::Utc::now().timestamp_millis() - i64::from(event_retention_days) * 86_400_000;
        loop {
            match store.prune_events(before, EVENT_BATCH).await {
                Ok(n) if n == EVENT_BATCH as u64 => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "pruning the event log failed");
                    break;
                }
            }
        }
    }
    match chat.apply_retention(MESSAGE_BATCH).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(messages = n, "deleted messages past their retention"),
        Err(e) => tracing::warn!(error = %e, "applying message retention failed"),
    }
    loop {
        match files.collect_garbage(FILE_BATCH).await {
            Ok(0) => break,
            Ok(n) => {
                tracing::info!(files = n, "removed files nothing references");
                if n < FILE_BATCH as u64 {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "collecting orphaned files failed");
                break;
            }
        }
    }
}
