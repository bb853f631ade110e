//! XEP-0012 Last Activity: the server's uptime, and for a user (to the user and to contacts
//! allowed to see their presence) the time since their last session ended, with the status
//! of their last unavailable presence.

use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::{BareJid, FullJid};
use confab_proto::ns;
use confab_proto::payloads::last::LastActivity;
use confab_proto::stanza::{IqType, Stanza, StanzaKind};
use confab_server::module::{
    HookArgs, HookPoint, HookResult, IqHandler, IqReply, IqTarget, LifecycleListener, Module,
    Registry, StanzaHook,
};
use confab_server::session::SessionInfo;
use confab_server::ServerCtx;
use dashmap::DashMap;
use std::sync::Arc;
use std::time::Instant;

pub const NS: &str = confab_proto::payloads::last::NS;
const KIND: &str = "last";
const KEY: &str = "logout";

pub struct Last {
    started: Instant,
    /// Status text of each session's last unavailable broadcast, until the session closes.
    status: DashMap<FullJid, String>,
}

impl Default for Last {
    fn default() -> Self {
        Last {
            started: Instant::now(),
            status: DashMap::new(),
        }
    }
}

impl Module for Last {
    fn name(&self) -> &'static str {
        "last"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(IqType::Get, IqTarget::Host, NS, self.clone());
        reg.iq(IqType::Get, IqTarget::Account, NS, self.clone());
        reg.hook(HookPoint::FromClient, 0, self.clone());
        reg.hook(HookPoint::ToFullJid, 0, self.clone());
        reg.lifecycle(self);
        reg.host_feature(NS);
        reg.account_feature(NS);
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn err(c: StanzaErrorCondition) -> IqReply {
    IqReply::Error(StanzaError::new(c))
}

fn query(seconds: u64, status: &str) -> IqReply {
    IqReply::Result(Some(LastActivity::answer(seconds, status).into()))
}

impl Last {
    async fn account(&self, ctx: &ServerCtx, iq: &Stanza) -> IqReply {
        let Some(requester) = iq.from.as_ref().map(|f| f.to_bare()) else {
            return err(StanzaErrorCondition::BadRequest);
        };
        let target = iq
            .to
            .as_ref()
            .map(|t| t.to_bare())
            .unwrap_or(requester.clone());
        let Some(node) = target.node() else {
            return err(StanzaErrorCondition::BadRequest);
        };
        match crate::roster::may_see_presence(ctx, &requester, &target).await {
            Ok(true) => {}
            // XEP-0012 §4: no presence subscription, no last activity. Not `forbidden`:
            // that would tell the account exists; to strangers it looks missing
            // (RFC 6121 §8.5.1).
            Ok(false) => return err(StanzaErrorCondition::ServiceUnavailable),
            Err(e) => {
                tracing::error!(error = %e, "roster lookup failed");
                return IqReply::Error(confab_server::module::storage_failed());
            }
        }
        if ctx
            .router
            .sessions_of(&target)
            .iter()
            .any(|s| s.is_available())
        {
            return query(0, "");
        }
        let stored = ctx
            .stores
            .data
            .get_account_data(target.domain().as_str(), node.as_str(), KIND, KEY)
            .await;
        match stored {
            Ok(Some(v)) => {
                let (t, status) = v.split_once('\n').unwrap_or((v.as_str(), ""));
                let Ok(t) = t.parse::<i64>() else {
                    tracing::error!("stored last activity is invalid");
                    return err(StanzaErrorCondition::InternalServerError);
                };
                let secs = u64::try_from(unix_now().saturating_sub(t)).unwrap_or(0);
                query(secs, status)
            }
            // Never logged out since the server kept records.
            Ok(None) => err(StanzaErrorCondition::ItemNotFound),
            Err(e) => {
                tracing::error!(error = %e, "last activity lookup failed");
                IqReply::Error(confab_server::module::storage_failed())
            }
        }
    }
}

#[async_trait]
impl IqHandler for Last {
    async fn handle_iq(&self, ctx: &ServerCtx, iq: &Stanza, target: IqTarget) -> IqReply {
        if iq.iq_payload().is_none_or(|q| q.name != "query") {
            return err(StanzaErrorCondition::BadRequest);
        }
        match target {
            IqTarget::Host => query(self.started.elapsed().as_secs(), ""),
            IqTarget::Account => self.account(ctx, iq).await,
        }
    }
}

impl Last {
    /// XEP-0012 §5: a query to a resource reaches it only if the requester may see the
    /// user's presence; otherwise the server answers `<forbidden/>`.
    async fn to_resource(&self, ctx: &ServerCtx, stanza: &Stanza) -> HookResult {
        let is_query = stanza.kind == StanzaKind::Iq
            && stanza.iq_type() == Some(IqType::Get)
            && stanza.iq_payload().is_some_and(|p| p.ns == NS);
        let (Some(from), Some(to)) = (stanza.from.as_ref(), stanza.to.as_ref()) else {
            return HookResult::Continue;
        };
        if !is_query {
            return HookResult::Continue;
        }
        let allowed =
            match crate::roster::may_see_presence(ctx, &from.to_bare(), &to.to_bare()).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e, "roster lookup failed");
                    false
                }
            };
        if allowed {
            return HookResult::Continue;
        }
        confab_server::router::send_error(
            ctx,
            stanza,
            StanzaError::new(StanzaErrorCondition::Forbidden),
        )
        .await;
        HookResult::Handled
    }
}

