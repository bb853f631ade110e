//! The operator's path, through the real binary: add a user, start the server, log in over
//! STARTTLS with SCRAM-SHA-256, and stop it with SIGTERM.

use confab_proto::sasl::Mechanism;
use confab_stream::client::{connect, ClientOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn confabd(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_confabd"));
    c.arg("--config").arg(config).env_remove("RUST_LOG");
    c
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn write_config(dir: &Path, port: u16, tls_port: u16) -> std::path::PathBuf {
    let p = dir.join("confabd.toml");
    std::fs::write(
        &p,
        format!(
            "[server]\ndomains = ['localhost']\ndata_dir = '{}'\n[c2s]\ninterfaces = ['127.0.0.1']\nport = {port}\ntls_port = {tls_port}\n[http]\ninterfaces = ['127.0.0.1']\nport = {}\ntls_port = {}\n[admin]\nlisten = '127.0.0.1:{}'\n",
            dir.join("data").display(),
            free_port(),
            free_port(),
            free_port()
        ),
    )
    .expect("write config");
    p
}

fn run_with_stdin(mut cmd: Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

#[test]
fn version_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_confabd"))
        .arg("--version")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn user_management() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), free_port(), free_port());
    let mut add = confabd(&cfg);
    add.args(["user", "add", "Alice@localhost", "--password-stdin"]);
    let out = run_with_stdin(add, "s3cret\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Adding again is refused.
    let mut again = confabd(&cfg);
    again.args(["user", "add", "alice@localhost", "--password", "x"]);
    assert!(!again.output().expect("run").status.success());
    // Unknown domain and invalid address are refused.
    for bad in ["bob@elsewhere.example", "not a jid", "localhost"] {
        let out = confabd(&cfg)
            .args(["user", "add", bad, "--password", "x"])
            .output()
            .expect("run");
        assert!(!out.status.success(), "{bad} accepted");
    }
    let list = confabd(&cfg).args(["user", "list"]).output().expect("run");
    assert_eq!(String::from_utf8_lossy(&list.stdout), "alice@localhost\n");
    let out = confabd(&cfg)
        .args(["user", "passwd", "alice@localhost", "--password", "new"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let out = confabd(&cfg)
        .args(["user", "del", "alice@localhost"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let list = confabd(&cfg).args(["user", "list"]).output().expect("run");
    assert_eq!(String::from_utf8_lossy(&list.stdout), "");
    let out = confabd(&cfg)
        .args(["user", "del", "alice@localhost"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "deleting a missing user must fail");
}

#[test]
fn every_section_of_the_example_configuration_belongs_to_a_module_of_confabd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../confabd.example.toml");
    let out = confabd(&example)
        .env("CONFABD_SERVER__DATA_DIR", dir.path())
        .arg("check")
        .output()
        .expect("run");
    // The ports may be taken on this machine; the modules line is what matters here.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok    modules ("), "{stdout}");
    assert!(stdout.contains("websocket"), "{stdout}");
}

#[test]
fn check_reports_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), free_port(), free_port());
    let out = confabd(&cfg).arg("check").output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // The backend and where it is (the default: the SQLite file in the data directory).
    let db = dir.path().join("data/confab.db");
    assert!(
        stdout.contains(&format!("ok    storage (SQLite sqlite://{})", db.display())),
        "{stdout}"
    );
    // A port in use is reported.
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let cfg = write_config(
        dir.path(),
        busy.local_addr().expect("addr").port(),
        free_port(),
    );
    let out = confabd(&cfg).arg("check").output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL  port"));
    // A section no module owns, or one its module refuses, is reported.
    let text = std::fs::read_to_string(&cfg).expect("read");
    std::fs::write(
        &cfg,
        format!("{text}[nosuchsection]\nx = 1\n[ping]\ninterval = 5\ntimeout = 0\n"),
    )
    .expect("write");
    let out = confabd(&cfg).arg("check").output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("unknown configuration section [nosuchsection]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[ping] timeout must be positive"),
        "{stdout}"
    );
    // An invalid configuration is refused before anything runs.
    std::fs::write(&cfg, "[c2s]\nport = 'x'\n").expect("write");
    let out = confabd(&cfg).arg("check").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), free_port(), free_port());
    // `check` logs (certificate generation, migrations) to standard error, here a pipe.
    let out = confabd(&cfg)
        .env_remove("NO_COLOR")
        .arg("check")
        .output()
        .expect("run");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("INFO"), "no log output to check: {log}");
    assert!(
        !log.contains("\x1b["),
        "ANSI escapes in piped logs: {log:?}"
    );
}

