//! Presence and subscriptions, RFC 6121 §3–§4: initial presence with probes, broadcast to
//! subscribers only, directed presence, the subscription state machine (with pending-in
//! requests kept for offline users and pre-approval), and unavailable presence when a
//! session ends. Roster changes go through `crate::roster`, which pushes them.

use crate::roster::RosterConfig;
use crate::roster::{self, parts};
use async_trait::async_trait;
use confab_proto::datetime::format_datetime;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::{BareJid, FullJid, Jid};
use confab_proto::ns;
use confab_proto::parser::parse_fragment;
use confab_proto::stanza::{Stanza, StanzaKind};
use confab_proto::xml::Element;
use confab_server::module::{
    HookArgs, HookPoint, HookResult, LifecycleListener, Module, Registry, StanzaHook,
};
use confab_server::router;
use confab_server::session::SessionInfo;
use confab_server::ServerCtx;
use confab_store::RosterItem;
use dashmap::DashMap;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

/// Where the last unavailable presence of an account is kept, for probes while offline.
const KIND: &str = "presence";

/// XEP-0172 user nicknames, kept with stored subscription requests.
const NICK: &str = "http://jabber.org/protocol/nick";

/// Most entities one session's directed presence is remembered for.
const MAX_DIRECTED: usize = 1000;

/// Whether the account's roster already holds `max` items (visible or not).
async fn roster_full(ctx: &ServerCtx, max: usize, account: &BareJid, visible_only: bool) -> bool {
    let (d, u) = parts(account);
    match ctx.stores.roster.roster(d, u).await {
        Ok((_, items)) => {
            items
                .iter()
                .filter(|i| i.in_roster || !visible_only)
                .count()
                >= max
        }
        Err(_) => true,
    }
}

#[derive(Default)]
pub struct Presence {
    /// The last available presence each session broadcast, with the session's id (a new
    /// session may reuse a full JID before the old one's cleanup ran).
    last: DashMap<FullJid, (u64, Element)>,
    /// Entities each session sent directed available presence to (RFC 6121 §4.6), who get
    /// its unavailable presence too.
    directed: DashMap<FullJid, HashSet<Jid>>,
    /// `[roster] max_items`: requests that would add a contact past it are refused.
    max_roster_items: OnceLock<usize>,
}

impl Presence {
    fn max_roster_items(&self) -> usize {
        *self
            .max_roster_items
            .get_or_init(|| RosterConfig::default().max_items)
    }
}

