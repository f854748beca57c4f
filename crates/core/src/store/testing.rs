//! A fresh, empty database for each test, on the database the test run names.
//!
//! `ROOST_TEST_DATABASE` picks `sqlite` (default) or `postgres`; for
//! PostgreSQL, `ROOST_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) is where test databases
//! are created. When PostgreSQL is asked for and does not answer, the test fails.

use std::path::PathBuf;

use sqlx::{Connection, PgConnection};

use super::Backend;

/// Which database this test run uses.
pub fn backend() -> Backend {
    match std::env::var("ROOST_TEST_DATABASE").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("ROOST_TEST_DATABASE must be sqlite or postgres, not {other:?}"),
    }
}

/// A database for one test. SQLite files live in `dir`; PostgreSQL
/// databases are named `roost_test_<random>` and dropped by `.ci/run`.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    match backend() {
        Backend::Sqlite => {
            let path: PathBuf = dir.join("roost.db");
            format!("sqlite://{}?mode=rwc", path.display())
        }
        Backend::Postgres => fresh_postgres_url().await,
    }
}

/// A new, empty PostgreSQL database on the test server, whatever the run's backend.
pub async fn fresh_postgres_url() -> String {
    let admin = std::env::var("ROOST_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("roost_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} does not answer: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
    let _ = conn.close().await;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}
