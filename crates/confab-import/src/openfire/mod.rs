//! `confabd import --from openfire mysql://…`: reads an Openfire (4.x) MySQL/MariaDB
//! database directly and imports it through the XEP-0227 importer, so the same checks and
//! the same all-or-nothing per user apply. The database is only read.

pub mod blowfish;

use crate::pie::{self, ImportError, ImportOptions, ImportReport, NS, NS_SCRAM};
use confab_proto::parser::{parse_fragment, Limits};
use confab_proto::xml::{escape, Element};
use confab_store::Stores;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::Row;
use tokio::io::AsyncWriteExt;

/// What an Openfire import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenfireReport {
    /// Openfire's domain (`xmpp.domain`), the host the users were imported into.
    pub domain: String,
    /// The import of the users (see `pie::ImportReport`).
    pub import: ImportReport,
    /// Openfire's administrators (`admin.authorizedJIDs`), for the operator to grant again.
    pub admins: Vec<String>,
    /// What could not be read, per user (a password that does not decrypt, a vCard that
    /// is not XML, ...).
    pub notes: Vec<String>,
}

/// Reads the Openfire database at `url` (`mysql://user:password@host/openfire`) into
/// `stores`. The users' host is Openfire's `xmpp.domain`, which must be served here.
pub async fn import(
    url: &str,
    stores: &Stores,
    opts: &ImportOptions,
) -> Result<OpenfireReport, ImportError> {
    let fail = |why: String| ImportError {
        why,
        report: ImportReport::default(),
    };
    let shown = confab_store::Backend::Mysql { url: url.into() }.display_url();
    let pool = MySqlPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| fail(format!("Openfire's database {shown}: {e}")))?;
    // `ofProperty.encrypted` came with Openfire 4.1; older databases lack the column.
    let has_encrypted = sqlx::query("SELECT encrypted FROM ofProperty LIMIT 0")
        .fetch_all(&pool)
        .await
        .is_ok();
    let property = |name: &'static str| {
        let pool = pool.clone();
        async move {
            // A value Openfire keeps encrypted (its key is in its conf/security.xml, not in
            // the database) is as good as unset: never use ciphertext as a value.
            let sql = if has_encrypted {
                "SELECT propValue FROM ofProperty WHERE name = ? AND (encrypted IS NULL OR encrypted = 0)"
            } else {
                "SELECT propValue FROM ofProperty WHERE name = ?"
            };
            sqlx::query_scalar::<_, String>(sql)
                .bind(name)
                .fetch_optional(&pool)
                .await
                .map_err(|e| fail(format!("Openfire's ofProperty: {e}")))
        }
    };
    // Whether a property is there at all, readable or not.
    let present = |name: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT name FROM ofProperty WHERE name = ?")
                .bind(name)
                .fetch_optional(&pool)
                .await
                .map(|r| r.is_some())
                .map_err(|e| fail(format!("Openfire's ofProperty: {e}")))
        }
    };
    let domain = property("xmpp.domain")
        .await?
        .ok_or_else(|| fail("Openfire's ofProperty has no xmpp.domain".into()))?;
    let password_key = property("passwordKey").await?;
    // Openfire's own default ("admin") holds only for its default admin provider with no
    // admin property at all; an encrypted list or another provider (groups, LDAP) names
    // admins this import cannot see.
    let default_provider = if present("provider.admin.className").await? {
        property("provider.admin.className")
            .await?
            .is_some_and(|c| c.ends_with(".DefaultAdminProvider"))
    } else {
        true
    };
    let unreadable = (present("admin.authorizedJIDs").await?
        && property("admin.authorizedJIDs").await?.is_none())
        || (present("admin.authorizedUsernames").await?
            && property("admin.authorizedUsernames").await?.is_none());
    let admins = openfire_admins(
        &domain,
        property("admin.authorizedJIDs").await?.as_deref(),
        property("admin.authorizedUsernames").await?.as_deref(),
        default_provider && !unreadable,
    );

    // The document is written into a pipe as the database is read, and imported as it
    // arrives: decrypted passwords never touch a disk, memory holds one user at a time.
    let (mut tx, rx) = tokio::io::duplex(64 * 1024);
    let writer = {
        let (pool, domain) = (pool.clone(), domain.clone());
        async move {
            let r = write_document(&pool, &domain, password_key.as_deref(), &mut tx).await;
            let _ = tx.shutdown().await;
            r
        }
    };
    let name = format!("Openfire database {shown}");
    let (written, imported) = tokio::join!(
        writer,
        pie::import_stream(stores, Box::new(rx), &name, opts)
    );
    pool.close().await;
    let notes = match written {
        Ok(notes) => notes,
        Err(e) => {
            let report = match imported {
                Ok(r) => r,
                Err(i) => i.report,
            };
            return Err(ImportError {
                why: format!("reading Openfire's database: {e}"),
                report,
            });
        }
    };
    Ok(OpenfireReport {
        domain,
        import: imported?,
        admins,
        notes,
    })
}