impl Module for Presence {
    fn name(&self) -> &'static str {
        "presence"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let roster: RosterConfig = reg.section("roster");
        let _ = self.max_roster_items.set(roster.max_items);
        // Last: broadcast presence is consumed here, and other modules (offline delivery,
        // last activity, blocking) must see it first.
        reg.hook(HookPoint::FromClient, i32::MIN, self.clone());
        reg.hook(HookPoint::ToBareJid, 100, self.clone());
        reg.hook(HookPoint::ToFullJid, 100, self.clone());
        reg.lifecycle(self);
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A copy of `el` addressed from/to the given JIDs.
fn addressed(el: &Element, from: &Jid, to: &Jid) -> Option<Stanza> {
    let mut el = el.clone();
    el.set_attr("from", from.as_str());
    el.set_attr("to", to.as_str());
    Stanza::from_element(el).ok()
}

fn presence_el(type_: Option<&str>) -> Element {
    let mut e = Element::new("presence", ns::CLIENT);
    if let Some(t) = type_ {
        e.set_attr("type", t);
    }
    e
}

/// The stored item, or the error to answer with: a failed read is never taken for "no
/// item", or the save that follows would overwrite the contact's name, groups and
/// subscription.
async fn load_item(
    ctx: &ServerCtx,
    account: &BareJid,
    contact: &BareJid,
) -> Result<Option<RosterItem>, StanzaError> {
    roster::item(ctx, account, contact).await.map_err(|e| {
        tracing::error!(error = %e, account = %account, "roster load failed");
        store_failed()
    })
}

/// What a stanza that needed storage gets when storage failed: try again later.
fn store_failed() -> StanzaError {
    confab_server::module::storage_failed()
}

/// Most characters kept of a stored subscription request's nickname or status: requests
/// are delivered again at every login until answered, so what they carry is bounded.
const MAX_REQUEST_TEXT: usize = 1024;

/// The part of a subscription request that is kept and shown: the stanza with its
/// XEP-0172 nickname and status, each bounded, and nothing else.
fn bounded_request(el: &Element) -> Element {
    let mut out = Element::new(el.name.clone(), el.ns.clone());
    // Addresses and type only (the id, if short): attributes could carry as much as the
    // stanza limit allows.
    for name in ["from", "to", "type", "id"] {
        if let Some(v) = el.get_attr(name).filter(|v| v.len() <= 3 * 1024) {
            out.set_attr(name, v);
        }
    }
    for c in el.elements() {
        if c.is("nick", NICK) || c.is("status", &el.ns) {
            let text: String = c.text_content().chars().take(MAX_REQUEST_TEXT).collect();
            out.push_child(Element::new(c.name.clone(), c.ns.clone()).text(text));
        }
    }
    out
}

async fn save(ctx: &ServerCtx, account: &BareJid, item: &RosterItem) {
    // An item that carries no state any more disappears.
    let empty = !item.in_roster
        && item.subscription == confab_store::Subscription::None
        && !item.ask
        && item.pending_in.is_none()
        && !item.approved;
    let r = if empty {
        roster::remove_and_push(ctx, account, item).await
    } else {
        roster::save_and_push(ctx, account, item).await
    };
    if let Err(e) = r {
        tracing::error!(error = %e, "roster save failed");
    }
}

/// Delivers to every available resource of a local account (subscription stanzas that
/// the user must see).
async fn deliver_to_available(ctx: &ServerCtx, account: &BareJid, el: &Element) {
    let Ok(stanza) = Stanza::from_element(el.clone()) else {
        return;
    };
    let targets: Vec<_> = ctx
        .router
        .sessions_of(account)
        .into_iter()
        .filter(|s| s.is_available())
        .collect();
    router::deliver(ctx, &stanza, &targets).await;
}

impl Presence {
    /// The account's roster items (visible or not), or the error to answer with.
    async fn roster_items(
        &self,
        ctx: &ServerCtx,
        account: &BareJid,
    ) -> Result<Vec<RosterItem>, StanzaError> {
        let (d, u) = parts(account);
        match ctx.stores.roster.roster(d, u).await {
            Ok((_, items)) => Ok(items),
            Err(e) => {
                tracing::error!(error = %e, account = %account, "roster load failed");
                Err(store_failed())
            }
        }
    }

    /// Sends a session's available or unavailable presence to its subscribers, to the user's
    /// own resources, and (for unavailable) to everyone it sent directed presence to.
    ///
    /// Without the subscriber list (storage failed) it reaches nobody but the user's own
    /// resources and directed-presence recipients, and the error is returned: "no
    /// subscribers" is never assumed.
    async fn broadcast(
        &self,
        ctx: &ServerCtx,
        from: &FullJid,
        el: &Element,
        unavailable: bool,
    ) -> Result<(), StanzaError> {
        let items = self.roster_items(ctx, &from.to_bare()).await;
        self.broadcast_to(
            ctx,
            from,
            el,
            unavailable,
            items.as_deref().map_err(Clone::clone),
        )
        .await
    }

    /// `broadcast` with the account's roster already read (or the error reading it).
    async fn broadcast_to(
        &self,
        ctx: &ServerCtx,
        from: &FullJid,
        el: &Element,
        unavailable: bool,
        roster: Result<&[RosterItem], StanzaError>,
    ) -> Result<(), StanzaError> {
        let account = from.to_bare();
        let from_jid = Jid::from(from.clone());
        let subscribers: Result<Vec<Jid>, StanzaError> = roster.map(|items| {
            items
                .iter()
                .filter(|i| i.subscription.has_from())
                .filter_map(|i| Jid::new(&i.jid).ok())
                .collect()
        });
        let mut targets = subscribers.clone().unwrap_or_default();
        // The user's own resources; none left (the last session's logout) means no one to
        // tell, and no routing to the bare JID (which would look the account up).
        if !ctx.router.sessions_of(&account).is_empty() {
            targets.push(Jid::from(account.clone()));
        }
        if unavailable {
            if let Some((_, directed)) = self.directed.remove(from) {
                for d in directed {
                    if !targets.contains(&d) {
                        targets.push(d);
                    }
                }
            }
        }
        for t in targets {
            if let Some(p) = addressed(el, &from_jid, &t) {
                router::route(ctx, p).await;
            }
        }
        subscribers.map(|_| ())
    }

