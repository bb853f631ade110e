//! Options shared by every scenario, their checks (loopback only unless allowed, hard caps)
//! and what a scenario derives from them.

use crate::BenchError;
use confab_proto::sasl::Mechanism;
use confab_stream::client::{ClientOptions, TlsMode};
use confab_stream::tls::CertVerification;
use serde::Serialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Longest run any scenario accepts, in seconds: every loop is bounded in time.
pub const MAX_DURATION_SECS: f64 = 3600.0;
/// Most messages one run sends, whatever the rate and duration.
pub const MAX_MESSAGES: u64 = 50_000_000;
/// Most operations (registrations, logins) one run makes.
pub const MAX_OPERATIONS: u64 = 10_000_000;
/// Most sockets one process holds open; the process limit is 20,000 files, and the rest is
/// left for the runtime, stdio and the output file.
pub const MAX_SOCKETS: usize = 18_000;
/// Most concurrent operations (each holds a socket).
pub const MAX_CONCURRENCY: usize = 4096;

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsArg {
    /// Plain TCP throughout (the server must allow authentication without TLS).
    None,
    /// STARTTLS on the c2s port.
    Starttls,
    /// TLS from the first byte (XEP-0368, usually port 5223).
    Direct,
}

impl TlsArg {
    /// The confab-stream mode for this option.
    pub fn mode(self) -> TlsMode {
        match self {
            TlsArg::None => TlsMode::None,
            TlsArg::Starttls => TlsMode::StartTls,
            TlsArg::Direct => TlsMode::Direct,
        }
    }
}

/// The SASL mechanism every login uses (it must be offered by the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum MechArg {
    #[value(name = "PLAIN", alias = "plain")]
    #[serde(rename = "PLAIN")]
    /// SASL PLAIN (the password in clear inside the stream).
    Plain,
    #[value(name = "SCRAM-SHA-1", alias = "scram-sha-1")]
    #[serde(rename = "SCRAM-SHA-1")]
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    #[value(name = "SCRAM-SHA-256", alias = "scram-sha-256")]
    #[serde(rename = "SCRAM-SHA-256")]
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
}

impl MechArg {
    /// The confab-proto mechanism for this option.
    pub fn mechanism(self) -> Mechanism {
        match self {
            MechArg::Plain => Mechanism::Plain,
            MechArg::ScramSha1 => Mechanism::ScramSha1,
            MechArg::ScramSha256 => Mechanism::ScramSha256,
        }
    }
}

/// Options common to all scenarios.
#[derive(Clone, Debug, clap::Args, Serialize)]
pub struct CommonOpts {
    /// The server's c2s address, HOST:PORT. Only loopback addresses unless --allow-remote.
    #[arg(long, default_value = "127.0.0.1:5222")]
    pub server: String,
    /// Allow a server address that is not loopback (measure only servers you run).
    #[arg(long)]
    pub allow_remote: bool,
    /// The XMPP domain of the accounts.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    #[arg(long, value_enum, default_value = "starttls")]
    /// TLS: none, STARTTLS or direct.
    pub tls: TlsArg,
    #[arg(long, value_enum, default_value = "SCRAM-SHA-1")]
    /// The SASL mechanism of every login.
    pub mechanism: MechArg,
    /// Number of accounts: `<prefix>0` .. `<prefix>N-1`.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    #[arg(long, default_value = "bench")]
    /// Accounts are named `<prefix><i>`.
    pub user_prefix: String,
    /// The password of every bench account.
    #[arg(long, default_value = "bench-password-0")]
    #[serde(skip)]
    pub password: String,
    /// Seconds the scenario runs (for register and login: a time cap on the run).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Operations or connection set-ups in flight at once.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Seconds one network step (a login, a ping, a close) may take before it counts as
    /// failed.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// The server's process id: its CPU time over the measured phase (utime + stime from
    /// /proc/PID/stat) is reported per operation (Linux).
    #[arg(long)]
    pub cpu_pid: Option<u32>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl Default for CommonOpts {
    fn default() -> Self {
        CommonOpts {
            server: "127.0.0.1:5222".into(),
            allow_remote: false,
            domain: "localhost".into(),
            tls: TlsArg::Starttls,
            mechanism: MechArg::ScramSha1,
            users: 100,
            user_prefix: "bench".into(),
            password: "bench-password-0".into(),
            duration: 10.0,
            concurrency: 10,
            timeout: 30.0,
            cpu_pid: None,
            json: None,
            quiet: false,
        }
    }
}

/// Resolves HOST:PORT and refuses anything but loopback unless `allow_remote`: a load
/// generator pointed at someone else's server by a typo is an attack.
pub fn resolve_server(server: &str, allow_remote: bool) -> Result<SocketAddr, BenchError> {
    let addrs: Vec<SocketAddr> = server
        .to_socket_addrs()
        .map_err(|e| BenchError::Usage(format!("--server {server}: {e}")))?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(BenchError::Usage(format!(
            "--server {server}: no address found"
        )));
    };
    if !allow_remote {
        // Every address the name resolves to must be loopback, not just the first.
        if let Some(a) = addrs.iter().find(|a| !a.ip().to_canonical().is_loopback()) {
            return Err(BenchError::Usage(format!(
                "--server {server} resolves to {a}, which is not a loopback address; \
                 pass --allow-remote to measure a server you run elsewhere"
            )));
        }
    }
    Ok(first)
}

