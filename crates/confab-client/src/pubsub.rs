//! XEP-0060 Publish-Subscribe and XEP-0163 Personal Eventing Protocol, like XMPPFramework's
//! `XMPPPubSub`: publish (with publish-options when the service offers them), retrieve,
//! retract, subscribe, unsubscribe, create, configure, purge and delete nodes, and
//! notifications as typed [`PubSubEvent`]s.
//!
//! Every request names its service: `Some(jid)` for a pubsub component
//! (`pubsub.example.org`), `None` for this account's own PEP service (XEP-0163 §7: the
//! request goes to the bare JID, by leaving `to` out). PEP notifications are sent to the
//! resources whose entity capabilities carry `NODE+notify` ([`PubSub::notify`] adds them to
//! [`Disco`]). User nicknames (XEP-0172) and avatars (XEP-0084) on top of it are in
//! [`crate::pep`].

use crate::client::{iq, Client};
use crate::disco::Disco;
use crate::error::Error;
use crate::module::{Context, Handled, Module};
use confab_proto::payloads::data_form::{self, DataForm, Field, FormType};
use confab_proto::{Element, IqType, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind};
use std::sync::Arc;
use tokio::sync::broadcast;

/// `http://jabber.org/protocol/pubsub`.
pub const PUBSUB_NS: &str = "http://jabber.org/protocol/pubsub";
/// `http://jabber.org/protocol/pubsub#event`: notifications.
pub const PUBSUB_EVENT_NS: &str = "http://jabber.org/protocol/pubsub#event";
/// `http://jabber.org/protocol/pubsub#owner`: node management.
pub const PUBSUB_OWNER_NS: &str = "http://jabber.org/protocol/pubsub#owner";
/// `http://jabber.org/protocol/pubsub#errors`: the specific conditions of errors.
pub const PUBSUB_ERRORS_NS: &str = "http://jabber.org/protocol/pubsub#errors";
/// The feature (and form type) of publish-options (XEP-0060 §7.1.5).
pub const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
/// The form type of node configuration (XEP-0060 §8.2).
pub const NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";

/// One item of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The item's id (services assign one when the publisher gave none).
    pub id: Option<String>,
    /// Who published it, when the service says (`publisher` attribute).
    pub publisher: Option<String>,
    /// The payload: the item's first child element, if any.
    pub payload: Option<Element>,
}

impl Item {
    fn from_element(el: &Element) -> Item {
        Item {
            id: el.get_attr("id").map(str::to_string),
            publisher: el.get_attr("publisher").map(str::to_string),
            payload: el.elements().next().cloned(),
        }
    }
}

/// Which items to retrieve (XEP-0060 §6.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemsQuery {
    /// All the node's items (the service may return fewer; ask again with `Max`).
    All,
    /// At most this many of the most recent items.
    Max(u32),
    /// These items only.
    Ids(Vec<String>),
}

/// A notification from a pubsub or PEP service (XEP-0060 §7.1.2, §7.2.2.1, §8.4, §8.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PubSubEvent {
    /// Items were published (or, with PEP, the last item of a node someone became
    /// interested in).
    Items {
        /// The service: for PEP, the publishing account's bare JID.
        from: Jid,
        /// The node.
        node: String,
        /// The items, with payloads when the node delivers them.
        items: Vec<Item>,
    },
    /// Items were retracted.
    Retracted {
        /// The service.
        from: Jid,
        /// The node.
        node: String,
        /// The retracted items' ids.
        ids: Vec<String>,
    },
    /// Every item of the node was deleted.
    Purged {
        /// The service.
        from: Jid,
        /// The node.
        node: String,
    },
    /// The node was deleted.
    Deleted {
        /// The service.
        from: Jid,
        /// The node.
        node: String,
    },
}

/// The state of a subscription (XEP-0060 §6.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionState {
    /// Notifications will be sent.
    Subscribed,
    /// The node's owner has to approve it first.
    Pending,
    /// The service wants the subscription configured before it is active.
    Unconfigured,
    /// Not subscribed.
    None,
}

