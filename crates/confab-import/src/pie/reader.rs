//! Reads a XEP-0227 document as a stream of events, so an import never holds the whole
//! document: hosts and users are announced as they open, the data of a user arrives one
//! child element at a time (each bounded in memory), and the items of an archive one by
//! one. XInclude `<include href=…/>` children of `<server-data/>` and `<host/>` are
//! followed (relative paths below the including file's directory only).

use super::{NS, NS_CONFAB, NS_MAM, NS_XINCLUDE};
use confab_proto::xml::{Attr, Element, Node, Ns};
use rxml::error::EndOrError;
use rxml::{Event, Parse, WithOptions};
use std::path::{Component, Path, PathBuf};
use tokio::io::AsyncReadExt;

/// Bounds on what one import may make the importer hold or follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most memory one element below a user or host (a roster, a vCard, one archived
    /// message) may hold once parsed.
    pub max_element_memory: usize,
    /// Deepest nesting of elements, counted from `<server-data/>`.
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Deepest chain of XInclude files.
    pub max_include_depth: usize,
    /// Most data one user's elements may hold together until the user is written (its
    /// archive, written in batches as it is read, does not count).
    pub max_user_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_element_memory: 16 * 1024 * 1024,
            max_depth: 64,
            max_attributes: 64,
            max_include_depth: 4,
            max_user_memory: 64 * 1024 * 1024,
        }
    }
}

/// Where in the input something is: a file and a byte offset in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub offset: u64,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (byte {})", self.file.display(), self.offset)
    }
}

/// What the reader found.
#[derive(Debug)]
pub(crate) enum PieEvent {
    /// `<host/>` opened (its attributes).
    HostStart(Vec<Attr>),
    HostEnd,
    /// `<user/>` opened (its attributes).
    UserStart(Vec<Attr>),
    UserEnd,
    /// A complete child of a user or host, or of `<server-data/>` when it is not a host.
    Child(Element),
    /// A streamed container opened (an archive of a user, a room archive of a host), given
    /// without children...
    ContainerStart(Element),
    /// ...then its items one by one...
    Item(Element),
    /// ...and its end.
    ContainerEnd,
    /// The end of the document.
    End,
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {what}")]
pub struct ReadError {
    pub at: Location,
    pub what: String,
}

/// Bytes of one document: a file, or a stream another reader writes (the Openfire import).
pub(crate) type Input = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

struct Source {
    parser: rxml::Parser,
    file: Input,
    path: PathBuf,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    offset: u64,
    /// Open elements of this file (its root included).
    depth: usize,
    /// The level its root takes (0 for the main file).
    root_level: usize,
}

impl Source {
    fn new(file: Input, path: PathBuf, root_level: usize) -> Source {
        Source {
            parser: parser(),
            file,
            path,
            buf: vec![0; READ_CHUNK],
            pos: 0,
            len: 0,
            eof: false,
            offset: 0,
            depth: 0,
            root_level,
        }
    }
}

enum Open {
    /// An element on the path: server-data, host, user, or a container.
    Path { container: bool },
    /// The root of an included `<server-data/>`.
    Transparent,
}

pub(crate) struct PieReader {
    sources: Vec<Source>,
    limits: Limits,
    /// The open elements above what is being built, with what each is.
    path: Vec<(String, Ns, Open)>,
    /// The element being built and its open descendants.
    stack: Vec<Element>,
    held: usize,
    /// Inside an `<include/>` being skipped: how many of its elements are open, and its href.
    include: Option<(usize, String)>,
}

const READ_CHUNK: usize = 64 * 1024;
const ELEMENT_COST: usize = std::mem::size_of::<Element>() + std::mem::size_of::<Node>();
const ATTR_COST: usize = std::mem::size_of::<Attr>();

fn parser() -> rxml::Parser {
    // rxml's Options is non-exhaustive, so it cannot be built with a struct literal.
    #[allow(clippy::field_reassign_with_default)]
    let opts = {
        let mut o = rxml::parser::Options::default();
        // Longer names and attribute values are refused; longer text comes in pieces.
        o.max_token_length = 1024 * 1024;
        o
    };
    let mut p = rxml::Parser::with_options(opts);
    // Text of an element comes in one event, so the memory bound sees it whole.
    p.set_text_buffering(true);
    p
}

impl PieReader {
    /// Opens `path` for reading.
    pub(crate) async fn open(path: &Path, limits: Limits) -> Result<PieReader, ReadError> {
        let mut reader = PieReader::new(limits);
        reader.push_source(path.to_path_buf(), 0).await?;
        Ok(reader)
    }

