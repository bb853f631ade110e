//! Uploads a file to the server's HTTP upload service (XEP-0363) and sends its URL to a
//! contact (as the body and as `jabber:x:oob`, how other clients show a file).
//!
//! Usage:
//!   cargo run -p confab-client --example upload_file -- HOST:PORT USER@DOMAIN PASSWORD TO FILE
//! e.g. `... -- 127.0.0.1:5222 alice@localhost 'secret' bob@localhost ./photo.jpg`.
//! The certificate (of the XMPP server and of an https upload URL) is checked against the
//! system's trusted roots; set `CONFAB_CA=path/to/cert.der` to trust exactly that one instead.

use confab_client::{CertVerification, Client, ClientOptions, Config, Jid, Upload};
use std::path::Path;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upload_file: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, account, password, to, file] = args.as_slice() else {
        return Err("usage: upload_file HOST:PORT USER@DOMAIN PASSWORD TO FILE".into());
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
    // The same trust for HTTP as for XMPP.
    let upload = Upload::new(options.verify.clone());
    let client = Client::connect(Config::new(options)).await?;
    let service = upload.discover(&client).await?;
    eprintln!(
        "upload service {} (at most {:?} bytes)",
        service.jid, service.max_file_size
    );
    let url = upload.send_file(&client, &to, Path::new(file)).await?;
    println!("{url}");
    client.close().await?;
    Ok(())
}
