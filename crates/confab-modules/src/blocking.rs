//! XEP-0191 Blocking Command: each account keeps a list of JIDs it does not want to talk
//! to. Stanzas between the account and a blocked JID are stopped in both directions:
//! outbound ones get `<not-acceptable/>` + `<blocked/>`, inbound ones look as if the user
//! were offline (XEP-0191 §3.3).
//!
//! Lists live in the data store (kind `blocklist`, one key per JID). The lists of accounts
//! with a bound session are cached in memory (evicted when the last session closes), so the
//! routing path reads the database at most once per online account; other accounts' lists
//! are read from the store, so stanzas to arbitrary addresses cannot grow the cache.

use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition, StanzaErrorType};
use confab_proto::jid::{BareJid, Jid};
use confab_proto::ns;
use confab_proto::payloads::blocking::{Block, Unblock};
use confab_proto::stanza::{IqType, Stanza, StanzaKind};
use confab_proto::xml::Element;
use confab_server::module::ModuleConfig;
use confab_server::module::{
    HookArgs, HookPoint, HookResult, IqHandler, IqReply, IqTarget, LifecycleListener, Module,
    Registry, StanzaHook,
};
use confab_server::router::{route, send_error};
use confab_server::session::SessionInfo;
use confab_server::ServerCtx;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

pub const NS: &str = confab_proto::payloads::blocking::NS;
pub const NS_ERRORS: &str = confab_proto::payloads::blocking::NS_ERRORS;
/// The data kind block lists are stored under: one key per blocked JID, empty values.
pub const KIND: &str = "blocklist";

/// A block list: normalized JID strings.
type List = Arc<BTreeSet<String>>;

/// `[blocking]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockingConfig {
    /// Most JIDs one account may block; a block past it gets `<resource-constraint/>`.
    pub max_items: usize,
}

impl Default for BlockingConfig {
    fn default() -> Self {
        BlockingConfig { max_items: 1000 }
    }
}

impl ModuleConfig for BlockingConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_items > 100_000 {
            return Err("max_items must be at most 100000".into());
        }
        Ok(())
    }
}

pub struct Blocking {
    max_items: OnceLock<usize>,
    /// Lists of accounts with at least one bound session.
    cache: DashMap<BareJid, List>,
    /// Shared by every account with an empty list, so idle accounts cost no allocation.
    empty: List,
    /// Serializes changes, so a change is computed from the latest stored list.
    write: tokio::sync::Mutex<()>,
    push_id: AtomicU64,
}

impl Blocking {
    pub fn new() -> Self {
        Blocking {
            max_items: OnceLock::new(),
            cache: DashMap::new(),
            empty: List::default(),
            write: tokio::sync::Mutex::new(()),
            push_id: AtomicU64::new(0),
        }
    }
}

impl Blocking {
    /// How many lists are cached (for tests and diagnostics).
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Caches `list` if the account has a bound session; `replace` for a change (newer
    /// than anything cached), else a load, which keeps a list a racing change cached.
    fn cache_if_bound(
        &self,
        ctx: &ServerCtx,
        account: &BareJid,
        list: List,
        replace: bool,
    ) -> List {
        if ctx.router.sessions_of(account).is_empty() {
            self.cache.remove(account);
            return list;
        }
        let list = if replace {
            self.cache.insert(account.clone(), list.clone());
            list
        } else {
            self.cache.entry(account.clone()).or_insert(list).clone()
        };
        // The last session may have closed meanwhile, its eviction finding nothing yet.
        if ctx.router.sessions_of(account).is_empty() {
            self.cache.remove(account);
        }
        list
    }
}

impl Default for Blocking {
    fn default() -> Self {
        Self::new()
    }
}

impl Module for Blocking {
    fn name(&self) -> &'static str {
        "blocking"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let config: BlockingConfig = reg.section("blocking");
        let _ = self.max_items.set(config.max_items);
        reg.iq(IqType::Get, IqTarget::Account, NS, self.clone());
        reg.iq(IqType::Set, IqTarget::Account, NS, self.clone());
        // High priority: a blocked stanza must not reach offline storage, presence
        // handling or any other module.
        reg.hook(HookPoint::FromClient, 1000, self.clone());
        reg.hook(HookPoint::ToBareJid, 1000, self.clone());
        reg.hook(HookPoint::ToFullJid, 1000, self.clone());
        reg.lifecycle(self);
        reg.account_feature(NS);
        reg.host_feature(NS);
    }
}

