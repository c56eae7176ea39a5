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
        ca: None,
    };
    let store = apppass::open(&settings).await.expect("open");
    conformance::run(store.as_ref(), "").await;
    // A second instance on the same database: the schema is not migrated
    // twice, and it uses the first one's generated hash key.
    let (_, pw) = store.create("carol@example.com", "Phone").await.unwrap();
    let other = apppass::open(&settings).await.expect("open again");
    let found = other.verify(pw.expose().as_bytes()).await.unwrap();
    assert!(found.is_some());
    each_due_user_is_claimed_by_one_instance(store.as_ref(), other.as_ref()).await;
    // A wrong password for the database is an error, not a hang.
    let wrong = StoreSettings {
        password: Some(Secret::new("wrong")),
        ..settings
    };
    assert!(apppass::open(&wrong).await.is_err());
}

/// A server that takes only TLS: the store connects with `sslmode=require`
/// and the server's CA, and is refused with the wrong CA or without TLS.
#[tokio::test]
async fn postgresql_over_tls() {
    let pg = Postgres::start_tls();
    let settings = |query: &str, ca: Option<std::path::PathBuf>| StoreSettings {
        url: StoreUrl::Postgres(format!("{}{query}", pg.url())),
        password: Some(Secret::new(PASSWORD)),
        hash_key: None,
        ca,
    };
    let store = apppass::open(&settings("?sslmode=require", Some(pg.ca())))
        .await
        .expect("open over TLS");
    conformance::run(store.as_ref(), "tls-").await;
    // The default (prefer) also uses TLS when the server offers it.
    assert!(apppass::open(&settings("", Some(pg.ca()))).await.is_ok());
    let refused = apppass::open(&settings("?sslmode=disable", Some(pg.ca()))).await;
    assert!(refused.is_err(), "no TLS: pg_hba refuses");
    // Mozilla's roots do not know the test CA.
    let unknown = apppass::open(&settings("?sslmode=require", None)).await;
    let Err(e) = unknown else {
        panic!("a server certificate from an unknown CA was accepted")
    };
    assert!(e.to_string().contains("certificate"), "{e}");
}

/// Two instances claiming due standing checks at the same moment never
/// both take a user (both would use one refresh token: a rotating
/// provider takes the second use for a stolen token).
async fn each_due_user_is_claimed_by_one_instance(a: &dyn apppass::Store, b: &dyn apppass::Store) {
    let users: Vec<String> = (0..200).map(|i| format!("claim{i}@example.com")).collect();
    for user in &users {
        let sign_in = apppass::SignIn {
            directory: "claims",
            user,
            refresh: Some(Secret::new(format!("rt-{user}"))),
            valid_until: i64::MAX / 4,
            next_check: 100,
        };
        a.signed_in(sign_in).await.expect("signed in");
    }
    let mut mine = std::collections::BTreeSet::new();
    let mut theirs = std::collections::BTreeSet::new();
    for round in 0..5 {
        let now = 100 + round * 1000;
        let (x, y) = tokio::join!(
            a.due("claims", now, now + 1000),
            b.due("claims", now, now + 1000)
        );
        let (x, y) = (x.expect("due"), y.expect("due"));
        assert_eq!(
            x.len() + y.len(),
            users.len(),
            "round {round}: every user once"
        );
        for d in &x {
            assert_eq!(d.refresh.expose(), format!("rt-{}", d.user));
            mine.insert(d.user.clone());
        }
        theirs.extend(y.iter().map(|d| d.user.clone()));
        let both: Vec<_> = x
            .iter()
            .filter(|d| y.iter().any(|e| e.user == d.user))
            .collect();
        assert!(both.is_empty(), "round {round}: claimed twice");
    }
    assert_eq!(
        mine.len() + theirs.len() - mine.intersection(&theirs).count(),
        users.len()
    );
}
