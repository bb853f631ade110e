//! The module system: every feature is one module that, when enabled, registers what it
//! handles — IQ handlers, stanza hooks, disco features and identities, stream features and
//! lifecycle listeners. Disabling a module in `[modules] disabled` removes all of it.
//!
//! Read `modules/ping.rs` first: it is the smallest complete module.

use crate::session::SessionInfo;
use crate::ServerCtx;
use async_trait::async_trait;
use confab_proto::error::StanzaError;
use confab_proto::jid::BareJid;
use confab_proto::stanza::{IqType, Stanza};
use confab_proto::xml::Element;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Who an IQ is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqTarget {
    /// The server itself (`to` is a served domain).
    Host,
    /// A local account's bare JID; an IQ without `to` from a client is for its own account.
    Account,
}

/// What an IQ handler answers.
pub enum IqReply {
    /// A `type='result'` reply with this payload (or none).
    Result(Option<Element>),
    /// A `type='error'` reply.
    Error(StanzaError),
    /// The handler answered (or will answer) by itself.
    Handled,
}

#[async_trait]
pub trait IqHandler: Send + Sync {
    async fn handle_iq(&self, ctx: &ServerCtx, iq: &Stanza, target: IqTarget) -> IqReply;
}

/// Points in a stanza's path where modules can look at it and take it over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HookPoint {
    /// A stanza a local client sent, after its `from` was stamped and before routing.
    FromClient,
    /// A message, presence or iq addressed to a local account's bare JID (not an IQ that a
    /// module answers for the account).
    ToBareJid,
    /// A stanza addressed to a full JID of a local account.
    ToFullJid,
    /// A message for a local account none of whose resources can take it right now; the
    /// place for offline storage. If no hook takes it, it is bounced.
    Undeliverable,
    /// A stanza about to be queued for one session (`HookArgs::target`), whoever made it:
    /// routed stanzas and what modules send (presence, roster and block-list pushes, offline
    /// messages) alike. The last point where a module can hold one back or change it for
    /// that session (client state, privacy); `Handled` means it is not queued.
    Deliver,
}

/// What a hook sees besides the stanza.
pub struct HookArgs {
    pub point: HookPoint,
    /// The session whose input led here (the sender at `FromClient`), if any: a stanza a
    /// module made while handling a client's request has that client as its origin.
    pub origin: Option<Arc<SessionInfo>>,
    /// At `Deliver`: the session the stanza is for.
    pub target: Option<Arc<SessionInfo>>,
}

impl HookArgs {
    /// At `point`, with no origin or target session.
    pub fn at(point: HookPoint) -> Self {
        HookArgs {
            point,
            origin: None,
            target: None,
        }
    }
}

pub enum HookResult {
    /// Carry on along the normal path (possibly with a changed stanza).
    Continue,
    /// The hook dealt with the stanza; stop here.
    Handled,
}

#[async_trait]
pub trait StanzaHook: Send + Sync {
    async fn on_stanza(&self, ctx: &ServerCtx, args: &HookArgs, stanza: &mut Stanza) -> HookResult;
}

/// Server, session and account lifecycle events.
#[async_trait]
pub trait LifecycleListener: Send + Sync {
    /// The server is up: listeners bound, timers running.
    async fn server_started(&self, _ctx: &ServerCtx) {}
    /// The server is stopping (sessions are being closed); the last chance to save state.
    async fn server_stopping(&self, _ctx: &ServerCtx) {}
    async fn session_bound(&self, _ctx: &ServerCtx, _session: &SessionInfo) {}
    /// A parked session was picked up by a new connection (XEP-0198 resumption): the
    /// place to put back in front of its queue what the client had not acknowledged.
    async fn session_resumed(
        &self,
        _ctx: &ServerCtx,
        _session: &SessionInfo,
        _outbox: &mut crate::session::Outbox,
    ) {
    }
    /// The session ended (already unbound). With the kick-old policy a new session may
    /// hold the same full JID by now: compare `session.id`, not just the JID.
    async fn session_closed(&self, _ctx: &ServerCtx, _session: &SessionInfo) {}
    /// The account was deleted: remove everything the module stores for it.
    async fn account_deleted(&self, _ctx: &ServerCtx, _account: &BareJid) {}
}

