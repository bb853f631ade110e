//! Multi-User Chat (XEP-0045) as a module: one service domain per served domain
//! (`conference.example.org`), registered with `Registry::service`, so every stanza to the
//! service or to a room or occupant JID under it arrives here.
//!
//! - `config.rs`: `[muc]`.
//! - `payloads.rs`: typed `muc`, `muc#user`, `muc#admin`, `muc#owner` payloads.
//! - `room.rs`: one room and every action on it, without I/O.
//! - `forms.rs`: the configuration form and disco answers.
//! - this file: the service (dispatch, the room table, delivery, persistence, disco, the
//!   room archive with its MAM queries and XEP-0425 moderation, XEP-0421 occupant ids) and
//!   the lifecycle listener (loading persistent rooms, occupants whose session ended,
//!   shutdown).
//!
//! Each room is behind its own async mutex, held while its stanzas are handed to the
//! occupants' sessions: every occupant sees one room's events in one order, and rooms
//! never wait for each other. A message's archive row is queued under that lock, so the
//! archive's order is the room's, and written by one task (`archive_writer.rs`) that every
//! reader of an archive waits for first, so every stanza-id a client saw is found.

mod archive_writer;
pub mod avatar;
pub mod config;
pub mod forms;
pub mod payloads;
pub mod room;

use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::{BareJid, FullJid, Jid};
use confab_proto::ns;
use confab_proto::parser::parse_fragment;
use confab_proto::payloads::disco::{DiscoItem, DiscoItems};
use confab_proto::payloads::mam;
use confab_proto::stanza::{IqType, Stanza, StanzaKind};
use confab_proto::xml::Element;
use confab_server::module::{LifecycleListener, Module, ModuleStore, Registry, Service, Timer};
use confab_server::session::SessionInfo;
use confab_server::{router, ServerCtx};
use confab_store::archive::ArchiveQuery;
use confab_store::RoomMessage;
use config::{Creation, MucConfig};
use hmac::{Hmac, Mac};
use payloads::{
    AdminQuery, Join, OwnerQuery, UserX, NS_ADMIN, NS_MODERATE, NS_MUC, NS_OWNER, NS_RETRACT,
    NS_USER,
};
use room::{Limits, Out, Room, RoomConfig, Subject};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OnceCell, OwnedMutexGuard};

/// The module store kind: one key per persistent room (`room:<node>`) per service domain.
const KIND: &str = "muc";
const ROOM_KEY: &str = "room:";
/// The module store kind of the service's secrets, apart from the rooms; the key of each
/// service domain's secret for XEP-0421 occupant ids.
const KEYS_KIND: &str = "muc-keys";
const OCCUPANT_ID_KEY: &str = "occupant-id";
/// Most rooms listed in the service's disco#items.
const MAX_LISTED_ROOMS: usize = 1000;
/// Archive rows queued for writing at most; past it a room waits for the database.
const ARCHIVE_QUEUE: usize = 4096;
/// Rows deleted per statement by the retention sweep, and statements per hourly tick:
/// bounded work per tick, the rest waits for the next one.
const EXPIRE_BATCH: usize = 1000;
const EXPIRE_BATCHES_PER_TICK: usize = 100;

/// The MUC module, for `confabd`'s module list.
pub fn all() -> Vec<Arc<dyn Module>> {
    vec![Arc::new(Muc)]
}

pub struct Muc;

impl Module for Muc {
    fn name(&self) -> &'static str {
        "muc"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let cfg: MucConfig = reg.section("muc");
        // A room's vCard comes in one stanza and goes out in one.
        if avatar::max_vcard_xml(cfg.max_avatar_bytes) + 1024 > reg.config().limits.max_stanza_size
        {
            reg.error(
                "[muc] max_avatar_bytes: a room vCard that large (twice it plus 16 KiB of XML) \
                 does not fit in limits.max_stanza_size",
            );
        }
        let domains: Vec<String> = reg
            .config()
            .server
            .domains
            .iter()
            .map(|d| format!("{}.{d}", cfg.domain_prefix))
            .collect();
        let shared = Arc::new(Shared::new(
            cfg,
            domains.clone(),
            reg.store(KIND),
            reg.store(KEYS_KIND),
        ));
        for d in &domains {
            reg.service(
                d,
                Some(&shared.cfg.name),
                Arc::new(MucService {
                    shared: shared.clone(),
                }),
            );
        }
        reg.admin_view(
            "rooms",
            Arc::new(RoomsView {
                shared: shared.clone(),
            }),
        );
        if shared.cfg.mam_retention_days > 0 {
            reg.timer(
                std::time::Duration::from_secs(3600),
                Arc::new(ArchiveRetention {
                    days: shared.cfg.mam_retention_days,
                }),
            );
        }
        reg.lifecycle(Arc::new(Lifecycle { shared }));
    }
}

/// `[muc] mam_retention_days`: deletes what rooms archived before the cut, in bounded
/// batches.
struct ArchiveRetention {
    days: u32,
}

#[async_trait]
impl Timer for ArchiveRetention {
    async fn tick(&self, ctx: &ServerCtx) {
        expire_archives(ctx, self.days).await;
    }
}

/// One retention sweep: at most `EXPIRE_BATCHES_PER_TICK` batches.
async fn expire_archives(ctx: &ServerCtx, days: u32) {
    {
        let cutoff = unix_micros().saturating_sub(i64::from(days) * 86_400 * 1_000_000);
        let mut deleted = 0;
        for _ in 0..EXPIRE_BATCHES_PER_TICK {
            match ctx
                .stores
                .room_archive
                .expire_room_archives(cutoff, EXPIRE_BATCH)
                .await
            {
                Ok(n) => {
                    deleted += n;
                    if (n as usize) < EXPIRE_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "expiring room archives failed");
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "expired room archive messages");
        }
    }
}

type RoomHandle = Arc<AsyncMutex<Room>>;

struct Shared {
    cfg: MucConfig,
    limits: Limits,
    admins: Vec<BareJid>,
    domains: Vec<String>,
    store: ModuleStore,
    keys_store: ModuleStore,
    rooms: Mutex<HashMap<BareJid, RoomHandle>>,
    /// Which rooms each real JID is in, so an ended session leaves them.
    joined: Mutex<HashMap<FullJid, HashSet<BareJid>>>,
    /// Rooms each user created that still exist (`max_rooms_per_user`).
    created: Mutex<HashMap<BareJid, usize>>,
    /// Per service domain, the secret occupant ids are made with (kept in the store, so
    /// an occupant's id survives restarts).
    occupant_keys: Mutex<HashMap<String, Vec<u8>>>,
    loaded: OnceCell<()>,
    writer: archive_writer::RoomArchiveWriter,
}

