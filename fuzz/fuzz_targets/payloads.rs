//! Parses arbitrary bytes as one element and gives it, and every element inside it, to each
//! typed payload parser: none may panic, and whatever one accepts must survive being written
//! back and parsed again.
#![no_main]

use confab_proto::parser::{parse_fragment, Limits};
use confab_proto::payloads::{
    blocking, chatstates, data_form, delay, disco, hints, last, nick, ping, private, receipts,
    register, roster, rsm, time, vcard, version,
};
use confab_proto::xml::Element;
use libfuzzer_sys::fuzz_target;

fn check<T>(el: &Element)
where
    T: for<'a> TryFrom<&'a Element> + Into<Element> + Clone + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = T::try_from(el) {
        let back: Element = v.clone().into();
        assert!(T::try_from(&back).ok() == Some(v), "{back} does not parse back");
    }
}

fn all(el: &Element) {
    check::<roster::RosterQuery>(el);
    check::<roster::RosterItem>(el);
    let _ = roster::RosterQuery::parse_set(el);
    check::<register::RegisterQuery>(el);
    check::<data_form::DataForm>(el);
    check::<data_form::Field>(el);
    check::<vcard::VCard>(el);
    check::<vcard::Photo>(el);
    check::<vcard::VCardUpdate>(el);
    check::<blocking::BlockList>(el);
    check::<blocking::Block>(el);
    check::<blocking::Unblock>(el);
    check::<disco::DiscoInfo>(el);
    check::<disco::DiscoItems>(el);
    check::<ping::Ping>(el);
    check::<last::LastActivity>(el);
    check::<version::SoftwareVersion>(el);
    check::<time::TimeQuery>(el);
    check::<time::EntityTime>(el);
    check::<private::PrivateQuery>(el);
    check::<delay::Delay>(el);
    check::<nick::Nick>(el);
    check::<chatstates::ChatState>(el);
    check::<receipts::Request>(el);
    check::<receipts::Received>(el);
    check::<hints::Hint>(el);
    check::<rsm::ResultSet>(el);
    let _ = chatstates::ChatState::of_message(el);
    let _ = hints::Hint::of_message(el);
    for c in el.elements() {
        all(c);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits {
        max_stanza_size: 8192,
        max_depth: 16,
        max_attributes: 8,
        max_name_length: 64,
        max_stanza_memory: 64 * 1024,
    };
    if let Some(el) = parse_fragment(text, "jabber:client", &limits) {
        all(&el);
    }
});
