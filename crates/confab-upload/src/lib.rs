//! HTTP File Upload (XEP-0363) as a module: a slot service on `upload.<domain>` for each
//! served domain (registered with `Registry::service`), and the PUT/GET URLs it hands out
//! served on the `[http]` listener (`Registry::http_route`).
//!
//! - this file: `[upload]`, the slot service (disco, slot requests and their limits), the
//!   index of stored files (loaded from the module store at start) and the expiry sweep.
//! - `http.rs`: the PUT, GET/HEAD and OPTIONS handlers.
//!
//! A slot lives in memory only, for `slot_lifetime` seconds, and is used once. Its PUT is
//! authorised by an `Authorization: Bearer` header: an HMAC over the slot (id, size,
//! content type, expiry) under a key made at start. Slots do not survive a restart, so
//! neither needs the key: it is never written anywhere. A stored file is
//! `<data_dir>/upload/<id>` with its metadata (owner, name, size, type, expiry) in the
//! module store (kind `upload`, one key per file under the service domain), which is the
//! truth the in-memory index is rebuilt from at start.

mod http;

use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition, StanzaErrorType};
use confab_proto::ns;
use confab_proto::payloads::data_form::{DataForm, Field, FormType};
use confab_proto::payloads::disco::{DiscoInfo, DiscoItems, Identity};
use confab_proto::stanza::{IqType, Stanza, StanzaKind};
use confab_proto::xml::Element;
use confab_server::module::{
    LifecycleListener, Module, ModuleConfig, ModuleStore, Registry, Service, Timer,
};
use confab_server::{router, ServerCtx};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The XEP-0363 namespace.
pub const NS: &str = "urn:xmpp:http:upload:0";
/// The module store kind: one key per stored file (its id) under the service domain.
pub const KIND: &str = "upload";
/// Where PUT and GET URLs live on the `[http]` listener: `/upload/<id>/<file name>`.
pub const PATH_PREFIX: &str = "/upload";

/// The upload module, for `confabd`'s module list.
pub fn all() -> Vec<Arc<dyn Module>> {
    vec![Arc::new(Upload)]
}

/// `[upload]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    /// Whether the service runs at all.
    pub enabled: bool,
    /// The service is `<domain_prefix>.<domain>` for each served domain.
    pub domain_prefix: String,
    /// The service's name in disco.
    pub name: String,
    /// The public origin of the `[http]` listener as clients reach it (e.g.
    /// `https://upload.example.org`, behind a TLS reverse proxy); URLs are
    /// `<url_base>/upload/<id>/<name>`. Unset: `http://` and the listener's first address.
    pub url_base: Option<String>,
    /// Largest file one slot may carry, in bytes.
    pub max_file_size: u64,
    /// Bytes one account may have stored (and reserved by open slots) at once.
    pub quota_per_user: u64,
    /// Seconds a stored file is kept before the sweep deletes it.
    pub file_lifetime: u64,
    /// Seconds a slot's PUT URL stays valid.
    pub slot_lifetime: u64,
    /// Open (requested, not yet used) slots one account may hold.
    pub max_pending_slots_per_user: usize,
    /// Open slots the whole service holds.
    pub max_pending_slots: usize,
    /// Seconds between sweeps of expired files.
    pub sweep_interval: u64,
    /// Most files one sweep deletes (the rest wait for the next one).
    pub sweep_batch: usize,
    /// Longest file name accepted, in bytes.
    pub max_filename_bytes: usize,
    /// Seconds a PUT may go without sending body bytes before it is cut off (408).
    pub idle_timeout: u64,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            enabled: true,
            domain_prefix: "upload".into(),
            name: "HTTP File Upload".into(),
            url_base: None,
            max_file_size: 10 * 1024 * 1024,
            quota_per_user: 100 * 1024 * 1024,
            file_lifetime: 7 * 24 * 3600,
            slot_lifetime: 300,
            max_pending_slots_per_user: 10,
            max_pending_slots: 10_000,
            sweep_interval: 3600,
            sweep_batch: 1000,
            max_filename_bytes: 255,
            idle_timeout: 60,
        }
    }
}