/// Where a stream feature is offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureStage {
    /// Before authentication, beside SASL; offered only once the stream is encrypted.
    PreAuth,
    /// After authentication, beside resource binding.
    Authenticated,
}

/// The connection a pre-authentication IQ arrived on: there is no account and no `from`
/// yet, only what the transport knows, plus per-connection state that handlers keep between
/// IQs of the same stream (e.g. an accepted invitation token).
pub struct PreAuthConn {
    pub peer: SocketAddr,
    /// TLS is established (STARTTLS or direct TLS).
    pub secure: bool,
    /// The domain the client's stream header named.
    pub domain: String,
    /// Per-connection values, keyed by names the module chooses (prefix them with the
    /// module name); dropped with the connection.
    pub state: HashMap<String, String>,
}

/// Answers IQs a client sends before it authenticates (e.g. XEP-0077 registration). The
/// reply goes back on the same stream, without `to`.
#[async_trait]
pub trait PreAuthIqHandler: Send + Sync {
    async fn handle_pre_auth_iq(
        &self,
        ctx: &ServerCtx,
        conn: &mut PreAuthConn,
        iq: &Stanza,
    ) -> IqReply;
}

/// A service hosted on its own domain (`conference.example.org`, `pubsub.example.org`, …):
/// it gets every stanza addressed to that domain or to any JID under it
/// (`room@conference.example.org/nick`), with a trusted `from`, and answers through the
/// router like any other sender. Registered with `Registry::service`.
#[async_trait]
pub trait Service: Send + Sync {
    async fn handle(&self, ctx: &ServerCtx, stanza: Stanza);
}

/// Where stanzas for domains this server does not serve go (s2s plugs in here). Without
/// one they bounce with `<remote-server-not-found/>`.
#[async_trait]
pub trait RemoteRoute: Send + Sync {
    async fn route(&self, ctx: &ServerCtx, stanza: Stanza);
}

/// A service domain with what disco#items shows for it.
#[derive(Clone)]
pub struct ServiceDomain {
    pub domain: String,
    /// The human-readable name in the host's disco#items.
    pub name: Option<String>,
    pub service: Arc<dyn Service>,
}

/// Work a module does every `period` (see `Registry::timer`). Ticks stop when the server
/// shuts down; a tick never overlaps the previous one.
#[async_trait]
pub trait Timer: Send + Sync {
    async fn tick(&self, ctx: &ServerCtx);
}

/// What a request that needed storage gets when storage failed (the database is away or
/// busy): `internal-server-error` of type `wait`, so the client may try again later.
/// Stored data found invalid is not this (type `cancel`: retrying will not help).
pub fn storage_failed() -> confab_proto::error::StanzaError {
    confab_proto::error::StanzaError {
        type_: confab_proto::error::StanzaErrorType::Wait,
        ..confab_proto::error::StanzaError::new(
            confab_proto::error::StanzaErrorCondition::InternalServerError,
        )
    }
}

/// A module's typed configuration section: `[name]` in the configuration file (and
/// `CONFABD_NAME__KEY` in the environment), read with `Registry::section`. Unknown keys are
/// errors (`#[serde(deny_unknown_fields)]`), missing ones take the defaults.
pub trait ModuleConfig: serde::de::DeserializeOwned + Default {
    /// Checks values beyond their types; the message names the offending key.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A module's own storage (Prosody's `open_store`): small documents per account or per
/// domain under a kind the module picks, on whatever backend the server runs. Account
/// data goes with the account when it is deleted.
#[derive(Clone, Copy, Debug)]
pub struct ModuleStore {
    kind: &'static str,
}

impl ModuleStore {
    pub async fn get(
        &self,
        ctx: &ServerCtx,
        account: &BareJid,
        key: &str,
    ) -> Result<Option<String>, confab_store::StoreError> {
        let (d, u) = crate::accounts::parts(account);
        ctx.stores.data.get_account_data(d, u, self.kind, key).await
    }

    pub async fn set(
        &self,
        ctx: &ServerCtx,
        account: &BareJid,
        key: &str,
        value: &str,
    ) -> Result<(), confab_store::StoreError> {
        let (d, u) = crate::accounts::parts(account);
        ctx.stores
            .data
            .set_account_data(d, u, self.kind, key, value)
            .await
    }