/// Openfire's administrators as its default admin provider reads them: the JIDs of
/// `admin.authorizedJIDs`, the users of the older `admin.authorizedUsernames` on the
/// server's domain, and, when neither names anyone, the user `admin`.
fn openfire_admins(
    domain: &str,
    jids: Option<&str>,
    usernames: Option<&str>,
    default_admin: bool,
) -> Vec<String> {
    let list = |v: Option<&str>| -> Vec<String> {
        v.unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut admins = list(jids);
    for u in list(usernames) {
        let jid = format!("{u}@{domain}");
        if !admins.contains(&jid) {
            admins.push(jid);
        }
    }
    if admins.is_empty() && default_admin {
        admins.push(format!("admin@{domain}"));
    }
    admins
}

/// Whether `password` gives Openfire's SCRAM-SHA-1 StoredKey (base64) with its salt
/// (base64) and iteration count. PBKDF2 runs on the blocking pool.
async fn same_password(password: &str, stored_key: &str, salt: &str, iterations: i32) -> bool {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Ok(salt), Ok(stored), Ok(iterations)) = (
        b64.decode(salt.trim()),
        b64.decode(stored_key.trim()),
        u32::try_from(iterations),
    ) else {
        return false;
    };
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        confab_proto::sasl::ScramCredentials::derive(
            confab_proto::sasl::ScramHash::Sha1,
            &password,
            &salt,
            iterations,
        )
        .is_ok_and(|c| c.stored_key == stored)
    })
    .await
    .unwrap_or(false)
}

fn col<T>(row: &sqlx::mysql::MySqlRow, name: &str) -> Result<T, String>
where
    T: for<'r> sqlx::Decode<'r, sqlx::MySql> + sqlx::Type<sqlx::MySql>,
{
    row.try_get(name).map_err(|e| format!("column {name}: {e}"))
}

/// Openfire's `creationDate`: milliseconds since 1970, zero-padded to 15 digits.
fn millis_to_secs(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok().map(|ms| ms.div_euclid(1000))
}

