//! `[muc]`: where the service lives, who may create rooms and the limits that bound memory.

use confab_proto::jid::BareJid;
use confab_server::module::ModuleConfig;
use serde::{Deserialize, Serialize};

/// Who may create a room by joining one that does not exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Creation {
    /// Any entity that can reach the service (today: local users, as there is no s2s yet).
    Anyone,
    /// Users of the domains this server serves.
    Local,
    /// Only the bare JIDs listed in `admins`.
    Admins,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MucConfig {
    /// The service is `<domain_prefix>.<domain>` for each served domain.
    pub domain_prefix: String,
    /// The service's name in disco.
    pub name: String,
    pub creation: Creation,
    /// Bare JIDs that may create rooms when `creation = "admins"`.
    pub admins: Vec<String>,
    /// Hard cap on the occupants of one room (a room's own `maxusers` is at most this).
    pub max_occupants_per_room: usize,
    /// Rooms one user may have created that still exist.
    pub max_rooms_per_user: usize,
    /// Rooms the whole service holds (persistent ones included).
    pub max_rooms: usize,
    /// Owners, admins, members and outcasts one room may list.
    pub max_affiliations_per_room: usize,
    /// Sessions (resources of one user) that may share one nick in a room (XEP-0045
    /// §7.2.2 multi-session nicks); 1 makes a second session's join a `conflict`.
    pub max_sessions_per_nick: usize,
    /// Messages kept per room for the history sent on join.
    pub history_max: usize,
    /// Bytes of serialized messages kept per room for that history.
    pub history_max_bytes: usize,
    /// Messages (groupchat, private, subject, invitations) one occupant may send per second
    /// on average; 0 turns the limit off.
    pub message_rate: f64,
    /// How many messages an occupant may send at once before `message_rate` applies.
    pub message_burst: u32,
    /// Whether new rooms archive their messages (XEP-0313); each room's owner may change
    /// it (the `mam` field of the configuration form).
    pub mam: bool,
    /// Most messages in one page of a room archive query, and the page size when the
    /// client names none.
    pub mam_max_page: usize,
    /// Days a room keeps archived messages; older ones are deleted by an hourly sweep.
    /// 0 keeps them as long as the room exists.
    pub mam_retention_days: u32,
    /// Decoded bytes of the photos in a room's vCard (XEP-0486 room avatars); more gets
    /// `not-acceptable`.
    pub max_avatar_bytes: usize,
}

impl Default for MucConfig {
    fn default() -> Self {
        MucConfig {
            domain_prefix: "conference".into(),
            name: "Chatrooms".into(),
            creation: Creation::Local,
            admins: Vec::new(),
            max_occupants_per_room: 1000,
            max_rooms_per_user: 50,
            max_rooms: 10_000,
            max_affiliations_per_room: 1000,
            max_sessions_per_nick: 10,
            history_max: 20,
            history_max_bytes: 256 * 1024,
            message_rate: 2.0,
            message_burst: 10,
            mam: true,
            mam_max_page: 50,
            mam_retention_days: 0,
            max_avatar_bytes: 64 * 1024,
        }
    }
}

impl MucConfig {
    pub fn admin_jids(&self) -> Vec<BareJid> {
        self.admins
            .iter()
            .filter_map(|a| BareJid::new(a).ok())
            .collect()
    }
}

impl ModuleConfig for MucConfig {
    fn validate(&self) -> Result<(), String> {
        let p = &self.domain_prefix;
        let label_ok = !p.is_empty()
            && p.len() <= 63
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !p.starts_with('-')
            && !p.ends_with('-');
        if !label_ok {
            return Err("[muc] domain_prefix must be one DNS label (letters, digits, '-')".into());
        }
        for a in &self.admins {
            match BareJid::new(a) {
                Ok(j) if j.node().is_some() => {}
                _ => return Err(format!("[muc] admins: '{a}' is not a user's bare JID")),
            }
        }
        let ranges = [
            (
                "max_occupants_per_room",
                self.max_occupants_per_room,
                1,
                100_000,
            ),
            ("max_rooms_per_user", self.max_rooms_per_user, 0, 100_000),
            ("max_rooms", self.max_rooms, 1, 10_000_000),
            (
                "max_affiliations_per_room",
                self.max_affiliations_per_room,
                1,
                1_000_000,
            ),
            ("max_sessions_per_nick", self.max_sessions_per_nick, 1, 100),
            ("history_max", self.history_max, 0, 1000),
            ("history_max_bytes", self.history_max_bytes, 0, 64 << 20),
            ("max_avatar_bytes", self.max_avatar_bytes, 1024, 4 << 20),
            (
                "mam_max_page",
                self.mam_max_page,
                1,
                confab_store::archive::MAX_PAGE,
            ),
        ];
        for (k, v, lo, hi) in ranges {
            if v < lo || v > hi {
                return Err(format!("[muc] {k} must be between {lo} and {hi}"));
            }
        }
        if self.mam_retention_days > 100 * 366 {
            return Err("[muc] mam_retention_days must be at most 36600".into());
        }
        if !self.message_rate.is_finite() || self.message_rate < 0.0 {
            return Err("[muc] message_rate must be a number >= 0".into());
        }
        if self.message_burst == 0 {
            return Err("[muc] message_burst must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        assert!(MucConfig::default().validate().is_ok());
        let cases: Vec<(MucConfig, &str)> = vec![
            (
                MucConfig {
                    domain_prefix: "not a label".into(),
                    ..MucConfig::default()
                },
                "domain_prefix",
            ),
            (
                MucConfig {
                    domain_prefix: "-x".into(),
                    ..MucConfig::default()
                },
                "domain_prefix",
            ),
            (
                MucConfig {
                    admins: vec!["example.org".into()],
                    ..MucConfig::default()
                },
                "admins",
            ),
            (
                MucConfig {
                    max_occupants_per_room: 0,
                    ..MucConfig::default()
                },
                "max_occupants_per_room",
            ),
            (
                MucConfig {
                    history_max: 5000,
                    ..MucConfig::default()
                },
                "history_max",
            ),
            (
                MucConfig {
                    message_rate: f64::NAN,
                    ..MucConfig::default()
                },
                "message_rate",
            ),
            (
                MucConfig {
                    message_burst: 0,
                    ..MucConfig::default()
                },
                "message_burst",
            ),
            (
                MucConfig {
                    mam_max_page: 0,
                    ..MucConfig::default()
                },
                "mam_max_page",
            ),
        ];
        for (c, key) in cases {
            let e = c.validate().expect_err(key);
            assert!(e.contains(key), "{e}");
        }
        let c: MucConfig =
            toml::from_str("creation = 'anyone'\nhistory_max = 5\n").expect("parses");
        assert_eq!((c.creation, c.history_max), (Creation::Anyone, 5));
        assert!(toml::from_str::<MucConfig>("creation = 'nobody'").is_err());
        assert!(toml::from_str::<MucConfig>("nosuchkey = 1").is_err());
    }
}
