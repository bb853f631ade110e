//! XEP-0363 against a whole server: slots over XMPP, PUT and GET over HTTP on the `[http]`
//! listener (plain HTTP/1.1 written by hand, so bad requests can be exactly as bad as
//! wanted), limits, authorisation, expiry and restarts.

use confab_proto::ns;
use confab_proto::xml::Element;
use confab_stream::client::ClientSession;
use confab_tests::*;
use confab_upload::{UploadConfig, NS};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UPLOAD: &str = "upload.localhost";

async fn server_with(f: impl FnOnce(&mut UploadConfig)) -> TestServer {
    TestServer::start_with_modules(confab_upload::all(), |c| {
        c.update_section("upload", f).expect("upload section")
    })
    .await
}

fn request(name: &str, size: &str, ct: Option<&str>) -> Element {
    let mut r = Element::new("request", NS)
        .attr("filename", name)
        .attr("size", size);
    if let Some(ct) = ct {
        r.set_attr("content-type", ct);
    }
    r
}

/// A granted slot: the PUT URL's path, its Authorization header, the GET URL.
struct Slot {
    put_path: String,
    auth: String,
    get_url: String,
}

async fn slot(c: &mut ClientSession, name: &str, size: usize, ct: Option<&str>) -> Slot {
    let r = iq(c, "get", Some(UPLOAD), request(name, &size.to_string(), ct)).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r:?}");
    let slot = r.get_child("slot", NS).expect("slot");
    let put = slot.get_child("put", NS).expect("put");
    let headers: Vec<_> = put.elements().filter(|h| h.name == "header").collect();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].get_attr("name"), Some("Authorization"));
    let put_url = put.get_attr("url").expect("put url");
    let get_url = slot
        .get_child("get", NS)
        .and_then(|g| g.get_attr("url"))
        .expect("get url");
    Slot {
        put_path: path_of(put_url),
        auth: headers[0].text_content(),
        get_url: get_url.to_string(),
    }
}

fn path_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http url");
    rest[rest.find('/').expect("path")..].to_string()
}

struct HttpReply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl HttpReply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// One request on a connection of its own; `head` is everything but the request line's
/// method and path, `Host` and `Connection`.
async fn http(addr: SocketAddr, method: &str, path: &str, head: &str, body: &[u8]) -> HttpReply {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{head}\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write body");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("reply in time")
        .expect("read");
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head[9..12].parse().expect("status");
    HttpReply {
        status,
        head,
        body: out[split + 4..].to_vec(),
    }
}

