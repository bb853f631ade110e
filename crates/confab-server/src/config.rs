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
    pub log: LogSection,
    /// Module sections, by name, as written.
    #[serde(flatten)]
    pub sections: std::collections::BTreeMap<String, toml::Value>,
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

/// The HTTP listeners that modules' routes are served on (WebSocket, BOSH, upload, the admin
/// API): plain `port` and TLS `tls_port`, both serving every route. They listen only when
/// some enabled module has routes.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Addresses to listen on; loopback by default (a reverse proxy in front adds TLS).
    pub interfaces: Vec<String>,
    /// Plain HTTP port (0 disables).
    pub port: u16,
    /// HTTPS port with the `[tls]` certificate (0 disables): `wss://` and `https://`.
    pub tls_port: u16,
    /// Seconds a TLS handshake on `tls_port` may take before the connection is dropped.
    pub tls_handshake_timeout: u64,
    /// Reverse proxies (addresses or networks, `10.0.0.0/8`) whose forwarding header names
    /// the client; empty: nobody's is believed.
    pub trusted_proxies: Vec<String>,
    /// Which header the trusted proxies write: `x-forwarded-for` (with
    /// `X-Forwarded-Proto`) or `forwarded` (RFC 7239). Only one is read, so a client cannot
    /// slip the other past a proxy that does not overwrite it.
    pub forwarded_header: ForwardedHeader,
    /// Seconds a client has to send a request's headers, counted from the connection's
    /// start or from the first byte of the next request on a kept-alive connection; a
    /// client that has not finished by then is disconnected (slow or stalled headers).
    /// Also the bound on reading a BOSH request's or a console form's body.
    pub header_timeout: u64,
    /// Seconds a kept-alive connection may wait between requests with nothing under way.
    /// A request being served (a BOSH long-poll, an upload) and a WebSocket after its
    /// upgrade are never cut by this or `header_timeout`.
    pub idle_timeout: u64,
    /// Largest request head (request line and headers) in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Most header fields in one request; more gets 431.
    pub max_headers: usize,
    /// Connections one HTTP listener holds open at once (WebSockets included). At the
    /// limit the connection idle the longest between requests is closed to make room;
    /// with none idle, more wait in the kernel's backlog until one closes. At most
    /// 1,000,000.
    pub max_connections: usize,
    /// Connections one client address (the socket's peer, never a forwarding header)
    /// holds open at once on one HTTP listener; more are closed at once. A trusted proxy
    /// (`trusted_proxies`) carries many clients on its address and is exempt.
    pub max_connections_per_ip: usize,
    /// Seconds a write of a response to a client may stay blocked (the client stopped
    /// reading, e.g. a large download) before the connection is closed.
    pub write_timeout: u64,
}

