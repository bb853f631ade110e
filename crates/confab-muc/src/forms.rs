//! The room configuration form (`muc#roomconfig`), its parsing, and what disco says about
//! the service and a room (features and the `muc#roominfo` form).

use crate::payloads::{
    NS_MODERATE, NS_MUC, NS_OCCUPANT_ID, NS_OWNER, NS_RETRACT, NS_ROOMCONFIG, NS_ROOMINFO,
    NS_SELF_PING, NS_SID, NS_STABLE_ID,
};
use crate::room::{Room, RoomConfig, MAX_TEXT_CHARS};
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::ns;
use confab_proto::payloads::data_form::{DataForm, Field, FieldOption, FieldType, FormType};
use confab_proto::payloads::disco::{DiscoInfo, Identity};
use confab_proto::xml::Element;

const ROOMNAME: &str = "muc#roomconfig_roomname";
const ROOMDESC: &str = "muc#roomconfig_roomdesc";
const PERSISTENT: &str = "muc#roomconfig_persistentroom";
const PUBLIC: &str = "muc#roomconfig_publicroom";
const MEMBERSONLY: &str = "muc#roomconfig_membersonly";
const ALLOWINVITES: &str = "muc#roomconfig_allowinvites";
const PASSWORDPROTECTED: &str = "muc#roomconfig_passwordprotectedroom";
const SECRET: &str = "muc#roomconfig_roomsecret";
const MODERATED: &str = "muc#roomconfig_moderatedroom";
const WHOIS: &str = "muc#roomconfig_whois";
const MAXUSERS: &str = "muc#roomconfig_maxusers";
const CHANGESUBJECT: &str = "muc#roomconfig_changesubject";
/// Archiving (XEP-0313); the name ejabberd uses.
const MAM: &str = "mam";
const NS_MAM: &str = confab_proto::payloads::mam::NS;

fn typed(var: &str, type_: FieldType, label: &str, values: Vec<String>) -> Field {
    Field {
        type_: Some(type_),
        label: Some(label.to_string()),
        ..Field::new(var, values)
    }
}

fn boolean(var: &str, label: &str, v: bool) -> Field {
    typed(
        var,
        FieldType::Boolean,
        label,
        vec![if v { "1" } else { "0" }.to_string()],
    )
}

fn option(v: &str, label: &str) -> FieldOption {
    FieldOption {
        label: Some(label.to_string()),
        value: v.to_string(),
    }
}

/// The `<query xmlns='muc#owner'>` with the form, current values filled in.
pub fn config_query(room: &Room, max_occupants: usize) -> Element {
    let c = &room.config;
    let max_users = if c.max_users == 0 {
        max_occupants
    } else {
        c.max_users
    };
    let mut max_options: Vec<FieldOption> = [10, 20, 30, 50, 100, 200, 500, 1000, 5000]
        .into_iter()
        .filter(|n| *n < max_occupants)
        .chain(std::iter::once(max_occupants))
        .map(|n| option(&n.to_string(), &n.to_string()))
        .collect();
    if !max_options.iter().any(|o| o.value == max_users.to_string()) {
        max_options.push(option(&max_users.to_string(), &max_users.to_string()));
    }
    let mut form = DataForm::new(
        FormType::Form,
        vec![
            Field::form_type(NS_ROOMCONFIG),
            typed(
                ROOMNAME,
                FieldType::TextSingle,
                "Room name",
                vec![c.name.clone()],
            ),
            typed(
                ROOMDESC,
                FieldType::TextSingle,
                "Description",
                vec![c.description.clone()],
            ),
            boolean(
                PERSISTENT,
                "Keep the room when the last occupant leaves",
                c.persistent,
            ),
            boolean(PUBLIC, "List the room in the directory", c.public),
            boolean(MEMBERSONLY, "Only members may enter", c.members_only),
            boolean(
                ALLOWINVITES,
                "Members may invite others (members-only rooms)",
                c.allow_invites,
            ),
            boolean(
                PASSWORDPROTECTED,
                "A password is required to enter",
                c.password.is_some(),
            ),
            typed(
                SECRET,
                FieldType::TextPrivate,
                "Password",
                vec![c.password.clone().unwrap_or_default()],
            ),
            boolean(
                MODERATED,
                "Only participants with voice may speak",
                c.moderated,
            ),
            Field {
                options: vec![
                    option("moderators", "Moderators only"),
                    option("anyone", "Anyone"),
                ],
                ..typed(
                    WHOIS,
                    FieldType::ListSingle,
                    "Who may see occupants' real addresses",
                    vec![if c.whois_anyone {
                        "anyone"
                    } else {
                        "moderators"
                    }
                    .to_string()],
                )
            },
            Field {
                options: max_options,
                ..typed(
                    MAXUSERS,
                    FieldType::ListSingle,
                    "Most occupants",
                    vec![max_users.to_string()],
                )
            },
            boolean(
                CHANGESUBJECT,
                "Participants may change the subject",
                c.change_subject,
            ),
            boolean(MAM, "Archive messages (message archive)", c.mam),
        ],
    );
    form.title = Some(format!("Configuration of {}", room.jid));
    Element::new("query", NS_OWNER).child(form.into())
}

