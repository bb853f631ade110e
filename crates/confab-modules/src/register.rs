//! XEP-0077 In-Band Registration: account creation before authentication (policy `open`,
//! or `invite` with XEP-0445 pre-authentication tokens from `confabd invite create`), and,
//! once authenticated, password change and account removal.
//!
//! Registration is answered only on encrypted streams. Error replies never echo the
//! request's payload, which carries a password.

use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition as Cond, StanzaErrorType};
use confab_proto::jid::BareJid;
use confab_proto::payloads::register::RegisterQuery;
use confab_proto::stanza::{IqType, Stanza};
use confab_proto::xml::Element;
use confab_server::accounts::{self, AccountError};
use confab_server::module::ModuleConfig;
use confab_server::module::{
    FeatureStage, IqHandler, IqReply, IqTarget, Module, PreAuthConn, PreAuthIqHandler, Registry,
};
use confab_server::ServerCtx;
use confab_store::{StoreError, Stores};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const NS: &str = confab_proto::payloads::register::NS;
/// The stream feature of XEP-0077 §8.
pub const FEATURE_NS: &str = "http://jabber.org/features/iq-register";
/// XEP-0445: the `<preauth/>` IQ and its stream feature.
pub const PARS_NS: &str = "urn:xmpp:pars:0";
pub const TOKEN_FEATURE_NS: &str = "urn:xmpp:ibr-token:0";
/// Host-data kind of invitation tokens.
pub const INVITE_KIND: &str = "invite";

/// Per-connection state keys (see `PreAuthConn::state`).
const STATE_TOKEN: &str = "register.token";
const STATE_DONE: &str = "register.done";
const STATE_ATTEMPTS: &str = "register.attempts";
/// Tokens are ours (32 alphanumerics); anything much longer is not worth a lookup.
const MAX_TOKEN_LEN: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationPolicy {
    /// No in-band registration (accounts come from `confabd user add`).
    Closed,
    /// Anyone may register in-band (XEP-0077), within the rate limit.
    Open,
    /// Only holders of an invitation token (`confabd invite create`, XEP-0401/0445).
    Invite,
}

/// `[registration]`: XEP-0077 In-Band Registration and account self-service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationConfig {
    pub policy: RegistrationPolicy,
    /// Shortest password accepted for registration and password changes, in characters.
    pub min_password_length: usize,
    /// Accounts one IP address may register per `rate_window` (0: unlimited).
    pub rate_limit_per_ip: u32,
    /// Seconds of the per-IP registration window.
    pub rate_window: u64,
    /// Registration requests one stream may make, failed or not (0: unlimited); each
    /// costs a database lookup and possibly a key derivation.
    pub max_attempts_per_stream: u32,
    /// Seconds an invitation stays valid when `confabd invite create` gets no --expires.
    pub invite_expiry: u64,
    /// Users may change their password in-band.
    pub allow_password_change: bool,
    /// Users may delete their own account in-band.
    pub allow_account_removal: bool,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            policy: RegistrationPolicy::Closed,
            min_password_length: 8,
            rate_limit_per_ip: 5,
            rate_window: 3600,
            max_attempts_per_stream: 5,
            invite_expiry: 7 * 24 * 3600,
            allow_password_change: true,
            allow_account_removal: true,
        }
    }
}