/// A subscription the service confirmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The node.
    pub node: String,
    /// The subscribed JID.
    pub jid: String,
    /// The subscription id, when the service gives one (needed to unsubscribe when a JID
    /// holds several).
    pub subid: Option<String>,
    /// Its state.
    pub state: SubscriptionState,
}

/// Why a pubsub request failed.
#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    /// The service does not offer pubsub, or not this part of it (`service-unavailable`,
    /// `feature-not-implemented`, or its disco#info lacks the feature); the text names
    /// what was missing.
    #[error("not offered: {0}")]
    NotOffered(String),
    /// The node or item does not exist (`item-not-found`).
    #[error("no such node or item")]
    NotFound,
    /// The node exists already (`conflict` to a create).
    #[error("the node exists already")]
    Conflict,
    /// Publish-options did not match the node's configuration (XEP-0060 §7.1.5:
    /// `precondition-not-met`).
    #[error("publish options do not match the node's configuration")]
    PreconditionNotMet,
    /// This account may not do that (`forbidden`, `not-authorized`, `not-allowed`).
    #[error("not permitted")]
    Forbidden,
    /// Another error from the service.
    #[error("refused: {0}")]
    Refused(StanzaError),
    /// The request failed on the client's side (timeout, disconnected) or the service's
    /// answer made no sense.
    #[error(transparent)]
    Client(Error),
}

impl From<Error> for PubSubError {
    fn from(e: Error) -> Self {
        let Error::Stanza { error, stanza } = e else {
            return PubSubError::Client(e);
        };
        let specific = |name: &str| {
            stanza
                .get_child("error", confab_proto::ns::CLIENT)
                .is_some_and(|er| er.get_child(name, PUBSUB_ERRORS_NS).is_some())
        };
        if specific("precondition-not-met") {
            return PubSubError::PreconditionNotMet;
        }
        if let Some(f) = stanza
            .get_child("error", confab_proto::ns::CLIENT)
            .and_then(|er| er.get_child("unsupported", PUBSUB_ERRORS_NS))
        {
            let what = f.get_attr("feature").unwrap_or("pubsub").to_string();
            return PubSubError::NotOffered(what);
        }
        match error.condition {
            StanzaErrorCondition::ServiceUnavailable
            | StanzaErrorCondition::FeatureNotImplemented => {
                PubSubError::NotOffered(format!("pubsub ({})", error.condition))
            }
            StanzaErrorCondition::ItemNotFound => PubSubError::NotFound,
            StanzaErrorCondition::Conflict => PubSubError::Conflict,
            StanzaErrorCondition::Forbidden
            | StanzaErrorCondition::NotAuthorized
            | StanzaErrorCondition::NotAllowed => PubSubError::Forbidden,
            _ => PubSubError::Refused(error),
        }
    }
}

/// Most items one notification may carry before the rest are dropped (with a log line):
/// bounds what one incoming message costs the application.
pub const MAX_EVENT_ITEMS: usize = 256;

/// The pubsub/PEP module. Keep an `Arc<PubSub>` to make requests and for its events.
pub struct PubSub {
    disco: Arc<Disco>,
    events: broadcast::Sender<PubSubEvent>,
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub").finish_non_exhaustive()
    }
}

/// A form of fields from name/value pairs, with its FORM_TYPE first.
fn form(type_: FormType, form_type: &str, fields: &[(&str, &str)]) -> Element {
    let mut all = vec![Field::form_type(form_type)];
    all.extend(fields.iter().map(|(k, v)| Field::new(k, [*v])));
    DataForm::new(type_, all).into()
}

fn pubsub(child: Element) -> Element {
    Element::new("pubsub", PUBSUB_NS).child(child)
}

fn owner(child: Element) -> Element {
    Element::new("pubsub", PUBSUB_OWNER_NS).child(child)
}

