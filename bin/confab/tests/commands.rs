//! The scriptable commands, run as the real `confab` binary against an in-process confabd
//! trusted through `--trust-cert` (its self-signed certificate): `register` creates an
//! account that logs in, `send` delivers to `listen --json`, which prints one JSON object
//! per line; bad input fails with a message, never a panic.

use confab_modules::register::{RegistrationConfig, RegistrationPolicy};
use confab_tests::TestServer;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.update_section("registration", |r: &mut RegistrationConfig| {
            r.policy = RegistrationPolicy::Open;
            r.rate_limit_per_ip = 0;
            r.max_attempts_per_stream = 0;
        })
        .expect("registration section");
    })
    .await
}

fn cert(ts: &TestServer) -> PathBuf {
    ts.dir.path().join("tls").join("cert.pem")
}

/// `confab` with the connection options for `jid` on the test server, the password in a file.
fn confab(ts: &TestServer, jid: &str, password_file: &Path) -> Command {
    confab_trusting(ts, jid, password_file, &cert(ts))
}

/// `confab` trusting the certificate in `cert_file`.
fn confab_trusting(ts: &TestServer, jid: &str, password_file: &Path, cert_file: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_confab"));
    c.arg("--server")
        .arg(ts.addr.to_string())
        .arg("--trust-cert")
        .arg(cert_file)
        .arg("--jid")
        .arg(jid)
        .arg("--password-file")
        .arg(password_file)
        .env_remove("CONFAB_PASSWORD")
        .env_remove("CONFAB_JID")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

async fn run(mut c: Command) -> Output {
    tokio::time::timeout(Duration::from_secs(30), c.output())
        .await
        .expect("confab finished in time")
        .expect("confab runs")
}

fn password_file(dir: &Path, name: &str, password: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{password}\n")).expect("password file");
    p
}

#[tokio::test]
async fn register_send_and_listen_json() {
    let ts = server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let alice_pw = password_file(dir.path(), "alice", "alice's long password");
    let bob_pw = password_file(dir.path(), "bob", "bob's long password");

    for (jid, pw) in [("alice@localhost", &alice_pw), ("bob@localhost", &bob_pw)] {
        let mut c = confab(&ts, jid, pw);
        c.arg("register");
        let out = run(c).await;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("registered {jid}")
        );
    }
    // Registered once: the second time the name is taken.
    let mut again = confab(&ts, "alice@localhost", &alice_pw);
    again.arg("register");
    let out = run(again).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already registered"),
        "{out:?}"
    );

    // bob listens (two messages, then exits); alice sends.
    let mut listen = confab(&ts, "bob@localhost", &bob_pw);
    listen
        .args(["listen", "--json", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut listener = listen.spawn().expect("listen starts");
    // Wait until bob is online, so the messages come live, not from offline storage.
    let stderr = listener.stderr.take().expect("stderr");
    let mut err_lines = BufReader::new(stderr).lines();
    let ready = tokio::time::timeout(Duration::from_secs(15), err_lines.next_line())
        .await
        .expect("listener ready in time")
        .expect("stderr readable");
    assert!(
        ready
            .as_deref()
            .is_some_and(|l| l.starts_with("listening as bob@localhost")),
        "{ready:?}"
    );

    for text in ["hello bob :)", "line two \"quoted\" & <tagged>"] {
        let mut send = confab(&ts, "alice@localhost", &alice_pw);
        send.args(["send", "bob@localhost", text]);
        let out = run(send).await;
        assert!(out.status.success(), "{out:?}");
    }
    let out = tokio::time::timeout(Duration::from_secs(15), listener.wait_with_output())
        .await
        .expect("listener exits after two messages")
        .expect("listener output");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["type"], "chat");
    assert_eq!(lines[0]["body"], "hello bob :)");
    assert!(
        lines[0]["from"]
            .as_str()
            .is_some_and(|f| f.starts_with("alice@localhost/")),
        "{stdout}"
    );
    assert_eq!(lines[0]["delayed"], serde_json::Value::Null);
    assert_eq!(lines[1]["body"], "line two \"quoted\" & <tagged>");
}