impl ModuleConfig for RegistrationConfig {
    fn validate(&self) -> Result<(), String> {
        if self.min_password_length == 0 || self.min_password_length > 1024 {
            return Err("min_password_length must be between 1 and 1024".into());
        }
        if self.rate_window == 0 || self.invite_expiry == 0 {
            return Err("rate_window and invite_expiry must be positive".into());
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct Register {
    config: OnceLock<RegistrationConfig>,
    /// Successful registrations per IP address within the rate window.
    recent: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Register {
    fn config(&self) -> &RegistrationConfig {
        self.config.get_or_init(RegistrationConfig::default)
    }
}

impl Module for Register {
    fn name(&self) -> &'static str {
        "register"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let config: RegistrationConfig = reg.section("registration");
        let policy = config.policy;
        let _ = self.config.set(config);
        // Always answered before auth, so a closed server says service-unavailable
        // (XEP-0077 §3.1) instead of ending the stream.
        reg.pre_auth_iq(NS, self.clone());
        if policy != RegistrationPolicy::Closed {
            reg.stream_feature(FeatureStage::PreAuth, Element::new("register", FEATURE_NS));
            reg.host_feature(NS);
        }
        if policy == RegistrationPolicy::Invite {
            reg.pre_auth_iq(PARS_NS, self.clone());
            reg.stream_feature(
                FeatureStage::PreAuth,
                Element::new("register", TOKEN_FEATURE_NS),
            );
        }
        for t in [IqType::Get, IqType::Set] {
            reg.iq(t, IqTarget::Host, NS, self.clone());
            reg.iq(t, IqTarget::Account, NS, self.clone());
        }
    }
}

/// The per-address registration limit was reached.
fn rate_limited(ip: IpAddr) -> IqReply {
    tracing::info!(%ip, "registration rate limit reached");
    IqReply::Error(StanzaError {
        type_: StanzaErrorType::Wait,
        ..StanzaError::with_text(
            Cond::PolicyViolation,
            "too many registrations from this address; try again later",
        )
    })
}

fn err(c: Cond) -> IqReply {
    IqReply::Error(StanzaError::new(c))
}

fn err_text(c: Cond, text: &str) -> IqReply {
    IqReply::Error(StanzaError::with_text(c, text))
}

impl Register {
    /// Takes a slot in the IP's window; false when the limit is reached.
    fn reserve(&self, ip: IpAddr, cfg: &RegistrationConfig) -> bool {
        if cfg.rate_limit_per_ip == 0 {
            return true;
        }
        let window = Duration::from_secs(cfg.rate_window);
        let now = Instant::now();
        let mut m = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() > 4096 {
            // Forget addresses whose window has passed, so the map stays small.
            m.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
        let q = m.entry(ip).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() >= usize::try_from(cfg.rate_limit_per_ip).unwrap_or(usize::MAX) {
            return false;
        }
        q.push_back(now);
        true
    }

    /// Gives back a slot taken for a registration that failed.
    fn release(&self, ip: IpAddr) {
        let mut m = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = m.get_mut(&ip) {
            q.pop_back();
        }
    }

    fn form(&self, policy: RegistrationPolicy, conn: &PreAuthConn) -> IqReply {
        let text = if policy == RegistrationPolicy::Invite && !conn.state.contains_key(STATE_TOKEN)
        {
            "Registration on this server needs an invitation: present its token \
             (XEP-0445) first, then choose a username and password."
        } else {
            "Choose a username and password for use with this service."
        };
        IqReply::Result(Some(
            RegisterQuery {
                instructions: Some(text.into()),
                username: Some(String::new()),
                password: Some(String::new()),
                ..RegisterQuery::default()
            }
            .into(),
        ))
    }

    /// XEP-0445 §4: checks a token and remembers it for this stream; it is used up only by
    /// a successful registration, and its expiry is not checked again.
    async fn preauth(&self, ctx: &ServerCtx, conn: &mut PreAuthConn, iq: &Stanza) -> IqReply {
        if iq.iq_type() != Some(IqType::Set) {
            return err(Cond::BadRequest);
        }
        let token = iq
            .iq_payload()
            .and_then(|p| p.get_attr("token"))
            .unwrap_or_default();
        if token.is_empty() {
            return err_text(Cond::BadRequest, "no token");
        }
        match find_invite(&ctx.stores, &conn.domain, token).await {
            Ok(Some(inv)) if !inv.is_expired(now_unix()) => {
                conn.state.insert(STATE_TOKEN.into(), token.to_string());
                IqReply::Result(None)
            }
            Ok(_) => err_text(
                Cond::ItemNotFound,
                "The provided token is invalid or expired",
            ),
            Err(e) => {
                tracing::error!(error = %e, "invite lookup failed");
                IqReply::Error(confab_server::module::storage_failed())
            }
        }
    }

    async fn register_account(
        &self,
        ctx: &ServerCtx,
        conn: &mut PreAuthConn,
        q: &Element,
    ) -> IqReply {
        let cfg = self.config();
        if conn.state.contains_key(STATE_DONE) {
            // XEP-0077 §3.1.1: one identity per stream.
            return err_text(
                Cond::NotAcceptable,
                "an account was already registered on this stream",
            );
        }
        // Every attempt may cost a lookup and a key derivation: a stream gets a few, then
        // must reconnect (and meet the per-connection and per-IP limits again).
        let attempts = conn
            .state
            .get(STATE_ATTEMPTS)
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
            .saturating_add(1);
        conn.state
            .insert(STATE_ATTEMPTS.into(), attempts.to_string());
        if cfg.max_attempts_per_stream > 0 && attempts > cfg.max_attempts_per_stream {
            // Cancel: retrying on this stream never helps.
            return IqReply::Error(StanzaError {
                type_: StanzaErrorType::Cancel,
                ..StanzaError::with_text(
                    Cond::PolicyViolation,
                    "too many registration attempts on this stream; reconnect to try again",
                )
            });
        }
        let q = match RegisterQuery::try_from(q) {
            Ok(q) => q,
            Err(e) => return IqReply::Error(e.to_stanza_error()),
        };
        if q.remove {
            // XEP-0077 §3.2: nobody is registered on an unauthenticated stream.
            return err(Cond::UnexpectedRequest);
        }
        let (Some(username), Some(password)) = (q.username, q.password) else {
            return err_text(Cond::NotAcceptable, "username and password are required");
        };
        if username.is_empty() || password.is_empty() {
            return err_text(Cond::NotAcceptable, "username and password are required");
        }
        let Some(jid) = account_jid(&username, &conn.domain) else {
            return err_text(Cond::JidMalformed, "the username is not a valid localpart");
        };
        if let Some(refused) = check_password(&password, cfg.min_password_length) {
            return refused;
        }
        let token = match cfg.policy {
            RegistrationPolicy::Invite => match conn.state.get(STATE_TOKEN) {
                Some(t) => Some(t.clone()),
                None => return err_text(Cond::NotAllowed, "registration needs an invitation"),
            },
            _ => None,
        };
        // A taken name is refused before the invitation or key derivation; the refusal
        // counts against the address's registrations, so names cannot be probed for free.
        let ip = conn.peer.ip().to_canonical();
        let node = jid.node().map(|n| n.as_str()).unwrap_or_default();
        match ctx.stores.accounts.account_exists(&conn.domain, node).await {
            Ok(false) => {}
            Ok(true) => {
                if !self.reserve(ip, cfg) {
                    return rate_limited(ip);
                }
                return err(Cond::Conflict);
            }
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                return IqReply::Error(confab_server::module::storage_failed());
            }
        }
        if !self.reserve(ip, cfg) {
            return rate_limited(ip);
        }
        let reply = self
            .create(ctx, &jid, &password, &conn.domain, token.as_deref())
            .await;
        match reply {
            IqReply::Result(_) => {
                tracing::info!(account = %jid, %ip, "account registered in-band");
                conn.state.remove(STATE_TOKEN);
                conn.state.insert(STATE_DONE.into(), String::new());
            }
            _ => self.release(ip),
        }
        reply
    }

    /// Uses up the invitation (if any) and creates the account; on failure nothing stays
    /// changed (the token is put back).
    async fn create(
        &self,
        ctx: &ServerCtx,
        jid: &BareJid,
        password: &str,
        domain: &str,
        token: Option<&str>,
    ) -> IqReply {
        let stores = &ctx.stores;
        let mut saved = None;
        if let Some(t) = token {
            // Taking the token by deleting it means two streams cannot both use it.
            let value = match stores.data.get_host_data(domain, INVITE_KIND, t).await {
                Ok(v) => v,
                Err(e) => return internal(e),
            };
            match stores.data.delete_host_data(domain, INVITE_KIND, t).await {
                Ok(true) => saved = value.map(|v| (t, v)),
                Ok(false) => return err_text(Cond::NotAllowed, "the invitation was already used"),
                Err(e) => return internal(e),
            }
        }
        let iterations = ctx.config.auth.scram_iterations;
        let reply = match accounts::create(stores, jid, password, iterations).await {
            Ok(()) => return IqReply::Result(None),
            Err(AccountError::Exists) => err(Cond::Conflict),
            Err(AccountError::BadPassword) => {
                err_text(Cond::NotAcceptable, "the password is not acceptable")
            }
            Err(e) => {
                tracing::error!(error = %e, "registration failed");
                err(Cond::InternalServerError)
            }
        };
        if let Some((t, v)) = saved {
            if let Err(e) = stores.data.set_host_data(domain, INVITE_KIND, t, &v).await {
                tracing::error!(error = %e, "could not restore an invitation");
            }
        }
        reply
    }

    async fn change_password(
        &self,
        ctx: &ServerCtx,
        account: &BareJid,
        q: RegisterQuery,
    ) -> IqReply {
        let cfg = self.config();
        if !cfg.allow_password_change {
            return err(Cond::NotAllowed);
        }
        let (Some(username), Some(password)) = (q.username, q.password) else {
            return err_text(Cond::BadRequest, "username and password are required");
        };
        // XEP-0077 §3.3: an empty password never replaces the existing one.
        if password.is_empty() {
            return err_text(Cond::BadRequest, "the password is empty");
        }
        let domain = account.domain().as_str();
        if account_jid(&username, domain).as_ref() != Some(account) {
            return err_text(Cond::BadRequest, "the username is not this account's");
        }
        if let Some(refused) = check_password(&password, cfg.min_password_length) {
            return refused;
        }
        let iterations = ctx.config.auth.scram_iterations;
        match accounts::set_password(&ctx.stores, account, &password, iterations).await {
            Ok(()) => {
                tracing::info!(%account, "password changed in-band");
                IqReply::Result(None)
            }
            Err(AccountError::BadPassword) => {
                err_text(Cond::NotAcceptable, "the password is not acceptable")
            }
            Err(AccountError::NotFound) => err(Cond::RegistrationRequired),
            Err(e) => {
                tracing::error!(error = %e, "password change failed");
                err(Cond::InternalServerError)
            }
        }
    }

    async fn remove(&self, ctx: &ServerCtx, account: &BareJid, q: &Element) -> IqReply {
        if q.elements().count() != 1 {
            return err_text(Cond::BadRequest, "<remove/> must be the only child");
        }
        if !self.config().allow_account_removal {
            return err(Cond::NotAllowed);
        }
        match accounts::delete_account_live(ctx, account).await {
            Ok(()) => {
                tracing::info!(%account, "account removed in-band");
                // Queued before the sessions' close requests are acted on, so it arrives
                // before the <not-authorized/> stream error.
                IqReply::Result(None)
            }
            Err(AccountError::NotFound) => err(Cond::RegistrationRequired),
            Err(e) => {
                tracing::error!(error = %e, "account removal failed");
                err(Cond::InternalServerError)
            }
        }
    }

    async fn authenticated(&self, ctx: &ServerCtx, iq: &Stanza, target: IqTarget) -> IqReply {
        let Some(account) = iq.from.as_ref().map(|f| f.to_bare()) else {
            return err(Cond::BadRequest);
        };
        // Only one's own account (no `to`, own bare JID, or own server) can be managed.
        let own = match (&iq.to, target) {
            (None, _) => true,
            (Some(to), IqTarget::Account) => to.to_bare() == account,
            (Some(to), IqTarget::Host) => to.domain() == account.domain(),
        };
        if !own {
            return err(Cond::Forbidden);
        }
        let Some(q) = iq.iq_payload() else {
            return err(Cond::BadRequest);
        };
        match iq.iq_type() {
            Some(IqType::Get) => {
                // XEP-0077 §3.1: an authenticated entity is registered.
                let node = account.node().map(|n| n.to_string()).unwrap_or_default();
                IqReply::Result(Some(
                    RegisterQuery {
                        registered: true,
                        username: Some(node),
                        password: Some(String::new()),
                        ..RegisterQuery::default()
                    }
                    .into(),
                ))
            }
            Some(IqType::Set) => match RegisterQuery::try_from(q) {
                Ok(parsed) if parsed.remove => self.remove(ctx, &account, q).await,
                Ok(parsed) => self.change_password(ctx, &account, parsed).await,
                Err(e) => IqReply::Error(e.to_stanza_error()),
            },
            _ => err(Cond::BadRequest),
        }
    }
}

/// The error for a password that is invalid, empty or too short as SCRAM will see it
/// (after SASLprep); `None` if it is acceptable.
fn check_password(password: &str, min_chars: usize) -> Option<IqReply> {
    match accounts::prepare_password(password) {
        Ok(p) if p.chars().count() < min_chars => {
            Some(err_text(Cond::NotAcceptable, "the password is too short"))
        }
        Ok(_) => None,
        Err(_) => Some(err_text(
            Cond::NotAcceptable,
            "the password is not acceptable",
        )),
    }
}

fn internal(e: StoreError) -> IqReply {
    tracing::error!(error = %e, "invite storage failed");
    IqReply::Error(confab_server::module::storage_failed())
}

/// `username@domain` if the username is a valid localpart (nodeprep); normalised.
fn account_jid(username: &str, domain: &str) -> Option<BareJid> {
    if username.contains(['@', '/']) {
        return None;
    }
    BareJid::new(&format!("{username}@{domain}"))
        .ok()
        .filter(|j| j.node().is_some() && j.domain().as_str() == domain)
}

#[async_trait]
impl PreAuthIqHandler for Register {
    async fn handle_pre_auth_iq(
        &self,
        ctx: &ServerCtx,
        conn: &mut PreAuthConn,
        iq: &Stanza,
    ) -> IqReply {
        let cfg = self.config();
        if cfg.policy == RegistrationPolicy::Closed {
            return err(Cond::ServiceUnavailable);
        }
        if !conn.secure {
            // XEP-0077 §11: never over an unencrypted channel.
            return err_text(
                Cond::NotAuthorized,
                "registration needs an encrypted stream",
            );
        }
        if iq.to.as_ref().is_some_and(|to| to.as_str() != conn.domain) {
            return err(Cond::ServiceUnavailable);
        }
        let Some(q) = iq.iq_payload() else {
            return err(Cond::BadRequest);
        };
        if q.ns == PARS_NS {
            if !q.is("preauth", PARS_NS) {
                return err(Cond::BadRequest);
            }
            return self.preauth(ctx, conn, iq).await;
        }
        if !q.is("query", NS) {
            return err(Cond::BadRequest);
        }
        match iq.iq_type() {
            Some(IqType::Get) => self.form(cfg.policy, conn),
            Some(IqType::Set) => self.register_account(ctx, conn, q).await,
            _ => err(Cond::BadRequest),
        }
    }
}

#[async_trait]
impl IqHandler for Register {
    async fn handle_iq(&self, ctx: &ServerCtx, iq: &Stanza, target: IqTarget) -> IqReply {
        match self.authenticated(ctx, iq, target).await {
            IqReply::Error(e) => {
                // XEP-0077 §3.3: do not return the original XML (it has a password).
                let mut bare = iq.clone();
                bare.el.children.clear();
                confab_server::router::send_error(ctx, &bare, e).await;
                IqReply::Handled
            }
            other => other,
        }
    }
}

/// An invitation to register on a domain (XEP-0401 account creation, XEP-0445 token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invite {
    pub token: String,
    pub domain: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds after which the token is refused.
    pub expires: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredInvite {
    created: i64,
    expires: i64,
}

impl Invite {
    /// The XEP-0445 §2.2 registration URI.
    pub fn uri(&self) -> String {
        format!("xmpp:{}?register;preauth={}", self.domain, self.token)
    }

    pub fn is_expired(&self, now: i64) -> bool {
        now >= self.expires
    }
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Creates a one-time invitation valid for `ttl_secs`; expired ones of the domain are
/// removed on the way.
pub async fn create_invite(
    stores: &Stores,
    domain: &str,
    ttl_secs: u64,
) -> Result<Invite, StoreError> {
    let now = now_unix();
    for inv in list_invites(stores, domain).await? {
        if inv.is_expired(now) {
            stores
                .data
                .delete_host_data(domain, INVITE_KIND, &inv.token)
                .await?;
        }
    }
    let token: String = {
        let mut rng = rand::thread_rng();
        (0..32)
            .map(|_| {
                char::from(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                        [rng.gen_range(0..62)],
                )
            })
            .collect()
    };
    let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
    let stored = StoredInvite {
        created: now,
        expires: now.saturating_add(ttl),
    };
    let value = toml::to_string(&stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    stores
        .data
        .set_host_data(domain, INVITE_KIND, &token, &value)
        .await?;
    Ok(Invite {
        token,
        domain: domain.to_string(),
        created: stored.created,
        expires: stored.expires,
    })
}

/// Every stored invitation of the domain (expired ones included), by token.
pub async fn list_invites(stores: &Stores, domain: &str) -> Result<Vec<Invite>, StoreError> {
    let mut out = Vec::new();
    for (token, value) in stores.data.list_host_data(domain, INVITE_KIND).await? {
        match parse_invite(domain, &token, &value) {
            Some(i) => out.push(i),
            None => tracing::warn!(domain, "ignoring an unreadable invitation"),
        }
    }
    Ok(out)
}

async fn find_invite(
    stores: &Stores,
    domain: &str,
    token: &str,
) -> Result<Option<Invite>, StoreError> {
    if token.len() > MAX_TOKEN_LEN || !token.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    Ok(stores
        .data
        .get_host_data(domain, INVITE_KIND, token)
        .await?
        .and_then(|v| parse_invite(domain, token, &v)))
}

fn parse_invite(domain: &str, token: &str, value: &str) -> Option<Invite> {
    let s: StoredInvite = toml::from_str(value).ok()?;
    Some(Invite {
        token: token.to_string(),
        domain: domain.to_string(),
        created: s.created,
        expires: s.expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(account_jid("Bill", "localhost").is_some_and(|j| j.as_str() == "bill@localhost"));
        for bad in [
            "a@b",
            "a/b",
            "",
            "bad name\u{7}",
            "bad name",
            &"x".repeat(2000),
        ] {
            assert!(account_jid(bad, "localhost").is_none(), "{bad:?}");
        }
    }

    #[test]
    fn rate_limit_window() {
        let r = Register::default();
        let cfg = RegistrationConfig {
            rate_limit_per_ip: 2,
            ..RegistrationConfig::default()
        };
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(r.reserve(ip, &cfg) && r.reserve(ip, &cfg));
        assert!(!r.reserve(ip, &cfg));
        assert!(r.reserve(other, &cfg));
        r.release(ip);
        assert!(r.reserve(ip, &cfg));
        let unlimited = RegistrationConfig {
            rate_limit_per_ip: 0,
            ..cfg
        };
        assert!((0..100).all(|_| r.reserve(ip, &unlimited)));
    }

    #[test]
    fn invite_uri_and_expiry() {
        let i = Invite {
            token: "abc".into(),
            domain: "example.org".into(),
            created: 10,
            expires: 20,
        };
        assert_eq!(i.uri(), "xmpp:example.org?register;preauth=abc");
        assert!(!i.is_expired(19));
        assert!(i.is_expired(20));
    }
}