async fn put(ts: &TestServer, s: &Slot, ct: Option<&str>, body: &[u8]) -> HttpReply {
    let ct = ct
        .map(|c| format!("Content-Type: {c}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "Authorization: {}\r\nContent-Length: {}\r\n{ct}",
        s.auth,
        body.len()
    );
    http(http_addr(ts), "PUT", &s.put_path, &head, body).await
}

fn http_addr(ts: &TestServer) -> SocketAddr {
    ts.server().http_addr().expect("http listener")
}

fn error_of(r: &Element) -> (String, Option<String>) {
    let e = r.get_child("error", ns::CLIENT).expect("error");
    (condition(r), e.get_attr("type").map(str::to_string))
}

#[tokio::test]
async fn discovered_through_the_host() {
    let ts = server_with(|_| {}).await;
    ts.add_user("alice").await;
    let mut c = ts.login("alice").await;
    let items = iq(
        &mut c,
        "get",
        Some(DOMAIN),
        Element::new("query", ns::DISCO_ITEMS),
    )
    .await;
    let q = items.get_child("query", ns::DISCO_ITEMS).expect("items");
    assert!(q.elements().any(|i| i.get_attr("jid") == Some(UPLOAD)));
    let info = iq(
        &mut c,
        "get",
        Some(UPLOAD),
        Element::new("query", ns::DISCO_INFO),
    )
    .await;
    let q = info.get_child("query", ns::DISCO_INFO).expect("info");
    let id = q.get_child("identity", ns::DISCO_INFO).expect("identity");
    assert_eq!(id.get_attr("category"), Some("store"));
    assert_eq!(id.get_attr("type"), Some("file"));
    assert!(q
        .elements()
        .any(|f| f.name == "feature" && f.get_attr("var") == Some(NS)));
    let form = q.get_child("x", "jabber:x:data").expect("form");
    let max = form
        .elements()
        .find(|f| f.get_attr("var") == Some("max-file-size"))
        .and_then(|f| f.elements().next())
        .map(|v| v.text_content());
    assert_eq!(max.as_deref(), Some("10485760"));
}

#[tokio::test]
async fn upload_and_download() {
    let ts = server_with(|_| {}).await;
    ts.add_user("alice").await;
    let mut c = ts.login("alice").await;
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let s = slot(&mut c, "très cool.jpg", data.len(), Some("image/jpeg")).await;
    assert!(
        s.put_path.ends_with("/tr%C3%A8s%20cool.jpg"),
        "{}",
        s.put_path
    );
    assert!(s
        .get_url
        .starts_with(&format!("http://{}/upload/", http_addr(&ts))));
    // Nothing to fetch before the upload.
    let early = http(http_addr(&ts), "GET", &path_of(&s.get_url), "", b"").await;
    assert_eq!(early.status, 404);

    let r = put(&ts, &s, Some("image/jpeg"), &data).await;
    assert_eq!(r.status, 201, "{}", r.head);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*")
    );

    let g = http(http_addr(&ts), "GET", &path_of(&s.get_url), "", b"").await;
    assert_eq!(g.status, 200);
    assert!(g.body == data, "downloaded bytes differ");
    assert_eq!(g.header("content-type").as_deref(), Some("image/jpeg"));
    assert_eq!(
        g.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert!(g
        .header("content-security-policy")
        .is_some_and(|c| c.contains("default-src 'none'") && c.contains("sandbox")));
    assert_eq!(
        g.header("content-disposition").as_deref(),
        Some("inline; filename*=UTF-8''tr%C3%A8s%20cool.jpg")
    );
    let h = http(http_addr(&ts), "HEAD", &path_of(&s.get_url), "", b"").await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some(data.len().to_string()));
    assert!(h.body.is_empty());
    let o = http(http_addr(&ts), "OPTIONS", &s.put_path, "", b"").await;
    assert!(o.status == 204 || o.status == 200, "{}", o.head);
    assert!(o
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("PUT")));

    // Single use: the same slot again is refused and the file stays as it was.
    let again = put(&ts, &s, Some("image/jpeg"), &data).await;
    assert_eq!(again.status, 403);
    // An unknown id, or the right id under another name, is a plain 404.
    let id = s.put_path.split('/').nth(2).expect("id").to_string();
    for p in [
        "/upload/00000000000000000000000000000000/x.jpg".to_string(),
        format!("/upload/{id}/other.jpg"),
        format!("/upload/{id}/..%2F..%2Fconfab.db"),
    ] {
        let r = http(http_addr(&ts), "GET", &p, "", b"").await;
        assert_eq!(r.status, 404, "{p}");
    }
    // Non-image types are downloads.
    let s2 = slot(&mut c, "page.html", 5, Some("text/html")).await;
    assert_eq!(put(&ts, &s2, Some("text/html"), b"<b>x").await.status, 400);
    let s2 = slot(&mut c, "page.html", 5, Some("text/html")).await;
    assert_eq!(put(&ts, &s2, Some("text/html"), b"<b>x<").await.status, 201);
    let g = http(http_addr(&ts), "GET", &path_of(&s2.get_url), "", b"").await;
    assert!(g
        .header("content-disposition")
        .is_some_and(|d| d.starts_with("attachment;")));
}

