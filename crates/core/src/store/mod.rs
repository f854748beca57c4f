//! The one store: every query runs on SQLite (the default) and PostgreSQL.
//!
//! Queries are written once in the SQL both databases share, with `$n`
//! placeholders, and run through sqlx's `Any` driver. Values cross the driver
//! as text and integers only (flags are 0 or 1): ids are UUID text, times are Unix
//! milliseconds. Each database has its own migrations folder.

mod calls;
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
pub use events::EventRow;
pub use files::{AttachmentRow, FileRow, RemovedFile};
pub use messages::{MessageRow, NewMessage, Sent};
pub use rooms::{Departure, InviteRow, MemberRow, RoomRow};
pub use search::{SearchPage, SearchRow, SearchScope};
pub use sessions::{RefreshOutcome, SessionRow};
pub use users::{NewUser, UserFilter, UserRow};

use std::str::FromStr;
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
    pub async fn ready(&self) -> Result<bool> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_all(&self.pool)
                .await?;
        Ok(self
            .migrator()
            .iter()
            .all(|m| m.migration_type.is_down_migration() || applied.contains(&m.version)))
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
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _guard: guard })
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
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