/// A persistent room as stored (JSON in the module store).
#[derive(Serialize, Deserialize)]
struct StoredRoom {
    config: RoomConfig,
    affiliations: BTreeMap<String, payloads::Affiliation>,
    subject: Option<Subject>,
    creator: Option<String>,
    /// The room's vCard (XEP-0486) as XML; absent in rooms stored before avatars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vcard: Option<String>,
}

/// A persistent room as the service stores it, for importers (`confabd import --from
/// openfire`): the host-data kind, key and value to write under the service domain. The
/// service reads it at start like a room it saved itself.
pub fn stored_room(
    node: &str,
    config: room::RoomConfig,
    affiliations: BTreeMap<String, payloads::Affiliation>,
    subject: Option<room::Subject>,
) -> Result<(&'static str, String, String), String> {
    let stored = StoredRoom {
        config,
        affiliations,
        subject,
        creator: None,
        vcard: None,
    };
    let value = serde_json::to_string(&stored).map_err(|e| e.to_string())?;
    Ok((KIND, format!("{ROOM_KEY}{node}"), value))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn unix_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() < 32 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves plain data behind: go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn new(
        cfg: MucConfig,
        domains: Vec<String>,
        store: ModuleStore,
        keys_store: ModuleStore,
    ) -> Shared {
        let limits = Limits {
            max_occupants: cfg.max_occupants_per_room,
            max_affiliations: cfg.max_affiliations_per_room,
            max_sessions_per_nick: cfg.max_sessions_per_nick,
            history_max: cfg.history_max,
            history_max_bytes: cfg.history_max_bytes,
            message_rate: cfg.message_rate,
            message_burst: cfg.message_burst,
            max_avatar_bytes: cfg.max_avatar_bytes,
        };
        Shared {
            admins: cfg.admin_jids(),
            store,
            keys_store,
            cfg,
            limits,
            domains,
            rooms: Mutex::new(HashMap::new()),
            joined: Mutex::new(HashMap::new()),
            created: Mutex::new(HashMap::new()),
            occupant_keys: Mutex::new(HashMap::new()),
            loaded: OnceCell::new(),
            writer: archive_writer::RoomArchiveWriter::default(),
        }
    }

    async fn ensure_loaded(&self, ctx: &ServerCtx) {
        self.loaded.get_or_init(|| self.load(ctx)).await;
    }

    /// Reads every persistent room of every service domain.
    async fn load(&self, ctx: &ServerCtx) {
        for domain in &self.domains {
            let key = self.occupant_key(ctx, domain).await;
            lock(&self.occupant_keys).insert(domain.clone(), key);
            let rows = match self.store.list_host(ctx, domain).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, domain, "loading persistent rooms failed");
                    continue;
                }
            };
            for (key, value) in rows {
                let Some(node) = key.strip_prefix(ROOM_KEY) else {
                    continue;
                };
                let Ok(jid) = BareJid::new(&format!("{node}@{domain}")) else {
                    continue;
                };
                let stored: StoredRoom = match serde_json::from_str(&value) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, room = %jid, "stored room unreadable");
                        continue;
                    }
                };
                let affiliations = stored
                    .affiliations
                    .into_iter()
                    .filter_map(|(j, a)| BareJid::new(&j).ok().map(|j| (j, a)))
                    .collect();
                let creator = stored.creator.and_then(|c| BareJid::new(&c).ok());
                if let Some(c) = &creator {
                    *lock(&self.created).entry(c.clone()).or_default() += 1;
                }
                let mut room = Room::restored(
                    jid.clone(),
                    stored.config,
                    affiliations,
                    stored.subject,
                    creator,
                );
                if let Some(xml) = &stored.vcard {
                    let limits = ctx.config.limits.parser_limits();
                    room.vcard = avatar::RoomVcard::from_stored(xml, &limits);
                    if room.vcard.is_none() {
                        tracing::error!(room = %jid, "stored room vCard unreadable; serving none, keeping it stored");
                        room.vcard_unread = Some(xml.clone());
                    }
                }
                lock(&self.rooms).insert(jid, Arc::new(AsyncMutex::new(room)));
            }
        }
    }

    /// The domain's occupant-id secret, made and stored the first time.
    async fn occupant_key(&self, ctx: &ServerCtx, domain: &str) -> Vec<u8> {
        use rand::RngCore;
        match self.keys_store.get_host(ctx, domain, OCCUPANT_ID_KEY).await {
            Ok(Some(hex)) => {
                if let Some(k) = from_hex(&hex) {
                    return k;
                }
                tracing::error!(
                    domain,
                    "stored occupant-id secret unreadable; making a new one"
                );
            }
            Ok(None) => {}
            Err(e) => {
                // Ids will differ after a restart; still better than no service.
                tracing::error!(error = %e, domain, "reading the occupant-id secret failed");
                let mut k = vec![0u8; 32];
                rand::thread_rng().fill_bytes(&mut k);
                return k;
            }
        }
        let mut k = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        if let Err(e) = self
            .keys_store
            .set_host(ctx, domain, OCCUPANT_ID_KEY, &to_hex(&k))
            .await
        {
            tracing::error!(error = %e, domain, "storing the occupant-id secret failed");
        }
        k
    }

    /// XEP-0421: an HMAC of the room and the real bare JID, so it is stable per user and
    /// room, differs between rooms, and says nothing about the JID.
    fn occupant_id(&self, room: &BareJid, real: &BareJid) -> String {
        let keys = lock(&self.occupant_keys);
        let key = keys
            .get(room.domain().as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
            return String::new();
        };
        mac.update(room.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(real.as_str().as_bytes());
        to_hex(&mac.finalize().into_bytes()[..20])
    }

    /// The room, locked, if it exists.
    async fn existing(&self, jid: &BareJid) -> Option<OwnedMutexGuard<Room>> {
        loop {
            let h = lock(&self.rooms).get(jid).cloned()?;
            let g = h.lock_owned().await;
            if !g.gone {
                return Some(g);
            }
        }
    }

    /// The room, locked, created for `creator` if it does not exist (true: created now).
    async fn existing_or_new(
        &self,
        ctx: &ServerCtx,
        jid: &BareJid,
        creator: &FullJid,
    ) -> Result<(OwnedMutexGuard<Room>, bool), StanzaError> {
        loop {
            let (h, created) = {
                let found = lock(&self.rooms).get(jid).cloned();
                match found {
                    Some(h) => (h, false),
                    None => {
                        self.may_create(ctx, &creator.to_bare())?;
                        let mut rooms = lock(&self.rooms);
                        match rooms.get(jid) {
                            Some(h) => (h.clone(), false),
                            None => {
                                if rooms.len() >= self.cfg.max_rooms {
                                    return Err(StanzaError::with_text(
                                        StanzaErrorCondition::NotAllowed,
                                        "the service holds as many rooms as it may",
                                    ));
                                }
                                let mut room = Room::new(jid.clone(), creator.to_bare());
                                room.config.mam = self.cfg.mam;
                                let h = Arc::new(AsyncMutex::new(room));
                                rooms.insert(jid.clone(), h.clone());
                                *lock(&self.created).entry(creator.to_bare()).or_default() += 1;
                                (h, true)
                            }
                        }
                    }
                }
            };
            let g = h.lock_owned().await;
            if !g.gone {
                return Ok((g, created));
            }
        }
    }

    /// XEP-0045 §10.1.1: who may create rooms, and how many.
    fn may_create(&self, ctx: &ServerCtx, who: &BareJid) -> Result<(), StanzaError> {
        let allowed = match self.cfg.creation {
            Creation::Anyone => true,
            Creation::Local => ctx.config.is_local_domain(who.domain().as_str()),
            Creation::Admins => self.admins.contains(who),
        };
        if !allowed {
            return Err(StanzaError::with_text(
                StanzaErrorCondition::NotAllowed,
                "you may not create rooms",
            ));
        }
        let have = lock(&self.created).get(who).copied().unwrap_or(0);
        if have >= self.cfg.max_rooms_per_user {
            return Err(StanzaError::with_text(
                StanzaErrorCondition::NotAllowed,
                "you have created as many rooms as you may",
            ));
        }
        Ok(())
    }

    /// Sends what an action produced, saves or forgets the room, and removes it if it is
    /// gone or empty and temporary; then unlocks it and routes the rest.
    async fn finish(&self, ctx: &ServerCtx, room: OwnedMutexGuard<Room>, out: Out) {
        self.finish_with(ctx, room, out, None).await
    }

    /// `finish`, with the answer to the request (`reply` to `to`) placed where the action
    /// asked for it, or routed after everything.
    async fn finish_with(
        &self,
        ctx: &ServerCtx,
        mut room: OwnedMutexGuard<Room>,
        out: Out,
        mut reply: Option<(Stanza, FullJid)>,
    ) {
        // Queued before any copy goes out, in the room's order (the lock is held).
        for item in &out.archive {
            self.archive(ctx, &room.jid, item).await;
        }
        let mut i = 0;
        while i < out.deliver.len() {
            if out.reply_at == Some(i) {
                if let Some((r, to)) = reply.take() {
                    deliver(ctx, r.el, &to).await;
                }
            }
            // A run of one shared element (a groupchat message to every occupant) goes
            // out in one call, serialized once; the reply's place ends a run.
            let el = &out.deliver[i].0;
            let mut end = i + 1;
            while end < out.deliver.len()
                && Arc::ptr_eq(&out.deliver[end].0, el)
                && out.reply_at != Some(end)
            {
                end += 1;
            }
            let to: Vec<&FullJid> = out.deliver[i..end].iter().map(|(_, j)| j).collect();
            deliver_all(ctx, el, &to).await;
            i = end;
        }
        for (el, to) in &out.carbons {
            if ctx
                .router
                .session(to)
                .is_some_and(|s| confab_server::carbons::enabled(&s))
            {
                deliver_all(ctx, el, &[to]).await;
            }
        }
        {
            let mut joined = lock(&self.joined);
            for (jid, inside) in out.joined {
                if inside {
                    joined.entry(jid).or_default().insert(room.jid.clone());
                } else if let Some(set) = joined.get_mut(&jid) {
                    set.remove(&room.jid);
                    if set.is_empty() {
                        joined.remove(&jid);
                    }
                }
            }
        }
        let vanish = room.should_vanish();
        if out.unstore || (vanish && room.gone) {
            self.unstore(ctx, &room.jid).await;
        } else if out.save && room.config.persistent && !room.locked {
            self.save(ctx, &room).await;
        }
        if vanish {
            self.delete_archive(ctx, &room.jid).await;
            room.gone = true;
            let mut rooms = lock(&self.rooms);
            rooms.remove(&room.jid);
            if let Some(c) = &room.creator {
                let mut created = lock(&self.created);
                if let Some(n) = created.get_mut(c) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        created.remove(c);
                    }
                }
            }
        }
        drop(room);
        if let Some((r, _)) = reply {
            router::route(ctx, r).await;
        }
        for el in out.route {
            if let Ok(s) = Stanza::from_element(el) {
                router::route(ctx, s).await;
            }
        }
    }

    async fn archive(&self, ctx: &ServerCtx, jid: &BareJid, item: &room::ArchiveItem) {
        let Some(node) = jid.node() else {
            return;
        };
        let msg = RoomMessage {
            id: item.id.clone(),
            nick: item.nick.clone(),
            jid: item.jid.to_string(),
            stamp: unix_micros(),
            stanza: item.el.to_xml(ns::CLIENT),
        };
        self.writer
            .append(ctx, jid.domain().as_str(), node.as_str(), msg)
            .await;
    }

    /// A room that is gone takes its archive with it.
    async fn delete_archive(&self, ctx: &ServerCtx, jid: &BareJid) {
        let Some(node) = jid.node() else {
            return;
        };
        // What the room queued goes first, or it would outlive the deletion.
        self.writer.flush().await;
        let r = ctx
            .stores
            .room_archive
            .delete_room_archive(jid.domain().as_str(), node.as_str())
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, room = %jid, "deleting the room's archive failed");
        }
    }

    async fn save(&self, ctx: &ServerCtx, room: &Room) {
        let Some(node) = room.jid.node() else {
            return;
        };
        let stored = StoredRoom {
            config: room.config.clone(),
            affiliations: room
                .affiliations
                .iter()
                .map(|(j, a)| (j.to_string(), *a))
                .collect(),
            subject: room.subject.clone(),
            creator: room.creator.as_ref().map(|c| c.to_string()),
            vcard: room
                .vcard
                .as_ref()
                .map(avatar::RoomVcard::to_xml)
                .or_else(|| room.vcard_unread.clone()),
        };
        let value = match serde_json::to_string(&stored) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, room = %room.jid, "room not serializable");
                return;
            }
        };
        let key = format!("{ROOM_KEY}{node}");
        if let Err(e) = self
            .store
            .set_host(ctx, room.jid.domain().as_str(), &key, &value)
            .await
        {
            tracing::error!(error = %e, room = %room.jid, "saving the room failed");
        }
    }

    async fn unstore(&self, ctx: &ServerCtx, jid: &BareJid) {
        let Some(node) = jid.node() else {
            return;
        };
        let key = format!("{ROOM_KEY}{node}");
        if let Err(e) = self
            .store
            .delete_host(ctx, jid.domain().as_str(), &key)
            .await
        {
            tracing::error!(error = %e, room = %jid, "deleting the stored room failed");
        }
    }
}