/// XEP-0191 §8 (as XEP-0016): an item matches the JID itself, a bare item every resource
/// of it, a domain item everything at that domain.
fn matches(list: &BTreeSet<String>, jid: &Jid) -> bool {
    if list.is_empty() {
        return false;
    }
    list.contains(jid.as_str())
        || (jid.resource().is_some() && list.contains(jid.to_bare().as_str()))
        || list.contains(jid.domain().as_str())
}

/// The server itself and the account's own resources are never blocked (XEP-0191 §5 note).
fn exempt(ctx: &ServerCtx, account: &BareJid, other: &Jid) -> bool {
    (other.node().is_none() && ctx.config.is_local_domain(other.domain().as_str()))
        || other.to_bare() == *account
}

impl Blocking {
    /// The account's list, from the cache or the store.
    async fn list(&self, ctx: &ServerCtx, account: &BareJid) -> List {
        if let Some(l) = self.cache.get(account) {
            return l.clone();
        }
        match self.load(ctx, account).await {
            Ok(l) => self.cache_if_bound(ctx, account, l, false),
            Err(e) => {
                tracing::error!(error = %e, account = %account, "reading block list failed");
                self.empty.clone()
            }
        }
    }

    async fn load(&self, ctx: &ServerCtx, account: &BareJid) -> confab_store::Result<List> {
        let Some(node) = account.node() else {
            return Ok(self.empty.clone());
        };
        let rows = ctx
            .stores
            .data
            .list_account_data(account.domain().as_str(), node.as_str(), KIND)
            .await?;
        if rows.is_empty() {
            return Ok(self.empty.clone());
        }
        Ok(Arc::new(rows.into_iter().map(|(k, _)| k).collect()))
    }

    async fn blocks(&self, ctx: &ServerCtx, account: &BareJid, other: &Jid) -> bool {
        let list = self.list(ctx, account).await;
        // Most lists are empty: decide that before any allocation.
        !list.is_empty() && !exempt(ctx, account, other) && matches(&list, other)
    }

    /// The user sent a stanza to a JID they block (XEP-0191 §3.3).
    async fn refuse_outbound(&self, ctx: &ServerCtx, stanza: &Stanza) {
        if stanza.kind == StanzaKind::Presence {
            return;
        }
        let err = StanzaError {
            type_: StanzaErrorType::Cancel,
            ..StanzaError::new(StanzaErrorCondition::NotAcceptable)
        };
        let Some(mut reply) = stanza.error_reply(&err) else {
            return;
        };
        if let Some(e) = reply.el.get_child_mut("error", &stanza.el.ns) {
            e.push_child(Element::new("blocked", NS_ERRORS));
        }
        // Straight to the session: routing it would run the user's own inbound filter,
        // which blocks the very JID this error comes from.
        let session = stanza
            .from
            .as_ref()
            .and_then(|f| f.try_as_full().ok())
            .and_then(|f| ctx.router.session(f));
        if let Some(s) = session {
            confab_server::router::deliver(ctx, &reply, std::slice::from_ref(&s)).await;
        }
    }

    /// A blocked JID sent something to the user: the user looks unavailable to it.
    async fn refuse_inbound(&self, ctx: &ServerCtx, stanza: &Stanza) {
        match stanza.kind {
            StanzaKind::Presence => {}
            StanzaKind::Message | StanzaKind::Iq => {
                // error_reply answers neither errors nor iq results.
                send_error(
                    ctx,
                    stanza,
                    StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                )
                .await
            }
        }
    }

