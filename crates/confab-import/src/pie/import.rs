//! `confabd import`: reads XEP-0227 documents (Confab's, Prosody's, ejabberd's) into the
//! stores. Each user is imported whole or not at all: the account is created, its data
//! written, and on any failure the account is deleted again (which deletes everything
//! written for it) and the failure reported; the import goes on with the next user.
//! Input that cannot be read on (not well-formed, over a limit) stops the import there,
//! and the report says which users were imported before.

use super::export::derived_with;
use super::reader::{Location, PieEvent, PieReader, ReadError};
use super::*;
use base64::Engine;
use confab_proto::ns;
use confab_proto::sasl::{ScramCredentials, ScramHash};
use confab_proto::xml::Element;
use confab_store::archive::MAX_BATCH;
use confab_store::{ArchiveQuery, ArchivedMessage, RoomMessage, RosterItem, Stores, Subscription};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The domains served here: users of other hosts are not imported.
    pub domains: Vec<String>,
    /// The SCRAM iteration count for accounts exported with a plaintext password.
    pub iterations: u32,
    pub limits: Limits,
    /// Archived messages written per transaction (at most `archive::MAX_BATCH`, which is
    /// also the default); memory holds one batch.
    pub archive_batch: usize,
}

impl ImportOptions {
    /// Defaults for these served domains and SCRAM iteration count.
    pub fn new(domains: Vec<String>, iterations: u32) -> ImportOptions {
        ImportOptions {
            domains,
            iterations,
            limits: Limits::default(),
            archive_batch: MAX_BATCH,
        }
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Users imported with all their data (bare JIDs, in document order).
    pub imported: Vec<String>,
    /// Users (or hosts, rooms) not imported, and why; nothing of them was kept.
    pub failed: Vec<(String, String)>,
    /// Data that was not imported (elements Confab does not know, documents kept because
    /// the target already had them), each naming where it was.
    pub ignored: Vec<String>,
    /// How many more were ignored beyond the first `MAX_IGNORED` listed.
    pub ignored_more: u64,
    pub archived_messages: u64,
    pub offline_messages: u64,
    pub host_documents: u64,
    pub room_messages: u64,
}

/// Most entries `ImportReport::ignored` lists; the rest are counted.
pub const MAX_IGNORED: usize = 1000;

/// An import that stopped before the end of its input.
#[derive(Debug, thiserror::Error)]
#[error("{why}")]
pub struct ImportError {
    pub why: String,
    /// What was imported before it stopped (the user being read then was rolled back).
    pub report: ImportReport,
}

/// Reads each file in turn (a file may include others) into `stores`.
pub async fn import(
    stores: &Stores,
    files: &[PathBuf],
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let mut im = Importer {
        stores,
        opts,
        report: ImportReport::default(),
        host: None,
        user: None,
        room: None,
    };
    for file in files {
        let reader = PieReader::open(file, opts.limits.clone()).await;
        let result = match reader {
            Ok(r) => im.read(r).await,
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = result {
            if let Some(u) = im.user.take() {
                im.rollback(u, "the import stopped while reading this user".into())
                    .await;
            }
            return Err(ImportError {
                why,
                report: im.report,
            });
        }
    }
    im.refresh_statistics().await;
    Ok(im.report)
}

/// Reads one document from `input` (called `name` in messages) into `stores`, as
/// `import` does with files; includes are not followed.
pub async fn import_stream(
    stores: &Stores,
    input: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    name: &str,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let mut im = Importer {
        stores,
        opts,
        report: ImportReport::default(),
        host: None,
        user: None,
        room: None,
    };
    let reader = PieReader::from_input(input, name, opts.limits.clone());
    if let Err(why) = im.read(reader).await {
        if let Some(u) = im.user.take() {
            im.rollback(u, "the import stopped while reading this user".into())
                .await;
        }
        return Err(ImportError {
            why,
            report: im.report,
        });
    }
    im.refresh_statistics().await;
    Ok(im.report)
}

struct Host {
    jid: String,
    /// Why nothing of this host is imported.
    refused: Option<String>,
}

struct User {
    host: String,
    name: String,
    jid: String,
    password: Option<String>,
    creds: Vec<ScramCredentials>,
    created: bool,
    /// Whether the account has the credentials in `creds` (else they are set at the end).
    creds_stored: bool,
    roster: BTreeMap<String, RosterItem>,
    data: Vec<(String, String, String)>,
    offline: Vec<(String, i64)>,
    batch: Vec<ArchivedMessage>,
    archived: u64,
    /// Set once something of this user failed: the rest of it is skipped.
    failed: Option<String>,
    /// What the elements read so far hold (bounded by `Limits::max_user_memory`).
    held: usize,
}

struct Room {
    service: String,
    room: String,
    skip: bool,
    count: u64,
}

struct Importer<'a> {
    stores: &'a Stores,
    opts: &'a ImportOptions,
    report: ImportReport,
    host: Option<Host>,
    user: Option<User>,
    room: Option<Room>,
}

fn b64(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn attr(attrs: &[confab_proto::xml::Attr], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|a| a.ns.is_empty() && a.name == name)
        .map(|a| a.value.clone())
}

fn describe(el: &Element) -> String {
    format!("<{} xmlns='{}'/>", el.name, el.ns)
}

impl Importer<'_> {
    async fn read(&mut self, mut r: PieReader) -> Result<(), String> {
        loop {
            self.bound_ignored();
            let ev = r.next().await.map_err(|e: ReadError| e.to_string())?;
            let at = r.location();
            match ev {
                PieEvent::End => {
                    self.bound_ignored();
                    return Ok(());
                }
                PieEvent::HostStart(attrs) => self.host_start(attrs.as_slice()),
                PieEvent::HostEnd => self.host = None,
                PieEvent::UserStart(attrs) => self.user_start(attrs.as_slice(), &at).await,
                PieEvent::UserEnd => {
                    if let Some(u) = self.user.take() {
                        self.user_end(u).await;
                    }
                }
                PieEvent::Child(el) => self.child(el, &at).await,
                PieEvent::ContainerStart(el) => self.container_start(&el, &at).await,
                PieEvent::Item(el) => self.item(el, &at).await,
                PieEvent::ContainerEnd => {
                    if let Some(room) = self.room.take() {
                        self.report.room_messages += room.count;
                    }
                }
            }
        }
    }