impl ModuleConfig for UploadConfig {
    fn validate(&self) -> Result<(), String> {
        if let Some(b) = &self.url_base {
            let ok = (b.starts_with("http://") || b.starts_with("https://"))
                && !b.ends_with('/')
                && b.chars().all(|c| c.is_ascii_graphic());
            if !ok {
                return Err(format!(
                    "[upload] url_base '{b}' must be an http(s) URL without a trailing '/'"
                ));
            }
        }
        for (k, v) in [
            ("max_file_size", self.max_file_size),
            ("file_lifetime", self.file_lifetime),
            ("slot_lifetime", self.slot_lifetime),
            ("sweep_interval", self.sweep_interval),
            ("sweep_batch", self.sweep_batch as u64),
            ("max_filename_bytes", self.max_filename_bytes as u64),
            ("idle_timeout", self.idle_timeout),
        ] {
            if v == 0 {
                return Err(format!("[upload] {k} must be positive"));
            }
        }
        if self.max_file_size > self.quota_per_user {
            return Err("[upload] max_file_size must not exceed quota_per_user".into());
        }
        if self.file_lifetime > 100 * 365 * 24 * 3600 || self.slot_lifetime > 24 * 3600 {
            return Err("[upload] file_lifetime or slot_lifetime is too long".into());
        }
        Ok(())
    }
}

pub struct Upload;

impl Module for Upload {
    fn name(&self) -> &'static str {
        "upload"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let cfg: UploadConfig = reg.section("upload");
        if !cfg.enabled {
            return;
        }
        let domains: Vec<String> = reg
            .config()
            .server
            .domains
            .iter()
            .map(|d| format!("{}.{d}", cfg.domain_prefix))
            .collect();
        let dir = reg.config().server.data_dir.join("upload");
        let shared = Arc::new(Shared::new(cfg, dir, reg.store(KIND)));
        for d in &domains {
            reg.service(
                d,
                Some(&shared.cfg.name),
                Arc::new(UploadService {
                    shared: shared.clone(),
                }),
            );
        }
        http::register_routes(reg, shared.clone());
        reg.timer(
            Duration::from_secs(shared.cfg.sweep_interval),
            Arc::new(Sweep {
                shared: shared.clone(),
            }),
        );
        reg.lifecycle(Arc::new(Lifecycle { shared }));
    }
}

/// A stored file's metadata, as kept in the module store (JSON) and in the index.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct FileMeta {
    owner: String,
    name: String,
    size: u64,
    content_type: String,
    /// Unix seconds after which the file is gone.
    expires: i64,
    /// The service domain it is stored under.
    #[serde(skip)]
    domain: String,
}

/// A slot handed out and not used yet.
#[derive(Clone, Debug)]
struct Slot {
    owner: String,
    domain: String,
    name: String,
    size: u64,
    content_type: Option<String>,
    expires: Instant,
    /// The same expiry as Unix seconds: what the token signs.
    expires_unix: i64,
}

#[derive(Default)]
struct State {
    files: HashMap<String, FileMeta>,
    /// Bytes stored per owner (bare JID).
    usage: HashMap<String, u64>,
    pending: HashMap<String, Slot>,
    /// Bytes reserved per owner by open slots and uploads in progress.
    reserved: HashMap<String, u64>,
}

impl State {
    fn unreserve(&mut self, owner: &str, size: u64) {
        if let Some(r) = self.reserved.get_mut(owner) {
            *r = r.saturating_sub(size);
            if *r == 0 {
                self.reserved.remove(owner);
            }
        }
    }

    fn purge_expired_slots(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(s) = self.pending.remove(&id) {
                self.unreserve(&s.owner, s.size);
            }
        }
    }

    fn forget_file(&mut self, id: &str) -> Option<FileMeta> {
        let m = self.files.remove(id)?;
        if let Some(u) = self.usage.get_mut(&m.owner) {
            *u = u.saturating_sub(m.size);
            if *u == 0 {
                self.usage.remove(&m.owner);
            }
        }
        Some(m)
    }
}

struct Shared {
    cfg: UploadConfig,
    dir: PathBuf,
    store: ModuleStore,
    /// Signs PUT authorisations; made at start, never stored (slots do not survive a
    /// restart either).
    key: [u8; 32],
    state: Mutex<State>,
    loaded: OnceCell<()>,
}

type HmacSha256 = Hmac<sha2::Sha256>;