/// Hands one stanza to the sessions of several local occupants through the one delivery
/// path, each copy addressed to its occupant, serialized once for all.
async fn deliver_all(ctx: &ServerCtx, el: &Element, to: &[&FullJid]) {
    // Sessions that are gone are skipped; `session_closed` takes those occupants out.
    let sessions: Vec<_> = to.iter().filter_map(|j| ctx.router.session(j)).collect();
    if sessions.is_empty() {
        return;
    }
    let kind = match el.name.as_str() {
        "message" => StanzaKind::Message,
        "presence" => StanzaKind::Presence,
        _ => StanzaKind::Iq,
    };
    let stanza = Stanza {
        kind,
        to: None,
        from: el.get_attr("from").and_then(|f| Jid::new(f).ok()),
        el: el.clone(),
    };
    router::deliver_addressed(ctx, &stanza, &sessions).await;
}

/// Hands a stanza to the session of one local occupant, addressed to it.
/// The archived message `sid` of a room with its row, unless it is already retracted (a
/// message is retracted once). What moderation and an author's retraction both check.
async fn live_archived(
    ctx: &ServerCtx,
    shared: &Shared,
    room_jid: &BareJid,
    sid: &str,
) -> Result<Option<(RoomMessage, Element)>, StanzaError> {
    let Some(node) = room_jid.node() else {
        return Ok(None);
    };
    // The message may still be queued; its tombstone must not come before it.
    shared.writer.flush().await;
    let found = ctx
        .stores
        .room_archive
        .room_message(room_jid.domain().as_str(), node.as_str(), sid)
        .await;
    match found {
        Ok(m) => {
            let limits = ctx.config.limits.parser_limits();
            Ok(m.and_then(|m| {
                let el = parse_fragment(&m.stanza, ns::CLIENT, &limits)?;
                Some((m, el))
            })
            .filter(|(_, el)| el.get_child("retracted", NS_RETRACT).is_none()))
        }
        Err(e) => {
            tracing::error!(error = %e, room = %room_jid, "reading the room archive failed");
            Err(confab_server::module::storage_failed())
        }
    }
}

