//! Sessions between connections: a session whose connection dropped can be parked for its
//! resume timeout (XEP-0198), still bound, its queue still filling; a new connection of the
//! same account picks it up with everything queued; a session that is not picked up, or
//! whose connection ends for good, is ended here: unbound, announced to the modules, and
//! whatever was never written routed again (another resource, offline storage, or an error
//! to the sender).

use crate::module::LifecycleListener;
use crate::router;
use crate::session::Session;
use crate::ServerCtx;
use confab_proto::error::StanzaErrorCondition;
use confab_proto::jid::BareJid;
use confab_proto::ns;
use confab_proto::stanza::{IqType, Stanza, StanzaKind};
use confab_stream::WireStanza;
use std::sync::Arc;
use tokio::sync::oneshot;

/// How a new connection claims a parked session: it sends where to hand it over.
pub(crate) type Claim = oneshot::Sender<oneshot::Sender<Session>>;

/// Ends a session for good.
pub async fn end_session(ctx: &ServerCtx, session: Session) {
    ctx.router.unbind(&session.info);
    let listeners: Vec<Arc<dyn LifecycleListener>> = ctx.registry.lifecycle_listeners().to_vec();
    for l in listeners {
        l.session_closed(ctx, &session.info).await;
    }
    let unsent = session.outbox.close();
    reroute(ctx, unsent).await;
}

/// Parks a session whose connection dropped, for its resume timeout. It ends when the
/// timeout passes, when something asks it to close (a conflict, account deletion, a slow
/// reader), or at shutdown, unless a new connection resumes it first.
pub fn park(ctx: &ServerCtx, mut session: Session) {
    let timeout = session.info.resume_timeout().unwrap_or_default();
    let id = session.info.id;
    let (claim_tx, mut claim_rx) = oneshot::channel();
    ctx.router.park(id, session.info.jid.to_bare(), claim_tx);
    session.info.notify_parked();
    tracing::info!(jid = %session.info.jid, ?timeout, "session parked for resumption");
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let claimed = tokio::select! {
            claim = &mut claim_rx => claim.ok(),
            _ = tokio::time::sleep(timeout) => None,
            _ = session.info.close_requested() => None,
        };
        ctx.router.unpark(id);
        if let Some(hand_over) = claimed {
            match hand_over.send(session) {
                Ok(()) => {
                    ctx.router.parked_done();
                    return;
                }
                Err(s) => session = s,
            }
        }
        tracing::info!(jid = %session.info.jid, "parked session ended");
        end_session(&ctx, session).await;
        ctx.router.parked_done();
    });
}

/// Makes the session parked so a new connection can resume it (XEP-0198 §5): a client
/// whose connection died often resumes before the server has noticed, while the old
/// connection still holds the session. That connection is dropped (what it had not
/// written stays queued) and the session parked. True once it is parked; false if that
/// did not happen within `wait` or the session cannot be parked (no resumption enabled).
pub async fn detach_for_resume(
    ctx: &ServerCtx,
    info: &crate::session::SessionInfo,
    wait: std::time::Duration,
) -> bool {
    if ctx.router.is_parked(info.id) {
        return true;
    }
    if info.resume_timeout().is_none() {
        return false;
    }
    let parked = info.parked_signal();
    tokio::pin!(parked);
    // Registered before asking, so the signal cannot be missed.
    parked.as_mut().enable();
    // Withdrawn when this returns: a connection that could not let go in time keeps
    // its session, instead of dropping it later for a resumption already refused.
    let _request = info.request_detach();
    if !ctx.router.is_parked(info.id) {
        let _ = tokio::time::timeout(wait, parked).await;
    }
    ctx.router.is_parked(info.id)
}

/// Takes the parked session `id` of `account` for a new connection; `None` if there is no
/// such parked session (expired, ended, never parked, or another account's).
pub async fn resume(ctx: &ServerCtx, id: u64, account: &BareJid) -> Option<Session> {
    let claim = ctx.router.claim_parked(id, account)?;
    let (tx, rx) = oneshot::channel();
    claim.send(tx).ok()?;
    rx.await.ok()
}

/// Stanzas that were queued for a session but never written: messages go on to another
/// resource, offline storage or back to the sender; a request gets an error, so its sender
/// does not wait forever (RFC 6121 §8.5.3.2.2 for a full JID that is gone). Nothing
/// accepted is silently lost.
pub async fn reroute(ctx: &ServerCtx, unsent: Vec<WireStanza>) {
    let limits = ctx.config.limits.parser_limits();
    for b in unsent {
        // Each item is one stanza in the stream form.
        let Ok(text) = std::str::from_utf8(b.stream_form()) else {
            continue;
        };
        let Some(el) = confab_proto::parser::parse_fragment(text, ns::CLIENT, &limits) else {
            continue;
        };
        let Ok(stanza) = Stanza::from_element(el) else {
            continue;
        };
        match stanza.kind {
            StanzaKind::Message if stanza.type_attr() != Some("error") => {
                router::route(ctx, stanza).await;
            }
            StanzaKind::Iq if matches!(stanza.iq_type(), Some(IqType::Get | IqType::Set)) => {
                router::bounce(ctx, &stanza, StanzaErrorCondition::ServiceUnavailable).await;
            }
            _ => {}
        }
    }
}