/// Writes the Openfire users as one XEP-0227 document; returns the notes about what
/// could not be read.
async fn write_document<W: tokio::io::AsyncWrite + Unpin>(
    pool: &MySqlPool,
    domain: &str,
    password_key: Option<&str>,
    out: &mut W,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let limits = Limits {
        max_stanza_memory: 16 * 1024 * 1024,
        ..Limits::default()
    };
    let head = format!(
        "<server-data xmlns='{NS}'><host jid='{}'>\n",
        escape(domain)
    );
    out.write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let users = sqlx::query(
        "SELECT username, storedKey, serverKey, salt, iterations, plainPassword, encryptedPassword FROM ofUser ORDER BY username",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| format!("ofUser: {e}"))?;
    for row in &users {
        let username: String = col(row, "username")?;
        let who = format!("{username}@{domain}");
        let mut user = Element::new("user", NS).attr("name", username.clone());
        let stored: Option<String> = col(row, "storedKey")?;
        let server: Option<String> = col(row, "serverKey")?;
        let salt: Option<String> = col(row, "salt")?;
        let iterations: Option<i32> = col(row, "iterations")?;
        let plain: Option<String> = col(row, "plainPassword")?;
        let encrypted: Option<String> = col(row, "encryptedPassword")?;
        let keys = match (stored, server, salt, iterations) {
            (Some(st), Some(sv), Some(sa), Some(it)) if it > 0 => Some((st, sv, sa, it)),
            _ => None,
        };
        let password = match (
            plain.filter(|p| !p.is_empty()),
            encrypted.filter(|e| !e.is_empty()),
        ) {
            (Some(p), _) => Some(p),
            (None, Some(e)) => {
                let p = password_key.and_then(|k| blowfish::decrypt(k, &e));
                if p.is_none() && keys.is_none() {
                    notes.push(format!(
                        "{who}: the encrypted password does not decrypt with the database's passwordKey"
                    ));
                }
                p
            }
            (None, None) => None,
        };
        // The password itself is better than Openfire's SCRAM-SHA-1 keys: SCRAM-SHA-256
        // keys are derived from it too. Used only when it is the one the keys were made
        // from.
        let use_password = match (&password, &keys) {
            (Some(p), Some((st, _, sa, it))) => {
                let matches = same_password(p, st, sa, *it).await;
                if !matches {
                    notes.push(format!(
                        "{who}: the stored password does not match the SCRAM keys; the keys are kept"
                    ));
                }
                matches
            }
            (Some(_), None) => true,
            _ => false,
        };
        match (password, keys) {
            (Some(p), _) if use_password => user.set_attr("password", p),
            (_, Some((st, sv, sa, it))) => {
                // Openfire keeps SCRAM-SHA-1 keys, in base64, as XEP-0227 has them.
                user.push_child(
                    Element::new("scram-credentials", NS_SCRAM)
                        .attr("mechanism", "SCRAM-SHA-1")
                        .child(Element::new("iter-count", NS_SCRAM).text(it.to_string()))
                        .child(Element::new("salt", NS_SCRAM).text(sa))
                        .child(Element::new("server-key", NS_SCRAM).text(sv))
                        .child(Element::new("stored-key", NS_SCRAM).text(st)),
                );
            }
            _ => {}
        }

        let items = sqlx::query(
            "SELECT rosterID, jid, sub, ask, recv, nick, stanza FROM ofRoster WHERE username = ? ORDER BY rosterID",
        )
        .bind(&username)
        .fetch_all(pool)
        .await
        .map_err(|e| format!("ofRoster: {e}"))?;
        let mut roster = Element::new("query", "jabber:iq:roster");
        let mut requests = Vec::new();
        for item in &items {
            let id: i64 = col(item, "rosterID")?;
            let jid: String = col(item, "jid")?;
            let sub: i8 = col(item, "sub")?;
            let ask: i8 = col(item, "ask")?;
            let recv: i8 = col(item, "recv")?;
            let nick: Option<String> = col(item, "nick")?;
            let stanza: Option<String> = col(item, "stanza")?;
            let subscription = match sub {
                0 => "none",
                1 => "to",
                2 => "from",
                3 => "both",
                // -1: being removed.
                _ => continue,
            };
            // recv 1: the contact asked for the user's presence and was not answered yet.
            if recv == 1 {
                let request = stanza
                    .as_deref()
                    .and_then(|s| parse_fragment(s, confab_proto::ns::CLIENT, &limits))
                    .filter(|p| p.name == "presence" && p.get_attr("type") == Some("subscribe"))
                    .unwrap_or_else(|| {
                        Element::new("presence", confab_proto::ns::CLIENT).attr("type", "subscribe")
                    });
                let mut request = request;
                request.set_attr("from", jid.clone());
                requests.push(request);
            }
            // An item that only carries an unanswered request is not in the user's roster.
            if sub == 0 && ask != 0 && recv == 1 && nick.is_none() {
                continue;
            }
            let mut el = Element::new("item", "jabber:iq:roster")
                .attr("jid", jid.clone())
                .attr("subscription", subscription);
            if let Some(n) = nick.filter(|n| !n.is_empty()) {
                el.set_attr("name", n);
            }
            if ask == 0 {
                el.set_attr("ask", "subscribe");
            }
            let groups = sqlx::query_scalar::<_, String>(
                "SELECT groupName FROM ofRosterGroups WHERE rosterID = ? ORDER BY `rank`",
            )
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(|e| format!("ofRosterGroups: {e}"))?;
            for g in groups {
                el.push_child(Element::new("group", "jabber:iq:roster").text(g));
            }
            roster.push_child(el);
        }
        if !roster.children.is_empty() {
            user.push_child(roster);
        }
        for r in requests {
            user.push_child(r);
        }

        let vcard = sqlx::query_scalar::<_, String>("SELECT vcard FROM ofVCard WHERE username = ?")
            .bind(&username)
            .fetch_optional(pool)
            .await
            .map_err(|e| format!("ofVCard: {e}"))?;
        if let Some(v) = vcard {
            match parse_fragment(&v, "vcard-temp", &limits) {
                Some(el) if el.is("vCard", "vcard-temp") => user.push_child(el),
                _ => notes.push(format!(
                    "{who}: the vCard is not a vcard-temp document; left out"
                )),
            }
        }

        let offline = sqlx::query(
            "SELECT messageID, creationDate, stanza FROM ofOffline WHERE username = ? ORDER BY messageID",
        )
        .bind(&username)
        .fetch_all(pool)
        .await
        .map_err(|e| format!("ofOffline: {e}"))?;
        let mut messages = Element::new("offline-messages", NS);
        for m in &offline {
            let id: i64 = col(m, "messageID")?;
            let created: String = col(m, "creationDate")?;
            let stanza: String = col(m, "stanza")?;
            match parse_fragment(&stanza, confab_proto::ns::CLIENT, &limits) {
                Some(mut el) if el.name == "message" => {
                    if let Some(secs) = millis_to_secs(&created) {
                        el.push_child(
                            Element::new("delay", "urn:xmpp:delay")
                                .attr("from", domain)
                                .attr("stamp", confab_proto::datetime::format_datetime(secs))
                                .text("Offline Storage"),
                        );
                    }
                    messages.push_child(el);
                }
                _ => notes.push(format!(
                    "{who}: offline message {id} is not a message; left out"
                )),
            }
        }
        if !messages.children.is_empty() {
            user.push_child(messages);
        }
        let mut text = user.to_xml(NS);
        text.push('\n');
        out.write_all(text.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    out.write_all(b"</host>\n")
        .await
        .map_err(|e| e.to_string())?;
    write_rooms(pool, domain, out, &mut notes).await?;
    out.write_all(b"</server-data>\n")
        .await
        .map_err(|e| e.to_string())?;
    Ok(notes)
}

/// Openfire's persistent rooms, per group chat service (`ofMucService`), as rooms of
/// Confab's service on the same domain: configuration, subject, owners, admins, members
/// and outcasts.
async fn write_rooms<W: tokio::io::AsyncWrite + Unpin>(
    pool: &MySqlPool,
    domain: &str,
    out: &mut W,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    use confab_muc::payloads::Affiliation;
    use confab_muc::room::{RoomConfig, Subject};
    use std::collections::BTreeMap;
    let services = sqlx::query("SELECT serviceID, subdomain FROM ofMucService ORDER BY serviceID")
        .fetch_all(pool)
        .await
        .map_err(|e| format!("ofMucService: {e}"))?;
    for svc in &services {
        let service_id: i64 = col(svc, "serviceID")?;
        let subdomain: String = col(svc, "subdomain")?;
        let service = format!("{subdomain}.{domain}");
        let rooms = sqlx::query(
            "SELECT roomID, name, naturalName, description, modificationDate, canChangeSubject, maxUsers, publicRoom, moderated, membersOnly, canInvite, roomPassword, canDiscoverJID, logEnabled, subject FROM ofMucRoom WHERE serviceID = ? ORDER BY name",
        )
        .bind(service_id)
        .fetch_all(pool)
        .await
        .map_err(|e| format!("ofMucRoom: {e}"))?;
        if rooms.is_empty() {
            continue;
        }
        let head = format!("<host jid='{}'>\n", escape(&service));
        out.write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        for r in &rooms {
            let room_id: i64 = col(r, "roomID")?;
            let name: String = col(r, "name")?;
            let flag = |c: &str| -> Result<bool, String> { Ok(col::<i8>(r, c)? != 0) };
            let max_users: i32 = col(r, "maxUsers")?;
            let config = RoomConfig {
                name: col(r, "naturalName")?,
                description: col::<Option<String>>(r, "description")?.unwrap_or_default(),
                persistent: true,
                public: flag("publicRoom")?,
                members_only: flag("membersOnly")?,
                allow_invites: flag("canInvite")?,
                password: col::<Option<String>>(r, "roomPassword")?.filter(|p| !p.is_empty()),
                moderated: flag("moderated")?,
                whois_anyone: flag("canDiscoverJID")?,
                max_users: usize::try_from(max_users).unwrap_or(0),
                change_subject: flag("canChangeSubject")?,
                mam: flag("logEnabled")?,
            };
            let modified: String = col(r, "modificationDate")?;
            let subject = col::<Option<String>>(r, "subject")?
                .filter(|s| !s.is_empty())
                .map(|text| Subject {
                    text,
                    nick: None,
                    stamp: millis_to_secs(&modified).unwrap_or(0),
                });
            let mut affiliations = BTreeMap::new();
            let affs =
                sqlx::query("SELECT jid, affiliation FROM ofMucAffiliation WHERE roomID = ?")
                    .bind(room_id)
                    .fetch_all(pool)
                    .await
                    .map_err(|e| format!("ofMucAffiliation: {e}"))?;
            for a in &affs {
                let jid: String = col(a, "jid")?;
                let affiliation = match col::<i8>(a, "affiliation")? {
                    10 => Affiliation::Owner,
                    20 => Affiliation::Admin,
                    30 => Affiliation::Member,
                    40 => Affiliation::Outcast,
                    _ => continue,
                };
                affiliations.insert(jid, affiliation);
            }
            let members = sqlx::query("SELECT jid, nickname FROM ofMucMember WHERE roomID = ?")
                .bind(room_id)
                .fetch_all(pool)
                .await
                .map_err(|e| format!("ofMucMember: {e}"))?;
            for m in &members {
                let jid: String = col(m, "jid")?;
                if let Some(nick) = col::<Option<String>>(m, "nickname")?.filter(|n| !n.is_empty())
                {
                    notes.push(format!(
                        "room {name}@{service}: {jid}'s reserved nick '{nick}' is not kept (Confab has no reserved nicks yet)"
                    ));
                }
                affiliations.entry(jid).or_insert(Affiliation::Member);
            }
            let (kind, key, value) = confab_muc::stored_room(&name, config, affiliations, subject)?;
            let el = Element::new("data", pie::NS_CONFAB)
                .attr("kind", kind)
                .attr("key", key)
                .text(value);
            let mut text = el.to_xml(NS);
            text.push('\n');
            out.write_all(text.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
        }
        out.write_all(b"</host>\n")
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::openfire_admins;

    #[test]
    fn admins_as_openfire_reads_them() {
        assert_eq!(
            openfire_admins(
                "example.org",
                Some(" a@example.org, ,b@x.example"),
                None,
                true
            ),
            vec!["a@example.org", "b@x.example"]
        );
        assert_eq!(
            openfire_admins("example.org", Some("a@example.org"), Some("a, ops"), true),
            vec!["a@example.org", "ops@example.org"]
        );
        assert_eq!(
            openfire_admins("example.org", None, Some(""), true),
            vec!["admin@example.org"]
        );
        // An encrypted list or another admin provider: nobody is made an admin by default.
        assert!(openfire_admins("example.org", None, None, false).is_empty());
    }
}