    pub async fn delete(
        &self,
        ctx: &ServerCtx,
        account: &BareJid,
        key: &str,
    ) -> Result<bool, confab_store::StoreError> {
        let (d, u) = crate::accounts::parts(account);
        ctx.stores
            .data
            .delete_account_data(d, u, self.kind, key)
            .await
    }

    pub async fn get_host(
        &self,
        ctx: &ServerCtx,
        domain: &str,
        key: &str,
    ) -> Result<Option<String>, confab_store::StoreError> {
        ctx.stores.data.get_host_data(domain, self.kind, key).await
    }

    pub async fn set_host(
        &self,
        ctx: &ServerCtx,
        domain: &str,
        key: &str,
        value: &str,
    ) -> Result<(), confab_store::StoreError> {
        ctx.stores
            .data
            .set_host_data(domain, self.kind, key, value)
            .await
    }

    /// Deletes `key` of `domain`; whether it was there.
    pub async fn delete_host(
        &self,
        ctx: &ServerCtx,
        domain: &str,
        key: &str,
    ) -> Result<bool, confab_store::StoreError> {
        ctx.stores
            .data
            .delete_host_data(domain, self.kind, key)
            .await
    }

    /// Every (key, value) of `domain` under this store's kind (e.g. a service's rooms,
    /// read at start).
    pub async fn list_host(
        &self,
        ctx: &ServerCtx,
        domain: &str,
    ) -> Result<Vec<(String, String)>, confab_store::StoreError> {
        ctx.stores.data.list_host_data(domain, self.kind).await
    }
}

/// What a pre-bind handler decides.
pub enum PreBind {
    /// Answer with this element; the client may still bind (or try again).
    Reply(Element),
    /// Carry on the account's parked session `session` on this connection instead of
    /// binding a new one (XEP-0198 resumption): `resumed` is sent when it is there,
    /// `failed` when it is not (expired, or never was).
    Resume {
        session: u64,
        resumed: Element,
        failed: Element,
    },
}

/// Handles an element an authenticated client sends instead of binding a resource (e.g.
/// XEP-0198 `<resume/>`). Registered with `Registry::pre_bind`.
#[async_trait]
pub trait PreBindHandler: Send + Sync {
    async fn handle(&self, ctx: &ServerCtx, account: &BareJid, el: &Element) -> PreBind;
}

/// Handles a top-level element that is not a stanza, sent by a bound session's client
/// (XEP-0198 `<r/>`/`<a/>`/`<enable/>`, XEP-0352 `<active/>`/`<inactive/>`). The replies
/// are written to that session's connection at once, ahead of its queue; an error ends the
/// stream with it. Registered with `Registry::session_element`.
#[async_trait]
pub trait SessionElementHandler: Send + Sync {
    async fn handle(
        &self,
        ctx: &ServerCtx,
        session: &Arc<SessionInfo>,
        el: &Element,
    ) -> Result<Vec<Element>, confab_proto::error::StreamError>;
}

/// A disco identity (XEP-0030).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub category: String,
    pub type_: String,
    pub name: Option<String>,
}

/// A feature module.
pub trait Module: Send + Sync + 'static {
    /// The name used in `[modules] disabled` and in logs.
    fn name(&self) -> &'static str;
    /// Registers what this module handles. Only declares (no I/O, no tasks): it also runs
    /// on a scratch registry for a disabled module, to learn which sections it reads.
    fn register(self: Arc<Self>, reg: &mut Registry);
    /// Called once every enabled module has registered, for what depends on the complete
    /// registration (e.g. the entity-capabilities hash of all disco features). Must not
    /// add disco identities or features.
    fn finish(self: Arc<Self>, _reg: &mut Registry) {}
}

/// A hook with its priority (higher runs first).
type PrioritizedHook = (i32, Arc<dyn StanzaHook>);

