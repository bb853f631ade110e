//! `confabd export`: every host's accounts and their data, and every domain's documents, as
//! one XEP-0227 document written as it is read (a user at a time, archives a page at a time).

use super::*;
use base64::Engine;
use confab_proto::ns;
use confab_proto::parser::{parse_fragment, Limits as ParseLimits};
use confab_proto::xml::{Attr, Element};
use confab_store::archive::MAX_PAGE;
use confab_store::{ArchiveQuery, RosterItem, StoreError, Stores, Subscription};
use std::collections::BTreeSet;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub hosts: usize,
    pub users: usize,
    pub archived_messages: u64,
    pub offline_messages: u64,
    pub room_messages: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    /// A stored document or stanza that is not XML (the database was changed by hand).
    #[error("{0}: the stored XML does not parse")]
    Corrupt(String),
}

/// Buffered output is written out past this size.
const FLUSH_AT: usize = 64 * 1024;
/// Offline messages read per page.
const OFFLINE_PAGE: usize = 500;

struct Out<'a, W> {
    w: &'a mut W,
    buf: String,
}

impl<W: AsyncWrite + Unpin> Out<'_, W> {
    async fn push(&mut self, s: &str) -> std::io::Result<()> {
        self.buf.push_str(s);
        if self.buf.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    async fn element(
        &mut self,
        indent: &str,
        el: &Element,
        parent_ns: &str,
    ) -> std::io::Result<()> {
        let mut s = String::with_capacity(256);
        s.push_str(indent);
        el.write_to(&mut s, parent_ns);
        s.push('\n');
        self.push(&s).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.w.write_all(self.buf.as_bytes()).await?;
        self.buf.clear();
        Ok(())
    }
}

fn parse_limits() -> ParseLimits {
    ParseLimits {
        max_stanza_memory: 64 * 1024 * 1024,
        ..ParseLimits::default()
    }
}