    /// After archives were imported, the database's planner statistics are refreshed, so
    /// the first queries do not plan with an empty table's (PostgreSQL).
    async fn refresh_statistics(&mut self) {
        if self.report.archived_messages == 0 {
            return;
        }
        if let Err(e) = self.stores.archive.refresh_archive_statistics().await {
            // The data is imported; only query plans may be slow until the database
            // analyzes the table itself.
            self.report
                .ignored
                .push(format!("refreshing the archive's statistics failed: {e}"));
        }
    }

    /// Keeps the list of ignored data at `MAX_IGNORED` entries, counting the rest.
    fn bound_ignored(&mut self) {
        if self.report.ignored.len() > MAX_IGNORED {
            let more = self.report.ignored.split_off(MAX_IGNORED);
            self.report.ignored_more += more.len() as u64;
        }
    }

    fn host_start(&mut self, attrs: &[confab_proto::xml::Attr]) {
        let jid = attr(attrs, "jid").unwrap_or_default();
        let refused = match jid::BareJid::new(&jid) {
            Ok(b) if b.node().is_none() && b.as_str() == jid => None,
            Ok(b) if b.node().is_none() => Some(format!(
                "the host is not written in its normalised form ('{b}')"
            )),
            _ => Some("not a valid domain".to_string()),
        };
        if let Some(why) = &refused {
            self.report
                .failed
                .push((format!("host '{jid}'"), why.clone()));
        }
        self.host = Some(Host { jid, refused });
    }

    async fn user_start(&mut self, attrs: &[confab_proto::xml::Attr], at: &Location) {
        let Some(host) = &self.host else { return };
        let name = attr(attrs, "name").unwrap_or_default();
        let jid = format!("{name}@{}", host.jid);
        let mut failed = host.refused.clone().map(|_| String::new());
        if failed.is_none() && !self.opts.domains.contains(&host.jid) {
            failed = Some(format!(
                "{} is not served here (add it to [server] domains)",
                host.jid
            ));
        }
        if failed.is_none() {
            failed = match jid::BareJid::new(&jid) {
                Ok(b) if b.node().map(|n| n.as_str()) == Some(name.as_str()) => None,
                Ok(_) => Some(format!("user name '{name}' is not in its normalised form")),
                Err(e) => Some(format!("user name '{name}' is not a valid JID node: {e}")),
            };
        }
        if failed.is_none() {
            match self.stores.accounts.account_exists(&host.jid, &name).await {
                Ok(true) => {
                    failed =
                        Some("the account exists here already; nothing of it was changed".into())
                }
                Ok(false) => {}
                Err(e) => failed = Some(format!("storage: {e}")),
            }
        }
        let failed = failed.map(|f| {
            if f.is_empty() {
                f
            } else {
                format!("{f} ({at})")
            }
        });
        self.user = Some(User {
            host: host.jid.clone(),
            name,
            jid,
            password: attr(attrs, "password").filter(|p| !p.is_empty()),
            creds: Vec::new(),
            created: false,
            creds_stored: false,
            roster: BTreeMap::new(),
            data: Vec::new(),
            offline: Vec::new(),
            batch: Vec::new(),
            archived: 0,
            failed,
            held: 0,
        });
    }

