//! XEP-0198 Stream Management, the client's side: counting handled stanzas, keeping what
//! was sent until the server acknowledges it, and what a resumption needs. The driver task
//! owns one [`SmState`]; this file does no I/O, so the counting is unit-tested alone.

use confab_proto::{ns, Element};
use std::collections::VecDeque;
use std::time::Duration;

/// The stream management namespace (version 3).
pub const NS: &str = "urn:xmpp:sm:3";

/// Stream management settings; used only when the server offers `urn:xmpp:sm:3`.
#[derive(Clone, Debug)]
pub struct StreamManagement {
    /// Enable stream management when offered (acknowledgements both ways).
    pub enabled: bool,
    /// Ask for resumption, so a lost connection can pick the session up again.
    pub resume: bool,
    /// The longest time to ask the server to keep the session for resumption (`max`);
    /// `None` leaves it to the server.
    pub max_resume: Option<Duration>,
    /// Ask for an acknowledgement (`<r/>`) once this many sent stanzas are unacknowledged.
    pub request_every: usize,
    /// The most sent stanzas kept unacknowledged. When full, [`crate::Client::send`] waits
    /// until the server acknowledges some (backpressure); the queue can exceed it only by
    /// the replies modules give to one incoming stanza. It also bounds the sends held while
    /// the client reconnects.
    pub max_unacked: usize,
    /// How long an acknowledgement may take before the connection is taken for dead (and,
    /// with [`crate::Reconnect`], replaced).
    pub ack_timeout: Duration,
}

impl Default for StreamManagement {
    fn default() -> Self {
        StreamManagement {
            enabled: true,
            resume: true,
            max_resume: None,
            request_every: 5,
            max_unacked: 256,
            ack_timeout: Duration::from_secs(60),
        }
    }
}

/// Whether a top-level element is a stanza (what XEP-0198 counts), not a nonza.
pub(crate) fn is_stanza(el: &Element) -> bool {
    matches!(el.name.as_str(), "message" | "presence" | "iq") && el.is(&el.name, ns::CLIENT)
}

/// Parses the `h` attribute of `<a/>`, `<resumed/>` or `<failed/>`.
pub(crate) fn h_of(el: &Element) -> Option<u32> {
    el.get_attr("h").and_then(|h| h.parse().ok())
}

/// The state of stream management across the connections of one session.
#[derive(Debug, Default)]
pub(crate) struct SmState {
    /// Enabled on the current session.
    pub enabled: bool,
    /// The resumption id the server gave, if the session is resumable.
    pub resume_id: Option<String>,
    /// Stanzas received and handled since enabling (XEP-0198 `h`, wraps at 2^32).
    pub handled: u32,
    /// The server's last acknowledged count of our stanzas.
    pub acked: u32,
    /// Sent and not acknowledged, oldest first.
    pub unacked: VecDeque<Element>,
    /// Stanzas sent since the last `<r/>`.
    pub since_request: usize,
    /// An `<r/>` was sent and not answered yet.
    pub request_pending: bool,
}

impl SmState {
    /// Starts counting on a newly enabled session; `resume_id` if it is resumable.
    pub fn enable(&mut self, resume_id: Option<String>) {
        self.enabled = true;
        self.resume_id = resume_id;
        self.handled = 0;
        self.acked = 0;
        self.since_request = 0;
        self.request_pending = false;
        self.unacked.clear();
    }

    /// Counts one handled incoming stanza.
    pub fn handled_one(&mut self) {
        if self.enabled {
            self.handled = self.handled.wrapping_add(1);
        }
    }

    /// Keeps a stanza about to be written; true if an `<r/>` should follow it.
    pub fn sent(&mut self, el: &Element, request_every: usize) -> bool {
        if !self.enabled || !is_stanza(el) {
            return false;
        }
        self.unacked.push_back(el.clone());
        self.since_request += 1;
        !self.request_pending && self.since_request >= request_every.max(1)
    }

    /// Notes that an `<r/>` went out.
    pub fn requested(&mut self) {
        self.request_pending = true;
        self.since_request = 0;
    }

    /// Applies the server's count `h`: drops what it handled. Err if `h` counts more than
    /// was sent (then everything is taken as acknowledged, so nothing is sent twice).
    pub fn ack(&mut self, h: u32) -> Result<(), u32> {
        self.request_pending = false;
        let newly = h.wrapping_sub(self.acked) as usize;
        self.acked = h;
        if newly > self.unacked.len() {
            let sent = self.unacked.len();
            self.unacked.clear();
            return Err(sent as u32);
        }
        self.unacked.drain(..newly);
        Ok(())
    }

    /// Ends the session (a fresh one follows, or none): returns what the server never
    /// acknowledged, after applying its final count `h` if it gave one.
    pub fn take_unacked(&mut self, h: Option<u32>) -> Vec<Element> {
        if let Some(h) = h {
            let _ = self.ack(h);
        }
        self.enabled = false;
        self.resume_id = None;
        self.unacked.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: u32) -> Element {
        Element::new("message", ns::CLIENT).attr("id", i.to_string())
    }

    #[test]
    fn counts_only_stanzas_and_only_when_enabled() {
        let mut s = SmState::default();
        s.handled_one();
        assert!(!s.sent(&msg(0), 5));
        assert_eq!((s.handled, s.unacked.len()), (0, 0));
        s.enable(None);
        s.handled_one();
        s.handled_one();
        assert_eq!(s.handled, 2);
        assert!(!s.sent(&Element::new("r", NS), 1), "nonzas are not kept");
        assert!(s.unacked.is_empty());
    }

    #[test]
    fn requests_every_n_and_acks_drop_the_oldest() {
        let mut s = SmState::default();
        s.enable(Some("id".into()));
        let asks: Vec<bool> = (0..5).map(|i| s.sent(&msg(i), 3)).collect();
        assert_eq!(asks, [false, false, true, true, true]);
        s.requested();
        assert!(!s.sent(&msg(5), 3), "one request at a time");
        s.ack(2).expect("in range");
        assert_eq!(s.unacked.front().and_then(|m| m.get_attr("id")), Some("2"));
        s.ack(2).expect("same h again");
        assert_eq!(s.unacked.len(), 4);
        assert_eq!(s.ack(9), Err(4));
        assert!(s.unacked.is_empty());
    }

    #[test]
    fn counts_wrap_at_two_to_the_32() {
        let mut s = SmState::default();
        s.enable(None);
        s.handled = u32::MAX;
        s.handled_one();
        assert_eq!(s.handled, 0);
        s.acked = u32::MAX - 1;
        for i in 0..3 {
            s.sent(&msg(i), 100);
        }
        s.ack(0).expect("two handled across the wrap");
        assert_eq!(s.unacked.len(), 1);
    }

    #[test]
    fn a_failed_resumption_returns_what_was_not_handled() {
        let mut s = SmState::default();
        s.enable(Some("id".into()));
        for i in 0..4 {
            s.sent(&msg(i), 100);
        }
        let rest = s.take_unacked(Some(1));
        let ids: Vec<_> = rest.iter().filter_map(|m| m.get_attr("id")).collect();
        assert_eq!(ids, ["1", "2", "3"]);
        assert!(!s.enabled && s.resume_id.is_none());
    }
}