    /// Reads a document from `input`, called `name` in errors. Includes are not followed
    /// (they would be relative to nothing).
    pub(crate) fn from_input(input: Input, name: &str, limits: Limits) -> PieReader {
        let mut reader = PieReader::new(PieReader::no_includes(limits));
        reader
            .sources
            .push(Source::new(input, PathBuf::from(name), 0));
        reader
    }

    fn no_includes(mut limits: Limits) -> Limits {
        limits.max_include_depth = 0;
        limits
    }

    fn new(limits: Limits) -> PieReader {
        PieReader {
            sources: Vec::new(),
            limits,
            path: Vec::new(),
            stack: Vec::new(),
            held: 0,
            include: None,
        }
    }

    /// Where the reader is now.
    pub(crate) fn location(&self) -> Location {
        match self.sources.last() {
            Some(s) => Location {
                file: s.path.clone(),
                offset: s.offset,
            },
            None => Location {
                file: PathBuf::new(),
                offset: 0,
            },
        }
    }

    fn error(&self, what: impl Into<String>) -> ReadError {
        ReadError {
            at: self.location(),
            what: what.into(),
        }
    }

    async fn push_source(&mut self, path: PathBuf, root_level: usize) -> Result<(), ReadError> {
        let file = tokio::fs::File::open(&path).await.map_err(|e| ReadError {
            at: Location {
                file: path.clone(),
                offset: 0,
            },
            what: format!("cannot open: {e}"),
        })?;
        self.sources
            .push(Source::new(Box::new(file), path, root_level));
        Ok(())
    }

    /// The next event; `PieEvent::End` once the main document is complete.
    pub(crate) async fn next(&mut self) -> Result<PieEvent, ReadError> {
        loop {
            let Some(src) = self.sources.last_mut() else {
                return Ok(PieEvent::End);
            };
            if src.pos == src.len && !src.eof {
                let n = src.file.read(&mut src.buf).await.map_err(|e| ReadError {
                    at: Location {
                        file: src.path.clone(),
                        offset: src.offset,
                    },
                    what: format!("read failed: {e}"),
                })?;
                src.pos = 0;
                src.len = n;
                src.eof = n == 0;
            }
            let mut slice = &src.buf[src.pos..src.len];
            let before = slice.len();
            let result = src.parser.parse(&mut slice, src.eof);
            let used = before - slice.len();
            src.pos += used;
            src.offset += used as u64;
            match result {
                Ok(Some(ev)) => {
                    if let Some(out) = self.handle(ev).await? {
                        return Ok(out);
                    }
                }
                Ok(None) => {
                    // This file's document is complete.
                    if let Some(done) = self.sources.pop() {
                        if done.depth != 0 {
                            return Err(ReadError {
                                at: Location {
                                    file: done.path,
                                    offset: done.offset,
                                },
                                what: "the document ends inside an element".into(),
                            });
                        }
                    }
                    if self.sources.is_empty() {
                        return Ok(PieEvent::End);
                    }
                }
                Err(EndOrError::NeedMoreData) => {
                    if src_eof(&self.sources) {
                        return Err(self.error("the document ends early"));
                    }
                }
                Err(EndOrError::Error(e)) => {
                    return Err(self.error(format!("not well-formed XML: {e}")))
                }
            }
        }
    }

