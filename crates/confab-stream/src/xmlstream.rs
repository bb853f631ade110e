//! Reads parsed stream events from a transport and writes serialized elements to it.

use crate::transport::ReadReady;
use confab_proto::parser::{Limits, ParseError, StreamEvent, StreamParser};
use confab_proto::xml::Element;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const READ_CHUNK: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("connection closed by peer")]
    Eof,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Parse(#[from] ParseError),
}

/// An XML stream over a transport. `read_more` is cancel-safe, so a session can wait on it
/// in `select!` beside its outbound queue.
pub struct XmlStream<S> {
    io: S,
    parser: StreamParser,
    /// Received bytes not yet handed to the parser; empty (no capacity) while idle.
    rbuf: Vec<u8>,
    rpos: usize,
    /// Log what goes in and out (`crate::traffic`); off unless a client asks.
    log_traffic: bool,
}

impl<S: AsyncRead + AsyncWrite + ReadReady + Unpin> XmlStream<S> {
    pub fn new(io: S, limits: Limits) -> Self {
        XmlStream {
            io,
            parser: StreamParser::new(limits),
            rbuf: Vec::new(),
            rpos: 0,
            log_traffic: false,
        }
    }

    /// Turns XML traffic logging on or off (see [`crate::traffic`]).
    pub fn set_log_traffic(&mut self, on: bool) {
        self.log_traffic = on;
    }

    pub fn limits(&self) -> &Limits {
        self.parser.limits()
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Unwraps the transport (for a TLS upgrade); unparsed bytes are dropped, which is what
    /// RFC 6120 §5.4.3.3 requires after `<proceed/>`.
    pub fn into_inner(self) -> S {
        self.io
    }

    /// Starts a new stream on the same transport (after SASL success), keeping bytes already
    /// received, since a client may pipeline its new stream header.
    pub fn restart(&mut self) {
        let limits = self.parser.limits().clone();
        self.parser = StreamParser::new(limits);
    }

    /// Returns the next event from bytes already received, without waiting.
    pub fn next_buffered(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        if self.rpos >= self.rbuf.len() {
            return Ok(None);
        }
        let mut slice = &self.rbuf[self.rpos..];
        let ev = self.parser.next_event(&mut slice);
        self.rpos = self.rbuf.len() - slice.len();
        if self.rpos >= self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        }
        if self.log_traffic {
            if let Ok(Some(StreamEvent::Element(e))) = &ev {
                crate::traffic::log_element(false, e);
            }
        }
        ev
    }

