//! The operator's line to a running server: a Unix socket in the data directory, readable
//! only by the server's own user, through which `confabd user del` deletes an account on the
//! running server so its live sessions end too (as `prosodyctl` and `ejabberdctl` talk to
//! the running server). Without a running server the CLI works on the database directly.
//!
//! The protocol is one request line and one reply line: `user-del JID` answers `ok` or
//! `error: why`.

use crate::accounts::{self, AccountError};
use crate::config::Config;
use crate::ServerCtx;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::task::JoinHandle;

/// Longest request line accepted.
const MAX_LINE: u64 = 4096;

/// In a directory of its own that only the server's user can enter, so the socket is never
/// reachable by others, not even between its creation and a permission change.
pub fn socket_path(config: &Config) -> PathBuf {
    config.server.data_dir.join("control").join("confabd.sock")
}

/// Starts listening; a stale socket left by a crashed server is replaced, a live one means
/// another server runs on this data directory.
#[cfg(unix)]
pub(crate) async fn listen(ctx: ServerCtx) -> std::io::Result<JoinHandle<()>> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let path = socket_path(&ctx.config);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(&path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} belongs to a running server", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tracing::debug!(path = %path.display(), "control socket listening");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let (r, mut w) = conn.into_split();
                let mut line = String::new();
                let mut reader = BufReader::new(r.take(MAX_LINE));
                let read = reader.read_line(&mut line);
                let reply = match tokio::time::timeout(Duration::from_secs(10), read).await {
                    Ok(Ok(_)) => handle(&ctx, line.trim_end()).await,
                    _ => "error: no request".to_string(),
                };
                let _ = w.write_all(format!("{reply}\n").as_bytes()).await;
            });
        }
    }))
}

#[cfg(not(unix))]
pub(crate) async fn listen(_ctx: ServerCtx) -> std::io::Result<JoinHandle<()>> {
    Ok(tokio::spawn(async {}))
}

/// Removes the socket file when the server stops.
pub(crate) fn remove(config: &Config) {
    let _ = std::fs::remove_file(socket_path(config));
}

async fn handle(ctx: &ServerCtx, line: &str) -> String {
    let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "user-del" => {
            let jid = match accounts::parse_account(arg, &ctx.config.server.domains) {
                Ok(j) => j,
                Err(e) => return format!("error: {e}"),
            };
            match accounts::delete_account_live(ctx, &jid).await {
                Ok(()) => {
                    tracing::info!(account = %jid, "account deleted by the operator");
                    "ok".into()
                }
                Err(AccountError::NotFound) => "error: no such account".into(),
                Err(e) => format!("error: {e}"),
            }
        }
        _ => "error: unknown request".into(),
    }
}

/// Sends a request to the running server of this configuration. `Ok(None)`: no server is
/// running there; `Ok(Some(reply))`: its answer (`ok` or `error: ...`).
#[cfg(unix)]
pub async fn request(config: &Config, line: &str) -> Result<Option<String>, String> {
    let path = socket_path(config);
    let conn = match tokio::net::UnixStream::connect(&path).await {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let (r, mut w) = conn.into_split();
    w.write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    let mut reader = BufReader::new(r.take(MAX_LINE));
    let read = reader.read_line(&mut reply);
    match tokio::time::timeout(Duration::from_secs(60), read).await {
        Ok(Ok(_)) => Ok(Some(reply.trim_end().to_string())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the running server did not answer".into()),
    }
}

#[cfg(not(unix))]
pub async fn request(_config: &Config, _line: &str) -> Result<Option<String>, String> {
    Ok(None)
}
