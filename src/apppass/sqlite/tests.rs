//! The SQLite store: the shared store tests, and what only a file shows.

use super::*;
use std::os::unix::fs::PermissionsExt;

async fn open(dir: &Path, key: Option<&str>) -> SqliteStore {
    let settings = StoreSettings {
        hash_key: key.map(Secret::new),
        ..StoreSettings::default()
    };
    SqliteStore::open(&dir.join("sub/store.db"), &settings)
        .await
        .unwrap()
}

#[tokio::test]
async fn conformance() {
    let dir = tempfile::tempdir().unwrap();
    super::super::conformance::run(&open(dir.path(), None).await, "").await;
}

#[tokio::test]
async fn created_on_first_start_in_wal_with_no_password_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None).await;
    let (_, secret) = store.create("alice@example.com", "Phone").await.unwrap();
    let refresh = "a-refresh-token-kept-for-the-standing-check";
    let sign_in = SignIn {
        directory: "idp",
        user: "alice@example.com",
        refresh: Some(Secret::new(refresh)),
        valid_until: 2,
        next_check: 1,
    };
    store.signed_in(sign_in).await.unwrap();
    drop(store);
    let path = dir.path().join("sub/store.db");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Reopened: same generated key, the schema is not migrated twice.
    let store = open(dir.path(), None).await;
    let found = store.verify(secret.expose().as_bytes()).await.unwrap();
    assert!(found.is_some());
    let due = store.due("idp", 1, 2).await.unwrap();
    assert_eq!(due.first().map(|d| d.refresh.expose()), Some(refresh));
    let journal: String = store
        .run(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    drop(store);
    let bare: String = secret.expose().chars().filter(|&c| c != '-').collect();
    for file in std::fs::read_dir(dir.path().join("sub")).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        for needle in [secret.expose(), bare.as_str(), refresh] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()));
        }
    }
}

#[tokio::test]
async fn a_configured_key_is_the_hash_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = "a configured key of at least 32 characters";
    let store = open(dir.path(), Some(key)).await;
    let (_, secret) = store.create("alice@example.com", "Phone").await.unwrap();
    drop(store);
    // Without the key (the generated one instead) nothing matches.
    let store = open(dir.path(), None).await;
    let found = store.verify(secret.expose().as_bytes()).await.unwrap();
    assert!(found.is_none());
    let store = open(dir.path(), Some(key)).await;
    let found = store.verify(secret.expose().as_bytes()).await.unwrap();
    assert!(found.is_some());
}

#[tokio::test]
async fn a_file_of_the_first_schema_is_migrated_with_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/store.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(schema::MIGRATIONS[0]).unwrap();
        c.execute_batch(
            "PRAGMA user_version = 1;
             INSERT INTO app_password_users (owner, disabled, checked) VALUES ('alice@x', 1, 5);",
        )
        .unwrap();
    }
    let store = open(dir.path(), None).await;
    let version: i64 = store
        .run(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .await
        .unwrap();
    assert_eq!(version, schema::MIGRATIONS.len() as i64);
    let s = store.standing("alice@x").await.unwrap();
    assert_eq!((s.disabled, s.checked, s.valid_until), (true, false, None));
    let sign_in = SignIn {
        directory: "idp",
        user: "alice@x",
        refresh: Some(Secret::new("rt")),
        valid_until: 9,
        next_check: 1,
    };
    store.signed_in(sign_in).await.unwrap();
    let s = store.standing("alice@x").await.unwrap();
    assert_eq!(
        (s.disabled, s.checked, s.valid_until),
        (false, true, Some(9))
    );
}
