//! Property tests of the typed payloads: no element tree makes a parser panic, and whatever
//! a parser accepts, written back and parsed again, is the same value.

use confab_proto::payloads::{
    blocking, chatstates, data_form, delay, disco, hints, last, nick, ping, private, receipts,
    register, roster, rsm, time, vcard, version,
};
use confab_proto::xml::{Attr, Element, Node, Ns};
use proptest::prelude::*;

const NAMES: &[&str] = &[
    "query",
    "item",
    "group",
    "x",
    "field",
    "value",
    "option",
    "set",
    "max",
    "first",
    "last",
    "count",
    "before",
    "after",
    "index",
    "vCard",
    "PHOTO",
    "BINVAL",
    "TYPE",
    "EXTVAL",
    "FN",
    "NICKNAME",
    "photo",
    "identity",
    "feature",
    "block",
    "unblock",
    "blocklist",
    "delay",
    "time",
    "tzo",
    "utc",
    "ping",
    "nick",
    "received",
    "request",
    "active",
    "composing",
    "no-store",
    "store",
    "username",
    "password",
    "email",
    "remove",
    "registered",
    "instructions",
    "reported",
    "required",
    "desc",
    "title",
    "name",
    "version",
    "os",
    "unknown",
];

const NAMESPACES: &[&str] = &[
    roster::NS,
    register::NS,
    data_form::NS,
    vcard::NS,
    vcard::UPDATE_NS,
    blocking::NS,
    confab_proto::ns::DISCO_INFO,
    confab_proto::ns::DISCO_ITEMS,
    ping::NS,
    last::NS,
    version::NS,
    time::NS,
    private::NS,
    delay::NS,
    nick::NS,
    chatstates::NS,
    receipts::NS,
    hints::NS,
    rsm::NS,
    "jabber:client",
    "urn:example:other",
];

const ATTRS: &[&str] = &[
    "jid",
    "name",
    "subscription",
    "ask",
    "approved",
    "ver",
    "var",
    "type",
    "label",
    "category",
    "node",
    "seconds",
    "stamp",
    "from",
    "id",
    "index",
    "extra",
];

const VALUES: &[&str] = &[
    "",
    " ",
    "remove",
    "both",
    "none",
    "subscribe",
    "true",
    "form",
    "submit",
    "result",
    "hidden",
    "fixed",
    "list-multi",
    "boolean",
    "text-single",
    "0",
    "10",
    "-1",
    "18446744073709551616",
    "2002-09-10T23:08:25Z",
    "9999-12-31T23:59:59-01:00",
    "-06:00",
    "+14:00",
    "Z",
    "romeo@montague.net",
    "montague.net/orchard",
    "@bad",
    "a@b@c",
    "YWJj",
    "!!",
    "FORM_TYPE",
    "\u{10ffff}",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(VALUES).prop_map(str::to_string),
        1 => "[ -~]{0,12}",
        1 => proptest::collection::vec(any::<char>(), 0..6).prop_map(|v| v.into_iter().collect()),
    ]
}

/// An element in any namespace.
fn element(depth: u32) -> BoxedStrategy<Element> {
    proptest::sample::select(NAMESPACES)
        .prop_flat_map(move |ns| element_in(depth, ns))
        .boxed()
}