#[test]
fn run_login_and_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = write_config(dir.path(), port, free_port());
    let out = confabd(&cfg)
        .args(["user", "add", "alice@localhost", "--password", "pw"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let mut server = confabd(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let result = rt.block_on(async {
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err("server did not start".to_string());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut o = ClientOptions::new(addr, "localhost", "alice", "pw");
        o.verify = confab_stream::tls::CertVerification::Insecure;
        o.mechanism = Some(Mechanism::ScramSha256);
        let s = connect(&o).await.map_err(|e| e.to_string())?;
        Ok(s.jid.to_string())
    });
    // SIGTERM: the server closes streams and exits 0.
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let jid = result.expect("login");
    assert!(jid.starts_with("alice@localhost/"), "{jid}");
    assert!(status.expect("server exited after SIGTERM").success());
    // The generated certificate and database are in the data directory.
    assert!(dir.path().join("data/tls/cert.pem").exists());
    assert!(dir.path().join("data/confab.db").exists());
}

#[test]
fn invite_create_and_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), free_port(), free_port());
    let mut create = confabd(&cfg);
    create.args(["invite", "create", "--expires", "3600"]);
    let out = create.output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("token"))
        .map(|t| t.trim().to_string())
        .expect("token printed");
    assert!(token.len() >= 20 && token.chars().all(|c| c.is_ascii_alphanumeric()));
    let uri = format!("xmpp:localhost?register;preauth={token}");
    assert!(stdout.contains(&uri), "{stdout}");
    // The policy is still closed: the operator is told.
    assert!(String::from_utf8_lossy(&out.stderr).contains("policy"));
    // A second, already expired invitation is listed as such.
    let mut short = confabd(&cfg);
    short.args([
        "invite",
        "create",
        "--domain",
        "localhost",
        "--expires",
        "1",
    ]);
    assert!(short.output().expect("run").status.success());
    std::thread::sleep(Duration::from_millis(2100));
    let mut list = confabd(&cfg);
    list.args(["invite", "list"]);
    let out = list.output().expect("run");
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    let fresh = lines
        .iter()
        .find(|l| l.starts_with(&token))
        .expect("token listed");
    assert!(
        fresh.contains(&uri) && !fresh.contains("expired"),
        "{fresh}"
    );
    assert!(lines.iter().any(|l| l.ends_with("(expired)")), "{listed}");
    // Unknown domains and a zero lifetime are refused.
    let mut bad = confabd(&cfg);
    bad.args(["invite", "create", "--domain", "example.net"]);
    assert!(!bad.output().expect("run").status.success());
    let mut zero = confabd(&cfg);
    zero.args(["invite", "create", "--expires", "0"]);
    assert!(!zero.output().expect("run").status.success());
}

#[test]
fn user_del_ends_the_sessions_of_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = write_config(dir.path(), port, free_port());
    for user in ["alice", "bob"] {
        let out = confabd(&cfg)
            .args([
                "user",
                "add",
                &format!("{user}@localhost"),
                "--password",
                "pw",
            ])
            .output()
            .expect("run");
        assert!(out.status.success());
    }
    let mut server = confabd(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let result = rt.block_on(async {
        let started = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                return Err("server did not start".to_string());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut o = ClientOptions::new(addr, "localhost", "alice", "pw");
        o.verify = confab_stream::tls::CertVerification::Insecure;
        let mut alice = connect(&o).await.map_err(|e| e.to_string())?;
        let out = confabd(&cfg)
            .args(["user", "del", "alice@localhost"])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "user del failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // The running server ended alice's session with <not-authorized/>.
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match alice.recv().await {
                    Ok(_) => continue,
                    Err(e) => return e.to_string(),
                }
            }
        })
        .await
        .map_err(|_| "alice's session outlived her account".to_string())?;
        if !ended.contains("not-authorized") {
            return Err(format!("session ended with {ended}"));
        }
        // Deleting a missing account through the running server reports it.
        let out = confabd(&cfg)
            .args(["user", "del", "nobody@localhost"])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            return Err("deleting a missing account succeeded".into());
        }
        Ok(())
    });
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    result.expect("user del on a running server");
    let out = confabd(&cfg).args(["user", "list"]).output().expect("run");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        !list.contains("alice@") && list.contains("bob@localhost"),
        "{list}"
    );
}

/// Moving to another data directory: export, import into an empty one, log in there with the
/// old password (both SCRAM hashes); the export is private to its owner and never overwritten.
#[test]
fn export_then_import_keeps_passwords() {
    let from = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(from.path(), free_port(), free_port());
    let out = confabd(&cfg)
        .args(["user", "add", "alice@localhost", "--password", "old pw"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let file = from.path().join("export.xml");
    let out = confabd(&cfg)
        .arg("export")
        .arg(&file)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the export is readable by others: {mode:o}"
        );
    }
    let again = confabd(&cfg)
        .arg("export")
        .arg(&file)
        .output()
        .expect("run");
    assert!(!again.status.success(), "an existing file was overwritten");

    let to = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg2 = write_config(to.path(), port, free_port());
    let out = confabd(&cfg2)
        .arg("import")
        .arg(&file)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("imported alice@localhost"), "{stdout}");
    // A second import refuses the account that is there now, and says so.
    let out = confabd(&cfg2)
        .arg("import")
        .arg(&file)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("NOT imported alice@localhost"));

    let mut server = confabd(&cfg2)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let result = rt.block_on(async {
        let started = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if started.elapsed() > Duration::from_secs(20) {
                return Err("server did not start".to_string());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for (mechanism, password, ok) in [
            (Mechanism::ScramSha1, "old pw", true),
            (Mechanism::ScramSha256, "old pw", true),
            (Mechanism::ScramSha256, "wrong", false),
        ] {
            let mut o = ClientOptions::new(addr, "localhost", "alice", password);
            o.verify = confab_stream::tls::CertVerification::Insecure;
            o.mechanism = Some(mechanism);
            let r = connect(&o).await;
            if r.is_ok() != ok {
                return Err(format!("{mechanism:?} with {password:?}: {:?}", r.err()));
            }
        }
        Ok(())
    });
    let _ = server.kill();
    let _ = server.wait();
    result.expect("logins");
}

/// `import --from openfire` takes one database URL; one that cannot be reached is an error
/// naming it without its password.
#[test]
fn import_from_openfire_names_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), free_port(), free_port());
    let out = confabd(&cfg)
        .args([
            "import",
            "--from",
            "openfire",
            "mysql://a@127.0.0.1:1/x",
            "another",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("one database URL"));
    let out = confabd(&cfg)
        .args([
            "import",
            "--from",
            "openfire",
            "mysql://of:s3cret@127.0.0.1:1/openfire",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Openfire's database mysql://of:***@127.0.0.1:1/openfire"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "the password is shown: {err}");
}