fn bad(text: &str) -> StanzaError {
    StanzaError::with_text(StanzaErrorCondition::BadRequest, text)
}

fn not_acceptable(text: &str) -> StanzaError {
    StanzaError::with_text(StanzaErrorCondition::NotAcceptable, text)
}

fn parse_bool(f: &Field) -> Result<bool, StanzaError> {
    match f.value().map(str::trim) {
        Some("1") | Some("true") => Ok(true),
        Some("0") | Some("false") | None => Ok(false),
        Some(_) => Err(bad("a boolean field holds 0, 1, true or false")),
    }
}

fn text(f: &Field) -> Result<String, StanzaError> {
    let v = f.values.join("\n");
    if v.chars().count() > MAX_TEXT_CHARS {
        return Err(not_acceptable("text too long"));
    }
    Ok(v)
}

/// A submitted form applied over the current configuration: fields not sent keep their
/// values, unknown fields are ignored, a field with a wrong value refuses the whole form.
pub fn parse_config(
    current: &RoomConfig,
    form: &DataForm,
    max_occupants: usize,
) -> Result<RoomConfig, StanzaError> {
    if let Some(t) = form.field("FORM_TYPE").and_then(Field::value) {
        if t != NS_ROOMCONFIG {
            return Err(bad("not a muc#roomconfig form"));
        }
    }
    let mut c = current.clone();
    let mut protected = c.password.is_some();
    let mut secret = c.password.clone().unwrap_or_default();
    for f in &form.fields {
        let Some(var) = f.var.as_deref() else {
            continue;
        };
        match var {
            ROOMNAME => c.name = text(f)?,
            ROOMDESC => c.description = text(f)?,
            PERSISTENT => c.persistent = parse_bool(f)?,
            PUBLIC => c.public = parse_bool(f)?,
            MEMBERSONLY => c.members_only = parse_bool(f)?,
            ALLOWINVITES => c.allow_invites = parse_bool(f)?,
            PASSWORDPROTECTED => protected = parse_bool(f)?,
            SECRET => secret = text(f)?,
            MODERATED => c.moderated = parse_bool(f)?,
            CHANGESUBJECT => c.change_subject = parse_bool(f)?,
            MAM => c.mam = parse_bool(f)?,
            WHOIS => {
                c.whois_anyone = match f.value().map(str::trim) {
                    Some("anyone") => true,
                    Some("moderators") | None => false,
                    Some(_) => return Err(not_acceptable("whois is 'moderators' or 'anyone'")),
                }
            }
            MAXUSERS => {
                let v = f.value().map(str::trim).unwrap_or("");
                c.max_users = match v {
                    "" | "none" | "0" => 0,
                    n => {
                        let n: usize = n.parse().map_err(|_| bad("maxusers is a number"))?;
                        if n > max_occupants {
                            return Err(not_acceptable("maxusers is above the service's limit"));
                        }
                        if n == max_occupants {
                            0
                        } else {
                            n
                        }
                    }
                }
            }
            _ => {}
        }
    }
    c.password = match (protected, secret.is_empty()) {
        (false, _) => None,
        (true, false) => Some(secret),
        (true, true) => return Err(not_acceptable("a password-protected room needs a password")),
    };
    Ok(c)
}

