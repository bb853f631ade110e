//! `confab`: the terminal chat client (no subcommand, or `chat`) and commands for scripts
//! (`register`, `send`, `send-file`, `listen`). Argument parsing only; the work is in the modules.

mod account;
mod commands;
mod emoji;
mod tui;

use account::AccountArgs;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The Confab chat client.
#[derive(Parser, Debug)]
#[command(name = "confab", version, about)]
struct Cli {
    #[command(flatten)]
    account: AccountArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The interactive terminal client (the default).
    Chat,
    /// Creates the account (--jid) on its server with in-band registration.
    Register,
    /// Sends one chat message and exits.
    Send {
        /// The recipient, user@domain.
        to: String,
        /// The text.
        message: String,
    },
    /// Uploads a file to the server's HTTP upload service (XEP-0363) and sends its URL to
    /// JID (as text and as jabber:x:oob, how other clients show files); prints the URL.
    SendFile {
        /// The recipient, user@domain.
        to: String,
        /// The file to send.
        path: std::path::PathBuf,
    },
    /// Prints incoming one-to-one messages, one per line, until Ctrl-C.
    Listen {
        /// One JSON object per message: type, from, id, body, thread, replaces, delayed,
        /// oob_url (a file's URL).
        #[arg(long)]
        json: bool,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let interactive = matches!(cli.command, None | Some(Command::Chat));
    // Logs go to stderr, never over the terminal UI (RUST_LOG turns them on).
    if !interactive {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
            )
            .with_writer(std::io::stderr)
            .try_init();
    }
    let result = match &cli.command {
        None | Some(Command::Chat) => tui::run(&cli.account).await,
        Some(Command::Register) => commands::register(&cli.account).await,
        Some(Command::Send { to, message }) => commands::send(&cli.account, to, message).await,
        Some(Command::SendFile { to, path }) => commands::send_file(&cli.account, to, path).await,
        Some(Command::Listen { json, count }) => {
            commands::listen(&cli.account, *json, *count).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confab: {e}");
            ExitCode::FAILURE
        }
    }
}