/// Replaces a retracted message in the room's archive by its tombstone (XEP-0424 §5).
async fn bury(
    ctx: &ServerCtx,
    room_jid: &BareJid,
    sid: &str,
    original: &Element,
    retracted: Element,
) {
    let Some(node) = room_jid.node() else {
        return;
    };
    let tombstone = Room::tombstone(original, retracted).to_xml(ns::CLIENT);
    if let Err(e) = ctx
        .stores
        .room_archive
        .replace_room_message(room_jid.domain().as_str(), node.as_str(), sid, &tombstone)
        .await
    {
        tracing::error!(error = %e, room = %room_jid, "replacing a retracted message failed");
    }
}

async fn deliver(ctx: &ServerCtx, el: Element, to: &FullJid) {
    deliver_all(ctx, &el, &[to]).await;
}

async fn reply_error(ctx: &ServerCtx, stanza: &Stanza, mut e: StanzaError, by: &BareJid) {
    e.by = Some(by.to_string());
    router::send_error(ctx, stanza, e).await;
}

struct MucService {
    shared: Arc<Shared>,
}

#[async_trait]
impl Service for MucService {
    async fn handle(&self, ctx: &ServerCtx, stanza: Stanza) {
        self.shared.ensure_loaded(ctx).await;
        let (Some(from), Some(to)) = (stanza.from.clone(), stanza.to.clone()) else {
            return;
        };
        if to.node().is_none() {
            self.to_service(ctx, &stanza).await;
            return;
        }
        let room = to.to_bare();
        let nick = to.resource().map(|r| r.as_str().to_string());
        // Occupants are sessions: a bare `from` (a server or account) is not one.
        let Ok(from) = from.try_into_full() else {
            if !stanza.is_error() && stanza.kind != StanzaKind::Presence {
                reply_error(
                    ctx,
                    &stanza,
                    StanzaError::new(StanzaErrorCondition::NotAcceptable),
                    &room,
                )
                .await;
            }
            return;
        };
        match (stanza.kind, nick) {
            (StanzaKind::Presence, Some(nick)) => {
                self.presence(ctx, &stanza, from, room, nick).await
            }
            (StanzaKind::Presence, None) => {
                if stanza.type_attr().is_none() {
                    // XEP-0045 §7.2.1: a join needs a nick.
                    reply_error(
                        ctx,
                        &stanza,
                        StanzaError::with_text(StanzaErrorCondition::JidMalformed, "no nick given"),
                        &room,
                    )
                    .await;
                }
            }
            (StanzaKind::Message, nick) => self.message(ctx, &stanza, from, room, nick).await,
            (StanzaKind::Iq, nick) => self.iq(ctx, &stanza, from, room, nick).await,
        }
    }
}

/// Error conditions that mean an occupant's client is gone (XEP-0045 §17.5.2 "ghosts").
fn is_delivery_failure(stanza: &Stanza) -> bool {
    StanzaError::from_stanza(&stanza.el).is_some_and(|e| {
        matches!(
            e.condition,
            StanzaErrorCondition::Gone
                | StanzaErrorCondition::ItemNotFound
                | StanzaErrorCondition::RecipientUnavailable
                | StanzaErrorCondition::Redirect
                | StanzaErrorCondition::RemoteServerNotFound
                | StanzaErrorCondition::RemoteServerTimeout
        )
    })
}