impl Shared {
    fn new(cfg: UploadConfig, dir: PathBuf, store: ModuleStore) -> Shared {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Shared {
            cfg,
            dir,
            store,
            key,
            state: Mutex::new(State::default()),
            loaded: OnceCell::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-changed in a way
        // that matters more than losing the service.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the index of stored files once (at start, or by whichever request comes
    /// first) and removes uploads a crash left half-written.
    async fn ensure_loaded(&self, ctx: &ServerCtx) {
        self.loaded
            .get_or_init(|| async {
                if let Err(e) = tokio::fs::create_dir_all(&self.dir).await {
                    tracing::error!(error = %e, dir = %self.dir.display(), "upload directory");
                }
                remove_partial_files(&self.dir).await;
                let mut loaded = Vec::new();
                for d in service_domains(ctx, &self.cfg) {
                    match self.store.list_host(ctx, &d).await {
                        Ok(rows) => {
                            for (id, json) in rows {
                                match serde_json::from_str::<FileMeta>(&json) {
                                    Ok(mut m) => {
                                        m.domain = d.clone();
                                        loaded.push((id, m));
                                    }
                                    Err(e) => {
                                        tracing::warn!(error = %e, id, "unreadable upload record")
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, domain = d, "loading upload records failed")
                        }
                    }
                }
                let mut st = self.state();
                for (id, m) in loaded {
                    *st.usage.entry(m.owner.clone()).or_default() += m.size;
                    st.files.insert(id, m);
                }
            })
            .await;
    }

    /// The authorisation a slot's PUT must carry (hex HMAC-SHA-256).
    fn token(&self, id: &str, slot: &Slot) -> String {
        to_hex(&self.mac(id, slot).finalize().into_bytes())
    }

    fn mac(&self, id: &str, slot: &Slot) -> HmacSha256 {
        // The key is 32 bytes: HMAC takes any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        for part in [
            id.as_bytes(),
            slot.size.to_string().as_bytes(),
            slot.content_type.as_deref().unwrap_or("").as_bytes(),
            slot.expires_unix.to_string().as_bytes(),
        ] {
            mac.update(part);
            mac.update(&[0]);
        }
        mac
    }

    /// Whether `token` (hex) is the slot's authorisation, compared in constant time.
    fn verify(&self, id: &str, slot: &Slot, token: &str) -> bool {
        match from_hex(token) {
            Some(bytes) => self.mac(id, slot).verify_slice(&bytes).is_ok(),
            None => false,
        }
    }

    fn file_path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Deletes a stored file: record, index and bytes.
    async fn delete_file(&self, ctx: &ServerCtx, id: &str, domain: &str) {
        if let Err(e) = self.store.delete_host(ctx, domain, id).await {
            // Kept in the index so the next sweep tries again.
            tracing::warn!(error = %e, id, "deleting an upload record failed");
            return;
        }
        self.state().forget_file(id);
        if let Err(e) = tokio::fs::remove_file(self.file_path(id)).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %e, id, "deleting an uploaded file failed");
            }
        }
    }
}

fn service_domains(ctx: &ServerCtx, cfg: &UploadConfig) -> Vec<String> {
    ctx.config
        .server
        .domains
        .iter()
        .map(|d| format!("{}.{d}", cfg.domain_prefix))
        .collect()
}

async fn remove_partial_files(dir: &std::path::Path) {
    let Ok(mut rd) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = rd.next_entry().await {
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".part") {
            let _ = tokio::fs::remove_file(entry.path()).await;
        }
    }
}

struct UploadService {
    shared: Arc<Shared>,
}