/// An element in `ns` whose children are mostly in `ns` too, as in real payloads.
fn element_in(depth: u32, ns: &'static str) -> BoxedStrategy<Element> {
    let name = prop_oneof![
        6 => proptest::sample::select(NAMES).prop_map(str::to_string),
        1 => "[a-z]{1,6}",
    ];
    let attrs = proptest::collection::vec((proptest::sample::select(ATTRS), text()), 0..4);
    let leaf = (name, attrs).prop_map(move |(name, attrs)| Element {
        name,
        ns: confab_proto::xml::namespace(ns),
        attrs: attrs
            .into_iter()
            .map(|(name, value)| Attr {
                ns: Ns::NONE,
                name: name.to_string(),
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
                6 => element_in(depth - 1, ns).prop_map(Node::Element),
                1 => element(depth - 1).prop_map(Node::Element),
                2 => text().prop_map(Node::Text),
            ],
            0..5,
        ),
    )
        .prop_map(|(mut e, children)| {
            e.children = children;
            e
        })
        .boxed()
}

/// Valid payloads of every kind, built with the types, to be mutated.
fn seeds() -> Vec<Element> {
    use confab_proto::jid::Jid;
    let jid = |s: &str| Jid::new(s).expect("valid");
    let form = data_form::DataForm {
        title: Some("Contest Registration".into()),
        instructions: vec!["Please provide".into()],
        ..data_form::DataForm::new(
            data_form::FormType::Form,
            vec![
                data_form::Field::form_type("jabber:iq:register"),
                data_form::Field {
                    type_: Some(data_form::FieldType::ListSingle),
                    label: Some("Gender".into()),
                    required: true,
                    options: vec![data_form::FieldOption {
                        label: Some("Male".into()),
                        value: "M".into(),
                    }],
                    ..data_form::Field::new("x-gender", ["M"])
                },
            ],
        )
    };
    vec![
        roster::RosterQuery {
            ver: Some("ver11".into()),
            items: vec![roster::RosterItem {
                name: Some("Romeo".into()),
                subscription: Some(roster::Subscription::Both),
                ask: true,
                approved: true,
                groups: vec!["Friends".into(), "Lovers".into()],
                ..roster::RosterItem::new(jid("romeo@example.net"))
            }],
        }
        .into(),
        register::RegisterQuery {
            username: Some("bill".into()),
            password: Some("Calliope".into()),
            email: Some(String::new()),
            remove: true,
            registered: true,
            instructions: Some("Choose".into()),
            form: Some(form.clone()),
        }
        .into(),
        form.into(),
        vcard::VCard {
            full_name: Some("Peter".into()),
            nickname: Some("stpeter".into()),
            photo: Some(vcard::Photo {
                mime_type: Some("image/png".into()),
                data: Some(b"abc".to_vec()),
                extval: None,
            }),
            others: vec![Element::new("BDAY", vcard::NS).text("1966-08-06")],
        }
        .into(),
        vcard::VCardUpdate::Photo("01b87fcd".into()).into(),
        blocking::Block {
            items: vec![jid("romeo@montague.net"), jid("montague.net/x")],
        }
        .into(),
        blocking::Unblock::default().into(),
        blocking::BlockList {
            items: vec![jid("iago@shakespeare.lit")],
        }
        .into(),
        disco::DiscoInfo {
            node: Some("n".into()),
            identities: vec![disco::Identity::new("server", "im", Some("Confab"))],
            features: vec![ping::NS.into(), version::NS.into()],
            extensions: vec![data_form::DataForm::new(
                data_form::FormType::Result,
                vec![data_form::Field::form_type(
                    "urn:xmpp:dataforms:softwareinfo",
                )],
            )],
        }
        .into(),
        disco::DiscoItems {
            node: None,
            items: vec![disco::DiscoItem {
                jid: jid("conference.example.com"),
                node: Some("rooms".into()),
                name: Some("Rooms".into()),
            }],
        }
        .into(),
        ping::Ping.into(),
        last::LastActivity::answer(903, "Heading Home").into(),
        version::SoftwareVersion::answer("Confab", "0.1").into(),
        time::EntityTime {
            tzo: -21600,
            utc: 1_166_551_115,
        }
        .into(),
        private::PrivateQuery {
            payloads: vec![Element::new("exodus", "exodus:prefs")],
        }
        .into(),
        delay::Delay {
            from: Some(jid("capulet.com")),
            stamp: 1_031_699_305,
            reason: Some("Offline Storage".into()),
        }
        .into(),
        nick::Nick("Ishmael".into()).into(),
        chatstates::ChatState::Composing.into(),
        receipts::Received {
            id: Some("r1".into()),
        }
        .into(),
        hints::Hint::NoStore.into(),
        rsm::ResultSet {
            max: Some(10),
            before: Some(String::new()),
            first: Some(rsm::First {
                id: "a".into(),
                index: Some(0),
            }),
            last: Some("b".into()),
            count: Some(800),
            ..rsm::ResultSet::default()
        }
        .into(),
    ]
}

#[derive(Clone, Debug)]
enum Mutation {
    RemoveChild(usize),
    RemoveAttr(usize),
    SetAttr(&'static str, String),
    AddChild(Element),
    SetText(String),
    Rename(&'static str),
}

fn mutation() -> impl Strategy<Value = (usize, Mutation)> {
    let m = prop_oneof![
        any::<usize>().prop_map(Mutation::RemoveChild),
        any::<usize>().prop_map(Mutation::RemoveAttr),
        (proptest::sample::select(ATTRS), text()).prop_map(|(a, v)| Mutation::SetAttr(a, v)),
        element(1).prop_map(Mutation::AddChild),
        text().prop_map(Mutation::SetText),
        proptest::sample::select(NAMES).prop_map(Mutation::Rename),
    ];
    (any::<usize>(), m)
}

fn count(e: &Element) -> usize {
    1 + e.elements().map(count).sum::<usize>()
}

/// The `n`th element of the tree in document order.
fn nth_mut<'a>(el: &'a mut Element, n: &mut usize) -> Option<&'a mut Element> {
    if *n == 0 {
        return Some(el);
    }
    *n -= 1;
    for c in el.children.iter_mut() {
        if let Node::Element(c) = c {
            if let Some(found) = nth_mut(c, n) {
                return Some(found);
            }
        }
    }
    None
}

fn mutate(mut el: Element, ms: Vec<(usize, Mutation)>) -> Element {
    for (at, m) in ms {
        let mut n = at % count(&el);
        let Some(e) = nth_mut(&mut el, &mut n) else {
            continue;
        };
        match m {
            Mutation::RemoveChild(i) if !e.children.is_empty() => {
                let i = i % e.children.len();
                e.children.remove(i);
            }
            Mutation::RemoveAttr(i) if !e.attrs.is_empty() => {
                let i = i % e.attrs.len();
                e.attrs.remove(i);
            }
            Mutation::SetAttr(a, v) => e.set_attr(a, v),
            Mutation::AddChild(c) => e.push_child(c),
            Mutation::SetText(t) => {
                e.children.retain(|c| matches!(c, Node::Element(_)));
                e.children.push(Node::Text(t));
            }
            Mutation::Rename(n) => e.name = n.to_string(),
            _ => {}
        }
    }
    el
}

fn mutated_seed() -> impl Strategy<Value = Element> {
    let seeds = seeds();
    let n = seeds.len();
    (0..n, proptest::collection::vec(mutation(), 0..4)).prop_map(move |(i, ms)| {
        let seed = seeds
            .get(i)
            .cloned()
            .unwrap_or_else(|| Element::new("x", "y"));
        mutate(seed, ms)
    })
}

/// Parses `el` as `T`; if that works, the element built from it parses to the same value.
fn check<T>(el: &Element) -> Result<(), TestCaseError>
where
    T: for<'a> TryFrom<&'a Element> + Into<Element> + Clone + PartialEq + std::fmt::Debug,
    for<'a> <T as TryFrom<&'a Element>>::Error: std::fmt::Debug,
{
    if let Ok(v) = T::try_from(el) {
        let back: Element = v.clone().into();
        let again = T::try_from(&back);
        prop_assert!(again.is_ok(), "{back} does not parse: {:?}", again.err());
        prop_assert_eq!(again.ok(), Some(v), "{}", back);
    }
    Ok(())
}

fn check_all(el: &Element) -> Result<(), TestCaseError> {
    check::<roster::RosterQuery>(el)?;
    check::<roster::RosterItem>(el)?;
    let _ = roster::RosterQuery::parse_set(el);
    check::<register::RegisterQuery>(el)?;
    check::<data_form::DataForm>(el)?;
    check::<data_form::Field>(el)?;
    check::<vcard::VCard>(el)?;
    check::<vcard::Photo>(el)?;
    check::<vcard::VCardUpdate>(el)?;
    check::<blocking::BlockList>(el)?;
    check::<blocking::Block>(el)?;
    check::<blocking::Unblock>(el)?;
    check::<disco::DiscoInfo>(el)?;
    check::<disco::DiscoItems>(el)?;
    check::<ping::Ping>(el)?;
    check::<last::LastActivity>(el)?;
    check::<version::SoftwareVersion>(el)?;
    check::<time::TimeQuery>(el)?;
    check::<time::EntityTime>(el)?;
    check::<private::PrivateQuery>(el)?;
    if let Ok(p) = private::PrivateQuery::try_from(el) {
        let _ = p.check_namespaces();
    }
    check::<delay::Delay>(el)?;
    check::<nick::Nick>(el)?;
    check::<chatstates::ChatState>(el)?;
    let _ = chatstates::ChatState::of_message(el);
    check::<receipts::Request>(el)?;
    check::<receipts::Received>(el)?;
    check::<hints::Hint>(el)?;
    let _ = hints::Hint::of_message(el);
    check::<rsm::ResultSet>(el)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_payloads_never_panic_and_round_trip(el in mutated_seed()) {
        check_all(&el)?;
    }

    #[test]
    fn parsers_never_panic_and_round_trip(el in element(3)) {
        check_all(&el)?;
        // Every parser also sees each child, as a module would see an IQ's payload.
        for c in el.elements() {
            check_all(c)?;
        }
    }
}

/// The mutated seeds reach the parsers' success paths (not only their first check).
#[test]
fn generator_reaches_valid_payloads() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = mutated_seed();
    let mut ok = std::collections::BTreeMap::<&str, usize>::new();
    for _ in 0..3000 {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        let el = tree.current();
        for e in std::iter::once(&el).chain(el.elements()) {
            let mut hit = |name, yes: bool| {
                if yes {
                    *ok.entry(name).or_default() += 1;
                }
            };
            hit(
                "roster",
                roster::RosterQuery::try_from(e).is_ok_and(|q| !q.items.is_empty()),
            );
            hit(
                "form",
                data_form::DataForm::try_from(e).is_ok_and(|f| !f.fields.is_empty()),
            );
            hit(
                "disco",
                disco::DiscoInfo::try_from(e).is_ok_and(|d| !d.features.is_empty()),
            );
            hit("block", blocking::Block::try_from(e).is_ok());
            hit(
                "rsm",
                rsm::ResultSet::try_from(e).is_ok_and(|r| r != rsm::ResultSet::default()),
            );
            hit(
                "vcard",
                vcard::VCard::try_from(e).is_ok_and(|v| v.photo.is_some()),
            );
        }
    }
    eprintln!("{ok:?}");
    for name in ["roster", "form", "disco", "block", "rsm", "vcard"] {
        assert!(
            ok.get(name).is_some_and(|n| *n > 0),
            "no valid {name}: {ok:?}"
        );
    }
}