/// The forwarding header `[http] trusted_proxies` write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum ForwardedHeader {
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    #[serde(rename = "forwarded")]
    Forwarded,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            interfaces: vec!["127.0.0.1".into(), "::1".into()],
            port: 5280,
            tls_port: 5443,
            tls_handshake_timeout: 10,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::XForwardedFor,
            header_timeout: 10,
            idle_timeout: 60,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            max_connections: 10_000,
            max_connections_per_ip: 100,
            write_timeout: 60,
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
    /// `sqlite` (embedded), used when `url` is unset.
    pub backend: String,
    /// SQLite database file when `url` is unset; when both are unset, `<data_dir>/confab.db`.
    pub sqlite_path: Option<PathBuf>,
    /// `sqlite://PATH`, `postgres://…` or `mysql://…`; wins over `backend` and `sqlite_path`.
    pub url: Option<String>,
    /// Most connections open to the database at once (default: 4 for SQLite, 10 otherwise).
    pub pool_size: Option<u32>,
    /// Seconds a request waits for a database connection before it fails (bounds every
    /// request while the database is unreachable).
    pub acquire_timeout: u64,
    /// Milliseconds that documents which need not be durable at once (last activity, the
    /// last unavailable presence; written at every logout) are held before they are written
    /// together in one transaction; 0 writes each at once.
    pub write_behind_ms: u64,
    /// Most such documents held at once; beyond it they are written at once.
    pub write_behind_max: usize,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            backend: "sqlite".into(),
            sqlite_path: None,
            url: None,
            pool_size: None,
            acquire_timeout: confab_store::DEFAULT_ACQUIRE_TIMEOUT.as_secs(),
            write_behind_ms: 1000,
            write_behind_max: 10_000,
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
        let env: Vec<(String, String)> = env.collect();
        // The admin console's settings (written by its set-up wizard) sit in the data
        // directory, over the file and under the environment.
        let mut probe = table.clone();
        apply_env(&mut probe, env.iter().cloned())?;
        let console = console_file_of(&probe);
        if console.exists() {
            let text = std::fs::read_to_string(&console).map_err(|source| ConfigError::Read {
                path: console.clone(),
                source,
            })?;
            let overlay = text
                .parse::<toml::Table>()
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", console.display())))?;
            merge_sections(&mut table, overlay);
        }
        apply_env(&mut table, env.into_iter())?;
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

    /// Reads module section `[name]` in its typed form, defaults where absent; what the
    /// module itself gets from `Registry::section` (for tools such as the CLI that need a
    /// module's settings without starting the server).
    pub fn section<T: crate::module::ModuleConfig>(&self, name: &str) -> Result<T, ConfigError> {
        let Some(value) = self.sections.get(name) else {
            return Ok(T::default());
        };
        let t: T = value.clone().try_into().map_err(|e: toml::de::Error| {
            ConfigError::Invalid(format!("[{name}] {}", e.message()))
        })?;
        t.validate()
            .map_err(|e| ConfigError::Invalid(format!("[{name}] {e}")))?;
        Ok(t)
    }

    /// Changes module section `[name]` in its typed form (for embedders and tests).
    pub fn update_section<T: crate::module::ModuleConfig + Serialize>(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut T),
    ) -> Result<(), ConfigError> {
        let mut t: T = self.section(name)?;
        change(&mut t);
        self.set_section(name, &t)
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
        if let Some(url) = &self.storage.url {
            if let Err(e) = confab_store::Backend::from_url(url) {
                return bad(format!("storage.url: {e}"));
            }
        } else if self.storage.backend != "sqlite" {
            return bad(format!(
                "storage.backend '{}' is not supported (use storage.url for postgres:// or mysql://)",
                self.storage.backend
            ));
        }
        if self.storage.pool_size == Some(0) {
            return bad("storage.pool_size must be at least 1".into());
        }
        if self.storage.acquire_timeout == 0 || self.storage.acquire_timeout > 3600 {
            return bad("storage.acquire_timeout must be 1 to 3600 seconds".into());
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
        if !(1..=300).contains(&self.http.tls_handshake_timeout) {
            return bad("http.tls_handshake_timeout must be 1 to 300 seconds".into());
        }
        if !(1..=300).contains(&self.http.header_timeout) {
            return bad("http.header_timeout must be 1 to 300 seconds".into());
        }
        if !(1..=3600).contains(&self.http.idle_timeout) {
            return bad("http.idle_timeout must be 1 to 3600 seconds".into());
        }
        if !(8192..=1024 * 1024).contains(&self.http.max_header_bytes) {
            return bad("http.max_header_bytes must be 8192 to 1048576".into());
        }
        if !(1..=1000).contains(&self.http.max_headers) {
            return bad("http.max_headers must be 1 to 1000".into());
        }
        // The semaphore behind it panics far above this; no listener holds more anyway.
        if !(1..=1_000_000).contains(&self.http.max_connections) {
            return bad("http.max_connections must be 1 to 1000000".into());
        }
        if !(1..=1_000_000).contains(&self.http.max_connections_per_ip) {
            return bad("http.max_connections_per_ip must be 1 to 1000000".into());
        }
        if !(1..=3600).contains(&self.http.write_timeout) {
            return bad("http.write_timeout must be 1 to 3600 seconds".into());
        }
        for p in &self.http.trusted_proxies {
            if let Err(e) = p.parse::<crate::http::Cidr>() {
                return bad(format!("http.trusted_proxies: {e}"));
            }
        }
        if self.c2s.port == 0 && self.c2s.tls_port == 0 {
            return bad("c2s.port and c2s.tls_port are both disabled".into());
        }
        Ok(())
    }

    /// The database to open: `storage.url` when set, else the SQLite file.
    pub fn storage_backend(&self) -> Result<confab_store::Backend, ConfigError> {
        match &self.storage.url {
            Some(url) => confab_store::Backend::from_url(url)
                .map_err(|e| ConfigError::Invalid(format!("storage.url: {e}"))),
            None => Ok(confab_store::Backend::Sqlite {
                path: self.sqlite_path(),
            }),
        }
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

/// The file of settings the admin console writes (its set-up wizard): `console.toml` in the
/// data directory. `Config::load` reads it over the configuration file, under the
/// environment.
pub const CONSOLE_FILE: &str = "console.toml";

impl Config {
    /// Where the admin console writes its settings (`CONSOLE_FILE` in the data directory).
    pub fn console_file(&self) -> PathBuf {
        self.server.data_dir.join(CONSOLE_FILE)
    }
}

/// Changes the console settings file (`CONSOLE_FILE`) through `edit`, keeping what else it
/// holds. Written whole to a temporary file first and renamed, readable by the owner only
/// (a database URL may carry a password). Used by the set-up wizard and `confabd import`.
pub fn edit_console_file(file: &Path, edit: impl FnOnce(&mut toml::Table)) -> std::io::Result<()> {
    let mut table: toml::Table = match std::fs::read_to_string(file) {
        Ok(t) => t
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e}")))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => return Err(e),
    };
    edit(&mut table);
    let text = format!(
        "# Written by the Confab admin console's set-up wizard or `confabd import`; read over\n# the configuration file at start (see docs/configuration.md).\n{}",
        toml::to_string(&table).map_err(|e| std::io::Error::other(e.to_string()))?
    );
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = file.with_extension("toml.tmp");
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, file)
}

