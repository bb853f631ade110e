//! What other features need to know about XEP-0280 Message Carbons, which the `carbons`
//! module implements: whether a session enabled them, and which messages are copied. A
//! service that makes carbons itself (a room copying a private message to the sessions
//! sharing the sender's nick, XEP-0280 §6.1) follows the same rules from here.

use crate::session::SessionInfo;
use confab_proto::xml::Element;
use std::sync::atomic::{AtomicBool, Ordering};

pub const NS: &str = "urn:xmpp:carbons:2";
const HINTS_NS: &str = "urn:xmpp:hints";
/// Payloads of instant messaging that make a message worth copying without a body
/// (XEP-0280 §6): chat states, receipts, markers.
const IM_PAYLOADS: [&str; 3] = [
    "http://jabber.org/protocol/chatstates",
    "urn:xmpp:receipts",
    "urn:xmpp:chat-markers:0",
];

/// Whether a session asked for carbons (module data; only the `carbons` module sets it, so
/// without that module no session has it).
#[derive(Default)]
struct Enabled(AtomicBool);

/// Whether the session enabled carbons.
pub fn enabled(s: &SessionInfo) -> bool {
    s.data::<Enabled>()
        .is_some_and(|e| e.0.load(Ordering::Relaxed))
}

/// Records the session's `<enable/>` or `<disable/>`.
pub fn set_enabled(s: &SessionInfo, on: bool) {
    s.data_or_insert_with(Enabled::default)
        .0
        .store(on, Ordering::Relaxed);
}

/// XEP-0280 §6: chat messages, normal ones with a body, and IM payloads; never group
/// chat, errors or headlines, nor what the sender marked private or not to copy.
pub fn eligible(el: &Element) -> bool {
    if el.name != "message" {
        return false;
    }
    if el.get_child("private", NS).is_some()
        || el.get_child("no-copy", HINTS_NS).is_some()
        // A carbon is not copied again.
        || el.get_child("sent", NS).is_some()
        || el.get_child("received", NS).is_some()
    {
        return false;
    }
    match el.get_attr("type") {
        Some("chat") => true,
        None | Some("normal") => {
            el.get_child("body", confab_proto::ns::CLIENT).is_some()
                || IM_PAYLOADS
                    .iter()
                    .any(|ns| el.elements().any(|c| *c.ns == **ns))
        }
        _ => false,
    }
}