    async fn handle(&mut self, ev: Event) -> Result<Option<PieEvent>, ReadError> {
        match ev {
            Event::XmlDeclaration(..) => Ok(None),
            Event::StartElement(_, (ns, name), attrs) => {
                if attrs.len() > self.limits.max_attributes {
                    return Err(self.error(format!("<{}/> has too many attributes", name.as_str())));
                }
                let mut cost = ELEMENT_COST + name.len();
                let mut converted = Vec::with_capacity(attrs.len());
                for ((ans, aname), value) in attrs.into_iter() {
                    cost += ATTR_COST + aname.len() + value.len();
                    converted.push(Attr {
                        ns: ans.into_static(),
                        name: aname.as_str().to_string(),
                        value,
                    });
                }
                let el = Element {
                    name: name.as_str().to_string(),
                    ns: ns.into_static(),
                    attrs: converted,
                    children: Vec::new(),
                };
                let level = self.path.len() + self.stack.len();
                if level + 1 > self.limits.max_depth {
                    return Err(self.error("elements nested too deeply"));
                }
                let root_level = match self.sources.last_mut() {
                    Some(src) => {
                        src.depth += 1;
                        (src.depth == 1).then_some(src.root_level)
                    }
                    None => None,
                };
                if let Some((open, _)) = &mut self.include {
                    *open += 1;
                    return Ok(None);
                }
                if !self.stack.is_empty() {
                    self.hold(cost)?;
                    self.stack.push(el);
                    return Ok(None);
                }
                let pie = *el.ns == *NS;
                let path_level = self
                    .path
                    .iter()
                    .filter(|p| matches!(p.2, Open::Path { .. }))
                    .count();
                if let Some(expected) = root_level {
                    if expected > 0 {
                        // The root of an included file: a host (or a whole `<server-data/>`)
                        // where a host was included, a user where a user was.
                        let fits = (expected == 1
                            && pie
                            && (el.name == "host" || el.name == "server-data"))
                            || (expected == 2 && pie && el.name == "user");
                        if !fits {
                            return Err(self.error(format!(
                                "an included file's root is <{} xmlns='{}'/>, which cannot stand there",
                                el.name, el.ns
                            )));
                        }
                        if el.name == "server-data" {
                            // An included whole document (ejabberd writes one per host): its
                            // root adds no level, its hosts are the including document's.
                            self.path.push((el.name, el.ns, Open::Transparent));
                            return Ok(None);
                        }
                    }
                }
                let parent_is_container = matches!(
                    self.path.last(),
                    Some((_, _, Open::Path { container: true }))
                );
                match path_level {
                    0 if pie && el.name == "server-data" => {
                        self.path
                            .push((el.name, el.ns, Open::Path { container: false }));
                        Ok(None)
                    }
                    0 => Err(self.error(format!(
                        "the root element is <{} xmlns='{}'/>, not <server-data xmlns='{NS}'/>",
                        el.name, el.ns
                    ))),
                    1 | 2 if *el.ns == *NS_XINCLUDE && el.name == "include" => {
                        let href = self.include_href(&el)?;
                        self.include = Some((1, href));
                        Ok(None)
                    }
                    1 if pie && el.name == "host" => {
                        let attrs = el.attrs.clone();
                        self.path
                            .push((el.name, el.ns, Open::Path { container: false }));
                        Ok(Some(PieEvent::HostStart(attrs)))
                    }
                    2 if pie && el.name == "user" && !parent_is_container => {
                        let attrs = el.attrs.clone();
                        self.path
                            .push((el.name, el.ns, Open::Path { container: false }));
                        Ok(Some(PieEvent::UserStart(attrs)))
                    }
                    2 if *el.ns == *NS_CONFAB && el.name == "room-archive" => {
                        self.path.push((
                            el.name.clone(),
                            el.ns.clone(),
                            Open::Path { container: true },
                        ));
                        Ok(Some(PieEvent::ContainerStart(el)))
                    }
                    3 if *el.ns == *NS_MAM && el.name == "archive" && !parent_is_container => {
                        self.path.push((
                            el.name.clone(),
                            el.ns.clone(),
                            Open::Path { container: true },
                        ));
                        Ok(Some(PieEvent::ContainerStart(el)))
                    }
                    _ => {
                        self.held = 0;
                        self.hold(cost)?;
                        self.stack.push(el);
                        Ok(None)
                    }
                }
            }
            Event::Text(_, text) => {
                if self.include.is_some() {
                    return Ok(None);
                }
                match self.stack.last_mut() {
                    Some(_) => {
                        self.hold(text.len() + std::mem::size_of::<Node>())?;
                        if let Some(top) = self.stack.last_mut() {
                            if let Some(Node::Text(t)) = top.children.last_mut() {
                                t.push_str(&text);
                            } else {
                                top.children.push(Node::Text(text));
                            }
                        }
                        Ok(None)
                    }
                    None if text.chars().all(|c| c.is_whitespace()) => Ok(None),
                    None => Err(self.error("text where only elements belong")),
                }
            }
            Event::EndElement(_) => {
                if let Some(src) = self.sources.last_mut() {
                    src.depth = src.depth.saturating_sub(1);
                }
                if let Some((open, href)) = &mut self.include {
                    *open -= 1;
                    if *open == 0 {
                        let href = std::mem::take(href);
                        self.include = None;
                        self.follow_include(&href).await?;
                    }
                    return Ok(None);
                }
                if let Some(done) = self.stack.pop() {
                    return Ok(match self.stack.last_mut() {
                        Some(parent) => {
                            parent.children.push(Node::Element(done));
                            None
                        }
                        None => {
                            self.held = 0;
                            if matches!(
                                self.path.last(),
                                Some((_, _, Open::Path { container: true }))
                            ) {
                                Some(PieEvent::Item(done))
                            } else {
                                Some(PieEvent::Child(done))
                            }
                        }
                    });
                }
                let Some((name, _, open)) = self.path.pop() else {
                    return Err(self.error("an end tag without a start"));
                };
                Ok(match open {
                    Open::Transparent => None,
                    Open::Path { container: true } => Some(PieEvent::ContainerEnd),
                    Open::Path { container: false } => match name.as_str() {
                        "host" => Some(PieEvent::HostEnd),
                        "user" => Some(PieEvent::UserEnd),
                        _ => None,
                    },
                })
            }
        }
    }