/// Sets `[section] key = value` in a configuration table, creating the section.
pub fn set_table_key(table: &mut toml::Table, section: &str, key: &str, value: toml::Value) {
    let t = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !t.is_table() {
        *t = toml::Value::Table(toml::Table::new());
    }
    if let toml::Value::Table(t) = t {
        t.insert(key.to_string(), value);
    }
}

/// The console file of a configuration table not yet deserialized (its data directory).
fn console_file_of(table: &toml::Table) -> PathBuf {
    let dir = table
        .get("server")
        .and_then(|s| s.get("data_dir"))
        .and_then(|d| d.as_str())
        .map(PathBuf::from)
        .unwrap_or_else(|| ServerSection::default().data_dir);
    dir.join(CONSOLE_FILE)
}

/// Puts `overlay`'s keys over `table`'s, section by section (a key of the overlay replaces
/// the same key of the table; other keys of the section stay).
fn merge_sections(table: &mut toml::Table, overlay: toml::Table) {
    for (name, value) in overlay {
        match (table.get_mut(&name), value) {
            (Some(toml::Value::Table(t)), toml::Value::Table(o)) => {
                for (k, v) in o {
                    t.insert(k, v);
                }
            }
            (_, v) => {
                table.insert(name, v);
            }
        }
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
    }

    #[test]
    fn storage_url_wins_over_the_sqlite_keys() {
        use confab_store::Backend;
        let dir = tempfile::tempdir().expect("tempdir");
        let load = |text: &str| {
            let p = dir.path().join("s.toml");
            std::fs::write(&p, text).expect("write");
            Config::load_with_env(Some(&p), std::iter::empty()).expect("valid")
        };
        let c = load("[server]\ndata_dir = '/d'\n");
        assert_eq!(
            c.storage_backend().expect("backend"),
            Backend::Sqlite {
                path: "/d/confab.db".into()
            }
        );
        let c = load("[storage]\nbackend = 'sqlite'\nsqlite_path = '/x.db'\n");
        assert_eq!(
            c.storage_backend().expect("backend"),
            Backend::Sqlite {
                path: "/x.db".into()
            }
        );
        let c = load(
            "[storage]\nsqlite_path = '/x.db'\nurl = 'postgres://confab@db/confab'\npool_size = 20\nacquire_timeout = 3\n",
        );
        assert_eq!(
            c.storage_backend().expect("backend"),
            Backend::Postgres {
                url: "postgres://confab@db/confab".into()
            }
        );
        assert_eq!(c.storage.pool_size, Some(20));
        assert_eq!(c.storage.acquire_timeout, 3);
        let c = load("[storage]\nurl = 'mysql://confab@db/confab'\n");
        assert!(matches!(
            c.storage_backend().expect("backend"),
            Backend::Mysql { .. }
        ));
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
    fn console_file_sits_between_the_file_and_the_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("mkdir");
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            format!(
                "[server]\ndomains = ['example.org']\ndata_dir = '{}'\n[c2s]\nport = 1234\ntls_port = 1235\n",
                data.display()
            ),
        )
        .expect("write");
        std::fs::write(
            data.join(CONSOLE_FILE),
            "[server]\ndomains = ['chat.example.net']\n[c2s]\nport = 4321\n",
        )
        .expect("write");
        let env = vec![("CONFABD_C2S__PORT".to_string(), "5300".to_string())];
        let c = Config::load_with_env(Some(&p), env.into_iter()).expect("valid");
        assert_eq!(c.server.domains, vec!["chat.example.net".to_string()]);
        assert_eq!(c.c2s.port, 5300, "the environment wins");
        assert_eq!(c.c2s.tls_port, 1235, "keys the console file lacks stay");
        assert_eq!(c.console_file(), data.join(CONSOLE_FILE));
    }

    #[test]
    fn rejects_bad_values() {
        let cases = [
            "[server]\ndomains = []\n",
            "[server]\ndomains = ['Not Valid']\n",
            "[storage]\nbackend = 'oracle'\n",
            "[storage]\nurl = 'oracle://db/x'\n",
            "[storage]\nurl = '/var/lib/confab.db'\n",
            "[storage]\npool_size = 0\n",
            "[storage]\nacquire_timeout = 0\n",
            "[auth]\nscram_iterations = 10\n",
            "[c2s]\nnosuchkey = 1\n",
            "[http]\ntrusted_proxies = ['10.0.0.0/40']\n",
            "[http]\nforwarded_header = 'x-real-ip'\n",
            "[http]\ntls_handshake_timeout = 0\n",
            "[http]\nheader_timeout = 0\n",
            "[http]\nidle_timeout = 0\n",
            "[http]\nmax_header_bytes = 100\n",
            "[http]\nmax_headers = 0\n",
            "[http]\nmax_connections = 0\n",
            "[http]\nmax_connections = 1000001\n",
            "[http]\nmax_connections = 9223372036854775807\n",
            "[http]\nmax_connections_per_ip = 0\n",
            "[http]\nwrite_timeout = 0\n",
            "[http]\nwrite_timeout = 3601\n",
            "[http]\nmax_header_bytes = 1048577\n",
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
