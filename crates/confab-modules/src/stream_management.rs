//! XEP-0198 Stream Management: acknowledgements both ways and resumption of a session on a
//! new connection. Built on the core's attach points: the connection counts the stanzas it
//! receives (`SessionInfo::stanzas_in`), a write observer keeps every stanza written until
//! the client acknowledges it, a session whose connection drops is parked for the resume
//! timeout (`set_resume_timeout`), `<resume/>` claims it through a pre-bind handler, and on
//! resumption what the client had not acknowledged is written again first. A session that
//! ends without being resumed routes its unacknowledged stanzas again (another resource,
//! offline storage, or an error to the sender): nothing is lost, at worst a client sees a
//! message twice, which the XEP accepts.

use async_trait::async_trait;
use bytes::Bytes;
use confab_proto::error::{StreamError, StreamErrorCondition};
use confab_proto::jid::{BareJid, FullJid};
use confab_proto::xml::Element;
use confab_server::module::{
    FeatureStage, LifecycleListener, Module, ModuleConfig, PreBind, PreBindHandler, Registry,
    SessionElementHandler,
};
use confab_server::session::{Outbox, SessionInfo, WriteObserver};
use confab_server::ServerCtx;
use confab_stream::WireStanza;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub const NS: &str = "urn:xmpp:sm:3";
const STANZAS_NS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// `[stream_management]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamManagementConfig {
    /// Seconds a session whose connection dropped waits to be resumed; a client may ask for
    /// less (`max`). 0: no resumption (acknowledgements still work).
    pub resume_timeout: u64,
    /// Stanzas written and not yet acknowledged a session may have; beyond, the client is
    /// not acknowledging and its stream ends (`<policy-violation/>`).
    pub max_unacked: usize,
    /// The server asks for an acknowledgement (`<r/>`) after this many unacknowledged
    /// stanzas, so the unacknowledged queue stays short.
    pub request_every: usize,
}

impl Default for StreamManagementConfig {
    fn default() -> Self {
        StreamManagementConfig {
            resume_timeout: 300,
            max_unacked: 5000,
            request_every: 5,
        }
    }
}

impl ModuleConfig for StreamManagementConfig {
    fn validate(&self) -> Result<(), String> {
        if self.resume_timeout > 24 * 3600 {
            return Err("resume_timeout must be at most 86400 seconds".into());
        }
        if self.max_unacked == 0 || self.request_every == 0 || self.request_every > self.max_unacked
        {
            return Err(
                "max_unacked and request_every must be positive, request_every at most max_unacked"
                    .into(),
            );
        }
        Ok(())
    }
}

/// The `stream_management` module.
#[derive(Default)]
pub struct StreamManagement {
    config: OnceLock<StreamManagementConfig>,
    /// Resumption ids of resumable sessions: id -> (session id, full JID).
    resumable: DashMap<String, (u64, FullJid)>,
}

impl StreamManagement {
    fn config(&self) -> &StreamManagementConfig {
        self.config.get_or_init(StreamManagementConfig::default)
    }
}

impl Module for StreamManagement {
    fn name(&self) -> &'static str {
        "stream_management"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let _ = self.config.set(reg.section("stream_management"));
        reg.stream_feature(FeatureStage::Authenticated, Element::new("sm", NS));
        reg.pre_bind("resume", NS, self.clone());
        // Before a resource is bound these are out of order (XEP-0198 §3).
        for name in ["enable", "r", "a"] {
            reg.pre_bind(name, NS, self.clone());
        }
        for name in ["enable", "r", "a", "resume"] {
            reg.session_element(name, NS, self.clone());
        }
        reg.lifecycle(self);
    }
}

/// Stream management state of one session.
struct SmState {
    inner: Mutex<SmInner>,
    /// `<r/>` as queued by this session: told apart from stanzas when written.
    request: WireStanza,
    max_unacked: usize,
    request_every: usize,
}

#[derive(Default)]
struct SmInner {
    /// `stanzas_in` when the client enabled stream management.
    in_base: u32,
    /// Stanzas written since enabling that the client acknowledged (XEP-0198 `h`, wraps).
    acked: u32,
    /// Written, not yet acknowledged, oldest first.
    unacked: VecDeque<WireStanza>,
    /// A `<r/>` is queued or written and not answered yet.
    request_pending: bool,
    /// The resumption id, for a resumable session.
    resume_id: Option<String>,
    /// The `h` a client sent with `<resume/>`, applied when the session is handed over.
    resume_h: Option<u32>,
    /// More unacknowledged than allowed: the stream is being ended.
    overflowed: bool,
}