#[async_trait]
impl Service for UploadService {
    async fn handle(&self, ctx: &ServerCtx, stanza: Stanza) {
        match stanza.kind {
            StanzaKind::Presence => return,
            StanzaKind::Message => {
                if let Some(r) =
                    stanza.error_reply(&StanzaError::new(StanzaErrorCondition::ServiceUnavailable))
                {
                    router::route(ctx, r).await;
                }
                return;
            }
            StanzaKind::Iq => {}
        }
        let Some(t) = stanza.iq_type() else { return };
        if matches!(t, IqType::Result | IqType::Error) {
            return;
        }
        let Some(to) = stanza.to.clone() else {
            return reply(
                ctx,
                &stanza,
                Err(err(StanzaErrorCondition::ServiceUnavailable)),
            )
            .await;
        };
        if to.node().is_some() {
            return reply(ctx, &stanza, Err(err(StanzaErrorCondition::ItemNotFound))).await;
        }
        let Some(q) = stanza.iq_payload().cloned() else {
            return reply(ctx, &stanza, Err(err(StanzaErrorCondition::BadRequest))).await;
        };
        let r = match (t, q.name.as_str(), &*q.ns) {
            (IqType::Get, "query", ns::DISCO_INFO) if q.get_attr("node").is_none() => {
                Ok(Some(self.disco_info()))
            }
            (IqType::Get, "query", ns::DISCO_ITEMS) if q.get_attr("node").is_none() => {
                Ok(Some(DiscoItems::default().into()))
            }
            (IqType::Get, "query", ns::DISCO_INFO | ns::DISCO_ITEMS) => {
                Err(err(StanzaErrorCondition::ItemNotFound))
            }
            (IqType::Get, "request", NS) => {
                self.shared.ensure_loaded(ctx).await;
                self.request_slot(ctx, &stanza, to.domain().as_str(), &q)
            }
            _ => Err(err(StanzaErrorCondition::ServiceUnavailable)),
        };
        reply(ctx, &stanza, r).await;
    }
}

/// A refused request: the stanza error and, where the XEP has one, its own element.
struct Refusal {
    error: StanzaError,
    app: Option<Element>,
}

fn err(c: StanzaErrorCondition) -> Box<Refusal> {
    Box::new(Refusal {
        error: StanzaError::new(c),
        app: None,
    })
}

fn err_text(c: StanzaErrorCondition, text: &str) -> Box<Refusal> {
    Box::new(Refusal {
        error: StanzaError::with_text(c, text),
        app: None,
    })
}

async fn reply(ctx: &ServerCtx, stanza: &Stanza, r: Result<Option<Element>, Box<Refusal>>) {
    match r {
        Ok(p) => router::route(ctx, stanza.iq_result(p)).await,
        Err(refusal) => {
            let Refusal { error, app } = *refusal;
            let Some(mut e) = stanza.error_reply(&error) else {
                return;
            };
            if let Some(app) = app {
                let stanza_ns = e.el.ns.clone();
                if let Some(err_el) = e.el.get_child_mut("error", &stanza_ns) {
                    err_el.push_child(app);
                }
            }
            router::route(ctx, e).await
        }
    }
}

impl UploadService {
    fn disco_info(&self) -> Element {
        let cfg = &self.shared.cfg;
        DiscoInfo {
            node: None,
            identities: vec![Identity::new("store", "file", Some(&cfg.name))],
            features: vec![ns::DISCO_INFO.into(), NS.into()],
            extensions: vec![DataForm::new(
                FormType::Result,
                vec![
                    Field::form_type(NS),
                    Field::new("max-file-size", [cfg.max_file_size.to_string()]),
                ],
            )],
        }
        .into()
    }

