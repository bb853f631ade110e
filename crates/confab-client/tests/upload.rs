//! HTTP File Upload (XEP-0363) against an in-process confabd with its upload service:
//! discovery, a file sent to a contact as URL + OOB and downloaded byte-identical, typed
//! errors (too large, refused, not offered, HTTP status, download bound), and https URLs
//! (behind a TLS front) checked with the client's certificate trust.

use confab_client::{Chat, ChatEvent, Client, Config, Jid, Presence, Status, Upload, UploadError};
use confab_tests::TestServer;
use confab_upload::UploadConfig;
use std::sync::Arc;
use std::time::Duration;

async fn server(f: impl FnOnce(&mut UploadConfig)) -> TestServer {
    TestServer::start_with_modules(confab_upload::all(), |c| {
        c.update_section("upload", f).expect("upload section")
    })
    .await
}

async fn connect(ts: &TestServer, user: &str) -> (Client, Arc<Chat>, Upload) {
    ts.add_user(user).await;
    let o = ts.options(user);
    let upload = Upload::new(o.verify.clone());
    let chat = Chat::new();
    let presence = Presence::new();
    let client = Client::connect(Config::new(o).module(chat.clone()).module(presence.clone()))
        .await
        .expect("connects");
    // Available, so messages to the bare JID reach this session.
    presence
        .set(&client, Status::available())
        .await
        .expect("presence");
    (client, chat, upload)
}

fn jid(s: &str) -> Jid {
    Jid::new(s).expect("jid")
}

#[tokio::test]
async fn a_file_goes_to_a_contact_and_comes_back_identical() {
    let ts = server(|_| {}).await;
    let (alice, _, upload) = connect(&ts, "alice").await;
    let (bob, bob_chat, bob_upload) = connect(&ts, "bob").await;
    let mut events = bob_chat.events();
    let service = upload.discover(&alice).await.expect("service found");
    assert_eq!(service.jid, jid("upload.localhost"));
    assert_eq!(service.max_file_size, Some(10 * 1024 * 1024));

    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("holiday photo.png");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 253) as u8).collect();
    std::fs::write(&src, &data).expect("write");
    let url = upload
        .send_file(&alice, &jid("bob@localhost"), &src)
        .await
        .expect("sent");
    assert!(url.ends_with("/holiday%20photo.png"), "{url}");

    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(ChatEvent::Message(m)) = events.recv().await {
                return m;
            }
        }
    })
    .await
    .expect("bob gets the message");
    assert_eq!(got.oob_url.as_deref(), Some(url.as_str()));
    assert_eq!(got.body.as_deref(), Some(url.as_str()));

    let dest = dir.path().join("received.png");
    let n = bob_upload
        .download(got.oob_url.as_deref().expect("url"), &dest, 1 << 20)
        .await
        .expect("downloaded");
    assert_eq!(n, data.len() as u64);
    assert!(std::fs::read(&dest).expect("read") == data);
    // Never over an existing file; bounded; a missing file is its HTTP status.
    assert!(matches!(
        bob_upload.download(&url, &dest, 1 << 20).await,
        Err(UploadError::Io(_))
    ));
    let small = dir.path().join("small.png");
    assert!(matches!(
        bob_upload.download(&url, &small, 1000).await,
        Err(UploadError::DownloadTooLarge(1000))
    ));
    assert!(!small.exists(), "nothing left of a refused download");
    let missing = url.replace("holiday%20photo.png", "other.png");
    assert!(matches!(
        bob_upload.download(&missing, &small, 1 << 20).await,
        Err(UploadError::Http(404))
    ));
    // Streaming from any reader, with a slot of one's own.
    let slot = upload
        .request_slot(&alice, "notes.txt", 5, Some("text/plain"))
        .await
        .expect("slot");
    upload
        .put(&slot, &b"notes and more"[..], 5, Some("text/plain"))
        .await
        .expect("put");
    let dest = dir.path().join("notes.txt");
    bob_upload
        .download(&slot.get_url, &dest, 100)
        .await
        .expect("downloaded");
    assert_eq!(std::fs::read(&dest).expect("read"), b"notes");
    // The used slot again: the server's status comes back typed.
    assert!(matches!(
        upload
            .put(&slot, &b"notes"[..], 5, Some("text/plain"))
            .await,
        Err(UploadError::Http(403))
    ));
    alice.close().await.expect("close");
    bob.close().await.expect("close");
}

