//! XEP-0363 HTTP File Upload: find the server's upload service, ask it for a slot, PUT the
//! bytes (streamed from any `AsyncRead`), and send the GET URL to a contact the way
//! Conversations, Gajim and Dino do — the URL as the body plus `jabber:x:oob` — so every
//! client shows it as a file. [`Upload::download`] fetches a received file into a local one,
//! bounded in size.
//!
//! HTTP/1.1 over hyper; `https` URLs are checked with the same [`CertVerification`] as the
//! XMPP connection ([`Upload::new`] takes it from the client's options).

use crate::chat::ChatMessage;
use crate::client::{iq, Client};
use crate::error::Error;
use bytes::Bytes;
use confab_proto::payloads::disco::{DiscoInfo, DiscoItems};
use confab_proto::{ns, Element, IqType, Jid, StanzaError};
use confab_stream::tls::CertVerification;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The XEP-0363 namespace.
pub const UPLOAD_NS: &str = "urn:xmpp:http:upload:0";
/// XEP-0066 out-of-band data, how a file's URL travels in a message.
pub const OOB_NS: &str = "jabber:x:oob";
/// Most items of the server's disco#items asked whether they are an upload service.
const MAX_PROBED_ITEMS: usize = 20;
/// Bytes per chunk read from a file or written to one.
const CHUNK: usize = 64 * 1024;

/// The server's upload service, as discovered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadService {
    /// Its address (`upload.example.org`).
    pub jid: Jid,
    /// The largest file it takes, when it says (XEP-0363 §3).
    pub max_file_size: Option<u64>,
}

/// A slot the service granted: where to PUT (with which headers) and where the file will be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The URL to PUT the file to.
    pub put_url: String,
    /// The headers the PUT must carry (only `Authorization`, `Cookie` and `Expires` are
    /// kept, newlines removed, as XEP-0363 §4 requires).
    pub put_headers: Vec<(String, String)>,
    /// The URL the file is served at once uploaded.
    pub get_url: String,
}