impl MucService {
    /// XEP-0313 §6: a query of the room's archive. Access is checked under the room's
    /// lock; the archive is read after it is released.
    async fn mam_query(
        &self,
        ctx: &ServerCtx,
        stanza: &Stanza,
        from: &FullJid,
        room: OwnedMutexGuard<Room>,
        q: &Element,
    ) {
        let room_jid = room.jid.clone();
        let checked = (|| {
            let aff = room.affiliation(&from.to_bare());
            // §6 business rules: those who may enter may read; a members-only room's
            // archive is its members'.
            if aff == payloads::Affiliation::Outcast
                || (room.config.members_only && aff < payloads::Affiliation::Member)
            {
                return Err(StanzaError::with_text(
                    StanzaErrorCondition::Forbidden,
                    "only those who may enter the room may read its archive",
                ));
            }
            // A query carries no password: of a password-protected room, only those who
            // entered (occupants) and its owners (who enter without one) may read.
            if room.is_password_protected()
                && aff < payloads::Affiliation::Owner
                && room.occupant(from).is_none()
            {
                return Err(StanzaError::with_text(
                    StanzaErrorCondition::Forbidden,
                    "a password-protected room's archive is for those in the room",
                ));
            }
            if !room.config.mam {
                return Err(StanzaError::with_text(
                    StanzaErrorCondition::ServiceUnavailable,
                    "this room keeps no archive",
                ));
            }
            // Real JIDs as the room shows them to this user (XEP-0313 §6).
            let sees_jids = room.config.whois_anyone
                || aff >= payloads::Affiliation::Admin
                || room
                    .occupant(from)
                    .is_some_and(|o| o.role == payloads::Role::Moderator);
            Ok(sees_jids)
        })();
        drop(room);
        let sees_jids = match checked {
            Ok(s) => s,
            Err(e) => return reply_error(ctx, stanza, e, &room_jid).await,
        };
        if q.is("metadata", mam::NS) {
            return self.metadata(ctx, stanza, &room_jid).await;
        }
        if stanza.iq_type() == Some(IqType::Get) {
            return router::route(ctx, stanza.iq_result(Some(mam::query_form(true)))).await;
        }
        let request = match mam::Query::try_from(q) {
            Ok(r) => r,
            Err(e) => return reply_error(ctx, stanza, e.into(), &room_jid).await,
        };
        // `with` names an occupant JID of this room (its nick is what is filtered on) or,
        // for those who may see real JIDs, a user's real JID (§6; the archive keeps the
        // bare one, so a full JID matches its bare JID).
        let (with, sender) = match &request.with {
            None => (None, None),
            Some(w) if w.to_bare() == room_jid => match w.resource() {
                Some(n) => (Some(n.as_str().to_string()), None),
                None => {
                    let e = StanzaError::with_text(
                        StanzaErrorCondition::BadRequest,
                        "with: an occupant JID of this room or a real JID",
                    );
                    return reply_error(ctx, stanza, e, &room_jid).await;
                }
            },
            Some(w) if sees_jids => (None, Some(w.to_bare().to_string())),
            Some(_) => {
                let e = StanzaError::with_text(
                    StanzaErrorCondition::Forbidden,
                    "with: real JIDs only for those who may see them; use an occupant JID",
                );
                return reply_error(ctx, stanza, e, &room_jid).await;
            }
        };
        let mut query = ArchiveQuery::from_request(&request, with, self.shared.cfg.mam_max_page);
        query.sender = sender;
        // Every message a client was sent is written before it is looked for.
        self.shared.writer.flush().await;
        let Some(node) = room_jid.node() else {
            return;
        };
        let page = match ctx
            .stores
            .room_archive
            .query_room_archive(room_jid.domain().as_str(), node.as_str(), &query)
            .await
        {
            Ok(Some(p)) => p,
            Ok(None) => {
                let e = StanzaError::new(StanzaErrorCondition::ItemNotFound);
                return reply_error(ctx, stanza, e, &room_jid).await;
            }
            Err(e) => {
                tracing::error!(error = %e, room = %room_jid, "room archive query failed");
                let e = confab_server::module::storage_failed();
                return reply_error(ctx, stanza, e, &room_jid).await;
            }
        };
        // The results go to the session that asked, before the IQ result (XEP-0313 §4.2).
        let limits = ctx.config.limits.parser_limits();
        if let Some(session) = ctx.router.session(from) {
            let mut items: Vec<_> = page.items.iter().collect();
            if request.flip_page {
                items.reverse();
            }
            for item in items {
                // §6: no muc#user data but the room's own, the real JID only to those who
                // may see it.
                let adjust =
                    |m: &mut Element| {
                        m.children.retain(|n| {
                        !matches!(n, confab_proto::xml::Node::Element(e) if e.is("x", NS_USER))
                    });
                        if sees_jids && !item.jid.is_empty() {
                            m.push_child(Element::new("x", NS_USER).child(
                                Element::new("item", NS_USER).attr("jid", item.jid.as_str()),
                            ));
                        }
                    };
                let Some(wrapper) = mam::stored_result(
                    room_jid.as_str(),
                    from.as_str(),
                    request.queryid.as_deref(),
                    &item.id,
                    item.stamp,
                    &item.stanza,
                    &limits,
                    adjust,
                ) else {
                    tracing::error!(id = %item.id, room = %room_jid, "unparsable archived message");
                    continue;
                };
                if let Ok(m) = Stanza::from_element(wrapper) {
                    router::deliver(ctx, &m, std::slice::from_ref(&session)).await;
                }
            }
        }
        let (first, last) = (page.items.first(), page.items.last());
        let fin = mam::fin(
            page.complete,
            first.map(|m| m.id.as_str()),
            last.map(|m| m.id.as_str()),
            page.count,
            page.first_index,
        );
        router::route(ctx, stanza.iq_result(Some(fin))).await;
    }

