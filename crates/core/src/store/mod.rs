//! The one store: every query runs on SQLite (the default) and PostgreSQL.
//!
//! Queries are written once in the SQL both databases share, with `$n`
//! placeholders, and run through sqlx's `Any` driver. Values cross the driver
//! as text and integers only (flags are 0 or 1): ids are UUID text, times are Unix
//! milliseconds. Each database has its own migrations folder.

mod calls;
pub(crate) mod convert;
mod events;
mod files;
mod messages;
mod rooms;
mod search;
mod sessions;
mod users;

#[cfg(feature = "test-support")]
pub mod testing;

pub use calls::{CallParticipantRow, CallRow};
pub use events::{EventKind, EventRow};
pub use files::{AttachmentRow, FileRow, RemovedFile};
pub use messages::{MessageRow, NewMessage, Sent};
pub use rooms::{Departure, InviteRow, MemberRow, RoomRow};
pub use search::{SearchPage, SearchRow, SearchScope};
pub use sessions::{RefreshOutcome, SessionRow};
pub use users::{NewUser, UserFilter, UserRow};

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::Result;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The longest a health probe waits for the database: readiness answers
/// within it whatever the database does.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a query waits for a connection while the database is known to be
/// out of reach: long enough for a database that just came back, short enough
/// that a client hears `unavailable` at once rather than after the pool's
/// full acquire timeout.
const DOWN_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);
/// Connections the pool used while the database is out of reach may open.
const DOWN_MAX_CONNECTIONS: u32 = 4;

/// How to connect.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://path?mode=rwc` or `postgres://...`.
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// PostgreSQL only: the same database behind a short acquire timeout,
    /// used while `reachable` is false so requests fail fast in an outage,
    /// and always by probes and readiness, so a pool busy with requests is
    /// never mistaken for a database that is away.
    /// SQLite is a local file: it has no outage to wait out.
    failing_fast: Option<AnyPool>,
    /// What the last probe (or failed readiness check) found.
    reachable: Arc<AtomicBool>,
    backend: Backend,
    /// SQLite has one writer at a time; transactions that read and then write
    /// take this first, so none fails with a stale snapshot. Unused on PostgreSQL.
    write_lock: Arc<Mutex<()>>,
}