impl PubSub {
    /// A pubsub module advertising its `+notify` interests through `disco` (add that to
    /// the client too, and [`crate::Presence::advertise`] it); ready for
    /// [`crate::Config::module`].
    pub fn new(disco: Arc<Disco>) -> Arc<PubSub> {
        let (events, _) = broadcast::channel(256);
        Arc::new(PubSub { disco, events })
    }

    /// Notifications from now on.
    pub fn events(&self) -> broadcast::Receiver<PubSubEvent> {
        self.events.subscribe()
    }

    /// Declares interest in PEP nodes named `node` (XEP-0163 §4.1): advertises
    /// `node+notify`. Send presence again ([`crate::Presence::set`]) so servers learn the
    /// new caps; then contacts' items of that node arrive as [`PubSubEvent`]s.
    pub fn notify(&self, node: &str) {
        self.disco.add_feature(&format!("{node}+notify"));
    }

    /// Withdraws an interest declared with [`PubSub::notify`].
    pub fn stop_notify(&self, node: &str) {
        self.disco.remove_feature(&format!("{node}+notify"));
    }

    async fn request(
        &self,
        client: &Client,
        service: Option<&Jid>,
        type_: IqType,
        payload: Element,
    ) -> Result<Element, PubSubError> {
        Ok(client.request(iq(type_, service, payload)).await?)
    }

