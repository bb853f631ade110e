//! `confabd export` and `confabd import`: moving in and out in the XEP-0227 format
//! (`confab_import::pie`), and between backends.

use confab_import::pie;
use confab_server::config::Config;
use confab_server::open_stores;
use std::path::PathBuf;

/// `confabd export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// Where to write the document (created, never overwritten, readable by its owner
    /// only: it holds SCRAM keys); `-` for standard output.
    pub file: PathBuf,
    /// Only these domains' accounts (default: every served domain). Per-domain documents
    /// and room archives of every domain are written either way.
    #[arg(long)]
    pub domain: Vec<String>,
}

/// Where `confabd import` reads from besides XEP-0227 files.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ImportFrom {
    /// An Openfire 4.x database on MySQL/MariaDB, named by a mysql:// URL.
    Openfire,
}

/// `confabd import`.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// XEP-0227 documents (Confab's, Prosody's, ejabberd's), read in turn; a document may
    /// include others (XInclude, relative paths below its directory). With `--from
    /// openfire`: the database's URL, `mysql://user:password@host/openfire`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Read another server's database instead of XEP-0227 files.
    #[arg(long, value_enum)]
    pub from: Option<ImportFrom>,
    /// Most memory one element below a user may hold once parsed (a roster, a vCard, one
    /// archived message), in bytes.
    #[arg(long, default_value_t = pie::Limits::default().max_element_memory)]
    pub max_element_memory: usize,
    /// Most data one user may hold besides the archive (roster, vCard, private XML,
    /// offline messages, ...), in bytes.
    #[arg(long, default_value_t = pie::Limits::default().max_user_memory)]
    pub max_user_memory: usize,
}

pub async fn export(config: Config, args: ExportArgs) -> Result<(), String> {
    let stores = open_stores(&config).await.map_err(|e| e.to_string())?;
    let domains = if args.domain.is_empty() {
        config.server.domains.clone()
    } else {
        args.domain
    };
    let summary = if args.file.as_os_str() == "-" {
        let mut out = tokio::io::stdout();
        pie::export(&stores, &domains, &mut out)
            .await
            .map_err(|e| e.to_string())?
    } else {
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            open.mode(0o600);
        }
        let file = open
            .open(&args.file)
            .map_err(|e| format!("{}: {e}", args.file.display()))?;
        let mut out = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
        let summary = pie::export(&stores, &domains, &mut out).await;
        match summary {
            Ok(s) => {
                out.into_inner()
                    .sync_all()
                    .await
                    .map_err(|e| format!("{}: {e}", args.file.display()))?;
                s
            }
            Err(e) => {
                // Half a document is no export: remove it.
                let _ = std::fs::remove_file(&args.file);
                return Err(e.to_string());
            }
        }
    };
    eprintln!(
        "exported {} users of {} domains ({} archived, {} offline, {} room messages)",
        summary.users,
        summary.hosts,
        summary.archived_messages,
        summary.offline_messages,
        summary.room_messages
    );
    Ok(())
}

pub async fn import(config: Config, args: ImportArgs) -> Result<(), String> {
    let stores = open_stores(&config).await.map_err(|e| e.to_string())?;
    // Rooms and other per-domain documents are read at start.
    if let Ok(Some(_)) = confab_server::control::request(&config, "ping").await {
        eprintln!(
            "note: the server is running; restart it after the import so it reads imported rooms"
        );
    }
    let mut opts =
        pie::ImportOptions::new(config.server.domains.clone(), config.auth.scram_iterations);
    opts.limits.max_element_memory = args.max_element_memory;
    opts.limits.max_user_memory = args.max_user_memory;
    let (report, stopped) = match args.from {
        None => match pie::import(&stores, &args.files, &opts).await {
            Ok(r) => (r, None),
            Err(e) => (e.report, Some(e.why)),
        },
        Some(ImportFrom::Openfire) => {
            let [url] = args.files.as_slice() else {
                return Err("--from openfire takes one database URL".into());
            };
            let url = url.to_string_lossy();
            match confab_import::openfire::import(&url, &stores, &opts).await {
                Ok(r) => {
                    for note in &r.notes {
                        println!("note {note}");
                    }
                    grant_openfire_admins(&config, &r.admins, &r.import.imported)?;
                    (r.import, None)
                }
                Err(e) => (e.report, Some(e.why)),
            }
        }
    };
    print_report(&report);
    if let Some(why) = stopped {
        return Err(format!("the import stopped: {why}"));
    }
    if !report.failed.is_empty() {
        return Err(format!("{} not imported (see above)", report.failed.len()));
    }
    Ok(())
}

