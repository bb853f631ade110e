//! The roster service shared by the roster and presence modules (like Prosody's
//! rostermanager): loading and saving items of local accounts, their XML form, and roster
//! pushes to the account's interested resources (RFC 6121 §2.1.6).

use confab_proto::jid::{BareJid, Jid};
use confab_proto::ns;
use confab_proto::stanza::Stanza;
use confab_proto::xml::Element;
use confab_server::ServerCtx;
use confab_store::{RosterItem, StoreError};

pub use confab_server::accounts::parts;

pub const NS: &str = "jabber:iq:roster";

/// Serialises read-modify-write changes of one account's roster: two subscription stanzas
/// for the same account handled at once must not overwrite each other's change. Striped, so
/// memory does not grow with the number of accounts. Never hold it across routing: the
/// contact's side takes its own stripe, which may be the same one.
pub async fn lock(account: &BareJid) -> tokio::sync::MutexGuard<'static, ()> {
    use std::hash::{Hash, Hasher};
    static STRIPES: std::sync::OnceLock<Vec<tokio::sync::Mutex<()>>> = std::sync::OnceLock::new();
    let stripes = STRIPES.get_or_init(|| (0..256).map(|_| tokio::sync::Mutex::new(())).collect());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    account.hash(&mut h);
    let i = (h.finish() % 256) as usize;
    match stripes.get(i) {
        Some(m) => m.lock().await,
        None => unreachable_stripe(stripes).await,
    }
}

async fn unreachable_stripe(
    stripes: &'static [tokio::sync::Mutex<()>],
) -> tokio::sync::MutexGuard<'static, ()> {
    // `i < 256 == stripes.len()`, so this is not reached; it keeps indexing panic-free.
    match stripes.first() {
        Some(m) => m.lock().await,
        None => std::future::pending().await,
    }
}

pub async fn item(
    ctx: &ServerCtx,
    account: &BareJid,
    contact: &BareJid,
) -> Result<Option<RosterItem>, StoreError> {
    let (d, u) = parts(account);
    ctx.stores.roster.roster_item(d, u, contact.as_str()).await
}

/// Whether `requester` may see `target`'s presence and presence-like data (last activity,
/// account disco): the user themself, or a contact `target` has a `from`/`both`
/// subscription with (RFC 6121 §3).
pub async fn may_see_presence(
    ctx: &ServerCtx,
    requester: &BareJid,
    target: &BareJid,
) -> Result<bool, StoreError> {
    if requester == target {
        return Ok(true);
    }
    Ok(item(ctx, target, requester)
        .await?
        .is_some_and(|i| i.subscription.has_from()))
}

/// The `<item/>` clients see. `remove` renders a deletion push.
pub fn item_element(item: &RosterItem, remove: bool) -> Element {
    let mut e = Element::new("item", NS).attr("jid", item.jid.clone());
    if remove {
        e.set_attr("subscription", "remove");
        return e;
    }
    if let Some(n) = &item.name {
        e.set_attr("name", n.clone());
    }
    e.set_attr("subscription", item.subscription.as_str());
    if item.ask {
        e.set_attr("ask", "subscribe");
    }
    if item.approved && !item.subscription.has_from() {
        e.set_attr("approved", "true");
    }
    for g in &item.groups {
        e.push_child(Element::new("group", NS).text(g.clone()));
    }
    e
}

/// Saves an item and pushes it (when visible) to the account's interested resources.
pub async fn save_and_push(
    ctx: &ServerCtx,
    account: &BareJid,
    item: &RosterItem,
) -> Result<(), StoreError> {
    let (d, u) = parts(account);
    let version = ctx.stores.roster.put_roster_item(d, u, item).await?;
    if item.in_roster {
        push(ctx, account, item_element(item, false), version).await;
    }
    Ok(())
}

/// Deletes an item and pushes `subscription='remove'`.
pub async fn remove_and_push(
    ctx: &ServerCtx,
    account: &BareJid,
    item: &RosterItem,
) -> Result<(), StoreError> {
    let (d, u) = parts(account);
    if let Some(version) = ctx
        .stores
        .roster
        .delete_roster_item(d, u, &item.jid)
        .await?
    {
        if item.in_roster {
            push(ctx, account, item_element(item, true), version).await;
        }
    }
    Ok(())
}

/// Routes a server-generated presence of `type_` from `from` to `to`.
pub async fn route_presence(ctx: &ServerCtx, type_: &str, from: &Jid, to: &Jid) {
    let el = Element::new("presence", ns::CLIENT)
        .attr("type", type_)
        .attr("from", from.as_str())
        .attr("to", to.as_str());
    if let Ok(p) = Stanza::from_element(el) {
        confab_server::router::route(ctx, p).await;
    }
}

/// Tells `contact` that every available resource of `account` went away (the contact no
/// longer sees the account's presence).
pub async fn send_unavailable(ctx: &ServerCtx, account: &BareJid, contact: &Jid) {
    for s in ctx.router.sessions_of(account) {
        if s.is_available() {
            route_presence(ctx, "unavailable", &Jid::from(s.jid.clone()), contact).await;
        }
    }
}

/// The subscription stanzas that cancel an item's state both ways (RFC 6121 §2.5.2).
pub fn cancel_notices(item: &RosterItem) -> Vec<&'static str> {
    let mut notices = Vec::new();
    if item.subscription.has_to() || item.ask {
        notices.push("unsubscribe");
    }
    if item.subscription.has_from() || item.pending_in.is_some() {
        notices.push("unsubscribed");
    }
    notices
}

/// Sends a roster push to every resource of the account that requested the roster.
pub async fn push(ctx: &ServerCtx, account: &BareJid, item: Element, version: u64) {
    for s in ctx.router.sessions_of(account) {
        if !s.wants_roster_pushes() {
            continue;
        }
        let iq = Element::new("iq", ns::CLIENT)
            .attr("type", "set")
            .attr("id", format!("push-{version}-{}", s.id))
            .attr("to", s.jid.to_string())
            .child(
                Element::new("query", NS)
                    .attr("ver", version.to_string())
                    .child(item.clone()),
            );
        if let Ok(iq) = Stanza::from_element(iq) {
            confab_server::router::deliver(ctx, &iq, std::slice::from_ref(&s)).await;
        }
    }
}
