//! XEP-0202 Entity Time of the server, always given in UTC.

use crate::module::{IqHandler, IqReply, IqTarget, Module, Registry};
use crate::ServerCtx;
use async_trait::async_trait;
use confab_proto::datetime::format_datetime;
use confab_proto::stanza::{IqType, Stanza};
use confab_proto::xml::Element;
use std::sync::Arc;

pub const NS: &str = "urn:xmpp:time";

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
            Element::new("time", NS)
                .child(Element::new("tzo", NS).text("+00:00"))
                .child(Element::new("utc", NS).text(format_datetime(unix_now()))),
        ))
    }
}