impl SmState {
    fn lock(&self) -> std::sync::MutexGuard<'_, SmInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SmInner {
    /// Applies an acknowledgement of `h` stanzas; Err with what was sent if `h` counts
    /// more than was written.
    fn ack(&mut self, h: u32) -> Result<(), u32> {
        let newly = h.wrapping_sub(self.acked) as usize;
        if newly > self.unacked.len() {
            return Err(self.acked.wrapping_add(self.unacked.len() as u32));
        }
        self.unacked.drain(..newly);
        self.acked = h;
        Ok(())
    }
}

impl WriteObserver for SmState {
    fn written(&self, session: &SessionInfo, stanzas: &[WireStanza]) {
        let mut s = self.lock();
        for w in stanzas {
            if w.shares_with(&self.request) {
                continue;
            }
            s.unacked.push_back(w.clone());
        }
        if s.unacked.len() > self.max_unacked && !s.overflowed {
            s.overflowed = true;
            tracing::info!(jid = %session.jid, unacked = s.unacked.len(), "client does not acknowledge stanzas; closing");
            session.close(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "too many unacknowledged stanzas",
            ));
            return;
        }
        if s.unacked.len() >= self.request_every && !s.request_pending {
            s.request_pending = true;
            drop(s);
            session.send(self.request.clone());
        }
    }
}

fn failed(condition: &str) -> Element {
    Element::new("failed", NS).child(Element::new(condition, STANZAS_NS))
}

fn parse_h(el: &Element) -> Result<u32, StreamError> {
    el.get_attr("h")
        .and_then(|h| h.parse::<u32>().ok())
        .ok_or_else(|| {
            StreamError::with_text(
                StreamErrorCondition::InvalidXml,
                "h must be an unsigned 32-bit integer",
            )
        })
}

fn too_high(h: u32, sent: u32) -> StreamError {
    // XEP-0198 §4: undefined-condition with the application-specific condition.
    StreamError::with_text(
        StreamErrorCondition::UndefinedCondition,
        format!("handled-count-too-high: h={h}, send-count={sent}"),
    )
    .with_app(
        Element::new("handled-count-too-high", NS)
            .attr("h", h.to_string())
            .attr("send-count", sent.to_string()),
    )
}

#[async_trait]
impl SessionElementHandler for StreamManagement {
    async fn handle(
        &self,
        _ctx: &ServerCtx,
        session: &Arc<SessionInfo>,
        el: &Element,
    ) -> Result<Vec<Element>, StreamError> {
        let state = session.data::<SmState>();
        match (el.name.as_str(), state) {
            ("enable", None) => {
                let cfg = self.config();
                let state = session.data_or_insert_with(|| SmState {
                    inner: Mutex::new(SmInner {
                        in_base: session.stanzas_in(),
                        ..SmInner::default()
                    }),
                    request: WireStanza::new(Bytes::from(format!("<r xmlns='{NS}'/>"))),
                    max_unacked: cfg.max_unacked,
                    request_every: cfg.request_every,
                });
                if !session.set_write_observer(state.clone()) {
                    // Another module observes writes: acknowledgements could not be kept.
                    return Ok(vec![failed("unexpected-request")]);
                }
                let mut enabled = Element::new("enabled", NS);
                let wants_resume = matches!(el.get_attr("resume"), Some("true" | "1"));
                if wants_resume && cfg.resume_timeout > 0 {
                    let timeout = el
                        .get_attr("max")
                        .and_then(|m| m.parse::<u64>().ok())
                        .filter(|m| *m > 0)
                        .map_or(cfg.resume_timeout, |m| m.min(cfg.resume_timeout));
                    let id = resume_id();
                    session.set_resume_timeout(Some(Duration::from_secs(timeout)));
                    self.resumable
                        .insert(id.clone(), (session.id, session.jid.clone()));
                    state.lock().resume_id = Some(id.clone());
                    enabled = enabled
                        .attr("id", id)
                        .attr("resume", "true")
                        .attr("max", timeout.to_string());
                }
                Ok(vec![enabled])
            }
            // Enabled twice, or resuming on a bound stream: out of order.
            ("enable" | "resume", _) => Ok(vec![failed("unexpected-request")]),
            ("r", Some(state)) => {
                let h = session.stanzas_in().wrapping_sub(state.lock().in_base);
                Ok(vec![Element::new("a", NS).attr("h", h.to_string())])
            }
            ("a", Some(state)) => {
                let h = parse_h(el)?;
                let mut s = state.lock();
                s.request_pending = false;
                s.ack(h).map_err(|sent| too_high(h, sent))?;
                Ok(vec![])
            }
            _ => Ok(vec![failed("unexpected-request")]),
        }
    }
}

