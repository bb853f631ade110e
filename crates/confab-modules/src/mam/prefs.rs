//! XEP-0441 archiving preferences: which conversations an account's archive keeps.
//!
//! Stored per account in the module's store as the `<prefs/>` element. Accounts with a bound session keep
//! theirs in memory (dropped when the last session closes), so the archive decision for an
//! online account reads nothing; an offline recipient's are read from the store.

use super::NS;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::{BareJid, Jid};
use confab_proto::parser::parse_fragment;
use confab_proto::xml::Element;
use confab_server::module::ModuleStore;
use confab_server::ServerCtx;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The store key of an account's preferences.
const KEY: &str = "prefs";

/// What happens to messages with a JID in neither list (XEP-0441 §2.1.1).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPolicy {
    Always,
    Never,
    /// Archived when the contact's bare JID is in the account's roster.
    Roster,
}

impl DefaultPolicy {
    fn as_str(self) -> &'static str {
        match self {
            DefaultPolicy::Always => "always",
            DefaultPolicy::Never => "never",
            DefaultPolicy::Roster => "roster",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        match s {
            "always" => Some(DefaultPolicy::Always),
            "never" => Some(DefaultPolicy::Never),
            "roster" => Some(DefaultPolicy::Roster),
            _ => None,
        }
    }
}

/// One account's preferences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefs {
    pub default: DefaultPolicy,
    /// Normalised JIDs, bare or full.
    pub always: Vec<String>,
    pub never: Vec<String>,
}

fn bad_request(text: &str) -> StanzaError {
    StanzaError {
        text: Some(text.to_string()),
        ..StanzaError::new(StanzaErrorCondition::BadRequest)
    }
}

impl Prefs {
    pub fn new(default: DefaultPolicy) -> Self {
        Prefs {
            default,
            always: Vec::new(),
            never: Vec::new(),
        }
    }

    /// Reads a `<prefs/>` set by a client; at most `max_jids` JIDs in each list.
    pub fn from_element(el: &Element, max_jids: usize) -> Result<Self, StanzaError> {
        let default = el
            .get_attr("default")
            .and_then(DefaultPolicy::from_name)
            .ok_or_else(|| bad_request("default must be always, never or roster"))?;
        let list = |name: &str| -> Result<Vec<String>, StanzaError> {
            let Some(list) = el.get_child(name, NS) else {
                return Ok(Vec::new());
            };
            let mut jids: Vec<String> = Vec::new();
            for j in list.elements() {
                if !j.is("jid", NS) {
                    return Err(bad_request("only <jid/> elements may be listed"));
                }
                let jid: Jid = j
                    .text_content()
                    .trim()
                    .parse()
                    .map_err(|_| bad_request("not a JID"))?;
                let jid = jid.to_string();
                if !jids.contains(&jid) {
                    jids.push(jid);
                }
                if jids.len() > max_jids {
                    return Err(StanzaError {
                        text: Some(format!("at most {max_jids} JIDs per list")),
                        ..StanzaError::new(StanzaErrorCondition::NotAcceptable)
                    });
                }
            }
            Ok(jids)
        };
        Ok(Prefs {
            default,
            always: list("always")?,
            never: list("never")?,
        })
    }

    pub fn to_element(&self) -> Element {
        let list = |name: &str, jids: &[String]| {
            jids.iter().fold(Element::new(name, NS), |l, j| {
                l.child(Element::new("jid", NS).text(j.as_str()))
            })
        };
        Element::new("prefs", NS)
            .attr("default", self.default.as_str())
            .child(list("always", &self.always))
            .child(list("never", &self.never))
    }

    /// Whether a list names `target` (XEP-0441 §2.3: a listed bare JID matches every
    /// resource, a full one only itself): `Some(false)` for never, which wins over always.
    pub fn listed(&self, target: &Jid) -> Option<bool> {
        let full = target.to_string();
        let bare = target.to_bare().to_string();
        let names = |l: &[String]| {
            l.iter()
                .any(|j| *j == full || (*j == bare && !j.contains('/')))
        };
        if names(&self.never) {
            Some(false)
        } else if names(&self.always) {
            Some(true)
        } else {
            None
        }
    }
}

/// The preferences of accounts, with the online ones in memory.
pub struct PrefsCache {
    store: ModuleStore,
    online: DashMap<BareJid, Arc<Prefs>>,
}

