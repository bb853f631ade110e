//! Joins a multi-user chat room, prints what happens there, and says each line typed on
//! standard input to the room; end input (Ctrl-D) to leave.
//!
//! Usage:
//!   cargo run -p confab-client --example join_room -- HOST:PORT USER@DOMAIN PASSWORD ROOM NICK
//! e.g. `... -- 127.0.0.1:5222 alice@localhost 'secret' tea@conference.localhost Alice`.
//! A room that does not exist yet is created (where the service allows) with its default
//! configuration. `CONFAB_ROOM_PASSWORD` joins a password-protected room; certificates as
//! in `send_one` (`CONFAB_CA`).

use confab_client::{
    BareJid, CertVerification, Client, ClientOptions, Config, History, Jid, JoinOptions, Muc,
    MucEvent,
};
use std::process::ExitCode;
use tokio::io::AsyncBufReadExt;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("join_room: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, account, password, room, nick] = args.as_slice() else {
        return Err("usage: join_room HOST:PORT USER@DOMAIN PASSWORD ROOM NICK".into());
    };
    let account = Jid::new(account)?;
    let room = BareJid::new(room)?;
    let user = account.node().ok_or("the account needs a user part")?;
    let mut options = ClientOptions::new(
        addr.parse()?,
        account.domain().as_str(),
        user.as_str(),
        password,
    );
    if let Ok(path) = std::env::var("CONFAB_CA") {
        options.verify = CertVerification::Roots(vec![std::fs::read(path)?]);
    }
    let muc = Muc::new();
    let mut events = muc.events();
    let client = Client::connect(Config::new(options).module(muc.clone())).await?;

    let joined = muc
        .join(
            &client,
            &room,
            JoinOptions {
                password: std::env::var("CONFAB_ROOM_PASSWORD").ok(),
                history: Some(History {
                    max_stanzas: Some(20),
                    seconds: None,
                }),
                ..JoinOptions::new(nick.clone())
            },
        )
        .await?;
    if joined.created {
        muc.accept_default_config(&client, &room).await?;
        println!("* created {room}");
    }
    let present: Vec<&str> = joined.occupants.iter().map(|o| o.nick.as_str()).collect();
    println!(
        "* joined {room} as {} ({:?}); also here: {}",
        joined.nick,
        joined.me.role,
        present.join(", ")
    );

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line? {
                Some(text) if !text.trim().is_empty() => {
                    muc.send(&client, &room, &text).await?;
                }
                Some(_) => {}
                None => break,
            },
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if print(&ev) {
                        break;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    println!("* ({n} events missed)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    if muc.nick(&room).is_some() {
        muc.leave(&client, &room).await?;
    }
    client.close().await?;
    Ok(())
}

/// Prints an event; true when we are out of the room.
fn print(ev: &MucEvent) -> bool {
    match ev {
        MucEvent::Message(m) if !m.own => {
            let when = if m.delayed.is_some() {
                " (earlier)"
            } else {
                ""
            };
            println!("<{}>{when} {}", m.nick.as_deref().unwrap_or("room"), m.body);
        }
        MucEvent::Subject { subject, nick, .. } if !subject.is_empty() => {
            println!(
                "* subject: {subject} (by {})",
                nick.as_deref().unwrap_or("room")
            );
        }
        MucEvent::OccupantJoined { occupant, .. } => println!("* {} joined", occupant.nick),
        MucEvent::OccupantLeft { nick, reason, .. } => println!("* {nick} left: {reason:?}"),
        MucEvent::NickChanged { old, new, .. } => println!("* {old} is now {new}"),
        MucEvent::Left { reason, .. } => {
            println!("* out of the room: {reason:?}");
            return true;
        }
        MucEvent::Error { error, .. } => println!("* refused: {error}"),
        _ => {}
    }
    false
}
