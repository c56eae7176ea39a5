//! The behaviour every store must show, run against each of them: SQLite
//! in the unit tests, PostgreSQL in `tests/apppass_store.rs`. Public (and
//! hidden) only so the integration tests can run it.

use super::{password, SignIn, Standing, Store};
use crate::secret::Secret;

/// Runs the whole suite on `store`, with user names under `prefix` (so
/// runs on a shared database do not meet).
pub async fn run(store: &dyn Store, prefix: &str) {
    let alice = format!("{prefix}alice@example.com");
    let bob = format!("{prefix}bob@example.com");
    let (phone, secret) = store.create(&alice, "Phone").await.expect("create");
    assert!(password::looks_like(secret.expose().as_bytes()));
    assert_eq!(phone.user, alice);
    assert_eq!(phone.name, "Phone");
    assert!(phone.last_used.is_none());
    assert!(
        store.create(&alice, "Phone").await.is_err(),
        "a second password of the same name"
    );
    assert!(store.create(&alice, "").await.is_err(), "an empty name");
    let (laptop, laptop_secret) = store.create(&alice, "Laptop").await.expect("create");
    let (bobs, bob_secret) = store.create(&bob, "Phone").await.expect("other user");
    assert_ne!(phone.id, laptop.id);

    found_by_any_spelling(store, &secret, &phone, &bob, &bob_secret).await;
    last_use(store, &alice, &phone, &laptop).await;

    // Revoking one leaves the others.
    assert_eq!(store.revoke(&alice, Some(&phone.id)).await.unwrap(), 1);
    assert_eq!(store.revoke(&alice, Some(&phone.id)).await.unwrap(), 0);
    assert_eq!(
        store.revoke(&alice, Some(&bobs.id)).await.unwrap(),
        0,
        "not alice's"
    );
    assert!(store
        .verify(secret.expose().as_bytes())
        .await
        .unwrap()
        .is_none());
    let still = store
        .verify(laptop_secret.expose().as_bytes())
        .await
        .unwrap();
    assert!(still.is_some());

    // The standing check's verdict.
    assert_eq!(
        store.standing(&alice).await.unwrap(),
        Standing::default(),
        "unchecked users stand"
    );
    store.set_standing(&alice, false).await.unwrap();
    assert!(store.standing(&alice).await.unwrap().disabled);
    let refused = store
        .verify(laptop_secret.expose().as_bytes())
        .await
        .unwrap();
    assert!(refused.expect("still stored").disabled);
    let other = store.verify(bob_secret.expose().as_bytes()).await.unwrap();
    assert!(!other.expect("bob's").disabled, "only alice is disabled");
    store.set_standing(&alice, true).await.unwrap();
    let back = store
        .verify(laptop_secret.expose().as_bytes())
        .await
        .unwrap();
    assert!(!back.expect("stored").disabled);

    // Revoking all of a user's.
    store.create(&alice, "Tablet").await.unwrap();
    assert_eq!(store.revoke(&alice, None).await.unwrap(), 2);
    assert!(store.list(&alice).await.unwrap().is_empty());
    assert_eq!(store.list(&bob).await.unwrap().len(), 1);
    store.revoke(&bob, None).await.unwrap();
    refresh_tokens(store, prefix).await;
}