/// disco#info of the service domain.
pub fn service_info(name: &str) -> Element {
    DiscoInfo {
        identities: vec![Identity::new("conference", "text", Some(name))],
        features: vec![
            ns::DISCO_INFO.to_string(),
            ns::DISCO_ITEMS.to_string(),
            NS_MUC.to_string(),
            NS_STABLE_ID.to_string(),
            // XEP-0486 §3.1: clients look for room avatars support on the service.
            crate::avatar::NS_VCARD.to_string(),
        ],
        ..DiscoInfo::default()
    }
    .into()
}

/// disco#info of a room (XEP-0045 §6.4): identity, the features naming its type, and the
/// `muc#roominfo` form.
pub fn room_info(room: &Room) -> Element {
    let c = &room.config;
    let name = if c.name.is_empty() {
        room.jid.node().map(|n| n.as_str().to_string())
    } else {
        Some(c.name.clone())
    };
    let pick = |b: bool, yes: &str, no: &str| if b { yes } else { no }.to_string();
    let mut features = vec![
        ns::DISCO_INFO.to_string(),
        NS_MUC.to_string(),
        NS_STABLE_ID.to_string(),
        NS_SID.to_string(),
        NS_OCCUPANT_ID.to_string(),
        NS_SELF_PING.to_string(),
        NS_MODERATE.to_string(),
        NS_RETRACT.to_string(),
        pick(c.public, "muc_public", "muc_hidden"),
        pick(c.persistent, "muc_persistent", "muc_temporary"),
        pick(c.members_only, "muc_membersonly", "muc_open"),
        pick(
            c.password.is_some(),
            "muc_passwordprotected",
            "muc_unsecured",
        ),
        pick(c.moderated, "muc_moderated", "muc_unmoderated"),
        pick(c.whois_anyone, "muc_nonanonymous", "muc_semianonymous"),
    ];
    if c.mam {
        features.push(NS_MAM.to_string());
        // before-id/after-id/ids, flipped pages and metadata.
        features.push(confab_proto::payloads::mam::EXTENDED.to_string());
        // Retracted and moderated messages stay in the archive as tombstones.
        features.push(format!("{NS_RETRACT}#tombstone"));
    }
    let field = |var: &str, label: &str, v: String| Field {
        label: Some(label.to_string()),
        ..Field::new(var, [v])
    };
    // XEP-0486: the room serves a vCard (its avatar).
    features.push(crate::avatar::NS_VCARD.to_string());
    let mut form = DataForm::new(
        FormType::Result,
        vec![
            Field::form_type(NS_ROOMINFO),
            field("muc#roomconfig_roomname", "Room name", c.name.clone()),
            field(
                "muc#roominfo_description",
                "Description",
                c.description.clone(),
            ),
            field(
                "muc#roominfo_subject",
                "Subject",
                room.subject
                    .as_ref()
                    .map(|s| s.text.clone())
                    .unwrap_or_default(),
            ),
            field(
                "muc#roominfo_occupants",
                "Number of occupants",
                room.occupant_count().to_string(),
            ),
            Field {
                type_: Some(FieldType::Boolean),
                ..field(
                    "muc#roomconfig_changesubject",
                    "Participants may change the subject",
                    pick(c.change_subject, "1", "0"),
                )
            },
        ],
    );
    // XEP-0486 §5.1: every photo's hash, and no field without an avatar.
    if let Some(v) = room.vcard.as_ref().filter(|v| !v.hashes.is_empty()) {
        form.fields.push(Field {
            type_: Some(FieldType::TextMulti),
            label: Some("Avatar hash".into()),
            ..Field::new("muc#roominfo_avatarhash", v.hashes.iter().cloned())
        });
    }
    DiscoInfo {
        identities: vec![Identity::new("conference", "text", name.as_deref())],
        features,
        extensions: vec![form],
        ..DiscoInfo::default()
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::jid::BareJid;

    fn room() -> Room {
        let jid = BareJid::new("coven@chat.shakespeare.lit").expect("jid");
        let owner = BareJid::new("crone1@shakespeare.lit").expect("jid");
        Room::new(jid, owner)
    }

    fn submit(fields: Vec<Field>) -> DataForm {
        DataForm::new(FormType::Submit, fields)
    }

    #[test]
    fn the_form_parses_back_to_the_same_configuration() {
        let mut r = room();
        r.config.name = "A Dark Cave".into();
        r.config.password = Some("cauldronburn".into());
        r.config.max_users = 30;
        let q = config_query(&r, 100);
        let x = q.get_child("x", "jabber:x:data").expect("form");
        let mut form = DataForm::try_from(x).expect("parses");
        form.type_ = FormType::Submit;
        let c = parse_config(&RoomConfig::default(), &form, 100).expect("valid");
        assert_eq!(c, r.config);
    }

    #[test]
    fn wrong_values_are_refused() {
        let base = RoomConfig::default();
        for (f, cond) in [
            (
                Field::new(PERSISTENT, ["yes"]),
                StanzaErrorCondition::BadRequest,
            ),
            (
                Field::new(MAXUSERS, ["many"]),
                StanzaErrorCondition::BadRequest,
            ),
            (
                Field::new(MAXUSERS, ["1000"]),
                StanzaErrorCondition::NotAcceptable,
            ),
            (
                Field::new(WHOIS, ["everyone"]),
                StanzaErrorCondition::NotAcceptable,
            ),
            (
                Field::new(PASSWORDPROTECTED, ["1"]),
                StanzaErrorCondition::NotAcceptable,
            ),
            (
                Field::new(ROOMNAME, ["x".repeat(2000)]),
                StanzaErrorCondition::NotAcceptable,
            ),
            (
                Field::new("FORM_TYPE", ["urn:other"]),
                StanzaErrorCondition::BadRequest,
            ),
        ] {
            let e = parse_config(&base, &submit(vec![f.clone()]), 100).expect_err("refused");
            assert_eq!(e.condition, cond, "{f:?}");
        }
        let ok = parse_config(
            &base,
            &submit(vec![
                Field::new(PASSWORDPROTECTED, ["true"]),
                Field::new(SECRET, ["pw"]),
                Field::new(WHOIS, ["anyone"]),
                Field::new("muc#roomconfig_lang", ["en"]),
            ]),
            100,
        )
        .expect("valid");
        assert_eq!(ok.password.as_deref(), Some("pw"));
        assert!(ok.whois_anyone);
        let off = parse_config(&base, &submit(vec![Field::new(MAM, ["0"])]), 100).expect("valid");
        assert!(!off.mam);
        assert!(parse_config(&base, &submit(vec![Field::new(MAM, ["maybe"])]), 100).is_err());
    }

    #[test]
    fn room_features_follow_the_configuration() {
        let mut r = room();
        let info = DiscoInfo::try_from(&room_info(&r)).expect("parses");
        for f in [
            "muc_public",
            "muc_temporary",
            "muc_open",
            "muc_unsecured",
            "muc_unmoderated",
            "muc_semianonymous",
            NS_MAM,
            NS_SID,
            NS_OCCUPANT_ID,
            NS_SELF_PING,
            NS_MODERATE,
            NS_RETRACT,
            "urn:xmpp:message-retract:1#tombstone",
            "urn:xmpp:mam:2#extended",
        ] {
            assert!(info.has_feature(f), "{f}");
        }
        r.config = RoomConfig {
            mam: false,
            ..RoomConfig::default()
        };
        let info = DiscoInfo::try_from(&room_info(&r)).expect("parses");
        assert!(!info.has_feature(NS_MAM));
        assert!(!info.has_feature("urn:xmpp:message-retract:1#tombstone"));
        r.config = RoomConfig {
            public: false,
            persistent: true,
            members_only: true,
            password: Some("x".into()),
            moderated: true,
            whois_anyone: true,
            ..RoomConfig::default()
        };
        let info = DiscoInfo::try_from(&room_info(&r)).expect("parses");
        for f in [
            "muc_hidden",
            "muc_persistent",
            "muc_membersonly",
            "muc_passwordprotected",
            "muc_moderated",
            "muc_nonanonymous",
        ] {
            assert!(info.has_feature(f), "{f}");
        }
        assert_eq!(info.extensions[0].form_type(), Some(NS_ROOMINFO));
    }
}
