//! XEP-0313 Message Archive Management, for any archive (an account's, a room's): the
//! query a client sends (data-form filters and RSM paging), the form it may ask for, and
//! what a server answers (`<result/>` per message, then `<fin/>`).

use super::data_form::{DataForm, Field, FieldType, FormType};
use super::rsm::{self, First, ResultSet};
use super::{expect, PayloadError};
use crate::datetime::{format_datetime, parse_datetime};
use crate::jid::Jid;
use crate::ns;
use crate::xml::Element;

pub const NS: &str = "urn:xmpp:mam:2";
/// Before-id, after-id, ids, flipped pages and metadata (XEP-0313 §7.1).
pub const EXTENDED: &str = "urn:xmpp:mam:2#extended";
pub const FORWARD_NS: &str = "urn:xmpp:forward:0";
const VALIDATE_NS: &str = "http://jabber.org/protocol/xdata-validate";
/// Most ids one `ids` field may name: a page's worth.
pub const MAX_IDS: usize = 100;

/// `<query xmlns='urn:xmpp:mam:2'>`: which messages, which page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub queryid: Option<String>,
    pub with: Option<Jid>,
    /// Unix microseconds, inclusive.
    pub start: Option<i64>,
    /// Unix microseconds, inclusive: the whole second the client named.
    pub end: Option<i64>,
    /// `after-id` and `before-id`: bounds of the range (RSM's `after`/`before` page).
    pub after_id: Option<String>,
    pub before_id: Option<String>,
    /// `ids`: only these messages (at most `MAX_IDS`, no repeats).
    pub ids: Vec<String>,
    /// `<flip-page/>`: the page's results are sent newest first.
    pub flip_page: bool,
    /// RSM `max`, `after`, `before` (an empty `<before/>` asks for the last page).
    pub set: ResultSet,
}

impl Query {
    /// The page size asked for, at most `cap` (which is also the default).
    pub fn page_size(&self, cap: usize) -> usize {
        self.set.max.map_or(cap, |m| m.min(cap))
    }
}

impl TryFrom<&Element> for Query {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", NS)?;
        let mut q = Query {
            queryid: el.get_attr("queryid").map(str::to_string),
            flip_page: el.get_child("flip-page", NS).is_some(),
            ..Query::default()
        };
        if let Some(x) = el.get_child("x", super::data_form::NS) {
            parse_form(x, &mut q)?;
        }
        if let Some(set) = el.get_child("set", rsm::NS) {
            q.set = ResultSet::try_from(set)?;
            if q.set.index.is_some() {
                return Err(PayloadError::NotImplemented(
                    "RSM <index/> is not supported",
                ));
            }
        }
        Ok(q)
    }
}

/// The filters of a query's data form (XEP-0313 §4.1).
fn parse_form(x: &Element, q: &mut Query) -> Result<(), PayloadError> {
    let form = DataForm::try_from(x).map_err(|_| PayloadError::BadRequest("invalid data form"))?;
    if form.type_ != FormType::Submit {
        return Err(PayloadError::BadRequest("the form must be of type submit"));
    }
    for field in &form.fields {
        let value = field.value().map(str::trim);
        match field.var.as_deref() {
            Some("FORM_TYPE") => {
                if value != Some(NS) {
                    return Err(PayloadError::BadRequest("FORM_TYPE must be urn:xmpp:mam:2"));
                }
            }
            Some("with") => {
                let jid: Jid = value
                    .and_then(|v| v.parse().ok())
                    .ok_or(PayloadError::BadRequest("with: not a JID"))?;
                q.with = Some(jid);
            }
            Some(var @ ("start" | "end")) => {
                let secs = value
                    .and_then(parse_datetime)
                    .ok_or(PayloadError::BadRequest(
                        "start/end: not an XEP-0082 DateTime",
                    ))?;
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
                    .ok_or(PayloadError::BadRequest("after-id/before-id: empty"))?
                    .to_string();
                if var == "after-id" {
                    q.after_id = Some(id);
                } else {
                    q.before_id = Some(id);
                }
            }
            Some("ids") => {
                if field.values.len() > MAX_IDS {
                    return Err(PayloadError::BadRequest("ids: too many"));
                }
                for id in &field.values {
                    let id = id.trim();
                    if id.is_empty() {
                        return Err(PayloadError::BadRequest("ids: empty"));
                    }
                    if !q.ids.iter().any(|i| i == id) {
                        q.ids.push(id.to_string());
                    }
                }
            }
            // XEP-0313 §4.1: a field the server does not support is a bad request.
            _ => return Err(PayloadError::BadRequest("unsupported field")),
        }
    }
    Ok(())
}