#[tokio::test]
async fn listen_prints_emoji_for_people() {
    let ts = server().await;
    ts.add_user("carol").await;
    ts.add_user("dave").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = password_file(dir.path(), "pw", confab_tests::PASSWORD);
    // Sent before dave is online: stored offline and delivered on login, marked delayed.
    let mut send = confab(&ts, "carol@localhost", &pw);
    send.args(["send", "dave@localhost", "nice :thumbsup: :)"]);
    assert!(run(send).await.status.success());
    let mut listen = confab(&ts, "dave@localhost", &pw);
    listen.args(["listen", "--count", "1"]);
    let out = run(listen).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "carol@localhost: nice 👍 🙂"
    );
}

#[tokio::test]
async fn bad_input_fails_plainly() {
    let ts = server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = password_file(dir.path(), "pw", "whatever password");
    // A wrong password: a login error, exit status 1.
    ts.add_user("erin").await;
    let mut send = confab(&ts, "erin@localhost", &pw);
    send.args(["send", "bob@localhost", "hi"]);
    let out = run(send).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("logging in as erin@localhost"),
        "{out:?}"
    );
    // No account given, no password source: said so, nothing asked on a missing terminal.
    let mut c = Command::new(env!("CARGO_BIN_EXE_confab"));
    c.env_remove("CONFAB_JID")
        .args(["send", "bob@localhost", "hi"])
        .stdin(Stdio::null());
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--jid"),
        "{out:?}"
    );
    // A certificate file that is no certificate.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").expect("write");
    let mut c = confab_trusting(&ts, "erin@localhost", &pw, &bogus);
    c.args(["send", "bob@localhost", "hi"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--trust-cert"),
        "{out:?}"
    );
    // A real certificate, but not the server's: the TLS handshake is refused.
    // (The right password this time, so only the certificate can fail it.)
    let other_ts = TestServer::start().await;
    let right_pw = password_file(dir.path(), "right", confab_tests::PASSWORD);
    let mut c = confab_trusting(&ts, "erin@localhost", &right_pw, &cert(&other_ts));
    c.args(["send", "erin@localhost", "hi"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("logging in as erin@localhost"), "{out:?}");
    assert!(stderr.to_lowercase().contains("certificate"), "{out:?}");
    let mut c = confab(&ts, "erin@localhost", &right_pw);
    c.args(["send", "erin@localhost", "hi"]);
    assert!(run(c).await.status.success());
}

#[tokio::test]
async fn send_file_reaches_listen_json_byte_identical() {
    let ts = TestServer::start_with_modules(confab_upload::all(), |_| {}).await;
    ts.add_user("erin").await;
    ts.add_user("finn").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = password_file(dir.path(), "pw", confab_tests::PASSWORD);
    let mut listen = confab(&ts, "finn@localhost", &pw);
    listen
        .args(["listen", "--json", "--count", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut listener = listen.spawn().expect("listen starts");
    let stderr = listener.stderr.take().expect("stderr");
    let ready = tokio::time::timeout(
        Duration::from_secs(15),
        BufReader::new(stderr).lines().next_line(),
    )
    .await
    .expect("listener ready in time")
    .expect("stderr readable");
    assert!(ready.is_some_and(|l| l.starts_with("listening as")));

    let file = dir.path().join("plan v2.txt");
    let data: Vec<u8> = (0..120_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(&file, &data).expect("file");
    let mut send = confab(&ts, "erin@localhost", &pw);
    send.arg("send-file").arg("finn@localhost").arg(&file);
    let out = run(send).await;
    assert!(out.status.success(), "{out:?}");
    let url = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string();
    assert!(url.ends_with("/plan%20v2.txt"), "{url}");

    let out = tokio::time::timeout(Duration::from_secs(15), listener.wait_with_output())
        .await
        .expect("listener exits")
        .expect("listener output");
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(line["oob_url"], url.as_str());
    assert_eq!(line["body"], url.as_str());

    let dest = dir.path().join("got.txt");
    confab_client::Upload::new(confab_client::CertVerification::Insecure)
        .download(&url, &dest, 1 << 20)
        .await
        .expect("download");
    assert!(std::fs::read(&dest).expect("read") == data);

    // A missing file fails plainly.
    let mut send = confab(&ts, "erin@localhost", &pw);
    send.arg("send-file")
        .arg("finn@localhost")
        .arg(dir.path().join("nope"));
    let out = run(send).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sending"),
        "{out:?}"
    );
}