/// Why an upload or download failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The server lists no upload service.
    #[error("the server offers no HTTP upload service")]
    NotOffered,
    /// The file is bigger than the service takes (`max` when it said).
    #[error("file too large (the service takes at most {max:?} bytes)")]
    FileTooLarge {
        /// The service's limit, if known.
        max: Option<u64>,
    },
    /// The service refused the slot request (quota, not allowed, bad name, …).
    #[error("slot refused: {0}")]
    Refused(StanzaError),
    /// The HTTP server answered with this status.
    #[error("HTTP status {0}")]
    Http(u16),
    /// A download was larger than the bound given.
    #[error("download larger than {0} bytes")]
    DownloadTooLarge(u64),
    /// A URL that is not `http(s)://host[:port]/path`.
    #[error("unusable URL {0}")]
    Url(String),
    /// Connecting, TLS or HTTP framing failed.
    #[error("transfer failed: {0}")]
    Transfer(String),
    /// Reading or writing the local file failed.
    #[error("file: {0}")]
    Io(#[from] std::io::Error),
    /// The XMPP side (discovery, slot request, sending the link) failed.
    #[error("xmpp: {0}")]
    Xmpp(#[from] Error),
    /// The transfer took longer than [`Upload::transfer_timeout`].
    #[error("transfer timed out")]
    Timeout,
}

/// The upload helper. It sees no stanzas, so it is not a [`crate::Module`]: keep one per
/// client and pass the client to each call.
#[derive(Debug)]
pub struct Upload {
    verify: CertVerification,
    service: Mutex<Option<UploadService>>,
    /// Longest a whole PUT or GET may take.
    pub transfer_timeout: Duration,
    /// Longest connecting to the HTTP server may take.
    pub connect_timeout: Duration,
}

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

impl Upload {
    /// An upload helper checking `https` servers as `verify` says (pass the client's
    /// `options.verify`, so the same certificates are trusted for XMPP and HTTP).
    pub fn new(verify: CertVerification) -> Upload {
        Upload {
            verify,
            service: Mutex::new(None),
            transfer_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(30),
        }
    }

    /// Finds the upload service among the items of the server's disco#items (cached after
    /// the first success).
    pub async fn discover(&self, client: &Client) -> Result<UploadService, UploadError> {
        if let Some(s) = self.cached() {
            return Ok(s);
        }
        let domain = Jid::new(client.jid().domain().as_str())
            .map_err(|_| UploadError::Xmpp(Error::Protocol("own domain".into())))?;
        let reply = client
            .request(iq(
                IqType::Get,
                Some(&domain),
                Element::new("query", ns::DISCO_ITEMS),
            ))
            .await?;
        let items = reply
            .get_child("query", ns::DISCO_ITEMS)
            .and_then(|q| DiscoItems::try_from(q).ok())
            .ok_or_else(|| Error::Protocol("disco#items without a query".into()))?;
        for item in items
            .items
            .iter()
            .filter(|i| i.node.is_none())
            .take(MAX_PROBED_ITEMS)
        {
            let info = match client
                .request(iq(
                    IqType::Get,
                    Some(&item.jid),
                    Element::new("query", ns::DISCO_INFO),
                ))
                .await
            {
                Ok(r) => r,
                // One item that does not answer is not the end of the search.
                Err(Error::Stanza { .. }) | Err(Error::Timeout) => continue,
                Err(e) => return Err(e.into()),
            };
            let Some(info) = info
                .get_child("query", ns::DISCO_INFO)
                .and_then(|q| DiscoInfo::try_from(q).ok())
            else {
                continue;
            };
            if info.has_feature(UPLOAD_NS) {
                let max_file_size = info
                    .extensions
                    .iter()
                    .find(|f| f.form_type() == Some(UPLOAD_NS))
                    .and_then(|f| f.field("max-file-size"))
                    .and_then(|f| f.value())
                    .and_then(|v| v.trim().parse().ok());
                let s = UploadService {
                    jid: item.jid.clone(),
                    max_file_size,
                };
                *self.service.lock().unwrap_or_else(|p| p.into_inner()) = Some(s.clone());
                return Ok(s);
            }
        }
        Err(UploadError::NotOffered)
    }

    fn cached(&self) -> Option<UploadService> {
        self.service
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Asks the service for a slot for `name` of `size` bytes.
    pub async fn request_slot(
        &self,
        client: &Client,
        name: &str,
        size: u64,
        content_type: Option<&str>,
    ) -> Result<Slot, UploadError> {
        let service = self.discover(client).await?;
        if service.max_file_size.is_some_and(|m| size > m) {
            return Err(UploadError::FileTooLarge {
                max: service.max_file_size,
            });
        }
        let mut req = Element::new("request", UPLOAD_NS)
            .attr("filename", name)
            .attr("size", size.to_string());
        if let Some(ct) = content_type {
            req.set_attr("content-type", ct);
        }
        let reply = match client
            .request(iq(IqType::Get, Some(&service.jid), req))
            .await
        {
            Ok(r) => r,
            Err(Error::Stanza { error, stanza }) => {
                let too_large = stanza
                    .get_child("error", ns::CLIENT)
                    .and_then(|e| e.get_child("file-too-large", UPLOAD_NS));
                return Err(match too_large {
                    Some(t) => UploadError::FileTooLarge {
                        max: t
                            .get_child("max-file-size", UPLOAD_NS)
                            .and_then(|m| m.text_content().trim().parse().ok()),
                    },
                    None => UploadError::Refused(error),
                });
            }
            Err(e) => return Err(e.into()),
        };
        parse_slot(&reply).ok_or_else(|| Error::Protocol("slot without put/get URLs".into()).into())
    }

    /// PUTs `size` bytes from `data` to the slot (at most `size` are read).
    pub async fn put(
        &self,
        slot: &Slot,
        data: impl AsyncRead + Send + Unpin + 'static,
        size: u64,
        content_type: Option<&str>,
    ) -> Result<(), UploadError> {
        let mut headers = vec![(hyper::header::CONTENT_LENGTH, HeaderValue::from(size))];
        if let Some(ct) = content_type {
            let v = HeaderValue::from_str(ct).map_err(|_| UploadError::Url(ct.into()))?;
            headers.push((hyper::header::CONTENT_TYPE, v));
        }
        for (k, v) in &slot.put_headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.push((k, v));
            }
        }
        let body = reader_body(data.take(size));
        let work = async {
            let resp = self.send(Method::PUT, &slot.put_url, headers, body).await?;
            let status = resp.status();
            // Read the (small) answer so the connection ends cleanly.
            let _ = resp.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(UploadError::Http(status.as_u16()))
            }
        };
        tokio::time::timeout(self.transfer_timeout, work)
            .await
            .map_err(|_| UploadError::Timeout)?
    }

    /// Uploads the file at `path` (its name and size as the slot's) and returns the GET URL.
    pub async fn upload_file(
        &self,
        client: &Client,
        path: &Path,
        content_type: Option<&str>,
    ) -> Result<String, UploadError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| UploadError::Url(path.display().to_string()))?;
        let file = tokio::fs::File::open(path).await?;
        let size = file.metadata().await?.len();
        let content_type = content_type.unwrap_or_else(|| guess_content_type(name));
        let slot = self
            .request_slot(client, name, size, Some(content_type))
            .await?;
        self.put(&slot, file, size, Some(content_type)).await?;
        Ok(slot.get_url)
    }

    /// Uploads the file and sends its URL to `to` in a chat message (body and
    /// `jabber:x:oob`); returns the URL.
    pub async fn send_file(
        &self,
        client: &Client,
        to: &Jid,
        path: &Path,
    ) -> Result<String, UploadError> {
        let url = self.upload_file(client, path, None).await?;
        let m = ChatMessage {
            id: Some(client.new_id()),
            oob_url: Some(url.clone()),
            ..ChatMessage::new(to.clone(), url.clone())
        };
        client.send(m.to_element()).await?;
        Ok(url)
    }

    /// Downloads `url` into a new file `dest` (refusing to overwrite one), at most
    /// `max_bytes`; returns the size. Nothing is left at `dest` when it fails.
    pub async fn download(
        &self,
        url: &str,
        dest: &Path,
        max_bytes: u64,
    ) -> Result<u64, UploadError> {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await?;
        let r = tokio::time::timeout(
            self.transfer_timeout,
            self.download_into(url, &mut file, max_bytes),
        )
        .await
        .unwrap_or(Err(UploadError::Timeout));
        match r {
            Ok(n) => {
                file.sync_all().await?;
                Ok(n)
            }
            Err(e) => {
                drop(file);
                let _ = tokio::fs::remove_file(dest).await;
                Err(e)
            }
        }
    }

    async fn download_into(
        &self,
        url: &str,
        out: &mut (impl AsyncWrite + Unpin),
        max_bytes: u64,
    ) -> Result<u64, UploadError> {
        let empty: Body = Empty::new().map_err(|never| match never {}).boxed_unsync();
        let resp = self.send(Method::GET, url, Vec::new(), empty).await?;
        if resp.status() != StatusCode::OK {
            return Err(UploadError::Http(resp.status().as_u16()));
        }
        let declared = resp
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|d| d > max_bytes) {
            return Err(UploadError::DownloadTooLarge(max_bytes));
        }
        let mut body = resp.into_body();
        let mut total: u64 = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| UploadError::Transfer(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                total = total.saturating_add(data.len() as u64);
                if total > max_bytes {
                    return Err(UploadError::DownloadTooLarge(max_bytes));
                }
                out.write_all(&data).await?;
            }
        }
        out.flush().await?;
        Ok(total)
    }

    /// One request on a connection of its own (plain or TLS by the URL's scheme).
    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Body,
    ) -> Result<Response<Incoming>, UploadError> {
        let bad = || UploadError::Url(url.to_string());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let authority = uri.authority().ok_or_else(bad)?.clone();
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority.as_str());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req
            .body(body)
            .map_err(|e| UploadError::Transfer(e.to_string()))?;
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| UploadError::Timeout)?
        .map_err(|e| UploadError::Transfer(format!("connect to {host}:{port}: {e}")))?;
        if !https {
            return exchange(tcp, req).await;
        }
        let cfg = confab_stream::tls::client_config(&self.verify, false)
            .map_err(|e| UploadError::Transfer(e.to_string()))?;
        let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|_| bad())?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| UploadError::Transfer(format!("TLS with {host}: {e}")))?;
        exchange(tls, req).await
    }
}

