//! The server configuration: one TOML file (see `confabd.example.toml`), every key
//! overridable from the environment as `CONFABD_<SECTION>__<KEY>`, and sane defaults so
//! zero configuration runs a server for `localhost`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The server's configuration. The sections below are the core's; any other top-level
/// table belongs to a module, which parses and validates it when it registers
/// (`Registry::section`); a table no module claims stops the start.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    pub server: ServerSection,
    pub c2s: C2sSection,
    pub http: HttpSection,
    pub limits: LimitsSection,
    pub tls: TlsSection,
    pub storage: StorageSection,
    pub auth: AuthSection,
    pub modules: ModulesSection,
    pub roster: RosterSection,
    pub log: LogSection,
    pub registration: RegistrationSection,
    pub vcard: VcardSection,
    pub offline: OfflineSection,
    pub blocking: BlockingSection,
    /// Module sections, by name, as written.
    #[serde(flatten)]
    pub sections: std::collections::BTreeMap<String, toml::Value>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RosterSection {
    /// Contacts per roster; adding more gets `<not-allowed/>`.
    pub max_items: usize,
    /// Longest contact name and group name, in bytes (`<not-acceptable/>` beyond).
    pub max_name_length: usize,
    pub max_group_length: usize,
    pub max_groups_per_item: usize,
}