    /// Waits for more bytes from the peer. Cancel-safe: `read_buf` only extends the
    /// buffer's length once bytes have arrived.
    /// Returns how many bytes arrived.
    ///
    /// The buffer is reserved only once the transport is readable, so a session waiting
    /// for its peer holds no read buffer.
    pub async fn read_more(&mut self) -> Result<usize, ReadError> {
        std::future::poll_fn(|cx| self.io.poll_read_ready(cx)).await?;
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK {
            self.rbuf.reserve(READ_CHUNK);
        }
        let n = self.io.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            return Err(ReadError::Eof);
        }
        Ok(n)
    }

    /// Drops the read buffer's memory while the connection is idle.
    pub fn release_buffers(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = Vec::new();
            self.rpos = 0;
            self.parser.release_temporaries();
        }
    }

    /// Waits for the next event.
    pub async fn next_event(&mut self) -> Result<StreamEvent, ReadError> {
        loop {
            if let Some(ev) = self.next_buffered()? {
                return Ok(ev);
            }
            self.read_more().await?;
        }
    }

    /// Waits for the next top-level element; a stream close is reported as `Eof`.
    pub async fn next_element(&mut self) -> Result<Element, ReadError> {
        match self.next_event().await? {
            StreamEvent::Element(e) => Ok(e),
            StreamEvent::Close => Err(ReadError::Eof),
            StreamEvent::Header(_) => Err(ReadError::Parse(ParseError::BadFormat(
                "unexpected stream header".into(),
            ))),
        }
    }

    pub async fn write_bytes(&mut self, data: &[u8]) -> io::Result<()> {
        if self.log_traffic {
            crate::traffic::log_bytes(data);
        }
        self.write_raw(data).await
    }

    async fn write_raw(&mut self, data: &[u8]) -> io::Result<()> {
        self.io.write_all(data).await?;
        self.io.flush().await
    }

    pub async fn write_element(&mut self, e: &Element, stream_ns: &str) -> io::Result<()> {
        if self.log_traffic {
            crate::traffic::log_element(true, e);
        }
        self.write_raw(e.to_stream_xml(stream_ns).as_bytes()).await
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Transport;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::net::{TcpListener, TcpStream};

    const HEADER: &str = "<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (server, client)
    }

    /// Reads the header and one element, then checks that waiting for the peer holds no
    /// read buffer: idle sessions are the common case, and a buffer each is most of their
    /// memory.
    async fn read_then_idle(server: &mut XmlStream<Transport>) {
        match server.next_event().await.expect("header") {
            StreamEvent::Header(_) => {}
            _ => panic!("expected the stream header"),
        }
        let e = server.next_element().await.expect("element");
        assert_eq!(&*e.name, "presence");
        server.release_buffers();
        let waited = tokio::time::timeout(Duration::from_millis(100), server.read_more()).await;
        assert!(waited.is_err(), "nothing was sent, yet the read completed");
        assert_eq!(server.rbuf.capacity(), 0, "an idle read holds a buffer");
    }

    #[tokio::test]
    async fn idle_tcp_read_holds_no_buffer() {
        let (server, mut client) = tcp_pair().await;
        let mut server = XmlStream::new(Transport::Tcp(server), Default::default());
        client
            .write_all(format!("{HEADER}<presence/>").as_bytes())
            .await
            .expect("write");
        read_then_idle(&mut server).await;
        // And it still reads what comes next.
        client.write_all(b"<presence/>").await.expect("write");
        let e = tokio::time::timeout(Duration::from_secs(5), server.next_element())
            .await
            .expect("read after idle")
            .expect("element");
        assert_eq!(&*e.name, "presence");
    }

    /// A TLS record larger than one read leaves plaintext inside TLS, with nothing more on
    /// the socket: waiting for the socket then would wait forever.
    #[tokio::test]
    async fn tls_plaintext_left_inside_tls_is_read_without_socket_input() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der())
            .expect("key");
        let server_cfg = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("server config");
        let client_cfg = crate::tls::client_config(
            &crate::tls::CertVerification::Roots(vec![cert.to_vec()]),
            false,
        )
        .expect("client config");
        let (server_tcp, client_tcp) = tcp_pair().await;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
        let connector = tokio_rustls::TlsConnector::from(client_cfg);
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let (server_tls, client_tls) = tokio::join!(
            acceptor.accept(server_tcp),
            connector.connect(name, client_tcp)
        );
        let mut server = XmlStream::new(
            Transport::ServerTls(Box::new(server_tls.expect("server handshake"))),
            Default::default(),
        );
        let mut client = client_tls.expect("client handshake");
        client
            .write_all(format!("{HEADER}<presence/>").as_bytes())
            .await
            .expect("write");
        client.flush().await.expect("flush");
        read_then_idle(&mut server).await;
        // One write, one TLS record of about 12 KB: more plaintext than one read takes.
        let big = format!("<message><body>{}</body></message>", "x".repeat(12_000));
        client.write_all(big.as_bytes()).await.expect("write");
        client.flush().await.expect("flush");
        let e = tokio::time::timeout(Duration::from_secs(5), server.next_element())
            .await
            .expect("the rest of the record was read without more input on the socket")
            .expect("element");
        assert_eq!(&*e.name, "message");
    }
}