/// Everything enabled modules registered; built once at start and then read-only, so the
/// routing path takes no locks to consult it.
#[derive(Default)]
pub struct Registry {
    iq: HashMap<(IqType, IqTarget, String), Arc<dyn IqHandler>>,
    hooks: HashMap<HookPoint, Vec<PrioritizedHook>>,
    lifecycle: Vec<Arc<dyn LifecycleListener>>,
    host_features: Vec<String>,
    account_features: Vec<String>,
    identities: Vec<Identity>,
    stream_features: Vec<(FeatureStage, Element)>,
    pre_auth_iq: HashMap<String, Arc<dyn PreAuthIqHandler>>,
    pre_bind: HashMap<(String, String), Arc<dyn PreBindHandler>>,
    http_routes: std::collections::BTreeMap<String, axum::routing::MethodRouter<ServerCtx>>,
    listeners: Vec<ModuleListener>,
    admin_views: Vec<(&'static str, Arc<dyn AdminView>)>,
    session_elements: HashMap<(String, String), Arc<dyn SessionElementHandler>>,
    services: HashMap<String, ServiceDomain>,
    remote: Option<Arc<dyn RemoteRoute>>,
    timers: Vec<(std::time::Duration, Arc<dyn Timer>)>,
    /// Configuration sections modules read.
    claimed_sections: Vec<String>,
    /// Registration mistakes (e.g. a domain claimed twice), reported by `build_with_config`.
    errors: Vec<String>,
    modules: Vec<&'static str>,
    /// The configuration modules register under (for config-dependent registrations).
    config: crate::config::Config,
}

impl Registry {
    /// Handles IQs of this type whose payload is in `ns`, sent to `target`.
    pub fn iq(&mut self, type_: IqType, target: IqTarget, ns: &str, h: Arc<dyn IqHandler>) {
        self.iq.insert((type_, target, ns.to_string()), h);
    }

    /// Adds a stanza hook; higher priority runs first.
    pub fn hook(&mut self, point: HookPoint, priority: i32, h: Arc<dyn StanzaHook>) {
        let v = self.hooks.entry(point).or_default();
        v.push((priority, h));
        v.sort_by_key(|h| std::cmp::Reverse(h.0));
    }

    pub fn lifecycle(&mut self, l: Arc<dyn LifecycleListener>) {
        self.lifecycle.push(l);
    }

    /// A disco#info feature of the server.
    pub fn host_feature(&mut self, var: &str) {
        if !self.host_features.iter().any(|f| f == var) {
            self.host_features.push(var.to_string());
        }
    }

    /// A disco#info feature of every account's bare JID.
    pub fn account_feature(&mut self, var: &str) {
        if !self.account_features.iter().any(|f| f == var) {
            self.account_features.push(var.to_string());
        }
    }

    pub fn identity(&mut self, category: &str, type_: &str, name: Option<&str>) {
        self.identities.push(Identity {
            category: category.into(),
            type_: type_.into(),
            name: name.map(str::to_string),
        });
    }

    pub fn stream_feature(&mut self, stage: FeatureStage, e: Element) {
        self.stream_features.push((stage, e));
    }

    /// Handles get/set IQs whose payload is in `ns` sent before authentication.
    pub fn pre_auth_iq(&mut self, ns: &str, h: Arc<dyn PreAuthIqHandler>) {
        self.pre_auth_iq.insert(ns.to_string(), h);
    }

    pub fn pre_auth_iq_handler(&self, ns: &str) -> Option<&Arc<dyn PreAuthIqHandler>> {
        self.pre_auth_iq.get(ns)
    }

    /// Handles the top-level element `name` in `ns` sent after authentication and before
    /// a resource is bound.
    pub fn pre_bind(&mut self, name: &str, ns: &str, h: Arc<dyn PreBindHandler>) {
        self.pre_bind.insert((name.to_string(), ns.to_string()), h);
    }

    pub fn pre_bind_handler(&self, name: &str, ns: &str) -> Option<&Arc<dyn PreBindHandler>> {
        self.pre_bind.get(&(name.to_string(), ns.to_string()))
    }

    /// Handles the non-stanza top-level element `name` in `ns` on bound sessions.
    pub fn session_element(&mut self, name: &str, ns: &str, h: Arc<dyn SessionElementHandler>) {
        self.session_elements
            .insert((name.to_string(), ns.to_string()), h);
    }

    pub fn session_element_handler(
        &self,
        name: &str,
        ns: &str,
    ) -> Option<&Arc<dyn SessionElementHandler>> {
        self.session_elements
            .get(&(name.to_string(), ns.to_string()))
    }