    /// XEP-0313 §7.1 (`#extended`): the id and time of the room archive's first and last
    /// message; access as for a query.
    async fn metadata(&self, ctx: &ServerCtx, stanza: &Stanza, room_jid: &BareJid) {
        let Some(node) = room_jid.node() else {
            return;
        };
        self.shared.writer.flush().await;
        let archive = &ctx.stores.room_archive;
        let service = room_jid.domain().as_str();
        let one = |before: Option<String>| ArchiveQuery {
            before,
            max: 1,
            ..ArchiveQuery::default()
        };
        let first = archive
            .query_room_archive(service, node.as_str(), &one(None))
            .await;
        let last = archive
            .query_room_archive(service, node.as_str(), &one(Some(String::new())))
            .await;
        match (first, last) {
            (Ok(f), Ok(l)) => {
                let first = f.as_ref().and_then(|p| p.items.first());
                let last = l.as_ref().and_then(|p| p.items.last());
                let ends = first
                    .zip(last)
                    .map(|(f, l)| ((f.id.as_str(), f.stamp), (l.id.as_str(), l.stamp)));
                router::route(ctx, stanza.iq_result(Some(mam::metadata(ends)))).await;
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, room = %room_jid, "reading room archive metadata failed");
                let e = confab_server::module::storage_failed();
                reply_error(ctx, stanza, e, room_jid).await;
            }
        }
    }

    /// XEP-0425: a moderator retracts a message by its stanza-id. Everything is checked
    /// before anything changes: the moderator, the request, the message.
    async fn moderate(
        &self,
        ctx: &ServerCtx,
        stanza: &Stanza,
        from: FullJid,
        mut room: OwnedMutexGuard<Room>,
        q: &Element,
    ) {
        let room_jid = room.jid.clone();
        let fail = |cond, text: &str| StanzaError::with_text(cond, text);
        let checked = room.check_moderator(&from).and_then(|()| {
            let id = q
                .get_attr("id")
                .filter(|i| !i.is_empty())
                .ok_or_else(|| fail(StanzaErrorCondition::BadRequest, "no message id"))?;
            if q.get_child("retract", NS_RETRACT).is_none() {
                return Err(fail(
                    StanzaErrorCondition::FeatureNotImplemented,
                    "only retraction is supported",
                ));
            }
            Ok(id.to_string())
        });
        let sid = match checked {
            Ok(s) => s,
            Err(e) => {
                drop(room);
                return reply_error(ctx, stanza, e, &room_jid).await;
            }
        };
        let original = match live_archived(ctx, &self.shared, &room_jid, &sid).await {
            Ok(m) => m.map(|(_, el)| el),
            Err(e) => {
                drop(room);
                return reply_error(ctx, stanza, e, &room_jid).await;
            }
        };
        if original.is_none() && !room.in_history(&sid) {
            drop(room);
            let e = fail(StanzaErrorCondition::ItemNotFound, "no such message");
            return reply_error(ctx, stanza, e, &room_jid).await;
        }
        let reason = q
            .get_child("reason", NS_MODERATE)
            .or_else(|| q.get_child("reason", NS_RETRACT))
            .map(Element::text_content);
        let mut out = Out::default();
        let retracted = match room.moderate(&from, &sid, reason.as_deref(), unix_now(), &mut out) {
            Ok(r) => r,
            Err(e) => {
                drop(room);
                return reply_error(ctx, stanza, e, &room_jid).await;
            }
        };
        if let Some(original) = original {
            bury(ctx, &room_jid, &sid, &original, retracted).await;
        }
        let reply = (stanza.iq_result(None), from);
        self.shared.finish_with(ctx, room, out, Some(reply)).await;
    }

    /// XEP-0424: an occupant retracts its own message (a groupchat message carrying
    /// `<retract id='stanza-id'/>`). Checked like moderation, before anything changes.
    async fn retract_own(
        &self,
        ctx: &ServerCtx,
        stanza: &Stanza,
        from: FullJid,
        mut room: OwnedMutexGuard<Room>,
        sid: String,
    ) {
        let room_jid = room.jid.clone();
        let archived = match live_archived(ctx, &self.shared, &room_jid, &sid).await {
            Ok(m) => m,
            Err(e) => {
                drop(room);
                return reply_error(ctx, stanza, e, &room_jid).await;
            }
        };
        // XEP-0424 §6: only messages are retracted, not a retraction (or moderation).
        if archived
            .as_ref()
            .is_some_and(|(_, el)| el.get_child("retract", NS_RETRACT).is_some())
        {
            drop(room);
            let e = StanzaError::with_text(
                StanzaErrorCondition::NotAcceptable,
                "a retraction is not retracted",
            );
            return reply_error(ctx, stanza, e, &room_jid).await;
        }
        let mut out = Out::default();
        let r = room.retract_own(
            &self.shared.limits,
            &from,
            &stanza.el,
            &sid,
            archived.as_ref().map(|(m, _)| m.jid.as_str()),
            unix_now(),
            &mut out,
        );
        match r {
            Ok(retracted) => {
                if let Some((_, original)) = archived {
                    bury(ctx, &room_jid, &sid, &original, retracted).await;
                }
                self.shared.finish(ctx, room, out).await;
            }
            Err(e) => {
                drop(room);
                tracing::debug!(room = %room_jid, from = %from, "retraction refused: {e:?}");
                reply_error(ctx, stanza, e, &room_jid).await;
            }
        }
    }

    async fn to_service(&self, ctx: &ServerCtx, stanza: &Stanza) {
        let by = match stanza.to.as_ref() {
            Some(t) => t.to_bare(),
            None => return,
        };
        match stanza.kind {
            StanzaKind::Iq => {
                if stanza.iq_type() != Some(IqType::Get) {
                    if stanza.iq_type() == Some(IqType::Set) {
                        reply_error(
                            ctx,
                            stanza,
                            StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                            &by,
                        )
                        .await;
                    }
                    return;
                }
                let Some(q) = stanza.iq_payload() else {
                    return;
                };
                let reply = if q.get_attr("node").is_some() {
                    None
                } else if q.is("query", ns::DISCO_INFO) {
                    Some(forms::service_info(&self.shared.cfg.name))
                } else if q.is("query", ns::DISCO_ITEMS) {
                    Some(self.public_rooms().await)
                } else {
                    None
                };
                match reply {
                    Some(r) => router::route(ctx, stanza.iq_result(Some(r))).await,
                    None => {
                        let cond = if q.get_attr("node").is_some() {
                            StanzaErrorCondition::ItemNotFound
                        } else {
                            StanzaErrorCondition::ServiceUnavailable
                        };
                        reply_error(ctx, stanza, StanzaError::new(cond), &by).await;
                    }
                }
            }
            StanzaKind::Message => {
                if !stanza.is_error() && stanza.type_attr() != Some("headline") {
                    reply_error(
                        ctx,
                        stanza,
                        StanzaError::new(StanzaErrorCondition::ServiceUnavailable),
                        &by,
                    )
                    .await;
                }
            }
            StanzaKind::Presence => {}
        }
    }

    async fn public_rooms(&self) -> Element {
        let handles: Vec<RoomHandle> = lock(&self.shared.rooms).values().cloned().collect();
        let mut items = Vec::new();
        for h in handles {
            let r = h.lock().await;
            if r.gone || r.locked || !r.config.public {
                continue;
            }
            items.push(DiscoItem {
                jid: Jid::from(r.jid.clone()),
                node: None,
                name: Some(if r.config.name.is_empty() {
                    r.jid
                        .node()
                        .map(|n| n.as_str().to_string())
                        .unwrap_or_default()
                } else {
                    r.config.name.clone()
                }),
            });
            if items.len() >= MAX_LISTED_ROOMS {
                break;
            }
        }
        items.sort_by(|a, b| a.jid.as_str().cmp(b.jid.as_str()));
        DiscoItems { node: None, items }.into()
    }

    async fn presence(
        &self,
        ctx: &ServerCtx,
        stanza: &Stanza,
        from: FullJid,
        room_jid: BareJid,
        nick: String,
    ) {
        let shared = &self.shared;
        match stanza.type_attr() {
            None => {}
            Some("unavailable") => {
                if let Some(mut room) = shared.existing(&room_jid).await {
                    let mut out = Out::default();
                    room.leave(&from, Some(&stanza.el), &mut out);
                    shared.finish(ctx, room, out).await;
                }
                return;
            }
            Some("error") => {
                if is_delivery_failure(stanza) {
                    self.ghost(ctx, &from, &room_jid).await;
                }
                return;
            }
            // Probes and subscriptions are not joins or exits (XEP-0045 §17.3).
            Some(_) => return,
        }
        let (nick, nick_modified) = match room::check_nick(&nick) {
            Ok(n) => n,
            Err(e) => return reply_error(ctx, stanza, e, &room_jid).await,
        };
        let join = match stanza.el.get_child("x", NS_MUC).map(Join::try_from) {
            None => None,
            Some(Ok(j)) => Some(j),
            Some(Err(e)) => return reply_error(ctx, stanza, e, &room_jid).await,
        };
        let now = unix_now();
        // An occupant's presence (status, nick change, resync) never creates a room.
        if let Some(mut room) = shared.existing(&room_jid).await {
            if room.occupant_index(&from).is_some() {
                let mut out = Out::default();
                let r = room.occupant_presence(
                    &from,
                    &nick,
                    nick_modified,
                    &stanza.el,
                    join.as_ref(),
                    now,
                    &mut out,
                );
                shared.finish(ctx, room, out).await;
                if let Err(e) = r {
                    reply_error(ctx, stanza, e, &room_jid).await;
                }
                return;
            }
        }
        let Some(join) = join else {
            // XEP-0045 §7.2.24: presence without the MUC <x/> from a non-occupant is
            // answered with a kick, so a desynchronised client learns it is not in.
            self.not_in_room(ctx, &from, &room_jid, &nick).await;
            return;
        };
        let (mut room, created) = match shared.existing_or_new(ctx, &room_jid, &from).await {
            Ok(r) => r,
            Err(e) => return reply_error(ctx, stanza, e, &room_jid).await,
        };
        let mut out = Out::default();
        let occupant_id = shared.occupant_id(&room_jid, &from.to_bare());
        let r = room.join(
            &shared.limits,
            &from,
            &nick,
            nick_modified,
            &stanza.el,
            &join,
            created,
            occupant_id,
            now,
            &mut out,
        );
        shared.finish(ctx, room, out).await;
        if let Err(e) = r {
            reply_error(ctx, stanza, e, &room_jid).await;
        }
    }

    async fn not_in_room(&self, ctx: &ServerCtx, to: &FullJid, room: &BareJid, nick: &str) {
        let Ok(occupant) = room.with_resource_str(nick) else {
            return;
        };
        let x: Element = UserX {
            items: vec![payloads::Item {
                affiliation: Some(payloads::Affiliation::None),
                role: Some(payloads::Role::None),
                reason: Some("You are not in the room.".into()),
                ..payloads::Item::default()
            }],
            status: vec![
                payloads::status::SELF,
                payloads::status::KICKED,
                payloads::status::TECHNICAL,
            ],
            ..UserX::default()
        }
        .into();
        let el = Element::new("presence", ns::CLIENT)
            .attr("from", occupant.as_str())
            .attr("to", to.as_str())
            .attr("type", "unavailable")
            .child(x);
        if let Ok(s) = Stanza::from_element(el) {
            router::route(ctx, s).await;
        }
    }

    /// An occupant whose client is gone leaves as if it had sent unavailable presence.
    async fn ghost(&self, ctx: &ServerCtx, from: &FullJid, room_jid: &BareJid) {
        if let Some(mut room) = self.shared.existing(room_jid).await {
            let mut out = Out::default();
            room.leave(from, None, &mut out);
            self.shared.finish(ctx, room, out).await;
        }
    }

    async fn message(
        &self,
        ctx: &ServerCtx,
        stanza: &Stanza,
        from: FullJid,
        room_jid: BareJid,
        nick: Option<String>,
    ) {
        let shared = &self.shared;
        if stanza.is_error() {
            if is_delivery_failure(stanza) {
                self.ghost(ctx, &from, &room_jid).await;
            }
            return;
        }
        let Some(mut room) = shared.existing(&room_jid).await else {
            return reply_error(
                ctx,
                stanza,
                StanzaError::new(StanzaErrorCondition::ItemNotFound),
                &room_jid,
            )
            .await;
        };
        if room.locked && room.occupant_index(&from).is_none() {
            drop(room);
            return reply_error(
                ctx,
                stanza,
                StanzaError::new(StanzaErrorCondition::ItemNotFound),
                &room_jid,
            )
            .await;
        }
        if nick.is_none() && stanza.type_attr() == Some("groupchat") {
            if let Some(r) = stanza.el.get_child("retract", NS_RETRACT) {
                let Some(sid) = r.get_attr("id").filter(|i| !i.is_empty()) else {
                    drop(room);
                    let e = StanzaError::with_text(
                        StanzaErrorCondition::BadRequest,
                        "a retraction needs the message's stanza-id",
                    );
                    return reply_error(ctx, stanza, e, &room_jid).await;
                };
                let sid = sid.to_string();
                return self.retract_own(ctx, stanza, from, room, sid).await;
            }
        }
        let now = unix_now();
        let mut out = Out::default();
        let r = match (nick, stanza.type_attr()) {
            (Some(n), _) => room.private_message(&shared.limits, &from, &n, &stanza.el, &mut out),
            (None, Some("groupchat")) => {
                room.groupchat(&shared.limits, &from, &stanza.el, now, &mut out)
            }
            (None, None | Some("normal")) => {
                match stanza.el.get_child("x", NS_USER).map(UserX::try_from) {
                    Some(Ok(x)) if !x.invites.is_empty() || x.decline.is_some() => {
                        room.invite(&shared.limits, &from, &stanza.el, &x, now, &mut out)
                    }
                    Some(Err(e)) => Err(e),
                    _ => Err(StanzaError::with_text(
                        StanzaErrorCondition::BadRequest,
                        "messages to the room are groupchat",
                    )),
                }
            }
            (None, _) => Err(StanzaError::with_text(
                StanzaErrorCondition::BadRequest,
                "messages to the room are groupchat",
            )),
        };
        shared.finish(ctx, room, out).await;
        if let Err(e) = r {
            reply_error(ctx, stanza, e, &room_jid).await;
        }
    }

    async fn iq(
        &self,
        ctx: &ServerCtx,
        stanza: &Stanza,
        from: FullJid,
        room_jid: BareJid,
        nick: Option<String>,
    ) {
        let shared = &self.shared;
        let Some(t) = stanza.iq_type() else {
            return;
        };
        if matches!(t, IqType::Result | IqType::Error) {
            return;
        }
        let Some(q) = stanza.iq_payload().cloned() else {
            return;
        };
        // XEP-0410: to a self-ping, item-not-found would mean "still joined"; whoever is
        // not in a room (it does not exist, or is locked to them) is told not-acceptable.
        let missing = if nick.is_some() {
            StanzaErrorCondition::NotAcceptable
        } else {
            StanzaErrorCondition::ItemNotFound
        };
        let Some(mut room) = shared.existing(&room_jid).await else {
            return reply_error(ctx, stanza, StanzaError::new(missing), &room_jid).await;
        };
        let owner = room.affiliation(&from.to_bare()) == payloads::Affiliation::Owner;
        if room.locked && !owner {
            drop(room);
            return reply_error(ctx, stanza, StanzaError::new(missing), &room_jid).await;
        }
        if let Some(nick) = nick {
            // IQs to occupants are not passed on; a ping of one's own occupant JID is
            // answered (XEP-0410: the room says whether the pinger is still in).
            let me = room.occupant(&from).map(|o| o.nick.clone());
            drop(room);
            let r = match me {
                None => Err(StanzaError::new(StanzaErrorCondition::NotAcceptable)),
                Some(m) if m == nick && q.is("ping", ns::PING) => Ok(None),
                Some(_) => Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable)),
            };
            return match r {
                Ok(p) => router::route(ctx, stanza.iq_result(p)).await,
                Err(e) => reply_error(ctx, stanza, e, &room_jid).await,
            };
        }
        if q.is("query", mam::NS) || (q.is("metadata", mam::NS) && t == IqType::Get) {
            return self.mam_query(ctx, stanza, &from, room, &q).await;
        }
        if q.is("moderate", NS_MODERATE) && t == IqType::Set {
            return self.moderate(ctx, stanza, from, room, &q).await;
        }
        let mut out = Out::default();
        let lim = &shared.limits;
        let r: Result<Option<Element>, StanzaError> = match (t, q.name.as_str(), &*q.ns) {
            (IqType::Get, "query", ns::DISCO_INFO) if q.get_attr("node").is_none() => {
                Ok(Some(forms::room_info(&room)))
            }
            (IqType::Get, "query", ns::DISCO_ITEMS) if q.get_attr("node").is_none() => {
                Ok(Some(DiscoItems::default().into()))
            }
            (IqType::Get, "query", ns::DISCO_INFO | ns::DISCO_ITEMS) => {
                Err(StanzaError::new(StanzaErrorCondition::ItemNotFound))
            }
            (IqType::Get, "ping", ns::PING) => Ok(None),
            // XEP-0486: whoever may see the room (as for its disco#info) reads its vCard.
            (IqType::Get, "vCard", avatar::NS_VCARD) => {
                Ok(Some(avatar::reply(room.vcard.as_ref())))
            }
            (IqType::Set, "vCard", avatar::NS_VCARD) => room
                .set_vcard(lim, &from, &q, unix_now(), &mut out)
                .map(|_| None),
            (_, "query", NS_ADMIN) => match AdminQuery::try_from(&q) {
                Err(e) => Err(e),
                Ok(a) if t == IqType::Get => room.admin_get(&from, &a).map(Some),
                Ok(a) => room.admin_set(lim, &from, &a, &mut out).map(|_| None),
            },
            (_, "query", NS_OWNER) => match OwnerQuery::try_from(&q) {
                Err(e) => Err(e),
                Ok(o) if t == IqType::Get => {
                    if o.form.is_some() || o.destroy.is_some() {
                        Err(StanzaError::new(StanzaErrorCondition::BadRequest))
                    } else {
                        room.owner_get(&from, lim.max_occupants).map(Some)
                    }
                }
                Ok(OwnerQuery {
                    destroy: Some(d), ..
                }) => {
                    if owner {
                        room.destroy(&d, &mut out);
                        Ok(None)
                    } else {
                        Err(StanzaError::new(StanzaErrorCondition::Forbidden))
                    }
                }
                Ok(OwnerQuery { form: Some(f), .. }) => room
                    .configure(lim, &from, &f, unix_now(), &mut out)
                    .map(|_| None),
                Ok(_) => Err(StanzaError::with_text(
                    StanzaErrorCondition::BadRequest,
                    "a form or a destroy request",
                )),
            },
            _ => Err(StanzaError::new(StanzaErrorCondition::ServiceUnavailable)),
        };
        match r {
            Ok(p) => {
                let reply = (stanza.iq_result(p), from);
                shared.finish_with(ctx, room, out, Some(reply)).await;
            }
            Err(e) => {
                shared.finish(ctx, room, out).await;
                reply_error(ctx, stanza, e, &room_jid).await;
            }
        }
    }
}

