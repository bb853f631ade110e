//! Reading an archive (XEP-0313 §4): the query form, its filters, RSM paging, the results
//! and the archive's metadata.

use super::NS;
use confab_proto::datetime::{format_datetime, parse_datetime};
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::{BareJid, Jid};
use confab_proto::ns;
use confab_proto::parser::parse_fragment;
use confab_proto::payloads::data_form::{DataForm, Field, FieldType, FormType};
use confab_proto::payloads::rsm::{First, ResultSet};
use confab_proto::stanza::Stanza;
use confab_proto::xml::Element;
use confab_server::router;
use confab_server::session::SessionInfo;
use confab_server::ServerCtx;
use confab_store::archive::{ArchivePage, ArchiveQuery, MAX_PAGE};
use std::sync::Arc;

const FORWARD_NS: &str = "urn:xmpp:forward:0";
const DATA_NS: &str = "jabber:x:data";
const RSM_NS: &str = confab_proto::payloads::rsm::NS;
const VALIDATE_NS: &str = "http://jabber.org/protocol/xdata-validate";

fn bad_request(text: &str) -> StanzaError {
    StanzaError {
        text: Some(text.to_string()),
        ..StanzaError::new(StanzaErrorCondition::BadRequest)
    }
}

/// The filters of a query's data form (XEP-0313 §4.1).
pub(super) fn parse_form(query: &Element, q: &mut ArchiveQuery) -> Result<(), StanzaError> {
    let Some(x) = query.get_child("x", DATA_NS) else {
        return Ok(());
    };
    let form = DataForm::try_from(x).map_err(|_| bad_request("invalid data form"))?;
    if form.type_ != FormType::Submit {
        return Err(bad_request("the form must be of type submit"));
    }
    for field in &form.fields {
        let value = field.value().map(str::trim);
        match field.var.as_deref() {
            Some("FORM_TYPE") => {
                if value != Some(NS) {
                    return Err(bad_request("FORM_TYPE must be urn:xmpp:mam:2"));
                }
            }
            Some("with") => {
                let jid: Jid = value
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad_request("with: not a JID"))?;
                q.with = Some(jid.to_string());
            }
            Some(var @ ("start" | "end")) => {
                let secs = value
                    .and_then(parse_datetime)
                    .ok_or_else(|| bad_request("start/end: not an XEP-0082 DateTime"))?;
                let micros = secs.saturating_mul(1_000_000);
                if var == "start" {
                    q.start = Some(micros);
                } else {
                    // The stamp has whole seconds: the whole second is in the range.
                    q.end = Some(micros.saturating_add(999_999));
                }
            }
            Some(var @ ("after-id" | "before-id")) => {
                let id = value
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| bad_request("after-id/before-id: empty"))?
                    .to_string();
                if var == "after-id" {
                    q.after_id = Some(id);
                } else {
                    q.before_id = Some(id);
                }
            }
            Some("ids") => {
                if field.values.len() > MAX_PAGE {
                    return Err(bad_request("ids: too many"));
                }
                for id in &field.values {
                    let id = id.trim();
                    if id.is_empty() {
                        return Err(bad_request("ids: empty"));
                    }
                    if !q.ids.iter().any(|i| i == id) {
                        q.ids.push(id.to_string());
                    }
                }
            }
            // XEP-0313 §4.1: a field the server does not support is a bad request.
            _ => return Err(bad_request("unsupported field")),
        }
    }
    Ok(())
}

/// The form a client fills in (XEP-0313 §5.1.1), with the `#extended` fields.
pub(super) fn query_form() -> Element {
    let field = |var: &str, type_| {
        let mut f = Field::new(var, Vec::<String>::new());
        f.type_ = Some(type_);
        f
    };
    let form = DataForm::new(
        FormType::Form,
        vec![
            Field::form_type(NS),
            field("with", FieldType::JidSingle),
            field("start", FieldType::TextSingle),
            field("end", FieldType::TextSingle),
            field("before-id", FieldType::TextSingle),
            field("after-id", FieldType::TextSingle),
            field("ids", FieldType::ListMulti),
        ],
    );
    let mut x = Element::from(form);
    // §5.1.1: the ids are open to any value, and the server lists none of them.
    for f in x.children.iter_mut() {
        if let confab_proto::xml::Node::Element(f) = f {
            if f.get_attr("var") == Some("ids") {
                f.push_child(
                    Element::new("validate", VALIDATE_NS)
                        .attr("datatype", "xs:string")
                        .child(Element::new("open", VALIDATE_NS)),
                );
            }
        }
    }
    Element::new("query", NS).child(x)
}

/// The RSM part of a query: page size, bounds and whether to count.
pub(super) fn apply_rsm(
    query: &Element,
    q: &mut ArchiveQuery,
    max_page: usize,
    always_count: bool,
) -> Result<(), StanzaError> {
    q.max = max_page;
    q.count = always_count;
    let Some(set) = query.get_child("set", RSM_NS) else {
        return Ok(());
    };
    let set = ResultSet::try_from(set).map_err(|_| bad_request("invalid result set"))?;
    // Jumping to an index is optional in XEP-0059 §2.6: paging uses ids.
    if set.index.is_some() {
        return Err(StanzaError::new(
            StanzaErrorCondition::FeatureNotImplemented,
        ));
    }
    if let Some(max) = set.max {
        q.max = max.min(max_page);
        // XEP-0059 §2.7: `<max>0</max>` asks for the count alone.
        if max == 0 {
            q.count = true;
        }
    }
    q.after = set.after;
    q.before = set.before;
    Ok(())
}