/// Openfire's administrators who moved in stay administrators: they are added to the
/// console's `[admin] admins` (in the console settings file, next to what the set-up
/// wizard writes), so they log in to the console with their old passwords.
fn grant_openfire_admins(
    config: &Config,
    admins: &[String],
    imported: &[String],
) -> Result<(), String> {
    let (granted, not): (Vec<&String>, Vec<&String>) =
        admins.iter().partition(|a| imported.contains(a));
    for a in &not {
        println!("note Openfire administrator {a} was not imported: not made an admin here");
    }
    // The console file's own list when it has one (the wizard's, an earlier import's): the
    // configuration file's and the environment's admins stay where they are set. Without
    // one, the list in force now is the start (the console file's list replaces it).
    let file = config.console_file();
    let console_list = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("admin")?.get("admins")?.as_array().map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
        });
    let mut all: Vec<String> = match console_list {
        Some(list) => list,
        None => {
            config
                .section::<confab_admin::AdminConfig>("admin")
                .map_err(|e| e.to_string())?
                .admins
        }
    };
    let new: Vec<&String> = granted.into_iter().filter(|a| !all.contains(a)).collect();
    if new.is_empty() {
        return Ok(());
    }
    all.extend(new.iter().map(|a| a.to_string()));
    confab_server::config::edit_console_file(&file, |t| {
        confab_server::config::set_table_key(
            t,
            "admin",
            "admins",
            toml::Value::Array(all.into_iter().map(toml::Value::String).collect()),
        )
    })
    .map_err(|e| format!("writing the console settings {}: {e}", file.display()))?;
    for a in new {
        println!(
            "admin {a} (Openfire administrator; [admin] admins in {})",
            file.display()
        );
    }
    Ok(())
}

fn print_report(r: &pie::ImportReport) {
    for jid in &r.imported {
        println!("imported {jid}");
    }
    for (what, why) in &r.failed {
        println!("NOT imported {what}: {why}");
    }
    for what in &r.ignored {
        println!("ignored {what}");
    }
    if r.ignored_more > 0 {
        println!("ignored {} more (not listed)", r.ignored_more);
    }
    println!(
        "{} users imported, {} not; {} archived, {} offline, {} room messages; {} domain documents",
        r.imported.len(),
        r.failed.len(),
        r.archived_messages,
        r.offline_messages,
        r.room_messages,
        r.host_documents
    );
}

#[cfg(test)]
mod tests {
    use super::grant_openfire_admins;
    use confab_server::config::Config;

    fn load(path: &std::path::Path) -> Config {
        Config::load_with_env(Some(path), std::iter::empty()).expect("config")
    }

    /// Imported Openfire administrators join those already configured, once; the others
    /// are left out; the console file is what the next start reads.
    #[test]
    fn openfire_admins_become_console_admins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("confabd.toml");
        std::fs::write(
            &file,
            format!(
                "[server]\ndomains = ['localhost']\ndata_dir = '{}'\n[admin]\nadmins = ['ops@localhost']\n",
                dir.path().display()
            ),
        )
        .expect("write");
        let admins = vec!["alice@localhost".to_string(), "ghost@localhost".to_string()];
        let imported = vec!["alice@localhost".to_string(), "bob@localhost".to_string()];
        grant_openfire_admins(&load(&file), &admins, &imported).expect("grant");
        grant_openfire_admins(&load(&file), &admins, &imported).expect("again");
        let got = load(&file)
            .section::<confab_admin::AdminConfig>("admin")
            .expect("admin")
            .admins;
        assert_eq!(got, vec!["ops@localhost", "alice@localhost"]);
    }
}