/// The rooms as the admin console lists them, and their destruction by an administrator
/// (occupants are told as for an owner's destroy, XEP-0045 §10.9).
struct RoomsView {
    shared: Arc<Shared>,
}

#[async_trait]
impl confab_server::module::AdminView for RoomsView {
    fn columns(&self) -> Vec<&'static str> {
        vec!["room", "name", "occupants", "persistent", "public"]
    }

    async fn rows(&self, ctx: &ServerCtx) -> Vec<confab_server::module::AdminRow> {
        self.shared.ensure_loaded(ctx).await;
        let mut jids: Vec<BareJid> = lock(&self.shared.rooms).keys().cloned().collect();
        jids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        let mut rows = Vec::with_capacity(jids.len());
        for j in jids {
            let Some(room) = self.shared.existing(&j).await else {
                continue;
            };
            rows.push(confab_server::module::AdminRow {
                id: j.to_string(),
                cells: vec![
                    j.to_string(),
                    room.config.name.clone(),
                    room.occupant_count().to_string(),
                    room.config.persistent.to_string(),
                    room.config.public.to_string(),
                ],
            });
        }
        rows
    }

    fn actions(&self) -> Vec<&'static str> {
        vec!["destroy"]
    }

    async fn act(
        &self,
        ctx: &ServerCtx,
        id: &str,
        action: &str,
        actor: &BareJid,
    ) -> Result<(), String> {
        if action != "destroy" {
            return Err(format!("unknown action '{action}'"));
        }
        let jid = BareJid::new(id).map_err(|_| "no such room".to_string())?;
        self.shared.ensure_loaded(ctx).await;
        let Some(mut room) = self.shared.existing(&jid).await else {
            return Err("no such room".into());
        };
        let mut out = Out::default();
        room.destroy(
            &payloads::Destroy {
                jid: None,
                reason: Some("Destroyed by the server administrator".into()),
                password: None,
            },
            &mut out,
        );
        tracing::info!(room = %jid, admin = %actor, "room destroyed by an administrator");
        self.shared.finish(ctx, room, out).await;
        Ok(())
    }
}