    async fn child(&mut self, el: Element, at: &Location) {
        if let Some(u) = &mut self.user {
            if u.failed.is_some() {
                return;
            }
            // Each element is bounded by the reader; their number is bounded here.
            u.held = u.held.saturating_add(el.to_xml("").len());
            if u.held > self.opts.limits.max_user_memory {
                u.failed = Some(format!(
                    "more than {} bytes of data for one user (--max-user-memory) ({at})",
                    self.opts.limits.max_user_memory
                ));
                return;
            }
            if let Err(why) = user_child(u, el, &mut self.report.ignored, at) {
                u.failed = Some(format!("{why} ({at})"));
            }
            return;
        }
        match &self.host {
            Some(h) if h.refused.is_none() && el.is("data", NS_CONFAB) => {
                let (Some(kind), Some(key)) = (el.get_attr("kind"), el.get_attr("key")) else {
                    self.report.ignored.push(format!(
                        "<data/> without kind or key in host {} ({at})",
                        h.jid
                    ));
                    return;
                };
                let value = el.text_content();
                let host = h.jid.clone();
                match self.stores.data.get_host_data(&host, kind, key).await {
                    Ok(Some(_)) => self.report.ignored.push(format!(
                        "{kind} document '{key}' of {host}: one is stored here already, kept ({at})"
                    )),
                    Ok(None) => match self
                        .stores
                        .data
                        .set_host_data(&host, kind, key, &value)
                        .await
                    {
                        Ok(()) => self.report.host_documents += 1,
                        Err(e) => self.report.failed.push((
                            format!("{kind} document '{key}' of {host}"),
                            format!("storage: {e}"),
                        )),
                    },
                    Err(e) => self.report.failed.push((
                        format!("{kind} document '{key}' of {host}"),
                        format!("storage: {e}"),
                    )),
                }
            }
            Some(h) if h.refused.is_some() => {}
            Some(h) => {
                self.report
                    .ignored
                    .push(format!("{} in host {} ({at})", describe(&el), h.jid))
            }
            None => self
                .report
                .ignored
                .push(format!("{} in <server-data/> ({at})", describe(&el))),
        }
    }

    async fn container_start(&mut self, el: &Element, at: &Location) {
        if self.user.is_some() {
            // A user's archive: its items arrive one by one.
            return;
        }
        let Some(h) = &self.host else { return };
        let room = el.get_attr("room").unwrap_or_default().to_string();
        let mut skip = h.refused.is_some();
        if !skip {
            let probe = ArchiveQuery {
                max: 1,
                ..ArchiveQuery::default()
            };
            match self
                .stores
                .room_archive
                .query_room_archive(&h.jid, &room, &probe)
                .await
            {
                Ok(Some(p)) if p.items.is_empty() => {}
                Ok(_) => {
                    skip = true;
                    self.report.failed.push((
                        format!("archive of room {room}@{}", h.jid),
                        format!("the room has an archive here already; kept ({at})"),
                    ));
                }
                Err(e) => {
                    skip = true;
                    self.report.failed.push((
                        format!("archive of room {room}@{}", h.jid),
                        format!("storage: {e}"),
                    ));
                }
            }
        }
        self.room = Some(Room {
            service: h.jid.clone(),
            room,
            skip,
            count: 0,
        });
    }