    /// RFC 6121 §4.2: the first available presence of a session (`items`: the account's
    /// roster, as read for the broadcast).
    async fn initial(&self, ctx: &ServerCtx, from: &FullJid, items: &[RosterItem]) {
        let account = from.to_bare();
        let own = Jid::from(account.clone());
        let Some(session) = ctx.router.session(from) else {
            return;
        };
        for item in items {
            let Ok(contact) = Jid::new(&item.jid) else {
                continue;
            };
            // Probe contacts whose presence the user receives.
            if item.subscription.has_to() {
                if let Some(p) = addressed(&presence_el(Some("probe")), &own, &contact) {
                    router::route(ctx, p).await;
                }
            }
            // Subscription requests that arrived while the user was offline (§3.1.3).
            if let Some(xml) = &item.pending_in {
                if let Some(mut req) =
                    parse_fragment(xml, ns::CLIENT, &ctx.config.limits.parser_limits())
                {
                    req.set_attr("to", own.as_str());
                    if let Ok(req) = Stanza::from_element(req) {
                        router::deliver(ctx, &req, std::slice::from_ref(&session)).await;
                    }
                }
            }
        }
        // The presence of the user's other available resources.
        for other in ctx.router.sessions_of(&account) {
            if other.jid == *from {
                continue;
            }
            // Cloned out first: no map guard is held across the await below.
            let last = self.last.get(&other.jid).map(|p| p.1.clone());
            if let Some(el) = last {
                if let Some(p) =
                    addressed(&el, &Jid::from(other.jid.clone()), &Jid::from(from.clone()))
                {
                    router::deliver(ctx, &p, std::slice::from_ref(&session)).await;
                }
            }
        }
    }

    async fn outbound(&self, ctx: &ServerCtx, stanza: &mut Stanza) -> HookResult {
        let Some(from) = stanza
            .from
            .as_ref()
            .and_then(|f| f.try_as_full().ok())
            .cloned()
        else {
            return HookResult::Continue;
        };
        let type_ = stanza.type_attr().map(str::to_string);
        let Some(to) = stanza.to.clone() else {
            match type_.as_deref() {
                None => {
                    let mut el = stanza.el.clone();
                    el.remove_attr("to");
                    let id = ctx.router.session(&from).map(|s| s.id).unwrap_or(u64::MAX);
                    let first = self
                        .last
                        .insert(from.clone(), (id, el.clone()))
                        .is_none_or(|(old, _)| old != id);
                    // Read once for both the broadcast and the initial presence's probes.
                    let account = from.to_bare();
                    let roster = self.roster_items(ctx, &account).await;
                    let sent = self
                        .broadcast_to(
                            ctx,
                            &from,
                            &el,
                            false,
                            roster.as_deref().map_err(Clone::clone),
                        )
                        .await;
                    if let Err(e) = sent {
                        router::send_error(ctx, stanza, e).await;
                    }
                    if let (true, Ok(items)) = (first, &roster) {
                        self.initial(ctx, &from, items).await;
                    }
                }
                Some("unavailable") => {
                    self.last.remove(&from);
                    let mut el = stanza.el.clone();
                    el.remove_attr("to");
                    if let Err(e) = self.broadcast(ctx, &from, &el, true).await {
                        router::send_error(ctx, stanza, e).await;
                    }
                    self.remember_unavailable(ctx, &from, &el).await;
                }
                // Subscription stanzas and probes need an addressee.
                _ => {}
            }
            return HookResult::Handled;
        };
        let account = from.to_bare();
        match type_.as_deref() {
            None => {
                // Bounded: a client cannot grow server memory by addressing many entities.
                let mut set = self.directed.entry(from).or_default();
                if set.len() < MAX_DIRECTED || set.contains(&to) {
                    set.insert(to);
                }
                HookResult::Continue
            }
            Some("unavailable") => {
                if let Some(mut d) = self.directed.get_mut(&from) {
                    d.remove(&to);
                }
                HookResult::Continue
            }
            Some(t @ ("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")) => {
                let contact = to.to_bare();
                if contact == account {
                    router::send_error(
                        ctx,
                        stanza,
                        StanzaError::with_text(
                            StanzaErrorCondition::BadRequest,
                            "subscription to oneself",
                        ),
                    )
                    .await;
                    return HookResult::Handled;
                }
                self.outbound_subscription(ctx, &account, &contact, t, stanza)
                    .await;
                HookResult::Handled
            }
            // Probes are the server's business (RFC 6121 §4.3).
            Some("probe") => HookResult::Handled,
            _ => HookResult::Continue,
        }
    }

