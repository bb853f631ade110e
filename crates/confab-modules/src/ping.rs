//! XEP-0199 XMPP Ping: answers pings to the server and to a client's own account, and (with
//! `[ping] interval`) pings clients that have been silent that long, closing those that do
//! not answer within `[ping] timeout`.
//! The answering half is the smallest complete module: read that first.

use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::ns;
use confab_proto::stanza::{IqType, Stanza, StanzaKind};
use confab_proto::xml::Element;
use confab_proto::{StreamError, StreamErrorCondition};
use confab_server::module::{
    HookArgs, HookPoint, HookResult, IqHandler, IqReply, IqTarget, Module, ModuleConfig, Registry,
    StanzaHook, Timer,
};
use confab_server::session::SessionInfo;
use confab_server::ServerCtx;
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const NS: &str = "urn:xmpp:ping";
/// Ids of the server's own pings start with this.
const ID_PREFIX: &str = "confab-ping-";

#[derive(Default)]
pub struct Ping {
    pending: Arc<Pending>,
}

/// `[ping]`: pinging clients that have been silent.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PingConfig {
    /// Seconds a client may be silent before the server pings it; 0: never.
    pub interval: u64,
    /// Seconds the client has to answer a server ping before its session is closed.
    pub timeout: u64,
}

impl Default for PingConfig {
    fn default() -> Self {
        PingConfig {
            interval: 0,
            timeout: 60,
        }
    }
}

impl ModuleConfig for PingConfig {
    fn validate(&self) -> Result<(), String> {
        if self.interval > 0 && self.timeout == 0 {
            return Err("timeout must be positive when interval is set".into());
        }
        Ok(())
    }
}

/// The server's pings not answered yet.
#[derive(Default)]
struct Pending {
    next_id: AtomicU64,
    /// Session id -> (ping id, when sent).
    by_session: DashMap<u64, (String, Instant)>,
    interval: std::sync::OnceLock<(Duration, Duration)>,
}

impl Module for Ping {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(IqType::Get, IqTarget::Host, NS, self.clone());
        reg.iq(IqType::Get, IqTarget::Account, NS, self.clone());
        reg.host_feature(NS);
        reg.hook(HookPoint::FromClient, 100, self.clone());
        let cfg: PingConfig = reg.section("ping");
        if cfg.interval > 0 {
            // One timer scans every session instead of a timer per session.
            let interval = Duration::from_secs(cfg.interval);
            let timeout = Duration::from_secs(cfg.timeout);
            let _ = self.pending.interval.set((interval, timeout));
            let tick = (interval.min(timeout) / 4)
                .clamp(Duration::from_millis(100), Duration::from_secs(5));
            reg.timer(tick, self.pending.clone());
        }
    }
}

#[async_trait]
impl IqHandler for Ping {
    async fn handle_iq(&self, ctx: &ServerCtx, iq: &Stanza, target: IqTarget) -> IqReply {
        // An answer for an account says it exists: only those who may see its presence get
        // one; to anyone else it looks missing (RFC 6121 §8.5.1).
        if target == IqTarget::Account && !may_see_account(ctx, iq).await {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::ServiceUnavailable));
        }
        IqReply::Result(None)
    }
}

/// Whether the sender of `iq` may see the presence of the account it is addressed to.
async fn may_see_account(ctx: &ServerCtx, iq: &Stanza) -> bool {
    let Some(requester) = iq.from.as_ref().map(|f| f.to_bare()) else {
        return false;
    };
    let target = iq.to.as_ref().map_or(requester.clone(), |t| t.to_bare());
    match crate::roster::may_see_presence(ctx, &requester, &target).await {
        Ok(allowed) => allowed,
        Err(e) => {
            tracing::error!(error = %e, "roster lookup failed");
            false
        }
    }
}

#[async_trait]
impl StanzaHook for Ping {
    async fn on_stanza(&self, ctx: &ServerCtx, _: &HookArgs, stanza: &mut Stanza) -> HookResult {
        // Answers (result, or an error such as service-unavailable: either proves the client
        // is there) to the server's own pings end here.
        let is_answer = stanza.kind == StanzaKind::Iq
            && matches!(stanza.iq_type(), Some(IqType::Result | IqType::Error))
            && stanza.id().is_some_and(|id| id.starts_with(ID_PREFIX))
            && stanza.to.as_ref().is_none_or(|to| to.node().is_none());
        if !is_answer {
            return HookResult::Continue;
        }
        let session = stanza
            .from
            .as_ref()
            .and_then(|f| f.try_as_full().ok())
            .and_then(|f| ctx.router.session(f));
        if let Some(s) = session {
            self.pending
                .by_session
                .remove_if(&s.id, |_, (id, _)| Some(id.as_str()) == stanza.id());
        }
        HookResult::Handled
    }
}

#[async_trait]
impl Timer for Pending {
    async fn tick(&self, ctx: &ServerCtx) {
        if let Some((interval, timeout)) = self.interval.get().copied() {
            self.scan(ctx, interval, timeout).await;
        }
    }
}

impl Pending {
    async fn scan(&self, ctx: &ServerCtx, interval: Duration, timeout: Duration) {
        let sessions = ctx.router.all_sessions();
        // Forget pings to sessions that are gone.
        self.by_session
            .retain(|id, _| sessions.iter().any(|s| s.id == *id));
        for s in sessions {
            let sent = self.by_session.get(&s.id).map(|p| p.1);
            match sent {
                Some(at) if at.elapsed() >= timeout => {
                    tracing::info!(jid = %s.jid, "no answer to ping; closing session");
                    self.by_session.remove(&s.id);
                    s.close(StreamError::with_text(
                        StreamErrorCondition::ConnectionTimeout,
                        "no answer to ping",
                    ));
                }
                None if s.idle_for() >= interval => self.send(ctx, &s).await,
                _ => {}
            }
        }
    }

    async fn send(&self, ctx: &ServerCtx, s: &Arc<SessionInfo>) {
        let id = format!(
            "{ID_PREFIX}{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let el = Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", id.clone())
            .attr("from", s.jid.domain().as_str())
            .attr("to", s.jid.to_string())
            .child(Element::new("ping", NS));
        let Ok(stanza) = Stanza::from_element(el) else {
            return;
        };
        self.by_session.insert(s.id, (id, Instant::now()));
        confab_server::router::deliver(ctx, &stanza, std::slice::from_ref(s)).await;
    }
}