    /// XEP-0363 §4: checks the request and the requester's limits, reserves the size and
    /// answers with the PUT and GET URLs.
    fn request_slot(
        &self,
        ctx: &ServerCtx,
        stanza: &Stanza,
        service_domain: &str,
        req: &Element,
    ) -> Result<Option<Element>, Box<Refusal>> {
        let cfg = &self.shared.cfg;
        // Only accounts of the served domains upload (the trusted `from` says whose).
        let owner = match &stanza.from {
            Some(f) if f.node().is_some() && ctx.config.is_local_domain(f.domain().as_str()) => {
                f.to_bare().to_string()
            }
            _ => {
                tracing::info!(from = ?stanza.from, "upload slot refused: not a local account");
                return Err(Box::new(Refusal {
                    error: StanzaError {
                        type_: StanzaErrorType::Cancel,
                        ..StanzaError::with_text(
                            StanzaErrorCondition::NotAllowed,
                            "Only accounts of this server may upload",
                        )
                    },
                    app: None,
                }));
            }
        };
        let (Some(name), Some(size)) = (req.get_attr("filename"), req.get_attr("size")) else {
            return Err(err_text(
                StanzaErrorCondition::BadRequest,
                "filename and size are required",
            ));
        };
        if let Err(why) = check_filename(name, cfg.max_filename_bytes) {
            tracing::info!(owner, why, "upload slot refused: file name");
            return Err(err_text(StanzaErrorCondition::NotAcceptable, why));
        }
        let size = match size.parse::<u64>() {
            Ok(s) if s > 0 => s,
            _ => {
                tracing::info!(owner, "upload slot refused: size");
                return Err(err_text(
                    StanzaErrorCondition::NotAcceptable,
                    "size must be a positive integer",
                ));
            }
        };
        if size > cfg.max_file_size {
            return Err(Box::new(Refusal {
                error: StanzaError {
                    type_: StanzaErrorType::Modify,
                    ..StanzaError::with_text(
                        StanzaErrorCondition::NotAcceptable,
                        format!(
                            "File too large. The maximum file size is {} bytes",
                            cfg.max_file_size
                        ),
                    )
                },
                app: Some(
                    Element::new("file-too-large", NS).child(
                        Element::new("max-file-size", NS).text(cfg.max_file_size.to_string()),
                    ),
                ),
            }));
        }
        let content_type = match req.get_attr("content-type") {
            None | Some("") => None,
            Some(ct) if valid_content_type(ct) => Some(ct.to_ascii_lowercase()),
            Some(_) => {
                return Err(err_text(
                    StanzaErrorCondition::NotAcceptable,
                    "content-type is not a media type",
                ))
            }
        };
        let Some(base) = self.url_base(ctx) else {
            tracing::error!("upload slot refused: no [http] listener and no [upload] url_base");
            return Err(err(StanzaErrorCondition::ServiceUnavailable));
        };
        let now = Instant::now();
        let lifetime = Duration::from_secs(cfg.slot_lifetime);
        let retry = || {
            Element::new("retry", NS).attr(
                "stamp",
                confab_proto::datetime::format_datetime(now_unix() + cfg.slot_lifetime as i64),
            )
        };
        let quota = |text: &str, app: Option<Element>| -> Box<Refusal> {
            Box::new(Refusal {
                error: StanzaError {
                    type_: StanzaErrorType::Wait,
                    ..StanzaError::with_text(StanzaErrorCondition::ResourceConstraint, text)
                },
                app,
            })
        };
        let mut st = self.shared.state();
        if st.pending.len() >= cfg.max_pending_slots {
            st.purge_expired_slots(now);
        }
        let used = st.usage.get(&owner).copied().unwrap_or(0)
            + st.reserved.get(&owner).copied().unwrap_or(0);
        if used.saturating_add(size) > cfg.quota_per_user {
            tracing::info!(owner, used, size, "upload slot refused: quota");
            return Err(quota("Quota reached", None));
        }
        let mine = st.pending.values().filter(|s| s.owner == owner).count();
        if mine >= cfg.max_pending_slots_per_user {
            st.purge_expired_slots(now);
        }
        let mine = st.pending.values().filter(|s| s.owner == owner).count();
        if mine >= cfg.max_pending_slots_per_user || st.pending.len() >= cfg.max_pending_slots {
            tracing::info!(owner, "upload slot refused: too many open slots");
            return Err(quota("Too many open upload slots", Some(retry())));
        }
        let id = new_id();
        let slot = Slot {
            owner: owner.clone(),
            domain: service_domain.to_string(),
            name: name.to_string(),
            size,
            content_type,
            expires: now + lifetime,
            expires_unix: now_unix() + cfg.slot_lifetime as i64,
        };
        let token = self.shared.token(&id, &slot);
        *st.reserved.entry(owner.clone()).or_default() += size;
        st.pending.insert(id.clone(), slot);
        drop(st);
        tracing::debug!(owner, id, size, "upload slot");
        let url = format!("{base}{PATH_PREFIX}/{id}/{}", percent_encode(name));
        Ok(Some(
            Element::new("slot", NS)
                .child(
                    Element::new("put", NS).attr("url", url.clone()).child(
                        Element::new("header", NS)
                            .attr("name", "Authorization")
                            .text(format!("Bearer {token}")),
                    ),
                )
                .child(Element::new("get", NS).attr("url", url)),
        ))
    }