/// An unguessable resumption id: it is all a client needs to take a parked session over
/// (besides being logged in as the same account).
fn resume_id() -> String {
    use base64::Engine;
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[async_trait]
impl PreBindHandler for StreamManagement {
    async fn handle(&self, ctx: &ServerCtx, account: &BareJid, el: &Element) -> PreBind {
        if el.name != "resume" {
            return PreBind::Reply(failed("unexpected-request"));
        }
        let not_found = || {
            PreBind::Reply(
                Element::new("failed", NS).child(Element::new("item-not-found", STANZAS_NS)),
            )
        };
        let Some(previd) = el.get_attr("previd") else {
            return PreBind::Reply(failed("bad-request"));
        };
        let Ok(h) = parse_h(el) else {
            return PreBind::Reply(failed("bad-request"));
        };
        let Some((id, jid)) = self.resumable.get(previd).map(|e| e.value().clone()) else {
            return not_found();
        };
        // Another account's id says nothing about that session.
        if jid.to_bare() != *account {
            return not_found();
        }
        let Some(info) = ctx.router.session(&jid).filter(|s| s.id == id) else {
            return not_found();
        };
        let Some(state) = info.data::<SmState>() else {
            return not_found();
        };
        // The old connection may still hold the session (its death not yet noticed): it
        // lets go first, so the count below is final and nothing is written twice.
        let wait = Duration::from_secs(ctx.config.c2s.write_timeout.clamp(1, 5));
        if !confab_server::detach::detach_for_resume(ctx, &info, wait).await {
            tracing::info!(jid = %jid, "resumption refused: the old connection did not let go of the session");
            return not_found();
        }
        let handled = {
            let mut s = state.lock();
            s.resume_h = Some(h);
            info.stanzas_in().wrapping_sub(s.in_base)
        };
        PreBind::Resume {
            session: id,
            resumed: Element::new("resumed", NS)
                .attr("previd", previd)
                .attr("h", handled.to_string()),
            failed: Element::new("failed", NS)
                .attr("h", handled.to_string())
                .child(Element::new("item-not-found", STANZAS_NS)),
        }
    }
}

#[async_trait]
impl LifecycleListener for StreamManagement {
    async fn session_resumed(&self, _ctx: &ServerCtx, session: &SessionInfo, outbox: &mut Outbox) {
        let Some(state) = session.data::<SmState>() else {
            return;
        };
        let resend: Vec<WireStanza> = {
            let mut s = state.lock();
            if let Some(h) = s.resume_h.take() {
                if let Err(sent) = s.ack(h) {
                    tracing::info!(jid = %session.jid, h, sent, "resumed with an h beyond what was sent; resending all");
                }
            }
            s.request_pending = false;
            // Written again below, where the observer counts them again: `acked` stays at
            // what the client said it handled.
            s.unacked.drain(..).collect()
        };
        // What the client had not acknowledged goes first (XEP-0198 §5).
        outbox.resend(resend);
    }

    async fn session_closed(&self, ctx: &ServerCtx, session: &SessionInfo) {
        let Some(state) = session.data::<SmState>() else {
            return;
        };
        let (id, unacked) = {
            let mut s = state.lock();
            (s.resume_id.take(), s.unacked.drain(..).collect::<Vec<_>>())
        };
        if let Some(id) = id {
            self.resumable.remove(&id);
        }
        if !unacked.is_empty() {
            tracing::info!(jid = %session.jid, count = unacked.len(), "routing stanzas the client never acknowledged");
            confab_server::detach::reroute(ctx, unacked).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(n: u32) -> WireStanza {
        WireStanza::new(Bytes::from(format!("<message id='{n}'/>")))
    }

    #[test]
    fn acks_drop_what_the_client_handled_and_wrap_at_two_to_the_32() {
        let mut s = SmInner {
            acked: u32::MAX - 1,
            ..SmInner::default()
        };
        s.unacked.extend((0..4).map(wire));
        // Two handled: h wraps past 2^32 - 1 to 0.
        s.ack(0).expect("in range");
        assert_eq!(s.unacked.len(), 2);
        assert_eq!(s.acked, 0);
        // Acknowledging the same h again changes nothing.
        s.ack(0).expect("same h");
        assert_eq!(s.unacked.len(), 2);
        // More than was sent is an error naming what was sent.
        assert_eq!(s.ack(3), Err(2));
        assert_eq!(s.unacked.len(), 2, "a refused ack drops nothing");
        s.ack(2).expect("all");
        assert!(s.unacked.is_empty());
    }

    #[test]
    fn config_is_checked() {
        assert!(StreamManagementConfig::default().validate().is_ok());
        for bad in [
            StreamManagementConfig {
                max_unacked: 0,
                ..Default::default()
            },
            StreamManagementConfig {
                request_every: 10,
                max_unacked: 5,
                ..Default::default()
            },
            StreamManagementConfig {
                resume_timeout: 100_000,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
