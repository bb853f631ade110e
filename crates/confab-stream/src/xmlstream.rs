//! Reads parsed stream events from a transport and writes serialized elements to it.

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
}

impl<S: AsyncRead + AsyncWrite + Unpin> XmlStream<S> {
    pub fn new(io: S, limits: Limits) -> Self {
        XmlStream {
            io,
            parser: StreamParser::new(limits),
            rbuf: Vec::new(),
            rpos: 0,
        }
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
        ev
    }

    /// Waits for more bytes from the peer. Cancel-safe: `read_buf` only extends the
    /// buffer's length once bytes have arrived.
    /// Returns how many bytes arrived.
    pub async fn read_more(&mut self) -> Result<usize, ReadError> {
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
        self.io.write_all(data).await?;
        self.io.flush().await
    }

    pub async fn write_element(&mut self, e: &Element, stream_ns: &str) -> io::Result<()> {
        self.write_bytes(e.to_stream_xml(stream_ns).as_bytes())
            .await
    }

    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }
}
