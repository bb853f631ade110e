//! A small namespace-aware element tree and its serializer.
//!
//! Stanzas are parsed once into this tree and forwarded as-is, so the tree keeps everything a
//! peer sent (unknown payloads included) and serializes it back with correct escaping.

use std::fmt::Write as _;

/// A namespace name. Shared, not copied: every element of a parsed stanza in the same
/// namespace points at one string, so a long namespace declared once costs its length once
/// (a copy per element let a small stanza hold gigabytes). Well-known names are static.
pub type Ns = rxml::Namespace<'static>;

/// A namespace name from a borrowed string: the static copy when the name is well known,
/// otherwise one allocation.
pub fn namespace(s: &str) -> Ns {
    Ns::try_share_static(s).unwrap_or_else(|| Ns::from(s.to_string()))
}

/// A child node: an element or character data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// One attribute. `ns` is empty for the usual un-namespaced attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ns: Ns,
    pub name: String,
    pub value: String,
}

/// An XML element with its namespace, attributes and children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub ns: Ns,
    pub attrs: Vec<Attr>,
    pub children: Vec<Node>,
}

impl Element {
    pub fn new(name: impl Into<String>, ns: impl Into<Ns>) -> Self {
        Element {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: sets an un-namespaced attribute.
    pub fn attr(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder: appends a child element.
    pub fn child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: appends character data.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// The value of an un-namespaced attribute.
    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_empty() && a.name == name)
            .map(|a| a.value.as_str())
    }

    /// The value of a namespaced attribute (e.g. `xml:lang`).
    pub fn get_attr_ns(&self, ns: &str, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns == ns && a.name == name)
            .map(|a| a.value.as_str())
    }

    pub fn set_attr(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .attrs
            .iter_mut()
            .find(|a| a.ns.is_empty() && a.name == name)
        {
            Some(a) => a.value = value,
            None => self.attrs.push(Attr {
                ns: Ns::NONE,
                name: name.to_string(),
                value,
            }),
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self
            .attrs
            .iter()
            .position(|a| a.ns.is_empty() && a.name == name)?;
        Some(self.attrs.remove(pos).value)
    }

    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// Child elements in document order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this name and namespace.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|n| match n {
            Node::Element(e) if e.is(name, ns) => Some(e),
            _ => None,
        })
    }

    /// Removes every child element with this name and namespace.
    pub fn remove_children(&mut self, name: &str, ns: &str) {
        self.children
            .retain(|n| !matches!(n, Node::Element(e) if e.is(name, ns)));
    }

    /// Concatenated character data directly inside this element.
    pub fn text_content(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Serializes with the element's namespace declared unless it equals `parent_ns`.
    pub fn write_to(&self, out: &mut String, parent_ns: &str) {
        self.write_prefixed(out, parent_ns, None);
    }

    /// Like `write_to`; with a prefix, the element's name is written with that prefix
    /// (declared on the stream header) and its namespace is not declared again.
    fn write_prefixed(&self, out: &mut String, parent_ns: &str, prefix: Option<&str>) {
        // Recursion is bounded: parsed trees are depth-limited by the parser.
        out.push('<');
        if let Some(p) = prefix {
            out.push_str(p);
            out.push(':');
        }
        out.push_str(&self.name);
        if prefix.is_none() && *self.ns != *parent_ns {
            out.push_str(" xmlns='");
            escape_into(out, &self.ns, true);
            out.push('\'');
        }
        let mut prefix_no = 0;
        for a in &self.attrs {
            out.push(' ');
            if a.ns.is_empty() {
                out.push_str(&a.name);
            } else if *a.ns == *crate::ns::XML {
                out.push_str("xml:");
                out.push_str(&a.name);
            } else {
                // Foreign-namespace attributes get a local prefix declared on this element.
                let _ = write!(out, "xmlns:a{prefix_no}='");
                escape_into(out, &a.ns, true);
                let _ = write!(out, "' a{prefix_no}:{}", a.name);
                prefix_no += 1;
            }
            out.push_str("='");
            escape_into(out, &a.value, true);
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for n in &self.children {
            match n {
                Node::Element(e) => e.write_to(out, &self.ns),
                Node::Text(t) => escape_into(out, t, false),
            }
        }
        out.push_str("</");
        if let Some(p) = prefix {
            out.push_str(p);
            out.push(':');
        }
        out.push_str(&self.name);
        out.push('>');
    }

    /// Serializes as a top-level element of a stream whose default namespace is `stream_ns`.
    pub fn to_xml(&self, stream_ns: &str) -> String {
        let mut s = String::with_capacity(128);
        self.write_to(&mut s, stream_ns);
        s
    }

    /// Serializes as a top-level element of a stream whose header declared `stream_ns` as
    /// the default namespace and the `stream` prefix for the streams namespace: elements of
    /// that namespace (features, stream errors) are written as `stream:features`, the form
    /// RFC 6120 §4.8.5 recommends and some clients require.
    pub fn to_stream_xml(&self, stream_ns: &str) -> String {
        let mut s = String::with_capacity(128);
        if *self.ns == *crate::ns::STREAM {
            self.write_prefixed(&mut s, crate::ns::STREAM, Some("stream"));
        } else {
            self.write_to(&mut s, stream_ns);
        }
        s
    }
}

impl std::fmt::Display for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_xml(""))
    }
}

/// Escapes character data or an attribute value (single-quoted).
pub fn escape_into(out: &mut String, s: &str, attr: bool) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\'' if attr => out.push_str("&apos;"),
            '"' if attr => out.push_str("&quot;"),
            // Keep whitespace in attributes exact: a literal tab or newline would be normalised.
            '\t' if attr => out.push_str("&#9;"),
            '\n' if attr => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s, true);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_namespaces_and_escaping() {
        let e = Element::new("message", "jabber:client")
            .attr("to", "a'b@example.com")
            .child(Element::new("body", "jabber:client").text("1 < 2 & \"x\""))
            .child(Element::new(
                "active",
                "http://jabber.org/protocol/chatstates",
            ));
        assert_eq!(
            e.to_xml("jabber:client"),
            "<message to='a&apos;b@example.com'><body>1 &lt; 2 &amp; \"x\"</body>\
             <active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        );
    }

    #[test]
    fn stream_level_elements_use_the_stream_prefix() {
        let features = Element::new("features", crate::ns::STREAM)
            .child(Element::new("bind", crate::ns::BIND));
        assert_eq!(
            features.to_stream_xml("jabber:client"),
            "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        );
        let err = Element::new("error", crate::ns::STREAM)
            .child(Element::new("conflict", crate::ns::STREAMS));
        assert_eq!(
            err.to_stream_xml("jabber:client"),
            "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
        );
        let msg = Element::new("message", "jabber:client");
        assert_eq!(msg.to_stream_xml("jabber:client"), "<message/>");
    }

    #[test]
    fn xml_lang_attribute() {
        let mut e = Element::new("body", "jabber:client");
        e.attrs.push(Attr {
            ns: crate::ns::XML.into(),
            name: "lang".into(),
            value: "en".into(),
        });
        assert_eq!(e.to_xml("jabber:client"), "<body xml:lang='en'/>");
    }
}