#[tokio::test]
async fn errors_are_typed() {
    let ts = server(|u| {
        u.max_file_size = 1000;
        u.quota_per_user = 1500;
    })
    .await;
    let (alice, _, upload) = connect(&ts, "alice").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![1u8; 1001]).expect("write");
    assert!(matches!(
        upload.upload_file(&alice, &big, None).await,
        Err(UploadError::FileTooLarge { max: Some(1000) })
    ));
    // The service's own answer, when the client did not know the limit.
    let fresh = Upload::new(confab_client::CertVerification::Insecure);
    let slot = fresh
        .request_slot(&alice, "a.bin", 1000, None)
        .await
        .expect("slot");
    drop(slot);
    match fresh.request_slot(&alice, "b.bin", 1000, None).await {
        Err(UploadError::Refused(e)) => {
            assert_eq!(
                e.condition,
                confab_client::StanzaErrorCondition::ResourceConstraint
            )
        }
        other => panic!("{other:?}"),
    }
    match fresh.request_slot(&alice, "a/b", 10, None).await {
        Err(UploadError::Refused(e)) => {
            assert_eq!(
                e.condition,
                confab_client::StanzaErrorCondition::NotAcceptable
            )
        }
        other => panic!("{other:?}"),
    }
    alice.close().await.expect("close");

    let ts = server(|u| u.enabled = false).await;
    let (alice, _, upload) = connect(&ts, "alice").await;
    assert!(matches!(
        upload.discover(&alice).await,
        Err(UploadError::NotOffered)
    ));
    alice.close().await.expect("close");
}

/// A TLS front for the server's HTTP listener on loopback (what a reverse proxy does in a
/// deployment), with a certificate for `localhost`; returns its port and the certificate.
async fn tls_front(upstream: std::net::SocketAddr, listener: tokio::net::TcpListener) -> Vec<u8> {
    use tokio_rustls::rustls;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let der = ck.cert.der().to_vec();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(confab_stream::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone().into()], key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let (Ok(mut tls), Ok(mut up)) = (
                    acceptor.accept(tcp).await,
                    tokio::net::TcpStream::connect(upstream).await,
                ) else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    der
}

#[tokio::test]
async fn https_urls_use_the_clients_certificate_trust() {
    let front = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = front.local_addr().expect("addr").port();
    let ts = server(|u| u.url_base = Some(format!("https://localhost:{port}"))).await;
    let cert = tls_front(ts.server().http_addr().expect("http"), front).await;
    let (alice, _, _) = connect(&ts, "alice").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("secret.txt");
    std::fs::write(&src, b"over TLS").expect("write");

    // Trusting another certificate: the upload fails at the TLS handshake.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let wrong = Upload::new(confab_client::CertVerification::Roots(vec![other
        .cert
        .der()
        .to_vec()]));
    match wrong.upload_file(&alice, &src, None).await {
        Err(UploadError::Transfer(e)) => assert!(e.contains("TLS"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Trusting the front's certificate (as --trust-cert would): it works both ways.
    let right = Upload::new(confab_client::CertVerification::Roots(vec![cert]));
    let url = right
        .upload_file(&alice, &src, None)
        .await
        .expect("uploaded over https");
    assert!(
        url.starts_with(&format!("https://localhost:{port}/upload/")),
        "{url}"
    );
    let dest = dir.path().join("back.txt");
    right.download(&url, &dest, 100).await.expect("downloaded");
    assert_eq!(std::fs::read(&dest).expect("read"), b"over TLS");
    alice.close().await.expect("close");
}