/// Sends each archived message of `page` to `session` in a `<result/>`, newest first when
/// the client flipped the page; the results come before the IQ result (XEP-0313 §4.2).
pub(super) async fn send_results(
    ctx: &ServerCtx,
    archive: &BareJid,
    session: &Arc<SessionInfo>,
    query: &Element,
    page: &ArchivePage,
) {
    let queryid = query.get_attr("queryid");
    let flip = query.get_child("flip-page", NS).is_some();
    let limits = ctx.config.limits.parser_limits();
    let mut items: Vec<_> = page.items.iter().collect();
    if flip {
        items.reverse();
    }
    for item in items {
        let Some(original) = parse_fragment(&item.stanza, ns::CLIENT, &limits) else {
            tracing::error!(id = %item.id, archive = %archive, "unparsable archived message");
            continue;
        };
        let mut result = Element::new("result", NS).attr("id", item.id.as_str());
        if let Some(qid) = queryid {
            result.set_attr("queryid", qid);
        }
        let result = result.child(
            Element::new("forwarded", FORWARD_NS)
                .child(
                    Element::new("delay", ns::DELAY)
                        .attr("stamp", format_datetime(item.stamp.div_euclid(1_000_000))),
                )
                .child(original),
        );
        let wrapper = Element::new("message", ns::CLIENT)
            .attr("from", archive.as_str())
            .attr("to", session.jid.as_str())
            .child(result);
        if let Ok(m) = Stanza::from_element(wrapper) {
            router::deliver(ctx, &m, std::slice::from_ref(session)).await;
        }
    }
}

/// The `<fin/>` closing a query: whether the page reaches the end, and its RSM set.
pub(super) fn fin(page: &ArchivePage) -> Element {
    let set = ResultSet {
        first: page.items.first().map(|m| First {
            id: m.id.clone(),
            index: page.first_index.and_then(|i| usize::try_from(i).ok()),
        }),
        last: page.items.last().map(|m| m.id.clone()),
        count: page.count.and_then(|c| usize::try_from(c).ok()),
        ..ResultSet::default()
    };
    let mut fin = Element::new("fin", NS);
    if page.complete {
        fin.set_attr("complete", "true");
    }
    fin.child(Element::from(set))
}

/// The archive's metadata (XEP-0313 §6): its first and last message, or nothing.
pub(super) fn metadata(first: Option<&ArchivePage>, last: Option<&ArchivePage>) -> Element {
    let mut el = Element::new("metadata", NS);
    let ends = (
        first.and_then(|p| p.items.first()),
        last.and_then(|p| p.items.last()),
    );
    if let (Some(f), Some(l)) = ends {
        for (name, m) in [("start", f), ("end", l)] {
            el.push_child(
                Element::new(name, NS)
                    .attr("id", m.id.as_str())
                    .attr("timestamp", format_datetime(m.stamp.div_euclid(1_000_000))),
            );
        }
    }
    el
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::parser::Limits;

    fn parse(xml: &str) -> Result<ArchiveQuery, StanzaError> {
        let el = parse_fragment(xml, NS, &Limits::default()).expect("xml");
        let mut q = ArchiveQuery::default();
        parse_form(&el, &mut q).map(|()| q)
    }

    #[test]
    fn forms() {
        let q = parse(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>
             <field var='with'><value>juliet@capulet.lit</value></field>
             <field var='start'><value>2010-06-07T00:00:00Z</value></field>
             <field var='end'><value>2010-07-07T13:23:54Z</value></field>
             <field var='after-id'><value>a1</value></field>
             <field var='before-id'><value>b2</value></field>
             <field var='ids'><value>x</value><value>y</value><value>x</value></field>
             </x></query>",
        )
        .expect("valid");
        assert_eq!(q.with.as_deref(), Some("juliet@capulet.lit"));
        assert_eq!(q.start, Some(1_275_868_800_000_000));
        assert_eq!(q.end, Some(1_278_509_034_999_999));
        assert_eq!(q.after_id.as_deref(), Some("a1"));
        assert_eq!(q.before_id.as_deref(), Some("b2"));
        assert_eq!(q.ids, ["x", "y"]);
        for bad in [
            "<field var='FORM_TYPE'><value>urn:xmpp:mam:1</value></field>",
            "<field var='with'><value>@@</value></field>",
            "<field var='start'><value>yesterday</value></field>",
            "<field var='after-id'/>",
            "<field var='ids'><value> </value></field>",
            "<field var='include-groupchat'><value>true</value></field>",
        ] {
            let xml = format!(
                "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'>{bad}</x></query>"
            );
            assert!(parse(&xml).is_err(), "{bad}");
        }
        let many: String = (0..=MAX_PAGE)
            .map(|i| format!("<value>{i}</value>"))
            .collect();
        let xml = format!(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='ids'>{many}</field></x></query>"
        );
        assert!(parse(&xml).is_err());
    }

    #[test]
    fn rsm() {
        let rsm = |xml: &str| {
            let el = parse_fragment(xml, NS, &Limits::default()).expect("xml");
            let mut q = ArchiveQuery::default();
            apply_rsm(&el, &mut q, 50, false).map(|()| q)
        };
        let q = rsm("<query xmlns='urn:xmpp:mam:2'/>").expect("no set");
        assert_eq!((q.max, q.count), (50, false));
        let q = rsm("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>500</max><before/></set></query>")
            .expect("capped");
        assert_eq!((q.max, q.before.as_deref()), (50, Some("")));
        let q = rsm("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><max>0</max></set></query>")
            .expect("count only");
        assert_eq!((q.max, q.count), (0, true));
        let e = rsm("<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set></query>");
        assert_eq!(
            e.map_err(|e| e.condition).err(),
            Some(StanzaErrorCondition::FeatureNotImplemented)
        );
    }
}