#[tokio::test]
async fn slot_requests_are_checked() {
    let ts = server_with(|u| {
        u.max_file_size = 1000;
        u.quota_per_user = 2500;
        u.max_pending_slots_per_user = 3;
    })
    .await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut c = ts.login("alice").await;

    let r = iq(
        &mut c,
        "get",
        Some(UPLOAD),
        request("big.bin", "1001", None),
    )
    .await;
    assert_eq!(
        error_of(&r),
        ("not-acceptable".to_string(), Some("modify".to_string()))
    );
    let max = r
        .get_child("error", ns::CLIENT)
        .and_then(|e| e.get_child("file-too-large", NS))
        .and_then(|f| f.get_child("max-file-size", NS))
        .map(|m| m.text_content());
    assert_eq!(max.as_deref(), Some("1000"));

    let long = "a".repeat(256);
    for (name, size) in [
        ("a/b", "10"),
        ("..", "10"),
        ("a\tb", "10"),
        ("a\u{7f}b", "10"),
        ("", "10"),
        (long.as_str(), "10"),
        ("ok.txt", "0"),
        ("ok.txt", "-1"),
        ("ok.txt", "18446744073709551616"),
        ("ok.txt", "12abc"),
    ] {
        let r = iq(&mut c, "get", Some(UPLOAD), request(name, size, None)).await;
        assert_eq!(condition(&r), "not-acceptable", "{name:?} {size}");
    }
    let r = iq(
        &mut c,
        "get",
        Some(UPLOAD),
        request("x", "1", Some("text/plain\nX: y")),
    )
    .await;
    assert_eq!(condition(&r), "not-acceptable");
    let r = iq(&mut c, "get", Some(UPLOAD), Element::new("request", NS)).await;
    assert_eq!(condition(&r), "bad-request");

    // Open slots count against the quota, and their number is bounded.
    for _ in 0..2 {
        slot(&mut c, "f.bin", 1000, None).await;
    }
    let r = iq(&mut c, "get", Some(UPLOAD), request("f.bin", "1000", None)).await;
    assert_eq!(
        error_of(&r),
        ("resource-constraint".to_string(), Some("wait".to_string()))
    );
    slot(&mut c, "f.bin", 100, None).await;
    let r = iq(&mut c, "get", Some(UPLOAD), request("f.bin", "1", None)).await;
    assert_eq!(condition(&r), "resource-constraint");
    assert!(r
        .get_child("error", ns::CLIENT)
        .and_then(|e| e.get_child("retry", NS))
        .is_some_and(|r| r.get_attr("stamp").is_some()));
    // Another user is not affected.
    let mut b = ts.login("bob").await;
    slot(&mut b, "f.bin", 1000, None).await;
    // Nothing but slot requests and disco.
    let r = iq(&mut c, "set", Some(UPLOAD), request("f.bin", "1", None)).await;
    assert_eq!(condition(&r), "service-unavailable");
}

