//! The scriptable commands: `register`, `send`, `send-file` and `listen`. Each is a thin use of the SDK.

use crate::account::AccountArgs;
use crate::emoji;
use confab_client::{
    register_account, Chat, ChatEvent, ChatMessage, Client, Config, Event, Jid, Presence, Status,
    Upload,
};
use std::io::Write;
use tokio::sync::broadcast::error::RecvError;

/// `confab register`: creates the account in-band (XEP-0077).
pub async fn register(args: &AccountArgs) -> Result<(), String> {
    let account = args.account()?;
    let config = args.config(&account)?;
    register_account(&config, &[])
        .await
        .map_err(|e| format!("registering {}: {e}", account.jid))?;
    println!("registered {}", account.jid);
    Ok(())
}

/// `confab send JID MESSAGE`: logs in, sends one chat message, logs out.
pub async fn send(args: &AccountArgs, to: &str, message: &str) -> Result<(), String> {
    let to = Jid::new(to).map_err(|e| format!("recipient {to}: {e}"))?;
    let account = args.account()?;
    let chat = Chat::new();
    let config = args.config(&account)?.module(chat.clone());
    let client = connect(config).await?;
    // `send` returns once the message is written, so closing right after loses nothing.
    let sent = chat.send(&client, &to, message).await;
    let _ = client.close().await;
    sent.map(|_| ()).map_err(|e| format!("sending: {e}"))
}

/// `confab send-file JID PATH`: uploads the file (XEP-0363), sends its URL to JID with
/// `jabber:x:oob`, prints the URL.
pub async fn send_file(args: &AccountArgs, to: &str, path: &std::path::Path) -> Result<(), String> {
    let to = Jid::new(to).map_err(|e| format!("recipient {to}: {e}"))?;
    let account = args.account()?;
    let config = args.config(&account)?;
    // HTTPS upload URLs are checked as the XMPP connection is (--trust-cert).
    let upload = Upload::new(config.options.verify.clone());
    let client = connect(config).await?;
    let sent = upload.send_file(&client, &to, path).await;
    let _ = client.close().await;
    let url = sent.map_err(|e| format!("sending {}: {e}", path.display()))?;
    println!("{url}");
    Ok(())
}

/// Logs in, with the error said plainly.
pub async fn connect(config: Config) -> Result<Client, String> {
    let who = format!("{}@{}", config.options.username, config.options.domain);
    Client::connect(config)
        .await
        .map_err(|e| format!("logging in as {who}: {e}"))
}

/// One received message as a line of JSON (`--json`).
pub fn message_json(m: &ChatMessage) -> String {
    serde_json::json!({
        "type": "chat",
        "from": m.from.as_ref().map(|j| j.to_string()),
        "id": m.id,
        "body": m.body,
        "thread": m.thread,
        "replaces": m.replaces,
        "delayed": m.delayed,
        "oob_url": m.oob_url,
    })
    .to_string()
}

/// One received message as a line for people: sender and text with emoji.
pub fn message_line(m: &ChatMessage) -> String {
    let from = m
        .from
        .as_ref()
        .map(|j| j.to_bare().to_string())
        .unwrap_or_default();
    let body = m.body.as_deref().unwrap_or_default();
    match &m.oob_url {
        // A file: its URL, once, even when the body repeats it (as clients send it).
        Some(url) if body.trim() == url || body.is_empty() => format!("{from}: [file] {url}"),
        Some(url) => format!("{from}: {} [file] {url}", emoji::render(body)),
        None => format!("{from}: {}", emoji::render(body)),
    }
}

/// `confab listen`: logs in available and prints each incoming one-to-one message until
/// Ctrl-C, the connection ends, or `count` messages were printed.
pub async fn listen(args: &AccountArgs, json: bool, count: Option<u64>) -> Result<(), String> {
    let account = args.account()?;
    let chat = Chat::new();
    let presence = Presence::new();
    let config = args
        .config(&account)?
        .module(chat.clone())
        .module(presence.clone());
    let client = connect(config).await?;
    // Subscribed before going available, so nothing sent right after is missed.
    let mut messages = chat.events();
    let mut events = client.events();
    presence
        .set(&client, Status::available())
        .await
        .map_err(|e| format!("going online: {e}"))?;
    eprintln!("listening as {}", client.jid());
    let mut printed = 0u64;
    let mut stdout = std::io::stdout();
    while count.is_none_or(|c| printed < c) {
        tokio::select! {
            m = messages.recv() => match m {
                Ok(ChatEvent::Message(m)) => {
                    let line = if json { message_json(&m) } else { message_line(&m) };
                    // Flushed per line so a pipe sees each message as it comes.
                    if writeln!(stdout, "{line}").and_then(|_| stdout.flush()).is_err() {
                        break; // the reader went away
                    }
                    printed += 1;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => eprintln!("confab: missed {n} messages (too slow)"),
                Err(RecvError::Closed) => return Err("the client stopped".into()),
            },
            e = events.recv() => match e {
                Ok(Event::Disconnected { reason, will_reconnect: false, .. }) => {
                    return Err(format!("disconnected: {reason:?}"));
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Err("the client stopped".into()),
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let _ = client.close().await;
    Ok(())
}