    async fn outbound_subscription(
        &self,
        ctx: &ServerCtx,
        account: &BareJid,
        contact: &BareJid,
        t: &str,
        stanza: &Stanza,
    ) {
        let guard = roster::lock(account).await;
        let existing = match load_item(ctx, account, contact).await {
            Ok(i) => i,
            Err(e) => {
                drop(guard);
                router::send_error(ctx, stanza, e).await;
                return;
            }
        };
        if existing.is_none()
            && matches!(t, "subscribe" | "subscribed")
            && roster_full(ctx, self.max_roster_items(), account, true).await
        {
            drop(guard);
            // Same limit and condition as a roster set (RFC 6121 §2.3.3).
            router::send_error(
                ctx,
                stanza,
                StanzaError::with_text(StanzaErrorCondition::NotAllowed, "roster is full"),
            )
            .await;
            return;
        }
        let mut item = existing.unwrap_or_else(|| RosterItem::new(contact.as_str()));
        let mut route_it = true;
        let mut send_presence = false;
        let mut send_unavailable = false;
        match t {
            "subscribe" => {
                if !item.subscription.has_to() {
                    item.ask = true;
                    item.in_roster = true;
                    save(ctx, account, &item).await;
                }
            }
            "subscribed" => {
                if item.pending_in.is_some() {
                    item.subscription = item.subscription.with_from(true);
                    item.pending_in = None;
                    item.approved = false;
                    item.in_roster = true;
                    save(ctx, account, &item).await;
                    send_presence = true;
                } else if !item.subscription.has_from() {
                    // RFC 6121 §3.4: pre-approval; nothing goes to the contact yet.
                    item.approved = true;
                    item.in_roster = true;
                    save(ctx, account, &item).await;
                    route_it = false;
                } else {
                    route_it = false;
                }
            }
            "unsubscribe" => {
                if item.subscription.has_to() || item.ask {
                    item.subscription = item.subscription.with_to(false);
                    item.ask = false;
                    save(ctx, account, &item).await;
                }
            }
            _ => {
                // unsubscribed: cancel or refuse the contact's subscription.
                send_unavailable = item.subscription.has_from();
                if send_unavailable || item.pending_in.is_some() || item.approved {
                    item.subscription = item.subscription.with_from(false);
                    item.pending_in = None;
                    item.approved = false;
                    save(ctx, account, &item).await;
                }
            }
        }
        drop(guard);
        let own = Jid::from(account.clone());
        let contact_jid = Jid::from(contact.clone());
        if route_it {
            // Subscription stanzas carry the user's bare JID (RFC 6121 §3.1.2), and keep
            // their payload (e.g. an XEP-0172 nickname).
            if let Some(p) = addressed(&stanza.el, &own, &contact_jid) {
                router::route(ctx, p).await;
            }
        }
        if send_presence || send_unavailable {
            for s in ctx.router.sessions_of(account) {
                let el = if send_unavailable {
                    Some(presence_el(Some("unavailable")))
                } else {
                    self.last.get(&s.jid).map(|e| e.1.clone())
                };
                if let Some(el) = el {
                    if let Some(p) = addressed(&el, &Jid::from(s.jid.clone()), &contact_jid) {
                        router::route(ctx, p).await;
                    }
                }
            }
        }
    }

    /// A presence stanza for a local account (bare or full JID).
    async fn inbound(&self, ctx: &ServerCtx, stanza: &mut Stanza) -> HookResult {
        let (Some(to), Some(from)) = (stanza.to.clone(), stanza.from.clone()) else {
            return HookResult::Continue;
        };
        let account = to.to_bare();
        let contact = from.to_bare();
        let type_ = stanza.type_attr().map(str::to_string);
        match type_.as_deref() {
            Some("probe") => {
                self.answer_probe(ctx, &account, &from).await;
                HookResult::Handled
            }
            Some(t @ ("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed")) => {
                self.inbound_subscription(ctx, &account, &contact, t, stanza)
                    .await;
                HookResult::Handled
            }
            _ => HookResult::Continue,
        }
    }

