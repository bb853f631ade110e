//! Stays online through lost connections: finds the server in DNS (SRV records, else the
//! domain's address), resumes the session when the server offers XEP-0198, or logs in
//! afresh and announces itself again; echoes chat messages meanwhile. Ctrl-C to stop.
//!
//! Usage:
//!   cargo run -p confab-client --example reconnecting_bot -- USER@DOMAIN PASSWORD [HOST:PORT]
//! Without HOST:PORT the server is looked up in DNS. The certificate is checked against the
//! system's trusted roots, or against exactly `CONFAB_CA=path/to/cert.der` if set.

use confab_client::{
    ns, CertVerification, Client, Config, Element, Endpoint, Event, Jid, Ping, Reconnect, Roster,
};
use std::process::ExitCode;
use tokio::sync::broadcast::error::RecvError;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reconnecting_bot: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (account, password, addr) = match args.as_slice() {
        [a, p] => (a, p, None),
        [a, p, addr] => (a, p, Some(addr.parse()?)),
        _ => return Err("usage: reconnecting_bot USER@DOMAIN PASSWORD [HOST:PORT]".into()),
    };
    let account = Jid::new(account)?;
    let user = account.node().ok_or("the account needs a user part")?;
    let mut config = Config::for_domain(account.domain().as_str(), user.as_str(), password);
    if let Some(addr) = addr {
        config.options.addr = addr;
        config.endpoint = Endpoint::Address;
    }
    config.options.resource = Some("bot".into());
    if let Ok(path) = std::env::var("CONFAB_CA") {
        config.options.verify = CertVerification::Roots(vec![std::fs::read(path)?]);
    }
    let roster = Roster::new();
    let config = config
        .reconnect(Reconnect::default())
        .module(roster.clone())
        .module(Ping::new());
    let client = Client::connect(config).await?;
    let mut events = client.events();
    roster.fetch(&client).await?;
    client.send(Element::new("presence", ns::CLIENT)).await?;
    println!("online as {}", client.jid());

    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = tokio::signal::ctrl_c() => {
                client.close().await?;
                return Ok(());
            }
        };
        match event {
            Ok(Event::Message(m)) => {
                let (Some(from), Some(body)) = (m.from, m.el.get_child("body", ns::CLIENT)) else {
                    continue;
                };
                if m.el.get_attr("type") == Some("error") {
                    continue; // never answer an error, or two bots loop forever
                }
                let echo = Element::new("message", ns::CLIENT)
                    .attr("to", from.as_str())
                    .attr("type", m.el.get_attr("type").unwrap_or("chat"))
                    .child(Element::new("body", ns::CLIENT).text(body.text_content()));
                // While reconnecting this waits for the new connection.
                client.send(echo).await?;
            }
            Ok(Event::Disconnected {
                reason,
                will_reconnect: true,
            }) => println!("connection lost ({reason:?}); reconnecting"),
            Ok(Event::Reconnected { resumed: true }) => println!("session resumed"),
            Ok(Event::Reconnected { resumed: false }) => {
                // A new session: the server forgot our presence (the roster module has
                // already asked for the roster again).
                client.send(Element::new("presence", ns::CLIENT)).await?;
                println!("new session as {}", client.jid());
            }
            Ok(Event::Unacknowledged(stanzas)) => {
                eprintln!("{} stanzas may not have arrived", stanzas.len());
            }
            Ok(Event::Disconnected { reason, .. }) => {
                return Err(format!("disconnected: {reason:?}").into());
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => eprintln!("reconnecting_bot: missed {n} events"),
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}