    async fn item(&mut self, el: Element, at: &Location) {
        if let Some(u) = &mut self.user {
            if u.failed.is_some() {
                return;
            }
            match archived(&el, &u.jid) {
                Ok(m) => u.batch.push(m),
                Err(why) => {
                    u.failed = Some(format!("archive: {why} ({at})"));
                    return;
                }
            }
            if u.batch.len() >= self.opts.archive_batch.clamp(1, MAX_BATCH) {
                if let Err(why) = self.flush_archive().await {
                    if let Some(u) = &mut self.user {
                        u.failed = Some(why);
                    }
                }
            }
            return;
        }
        let Some(room) = &mut self.room else { return };
        if room.skip {
            return;
        }
        let nick = el.get_attr_ns(NS_CONFAB, "nick").map(str::to_string);
        let jid = el.get_attr_ns(NS_CONFAB, "jid").map(str::to_string);
        let parsed = archived(&el, "").map_err(|e| format!("{e} ({at})"));
        let result = match (nick, jid, parsed) {
            (Some(nick), Some(jid), Ok(m)) => {
                let msg = RoomMessage {
                    id: m.id,
                    nick,
                    jid,
                    stamp: m.stamp,
                    stanza: m.stanza,
                };
                self.stores
                    .room_archive
                    .append_room_message(&room.service, &room.room, &msg)
                    .await
                    .map_err(|e| format!("storage: {e}"))
            }
            (_, _, Err(e)) => Err(e),
            _ => Err(format!("a room message without its nick or sender ({at})")),
        };
        match result {
            Ok(()) => room.count += 1,
            Err(why) => {
                room.skip = true;
                self.report.failed.push((
                    format!("archive of room {}@{}", room.room, room.service),
                    format!("{why}; the {} messages before it were imported", room.count),
                ));
            }
        }
    }

    /// Creates the account if it is not yet (with the credentials known so far).
    async fn ensure_created(&mut self) -> Result<(), String> {
        let Some(u) = &mut self.user else {
            return Ok(());
        };
        if u.created {
            return Ok(());
        }
        if u.creds.is_empty() {
            if let Some(pw) = u.password.take() {
                u.creds = password_credentials(&pw, self.opts.iterations).await?;
            }
        }
        self.stores
            .accounts
            .create_account(&u.host, &u.name, &u.creds)
            .await
            .map_err(|e| format!("creating the account: {e}"))?;
        u.created = true;
        u.creds_stored = !u.creds.is_empty();
        Ok(())
    }

    async fn flush_archive(&mut self) -> Result<(), String> {
        self.ensure_created().await?;
        let Some(u) = &mut self.user else {
            return Ok(());
        };
        if u.batch.is_empty() {
            return Ok(());
        }
        self.stores
            .archive
            .append_archive_batch(&u.host, &u.name, &u.batch)
            .await
            .map_err(|e| format!("archive: {e}"))?;
        u.archived += u.batch.len() as u64;
        u.batch.clear();
        Ok(())
    }

    async fn user_end(&mut self, u: User) {
        if let Some(why) = u.failed.clone() {
            if !why.is_empty() {
                self.rollback(u, why).await;
            }
            return;
        }
        self.user = Some(u);
        let result = self.finish_user().await;
        let Some(u) = self.user.take() else { return };
        match result {
            Ok(()) => {
                self.report.archived_messages += u.archived;
                self.report.offline_messages += u.offline.len() as u64;
                self.report.imported.push(u.jid);
            }
            Err(why) => self.rollback(u, why).await,
        }
    }

    async fn finish_user(&mut self) -> Result<(), String> {
        self.flush_archive().await?;
        let stores = self.stores;
        let Some(u) = &mut self.user else {
            return Ok(());
        };
        if u.creds.is_empty() {
            if let Some(pw) = u.password.take() {
                u.creds = password_credentials(&pw, self.opts.iterations).await?;
            }
        }
        if u.creds.is_empty() {
            return Err("neither a password nor SCRAM credentials: nobody could log in".into());
        }
        if !u.creds_stored {
            stores
                .accounts
                .set_credentials(&u.host, &u.name, &u.creds)
                .await
                .map_err(|e| format!("credentials: {e}"))?;
        }
        let (h, n) = (u.host.as_str(), u.name.as_str());
        for item in u.roster.values() {
            stores
                .roster
                .put_roster_item(h, n, item)
                .await
                .map_err(|e| format!("roster item {}: {e}", item.jid))?;
        }
        for (kind, key, value) in &u.data {
            stores
                .data
                .set_account_data(h, n, kind, key, value)
                .await
                .map_err(|e| format!("{kind} document: {e}"))?;
        }
        for (stanza, stamp) in &u.offline {
            stores
                .offline
                .push_offline(h, n, stanza, *stamp, usize::MAX)
                .await
                .map_err(|e| format!("offline message: {e}"))?;
        }
        Ok(())
    }