    /// A stanza from a local client: its own block list applies to the recipient, and for
    /// IQs to another account's bare JID (which the router hands to modules, not to the
    /// ToBareJid hooks) the recipient's list applies to the sender.
    async fn client_stanza(&self, ctx: &ServerCtx, stanza: &Stanza) -> HookResult {
        let (Some(to), Some(from)) = (&stanza.to, &stanza.from) else {
            return HookResult::Continue;
        };
        let sender = from.to_bare();
        if self.blocks(ctx, &sender, to).await {
            self.refuse_outbound(ctx, stanza).await;
            return HookResult::Handled;
        }
        let to_local_account = to.node().is_some()
            && to.resource().is_none()
            && ctx.config.is_local_domain(to.domain().as_str());
        if stanza.kind == StanzaKind::Iq
            && to_local_account
            && self.blocks(ctx, &to.to_bare(), from).await
        {
            self.refuse_inbound(ctx, stanza).await;
            return HookResult::Handled;
        }
        HookResult::Continue
    }

    /// A stanza for a local account (bare or full JID).
    async fn to_account(&self, ctx: &ServerCtx, stanza: &Stanza) -> HookResult {
        let (Some(to), Some(from)) = (&stanza.to, &stanza.from) else {
            return HookResult::Continue;
        };
        let recipient = to.to_bare();
        if self.blocks(ctx, &recipient, from).await {
            self.refuse_inbound(ctx, stanza).await;
            return HookResult::Handled;
        }
        // Presence the server sends on a user's behalf (broadcasts, probes answered) does
        // not pass FromClient: apply the sender's list here too.
        let from_local_account =
            from.node().is_some() && ctx.config.is_local_domain(from.domain().as_str());
        if stanza.kind == StanzaKind::Presence
            && from_local_account
            && self.blocks(ctx, &from.to_bare(), to).await
        {
            return HookResult::Handled;
        }
        HookResult::Continue
    }
}

#[async_trait]
impl StanzaHook for Blocking {
    async fn on_stanza(&self, ctx: &ServerCtx, args: &HookArgs, stanza: &mut Stanza) -> HookResult {
        let point = args.point;
        match point {
            HookPoint::FromClient => self.client_stanza(ctx, stanza).await,
            HookPoint::ToBareJid | HookPoint::ToFullJid => self.to_account(ctx, stanza).await,
            HookPoint::Undeliverable | HookPoint::Deliver => HookResult::Continue,
        }
    }
}

fn bad_request(text: &str) -> IqReply {
    IqReply::Error(StanzaError::with_text(
        StanzaErrorCondition::BadRequest,
        text,
    ))
}

