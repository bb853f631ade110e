//! RFC 6121 §2 roster with XEP-0237 versioning: fetch into a cache, apply and answer
//! pushes, add and remove contacts.

use crate::client::{iq, Client};
use crate::error::Error;
use crate::module::{Context, Handled, Module};
use confab_proto::payloads::roster::{RosterItem, RosterQuery, Subscription, NS};
use confab_proto::{Element, IqType, Jid, Stanza, StanzaError, StanzaErrorCondition};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The stream feature of XEP-0237 roster versioning.
pub const ROSTERVER: &str = "urn:xmpp:features:rosterver";

/// The roster get: with the cached version (empty on a first fetch) only when the server
/// offered versioning (RFC 6121 §2.6.2: a client must not send `ver` otherwise).
fn roster_get(versioning: bool, ver: Option<&str>) -> Element {
    let query = Element::new("query", NS);
    if versioning {
        query.attr("ver", ver.unwrap_or_default())
    } else {
        query
    }
}
use tokio::sync::broadcast;

#[derive(Default)]
struct Cache {
    ver: Option<String>,
    items: BTreeMap<String, RosterItem>,
}

/// The roster module. Keep an `Arc<Roster>` to read the cache; the client feeds it pushes.
pub struct Roster {
    cache: Mutex<Cache>,
    changes: broadcast::Sender<RosterItem>,
}

impl std::fmt::Debug for Roster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.lock();
        f.debug_struct("Roster")
            .field("ver", &c.ver)
            .field("items", &c.items.len())
            .finish()
    }
}

impl Roster {
    /// An empty roster module, ready for [`crate::Config::module`].
    pub fn new() -> Arc<Roster> {
        Self::with_cache(None, Vec::new())
    }

    /// A roster module starting from a stored copy (version and items), so [`Roster::fetch`]
    /// can ask the server for changes only.
    pub fn with_cache(ver: Option<String>, items: Vec<RosterItem>) -> Arc<Roster> {
        let (changes, _) = broadcast::channel(64);
        let items = items
            .into_iter()
            .map(|i| (i.jid.as_str().to_string(), i))
            .collect();
        Arc::new(Roster {
            cache: Mutex::new(Cache { ver, items }),
            changes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // Each update is a single map operation, so a poisoned lock holds consistent data.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Receives every item changed by a push (removed ones have
    /// `subscription == Some(Subscription::Remove)`).
    pub fn changes(&self) -> broadcast::Receiver<RosterItem> {
        self.changes.subscribe()
    }

    /// The cached items, ordered by JID.
    pub fn items(&self) -> Vec<RosterItem> {
        self.lock().items.values().cloned().collect()
    }

    /// The cached item for `jid`.
    pub fn get(&self, jid: &Jid) -> Option<RosterItem> {
        self.lock().items.get(jid.as_str()).cloned()
    }

    /// The roster version of the cache (XEP-0237), if the server gave one.
    pub fn version(&self) -> Option<String> {
        self.lock().ver.clone()
    }

    /// Fetches the roster. The cached version goes along (empty on first fetch), so a
    /// server with versioning may answer "unchanged" (an empty result) and send only the
    /// changes as pushes. Returns the cached items afterwards.
    pub async fn fetch(&self, client: &Client) -> Result<Vec<RosterItem>, Error> {
        let versioning = client.has_feature("ver", ROSTERVER);
        let query = roster_get(versioning, self.version().as_deref());
        let reply = client.request(iq(IqType::Get, None, query)).await?;
        if let Some(q) = reply.get_child("query", NS) {
            let q = RosterQuery::try_from(q)
                .map_err(|e| Error::Protocol(format!("roster result: {e}")))?;
            let mut c = self.lock();
            c.items = q
                .items
                .into_iter()
                .map(|i| (i.jid.as_str().to_string(), i))
                .collect();
            c.ver = q.ver;
        }
        Ok(self.items())
    }

    /// Adds or updates a contact (a roster set); the cache changes when the server's push
    /// arrives.
    pub async fn add(&self, client: &Client, item: RosterItem) -> Result<(), Error> {
        let query = RosterQuery {
            ver: None,
            items: vec![item],
        };
        client
            .request(iq(IqType::Set, None, query.into()))
            .await
            .map(|_| ())
    }

    /// Removes a contact (which also cancels subscriptions both ways, RFC 6121 §2.5).
    pub async fn remove(&self, client: &Client, jid: &Jid) -> Result<(), Error> {
        let mut item = RosterItem::new(jid.clone());
        item.subscription = Some(Subscription::Remove);
        self.add(client, item).await
    }

    /// Forgets the cached version (the items stay until the next fetch replaces them), so
    /// the next fetch asks for the whole roster.
    pub fn forget_version(&self) {
        self.lock().ver = None;
    }

    fn apply(&self, item: RosterItem, ver: Option<String>) {
        {
            let mut c = self.lock();
            if item.is_remove() {
                c.items.remove(item.jid.as_str());
            } else {
                c.items.insert(item.jid.as_str().to_string(), item.clone());
            }
            if ver.is_some() {
                c.ver = ver;
            }
        }
        let _ = self.changes.send(item);
    }
}

#[async_trait::async_trait]
impl Module for Roster {
    fn name(&self) -> &'static str {
        "roster"
    }

    fn handle(&self, stanza: &Stanza, ctx: &mut Context<'_>) -> Handled {
        let Some(query) = stanza.iq_payload().filter(|p| p.is("query", NS)) else {
            return Handled::Pass;
        };
        if stanza.iq_type() != Some(IqType::Set) {
            return Handled::Pass;
        }
        // RFC 6121 §2.1.6: only the user's own account may push; anything else is ignored
        // here and answered by the client's default (service-unavailable).
        let own_bare = ctx.jid().to_bare();
        let from_ok = stanza
            .from
            .as_ref()
            .is_none_or(|f| f.as_str() == own_bare.as_str());
        if !from_ok {
            return Handled::Pass;
        }
        let reply = match RosterQuery::parse_set(query) {
            Ok(item) => {
                self.apply(item, query.get_attr("ver").map(str::to_string));
                stanza.iq_result(None)
            }
            Err(e) => match stanza.error_reply(&StanzaError::with_text(
                StanzaErrorCondition::BadRequest,
                e.to_string(),
            )) {
                Some(r) => r,
                None => return Handled::Consumed,
            },
        };
        ctx.send(reply.el);
        Handled::Consumed
    }

    /// A new session after a reconnection: the pushes of the gap were missed, so fetch
    /// again (only the changes, where the server versions rosters).
    async fn new_session(&self, client: &Client) {
        if let Err(e) = self.fetch(client).await {
            tracing::info!(error = %e, "roster fetch after reconnecting failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ver_only_when_the_server_offers_versioning() {
        assert_eq!(roster_get(false, Some("v7")).get_attr("ver"), None);
        assert_eq!(roster_get(false, None).get_attr("ver"), None);
        assert_eq!(roster_get(true, Some("v7")).get_attr("ver"), Some("v7"));
        assert_eq!(roster_get(true, None).get_attr("ver"), Some(""));
    }
}