async fn exchange(
    io: impl AsyncRead + AsyncWrite + Send + Unpin + 'static,
    req: Request<Body>,
) -> Result<Response<Incoming>, UploadError> {
    let transfer = |e: hyper::Error| UploadError::Transfer(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(transfer)?;
    // Drives the connection until the response body is read or dropped.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(transfer)
}

/// A request body streamed from `r`, one chunk at a time.
fn reader_body(r: impl AsyncRead + Send + Unpin + 'static) -> Body {
    let chunks = futures_util::stream::unfold(Some(r), |state| async move {
        let mut r = state?;
        let mut buf = vec![0u8; CHUNK];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buf))), Some(r)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    StreamBody::new(chunks).boxed_unsync()
}

/// The slot in a slot request's result, with only the headers XEP-0363 allows.
fn parse_slot(reply: &Element) -> Option<Slot> {
    let slot = reply.get_child("slot", UPLOAD_NS)?;
    let put = slot.get_child("put", UPLOAD_NS)?;
    let get = slot.get_child("get", UPLOAD_NS)?;
    let clean = |s: &str| {
        s.chars()
            .filter(|c| *c != '\r' && *c != '\n')
            .collect::<String>()
    };
    let put_headers = put
        .elements()
        .filter(|h| h.is("header", UPLOAD_NS))
        .filter_map(|h| {
            let name = clean(h.get_attr("name")?);
            ["Authorization", "Cookie", "Expires"]
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&name))
                .then(|| (name, clean(&h.text_content())))
        })
        .collect();
    Some(Slot {
        put_url: put.get_attr("url")?.to_string(),
        put_headers,
        get_url: get.get_attr("url")?.to_string(),
    })
}