/// The standing check's side of the store: refresh tokens kept for the
/// directory signed in with, claimed once per interval, rotated, dropped
/// when refused; the validity a login sees.
async fn refresh_tokens(store: &dyn Store, prefix: &str) {
    let (carol, dave) = (format!("{prefix}carol@x"), format!("{prefix}dave@x"));
    let dir = format!("{prefix}idp");
    let (_, secret) = store.create(&carol, "Phone").await.unwrap();
    let sign_in = |user, refresh: Option<&str>, until| SignIn {
        directory: &dir,
        user,
        refresh: refresh.map(Secret::new),
        valid_until: until,
        next_check: 1_000,
    };
    store
        .signed_in(sign_in(&carol, Some("rt-1"), 5_000))
        .await
        .unwrap();
    store.signed_in(sign_in(&dave, None, 9_000)).await.unwrap();
    let s = store.standing(&carol).await.unwrap();
    assert_eq!(
        (s.disabled, s.checked, s.valid_until),
        (false, true, Some(5_000))
    );
    let d = store.standing(&dave).await.unwrap();
    assert_eq!(
        (d.checked, d.valid_until),
        (false, Some(9_000)),
        "no refresh token"
    );

    assert!(
        store.due(&dir, 999, 2_000).await.unwrap().is_empty(),
        "not yet due"
    );
    assert!(store.due("another", 1_000, 2_000).await.unwrap().is_empty());
    let due = store.due(&dir, 1_000, 2_000).await.unwrap();
    let claimed: Vec<_> = due
        .iter()
        .map(|d| (d.user.as_str(), d.refresh.expose()))
        .collect();
    assert_eq!(
        claimed,
        [(carol.as_str(), "rt-1")],
        "only carol has a token"
    );
    assert!(
        store.due(&dir, 1_500, 2_500).await.unwrap().is_empty(),
        "claimed until 2000"
    );

    store
        .confirmed(&carol, Some(Secret::new("rt-2")), 7_000)
        .await
        .unwrap();
    let found = store
        .verify(secret.expose().as_bytes())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.valid_until, Some(7_000));
    assert!(!found.lapsed(6_999) && found.lapsed(7_000));
    let due = store.due(&dir, 2_000, 3_000).await.unwrap();
    assert_eq!(
        due.first().map(|d| d.refresh.expose()),
        Some("rt-2"),
        "rotated"
    );

    // Refused: the token is forgotten, nothing more is claimed, a new
    // sign-in lifts it.
    store.set_standing(&carol, false).await.unwrap();
    let s = store.standing(&carol).await.unwrap();
    assert!(s.disabled && !s.checked);
    assert!(store.due(&dir, 10_000, 11_000).await.unwrap().is_empty());
    store
        .signed_in(sign_in(&carol, Some("rt-3"), 20_000))
        .await
        .unwrap();
    let found = store
        .verify(secret.expose().as_bytes())
        .await
        .unwrap()
        .unwrap();
    assert!(!found.disabled && !found.lapsed(19_999));
    store.revoke(&carol, None).await.unwrap();
}

/// Found by the password, in any spelling of its shape; nothing else is.
async fn found_by_any_spelling(
    store: &dyn Store,
    secret: &crate::secret::Secret,
    phone: &super::AppPassword,
    bob: &str,
    bob_secret: &crate::secret::Secret,
) {
    let alice = &phone.user;
    let found = store.verify(secret.expose().as_bytes()).await.unwrap();
    let found = found.expect("the password is found");
    assert_eq!(found.password.id, phone.id);
    assert_eq!(&found.password.user, alice);
    assert!(!found.disabled);
    let bare: String = secret.expose().chars().filter(|&c| c != '-').collect();
    let upper = bare.to_uppercase();
    for spelling in [bare.as_str(), upper.as_str()] {
        let again = store.verify(spelling.as_bytes()).await.unwrap();
        assert_eq!(again.map(|v| v.password.id), Some(phone.id.clone()));
    }
    let stranger = password::generate().unwrap();
    assert!(store
        .verify(stranger.expose().as_bytes())
        .await
        .unwrap()
        .is_none());
    assert!(store
        .verify(b"not an app password")
        .await
        .unwrap()
        .is_none());
    let bob_found = store.verify(bob_secret.expose().as_bytes()).await.unwrap();
    assert_eq!(bob_found.map(|v| v.password.user).as_deref(), Some(bob));
}

/// The last use is recorded and listed.
async fn last_use(
    store: &dyn Store,
    alice: &str,
    phone: &super::AppPassword,
    laptop: &super::AppPassword,
) {
    store.touch(&phone.id, "192.0.2.7", "imap").await.unwrap();
    let list = store.list(alice).await.unwrap();
    assert_eq!(list.len(), 2);
    let used = list.iter().find(|p| p.id == phone.id).unwrap();
    let last = used.last_used.as_ref().expect("last use recorded");
    assert_eq!(
        (last.client.as_str(), last.protocol.as_str()),
        ("192.0.2.7", "imap")
    );
    assert!(list
        .iter()
        .any(|p| p.id == laptop.id && p.last_used.is_none()));
}
