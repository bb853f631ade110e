//! Opt-in XML traffic logging (XMPPFramework's `XMPPLogging`): with
//! `ClientOptions::log_traffic` every element a client stream sends or receives, and the
//! raw stream headers it writes, go to `tracing` at debug level under the target
//! [`TARGET`], as `SEND <…>` / `RECV <…>` lines of XML. Secrets are replaced by
//! [`REDACTED`] before anything is formatted: SASL payloads (`<auth/>`, `<challenge/>`,
//! `<response/>`, `<success/>`), `<password/>` of in-band registration and password changes
//! (XEP-0077) and of legacy auth (XEP-0078), `password` and `text-private` fields of data
//! forms, and `Authorization`/`Cookie` headers of HTTP upload slots (XEP-0363).

use confab_proto::ns;
use confab_proto::{Element, Node};

/// The `tracing` target of traffic lines; enable it, e.g. `RUST_LOG=confab::xml=debug`.
pub const TARGET: &str = "confab::xml";

/// What a secret is replaced by.
pub const REDACTED: &str = "[redacted]";

const REGISTER: &str = "jabber:iq:register";
const IQ_AUTH: &str = "jabber:iq:auth";
const DATA_FORM: &str = "jabber:x:data";
const HTTP_UPLOAD: &str = "urn:xmpp:http:upload:0";

/// A copy of `el` with every secret replaced by [`REDACTED`].
pub fn redacted(el: &Element) -> Element {
    let mut e = el.clone();
    redact(&mut e);
    e
}

fn secret_text(e: &Element) -> bool {
    let ns: &str = e.ns.as_ref();
    match (ns, e.name.as_str()) {
        (ns::SASL, "auth" | "challenge" | "response" | "success") => true,
        (REGISTER, "password") | (IQ_AUTH, "password" | "digest") => true,
        (HTTP_UPLOAD, "header") => e.get_attr("name").is_some_and(|n| {
            ["authorization", "cookie", "proxy-authorization"]
                .iter()
                .any(|s| n.trim().eq_ignore_ascii_case(s))
        }),
        _ => false,
    }
}

fn secret_field(e: &Element) -> bool {
    e.is("field", DATA_FORM)
        && (e.get_attr("type") == Some("text-private")
            || e.get_attr("var")
                .is_some_and(|v| v == "password" || v.ends_with("#password")))
}

fn blank_text(e: &mut Element) {
    let had = e
        .children
        .iter()
        .any(|c| matches!(c, Node::Text(t) if !t.is_empty()));
    e.children.retain(|c| !matches!(c, Node::Text(_)));
    if had {
        e.children.push(Node::Text(REDACTED.into()));
    }
}

fn redact(e: &mut Element) {
    if secret_text(e) {
        blank_text(e);
    }
    let field = secret_field(e);
    for c in &mut e.children {
        if let Node::Element(child) = c {
            if field && child.is("value", DATA_FORM) {
                blank_text(child);
            } else {
                redact(child);
            }
        }
    }
}

/// Logs an element sent (`out`) or received.
pub(crate) fn log_element(out: bool, el: &Element) {
    let xml = redacted(el).to_xml(ns::CLIENT);
    tracing::debug!(target: TARGET, "{} {xml}", if out { "SEND" } else { "RECV" });
}

/// Logs raw bytes written (stream headers and the closing tag; never stanzas).
pub(crate) fn log_bytes(data: &[u8]) {
    tracing::debug!(target: TARGET, "SEND {}", String::from_utf8_lossy(data));
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::parser::{parse_fragment, Limits};

    fn el(xml: &str) -> Element {
        parse_fragment(xml, ns::CLIENT, &Limits::default()).expect("parses")
    }

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        let cases = [
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>",
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>Yz1iaXdzLHI9</response>",
            "<iq type='set' id='1'><query xmlns='jabber:iq:register'><username>alice</username><password>secret</password></query></iq>",
            "<iq type='set' id='2'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'><field var='username'><value>alice</value></field><field var='password'><value>secret</value></field></x></query></iq>",
            "<iq type='result' id='3'><slot xmlns='urn:xmpp:http:upload:0'><put url='https://u.example/x'><header name='Authorization'>Basic secret</header><header name='Expires'>Tue</header></put></slot></iq>",
        ];
        for c in cases {
            let out = redacted(&el(c)).to_xml(ns::CLIENT);
            assert!(
                !out.contains("secret") && !out.contains("AGFsaWNl") && !out.contains("Yz1i"),
                "{out}"
            );
            assert!(out.contains(REDACTED), "{out}");
            // Still one well-formed element.
            parse_fragment(&out, ns::CLIENT, &Limits::default()).expect("redacted output parses");
        }
        let kept = redacted(&el(cases[2])).to_xml(ns::CLIENT);
        assert!(kept.contains("<username>alice</username>"), "{kept}");
        let kept = redacted(&el(cases[4])).to_xml(ns::CLIENT);
        assert!(kept.contains(">Tue</header>"), "{kept}");
    }
}