fn parse_stored(xml: &str, what: impl FnOnce() -> String) -> Result<Element, ExportError> {
    parse_fragment(xml, ns::CLIENT, &parse_limits()).ok_or_else(|| ExportError::Corrupt(what()))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn confab_attr(el: &mut Element, name: &str, value: &str) {
    el.attrs.push(Attr {
        ns: confab_proto::xml::namespace(NS_CONFAB),
        name: name.to_string(),
        value: value.to_string(),
    });
}

/// Writes every account of `domains` and every stored per-domain document (of any domain,
/// service domains included) to `out`.
pub async fn export<W: AsyncWrite + Unpin>(
    stores: &Stores,
    domains: &[String],
    out: &mut W,
) -> Result<ExportSummary, ExportError> {
    let mut summary = ExportSummary::default();
    let mut o = Out {
        w: out,
        buf: String::new(),
    };
    o.push(&format!(
        "<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='{NS}'>\n"
    ))
    .await?;
    let rooms = stores.room_archive.room_archives().await?;
    let mut hosts: BTreeSet<String> = domains.iter().cloned().collect();
    hosts.extend(stores.data.host_data_domains().await?);
    hosts.extend(rooms.iter().map(|(s, _)| s.clone()));
    for host in &hosts {
        summary.hosts += 1;
        o.push(&format!(
            "  <host jid='{}'>\n",
            confab_proto::xml::escape(host)
        ))
        .await?;
        if domains.contains(host) {
            for user in stores.accounts.list_accounts(host).await? {
                export_user(stores, host, &user, &mut o, &mut summary).await?;
                summary.users += 1;
            }
        }
        for (kind, key, value) in stores.data.all_host_data(host).await? {
            let el = Element::new("data", NS_CONFAB)
                .attr("kind", kind)
                .attr("key", key)
                .text(value);
            o.element("    ", &el, NS).await?;
        }
        for (_, room) in rooms.iter().filter(|(s, _)| s == host) {
            summary.room_messages += export_room_archive(stores, host, room, &mut o).await?;
        }
        o.push("  </host>\n").await?;
    }
    o.push("</server-data>\n").await?;
    o.flush().await?;
    o.w.flush().await?;
    Ok(summary)
}

async fn export_user<W: AsyncWrite + Unpin>(
    stores: &Stores,
    host: &str,
    user: &str,
    o: &mut Out<'_, W>,
    summary: &mut ExportSummary,
) -> Result<(), ExportError> {
    let who = format!("{user}@{host}");
    o.push(&format!(
        "    <user name='{}'>\n",
        confab_proto::xml::escape(user)
    ))
    .await?;
    const IN: &str = "      ";
    let mut creds = stores
        .accounts
        .credentials(host, user)
        .await?
        .unwrap_or_default();
    creds.sort_by_key(|c| c.hash.name());
    for c in &creds {
        let el = Element::new("scram-credentials", NS_SCRAM)
            .attr("mechanism", format!("SCRAM-{}", c.hash.name()))
            .child(Element::new("iter-count", NS_SCRAM).text(c.iterations.to_string()))
            .child(Element::new("salt", NS_SCRAM).text(b64(&c.salt)))
            .child(Element::new("server-key", NS_SCRAM).text(b64(&c.server_key)))
            .child(Element::new("stored-key", NS_SCRAM).text(b64(&c.stored_key)));
        o.element(IN, &el, NS).await?;
    }

    let (_, mut items) = stores.roster.roster(host, user).await?;
    items.sort_by(|a, b| a.jid.cmp(&b.jid));
    let mut roster = Element::new("query", NS_ROSTER);
    let mut requests = Vec::new();
    for item in &items {
        if item.in_roster || hidden_state(item) {
            roster.push_child(roster_item(item));
        }
        if let Some(xml) = &item.pending_in {
            let mut p = parse_stored(xml, || format!("{who}: the request of {}", item.jid))?;
            if p.get_attr("from").is_none() {
                p.set_attr("from", item.jid.clone());
            }
            requests.push(p);
        }
    }
    if !roster.children.is_empty() {
        o.element(IN, &roster, NS).await?;
    }
    for p in &requests {
        o.element(IN, p, NS).await?;
    }

    let mut private = Element::new("query", NS_PRIVATE);
    let mut blocklist = Element::new("blocklist", NS_BLOCKING);
    let mut other = Vec::new();
    for (kind, key, value) in stores.data.all_account_data(host, user).await? {
        use confab_modules::{blocking, private as private_mod, vcard};
        if kind == vcard::KIND && key == vcard::KEY_VCARD {
            let v = parse_stored(&value, || format!("{who}: the vCard"))?;
            o.element(IN, &v, NS).await?;
        } else if kind == vcard::KIND && key == vcard::KEY_AVATAR {
            // Derived from the vCard; the import computes it again.
        } else if kind == private_mod::KIND {
            let el = parse_stored(&value, || format!("{who}: private XML {key}"))?;
            if private_mod::key_of(&el) == key {
                private.push_child(el);
            } else {
                other.push((kind, key, value));
            }
        } else if kind == blocking::KIND && value.is_empty() {
            blocklist.push_child(Element::new("item", NS_BLOCKING).attr("jid", key));
        } else {
            other.push((kind, key, value));
        }
    }
    if !private.children.is_empty() {
        o.element(IN, &private, NS).await?;
    }
    if !blocklist.children.is_empty() {
        o.element(IN, &blocklist, NS).await?;
    }
    for (kind, key, value) in other {
        let el = Element::new("data", NS_CONFAB)
            .attr("kind", kind)
            .attr("key", key)
            .text(value);
        o.element(IN, &el, NS).await?;
    }

    let mut after = i64::MIN;
    let mut opened = false;
    loop {
        let page = stores
            .offline
            .offline_page(host, user, after, OFFLINE_PAGE)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        if !opened {
            o.push(&format!("{IN}<offline-messages>\n")).await?;
            opened = true;
        }
        for m in &page {
            let mut el = parse_stored(&m.stanza, || format!("{who}: offline message {}", m.id))?;
            el.push_child(
                Element::new("delay", NS_DELAY)
                    .attr("from", host)
                    .attr("stamp", confab_proto::datetime::format_datetime(m.stamp))
                    .text(OFFLINE_DELAY_TEXT),
            );
            o.element("        ", &el, NS).await?;
            summary.offline_messages += 1;
        }
        if page.len() < OFFLINE_PAGE {
            break;
        }
    }
    if opened {
        o.push(&format!("{IN}</offline-messages>\n")).await?;
    }

    let account = format!("{user}@{host}");
    let mut query = ArchiveQuery {
        max: MAX_PAGE,
        ..ArchiveQuery::default()
    };
    let mut opened = false;
    loop {
        let Some(page) = stores.archive.query_archive(host, user, &query).await? else {
            break;
        };
        if !opened && !page.items.is_empty() {
            o.push(&format!("{IN}<archive xmlns='{NS_MAM}'>\n")).await?;
            opened = true;
        }
        for m in &page.items {
            let msg = parse_stored(&m.stanza, || format!("{who}: archived message {}", m.id))?;
            let mut result = archive_result(&m.id, m.stamp, msg);
            if derived_with(&result, &account).as_deref() != Some(m.with.as_str()) {
                confab_attr(&mut result, "with", &m.with);
            }
            o.element("        ", &result, NS_MAM).await?;
            summary.archived_messages += 1;
        }
        match page.items.last() {
            Some(last) if !page.complete => query.after = Some(last.id.clone()),
            _ => break,
        }
    }
    if opened {
        o.push(&format!("{IN}</archive>\n")).await?;
    }
    o.push("    </user>\n").await?;
    Ok(())
}

async fn export_room_archive<W: AsyncWrite + Unpin>(
    stores: &Stores,
    service: &str,
    room: &str,
    o: &mut Out<'_, W>,
) -> Result<u64, ExportError> {
    let mut n = 0;
    o.push(&format!(
        "    <room-archive xmlns='{NS_CONFAB}' room='{}'>\n",
        confab_proto::xml::escape(room)
    ))
    .await?;
    let mut query = ArchiveQuery {
        max: MAX_PAGE,
        ..ArchiveQuery::default()
    };
    loop {
        let Some(page) = stores
            .room_archive
            .query_room_archive(service, room, &query)
            .await?
        else {
            break;
        };
        for m in &page.items {
            let msg = parse_stored(&m.stanza, || {
                format!("room {room}@{service}: message {}", m.id)
            })?;
            let mut result = archive_result(&m.id, m.stamp, msg);
            confab_attr(&mut result, "nick", &m.nick);
            confab_attr(&mut result, "jid", &m.jid);
            o.element("      ", &result, NS_CONFAB).await?;
            n += 1;
        }
        match page.items.last() {
            Some(last) if !page.complete => query.after = Some(last.id.clone()),
            _ => break,
        }
    }
    o.push("    </room-archive>\n").await?;
    Ok(n)
}

/// An XEP-0313 result as XEP-0227 §5.10 shows it: the id, the stamp, the message.
fn archive_result(id: &str, stamp: i64, msg: Element) -> Element {
    Element::new("result", NS_MAM2).attr("id", id).child(
        Element::new("forwarded", NS_FORWARD)
            .child(Element::new("delay", NS_DELAY).attr("stamp", format_micros(stamp)))
            .child(msg),
    )
}

/// The other party of an archived message as the archive records it when nothing says
/// otherwise: the recipient of what the account sent, the sender of what it received.
pub(super) fn derived_with(result: &Element, account: &str) -> Option<String> {
    let msg = result
        .get_child("forwarded", NS_FORWARD)?
        .elements()
        .find(|e| e.name == "message")?;
    let bare = |j: &str| j.split('/').next().unwrap_or(j).to_string();
    let from = msg.get_attr("from");
    if from.map(bare).as_deref() == Some(account) {
        msg.get_attr("to").map(str::to_string)
    } else {
        from.map(str::to_string)
    }
}

/// An item that exists only for a pending request but has more state than the request: not
/// part of the roster clients see, so marked as such.
fn hidden_state(item: &RosterItem) -> bool {
    !item.in_roster
        && (item.name.is_some()
            || item.subscription != Subscription::None
            || item.ask
            || item.approved
            || !item.groups.is_empty())
}

fn roster_item(item: &RosterItem) -> Element {
    let mut el = Element::new("item", NS_ROSTER).attr("jid", item.jid.clone());
    if let Some(n) = &item.name {
        el.set_attr("name", n.clone());
    }
    el.set_attr("subscription", item.subscription.as_str());
    if item.ask {
        el.set_attr("ask", "subscribe");
    }
    if item.approved {
        el.set_attr("approved", "true");
    }
    if !item.in_roster {
        confab_attr(&mut el, "hidden", "true");
    }
    for g in &item.groups {
        el.push_child(Element::new("group", NS_ROSTER).text(g.clone()));
    }
    el
}
