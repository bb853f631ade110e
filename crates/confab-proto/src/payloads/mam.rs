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
pub const FORWARD_NS: &str = "urn:xmpp:forward:0";

/// `<query xmlns='urn:xmpp:mam:2'>`: which messages, which page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub queryid: Option<String>,
    pub with: Option<Jid>,
    /// Unix microseconds, inclusive.
    pub start: Option<i64>,
    /// Unix microseconds, inclusive: the whole second the client named.
    pub end: Option<i64>,
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
            // XEP-0313 §4.1: a field the server does not support is a bad request.
            _ => return Err(PayloadError::BadRequest("unsupported field")),
        }
    }
    Ok(())
}

/// The form a client fills in (XEP-0313 §5.1.1), in its `<query/>`.
pub fn query_form() -> Element {
    let field = |var: &str, t: FieldType| Field {
        type_: Some(t),
        ..Field::new(var, Vec::<String>::new())
    };
    let form = DataForm::new(
        FormType::Form,
        vec![
            Field::form_type(NS),
            field("with", FieldType::JidSingle),
            field("start", FieldType::TextSingle),
            field("end", FieldType::TextSingle),
        ],
    );
    Element::new("query", NS).child(Element::from(form))
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

/// The IQ result's `<fin/>`: whether the page reaches the end, and its first and last ids.
pub fn fin(complete: bool, first: Option<&str>, last: Option<&str>) -> Element {
    let set = ResultSet {
        first: first.map(|id| First {
            id: id.to_string(),
            index: None,
        }),
        last: last.map(str::to_string),
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
             </x><set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set></query>",
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
            "<field var='ids'><value>a</value></field>",
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
        let fin = fin(true, Some("a"), Some("b"));
        assert_eq!(fin.get_attr("complete"), Some("true"));
        let set = ResultSet::try_from(fin.get_child("set", rsm::NS).expect("set")).expect("set");
        assert_eq!(set.first.map(|f| f.id).as_deref(), Some("a"));
        assert_eq!(set.last.as_deref(), Some("b"));
    }
}
