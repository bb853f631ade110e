//! Answering a query of an account's archive (XEP-0313 §4): the results, one message each
//! to the asking session, newest first when the client flipped the page. The query itself
//! is parsed by `confab_proto::payloads::mam`, shared with the rooms' archives.

use confab_proto::jid::BareJid;
use confab_proto::payloads::mam;
use confab_proto::stanza::Stanza;
use confab_server::router;
use confab_server::session::SessionInfo;
use confab_server::ServerCtx;
use confab_store::archive::ArchivePage;
use std::sync::Arc;

pub(super) async fn send_results(
    ctx: &ServerCtx,
    archive: &BareJid,
    session: &Arc<SessionInfo>,
    request: &mam::Query,
    page: &ArchivePage,
) {
    let limits = ctx.config.limits.parser_limits();
    let mut items: Vec<_> = page.items.iter().collect();
    if request.flip_page {
        items.reverse();
    }
    for item in items {
        let Some(wrapper) = mam::stored_result(
            archive.as_str(),
            session.jid.as_str(),
            request.queryid.as_deref(),
            &item.id,
            item.stamp,
            &item.stanza,
            &limits,
            |_| {},
        ) else {
            tracing::error!(id = %item.id, archive = %archive, "unparsable archived message");
            continue;
        };
        if let Ok(m) = Stanza::from_element(wrapper) {
            router::deliver(ctx, &m, std::slice::from_ref(session)).await;
        }
    }
}

/// The `<fin/>` closing a query.
pub(super) fn fin(page: &ArchivePage) -> confab_proto::xml::Element {
    let (first, last) = (page.items.first(), page.items.last());
    mam::fin(
        page.complete,
        first.map(|m| m.id.as_str()),
        last.map(|m| m.id.as_str()),
        page.count,
        page.first_index,
    )
}