    /// Deletes what was written of `u` and reports why it was not imported.
    async fn rollback(&mut self, u: User, why: String) {
        let mut why = why;
        if u.created {
            if let Err(e) = self.stores.accounts.delete_account(&u.host, &u.name).await {
                why = format!("{why}; removing what was written failed too: {e}");
            }
        }
        self.report.failed.push((u.jid, why));
    }
}

/// Credentials from what an export gives as the password: ejabberd's form of SCRAM keys
/// (`scram:StoredKey,ServerKey,Salt,Iterations`, base64), or a plaintext password, from
/// which keys are derived (on the blocking pool: PBKDF2 is slow by design).
async fn password_credentials(pw: &str, iterations: u32) -> Result<Vec<ScramCredentials>, String> {
    if let Some(rest) = pw.strip_prefix("scram:") {
        return ejabberd_scram(rest).map(|c| vec![c]);
    }
    let pw = pw.to_string();
    tokio::task::spawn_blocking(move || {
        [ScramHash::Sha1, ScramHash::Sha256]
            .into_iter()
            .map(|h| {
                ScramCredentials::new_random(h, &pw, iterations)
                    .map_err(|_| "the password is not valid (SASLprep refuses it)".to_string())
            })
            .collect()
    })
    .await
    .map_err(|e| format!("deriving keys: {e}"))?
}

fn ejabberd_scram(s: &str) -> Result<ScramCredentials, String> {
    let bad = || "an ejabberd SCRAM password that does not parse".to_string();
    let parts: Vec<&str> = s.split(',').collect();
    let [stored, server, salt, iter] = parts.as_slice() else {
        return Err(bad());
    };
    let stored_key = b64(stored).ok_or_else(bad)?;
    let server_key = b64(server).ok_or_else(bad)?;
    let salt = b64(salt).ok_or_else(bad)?;
    let iterations: u32 = iter.parse().map_err(|_| bad())?;
    let hash = match stored_key.len() {
        20 => ScramHash::Sha1,
        32 => ScramHash::Sha256,
        _ => return Err(bad()),
    };
    check_creds(ScramCredentials {
        hash,
        iterations,
        salt,
        stored_key,
        server_key,
    })
}

fn check_creds(c: ScramCredentials) -> Result<ScramCredentials, String> {
    let n = c.hash.output_len();
    if c.iterations == 0 || c.salt.is_empty() || c.stored_key.len() != n || c.server_key.len() != n
    {
        return Err(format!(
            "SCRAM-{} credentials with keys of the wrong size, no salt or no iterations",
            c.hash.name()
        ));
    }
    Ok(c)
}

/// `<scram-credentials/>` (XEP-0227 §4.2).
fn scram(el: &Element) -> Result<Option<ScramCredentials>, String> {
    let hash = match el.get_attr("mechanism") {
        Some("SCRAM-SHA-1") => ScramHash::Sha1,
        Some("SCRAM-SHA-256") => ScramHash::Sha256,
        // Other hashes (SHA-512, ...) Confab does not offer: skipped, others may do.
        _ => return Ok(None),
    };
    let text = |name: &str| {
        el.get_child(name, NS_SCRAM)
            .map(|c| c.text_content().trim().to_string())
            .ok_or_else(|| format!("<scram-credentials/> without <{name}/>"))
    };
    let iterations = text("iter-count")?
        .parse::<u32>()
        .map_err(|_| "<iter-count/> is not a positive number".to_string())?;
    let key = |name: &str| -> Result<Vec<u8>, String> {
        b64(&text(name)?).ok_or_else(|| format!("<{name}/> is not base64"))
    };
    let (mut salt, mut stored_key, mut server_key) =
        (key("salt")?, key("stored-key")?, key("server-key")?);
    // ejabberd (23.01 in Debian 12) base64-encodes values it already keeps in base64:
    // keys that decode to base64 text of the right size are decoded once more, and so is
    // the salt of the same element.
    let n = hash.output_len();
    let again = |v: &[u8]| std::str::from_utf8(v).ok().and_then(b64);
    if stored_key.len() != n {
        if let (Some(st), Some(sv), Some(sa)) =
            (again(&stored_key), again(&server_key), again(&salt))
        {
            if st.len() == n && sv.len() == n {
                (salt, stored_key, server_key) = (sa, st, sv);
            }
        }
    }
    check_creds(ScramCredentials {
        hash,
        iterations,
        salt,
        stored_key,
        server_key,
    })
    .map(Some)
}

