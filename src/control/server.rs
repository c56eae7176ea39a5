//! The control socket in the running proxy.

use super::{Reply, Request, Target, MAX_REQUEST};
use crate::sessions::{Reason, Registry, Selector};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// The bound socket; its file is removed when this is dropped.
pub struct Socket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the control socket at `path` (mode 0600). A stale socket file
/// left by a previous run is replaced; one another process listens on is not.
pub async fn bind(path: &Path) -> Result<Socket, String> {
    let shown = path.display();
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(format!(
                "`server.control-socket` {shown}: another process is listening on it"
            ));
        }
        std::fs::remove_file(path).map_err(|e| {
            format!("`server.control-socket` {shown}: cannot remove the old socket: {e}")
        })?;
    }
    let listener =
        UnixListener::bind(path).map_err(|e| format!("`server.control-socket` {shown}: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("`server.control-socket` {shown}: cannot set its mode: {e}"))?;
    Ok(Socket {
        listener,
        path: path.to_path_buf(),
    })
}

/// Serves the control socket until the task is dropped.
pub async fn serve(socket: Socket, registry: Arc<Registry>) {
    let own_uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    loop {
        let stream = match socket.listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("control socket: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let uid = stream.peer_cred().ok().map(|c| c.uid());
        if !(uid == Some(0) || (uid.is_some() && uid == own_uid)) {
            tracing::warn!(uid = ?uid, "control socket: refused a connection from another user");
            continue;
        }
        let registry = registry.clone();
        tokio::spawn(async move {
            let work = one(stream, &registry);
            if tokio::time::timeout(Duration::from_secs(10), work)
                .await
                .is_err()
            {
                tracing::debug!("control socket: a client took too long");
            }
        });
    }
}

/// One request, one reply.
async fn one(stream: UnixStream, registry: &Registry) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    let reply = match reader.read_line(&mut line).await {
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Ok(request) => answer(request, registry).await,
            Err(e) => Reply::Error {
                error: format!("not a request: {e}"),
            },
        },
        Err(e) => Reply::Error {
            error: format!("cannot read the request: {e}"),
        },
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    let _ = write.write_all(&out).await;
    let _ = write.shutdown().await;
}

/// What a request does.
pub async fn answer(request: Request, registry: &Registry) -> Reply {
    match request {
        Request::AppPasswordsList { user } => match crate::apppass::installed() {
            Some(store) => match (store.list(&user).await, store.standing(&user).await) {
                (Ok(app_passwords), Ok(standing)) => Reply::AppPasswords {
                    app_passwords,
                    standing,
                },
                (Err(e), _) | (_, Err(e)) => Reply::Error {
                    error: e.to_string(),
                },
            },
            None => no_store(),
        },
        Request::AppPasswordsCreate { user, name } => match crate::apppass::installed() {
            Some(store) => match store.create(&user, &name).await {
                Ok((app_password, password)) => {
                    tracing::info!(user, name, "app password created by the administrator");
                    Reply::Created {
                        app_password,
                        password: password.expose().to_string(),
                    }
                }
                Err(e) => Reply::Error {
                    error: e.to_string(),
                },
            },
            None => no_store(),
        },
        Request::AppPasswordsRevoke { user, name } => match crate::apppass::installed() {
            Some(store) => revoke(store.as_ref(), registry, &user, name.as_deref()).await,
            None => no_store(),
        },
        Request::Who => Reply::Sessions {
            sessions: registry.list(&Selector::All),
        },
        Request::Kick(target) => match selector(&target) {
            Ok(selector) => {
                let ended = registry.end(&selector, Reason::Kicked);
                tracing::info!(
                    ?target,
                    sessions = ended,
                    "kick: sessions ended by the administrator"
                );
                Reply::Ended { ended }
            }
            Err(error) => Reply::Error { error },
        },
    }
}

fn no_store() -> Reply {
    Reply::Error {
        error: "no listener takes app passwords (`app-passwords = true`), so no store is open"
            .into(),
    }
}

/// Revokes the app password called `name` (or with that id), or all of
/// the user's; the store ends the sessions that used them.
async fn revoke(
    store: &dyn crate::apppass::Store,
    registry: &Registry,
    user: &str,
    name: Option<&str>,
) -> Reply {
    let list = match store.list(user).await {
        Ok(list) => list,
        Err(e) => {
            return Reply::Error {
                error: e.to_string(),
            }
        }
    };
    let chosen: Vec<String> = match name {
        None => list.into_iter().map(|p| p.id).collect(),
        Some(name) => match list.into_iter().find(|p| p.name == name || p.id == name) {
            Some(p) => vec![p.id],
            None => {
                return Reply::Error {
                    error: format!("{user} has no app password called {name:?}"),
                }
            }
        },
    };
    let sessions_ended = registry.list(&Selector::AppPasswords(chosen.clone())).len();
    let id = match (name, chosen.first()) {
        (Some(_), Some(id)) => Some(id.as_str()),
        _ => None,
    };
    match store.revoke(user, id).await {
        Ok(revoked) => {
            tracing::info!(
                user,
                revoked,
                sessions_ended,
                "app passwords revoked by the administrator"
            );
            Reply::Revoked {
                revoked,
                sessions_ended,
            }
        }
        Err(e) => Reply::Error {
            error: e.to_string(),
        },
    }
}

fn selector(target: &Target) -> Result<Selector, String> {
    match (&target.user, &target.sub, target.ip) {
        (Some(u), None, None) if !u.is_empty() => Ok(Selector::User(u.clone())),
        (None, Some(s), None) if !s.is_empty() => Ok(Selector::Sub(s.clone())),
        (None, None, Some(ip)) => Ok(Selector::Ip(ip)),
        _ => Err("kick needs exactly one of: a user, --sub SUB, --ip ADDR".into()),
    }
}
