//! Property tests: whatever element tree we serialize parses back to the same tree, and no
//! byte sequence makes the stream parser panic.

use confab_proto::parser::{Limits, StreamEvent, StreamParser};
use confab_proto::xml::{Attr, Element, Node};
use proptest::prelude::*;

const HEADER: &str = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='x' version='1.0'>";

fn xml_text() -> impl Strategy<Value = String> {
    // Any XML 1.0 Char, including markup characters and non-ASCII.
    proptest::collection::vec(
        prop_oneof![
            Just('<'),
            Just('>'),
            Just('&'),
            Just('\''),
            Just('"'),
            Just('\t'),
            Just('\n'),
            Just('\r'),
            proptest::char::range(' ', '~'),
            proptest::char::range('\u{a0}', '\u{d7ff}'),
            proptest::char::range('\u{10000}', '\u{10ffff}'),
        ],
        1..20,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn element(depth: u32) -> BoxedStrategy<Element> {
    let name = "[a-z][a-z0-9_-]{0,7}";
    let ns = prop_oneof![
        Just("jabber:client".to_string()),
        Just("urn:example:a".to_string()),
        Just("urn:example:b".to_string()),
    ];
    let attrs = proptest::collection::btree_map("[a-z]{1,6}", xml_text(), 0..4);
    let leaf = (name, ns, attrs).prop_map(|(name, ns, attrs)| Element {
        name,
        ns: ns.into(),
        attrs: attrs
            .into_iter()
            .map(|(name, value)| Attr {
                ns: confab_proto::xml::Ns::NONE,
                name,
                value,
            })
            .collect(),
        children: Vec::new(),
    });
    if depth == 0 {
        return leaf.boxed();
    }
    (
        leaf,
        proptest::collection::vec(
            prop_oneof![
                element(depth - 1).prop_map(Node::Element),
                xml_text().prop_map(Node::Text)
            ],
            0..4,
        ),
    )
        .prop_map(|(mut e, children)| {
            // Adjacent text nodes are one text node once parsed.
            for c in children {
                match (e.children.last_mut(), c) {
                    (Some(Node::Text(prev)), Node::Text(t)) => prev.push_str(&t),
                    (_, c) => e.children.push(c),
                }
            }
            e
        })
        .boxed()
}

proptest! {
    #[test]
    fn serialize_then_parse_is_identity(e in element(3)) {
        let mut p = StreamParser::new(Limits::default());
        let doc = format!("{HEADER}{}", e.to_xml("jabber:client"));
        let mut buf = doc.as_bytes();
        let mut events = Vec::new();
        while let Some(ev) = p.next_event(&mut buf).expect("our own output parses") {
            events.push(ev);
        }
        prop_assert_eq!(events.len(), 2);
        prop_assert_eq!(&events[1], &StreamEvent::Element(e));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), split in 0usize..512) {
        let mut p = StreamParser::new(Limits { max_stanza_size: 4096, max_depth: 8, max_attributes: 4, max_name_length: 16, max_stanza_memory: 1 << 20 });
        let mut all = HEADER.as_bytes().to_vec();
        all.extend_from_slice(&data);
        let split = split.min(all.len());
        for chunk in [&all[..split], &all[split..]] {
            let mut buf = chunk;
            while let Ok(Some(_)) = p.next_event(&mut buf) {}
        }
    }
}