/// The checked, resolved form of [`CommonOpts`] that scenarios run with.
#[derive(Clone, Debug)]
pub struct Target {
    /// The resolved (and checked) server address.
    pub addr: SocketAddr,
    /// The options as given.
    pub opts: CommonOpts,
    /// `--duration`.
    pub duration: Duration,
    /// `--timeout`, per network step.
    pub timeout: Duration,
}

impl Target {
    /// Checks the options (caps, loopback) and resolves the server address.
    pub fn new(opts: &CommonOpts) -> Result<Target, BenchError> {
        let addr = resolve_server(&opts.server, opts.allow_remote)?;
        if !(opts.duration > 0.0 && opts.duration <= MAX_DURATION_SECS) {
            return Err(BenchError::Usage(format!(
                "--duration must be in (0, {MAX_DURATION_SECS}] seconds"
            )));
        }
        if !(opts.timeout > 0.0 && opts.timeout <= 600.0) {
            return Err(BenchError::Usage(
                "--timeout must be in (0, 600] seconds".into(),
            ));
        }
        if opts.users == 0 || opts.users as u64 > MAX_OPERATIONS {
            return Err(BenchError::Usage(format!(
                "--users must be in 1..={MAX_OPERATIONS}"
            )));
        }
        if opts.concurrency == 0 || opts.concurrency > MAX_CONCURRENCY {
            return Err(BenchError::Usage(format!(
                "--concurrency must be in 1..={MAX_CONCURRENCY}"
            )));
        }
        if opts.domain.is_empty() || opts.user_prefix.is_empty() {
            return Err(BenchError::Usage(
                "--domain and --user-prefix must not be empty".into(),
            ));
        }
        Ok(Target {
            addr,
            opts: opts.clone(),
            duration: Duration::from_secs_f64(opts.duration),
            timeout: Duration::from_secs_f64(opts.timeout),
        })
    }

    /// The name of bench account `i` (taken modulo `--users`).
    pub fn username(&self, i: usize) -> String {
        format!("{}{}", self.opts.user_prefix, i % self.opts.users)
    }

    /// Client options to log in as account `i` with this resource.
    pub fn client_options(&self, i: usize, resource: String) -> ClientOptions {
        let mut o = ClientOptions::new(
            self.addr,
            &self.opts.domain,
            &self.username(i),
            &self.opts.password,
        );
        o.tls = self.opts.tls.mode();
        // A bench measures servers on loopback, usually with a self-signed certificate.
        o.verify = CertVerification::Insecure;
        o.mechanism = Some(self.opts.mechanism.mechanism());
        o.resource = Some(resource);
        o
    }

    /// Refuses a scenario that would hold more than [`MAX_SOCKETS`] sockets, or more than
    /// the process's own open-file limit allows.
    pub fn check_sockets(&self, sockets: usize) -> Result<(), BenchError> {
        if sockets > MAX_SOCKETS {
            return Err(BenchError::Usage(format!(
                "this run would hold {sockets} sockets; at most {MAX_SOCKETS} per process \
                 (run several processes for more)"
            )));
        }
        if let Some(limit) = open_file_limit() {
            // Room for stdio, the runtime, the output file.
            if sockets as u64 + 64 > limit {
                return Err(BenchError::Usage(format!(
                    "this run would hold {sockets} sockets but the open-file limit is \
                     {limit}; raise it (ulimit -n)"
                )));
            }
        }
        Ok(())
    }
}

/// The soft limit on open files, from /proc/self/limits (Linux); `None` when unknown.
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_unless_allowed() {
        assert!(resolve_server("127.0.0.1:5222", false).is_ok());
        assert!(resolve_server("127.8.9.10:5222", false).is_ok());
        assert!(resolve_server("[::1]:5222", false).is_ok());
        assert!(resolve_server("[::ffff:127.0.0.1]:5222", false).is_ok());
        for remote in ["192.0.2.1:5222", "10.0.0.1:5222", "[2001:db8::1]:5222"] {
            assert!(
                matches!(resolve_server(remote, false), Err(BenchError::Usage(_))),
                "{remote} accepted"
            );
            // Allowed explicitly (nothing is sent: this only resolves).
            assert!(resolve_server(remote, true).is_ok(), "{remote}");
        }
        assert!(resolve_server("no-port", false).is_err());
    }

    #[test]
    fn options_are_checked() {
        let ok = CommonOpts::default();
        assert!(Target::new(&ok).is_ok());
        for bad in [
            CommonOpts {
                duration: 0.0,
                ..ok.clone()
            },
            CommonOpts {
                duration: MAX_DURATION_SECS + 1.0,
                ..ok.clone()
            },
            CommonOpts {
                users: 0,
                ..ok.clone()
            },
            CommonOpts {
                concurrency: 0,
                ..ok.clone()
            },
            CommonOpts {
                server: "192.0.2.1:5222".into(),
                ..ok.clone()
            },
        ] {
            assert!(Target::new(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn socket_cap() {
        let t = Target::new(&CommonOpts::default()).expect("target");
        assert!(t.check_sockets(MAX_SOCKETS + 1).is_err());
        assert!(t.check_sockets(10).is_ok());
    }

    #[test]
    fn account_names_wrap_around_users() {
        let t = Target::new(&CommonOpts {
            users: 3,
            ..CommonOpts::default()
        })
        .expect("target");
        assert_eq!(t.username(0), "bench0");
        assert_eq!(t.username(4), "bench1");
        let o = t.client_options(2, "r".into());
        assert_eq!(o.username, "bench2");
        assert_eq!(o.mechanism, Some(Mechanism::ScramSha1));
        assert_eq!(o.tls, TlsMode::StartTls);
    }
}
