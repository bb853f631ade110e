//! Rosters (RFC 6121 §2) with their subscription state (§3) and a version per roster
//! (XEP-0237).

use crate::Result;
use async_trait::async_trait;

/// The `subscription` attribute of a roster item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subscription {
    None,
    To,
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => return None,
        })
    }

    /// The user receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// The contact receives the user's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    pub fn with_to(self, on: bool) -> Self {
        Self::from_flags(on, self.has_from())
    }

    pub fn with_from(self, on: bool) -> Self {
        Self::from_flags(self.has_to(), on)
    }

    fn from_flags(to: bool, from: bool) -> Self {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }
}

/// One contact in a user's roster, including state that is not shown to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's bare JID (normalised).
    pub jid: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// Pending-out: the user asked for the contact's presence (`ask='subscribe'`).
    pub ask: bool,
    /// Pending-in: the contact's subscription request, kept as received (it may carry a
    /// nickname or a status) so it can be delivered again at the next login.
    pub pending_in: Option<String>,
    /// Pre-approval (RFC 6121 §3.4): a future request from the contact is approved at once.
    pub approved: bool,
    /// False for a contact that exists only because of a pending inbound request: such an
    /// item is not part of the roster clients see (RFC 6121 §3.1.3).
    pub in_roster: bool,
    pub groups: Vec<String>,
}

impl RosterItem {
    pub fn new(jid: &str) -> Self {
        RosterItem {
            jid: jid.to_string(),
            name: None,
            subscription: Subscription::None,
            ask: false,
            pending_in: None,
            approved: false,
            in_roster: false,
            groups: Vec::new(),
        }
    }
}

#[async_trait]
pub trait RosterStore: Send + Sync {
    /// The roster version and every stored item (visible or not).
    async fn roster(&self, domain: &str, username: &str) -> Result<(u64, Vec<RosterItem>)>;
    async fn roster_item(
        &self,
        domain: &str,
        username: &str,
        jid: &str,
    ) -> Result<Option<RosterItem>>;
    /// Inserts or replaces an item and bumps the roster version, atomically; returns the
    /// new version.
    async fn put_roster_item(&self, domain: &str, username: &str, item: &RosterItem)
        -> Result<u64>;
    /// Removes an item; returns the new version, or `None` if there was no such item.
    async fn delete_roster_item(
        &self,
        domain: &str,
        username: &str,
        jid: &str,
    ) -> Result<Option<u64>>;
    async fn roster_version(&self, domain: &str, username: &str) -> Result<u64>;
}