impl Default for RosterSection {
    fn default() -> Self {
        RosterSection {
            max_items: 5000,
            max_name_length: 1024,
            max_group_length: 1024,
            max_groups_per_item: 64,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// The domains (virtual hosts) this server serves.
    pub domains: Vec<String>,
    /// Where the database, generated certificate and other state live; created on start.
    pub data_dir: PathBuf,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            domains: vec!["localhost".into()],
            data_dir: PathBuf::from("data"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceConflict {
    /// The new session wins; the old one gets a `<conflict/>` stream error (Prosody, ejabberd).
    KickOld,
    /// The new bind request fails with a `<conflict/>` stanza error.
    Refuse,
    /// The new session gets a server-generated resource instead.
    Random,
}

/// The HTTP listener that modules' routes are served on (WebSocket, BOSH, upload, the admin
/// API). It listens only when some enabled module has routes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Addresses to listen on; loopback by default (a reverse proxy in front adds TLS).
    pub interfaces: Vec<String>,
    /// Plain HTTP port (0 disables).
    pub port: u16,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            interfaces: vec!["127.0.0.1".into(), "::1".into()],
            port: 5280,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct C2sSection {
    /// Addresses to listen on.
    pub interfaces: Vec<String>,
    /// STARTTLS port (0 disables).
    pub port: u16,
    /// Direct TLS port, XEP-0368 (0 disables).
    pub tls_port: u16,
    /// Refuse authentication until the stream is encrypted.
    pub require_tls: bool,
    /// Allow SASL PLAIN on unencrypted streams (only meaningful with require_tls = false).
    pub allow_plain_without_tls: bool,
    pub resource_conflict: ResourceConflict,
    /// Seconds a new connection has to authenticate and bind.
    pub handshake_timeout: u64,
    /// Seconds without any received byte before an authenticated session is closed (0: never).
    pub idle_timeout: u64,
    /// Seconds of outbound silence after which a whitespace keepalive is sent (0: never).
    pub keepalive_interval: u64,
    /// Seconds one write to a client may stay blocked (the client stopped reading) before
    /// the session is closed; what was queued for it is routed again.
    pub write_timeout: u64,
    /// Milliseconds to wait before answering a failed authentication (slows guessing).
    pub auth_failure_delay_ms: u64,
    /// Failed authentications allowed on one stream before it is closed.
    pub max_auth_failures: u32,
    /// Seconds to wait for sessions to close during shutdown.
    pub shutdown_grace: u64,
}

impl Default for C2sSection {
    fn default() -> Self {
        C2sSection {
            interfaces: vec!["0.0.0.0".into(), "::".into()],
            port: 5222,
            tls_port: 5223,
            require_tls: true,
            allow_plain_without_tls: false,
            resource_conflict: ResourceConflict::KickOld,
            handshake_timeout: 60,
            idle_timeout: 900,
            keepalive_interval: 60,
            write_timeout: 60,
            auth_failure_delay_ms: 1000,
            max_auth_failures: 3,
            shutdown_grace: 10,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Largest stanza accepted, in bytes; larger gets `<policy-violation/>`.
    pub max_stanza_size: usize,
    /// Deepest element nesting accepted inside a stanza.
    pub max_depth: usize,
    pub max_attributes: usize,
    pub max_name_length: usize,
    /// Most memory one parsed stanza may hold (an estimate of the element tree); a stanza
    /// over it gets `<policy-violation/>` like an oversized one.
    pub max_stanza_memory: usize,
    /// Simultaneous client connections.
    pub max_connections: usize,
    /// Simultaneous client connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Simultaneous client connections from one network: an IPv4 /24 or an IPv6 /64 (one
    /// host or household usually holds a whole /64).
    pub max_connections_per_subnet: usize,
    /// Stanzas queued for one session before it is treated as a slow reader and closed.
    pub outbound_queue: usize,
    /// Bytes queued for one session before it is treated as a slow reader and closed.
    pub max_outbound_bytes: usize,
    /// Bytes per second a client session may send; faster clients are read more slowly
    /// (backpressure, like ejabberd's shapers). 0: unlimited.
    pub read_rate: u64,
    /// Bytes a session may send in a burst above `read_rate`.
    pub read_burst: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let p = confab_proto::parser::Limits::default();
        LimitsSection {
            max_stanza_size: p.max_stanza_size,
            max_depth: p.max_depth,
            max_attributes: p.max_attributes,
            max_name_length: p.max_name_length,
            max_stanza_memory: p.max_stanza_memory,
            max_connections: 19_000,
            max_connections_per_ip: 100,
            max_connections_per_subnet: 400,
            outbound_queue: 512,
            max_outbound_bytes: 2 * 1024 * 1024,
            read_rate: 256 * 1024,
            read_burst: 1024 * 1024,
        }
    }
}

impl LimitsSection {
    pub fn parser_limits(&self) -> confab_proto::parser::Limits {
        confab_proto::parser::Limits {
            max_stanza_size: self.max_stanza_size,
            max_depth: self.max_depth,
            max_attributes: self.max_attributes,
            max_name_length: self.max_name_length,
            max_stanza_memory: self.max_stanza_memory,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain; when unset, `<data_dir>/tls/cert.pem` (generated if missing).
    pub cert: Option<PathBuf>,
    /// PEM private key; when unset, `<data_dir>/tls/key.pem` (generated if missing).
    pub key: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// `sqlite` (embedded). PostgreSQL and MySQL/MariaDB arrive in a later release.
    pub backend: String,
    /// SQLite database file; when unset, `<data_dir>/confab.db`.
    pub sqlite_path: Option<PathBuf>,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            backend: "sqlite".into(),
            sqlite_path: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// PBKDF2 iterations for newly stored SCRAM keys (RFC 7677 asks for at least 4096).
    pub scram_iterations: u32,
    /// SASL mechanisms offered, strongest first.
    pub mechanisms: Vec<String>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            scram_iterations: 4096,
            mechanisms: confab_proto::sasl::Mechanism::ALL
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModulesSection {
    /// Modules switched off; every other built-in module is on.
    pub disabled: Vec<String>,
}

/// XEP-0160 offline messages (`offline` module).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfflineSection {
    /// Messages kept per account while it is offline; past this, senders get
    /// `<service-unavailable/>`.
    pub quota: usize,
}

impl Default for OfflineSection {
    fn default() -> Self {
        OfflineSection { quota: 1000 }
    }
}

/// XEP-0191 blocking command (`blocking` module).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockingSection {
    /// Most JIDs one account may block; a block past it gets `<resource-constraint/>`.
    pub max_items: usize,
}

impl Default for BlockingSection {
    fn default() -> Self {
        BlockingSection { max_items: 1000 }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// A tracing filter, e.g. `info` or `confab_server=debug`; `RUST_LOG` wins if set.
    pub level: String,
    /// Log every stanza sent and received per connection (SASL secrets are redacted).
    pub xml_trace: bool,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            xml_trace: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationPolicy {
    /// No in-band registration (accounts come from `confabd user add`).
    Closed,
    /// Anyone may register in-band (XEP-0077), within the rate limit.
    Open,
    /// Only holders of an invitation token (`confabd invite create`, XEP-0401/0445).
    Invite,
}

/// XEP-0077 In-Band Registration and account self-service (`register` module).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrationSection {
    pub policy: RegistrationPolicy,
    /// Shortest password accepted for registration and password changes, in characters.
    pub min_password_length: usize,
    /// Accounts one IP address may register per `rate_window` (0: unlimited).
    pub rate_limit_per_ip: u32,
    /// Seconds of the per-IP registration window.
    pub rate_window: u64,
    /// Registration requests one stream may make, failed or not (0: unlimited); each
    /// costs a database lookup and possibly a key derivation.
    pub max_attempts_per_stream: u32,
    /// Seconds an invitation stays valid when `confabd invite create` gets no --expires.
    pub invite_expiry: u64,
    /// Users may change their password in-band.
    pub allow_password_change: bool,
    /// Users may delete their own account in-band.
    pub allow_account_removal: bool,
}

impl Default for RegistrationSection {
    fn default() -> Self {
        RegistrationSection {
            policy: RegistrationPolicy::Closed,
            min_password_length: 8,
            rate_limit_per_ip: 5,
            rate_window: 3600,
            max_attempts_per_stream: 5,
            invite_expiry: 7 * 24 * 3600,
            allow_password_change: true,
            allow_account_removal: true,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct VcardSection {
    /// Largest vCard (XEP-0054) accepted, in bytes of XML; larger gets `<not-acceptable/>`.
    pub max_size: usize,
}

impl Default for VcardSection {
    fn default() -> Self {
        // Below the default stanza limit so a stored vCard always fits in a reply.
        VcardSection {
            max_size: 192 * 1024,
        }
    }
}

impl Config {
    /// Loads the file (if given), applies `CONFABD_*` environment overrides, and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    pub fn load_with_env(
        path: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", p.display())))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Sets a module's section `[name]` from its typed form (for embedders and tests; a
    /// file or the environment is the usual way).
    pub fn set_section<T: Serialize>(&mut self, name: &str, value: &T) -> Result<(), ConfigError> {
        let v = toml::Value::try_from(value).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.sections.insert(name.to_string(), v);
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |s: String| Err(ConfigError::Invalid(s));
        if self.server.domains.is_empty() {
            return bad("server.domains must name at least one domain".into());
        }
        for d in &self.server.domains {
            match confab_proto::jid::BareJid::new(d) {
                Ok(j) if j.node().is_none() && j.as_str() == d.as_str() => {}
                _ => return bad(format!("server.domains: '{d}' is not a normalised domain")),
            }
        }
        if self.storage.backend != "sqlite" {
            return bad(format!(
                "storage.backend '{}' is not supported (supported: sqlite)",
                self.storage.backend
            ));
        }
        if self.auth.scram_iterations < 4096 {
            return bad("auth.scram_iterations must be at least 4096".into());
        }
        for m in &self.auth.mechanisms {
            if confab_proto::sasl::Mechanism::from_name(m).is_none() {
                return bad(format!("auth.mechanisms: unknown mechanism '{m}'"));
            }
        }
        if self.limits.max_stanza_size < 4096 || self.limits.max_depth < 4 {
            return bad(
                "limits are too small for XMPP (max_stanza_size >= 4096, max_depth >= 4)".into(),
            );
        }
        if self.limits.max_stanza_memory < self.limits.max_stanza_size {
            return bad("limits.max_stanza_memory must be at least max_stanza_size".into());
        }
        if self.limits.outbound_queue == 0
            || self.limits.max_connections == 0
            || self.limits.max_outbound_bytes < 2 * self.limits.max_stanza_size
        {
            return bad("limits.outbound_queue and max_connections must be positive, max_outbound_bytes at least twice max_stanza_size".into());
        }
        let r = &self.registration;
        if r.min_password_length == 0 || r.min_password_length > 1024 {
            return bad("registration.min_password_length must be between 1 and 1024".into());
        }
        if r.rate_window == 0 || r.invite_expiry == 0 {
            return bad("registration.rate_window and invite_expiry must be positive".into());
        }
        if self.vcard.max_size < 1024 || self.vcard.max_size > self.limits.max_stanza_size {
            return bad("vcard.max_size must be between 1024 and limits.max_stanza_size".into());
        }
        if self.offline.quota > 100_000 || self.blocking.max_items > 100_000 {
            return bad("offline.quota and blocking.max_items must be at most 100000".into());
        }
        if self.c2s.port == 0 && self.c2s.tls_port == 0 {
            return bad("c2s.port and c2s.tls_port are both disabled".into());
        }
        Ok(())
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.storage
            .sqlite_path
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("confab.db"))
    }

    pub fn is_local_domain(&self, d: &str) -> bool {
        self.server.domains.iter().any(|x| x == d)
    }
}

/// `CONFABD_C2S__PORT=5300` sets `[c2s] port = 5300`. Values are read as TOML when they parse
/// (numbers, booleans, arrays) and as plain strings otherwise.
fn apply_env(
    table: &mut toml::Table,
    env: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (k, v) in env {
        let Some(rest) = k.strip_prefix("CONFABD_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        let key = key.to_ascii_lowercase();
        let value = match format!("v = {v}").parse::<toml::Table>() {
            Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(v.clone())),
            Err(_) => toml::Value::String(v.clone()),
        };
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key, value);
            }
            _ => return Err(ConfigError::Invalid(format!("{section} is not a section"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_config_defaults() {
        let c = Config::load_with_env(None, std::iter::empty()).expect("defaults are valid");
        assert_eq!(c.server.domains, vec!["localhost".to_string()]);
        assert_eq!(c.c2s.port, 5222);
        assert_eq!(c.c2s.tls_port, 5223);
        assert!(c.c2s.require_tls);
        assert_eq!(c.vcard.max_size, 192 * 1024);
    }

    #[test]
    fn example_file_is_valid_and_matches_defaults() {
        let text = include_str!("../../../confabd.example.toml");
        let table: toml::Table = text.parse().expect("example parses");
        let c: Config = toml::Value::Table(table)
            .try_into()
            .expect("example deserializes");
        c.validate().expect("example is valid");
        let d = Config::default();
        assert_eq!(c.c2s.port, d.c2s.port);
        assert_eq!(c.limits.max_stanza_size, d.limits.max_stanza_size);
        assert_eq!(c.auth.mechanisms, d.auth.mechanisms);
        assert_eq!(c.limits.max_depth, d.limits.max_depth);
        assert_eq!(c.vcard.max_size, d.vcard.max_size);
        assert_eq!(c.offline.quota, d.offline.quota);
        assert_eq!(c.blocking.max_items, d.blocking.max_items);
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[server]\ndomains = ['example.org']\n[c2s]\nport = 1234\n",
        )
        .expect("write");
        let env = vec![
            ("CONFABD_C2S__PORT".to_string(), "5300".to_string()),
            (
                "CONFABD_SERVER__DATA_DIR".to_string(),
                "/var/lib/confab".to_string(),
            ),
            ("CONFABD_C2S__REQUIRE_TLS".to_string(), "false".to_string()),
            (
                "CONFABD_MODULES__DISABLED".to_string(),
                "['version']".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::load_with_env(Some(&p), env.into_iter()).expect("valid");
        assert_eq!(c.server.domains, vec!["example.org".to_string()]);
        assert_eq!(c.c2s.port, 5300);
        assert!(!c.c2s.require_tls);
        assert_eq!(c.server.data_dir, PathBuf::from("/var/lib/confab"));
        assert_eq!(c.modules.disabled, vec!["version".to_string()]);
    }

    #[test]
    fn registration_defaults_and_values() {
        let c = Config::default();
        assert_eq!(c.registration.policy, RegistrationPolicy::Closed);
        assert_eq!(c.registration.min_password_length, 8);
        let env = vec![
            (
                "CONFABD_REGISTRATION__POLICY".to_string(),
                "invite".to_string(),
            ),
            (
                "CONFABD_REGISTRATION__RATE_LIMIT_PER_IP".to_string(),
                "0".to_string(),
            ),
        ];
        let c = Config::load_with_env(None, env.into_iter()).expect("valid");
        assert_eq!(c.registration.policy, RegistrationPolicy::Invite);
        assert_eq!(c.registration.rate_limit_per_ip, 0);
    }

    #[test]
    fn rejects_bad_values() {
        let cases = [
            "[server]\ndomains = []\n",
            "[server]\ndomains = ['Not Valid']\n",
            "[storage]\nbackend = 'oracle'\n",
            "[auth]\nscram_iterations = 10\n",
            "[c2s]\nnosuchkey = 1\n",
            "[registration]\npolicy = 'maybe'\n",
            "[registration]\nmin_password_length = 0\n",
            "[registration]\nrate_window = 0\n",
            "[vcard]\nmax_size = 10\n",
            "[vcard]\nmax_size = 100000000\n",
            "[offline]\nquota = 1000000\n",
            "[offline]\nquota = -1\n",
            "[blocking]\nmax_items = 1000000\n",
            "[blocking]\nnosuchkey = 1\n",
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        for (i, text) in cases.iter().enumerate() {
            let p = dir.path().join(format!("{i}.toml"));
            std::fs::write(&p, text).expect("write");
            assert!(
                Config::load_with_env(Some(&p), std::iter::empty()).is_err(),
                "{text}"
            );
        }
    }
}
