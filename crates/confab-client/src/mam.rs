//! XEP-0313 Message Archive Management: queries of the account's archive (or a room's)
//! with a filter and XEP-0059 paging, returning typed archived messages. Like
//! XMPPFramework's `XMPPMessageArchiveManagement`.
//!
//! Results arrive as messages before the query's iq result; the module collects those of
//! each running query (and only from the archive asked) and consumes them.

use crate::client::{iq, Client};
use crate::error::Error;
use crate::module::{Context, Handled, Module};
use confab_proto::datetime::{format_datetime, parse_datetime};
use confab_proto::payloads::data_form::{DataForm, Field, FormType};
use confab_proto::payloads::rsm::ResultSet;
use confab_proto::{BareJid, Element, IqType, Jid, Stanza, StanzaKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The MAM namespace this module speaks.
pub const MAM_NS: &str = "urn:xmpp:mam:2";
const FORWARD_NS: &str = "urn:xmpp:forward:0";
const DELAY_NS: &str = "urn:xmpp:delay";

/// Most results kept for one query, whatever page size the server uses.
pub const MAX_RESULTS_PER_QUERY: usize = 1000;

/// Which messages to ask for, and which page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MamQuery {
    /// Only messages with this contact (a bare JID: every resource; a full JID: that one).
    pub with: Option<Jid>,
    /// Only messages at or after this time (Unix seconds).
    pub start: Option<i64>,
    /// Only messages at or before this time (Unix seconds).
    pub end: Option<i64>,
    /// Page size (the server may cap it).
    pub max: Option<usize>,
    /// The page after this archive id (the `last` of the previous page).
    pub after: Option<String>,
    /// The page before this archive id; `Some("")` asks for the last page.
    pub before: Option<String>,
}

impl MamQuery {
    /// The first page of `max` messages of the whole archive.
    pub fn first(max: usize) -> Self {
        MamQuery {
            max: Some(max),
            ..MamQuery::default()
        }
    }

    /// The same query, for the page after `page`.
    pub fn next_page(&self, page: &MamPage) -> Option<MamQuery> {
        let last = page.last.clone()?;
        Some(MamQuery {
            after: Some(last),
            before: None,
            ..self.clone()
        })
    }

    fn to_element(&self, queryid: &str) -> Element {
        let mut fields = vec![Field::form_type(MAM_NS)];
        if let Some(w) = &self.with {
            fields.push(Field::new("with", [w.as_str()]));
        }
        if let Some(s) = self.start {
            fields.push(Field::new("start", [format_datetime(s)]));
        }
        if let Some(e) = self.end {
            fields.push(Field::new("end", [format_datetime(e)]));
        }
        let set = ResultSet {
            max: self.max,
            after: self.after.clone(),
            before: self.before.clone(),
            ..ResultSet::default()
        };
        Element::new("query", MAM_NS)
            .attr("queryid", queryid)
            .child(DataForm::new(FormType::Submit, fields).into())
            .child(set.into())
    }
}

/// One archived message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// Its id in the archive (what paging names).
    pub archive_id: String,
    /// When the archive stored it (Unix seconds), if it said.
    pub stamp: Option<i64>,
    /// The sender.
    pub from: Option<Jid>,
    /// The recipient.
    pub to: Option<Jid>,
    /// The text, if it had one.
    pub body: Option<String>,
    /// The message as archived.
    pub message: Element,
}

impl ArchivedMessage {
    /// Reads a `<result/>`; `None` when it is not well-formed.
    fn from_result(result: &Element) -> Option<ArchivedMessage> {
        let archive_id = result.get_attr("id")?.to_string();
        let fwd = result.get_child("forwarded", FORWARD_NS)?;
        let message = fwd.get_child("message", confab_proto::ns::CLIENT)?.clone();
        let stamp = fwd
            .get_child("delay", DELAY_NS)
            .and_then(|d| d.get_attr("stamp"))
            .and_then(parse_datetime);
        let jid = |n: &str| message.get_attr(n).and_then(|j| Jid::new(j).ok());
        Some(ArchivedMessage {
            archive_id,
            stamp,
            from: jid("from"),
            to: jid("to"),
            body: message
                .get_child("body", confab_proto::ns::CLIENT)
                .map(|b| b.text_content()),
            message,
        })
    }
}

