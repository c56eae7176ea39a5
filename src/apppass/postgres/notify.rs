//! PostgreSQL `LISTEN`: what the other proxy instances announce on
//! [`CHANNEL`] ends this instance's affected sessions (a revoked password's,
//! a disabled user's). Logins need no announcement: nothing is cached.

use super::tls::Rustls;
use super::CHANNEL;
use std::time::Duration;

/// Follows the other instances' announcements for as long as the store is
/// open: ends this instance's sessions of revoked passwords and disabled
/// users. A lost connection is opened again after a second.
pub(super) async fn listen(config: tokio_postgres::Config, tls: Rustls) {
    loop {
        if let Err(e) = listen_once(&config, &tls).await {
            tracing::warn!("app-password store: PostgreSQL LISTEN: {e}; retrying in 1 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &Rustls,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(tls.clone()).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message? {
                tokio_postgres::AsyncMessage::Notification(n) => {
                    let _ = tx.send(n.payload().to_string());
                }
                _ => continue,
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    while let Some(payload) = rx.recv().await {
        announced(&payload);
    }
    match driver.await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// What an announcement means for this instance's open sessions.
fn announced(payload: &str) {
    let ended = match payload.split_once(' ') {
        Some(("revoked", ids)) => {
            let ids: Vec<String> = ids.split(' ').map(str::to_string).collect();
            crate::apppass::end_sessions(&ids)
        }
        Some(("disabled", user)) => crate::apppass::end_user_sessions(user),
        _ => 0,
    };
    if ended > 0 {
        tracing::info!(
            sessions = ended,
            "app-password change on another instance: sessions ended"
        );
    }
}