struct Lifecycle {
    shared: Arc<Shared>,
}

#[async_trait]
impl LifecycleListener for Lifecycle {
    async fn server_started(&self, ctx: &ServerCtx) {
        self.shared.writer.start(ctx, ARCHIVE_QUEUE);
        self.shared.ensure_loaded(ctx).await;
        // A server that was down past the retention does not serve what expired meanwhile
        // until the first hourly sweep.
        if self.shared.cfg.mam_retention_days > 0 {
            expire_archives(ctx, self.shared.cfg.mam_retention_days).await;
        }
    }

    /// The occupants of this session leave the rooms it was in (its connection was lost,
    /// or it ended without unavailable presence).
    async fn session_closed(&self, ctx: &ServerCtx, session: &SessionInfo) {
        if ctx.router.session(&session.jid).is_some() {
            // Replaced by a new session on the same resource: the occupancy is its now.
            return;
        }
        let rooms = lock(&self.shared.joined).remove(&session.jid);
        for r in rooms.into_iter().flatten() {
            if let Some(mut room) = self.shared.existing(&r).await {
                let mut out = Out::default();
                room.leave(&session.jid, None, &mut out);
                self.shared.finish(ctx, room, out).await;
            }
        }
    }

    /// XEP-0045 status 332: every occupant is told the service is going away.
    async fn server_stopping(&self, ctx: &ServerCtx) {
        let jids: Vec<BareJid> = lock(&self.shared.rooms).keys().cloned().collect();
        for j in jids {
            if let Some(mut room) = self.shared.existing(&j).await {
                let mut out = Out::default();
                room.shutdown(&mut out);
                self.shared.finish(ctx, room, out).await;
            }
        }
        self.shared.writer.flush().await;
    }
}