/// The JIDs of a `<block/>` or `<unblock/>`, normalized, sorted and without repeats; an
/// invalid one (or a block without items) is an error.
fn parse_items(payload: &Element) -> Result<Vec<String>, IqReply> {
    let parsed = if payload.name == "block" {
        Block::try_from(payload).map(|b| b.items)
    } else {
        Unblock::try_from(payload).map(|u| u.items)
    };
    let mut out: Vec<String> = parsed
        .map_err(|e| IqReply::Error(e.to_stanza_error()))?
        .iter()
        .map(|j| j.as_str().to_string())
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

fn items_element(name: &str, jids: &[String]) -> Element {
    let mut e = Element::new(name, NS);
    for j in jids {
        e.push_child(Element::new("item", NS).attr("jid", j.clone()));
    }
    e
}

enum Change {
    Block(Vec<String>),
    Unblock(Vec<String>),
    UnblockAll,
}

impl Blocking {
    /// Applies a change to the stored list and the cache; `Err` is the IQ error to send.
    async fn apply(
        &self,
        ctx: &ServerCtx,
        account: &BareJid,
        change: &Change,
    ) -> Result<(), IqReply> {
        let internal = |e: confab_store::StoreError| {
            tracing::error!(error = %e, account = %account, "updating block list failed");
            IqReply::Error(confab_server::module::storage_failed())
        };
        let Some(node) = account.node() else {
            return Err(IqReply::Error(StanzaError::new(
                StanzaErrorCondition::ItemNotFound,
            )));
        };
        let (domain, node) = (account.domain().as_str(), node.as_str());
        let _guard = self.write.lock().await;
        let current = self.load(ctx, account).await.map_err(internal)?;
        let mut next: BTreeSet<String> = (*current).clone();
        match change {
            Change::Block(jids) => {
                let added: Vec<&String> = jids.iter().filter(|j| !current.contains(*j)).collect();
                let max = *self
                    .max_items
                    .get_or_init(|| BlockingConfig::default().max_items);
                if current.len() + added.len() > max {
                    return Err(IqReply::Error(StanzaError::with_text(
                        StanzaErrorCondition::ResourceConstraint,
                        "too many blocked JIDs",
                    )));
                }
                for j in added {
                    ctx.stores
                        .data
                        .set_account_data(domain, node, KIND, j, "")
                        .await
                        .map_err(internal)?;
                    next.insert(j.clone());
                }
            }
            Change::Unblock(jids) => {
                for j in jids.iter().filter(|j| current.contains(*j)) {
                    ctx.stores
                        .data
                        .delete_account_data(domain, node, KIND, j)
                        .await
                        .map_err(internal)?;
                    next.remove(j);
                }
            }
            Change::UnblockAll => {
                for j in current.iter() {
                    ctx.stores
                        .data
                        .delete_account_data(domain, node, KIND, j)
                        .await
                        .map_err(internal)?;
                    next.remove(j);
                }
            }
        }
        let list = if next.is_empty() {
            self.empty.clone()
        } else {
            Arc::new(next)
        };
        self.cache_if_bound(ctx, account, list, true);
        Ok(())
    }

    /// XEP-0191 §3.3/§3.4: every resource of the account learns of the change.
    async fn push(&self, ctx: &ServerCtx, account: &BareJid, payload: Element) {
        for s in ctx.router.sessions_of(account) {
            let id = self.push_id.fetch_add(1, Ordering::Relaxed);
            let iq = Element::new("iq", ns::CLIENT)
                .attr("type", "set")
                .attr("id", format!("block-push-{id}"))
                .attr("to", s.jid.to_string())
                .child(payload.clone());
            if let Ok(iq) = Stanza::from_element(iq) {
                confab_server::router::deliver(ctx, &iq, std::slice::from_ref(&s)).await;
            }
        }
    }
}

#[async_trait]
impl IqHandler for Blocking {
    async fn handle_iq(&self, ctx: &ServerCtx, iq: &Stanza, _: IqTarget) -> IqReply {
        let Some(from) = &iq.from else {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
        };
        let account = from.to_bare();
        // Only the account itself manages its list; to others this does not exist.
        if iq.to.as_ref().is_some_and(|t| t.to_bare() != account) {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
        }
        let Some(payload) = iq.iq_payload() else {
            return bad_request("no payload");
        };
        match (iq.iq_type(), payload.name.as_str()) {
            (Some(IqType::Get), "blocklist") => {
                let list = self.list(ctx, &account).await;
                let jids: Vec<String> = list.iter().cloned().collect();
                IqReply::Result(Some(items_element("blocklist", &jids)))
            }
            (Some(IqType::Set), "block" | "unblock") => {
                let jids = match parse_items(payload) {
                    Ok(j) => j,
                    Err(reply) => return reply,
                };
                let block = payload.name == "block";
                let change = match (block, jids.is_empty()) {
                    (true, true) => return bad_request("block needs at least one item"),
                    (true, false) => Change::Block(jids.clone()),
                    (false, true) => Change::UnblockAll,
                    (false, false) => Change::Unblock(jids.clone()),
                };
                // XEP-0191 §3.3: the newly blocked see the user go offline — sent before
                // the block is stored, or the block itself would drop it.
                if block {
                    presence_on_block(ctx, &account, &jids).await;
                }
                let unblocked: Vec<String> = match &change {
                    Change::UnblockAll => self.list(ctx, &account).await.iter().cloned().collect(),
                    _ => jids.clone(),
                };
                if let Err(reply) = self.apply(ctx, &account, &change).await {
                    return reply;
                }
                if !block {
                    presence_on_unblock(ctx, &account, &unblocked).await;
                }
                let mut result = iq.iq_result(None);
                if result.from.is_none() {
                    result.set_from(iq.to.clone());
                }
                route(ctx, result).await;
                self.push(ctx, &account, items_element(&payload.name, &jids))
                    .await;
                IqReply::Handled
            }
            _ => bad_request("expected blocklist (get), block or unblock (set)"),
        }
    }
}

/// Contacts among `jids` that may see the account's presence (a from-subscription).
async fn subscribers_among(ctx: &ServerCtx, account: &BareJid, jids: &[String]) -> Vec<Jid> {
    let mut out = Vec::new();
    for j in jids {
        let Ok(jid) = BareJid::new(j) else {
            continue;
        };
        if let Ok(Some(item)) = crate::roster::item(ctx, account, &jid).await {
            if item.subscription.has_from() {
                out.push(Jid::from(jid));
            }
        }
    }
    out
}

async fn presence_on_block(ctx: &ServerCtx, account: &BareJid, jids: &[String]) {
    for contact in subscribers_among(ctx, account, jids).await {
        crate::roster::send_unavailable(ctx, account, &contact).await;
    }
}

/// XEP-0191 §3.4: unblocked subscribers get the current presence again. A probe on the
/// contact's behalf makes the presence module answer with exactly that.
async fn presence_on_unblock(ctx: &ServerCtx, account: &BareJid, jids: &[String]) {
    for contact in subscribers_among(ctx, account, jids).await {
        let own = Jid::from(account.clone());
        crate::roster::route_presence(ctx, "probe", &contact, &own).await;
    }
}

#[async_trait]
impl LifecycleListener for Blocking {
    async fn session_closed(&self, ctx: &ServerCtx, session: &SessionInfo) {
        let account = session.jid.to_bare();
        if ctx.router.sessions_of(&account).is_empty() {
            self.cache.remove(&account);
        }
    }

    async fn account_deleted(&self, ctx: &ServerCtx, account: &BareJid) {
        if self.apply(ctx, account, &Change::UnblockAll).await.is_err() {
            tracing::error!(account = %account, "deleting block list failed");
        }
        self.cache.remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::jid::FullJid;

    fn list(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn jid(s: &str) -> Jid {
        Jid::new(s).expect("valid jid")
    }

    #[test]
    fn matching_rules() {
        let full = list(&["romeo@montague.net/orchard"]);
        assert!(matches(&full, &jid("romeo@montague.net/orchard")));
        assert!(!matches(&full, &jid("romeo@montague.net/garden")));
        assert!(!matches(&full, &jid("romeo@montague.net")));

        let bare = list(&["romeo@montague.net"]);
        assert!(matches(&bare, &jid("romeo@montague.net")));
        assert!(matches(&bare, &jid("romeo@montague.net/orchard")));
        assert!(!matches(&bare, &jid("benvolio@montague.net")));
        assert!(!matches(&bare, &jid("montague.net")));

        let dom_res = list(&["montague.net/chat"]);
        assert!(matches(&dom_res, &jid("montague.net/chat")));
        assert!(!matches(&dom_res, &jid("montague.net")));
        assert!(!matches(&dom_res, &jid("romeo@montague.net/chat")));

        let domain = list(&["montague.net"]);
        assert!(matches(&domain, &jid("montague.net")));
        assert!(matches(&domain, &jid("montague.net/chat")));
        assert!(matches(&domain, &jid("romeo@montague.net")));
        assert!(matches(&domain, &jid("romeo@montague.net/orchard")));
        assert!(!matches(&domain, &jid("juliet@capulet.com")));
        assert!(!matches(&domain, &jid("sub.montague.net")));
    }

    /// A server state with only this module, on a temporary store.
    async fn server(dir: &std::path::Path, blocking: &Arc<Blocking>) -> ServerCtx {
        let mut config = confab_server::config::Config::default();
        config.server.data_dir = dir.to_path_buf();
        let module: Arc<dyn Module> = blocking.clone();
        Arc::new(confab_server::ServerState {
            stores: confab_server::open_stores(&config).await.expect("stores"),
            tls: confab_server::certs::load_or_generate(&config).expect("tls"),
            registry: Registry::build_with_config(vec![module], &[], &config).expect("registry"),
            router: confab_server::router::Router::default(),
            auth: confab_server::AuthState {
                decoy_secret: vec![0; 32],
                decoy_iterations: 4096,
            },
            admission: confab_server::admission::Admission::new(&config.limits),
            shutdown: tokio::sync::watch::channel(false).1,
            listener_addrs: Vec::new(),
            http_addrs: Vec::new(),
            started: std::time::Instant::now(),
            config,
        })
    }

    fn stanza(kind: &str, from: &str, to: &str) -> Stanza {
        let mut el = Element::new(kind, ns::CLIENT)
            .attr("from", from)
            .attr("to", to)
            .attr("id", "x");
        if kind == "iq" {
            el = el.attr("type", "get").child(Element::new("ping", ns::PING));
        }
        Stanza::from_element(el).expect("stanza")
    }

    #[tokio::test]
    async fn cache_holds_only_accounts_with_sessions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocking = Arc::new(Blocking::new());
        let ctx = server(dir.path(), &blocking).await;
        let alice = BareJid::new("alice@localhost").expect("jid");
        confab_server::accounts::create(&ctx.stores, &alice, "a password", 4096)
            .await
            .expect("account");
        let full = FullJid::new("alice@localhost/phone").expect("jid");
        let session = SessionInfo::new(1, full.clone(), 16, 1 << 20);
        let session = Arc::new(session);
        ctx.router
            .bind(
                session.clone(),
                confab_server::config::ResourceConflict::Refuse,
            )
            .expect("bound");

        // IQs to, and messages for, many addresses that are not online (or do not exist).
        for i in 0..200 {
            let mut iq = stanza("iq", full.as_str(), &format!("ghost{i}@localhost"));
            blocking
                .on_stanza(&ctx, &HookArgs::at(HookPoint::FromClient), &mut iq)
                .await;
            let mut msg = stanza(
                "message",
                &format!("x{i}@example.net"),
                &format!("nobody{i}@localhost"),
            );
            blocking
                .on_stanza(&ctx, &HookArgs::at(HookPoint::ToBareJid), &mut msg)
                .await;
        }
        assert_eq!(blocking.cache_len(), 1, "only alice, who is online");

        // A change made while online is seen, cached and after the last session ends.
        let block = Change::Block(vec!["mallory@localhost".into()]);
        assert!(blocking.apply(&ctx, &alice, &block).await.is_ok());
        let mallory = Jid::new("mallory@localhost").expect("jid");
        assert!(blocking.blocks(&ctx, &alice, &mallory).await);
        ctx.router.unbind(&session);
        blocking.session_closed(&ctx, &session).await;
        assert_eq!(blocking.cache_len(), 0);
        assert!(blocking.blocks(&ctx, &alice, &mallory).await);
        assert_eq!(blocking.cache_len(), 0);
    }

    #[test]
    fn items_are_normalized_and_validated() {
        let block = Element::new("block", NS)
            .child(Element::new("item", NS).attr("jid", "Romeo@Montague.NET"))
            .child(Element::new("item", NS).attr("jid", "romeo@montague.net"));
        assert_eq!(
            parse_items(&block).ok(),
            Some(vec!["romeo@montague.net".to_string()])
        );
        let bad = Element::new("block", NS).child(Element::new("item", NS).attr("jid", "@x"));
        assert!(matches!(
            parse_items(&bad),
            Err(IqReply::Error(StanzaError {
                condition: StanzaErrorCondition::JidMalformed,
                ..
            }))
        ));
        let missing = Element::new("block", NS).child(Element::new("item", NS));
        assert!(matches!(
            parse_items(&missing),
            Err(IqReply::Error(StanzaError {
                condition: StanzaErrorCondition::BadRequest,
                ..
            }))
        ));
    }
}