    async fn inbound_subscription(
        &self,
        ctx: &ServerCtx,
        account: &BareJid,
        contact: &BareJid,
        t: &str,
        stanza: &Stanza,
    ) {
        // Held for the read-modify-write only, never across delivery (whose hooks may
        // route, and the contact's side takes a stripe of this lock too).
        let mut guard = Some(roster::lock(account).await);
        let mut show = false;
        let mut item = match load_item(ctx, account, contact).await {
            Ok(i) => i.unwrap_or_else(|| RosterItem::new(contact.as_str())),
            Err(e) => {
                drop(guard.take());
                router::send_error(ctx, stanza, e).await;
                return;
            }
        };
        let own = Jid::from(account.clone());
        let contact_jid = Jid::from(contact.clone());
        // What the user's clients see: from the contact's bare JID, to the user's bare JID,
        // with a bounded payload (it is stored and shown again at every login).
        let mut shown = bounded_request(&stanza.el);
        shown.set_attr("from", contact.as_str());
        shown.set_attr("to", own.as_str());
        match t {
            "subscribe" => {
                if item.subscription.has_from() || item.approved {
                    if !item.subscription.has_from() {
                        item.subscription = item.subscription.with_from(true);
                        item.approved = false;
                        save(ctx, account, &item).await;
                    }
                    drop(guard.take());
                    // Already approved: the server answers for the user (§3.1.3).
                    if let Some(p) = addressed(&presence_el(Some("subscribed")), &own, &contact_jid)
                    {
                        router::route(ctx, p).await;
                    }
                    for s in ctx.router.sessions_of(account) {
                        if let Some(el) = self.last.get(&s.jid).map(|e| e.1.clone()) {
                            if let Some(p) = addressed(&el, &Jid::from(s.jid.clone()), &contact_jid)
                            {
                                router::route(ctx, p).await;
                            }
                        }
                    }
                    return;
                }
                if item.pending_in.is_none()
                    && !item.in_roster
                    && roster_full(ctx, self.max_roster_items(), account, false).await
                {
                    // Requests beyond the roster limit are refused, not stored.
                    drop(guard.take());
                    if let Some(p) =
                        addressed(&presence_el(Some("unsubscribed")), &own, &contact_jid)
                    {
                        router::route(ctx, p).await;
                    }
                    return;
                }
                // Kept until the user answers; delivered again at each login until then.
                item.pending_in = Some(shown.to_xml(ns::CLIENT));
                let (d, u) = parts(account);
                if let Err(e) = ctx.stores.roster.put_roster_item(d, u, &item).await {
                    tracing::error!(error = %e, "storing a subscription request failed");
                    return;
                }
                show = true;
            }
            "subscribed" => {
                if item.ask {
                    item.ask = false;
                    item.subscription = item.subscription.with_to(true);
                    save(ctx, account, &item).await;
                    show = true;
                }
            }
            "unsubscribe" => {
                let had_from = item.subscription.has_from();
                if had_from || item.pending_in.is_some() {
                    item.subscription = item.subscription.with_from(false);
                    item.pending_in = None;
                    save(ctx, account, &item).await;
                    show = true;
                }
                drop(guard.take());
                if had_from {
                    // RFC 6121 §3.3.3: the contact no longer sees the user's presence, so it
                    // learns every available resource is gone.
                    roster::send_unavailable(ctx, account, &contact_jid).await;
                }
            }
            _ => {
                if item.subscription.has_to() || item.ask {
                    item.subscription = item.subscription.with_to(false);
                    item.ask = false;
                    save(ctx, account, &item).await;
                    show = true;
                }
            }
        }
        drop(guard.take());
        if show {
            deliver_to_available(ctx, account, &shown).await;
        }
    }

