//! `confabd`: the Confab XMPP server and its operator commands (like prosodyctl/ejabberdctl).

mod import;

use clap::{Parser, Subcommand};
use confab_server::config::Config;
use confab_server::{accounts, open_stores, Server};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "confabd", version, about = "The Confab XMPP server")]
struct Cli {
    /// Configuration file (TOML). Without one, built-in defaults apply; every key can also be
    /// set as CONFABD_<SECTION>__<KEY> in the environment.
    #[arg(long, short, env = "CONFABD_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Run,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Check the configuration, certificate, ports and storage, then exit.
    Check,
    /// Manage registration invitations (`[registration] policy = "invite"`).
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Apply the storage migrations the configured database lacks (the server also applies
    /// them at start), and list what was applied.
    Migrate {
        /// List the pending migrations without applying anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write every account and its data to an XEP-0227 document (moving out, backups,
    /// moving between backends).
    Export(import::ExportArgs),
    /// Read XEP-0227 documents (from Confab, Prosody, ejabberd), or an Openfire database
    /// (`--from openfire mysql://…`), into the configured storage; each user whole or not
    /// at all.
    Import(import::ImportArgs),
}

#[derive(Subcommand)]
enum InviteCommand {
    /// Create a one-time invitation; prints the token and its xmpp: URI (XEP-0401/0445).
    Create {
        /// The domain to register on (default: the first served domain).
        #[arg(long)]
        domain: Option<String>,
        /// Seconds the invitation is valid (default: [registration] invite_expiry).
        #[arg(long)]
        expires: Option<u64>,
    },
    /// List the stored invitations of a domain (all served domains by default).
    List {
        #[arg(long)]
        domain: Option<String>,
    },
}

#[derive(clap::Args)]
struct PasswordArgs {
    /// The password (visible in the process list: prefer --password-stdin or the prompt).
    #[arg(long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account, e.g. `confabd user add alice@localhost`.
    Add {
        jid: String,
        #[command(flatten)]
        pw: PasswordArgs,
    },
    /// Change an account's password.
    Passwd {
        jid: String,
        #[command(flatten)]
        pw: PasswordArgs,
    },
    /// Delete an account and all its data.
    Del { jid: String },
    /// List the accounts of a domain (all served domains by default).
    List { domain: Option<String> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("confabd: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("confabd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command.unwrap_or(Command::Run) {
            Command::Run => run(config, cli.config).await,
            Command::User(u) => user(config, u).await,
            Command::Check => check(config).await,
            Command::Invite(i) => invite(config, i).await,
            Command::Migrate { dry_run } => migrate(config, dry_run).await,
            Command::Export(a) => import::export(config, a).await,
            Command::Import(a) => import::import(config, a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confabd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only help a terminal; in a file, pipe or journal they are noise.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

/// Every module confabd knows: the IM features, the web transports, group chat, file upload and the
/// admin console; `[modules] disabled` switches some off.
fn modules() -> Vec<std::sync::Arc<dyn confab_server::module::Module>> {
    modules_with(std::sync::Arc::new(confab_admin::Admin::new()))
}

fn modules_with(
    admin: std::sync::Arc<confab_admin::Admin>,
) -> Vec<std::sync::Arc<dyn confab_server::module::Module>> {
    let mut all = confab_modules::all();
    all.extend(confab_web::all());
    all.extend(confab_muc::all());
    all.extend(confab_upload::all());
    all.push(admin);
    all
}

/// Runs until a signal. The admin console's set-up wizard may ask for a restart: the
/// server stops and starts again with the configuration reloaded (file, the console's
/// settings file, environment).
async fn run(mut config: Config, path: Option<PathBuf>) -> Result<(), String> {
    let restart = std::sync::Arc::new(tokio::sync::Notify::new());
    loop {
        let admin = std::sync::Arc::new(confab_admin::Admin::with_restart(restart.clone()));
        let server = Server::start(config, modules_with(admin))
            .await
            .map_err(|e| e.to_string())?;
        for e in server.endpoints() {
            tracing::info!(addr = %e.addr, direct_tls = e.direct_tls, "ready");
        }
        tokio::select! {
            _ = wait_for_signal() => {
                server.shutdown().await;
                return Ok(());
            }
            _ = restart.notified() => {
                tracing::info!("restarting with the settings the admin console wrote");
                server.shutdown().await;
                config = Config::load(path.as_deref()).map_err(|e| e.to_string())?;
            }
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn read_password(pw: PasswordArgs) -> Result<String, String> {
    if let Some(p) = pw.password {
        return Ok(p);
    }
    if pw.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading the password: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
    let second = rpassword::prompt_password("Repeat password: ").map_err(|e| e.to_string())?;
    if first != second {
        return Err("the passwords do not match".into());
    }
    Ok(first)
}

async fn user(config: Config, cmd: UserCommand) -> Result<(), String> {
    let stores = open_stores(&config).await.map_err(|e| e.to_string())?;
    let domains = &config.server.domains;
    let iterations = config.auth.scram_iterations;
    let parse = |j: &str| accounts::parse_account(j, domains).map_err(|e| e.to_string());
    match cmd {
        UserCommand::Add { jid, pw } => {
            let jid = parse(&jid)?;
            let password = read_password(pw)?;
            accounts::create(&stores, &jid, &password, iterations)
                .await
                .map_err(|e| format!("{jid}: {e}"))?;
            println!("created {jid}");
        }
        UserCommand::Passwd { jid, pw } => {
            let jid = parse(&jid)?;
            let password = read_password(pw)?;
            accounts::set_password(&stores, &jid, &password, iterations)
                .await
                .map_err(|e| format!("{jid}: {e}"))?;
            println!("password changed for {jid}");
        }
        UserCommand::Del { jid } => {
            let jid = parse(&jid)?;
            // A running server deletes it itself, ending the account's live sessions.
            match confab_server::control::request(&config, &format!("user-del {jid}")).await? {
                Some(reply) if reply == "ok" => {}
                Some(reply) => {
                    let why = reply.strip_prefix("error: ").unwrap_or(&reply);
                    return Err(format!("{jid}: {why}"));
                }
                None => accounts::delete(&stores, &jid)
                    .await
                    .map_err(|e| format!("{jid}: {e}"))?,
            }
            println!("deleted {jid}");
        }
        UserCommand::List { domain } => {
            let list: Vec<String> = match domain {
                Some(d) => vec![d],
                None => domains.clone(),
            };
            for d in list {
                for u in stores
                    .accounts
                    .list_accounts(&d)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    println!("{u}@{d}");
                }
            }
        }
    }
    Ok(())
}

async fn invite(config: Config, cmd: InviteCommand) -> Result<(), String> {
    use confab_modules::register;
    let served = |d: Option<String>| -> Result<Vec<String>, String> {
        match d {
            Some(d) if config.is_local_domain(&d) => Ok(vec![d]),
            Some(d) => Err(format!("{d} is not a domain served here")),
            None => Ok(config.server.domains.clone()),
        }
    };
    let registration: register::RegistrationConfig =
        config.section("registration").map_err(|e| e.to_string())?;
    let stores = open_stores(&config).await.map_err(|e| e.to_string())?;
    match cmd {
        InviteCommand::Create { domain, expires } => {
            let domain = served(domain)?
                .into_iter()
                .next()
                .ok_or("no domain is served")?;
            let ttl = expires.unwrap_or(registration.invite_expiry);
            if ttl == 0 {
                return Err("--expires must be positive".into());
            }
            let inv = register::create_invite(&stores, &domain, ttl)
                .await
                .map_err(|e| e.to_string())?;
            println!("token   {}", inv.token);
            println!("uri     {}", inv.uri());
            println!(
                "expires {}",
                confab_proto::datetime::format_datetime(inv.expires)
            );
            if registration.policy != register::RegistrationPolicy::Invite {
                eprintln!(
                    "note: [registration] policy is not \"invite\"; the token is accepted only then"
                );
            }
        }
        InviteCommand::List { domain } => {
            let now = register::now_unix();
            for d in served(domain)? {
                for inv in register::list_invites(&stores, &d)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    println!(
                        "{}  {}  {}{}",
                        inv.token,
                        confab_proto::datetime::format_datetime(inv.expires),
                        inv.uri(),
                        if inv.is_expired(now) {
                            "  (expired)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
    }
    Ok(())
}

async fn migrate(config: Config, dry_run: bool) -> Result<(), String> {
    let backend = config.storage_backend().map_err(|e| e.to_string())?;
    println!("database {} {}", backend.name(), backend.display_url());
    if dry_run {
        let status = confab_store::migration_status(&backend)
            .await
            .map_err(|e| e.to_string())?;
        for name in &status.pending {
            println!("pending {name}");
        }
        println!(
            "{} applied, {} pending",
            status.applied.len(),
            status.pending.len()
        );
        return Ok(());
    }
    let applied = confab_store::migrate(&backend)
        .await
        .map_err(|e| e.to_string())?;
    for name in &applied {
        println!("applied {name}");
    }
    if applied.is_empty() {
        println!("up to date: nothing to apply");
    }
    Ok(())
}

async fn check(config: Config) -> Result<(), String> {
    let mut failed = false;
    println!(
        "ok    configuration (domains: {})",
        config.server.domains.join(", ")
    );
    // Module sections are validated by their modules, as at start.
    match confab_server::module::Registry::build_with_config(
        modules(),
        &config.modules.disabled,
        &config,
    ) {
        Ok(r) => println!("ok    modules ({})", r.modules().join(", ")),
        Err(e) => {
            println!("FAIL  modules: {e}");
            failed = true;
        }
    }
    match std::fs::create_dir_all(&config.server.data_dir) {
        Ok(()) => println!("ok    data directory {}", config.server.data_dir.display()),
        Err(e) => {
            println!(
                "FAIL  data directory {}: {e}",
                config.server.data_dir.display()
            );
            failed = true;
        }
    }
    match confab_server::certs::load_or_generate(&config) {
        Ok(t) => println!("ok    certificate {}", t.cert_path.display()),
        Err(e) => {
            println!("FAIL  certificate: {e}");
            failed = true;
        }
    }
    // The backend and URL as configured (no password), then whether it opens.
    let storage = match config.storage_backend() {
        Ok(b) => format!("{} {}", b.name(), b.display_url()),
        Err(e) => e.to_string(),
    };
    match open_stores(&config).await {
        Ok(_) => println!("ok    storage ({storage})"),
        Err(e) => {
            println!("FAIL  storage ({storage}): {e}");
            failed = true;
        }
    }
    // The HTTP listener serves the web modules (WebSocket, ...), on by default.
    let listeners = config
        .c2s
        .interfaces
        .iter()
        .flat_map(|i| [(i, config.c2s.port), (i, config.c2s.tls_port)])
        .chain(
            config
                .http
                .interfaces
                .iter()
                .flat_map(|i| [(i, config.http.port), (i, config.http.tls_port)]),
        );
    // The admin console's own listener, when enabled.
    let admin: Option<confab_admin::AdminConfig> = config
        .section::<confab_admin::AdminConfig>("admin")
        .ok()
        .filter(|a| a.enabled && !config.modules.disabled.iter().any(|d| d == "admin"));
    let admin_addr = admin.and_then(|a| a.listen.parse::<std::net::SocketAddr>().ok());
    let admin_listener = admin_addr.map(|a| (a.ip().to_string(), a.port()));
    let listeners = listeners.chain(admin_listener.iter().map(|(i, p)| (i, *p)));
    for (iface, port) in listeners {
        if port == 0 {
            continue;
        }
        let addr = format!(
            "{}:{port}",
            if iface.contains(':') {
                format!("[{iface}]")
            } else {
                iface.clone()
            }
        );
        match std::net::TcpListener::bind(&addr) {
            Ok(_) => println!("ok    port {addr} is free"),
            Err(e) => {
                println!("FAIL  port {addr}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        Err("some checks failed".into())
    } else {
        Ok(())
    }
}