    /// Hosts a service on `domain` (normalised, not a served host domain, not taken by
    /// another service); it appears in each host's disco#items under `name`.
    pub fn service(&mut self, domain: &str, name: Option<&str>, service: Arc<dyn Service>) {
        let valid = confab_proto::jid::BareJid::new(domain)
            .is_ok_and(|j| j.node().is_none() && j.as_str() == domain);
        if !valid {
            self.errors.push(format!(
                "service domain '{domain}' is not a normalised domain"
            ));
        } else if self.config.is_local_domain(domain) || self.services.contains_key(domain) {
            self.errors
                .push(format!("domain '{domain}' is served twice"));
        } else {
            self.services.insert(
                domain.to_string(),
                ServiceDomain {
                    domain: domain.to_string(),
                    name: name.map(str::to_string),
                    service,
                },
            );
        }
    }

    /// The service hosted on this domain, if any.
    pub fn service_for(&self, domain: &str) -> Option<&ServiceDomain> {
        self.services.get(domain)
    }

    /// Every hosted service, sorted by domain.
    pub fn services(&self) -> Vec<&ServiceDomain> {
        let mut v: Vec<_> = self.services.values().collect();
        v.sort_by(|a, b| a.domain.cmp(&b.domain));
        v
    }

    /// Takes stanzas for domains not served here (one route; a second is an error).
    pub fn remote_route(&mut self, r: Arc<dyn RemoteRoute>) {
        if self.remote.is_some() {
            self.errors
                .push("two modules claim the remote route".into());
        }
        self.remote = Some(r);
    }

    pub fn remote(&self) -> Option<&Arc<dyn RemoteRoute>> {
        self.remote.as_ref()
    }

    /// Serves `route` at `path` on the HTTP listeners (`[http]`: the plain port and the TLS
    /// port); handlers can extract the server with `axum::extract::State<ServerCtx>`, the
    /// client's address with `ConnectInfo<SocketAddr>` (behind a trusted proxy, the one it
    /// forwarded) and the whole connection with `crate::http::HttpConnection`. Paths are absolute (`/ws`,
    /// `/upload/{id}`), each registered once.
    pub fn http_route(&mut self, path: &str, route: axum::routing::MethodRouter<ServerCtx>) {
        if !valid_http_path(path) {
            self.errors
                .push(format!("HTTP route '{path}' is not a valid path"));
        } else if self.http_routes.contains_key(path) {
            self.errors
                .push(format!("HTTP route '{path}' is registered twice"));
        } else {
            self.http_routes.insert(path.to_string(), route);
        }
    }

    /// Serves `router` on a listener of the module's own at `addrs` (the admin console on
    /// 9090, kept apart from the public `[http]` listener so it can stay on loopback). The
    /// server binds it with the others (a port in use stops the start) and stops it at
    /// shutdown; handlers see the peer's address (`ConnectInfo<SocketAddr>`). `name` finds the
    /// bound addresses again (`ServerState::listener_addrs`).
    pub fn http_listener(
        &mut self,
        name: &'static str,
        addrs: Vec<std::net::SocketAddr>,
        router: axum::Router<ServerCtx>,
    ) {
        self.push_listener(name, addrs, router, false);
    }

    /// Like `http_listener`, over TLS with the server's certificate (the `[tls]` one the
    /// client ports use), handshakes bounded by `[http] tls_handshake_timeout`.
    pub fn https_listener(
        &mut self,
        name: &'static str,
        addrs: Vec<std::net::SocketAddr>,
        router: axum::Router<ServerCtx>,
    ) {
        self.push_listener(name, addrs, router, true);
    }

    fn push_listener(
        &mut self,
        name: &'static str,
        addrs: Vec<std::net::SocketAddr>,
        router: axum::Router<ServerCtx>,
        tls: bool,
    ) {
        if self.listeners.iter().any(|l| l.name == name) {
            self.errors
                .push(format!("listener '{name}' is registered twice"));
        } else {
            self.listeners.push(ModuleListener {
                name,
                addrs,
                router,
                tls,
            });
        }
    }