fn bare_jid(s: &str, what: &str) -> Result<String, String> {
    match jid::BareJid::new(s) {
        Ok(b) => Ok(b.to_string()),
        Err(e) => Err(format!("{what} '{s}' is not a valid bare JID: {e}")),
    }
}

/// Files one child of `<user/>` into `u`; `ignored` gets what Confab does not keep.
fn user_child(
    u: &mut User,
    el: Element,
    ignored: &mut Vec<String>,
    at: &Location,
) -> Result<(), String> {
    use confab_modules::{blocking, private, vcard};
    let ns_ = el.ns.to_string();
    match (el.name.as_str(), ns_.as_str()) {
        ("scram-credentials", NS_SCRAM) => {
            if let Some(c) = scram(&el)? {
                if u.creds.iter().any(|o| o.hash == c.hash) {
                    return Err(format!("two sets of SCRAM-{} credentials", c.hash.name()));
                }
                u.creds.push(c);
            } else {
                ignored.push(format!(
                    "{} credentials of {} (Confab offers SCRAM-SHA-1 and SCRAM-SHA-256) ({at})",
                    el.get_attr("mechanism").unwrap_or("?"),
                    u.jid
                ));
            }
        }
        ("query", NS_ROSTER) => {
            for item in el.elements() {
                if !item.is("item", NS_ROSTER) {
                    ignored.push(format!(
                        "{} in the roster of {} ({at})",
                        describe(item),
                        u.jid
                    ));
                    continue;
                }
                let jid = bare_jid(item.get_attr("jid").unwrap_or_default(), "roster item")?;
                let e = u
                    .roster
                    .entry(jid.clone())
                    .or_insert_with(|| RosterItem::new(&jid));
                e.in_roster = item.get_attr_ns(NS_CONFAB, "hidden") != Some("true");
                e.name = item.get_attr("name").map(str::to_string);
                e.subscription = match item.get_attr("subscription") {
                    None => Subscription::None,
                    Some(s) => Subscription::from_name(s)
                        .ok_or_else(|| format!("roster item {jid}: subscription '{s}'"))?,
                };
                e.ask = item.get_attr("ask") == Some("subscribe");
                e.approved = matches!(item.get_attr("approved"), Some("true" | "1"));
                e.groups.clear();
                for g in item.elements().filter(|g| g.is("group", NS_ROSTER)) {
                    let name = g.text_content();
                    // RFC 6121 §2.3.3: no empty or repeated group names.
                    if name.is_empty() || e.groups.contains(&name) {
                        ignored.push(format!(
                            "group '{name}' of roster item {jid} of {} (empty or repeated) ({at})",
                            u.jid
                        ));
                        continue;
                    }
                    e.groups.push(name);
                }
            }
        }
        // Prosody 0.12 writes these in the pie namespace rather than jabber:client.
        ("presence", ns::CLIENT | NS) if el.get_attr("type") == Some("subscribe") => {
            let mut el = el;
            into_client_ns(&mut el);
            let from = el.get_attr("from").unwrap_or_default();
            let from = jid::Jid::new(from)
                .map(|j| j.to_bare().to_string())
                .map_err(|e| format!("subscription request from '{from}': not a valid JID: {e}"))?;
            let e = u
                .roster
                .entry(from.clone())
                .or_insert_with(|| RosterItem::new(&from));
            e.pending_in = Some(el.to_xml(ns::CLIENT));
        }
        ("vCard", NS_VCARD) => {
            let hash = confab_modules::vcard::photo_hash(&el)
                .map_err(|_| "the vCard's PHOTO is not base64".to_string())?
                .unwrap_or_default();
            u.data.push((
                vcard::KIND.into(),
                vcard::KEY_VCARD.into(),
                el.to_xml(ns::CLIENT),
            ));
            u.data
                .push((vcard::KIND.into(), vcard::KEY_AVATAR.into(), hash));
        }
        ("query", NS_PRIVATE) => {
            for c in el.elements() {
                u.data.push((
                    private::KIND.into(),
                    private::key_of(c),
                    c.to_xml(ns::CLIENT),
                ));
            }
        }
        ("blocklist", NS_BLOCKING) => {
            for c in el.elements().filter(|c| c.is("item", NS_BLOCKING)) {
                let jid = c.get_attr("jid").unwrap_or_default();
                // A block list holds bare, full or domain JIDs (XEP-0191 §3.2).
                let norm = jid::Jid::new(jid)
                    .map_err(|e| format!("blocked JID '{jid}' is not valid: {e}"))?;
                u.data
                    .push((blocking::KIND.into(), norm.to_string(), String::new()));
            }
        }
        ("data", NS_CONFAB) => {
            let (Some(kind), Some(key)) = (el.get_attr("kind"), el.get_attr("key")) else {
                return Err("<data/> without kind or key".into());
            };
            u.data
                .push((kind.to_string(), key.to_string(), el.text_content()));
        }
        ("offline-messages", NS) => {
            for m in el.elements() {
                if !m.is("message", ns::CLIENT) {
                    ignored.push(format!(
                        "{} in the offline messages of {} ({at})",
                        describe(m),
                        u.jid
                    ));
                    continue;
                }
                let mut m = m.clone();
                // The stamp the export added (from the host, as the XEP's example shows) is
                // when it was stored; any other delay is part of the message.
                let mut stamp = None;
                if let Some(confab_proto::xml::Node::Element(last)) = m.children.last() {
                    if last.is("delay", NS_DELAY) && last.get_attr("from") == Some(u.host.as_str())
                    {
                        stamp = last
                            .get_attr("stamp")
                            .and_then(confab_proto::datetime::parse_datetime);
                        if stamp.is_some() && last.text_content() == OFFLINE_DELAY_TEXT {
                            m.children.pop();
                        }
                    }
                }
                let stamp = stamp
                    .or_else(|| {
                        m.get_child("delay", NS_DELAY)
                            .and_then(|d| d.get_attr("stamp"))
                            .and_then(confab_proto::datetime::parse_datetime)
                    })
                    .unwrap_or_else(now_secs);
                u.offline.push((m.to_xml(ns::CLIENT), stamp));
            }
        }
        _ => {
            let what = match (el.name.as_str(), ns_.as_str()) {
                ("query", "jabber:iq:privacy") => {
                    "privacy lists (XEP-0016; Confab has blocking, XEP-0191)".to_string()
                }
                (
                    _,
                    "http://jabber.org/protocol/pubsub" | "http://jabber.org/protocol/pubsub#owner",
                ) => "PEP nodes (Confab has no PubSub yet)".to_string(),
                _ => describe(&el),
            };
            ignored.push(format!("{what} of {} ({at})", u.jid));
        }
    }
    Ok(())
}