    /// RFC 6121 §4.3.2: only contacts with a subscription learn the user's presence.
    async fn answer_probe(&self, ctx: &ServerCtx, account: &BareJid, prober: &Jid) {
        // A failed read answers nothing, as for a non-subscriber.
        let allowed = load_item(ctx, account, &prober.to_bare())
            .await
            .ok()
            .flatten()
            .is_some_and(|i| i.subscription.has_from());
        if !allowed {
            return;
        }
        let mut any = false;
        for s in ctx.router.sessions_of(account) {
            if let Some(el) = self.last.get(&s.jid).map(|e| e.1.clone()) {
                any = true;
                if let Some(p) = addressed(&el, &Jid::from(s.jid.clone()), prober) {
                    router::route(ctx, p).await;
                }
            }
        }
        if any {
            return;
        }
        // Offline: the last unavailable presence, with when it was sent.
        let (d, u) = parts(account);
        let stored = ctx
            .stores
            .data
            .get_account_data(d, u, KIND, "last-unavailable")
            .await
            .ok()
            .flatten()
            .and_then(|x| parse_fragment(&x, ns::CLIENT, &ctx.config.limits.parser_limits()));
        let el = stored.unwrap_or_else(|| presence_el(Some("unavailable")));
        if let Some(p) = addressed(&el, &Jid::from(account.clone()), prober) {
            router::route(ctx, p).await;
        }
    }

    /// Keeps the account's last unavailable presence (status included) for probes.
    async fn remember_unavailable(&self, ctx: &ServerCtx, from: &FullJid, el: &Element) {
        let account = from.to_bare();
        if ctx
            .router
            .sessions_of(&account)
            .iter()
            .any(|s| s.jid != *from && s.is_available())
        {
            return;
        }
        let mut stored = el.clone();
        stored.remove_attr("from");
        stored.remove_attr("to");
        stored.remove_children("delay", ns::DELAY);
        stored.push_child(
            Element::new("delay", ns::DELAY)
                .attr("from", account.domain().as_str())
                .attr("stamp", format_datetime(now())),
        );
        let (d, u) = parts(&account);
        if let Err(e) = ctx
            .stores
            .data
            // Not needed durably at once: written behind, batched with other logouts.
            .set_account_data_lazily(d, u, KIND, "last-unavailable", &stored.to_xml(ns::CLIENT))
            .await
        {
            tracing::error!(error = %e, "storing last presence failed");
        }
    }
}

#[async_trait]
impl StanzaHook for Presence {
    async fn on_stanza(&self, ctx: &ServerCtx, args: &HookArgs, stanza: &mut Stanza) -> HookResult {
        let point = args.point;
        if stanza.kind != StanzaKind::Presence {
            return HookResult::Continue;
        }
        match point {
            HookPoint::FromClient => self.outbound(ctx, stanza).await,
            _ => self.inbound(ctx, stanza).await,
        }
    }
}

#[async_trait]
impl LifecycleListener for Presence {
    async fn session_bound(&self, _: &ServerCtx, _: &SessionInfo) {}

    /// A session that ends without unavailable presence still goes offline for everyone
    /// who saw it (RFC 6121 §4.5.2).
    async fn session_closed(&self, ctx: &ServerCtx, session: &SessionInfo) {
        let jid = &session.jid;
        if ctx.router.session(jid).is_some() {
            // Replaced by a new session on the same resource (kick-old): the user did not
            // go offline, and the state now belongs to the new session.
            self.last.remove_if(jid, |_, (id, _)| *id == session.id);
            return;
        }
        let was_available = self.last.remove(jid).is_some();
        let directed = self.directed.contains_key(jid);
        if was_available || directed {
            let el = presence_el(Some("unavailable"));
            // Logged where it failed; the session is gone either way.
            let _ = self.broadcast(ctx, jid, &el, true).await;
            if was_available {
                self.remember_unavailable(ctx, jid, &el).await;
            }
        }
        self.directed.remove(jid);
    }

    async fn account_deleted(&self, ctx: &ServerCtx, account: &BareJid) {
        // The roster is still there: contacts see every resource go offline first.
        let online: Vec<FullJid> = self
            .last
            .iter()
            .filter(|e| e.key().to_bare() == *account)
            .map(|e| e.key().clone())
            .collect();
        for jid in online {
            let _ = self
                .broadcast(ctx, &jid, &presence_el(Some("unavailable")), true)
                .await;
        }
        self.last.retain(|k, _| k.to_bare() != *account);
        self.directed.retain(|k, _| k.to_bare() != *account);
    }
}