    /// Offers administrators `view` under `name` (e.g. `rooms`), for the admin console.
    pub fn admin_view(&mut self, name: &'static str, view: Arc<dyn AdminView>) {
        if self.admin_views.iter().any(|(n, _)| *n == name) {
            self.errors
                .push(format!("admin view '{name}' is registered twice"));
        } else {
            self.admin_views.push((name, view));
        }
    }

    /// The admin view registered under `name`.
    pub fn admin_view_named(&self, name: &str) -> Option<&Arc<dyn AdminView>> {
        self.admin_views
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The listeners modules registered with `http_listener`.
    pub fn listeners(&self) -> &[ModuleListener] {
        &self.listeners
    }

    /// The HTTP routes every module registered, as one router (`None` without routes).
    pub fn http_router(&self) -> Option<axum::Router<ServerCtx>> {
        if self.http_routes.is_empty() {
            return None;
        }
        let mut router = axum::Router::new();
        for (path, route) in &self.http_routes {
            router = router.route(path, route.clone());
        }
        Some(router)
    }

    /// Reads the module's configuration section `[name]` (defaults where absent). A
    /// section that does not parse or validate keeps the server from starting, with a
    /// message naming it; the defaults are returned meanwhile.
    pub fn section<T: ModuleConfig>(&mut self, name: &str) -> T {
        if !self.claimed_sections.iter().any(|c| c == name) {
            self.claimed_sections.push(name.to_string());
        }
        match self.config.section(name) {
            Ok(t) => t,
            Err(e) => {
                // Two modules may read one section (roster limits); say it once.
                let e = match e {
                    crate::config::ConfigError::Invalid(m) => m,
                    e => e.to_string(),
                };
                if !self.errors.contains(&e) {
                    self.errors.push(e);
                }
                T::default()
            }
        }
    }

    /// The module's own storage under `kind` (pick the module's name).
    pub fn store(&self, kind: &'static str) -> ModuleStore {
        ModuleStore { kind }
    }

    /// Runs `timer` every `period` while the server runs (started after every module
    /// registered, stopped at shutdown).
    pub fn timer(&mut self, period: std::time::Duration, timer: Arc<dyn Timer>) {
        self.timers
            .push((period.max(std::time::Duration::from_millis(10)), timer));
    }

    pub fn timers(&self) -> &[(std::time::Duration, Arc<dyn Timer>)] {
        &self.timers
    }

    /// A registration problem that keeps the server from starting.
    pub fn error(&mut self, e: impl Into<String>) {
        self.errors.push(e.into());
    }

    /// The server configuration, for modules whose registrations depend on it.
    pub fn config(&self) -> &crate::config::Config {
        &self.config
    }

    pub fn iq_handler(
        &self,
        type_: IqType,
        target: IqTarget,
        ns: &str,
    ) -> Option<&Arc<dyn IqHandler>> {
        self.iq.get(&(type_, target, ns.to_string()))
    }

    pub fn hooks(&self, point: HookPoint) -> impl Iterator<Item = &Arc<dyn StanzaHook>> {
        self.hooks
            .get(&point)
            .into_iter()
            .flat_map(|v| v.iter().map(|(_, h)| h))
    }

    /// Whether any hook is registered at this point (lets the router skip work).
    pub fn has_hooks(&self, point: HookPoint) -> bool {
        self.hooks.get(&point).is_some_and(|v| !v.is_empty())
    }

    pub fn lifecycle_listeners(&self) -> &[Arc<dyn LifecycleListener>] {
        &self.lifecycle
    }

    pub fn host_features(&self) -> &[String] {
        &self.host_features
    }

    pub fn account_features(&self) -> &[String] {
        &self.account_features
    }

    pub fn identities(&self) -> &[Identity] {
        &self.identities
    }

    pub fn stream_features(&self, stage: FeatureStage) -> impl Iterator<Item = &Element> {
        self.stream_features
            .iter()
            .filter(move |(s, _)| *s == stage)
            .map(|(_, e)| e)
    }

    /// Names of the enabled modules, in load order.
    pub fn modules(&self) -> &[&'static str] {
        &self.modules
    }

    /// Registers the enabled modules from this list.
    pub fn build(all: Vec<Arc<dyn Module>>, disabled: &[String]) -> Result<Registry, String> {
        Self::build_with_config(all, disabled, &crate::config::Config::default())
    }

    /// Like `build`, with the configuration visible to modules through `config()`. Fails
    /// with every registration problem found.
    pub fn build_with_config(
        all: Vec<Arc<dyn Module>>,
        disabled: &[String],
        config: &crate::config::Config,
    ) -> Result<Registry, String> {
        let mut reg = Registry {
            config: config.clone(),
            ..Registry::default()
        };
        let mut enabled = Vec::new();
        // Sections of disabled modules are ignored, not unknown: a dry registration on a
        // scratch registry (registering only declares) tells which sections they read.
        let mut ignored: Vec<String> = disabled.to_vec();
        for m in all {
            if disabled.iter().any(|d| d == m.name()) {
                tracing::info!(module = m.name(), "module disabled by configuration");
                let mut scratch = Registry {
                    config: config.clone(),
                    ..Registry::default()
                };
                m.clone().register(&mut scratch);
                ignored.extend(scratch.claimed_sections);
                continue;
            }
            reg.modules.push(m.name());
            m.clone().register(&mut reg);
            enabled.push(m);
        }
        for m in enabled {
            m.finish(&mut reg);
        }
        // Every section belongs to someone: a typo must not silently configure nothing.
        let unclaimed: Vec<String> = config
            .sections
            .keys()
            .filter(|k| !reg.claimed_sections.contains(k) && !ignored.contains(k))
            .map(|k| format!("unknown configuration section [{k}]"))
            .collect();
        reg.errors.extend(unclaimed);
        if reg.errors.is_empty() {
            Ok(reg)
        } else {
            Err(reg.errors.join("; "))
        }
    }
}

/// One row of an `AdminView`: its id (what `act` takes) and its cells, in column order.
#[derive(Clone, Debug, Default)]
pub struct AdminRow {
    pub id: String,
    pub cells: Vec<String>,
}

/// What a module lets administrators see and act on (the MUC module: its rooms). The admin
/// console lists the rows and offers the actions; the module does the work by its own rules,
/// so the console needs no knowledge of the feature.
#[async_trait]
pub trait AdminView: Send + Sync {
    /// Column keys (short, stable words such as `room`, `occupants`; the console translates
    /// them), one per cell.
    fn columns(&self) -> Vec<&'static str>;
    /// The current rows.
    async fn rows(&self, ctx: &ServerCtx) -> Vec<AdminRow>;
    /// Actions offered on each row (e.g. `destroy`).
    fn actions(&self) -> Vec<&'static str>;
    /// Does `action` to the row `id` on behalf of administrator `actor`; the error says why
    /// not (no such row, unknown action).
    async fn act(
        &self,
        ctx: &ServerCtx,
        id: &str,
        action: &str,
        actor: &BareJid,
    ) -> Result<(), String>;
}

/// A module's own HTTP listener (see `Registry::http_listener`).
#[derive(Clone)]
pub struct ModuleListener {
    pub name: &'static str,
    pub addrs: Vec<std::net::SocketAddr>,
    pub router: axum::Router<ServerCtx>,
    /// Served over TLS with the server's certificate (`Registry::https_listener`).
    pub tls: bool,
}

/// A path axum accepts: absolute, plain segments or whole-segment `{name}` captures (a
/// trailing `{*name}` too), no empty segments.
fn valid_http_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    segments.iter().enumerate().all(|(i, seg)| {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let name = match name.strip_prefix('*') {
                Some(n) if i == last => n,
                Some(_) => return false,
                None => name,
            };
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        } else {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~!$&'()+,;=@".contains(c))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::valid_http_path;

    #[test]
    fn http_paths() {
        for ok in [
            "/",
            "/ws",
            "/http-bind",
            "/upload/{id}/{name}",
            "/files/{*rest}",
            "/a.b/c~d",
        ] {
            assert!(valid_http_path(ok), "{ok}");
        }
        for bad in [
            "",
            "ws",
            "//",
            "/a//b",
            "/{}",
            "/{*rest}/x",
            "/a{b}",
            "/sp ace",
            "/{a-b}",
        ] {
            assert!(!valid_http_path(bad), "{bad}");
        }
    }
}