/// Moves an element written in the pie namespace, and its children that inherited it,
/// into jabber:client (recursion bounded by the reader's depth limit).
fn into_client_ns(el: &mut Element) {
    if *el.ns == *NS {
        el.ns = confab_proto::xml::namespace(ns::CLIENT);
        for c in el.children.iter_mut() {
            if let confab_proto::xml::Node::Element(c) = c {
                into_client_ns(c);
            }
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An archived message from an XEP-0313 `<result/>` (XEP-0227 §5.10).
fn archived(result: &Element, account: &str) -> Result<ArchivedMessage, String> {
    if !result.is("result", NS_MAM2) {
        return Err(format!(
            "{} where a <result xmlns='{NS_MAM2}'/> belongs",
            describe(result)
        ));
    }
    let id = result
        .get_attr("id")
        .filter(|i| !i.is_empty())
        .ok_or("a result without an id")?;
    let fwd = result
        .get_child("forwarded", NS_FORWARD)
        .ok_or_else(|| format!("result {id} without <forwarded/>"))?;
    let stamp = fwd
        .get_child("delay", NS_DELAY)
        .and_then(|d| d.get_attr("stamp"))
        .and_then(parse_micros)
        .ok_or_else(|| format!("result {id} without a valid delay stamp"))?;
    let msg = fwd
        .get_child("message", ns::CLIENT)
        .ok_or_else(|| format!("result {id} without a <message xmlns='jabber:client'/>"))?;
    let with = match result.get_attr_ns(NS_CONFAB, "with") {
        Some(w) => w.to_string(),
        None => derived_with(result, account).unwrap_or_default(),
    };
    Ok(ArchivedMessage {
        id: id.to_string(),
        with,
        stamp,
        stanza: msg.to_xml(ns::CLIENT),
    })
}