/// The form a client fills in (XEP-0313 §5.1.1), in its `<query/>`; with the `#extended`
/// fields when the archive offers them.
pub fn query_form(extended: bool) -> Element {
    let field = |var: &str, t: FieldType| Field {
        type_: Some(t),
        ..Field::new(var, Vec::<String>::new())
    };
    let mut fields = vec![
        Field::form_type(NS),
        field("with", FieldType::JidSingle),
        field("start", FieldType::TextSingle),
        field("end", FieldType::TextSingle),
    ];
    if extended {
        fields.push(field("before-id", FieldType::TextSingle));
        fields.push(field("after-id", FieldType::TextSingle));
        fields.push(field("ids", FieldType::ListMulti));
    }
    let mut x = Element::from(DataForm::new(FormType::Form, fields));
    // §5.1.1: the ids are open to any value, and the server lists none of them.
    for f in x.children.iter_mut() {
        if let crate::xml::Node::Element(f) = f {
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

/// One end of an archive: a message's id and its stamp in Unix microseconds.
pub type ArchiveEnd<'a> = (&'a str, i64);

/// The archive's metadata (§6): the id and time of its first and last message, or nothing
/// for an empty archive.
pub fn metadata(ends: Option<(ArchiveEnd<'_>, ArchiveEnd<'_>)>) -> Element {
    let mut el = Element::new("metadata", NS);
    if let Some((first, last)) = ends {
        for (name, (id, stamp_micros)) in [("start", first), ("end", last)] {
            el.push_child(Element::new(name, NS).attr("id", id).attr(
                "timestamp",
                format_datetime(stamp_micros.div_euclid(1_000_000)),
            ));
        }
    }
    el
}

/// One result: `<message from to><result queryid id><forwarded><delay/>message`.
pub fn result_message(
    from: &str,
    to: &str,
    queryid: Option<&str>,
    id: &str,
    stamp_micros: i64,
    original: Element,
) -> Element {
    let mut result = Element::new("result", NS).attr("id", id);
    if let Some(qid) = queryid {
        result.set_attr("queryid", qid);
    }
    let forwarded = Element::new("forwarded", FORWARD_NS)
        .child(
            Element::new("delay", ns::DELAY)
                .attr("stamp", format_datetime(stamp_micros.div_euclid(1_000_000))),
        )
        .child(original);
    Element::new("message", ns::CLIENT)
        .attr("from", from)
        .attr("to", to)
        .child(result.child(forwarded))
}

/// `result_message` for a message stored as XML (`jabber:client`), with `adjust` applied to
/// the parsed message first; `None` if the stored text does not parse.
#[allow(clippy::too_many_arguments)]
pub fn stored_result(
    from: &str,
    to: &str,
    queryid: Option<&str>,
    id: &str,
    stamp_micros: i64,
    stored: &str,
    limits: &crate::parser::Limits,
    adjust: impl FnOnce(&mut Element),
) -> Option<Element> {
    let mut original = crate::parser::parse_fragment(stored, ns::CLIENT, limits)?;
    adjust(&mut original);
    Some(result_message(
        from,
        to,
        queryid,
        id,
        stamp_micros,
        original,
    ))
}

/// The IQ result's `<fin/>`: whether the page reaches the end, its first and last ids, and
/// when counted the size of the range and the position of the first item in it.
pub fn fin(
    complete: bool,
    first: Option<&str>,
    last: Option<&str>,
    count: Option<u64>,
    first_index: Option<u64>,
) -> Element {
    let set = ResultSet {
        first: first.map(|id| First {
            id: id.to_string(),
            index: first_index.and_then(|i| usize::try_from(i).ok()),
        }),
        last: last.map(str::to_string),
        count: count.and_then(|c| usize::try_from(c).ok()),
        ..ResultSet::default()
    };
    let mut fin = Element::new("fin", NS);
    if complete {
        fin.set_attr("complete", "true");
    }
    fin.child(Element::from(set))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{parse_fragment, Limits};

    fn parse(xml: &str) -> Result<Query, PayloadError> {
        let el = parse_fragment(xml, NS, &Limits::default()).expect("xml");
        Query::try_from(&el)
    }

    #[test]
    fn queries() {
        let q = parse(
            "<query xmlns='urn:xmpp:mam:2' queryid='f27'><x xmlns='jabber:x:data' type='submit'>
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>
             <field var='with'><value>juliet@capulet.lit</value></field>
             <field var='start'><value>2010-06-07T00:00:00Z</value></field>
             <field var='end'><value>2010-07-07T13:23:54Z</value></field>
             <field var='after-id'><value>a1</value></field>
             <field var='before-id'><value>b2</value></field>
             <field var='ids'><value>x</value><value>y</value><value>x</value></field>
             </x><set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set><flip-page/></query>",
        )
        .expect("valid");
        assert_eq!(q.queryid.as_deref(), Some("f27"));
        assert_eq!(
            q.with.as_ref().map(|j| j.to_string()).as_deref(),
            Some("juliet@capulet.lit")
        );
        assert_eq!(q.start, Some(1_275_868_800_000_000));
        assert_eq!(q.end, Some(1_278_509_034_999_999));
        assert_eq!(q.set.before.as_deref(), Some(""));
        assert_eq!(q.after_id.as_deref(), Some("a1"));
        assert_eq!(q.before_id.as_deref(), Some("b2"));
        assert_eq!(q.ids, ["x", "y"]);
        assert!(q.flip_page);
        assert_eq!(q.page_size(5), 5);
        assert_eq!(q.page_size(50), 10);
        assert_eq!(
            parse("<query xmlns='urn:xmpp:mam:2'/>").expect("empty"),
            Query::default()
        );
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
            assert_eq!(
                parse(&xml).map_err(|e| e.condition()),
                Err(crate::error::StanzaErrorCondition::BadRequest),
                "{bad}"
            );
        }
        let e = parse(
            "<query xmlns='urn:xmpp:mam:2'><set xmlns='http://jabber.org/protocol/rsm'><index>3</index></set></query>",
        );
        assert_eq!(
            e.map_err(|e| e.condition()),
            Err(crate::error::StanzaErrorCondition::FeatureNotImplemented)
        );
    }

    #[test]
    fn too_many_ids() {
        let many: String = (0..=MAX_IDS)
            .map(|i| format!("<value>{i}</value>"))
            .collect();
        let xml = format!(
            "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='submit'><field var='ids'>{many}</field></x></query>"
        );
        assert!(parse(&xml).is_err());
        let form = query_form(true).to_xml(NS);
        assert!(form.contains("ids") && form.contains("<open"), "{form}");
        assert!(!query_form(false).to_xml(NS).contains("after-id"));
    }

    #[test]
    fn answers() {
        let m = result_message(
            "r@muc.lit",
            "a@lit/x",
            Some("q1"),
            "id1",
            1_000_500_000,
            Element::new("message", ns::CLIENT),
        );
        let r = m.get_child("result", NS).expect("result");
        assert_eq!(r.get_attr("queryid"), Some("q1"));
        let f = r.get_child("forwarded", FORWARD_NS).expect("forwarded");
        assert_eq!(
            f.get_child("delay", ns::DELAY)
                .and_then(|d| d.get_attr("stamp")),
            Some("1970-01-01T00:16:40Z")
        );
        let fin = fin(true, Some("a"), Some("b"), Some(7), Some(3));
        assert_eq!(fin.get_attr("complete"), Some("true"));
        let set = ResultSet::try_from(fin.get_child("set", rsm::NS).expect("set")).expect("set");
        assert_eq!(set.count, Some(7));
        assert_eq!(set.first.as_ref().and_then(|f| f.index), Some(3));
        assert_eq!(set.first.map(|f| f.id).as_deref(), Some("a"));
        assert_eq!(set.last.as_deref(), Some("b"));
    }
}