/// A media type for a file name's extension (`application/octet-stream` when unknown).
pub fn guess_content_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "txt" | "log" | "md" => "text/plain",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "m4a" => "audio/mp4",
        "mp4" | "m4v" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

/// The file name at the end of a URL (percent-decoded), for saving a download; `None` when
/// it has none usable (empty, a directory name, or a path).
pub fn file_name_of(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let last = path.rsplit('/').next()?;
    let mut bytes = Vec::with_capacity(last.len());
    let mut it = last.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next()?, it.next()?];
            let s = std::str::from_utf8(&hex).ok()?;
            bytes.push(u8::from_str_radix(s, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    let name = String::from_utf8(bytes).ok()?;
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    (!bad).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_headers_are_filtered() {
        let reply = Element::new("iq", ns::CLIENT).child(
            Element::new("slot", UPLOAD_NS)
                .child(
                    Element::new("put", UPLOAD_NS)
                        .attr("url", "https://u.example/p")
                        .child(
                            Element::new("header", UPLOAD_NS)
                                .attr("name", "authorization")
                                .text("Bearer a\r\nX-Evil: 1"),
                        )
                        .child(
                            Element::new("header", UPLOAD_NS)
                                .attr("name", "X-Other")
                                .text("no"),
                        ),
                )
                .child(Element::new("get", UPLOAD_NS).attr("url", "https://u.example/g")),
        );
        let s = parse_slot(&reply).expect("slot");
        assert_eq!(
            s.put_headers,
            vec![("authorization".to_string(), "Bearer aX-Evil: 1".to_string())]
        );
        assert_eq!(s.get_url, "https://u.example/g");
    }

    #[test]
    fn names_from_urls() {
        assert_eq!(
            file_name_of("https://h/upload/id/tr%C3%A8s%20cool.jpg").as_deref(),
            Some("très cool.jpg")
        );
        for bad in [
            "https://h/",
            "https://h/a/..",
            "https://h/a%2Fb",
            "https://h/%zz",
        ] {
            assert_eq!(file_name_of(bad), None, "{bad}");
        }
    }
}