    /// The file an `<include/>` names: a relative path with no `..`, no scheme, resolved
    /// against the including file's directory.
    fn include_href(&self, el: &Element) -> Result<String, ReadError> {
        if el.get_attr("xpointer").is_some() {
            return Err(self.error("<include/> with an xpointer is not supported"));
        }
        if el.get_attr("parse").is_some_and(|p| p != "xml") {
            return Err(self.error("<include/> of text (parse='text') is not supported"));
        }
        let Some(href) = el.get_attr("href") else {
            return Err(self.error("<include/> without an href"));
        };
        let p = Path::new(href);
        let plain = !href.is_empty()
            && !href.contains(':')
            && p.components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !plain {
            return Err(self.error(format!(
                "<include href='{href}'/>: only relative paths below the including file are followed"
            )));
        }
        Ok(href.to_string())
    }

    async fn follow_include(&mut self, href: &str) -> Result<(), ReadError> {
        if self.sources.len() > self.limits.max_include_depth {
            return Err(self.error(format!(
                "<include href='{href}'/>: includes nested deeper than {}",
                self.limits.max_include_depth
            )));
        }
        let base = self
            .sources
            .last()
            .and_then(|s| s.path.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let level = self
            .path
            .iter()
            .filter(|p| matches!(p.2, Open::Path { .. }))
            .count();
        self.push_source(base.join(href), level).await
    }

    fn hold(&mut self, cost: usize) -> Result<(), ReadError> {
        self.held = self.held.saturating_add(cost);
        if self.held > self.limits.max_element_memory {
            return Err(self.error(format!(
                "an element would hold more than {} bytes of memory",
                self.limits.max_element_memory
            )));
        }
        Ok(())
    }
}

fn src_eof(sources: &[Source]) -> bool {
    sources.last().is_none_or(|s| s.eof)
}