/// A transaction that may write. On SQLite it holds the write lock until it ends.
pub struct WriteTx {
    pub(crate) tx: Transaction<'static, Any>,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Connects; does not migrate.
    pub async fn connect(opts: &StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if opts.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if opts.url.starts_with("postgres:") || opts.url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(crate::CoreError::validation(
                "database_url",
                "must start with sqlite: or postgres:",
            ));
        };
        let connect = AnyConnectOptions::from_str(&opts.url)?;
        let failing_fast = (backend == Backend::Postgres).then(|| {
            AnyPoolOptions::new()
                .max_connections(opts.max_connections.min(DOWN_MAX_CONNECTIONS))
                .acquire_timeout(DOWN_ACQUIRE_TIMEOUT)
                .connect_lazy_with(connect.clone())
        });
        let mut pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(opts.acquire_timeout);
        if backend == Backend::Sqlite {
            pool = pool.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(connect).await?;
        Ok(Store {
            pool,
            failing_fast,
            reachable: Arc::new(AtomicBool::new(true)),
            backend,
            write_lock: Arc::new(Mutex::new(())),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies every migration not yet applied.
    pub async fn migrate(&self) -> Result<()> {
        self.migrator().run(&self.pool).await?;
        Ok(())
    }

    /// Whether the database answers and every embedded migration is applied.
    /// Answers within [`PROBE_TIMEOUT`]: a database that does not answer by
    /// then is out of reach (`CoreError::Unavailable`), and is marked so.
    pub async fn ready(&self) -> Result<bool> {
        let query = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_all(self.probe_pool());
        let applied: Vec<i64> = match tokio::time::timeout(PROBE_TIMEOUT, query).await {
            Ok(Ok(applied)) => {
                self.mark_reachable(true);
                applied
            }
            Ok(Err(e)) => {
                let e = crate::CoreError::from(e);
                if e.is_unavailable() {
                    self.mark_reachable(false);
                }
                return Err(e);
            }
            Err(_) => {
                self.mark_reachable(false);
                return Err(crate::CoreError::Unavailable(
                    "the database does not answer".into(),
                ));
            }
        };
        Ok(self
            .migrator()
            .iter()
            .all(|m| m.migration_type.is_down_migration() || applied.contains(&m.version)))
    }

    /// Asks the database whether it answers, within [`PROBE_TIMEOUT`], and
    /// remembers the answer: while it is out of reach, queries wait a short
    /// while for a connection instead of the pool's full acquire timeout.
    /// The server calls this every second or so.
    pub async fn probe(&self) -> bool {
        if self.failing_fast.is_none() {
            return true;
        }
        let query = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(self.probe_pool());
        let up = matches!(tokio::time::timeout(PROBE_TIMEOUT, query).await, Ok(Ok(_)));
        self.mark_reachable(up);
        up
    }

    /// Whether the database answered the last probe.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn mark_reachable(&self, up: bool) {
        if self.failing_fast.is_none() {
            return;
        }
        let was = self.reachable.swap(up, Ordering::Relaxed);
        if was && !up {
            tracing::warn!(
                "the database is out of reach: requests fail fast until it answers again"
            );
        } else if !was && up {
            tracing::info!("the database answers again");
        }
    }

    /// Starts a transaction that may write.
    pub async fn begin_write(&self) -> Result<WriteTx> {
        let guard = match self.backend {
            Backend::Sqlite => Some(self.write_lock.clone().lock_owned().await),
            Backend::Postgres => None,
        };
        let tx = match self.backend {
            // IMMEDIATE takes SQLite's write lock at once, so no statement of the
            // transaction can find its snapshot stale; other writers wait (busy_timeout).
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool().begin().await?,
        };
        Ok(WriteTx { tx, _guard: guard })
    }

    /// The pool every query runs on: while the database is known to be out
    /// of reach, the one that gives up on a connection quickly.
    pub(crate) fn pool(&self) -> &AnyPool {
        match &self.failing_fast {
            Some(fast) if !self.reachable() => fast,
            _ => &self.pool,
        }
    }

    /// The pool health checks run on: never queued behind requests.
    fn probe_pool(&self) -> &AnyPool {
        self.failing_fast.as_ref().unwrap_or(&self.pool)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        if let Some(fast) = &self.failing_fast {
            fast.close().await;
        }
        self.pool.close().await;
    }
}

/// `columns` (a `COLUMNS` list) qualified by a table alias: `a, b` → `m.a, m.b`.
pub(crate) fn qualified(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A LIKE pattern that matches `text` anywhere, with wildcards in it escaped (`\` is the escape).
pub(crate) fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_runs_in_wal_mode_with_foreign_keys_and_migrates_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let opts = StoreOptions {
            url,
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        };
        let store = Store::connect(&opts).await.unwrap();
        assert!(
            !store.ready().await.unwrap_or(false),
            "not ready before migrating"
        );
        store.migrate().await.unwrap();
        store.migrate().await.expect("migrating again is a no-op");
        assert!(store.ready().await.unwrap());
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(fk, 1);
    }

    #[cfg(feature = "test-support")]
    #[tokio::test]
    async fn a_pool_busy_with_requests_is_not_mistaken_for_an_outage() {
        let store = Store::connect(&StoreOptions {
            url: testing::fresh_postgres_url().await,
            max_connections: 1,
            acquire_timeout: Duration::from_secs(10),
        })
        .await
        .unwrap();
        store.migrate().await.unwrap();
        // A request holds the pool's one connection for longer than a probe waits.
        let held = store.begin_write().await.unwrap();
        assert!(store.probe().await, "the database answers");
        assert!(store.ready().await.unwrap(), "and is ready");
        assert!(store.reachable());
        held.commit().await.unwrap();
    }

    #[test]
    fn columns_are_qualified_one_by_one() {
        assert_eq!(
            qualified("id, room_id,\n  seq", "m"),
            "m.id, m.room_id, m.seq"
        );
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }
}
