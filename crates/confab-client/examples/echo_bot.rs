//! Echoes every chat message back to its sender, answers pings, until Ctrl-C.
//!
//! Usage:
//!   cargo run -p confab-client --example echo_bot -- HOST:PORT USER@DOMAIN PASSWORD
//! e.g. `... -- 127.0.0.1:5222 echo@localhost 'secret'`, then message echo@localhost.
//! The server's certificate is checked against the system's trusted roots, or against
//! exactly `CONFAB_CA=path/to/cert.der` if set.

use confab_client::{
    ns, CertVerification, Client, ClientOptions, Config, Element, Event, Jid, Ping, Roster,
};
use std::process::ExitCode;
use tokio::sync::broadcast::error::RecvError;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo_bot: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, account, password] = args.as_slice() else {
        return Err("usage: echo_bot HOST:PORT USER@DOMAIN PASSWORD".into());
    };
    let account = Jid::new(account)?;
    let user = account.node().ok_or("the account needs a user part")?;
    let mut options = ClientOptions::new(
        addr.parse()?,
        account.domain().as_str(),
        user.as_str(),
        password,
    );
    options.resource = Some("echo".into());
    if let Ok(path) = std::env::var("CONFAB_CA") {
        options.verify = CertVerification::Roots(vec![std::fs::read(path)?]);
    }
    let roster = Roster::new();
    let config = Config::new(options)
        .module(roster.clone())
        .module(Ping::new());
    let client = Client::connect(config).await?;
    // Subscribe before going online, so no message is missed.
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
                    continue; // chat states, receipts, … carry no body
                };
                if m.el.get_attr("type") == Some("error") {
                    continue; // never answer an error, or two bots loop forever
                }
                let echo = Element::new("message", ns::CLIENT)
                    .attr("to", from.as_str())
                    .attr("type", m.el.get_attr("type").unwrap_or("chat"))
                    .child(Element::new("body", ns::CLIENT).text(body.text_content()));
                client.send(echo).await?;
                println!("echoed to {from}");
            }
            Ok(Event::Disconnected { reason, .. }) => {
                return Err(format!("disconnected: {reason:?}").into());
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => eprintln!("echo_bot: missed {n} events"),
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}