    fn url_base(&self, ctx: &ServerCtx) -> Option<String> {
        match &self.shared.cfg.url_base {
            Some(b) => Some(b.clone()),
            // The plain listener (loopback by default, what local clients and tests reach);
            // with only the HTTPS port open, that one. Public servers set `url_base`.
            None => ctx
                .http_addrs
                .first()
                .map(|a| format!("http://{a}"))
                .or_else(|| {
                    ctx.listener_addrs
                        .iter()
                        .find(|(name, _)| *name == "https")
                        .map(|(_, a)| format!("https://{a}"))
                }),
        }
    }
}

/// Why a file name is refused, if it is: it must name one file (no path), be printable
/// and fit the limit.
fn check_filename(name: &str, max: usize) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > max {
        return Err("file name empty or too long");
    }
    if name == "." || name == ".." {
        return Err("file name is a directory");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err("file name contains '/', '\\' or control characters");
    }
    Ok(())
}

/// A media type as it may go into a `Content-Type` header: `type/subtype` and parameters,
/// printable ASCII only.
fn valid_content_type(ct: &str) -> bool {
    ct.len() <= 255
        && ct
            .split(';')
            .next()
            .is_some_and(|t| t.trim().split('/').filter(|p| !p.is_empty()).count() == 2)
        && ct.chars().all(|c| c.is_ascii_graphic() || c == ' ')
}

/// 128 random bits, hex: unguessable, and safe in a path and a file name.
fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    to_hex(&b)
}

fn to_hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Deletes expired files, at most `sweep_batch` per tick, and forgets expired slots.
struct Sweep {
    shared: Arc<Shared>,
}

#[async_trait]
impl Timer for Sweep {
    async fn tick(&self, ctx: &ServerCtx) {
        let shared = &self.shared;
        shared.ensure_loaded(ctx).await;
        let now = now_unix();
        let expired: Vec<(String, String)> = {
            let mut st = shared.state();
            st.purge_expired_slots(Instant::now());
            st.files
                .iter()
                .filter(|(_, m)| m.expires <= now)
                .take(shared.cfg.sweep_batch)
                .map(|(id, m)| (id.clone(), m.domain.clone()))
                .collect()
        };
        if !expired.is_empty() {
            tracing::info!(files = expired.len(), "deleting expired uploads");
        }
        for (id, domain) in expired {
            shared.delete_file(ctx, &id, &domain).await;
        }
    }
}

struct Lifecycle {
    shared: Arc<Shared>,
}

#[async_trait]
impl LifecycleListener for Lifecycle {
    async fn server_started(&self, ctx: &ServerCtx) {
        self.shared.ensure_loaded(ctx).await;
    }

    /// A deleted account's files go with it.
    async fn account_deleted(&self, ctx: &ServerCtx, account: &confab_proto::jid::BareJid) {
        self.shared.ensure_loaded(ctx).await;
        let owner = account.to_string();
        let mine: Vec<(String, String)> = self
            .shared
            .state()
            .files
            .iter()
            .filter(|(_, m)| m.owner == owner)
            .map(|(id, m)| (id.clone(), m.domain.clone()))
            .collect();
        for (id, domain) in mine {
            self.shared.delete_file(ctx, &id, &domain).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        for ok in ["a.txt", "très cool.jpg", "..a", "a..b", "x y"] {
            assert!(check_filename(ok, 255).is_ok(), "{ok}");
        }
        for bad in [
            "", ".", "..", "a/b", "../x", "a\\b", "a\0b", "a\nb", "a\u{7f}",
        ] {
            assert!(check_filename(bad, 255).is_err(), "{bad:?}");
        }
        assert!(check_filename(&"a".repeat(256), 255).is_err());
    }

    #[test]
    fn content_types() {
        for ok in ["image/jpeg", "text/plain; charset=utf-8"] {
            assert!(valid_content_type(ok), "{ok}");
        }
        for bad in ["image", "/x", "a/b/c", "text/plain\r\nX: y", "ü/x"] {
            assert!(!valid_content_type(bad), "{bad:?}");
        }
    }

    #[test]
    fn hex_and_percent() {
        assert_eq!(
            from_hex(&to_hex(&[0, 1, 254, 255])),
            Some(vec![0, 1, 254, 255])
        );
        assert_eq!(from_hex("0g"), None);
        assert_eq!(from_hex("abc"), None);
        assert_eq!(percent_encode("très cool.jpg"), "tr%C3%A8s%20cool.jpg");
    }
}
