//! The app-password store's behaviour (`apppass::conformance`) on both
//! stores: SQLite in a temporary file, PostgreSQL started for the test
//! (Debian's `postgresql`; missing, the test fails).

mod common;

use common::postgres::{Postgres, PASSWORD};
use oauthbearer_proxy::apppass::{self, conformance};
use oauthbearer_proxy::config::{StoreSettings, StoreUrl};
use oauthbearer_proxy::secret::Secret;

#[tokio::test]
async fn sqlite_passes_the_store_tests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = StoreSettings {
        url: StoreUrl::Sqlite(dir.path().join("store.db")),
        ..StoreSettings::default()
    };
    let store = apppass::open(&settings).await.expect("open");
    conformance::run(store.as_ref(), "").await;
}

#[tokio::test]
async fn postgresql_passes_the_store_tests() {
    let pg = Postgres::start();
    let settings = StoreSettings {
        url: StoreUrl::Postgres(pg.url()),
        password: Some(Secret::new(PASSWORD)),
        hash_key: None,
    };
    let store = apppass::open(&settings).await.expect("open");
    conformance::run(store.as_ref(), "").await;
    // A second instance on the same database: the schema is not migrated
    // twice, and it uses the first one's generated hash key.
    let (_, pw) = store.create("carol@example.com", "Phone").await.unwrap();
    let other = apppass::open(&settings).await.expect("open again");
    let found = other.verify(pw.expose().as_bytes()).await.unwrap();
    assert!(found.is_some());
    // A wrong password for the database is an error, not a hang.
    let wrong = StoreSettings {
        password: Some(Secret::new("wrong")),
        ..settings
    };
    assert!(apppass::open(&wrong).await.is_err());
}
