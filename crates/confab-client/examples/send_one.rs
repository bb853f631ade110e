//! Sends one chat message and exits.
//!
//! Usage:
//!   cargo run -p confab-client --example send_one -- HOST:PORT USER@DOMAIN PASSWORD TO MESSAGE
//! e.g. `... -- 127.0.0.1:5222 alice@localhost 'secret' bob@localhost 'hello'`.
//! STARTTLS is required; the server's certificate is checked against the system's trusted
//! roots (set `CONFAB_CA=path/to/cert.der` to trust exactly that certificate instead, e.g.
//! a self-signed confabd's `data/tls/cert.pem` converted to DER).

use confab_client::{ns, CertVerification, Client, ClientOptions, Config, Element, Jid};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("send_one: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, account, password, to, text] = args.as_slice() else {
        return Err("usage: send_one HOST:PORT USER@DOMAIN PASSWORD TO MESSAGE".into());
    };
    let account = Jid::new(account)?;
    let to = Jid::new(to)?;
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
    let client = Client::connect(Config::new(options)).await?;
    let message = Element::new("message", ns::CLIENT)
        .attr("to", to.as_str())
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text(text.clone()));
    // `send` returns once the message is written, so closing right after does not lose it.
    client.send(message).await?;
    client.close().await?;
    Ok(())
}