#[tokio::test]
async fn puts_are_authorised_and_checked() {
    let ts = server_with(|_| {}).await;
    ts.add_user("alice").await;
    let mut c = ts.login("alice").await;
    let addr = http_addr(&ts);
    let data = b"hello, world".to_vec();
    let len = data.len();

    // No Authorization, or a wrong one: refused, and the slot is still usable after.
    let s = slot(&mut c, "a.txt", len, Some("text/plain")).await;
    let no_auth = http(
        addr,
        "PUT",
        &s.put_path,
        &format!("Content-Length: {len}\r\n"),
        &data,
    )
    .await;
    assert_eq!(no_auth.status, 401);
    let wrong = format!(
        "Authorization: Bearer {}\r\nContent-Length: {len}\r\n",
        "ab".repeat(32)
    );
    assert_eq!(
        http(addr, "PUT", &s.put_path, &wrong, &data).await.status,
        403
    );
    let other = slot(&mut c, "a.txt", len, Some("text/plain")).await;
    let swapped = Slot {
        put_path: s.put_path.clone(),
        auth: other.auth.clone(),
        get_url: String::new(),
    };
    assert_eq!(put(&ts, &swapped, None, &data).await.status, 403);
    // The right token under another file name.
    let renamed = Slot {
        put_path: s.put_path.replace("a.txt", "b.txt"),
        auth: s.auth.clone(),
        get_url: String::new(),
    };
    assert_eq!(put(&ts, &renamed, None, &data).await.status, 403);
    assert_eq!(put(&ts, &s, Some("text/plain"), &data).await.status, 201);

    // Declared length larger or smaller than the slot; wrong type; missing length.
    let s = slot(&mut c, "b.txt", len, Some("text/plain")).await;
    assert_eq!(put(&ts, &s, None, b"hello, world!").await.status, 413);
    assert_eq!(
        put(&ts, &s, None, &data).await.status,
        403,
        "the slot was used"
    );
    let s = slot(&mut c, "b.txt", len, Some("text/plain")).await;
    assert_eq!(put(&ts, &s, None, b"hello").await.status, 400);
    let s = slot(&mut c, "b.txt", len, Some("text/plain")).await;
    assert_eq!(put(&ts, &s, Some("text/html"), &data).await.status, 415);
    let s = slot(&mut c, "b.txt", len, None).await;
    let head = format!("Authorization: {}\r\n", s.auth);
    assert_eq!(http(addr, "PUT", &s.put_path, &head, b"").await.status, 411);
    // A body cut short (Content-Length promises more than arrives).
    let s = slot(&mut c, "c.txt", len, None).await;
    {
        let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "PUT {} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {len}\r\n\r\nhello",
            s.put_path, s.auth
        );
        sock.write_all(req.as_bytes()).await.expect("write");
        sock.shutdown().await.expect("half-close");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut out)).await;
    }
    // Nothing half-written is served, and the failures left no partial files behind.
    assert_eq!(
        http(addr, "GET", &path_of(&s.get_url), "", b"")
            .await
            .status,
        404
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stray: Vec<_> = std::fs::read_dir(ts.dir.path().join("upload"))
        .expect("upload dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // The session is fine after all that.
    ping(&mut c).await;
}

#[tokio::test]
async fn slots_and_files_expire() {
    let ts = server_with(|u| {
        u.slot_lifetime = 1;
        u.file_lifetime = 2;
        u.sweep_interval = 1;
    })
    .await;
    ts.add_user("alice").await;
    let mut c = ts.login("alice").await;
    let late = slot(&mut c, "late.txt", 3, None).await;
    let s = slot(&mut c, "short.txt", 3, None).await;
    assert_eq!(put(&ts, &s, None, b"abc").await.status, 201);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(put(&ts, &late, None, b"abc").await.status, 403);
    let id = s.put_path.split('/').nth(2).expect("id").to_string();
    let on_disk = ts.dir.path().join("upload").join(&id);
    assert!(on_disk.exists());
    let ctx = ts.server().ctx();
    assert_eq!(
        ctx.stores
            .data
            .list_host_data(UPLOAD, confab_upload::KIND)
            .await
            .expect("records")
            .len(),
        1
    );
    // Past the file's lifetime the sweep deletes bytes and record.
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !on_disk.exists() {
            gone = true;
            break;
        }
    }
    assert!(gone, "the sweep deleted the file");
    assert_eq!(
        http(http_addr(&ts), "GET", &path_of(&s.get_url), "", b"")
            .await
            .status,
        404
    );
    assert!(ctx
        .stores
        .data
        .list_host_data(UPLOAD, confab_upload::KIND)
        .await
        .expect("records")
        .is_empty());
}