/// One page of results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MamPage {
    /// The messages, oldest first.
    pub messages: Vec<ArchivedMessage>,
    /// The page reaches the end of the range asked (the server said `complete`).
    pub complete: bool,
    /// Archive id of the first message of the page.
    pub first: Option<String>,
    /// Archive id of the last one (ask for the page `after` it next).
    pub last: Option<String>,
    /// How many messages the whole range holds, if the server counted.
    pub count: Option<usize>,
}

struct Running {
    /// Whose archive: results from anyone else are not taken.
    archive: String,
    results: Vec<ArchivedMessage>,
    dropped: usize,
}

/// The MAM module. Keep an `Arc<Mam>` to query.
pub struct Mam {
    running: Mutex<HashMap<String, Running>>,
}

impl std::fmt::Debug for Mam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mam")
            .field("running", &self.lock().len())
            .finish()
    }
}

impl Mam {
    /// A MAM module, ready for [`crate::Config::module`].
    pub fn new() -> Arc<Mam> {
        Arc::new(Mam {
            running: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Running>> {
        // Single inserts and removals: still consistent after a panic elsewhere.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queries the account's own archive (`archive` `None`) or a room's (its bare JID)
    /// and returns one page.
    pub async fn query(
        &self,
        client: &Client,
        archive: Option<&BareJid>,
        q: &MamQuery,
    ) -> Result<MamPage, Error> {
        let queryid = client.new_id();
        let owner = match archive {
            Some(a) => a.to_string(),
            None => client.jid().to_bare().to_string(),
        };
        self.lock().insert(
            queryid.clone(),
            Running {
                archive: owner,
                results: Vec::new(),
                dropped: 0,
            },
        );
        let to = archive.map(|a| Jid::from(a.clone()));
        let r = client
            .request(iq(IqType::Set, to.as_ref(), q.to_element(&queryid)))
            .await;
        // Every result came before the iq's reply (one stream, in order).
        let running = self.lock().remove(&queryid);
        let reply = r?;
        let running = running.ok_or(Error::Protocol("query state lost".into()))?;
        if running.dropped > 0 {
            tracing::info!(
                dropped = running.dropped,
                "archive page larger than the client keeps"
            );
        }
        let fin = reply
            .get_child("fin", MAM_NS)
            .ok_or_else(|| Error::Protocol("archive query result without <fin/>".into()))?;
        let set = fin
            .get_child("set", confab_proto::payloads::rsm::NS)
            .map(ResultSet::try_from)
            .transpose()
            .map_err(|e| Error::Protocol(format!("archive result set: {e}")))?
            .unwrap_or_default();
        Ok(MamPage {
            messages: running.results,
            complete: matches!(fin.get_attr("complete"), Some("true" | "1")),
            first: set.first.map(|f| f.id),
            last: set.last,
            count: set.count,
        })
    }

    /// Takes a result message of a running query; whether it was one.
    fn collect(&self, stanza: &Stanza, own_bare: &str) -> bool {
        let Some(result) = stanza.el.elements().find(|e| e.is("result", MAM_NS)) else {
            return false;
        };
        let Some(queryid) = result.get_attr("queryid") else {
            return false;
        };
        let mut running = self.lock();
        let Some(q) = running.get_mut(queryid) else {
            return false;
        };
        // XEP-0313 §4.2: results come from the archive itself (the own account's arrive
        // without `from` or from its bare JID); anyone else's is a forgery.
        let from = stanza
            .from
            .as_ref()
            .map(|f| f.as_str().to_string())
            .unwrap_or_else(|| own_bare.to_string());
        if from != q.archive {
            tracing::debug!(%from, "archive result from an entity not queried");
            return false;
        }
        match ArchivedMessage::from_result(result) {
            Some(m) if q.results.len() < MAX_RESULTS_PER_QUERY => q.results.push(m),
            Some(_) => q.dropped += 1,
            None => tracing::debug!("malformed archive result ignored"),
        }
        true
    }
}

#[async_trait::async_trait]
impl Module for Mam {
    fn name(&self) -> &'static str {
        "mam"
    }

    fn handle(&self, stanza: &Stanza, ctx: &mut Context<'_>) -> Handled {
        if stanza.kind == StanzaKind::Message {
            let own = ctx.jid().to_bare().to_string();
            if self.collect(stanza, &own) {
                return Handled::Consumed;
            }
        }
        Handled::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_fragment(xml: &str) -> Option<Element> {
        confab_proto::parser::parse_fragment(
            xml,
            confab_proto::ns::CLIENT,
            &confab_proto::parser::Limits::default(),
        )
    }

    #[test]
    fn results_only_from_the_archive_queried() {
        let mam = Mam::new();
        mam.lock().insert(
            "q1".into(),
            Running {
                archive: "alice@example.org".into(),
                results: Vec::new(),
                dropped: 0,
            },
        );
        let result = |from: Option<&str>| {
            let mut m = Element::new("message", confab_proto::ns::CLIENT)
                .attr("to", "alice@example.org/pc")
                .child(
                    parse_fragment(
                        "<result xmlns='urn:xmpp:mam:2' queryid='q1' id='a1'>\
                         <forwarded xmlns='urn:xmpp:forward:0'>\
                         <message xmlns='jabber:client' from='bob@example.org/x'>\
                         <body>you sent this</body></message></forwarded></result>",
                    )
                    .expect("xml"),
                );
            if let Some(f) = from {
                m.set_attr("from", f);
            }
            Stanza::from_element(m).expect("stanza")
        };
        let own = "alice@example.org";
        assert!(!mam.collect(&result(Some("mallory@example.org/x")), own));
        assert!(!mam.collect(&result(Some("alice@example.org/other")), own));
        assert!(mam.collect(&result(Some("alice@example.org")), own));
        assert!(mam.collect(&result(None), own));
        assert_eq!(mam.lock()["q1"].results.len(), 2);
    }

    #[test]
    fn query_element() {
        let q = MamQuery {
            with: Some(Jid::new("bob@example.org").expect("jid")),
            start: Some(0),
            max: Some(10),
            before: Some(String::new()),
            ..MamQuery::default()
        };
        let el = q.to_element("q1");
        let parsed = confab_proto::payloads::mam::Query::try_from(&el).expect("valid query");
        assert_eq!(parsed.queryid.as_deref(), Some("q1"));
        assert!(el.to_xml("jabber:client").contains("<before/>"), "{el}");
    }

    #[test]
    fn malformed_results_are_none() {
        let r = parse_fragment(
            "<result xmlns='urn:xmpp:mam:2' id='a1'><forwarded xmlns='urn:xmpp:forward:0'>\
             <delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/>\
             <message xmlns='jabber:client' from='a@b/c' to='d@e'><body>hi</body></message>\
             </forwarded></result>",
        )
        .expect("xml");
        let m = ArchivedMessage::from_result(&r).expect("result");
        assert_eq!(m.body.as_deref(), Some("hi"));
        assert_eq!(m.stamp, Some(1278803305));
        for bad in [
            "<result xmlns='urn:xmpp:mam:2'><forwarded xmlns='urn:xmpp:forward:0'>\
             <message xmlns='jabber:client'/></forwarded></result>",
            "<result xmlns='urn:xmpp:mam:2' id='x'/>",
            "<result xmlns='urn:xmpp:mam:2' id='x'><forwarded xmlns='urn:xmpp:forward:0'/></result>",
        ] {
            let r = parse_fragment(bad).expect("xml");
            assert_eq!(ArchivedMessage::from_result(&r), None, "{bad}");
        }
    }
}