#[async_trait]
impl StanzaHook for Last {
    async fn on_stanza(&self, ctx: &ServerCtx, args: &HookArgs, stanza: &mut Stanza) -> HookResult {
        let point = args.point;
        if point == HookPoint::ToFullJid {
            return self.to_resource(ctx, stanza).await;
        }
        // Broadcast unavailable presence: remember its status for the logout record; an
        // available one makes an earlier status stale.
        if stanza.kind != StanzaKind::Presence || stanza.to.is_some() {
            return HookResult::Continue;
        }
        let Some(from) = stanza.from.as_ref().and_then(|f| f.try_as_full().ok()) else {
            return HookResult::Continue;
        };
        match stanza.type_attr() {
            Some("unavailable") => {
                let status = stanza
                    .el
                    .get_child("status", ns::CLIENT)
                    .map(|s| s.text_content())
                    .unwrap_or_default();
                self.status.insert(from.clone(), status);
            }
            None => {
                self.status.remove(from);
            }
            _ => {}
        }
        HookResult::Continue
    }
}

#[async_trait]
impl LifecycleListener for Last {
    async fn session_closed(&self, ctx: &ServerCtx, session: &SessionInfo) {
        let jid = &session.jid;
        let status = self.status.remove(jid).map(|(_, s)| s).unwrap_or_default();
        let bare = jid.to_bare();
        // Only the account's last session ending is a logout.
        if !ctx.router.sessions_of(&bare).is_empty() {
            return;
        }
        let Some(node) = bare.node() else { return };
        let value = format!("{}\n{status}", unix_now());
        if let Err(e) = ctx
            .stores
            .data
            // Not needed durably at once: written behind, batched with other logouts.
            .set_account_data_lazily(bare.domain().as_str(), node.as_str(), KIND, KEY, &value)
            .await
        {
            // The last session of a deleted account ends after its data is gone: nothing to
            // keep then, and no error.
            let (d, u) = (bare.domain().as_str(), node.as_str());
            if ctx
                .stores
                .accounts
                .account_exists(d, u)
                .await
                .unwrap_or(true)
            {
                tracing::error!(error = %e, "storing last activity failed");
            }
        }
    }

    async fn account_deleted(&self, ctx: &ServerCtx, account: &BareJid) {
        let Some(node) = account.node() else { return };
        if let Err(e) = ctx
            .stores
            .data
            .delete_account_data(account.domain().as_str(), node.as_str(), KIND, KEY)
            .await
        {
            tracing::error!(error = %e, "deleting last activity failed");
        }
    }
}