impl PrefsCache {
    pub fn new(store: ModuleStore) -> Self {
        PrefsCache {
            store,
            online: DashMap::new(),
        }
    }

    /// The account's preferences, or those of the server (`default`) when it set none.
    pub async fn get(
        &self,
        ctx: &ServerCtx,
        account: &BareJid,
        default: DefaultPolicy,
    ) -> Result<Arc<Prefs>, String> {
        if let Some(p) = self.online.get(account) {
            return Ok(p.clone());
        }
        let prefs = match self.store.get(ctx, account, KEY).await {
            Ok(None) => Prefs::new(default),
            Ok(Some(xml)) => parse_fragment(&xml, NS, &ctx.config.limits.parser_limits())
                .ok_or_else(|| "stored archiving preferences are not XML".to_string())
                .and_then(|el| {
                    Prefs::from_element(&el, usize::MAX).map_err(|e| {
                        format!("stored archiving preferences are unreadable: {:?}", e.text)
                    })
                })?,
            Err(e) => return Err(e.to_string()),
        };
        let prefs = Arc::new(prefs);
        if !ctx.router.sessions_of(account).is_empty() {
            self.online.insert(account.clone(), prefs.clone());
        }
        Ok(prefs)
    }

    pub async fn set(
        &self,
        ctx: &ServerCtx,
        account: &BareJid,
        prefs: Prefs,
    ) -> Result<(), String> {
        let xml = prefs.to_element().to_xml(NS);
        self.store
            .set(ctx, account, KEY, &xml)
            .await
            .map_err(|e| e.to_string())?;
        self.online.insert(account.clone(), Arc::new(prefs));
        Ok(())
    }

    /// Forgets an account's preferences in memory (its last session closed, or it went).
    pub fn forget(&self, account: &BareJid) {
        self.online.remove(account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::parser::Limits;

    fn prefs(xml: &str) -> Result<Prefs, StanzaError> {
        let el = parse_fragment(xml, NS, &Limits::default()).expect("xml");
        Prefs::from_element(&el, 2)
    }

    #[test]
    fn parsing_and_matching() {
        let p = prefs(
            "<prefs xmlns='urn:xmpp:mam:2' default='roster'>
             <always><jid>romeo@montague.lit</jid><jid>nurse@capulet.lit/chamber</jid></always>
             <never><jid>montague@montague.lit</jid><jid>romeo@montague.lit/spy</jid></never>
             </prefs>",
        )
        .expect("valid");
        assert_eq!(p.default, DefaultPolicy::Roster);
        let jid = |s: &str| s.parse::<Jid>().expect("jid");
        assert_eq!(p.listed(&jid("romeo@montague.lit/home")), Some(true));
        assert_eq!(p.listed(&jid("romeo@montague.lit")), Some(true));
        // Never wins over always.
        assert_eq!(p.listed(&jid("romeo@montague.lit/spy")), Some(false));
        assert_eq!(p.listed(&jid("montague@montague.lit/x")), Some(false));
        // A full JID listed matches only itself.
        assert_eq!(p.listed(&jid("nurse@capulet.lit/chamber")), Some(true));
        assert_eq!(p.listed(&jid("nurse@capulet.lit")), None);
        assert_eq!(p.listed(&jid("tybalt@capulet.lit")), None);
        // What the server answers reads back the same.
        assert_eq!(
            Prefs::from_element(&p.to_element(), 2).expect("round trip"),
            p
        );
    }

    #[test]
    fn bad_preferences() {
        for bad in [
            "<prefs xmlns='urn:xmpp:mam:2'/>",
            "<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>",
            "<prefs xmlns='urn:xmpp:mam:2' default='always'><always><jid>@@</jid></always></prefs>",
            "<prefs xmlns='urn:xmpp:mam:2' default='always'><always><x/></always></prefs>",
        ] {
            assert!(prefs(bad).is_err(), "{bad}");
        }
        let too_many = prefs(
            "<prefs xmlns='urn:xmpp:mam:2' default='always'><never>
             <jid>a@b</jid><jid>c@d</jid><jid>e@f</jid></never></prefs>",
        );
        assert_eq!(
            too_many.map_err(|e| e.condition),
            Err(StanzaErrorCondition::NotAcceptable)
        );
    }
}