    /// Whether `service` (this account's PEP service when `None`) advertises `feature` in
    /// its disco#info; a service that answers with an error offers nothing.
    pub async fn offers(
        &self,
        client: &Client,
        service: Option<&Jid>,
        feature: &str,
    ) -> Result<bool, PubSubError> {
        let to = match service {
            Some(s) => s.clone(),
            None => Jid::from(client.jid().to_bare()),
        };
        match Disco::query(client, &to, None).await {
            Ok(info) => Ok(info.has_feature(feature)),
            Err(Error::Stanza { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Publishes `payload` as item `id` (the service picks an id when `None`) to `node`,
    /// creating the node with the default configuration if the service does that. With
    /// `options` (publish-options, XEP-0060 §7.1.5, e.g. `("pubsub#access_model",
    /// "presence")`), the service must offer publish-options, else
    /// [`PubSubError::NotOffered`] and nothing is published. Returns the item's id.
    pub async fn publish(
        &self,
        client: &Client,
        service: Option<&Jid>,
        node: &str,
        id: Option<&str>,
        payload: Element,
        options: &[(&str, &str)],
    ) -> Result<Option<String>, PubSubError> {
        let mut item = Element::new("item", PUBSUB_NS).child(payload);
        if let Some(id) = id {
            item.set_attr("id", id);
        }
        let mut ps = pubsub(
            Element::new("publish", PUBSUB_NS)
                .attr("node", node)
                .child(item),
        );
        if !options.is_empty() {
            if !self.offers(client, service, PUBLISH_OPTIONS).await? {
                return Err(PubSubError::NotOffered(PUBLISH_OPTIONS.into()));
            }
            ps.push_child(Element::new("publish-options", PUBSUB_NS).child(form(
                FormType::Submit,
                PUBLISH_OPTIONS,
                options,
            )));
        }
        let reply = self.request(client, service, IqType::Set, ps).await?;
        // XEP-0060 §7.1.2: the result names the item when the service assigned the id.
        let assigned = reply
            .get_child("pubsub", PUBSUB_NS)
            .and_then(|p| p.get_child("publish", PUBSUB_NS))
            .and_then(|p| p.get_child("item", PUBSUB_NS))
            .and_then(|i| i.get_attr("id"))
            .map(str::to_string);
        Ok(assigned.or_else(|| id.map(str::to_string)))
    }

    /// Retrieves items of `node` (XEP-0060 §6.5).
    pub async fn items(
        &self,
        client: &Client,
        service: Option<&Jid>,
        node: &str,
        query: &ItemsQuery,
    ) -> Result<Vec<Item>, PubSubError> {
        let mut items = Element::new("items", PUBSUB_NS).attr("node", node);
        match query {
            ItemsQuery::All => {}
            ItemsQuery::Max(n) => items.set_attr("max_items", n.to_string()),
            ItemsQuery::Ids(ids) => {
                for id in ids {
                    items.push_child(Element::new("item", PUBSUB_NS).attr("id", id.as_str()));
                }
            }
        }
        let reply = self
            .request(client, service, IqType::Get, pubsub(items))
            .await?;
        let items = reply
            .get_child("pubsub", PUBSUB_NS)
            .and_then(|p| p.get_child("items", PUBSUB_NS))
            .ok_or_else(|| Error::Protocol("items result without <items/>".into()))?;
        Ok(items
            .elements()
            .filter(|e| e.is("item", PUBSUB_NS))
            .map(Item::from_element)
            .collect())
    }

    /// Deletes item `id` from `node` (XEP-0060 §7.2); with `notify`, subscribers are told.
    pub async fn retract(
        &self,
        client: &Client,
        service: Option<&Jid>,
        node: &str,
        id: &str,
        notify: bool,
    ) -> Result<(), PubSubError> {
        let mut retract = Element::new("retract", PUBSUB_NS)
            .attr("node", node)
            .child(Element::new("item", PUBSUB_NS).attr("id", id));
        if notify {
            retract.set_attr("notify", "true");
        }
        self.request(client, service, IqType::Set, pubsub(retract))
            .await?;
        Ok(())
    }

    /// Subscribes this account (its bare JID) to `node` (XEP-0060 §6.1).
    pub async fn subscribe(
        &self,
        client: &Client,
        service: Option<&Jid>,
        node: &str,
    ) -> Result<Subscription, PubSubError> {
        let jid = client.jid().to_bare().to_string();
        let sub = Element::new("subscribe", PUBSUB_NS)
            .attr("node", node)
            .attr("jid", jid.as_str());
        let reply = self
            .request(client, service, IqType::Set, pubsub(sub))
            .await?;
        let s = reply
            .get_child("pubsub", PUBSUB_NS)
            .and_then(|p| p.get_child("subscription", PUBSUB_NS));
        // §6.1.2: an empty result means subscribed.
        let state = match s.and_then(|s| s.get_attr("subscription")) {
            None | Some("subscribed") => SubscriptionState::Subscribed,
            Some("pending") => SubscriptionState::Pending,
            Some("unconfigured") => SubscriptionState::Unconfigured,
            Some(_) => SubscriptionState::None,
        };
        Ok(Subscription {
            node: s
                .and_then(|s| s.get_attr("node"))
                .unwrap_or(node)
                .to_string(),
            jid: s
                .and_then(|s| s.get_attr("jid"))
                .map(str::to_string)
                .unwrap_or(jid),
            subid: s.and_then(|s| s.get_attr("subid")).map(str::to_string),
            state,
        })
    }

    /// Unsubscribes this account from `node` (XEP-0060 §6.2); `subid` when it holds
    /// several subscriptions there.
    pub async fn unsubscribe(
        &self,
        client: &Client,
        service: Option<&Jid>,
        node: &str,
        subid: Option<&str>,
    ) -> Result<(), PubSubError> {
        let jid = client.jid().to_bare().to_string();
        let mut un = Element::new("unsubscribe", PUBSUB_NS)
            .attr("node", node)
            .attr("jid", jid);
        if let Some(s) = subid {
            un.set_attr("subid", s);
        }
        self.request(client, service, IqType::Set, pubsub(un))
            .await?;
        Ok(())
    }

    /// Creates a node (XEP-0060 §8.1), configured with `config` (node_config fields, e.g.
    /// `("pubsub#max_items", "10")`) when given; `node: None` asks for an instant node.
    /// Returns the node's name.
    pub async fn create_node(
        &self,
        client: &Client,
        service: Option<&Jid>,
        node: Option<&str>,
        config: &[(&str, &str)],
    ) -> Result<String, PubSubError> {
        let mut create = Element::new("create", PUBSUB_NS);
        if let Some(n) = node {
            create.set_attr("node", n);
        }
        let mut ps = pubsub(create);
        if !config.is_empty() {
            ps.push_child(Element::new("configure", PUBSUB_NS).child(form(
                FormType::Submit,
                NODE_CONFIG,
                config,
            )));
        }
        let reply = self.request(client, service, IqType::Set, ps).await?;
        let assigned = reply
            .get_child("pubsub", PUBSUB_NS)
            .and_then(|p| p.get_child("create", PUBSUB_NS))
            .and_then(|c| c.get_attr("node"))
            .map(str::to_string);
        assigned
            .or_else(|| node.map(str::to_string))
            .ok_or_else(|| Error::Protocol("instant node created without a name".into()).into())
    }

    /// The node's configuration form (XEP-0060 §8.2.1).
    pub async fn node_config(
        &self,
        client: &Client,
        service: Option<&Jid>,
        node: &str,
    ) -> Result<DataForm, PubSubError> {
        let reply = self
            .request(
                client,
                service,
                IqType::Get,
                owner(Element::new("configure", PUBSUB_OWNER_NS).attr("node", node)),
            )
            .await?;
        let x = reply
            .get_child("pubsub", PUBSUB_OWNER_NS)
            .and_then(|p| p.get_child("configure", PUBSUB_OWNER_NS))
            .and_then(|c| c.get_child("x", data_form::NS))
            .ok_or_else(|| Error::Protocol("configure result without a form".into()))?;
        DataForm::try_from(x)
            .map_err(|e| PubSubError::Client(Error::Protocol(format!("node config: {e}"))))
    }

    /// Changes the node's configuration (XEP-0060 §8.2.4): only the fields given.
    pub async fn configure_node(
        &self,
        client: &Client,
        service: Option<&Jid>,
        node: &str,
        fields: &[(&str, &str)],
    ) -> Result<(), PubSubError> {
        let configure = Element::new("configure", PUBSUB_OWNER_NS)
            .attr("node", node)
            .child(form(FormType::Submit, NODE_CONFIG, fields));
        self.request(client, service, IqType::Set, owner(configure))
            .await?;
        Ok(())
    }

    /// Deletes every item of the node (XEP-0060 §8.5).
    pub async fn purge(
        &self,
        client: &Client,
        service: Option<&Jid>,
        node: &str,
    ) -> Result<(), PubSubError> {
        let purge = Element::new("purge", PUBSUB_OWNER_NS).attr("node", node);
        self.request(client, service, IqType::Set, owner(purge))
            .await?;
        Ok(())
    }

    /// Deletes the node (XEP-0060 §8.4).
    pub async fn delete_node(
        &self,
        client: &Client,
        service: Option<&Jid>,
        node: &str,
    ) -> Result<(), PubSubError> {
        let delete = Element::new("delete", PUBSUB_OWNER_NS).attr("node", node);
        self.request(client, service, IqType::Set, owner(delete))
            .await?;
        Ok(())
    }
}

/// The notifications one `<event/>` carries, in document order.
pub(crate) fn parse_event(from: &Jid, event: &Element) -> Vec<PubSubEvent> {
    let mut out = Vec::new();
    for c in event.elements() {
        let Some(node) = c.get_attr("node").map(str::to_string) else {
            continue;
        };
        if c.is("items", PUBSUB_EVENT_NS) {
            let mut items = Vec::new();
            let mut ids = Vec::new();
            for e in c.elements() {
                if items.len() + ids.len() >= MAX_EVENT_ITEMS {
                    tracing::info!(%from, node, "pubsub notification with too many items; rest dropped");
                    break;
                }
                if e.is("item", PUBSUB_EVENT_NS) {
                    items.push(Item::from_element(e));
                } else if e.is("retract", PUBSUB_EVENT_NS) {
                    if let Some(id) = e.get_attr("id") {
                        ids.push(id.to_string());
                    }
                }
            }
            if !items.is_empty() {
                out.push(PubSubEvent::Items {
                    from: from.clone(),
                    node: node.clone(),
                    items,
                });
            }
            if !ids.is_empty() {
                out.push(PubSubEvent::Retracted {
                    from: from.clone(),
                    node,
                    ids,
                });
            }
        } else if c.is("purge", PUBSUB_EVENT_NS) {
            out.push(PubSubEvent::Purged {
                from: from.clone(),
                node,
            });
        } else if c.is("delete", PUBSUB_EVENT_NS) {
            out.push(PubSubEvent::Deleted {
                from: from.clone(),
                node,
            });
        }
    }
    out
}

#[async_trait::async_trait]
impl Module for PubSub {
    fn name(&self) -> &'static str {
        "pubsub"
    }

    fn handle(&self, stanza: &Stanza, _ctx: &mut Context<'_>) -> Handled {
        if stanza.kind != StanzaKind::Message || stanza.type_attr() == Some("error") {
            return Handled::Pass;
        }
        let Some(event) = stanza.el.get_child("event", PUBSUB_EVENT_NS) else {
            return Handled::Pass;
        };
        let Some(from) = stanza.from.clone() else {
            return Handled::Pass;
        };
        for e in parse_event(&from, event) {
            let _ = self.events.send(e);
        }
        Handled::Consumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::parser::{parse_fragment, Limits};

    fn el(xml: &str) -> Element {
        parse_fragment(xml, confab_proto::ns::CLIENT, &Limits::default()).expect("parses")
    }

    #[test]
    fn notifications_parse_into_events() {
        // XEP-0060 examples 101 (items), 115 (retract), 161 (delete), 166 (purge).
        let from = Jid::new("pubsub.shakespeare.lit").expect("jid");
        let event = el(r#"<event xmlns='http://jabber.org/protocol/pubsub#event'>
            <items node='princely_musings'>
              <item id='ae890ac52d0df67ed7cfdf51b644e901'><entry xmlns='http://www.w3.org/2005/Atom'/></item>
              <retract id='gone'/>
            </items>
            <delete node='old'/><purge node='emptied'/><items/></event>"#);
        let got = parse_event(&from, &event);
        assert_eq!(got.len(), 4, "{got:?}");
        match &got[0] {
            PubSubEvent::Items { node, items, .. } => {
                assert_eq!(node, "princely_musings");
                assert_eq!(
                    items[0].id.as_deref(),
                    Some("ae890ac52d0df67ed7cfdf51b644e901")
                );
                assert!(items[0].payload.as_ref().is_some_and(|p| p.name == "entry"));
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(
            got[1],
            PubSubEvent::Retracted {
                from: from.clone(),
                node: "princely_musings".into(),
                ids: vec!["gone".into()]
            }
        );
        assert_eq!(
            got[2],
            PubSubEvent::Deleted {
                from: from.clone(),
                node: "old".into()
            }
        );
        assert_eq!(
            got[3],
            PubSubEvent::Purged {
                from,
                node: "emptied".into()
            }
        );
    }

    #[test]
    fn huge_notifications_are_bounded() {
        let mut items = Element::new("items", PUBSUB_EVENT_NS).attr("node", "n");
        for i in 0..(MAX_EVENT_ITEMS + 10) {
            items.push_child(Element::new("item", PUBSUB_EVENT_NS).attr("id", i.to_string()));
        }
        let event = Element::new("event", PUBSUB_EVENT_NS).child(items);
        let got = parse_event(&Jid::new("a@b").expect("jid"), &event);
        assert!(
            matches!(&got[0], PubSubEvent::Items { items, .. } if items.len() == MAX_EVENT_ITEMS)
        );
    }
}
