//! XEP-0202 Entity Time of the server, always given in UTC.

use async_trait::async_trait;
use confab_proto::payloads::time::EntityTime;
use confab_proto::stanza::{IqType, Stanza};
use confab_server::module::{IqHandler, IqReply, IqTarget, Module, Registry};
use confab_server::ServerCtx;
use std::sync::Arc;

pub const NS: &str = confab_proto::payloads::time::NS;

pub struct Time;

impl Module for Time {
    fn name(&self) -> &'static str {
        "time"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(IqType::Get, IqTarget::Host, NS, self);
        reg.host_feature(NS);
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[async_trait]
impl IqHandler for Time {
    async fn handle_iq(&self, _: &ServerCtx, _: &Stanza, _: IqTarget) -> IqReply {
        IqReply::Result(Some(
            EntityTime {
                tzo: 0,
                utc: unix_now(),
            }
            .into(),
        ))
    }
}