#[tokio::test]
async fn files_survive_a_restart_and_count_against_the_quota() {
    let mut ts = server_with(|u| {
        u.max_file_size = 100;
        u.quota_per_user = 150;
    })
    .await;
    ts.add_user("alice").await;
    let mut c = ts.login("alice").await;
    let s = slot(&mut c, "keep.bin", 100, None).await;
    assert_eq!(put(&ts, &s, None, &[7u8; 100]).await.status, 201);
    drop(c);
    ts.server.take().expect("running").shutdown().await;

    let mut config = test_config(ts.dir.path());
    config
        .update_section("upload", |u: &mut UploadConfig| {
            u.max_file_size = 100;
            u.quota_per_user = 150;
        })
        .expect("section");
    ts.server = Some(
        start_server(config, confab_upload::all())
            .await
            .expect("restarts"),
    );
    ts.addr = ts.server().c2s_addr().expect("c2s");
    let g = http(http_addr(&ts), "GET", &path_of(&s.get_url), "", b"").await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body, vec![7u8; 100]);
    let mut c = ts.login("alice").await;
    let r = iq(&mut c, "get", Some(UPLOAD), request("more.bin", "51", None)).await;
    assert_eq!(condition(&r), "resource-constraint");
    slot(&mut c, "more.bin", 50, None).await;
}

#[tokio::test]
async fn deleted_accounts_lose_their_files() {
    let ts = server_with(|_| {}).await;
    ts.add_user("alice").await;
    let mut c = ts.login("alice").await;
    let s = slot(&mut c, "mine.txt", 4, None).await;
    assert_eq!(put(&ts, &s, None, b"mine").await.status, 201);
    drop(c);
    let jid = confab_proto::BareJid::new("alice@localhost").expect("jid");
    confab_server::accounts::delete_account_live(ts.server().ctx(), &jid)
        .await
        .expect("deleted");
    let mut gone = false;
    for _ in 0..50 {
        let r = http(http_addr(&ts), "GET", &path_of(&s.get_url), "", b"").await;
        if r.status == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone);
}

#[tokio::test]
async fn a_stalled_put_is_cut_off() {
    let ts = server_with(|u| u.idle_timeout = 1).await;
    ts.add_user("alice").await;
    let mut c = ts.login("alice").await;
    let s = slot(&mut c, "slow.txt", 10, None).await;
    let mut sock = tokio::net::TcpStream::connect(http_addr(&ts))
        .await
        .expect("connect");
    let req = format!(
        "PUT {} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 10\r\n\r\nhalf.",
        s.put_path, s.auth
    );
    sock.write_all(req.as_bytes()).await.expect("write");
    // The connection stays open but sends nothing more.
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut out))
        .await
        .expect("answered and closed in time")
        .expect("read");
    let head = String::from_utf8_lossy(&out);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert_eq!(
        http(http_addr(&ts), "GET", &path_of(&s.get_url), "", b"")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn a_download_nobody_reads_is_cut_at_the_write_timeout() {
    let ts = TestServer::start_with_modules(confab_upload::all(), |c| {
        c.http.write_timeout = 1;
        c.update_section("upload", |u: &mut UploadConfig| {
            u.max_file_size = 16 * 1024 * 1024;
        })
        .expect("upload section")
    })
    .await;
    ts.add_user("alice").await;
    let mut c = ts.login("alice").await;
    // Far larger than the socket buffers on both sides, so the server's writes block.
    let data = vec![7u8; 16 * 1024 * 1024];
    let s = slot(&mut c, "big.bin", data.len(), None).await;
    assert_eq!(put(&ts, &s, None, &data).await.status, 201);

    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut sock = sock.connect(http_addr(&ts)).await.expect("connect");
    let req = format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", path_of(&s.get_url));
    sock.write_all(req.as_bytes()).await.expect("write");
    // Not reading, for well over the write timeout.
    tokio::time::sleep(Duration::from_secs(4)).await;
    // What the buffers held arrives, then the end: the rest was never sent.
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
            .await
            .expect("the server closed the connection in time")
        {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    assert!(
        out.len() < data.len() / 2,
        "{} bytes of {} arrived: the stalled download was not cut",
        out.len(),
        data.len()
    );
    // The listener still serves others.
    let g = http(http_addr(&ts), "GET", "/upload/nothing/here", "", b"").await;
    assert_eq!(g.status, 404);
}
