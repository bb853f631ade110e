//! The Confab XMPP server as a library: `confabd` is a thin command line over it, and the
//! integration tests run it in-process on ephemeral ports.

pub mod accounts;
pub mod admission;
pub mod c2s;
pub mod carbons;
pub mod certs;
pub mod config;
pub mod control;
pub mod detach;
pub mod http;
pub mod http_conn;
pub mod module;
pub mod router;
pub mod session;

use crate::config::Config;
use crate::module::Registry;
use crate::router::Router;
use confab_store::Stores;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Shared state of a running server.
pub struct ServerState {
    pub config: Config,
    pub stores: Stores,
    pub router: Router,
    pub registry: Registry,
    pub tls: certs::TlsState,
    pub auth: AuthState,
    /// The connection limits every listener and transport admits connections through.
    pub admission: admission::Admission,
    /// Changes to `true` when the server shuts down (see `shutdown_signal`).
    pub shutdown: watch::Receiver<bool>,
    /// Where modules' own listeners (`Registry::http_listener`) listen, by listener name,
    /// and the `[http]` listeners (`http`, `https`).
    pub listener_addrs: Vec<(&'static str, SocketAddr)>,
    /// Where the `[http]` listener listens (empty when no module serves routes), for
    /// modules that hand out URLs on it (upload slots).
    pub http_addrs: Vec<SocketAddr>,
    /// When the server started (uptime for the admin console).
    pub started: std::time::Instant,
}

impl ServerState {
    /// Changes to `true` when the server shuts down: what a transport passes to
    /// `c2s::serve_framing` for each connection it admits.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }
}

/// What authentication needs beyond the configuration.
pub struct AuthState {
    /// Keys the decoy SCRAM salts of unknown users; kept in storage so a restart does not
    /// change them (a changed salt would tell a missing account from a real one).
    pub decoy_secret: Vec<u8>,
    /// The iteration count the decoy exchange shows: what most real accounts use.
    pub decoy_iterations: u32,
}

impl AuthState {
    async fn load(stores: &Stores, config: &Config) -> Result<AuthState, StartError> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let stored = stores
            .data
            .get_host_data("", "sasl", "decoy-secret")
            .await?;
        let decoy_secret = match stored.and_then(|s| b64.decode(s).ok()) {
            Some(secret) if secret.len() >= 32 => secret,
            _ => {
                use rand::RngCore;
                let mut secret = vec![0u8; 32];
                rand::thread_rng().fill_bytes(&mut secret);
                stores
                    .data
                    .set_host_data("", "sasl", "decoy-secret", &b64.encode(&secret))
                    .await?;
                secret
            }
        };
        let decoy_iterations = stores
            .accounts
            .common_iterations()
            .await?
            .unwrap_or(config.auth.scram_iterations);
        Ok(AuthState {
            decoy_secret,
            decoy_iterations,
        })
    }
}

/// What modules and sessions hold to reach the server.
pub type ServerCtx = Arc<ServerState>;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("storage: {0}")]
    Store(#[from] confab_store::StoreError),
    #[error("tls: {0}")]
    Tls(String),
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("invalid listen address '{0}'")]
    Address(String),
    #[error("modules: {0}")]
    Modules(String),
    #[error("control socket: {0}")]
    Control(std::io::Error),
}

/// A listening c2s endpoint.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Direct TLS (XEP-0368) rather than STARTTLS.
    pub direct_tls: bool,
}

pub struct Server {
    ctx: ServerCtx,
    timers: Vec<JoinHandle<()>>,
    http_endpoints: Vec<SocketAddr>,
    endpoints: Vec<Endpoint>,
    shutdown_tx: watch::Sender<bool>,
    accept_tasks: Vec<JoinHandle<()>>,
}

pub async fn open_stores(config: &Config) -> Result<Stores, StartError> {
    // Validation already refused a bad URL; this is the same check, for callers that skip it.
    let backend = config
        .storage_backend()
        .map_err(|e| confab_store::StoreError::Database(e.to_string()))?;
    let pool = confab_store::PoolOptions {
        size: config
            .storage
            .pool_size
            .unwrap_or_else(|| backend.default_pool_size()),
        acquire_timeout: std::time::Duration::from_secs(config.storage.acquire_timeout),
    };
    Ok(Stores::open_with(&backend, &pool).await?)
}

impl Server {
    /// Creates the data directory, opens storage, loads or generates the certificate,
    /// registers `modules` (`confabd` passes `confab_modules::all()`; `[modules] disabled`
    /// switches some off) and starts listening. Returns once every listener is bound.
    pub async fn start(
        config: Config,
        modules: Vec<Arc<dyn module::Module>>,
    ) -> Result<Server, StartError> {
        let dir = &config.server.data_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| StartError::DataDir(dir.display().to_string(), e))?;
        let mut stores = open_stores(&config).await?;
        if config.storage.write_behind_ms > 0 {
            stores.data = confab_store::WriteBehind::new(
                stores.data,
                Duration::from_millis(config.storage.write_behind_ms),
                config.storage.write_behind_max,
            );
        }
        let auth = AuthState::load(&stores, &config).await?;
        let tls = certs::load_or_generate(&config).map_err(StartError::Tls)?;
        let registry = Registry::build_with_config(modules, &config.modules.disabled, &config)
            .map_err(StartError::Modules)?;
        tracing::info!(modules = ?registry.modules(), "modules enabled");
        let mut listeners = Vec::new();
        for iface in &config.c2s.interfaces {
            let ip: IpAddr = iface
                .parse()
                .map_err(|_| StartError::Address(iface.clone()))?;
            for (port, direct) in [(config.c2s.port, false), (config.c2s.tls_port, true)] {
                if port == 0 && !is_test_port(&config) {
                    continue;
                }
                if let Some(l) = listen_on(SocketAddr::new(ip, port))? {
                    listeners.push((l, direct));
                }
            }
        }
        // The HTTP listeners (plain and TLS), only when some module serves routes on them.
        let http_router = registry.http_router();
        let mut http_listeners = Vec::new();
        let mut listener_addrs = Vec::new();
        if http_router.is_some() {
            for iface in &config.http.interfaces {
                let ip: IpAddr = iface
                    .parse()
                    .map_err(|_| StartError::Address(iface.clone()))?;
                for (port, tls) in [(config.http.port, false), (config.http.tls_port, true)] {
                    if port == 0 && !is_test_port(&config) {
                        continue;
                    }
                    if let Some(l) = listen_on(SocketAddr::new(ip, port))? {
                        let bound = l
                            .local_addr()
                            .map_err(|e| StartError::Address(e.to_string()))?;
                        listener_addrs.push((if tls { "https" } else { "http" }, bound));
                        http_listeners.push((l, tls));
                    }
                }
            }
        }
        // Modules' own listeners (the admin console), bound now so a port in use stops the start.
        let mut module_listeners = Vec::new();
        for ml in registry.listeners() {
            for addr in &ml.addrs {
                if let Some(l) = listen_on(*addr)? {
                    let bound = l
                        .local_addr()
                        .map_err(|e| StartError::Address(e.to_string()))?;
                    tracing::info!(addr = %bound, listener = ml.name, "http listening");
                    listener_addrs.push((ml.name, bound));
                    module_listeners.push((l, ml.router.clone(), ml.tls));
                }
            }
        }
        // The plain HTTP listener's addresses (the TLS port's are not listed here).
        let http_addrs = http_listeners
            .iter()
            .filter(|(_, tls)| !tls)
            .map(|(l, _)| l.local_addr())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StartError::Address(e.to_string()))?;
        let (shutdown_tx, shutdown) = watch::channel(false);
        let ctx = Arc::new(ServerState {
            listener_addrs,
            http_addrs,
            started: std::time::Instant::now(),
            admission: admission::Admission::new(&config.limits),
            shutdown,
            config,
            stores,
            router: Router::default(),
            registry,
            tls,
            auth,
        });
        // Without it `confabd user del` could not end the sessions of this server, and a
        // second server could start on the same data directory: not starting is safer.
        let control = Some(
            control::listen(ctx.clone())
                .await
                .map_err(StartError::Control)?,
        );
        let timers = ctx
            .registry
            .timers()
            .iter()
            .map(|(period, t)| spawn_timer(&ctx, *period, t.clone(), shutdown_tx.subscribe()))
            .collect();
        let mut endpoints = Vec::new();
        let mut accept_tasks = Vec::new();
        for (listener, direct_tls) in listeners {
            let addr = listener
                .local_addr()
                .map_err(|e| StartError::Address(e.to_string()))?;
            tracing::info!(%addr, direct_tls, "c2s listening");
            endpoints.push(Endpoint { addr, direct_tls });
            accept_tasks.push(tokio::spawn(accept_loop(
                ctx.clone(),
                listener,
                direct_tls,
                shutdown_tx.subscribe(),
            )));
        }
        accept_tasks.extend(control);
        let mut http_endpoints = Vec::new();
        let proxies = Arc::new(http::TrustedProxies::from_config(&ctx.config.http));
        let tagged = |app: axum::Router, tls: bool| {
            app.layer(axum::middleware::from_fn_with_state(
                http::Tagger {
                    proxies: proxies.clone(),
                    tls,
                },
                http::tag,
            ))
        };
        let handshake = Duration::from_secs(ctx.config.http.tls_handshake_timeout);
        let mut plain: Vec<(TcpListener, axum::Router)> = Vec::new();
        let mut secure = Vec::new();
        for (l, r, tls) in module_listeners {
            let app = tagged(r.with_state(ctx.clone()), tls);
            if tls {
                let l = http::TlsListener::new(
                    l,
                    ctx.tls.https.clone(),
                    handshake,
                    shutdown_tx.subscribe(),
                )
                .map_err(|e| StartError::Address(e.to_string()))?;
                secure.push((l, app));
            } else {
                plain.push((l, app));
            }
        }
        if let Some(router) = http_router {
            let app = router.with_state(ctx.clone());
            for (listener, tls) in http_listeners {
                let addr = listener
                    .local_addr()
                    .map_err(|e| StartError::Address(e.to_string()))?;
                tracing::info!(%addr, tls, "http listening");
                if tls {
                    let l = http::TlsListener::new(
                        listener,
                        ctx.tls.https.clone(),
                        handshake,
                        shutdown_tx.subscribe(),
                    )
                    .map_err(|e| StartError::Address(e.to_string()))?;
                    secure.push((l, tagged(app.clone(), true)));
                } else {
                    http_endpoints.push(addr);
                    plain.push((listener, tagged(app.clone(), false)));
                }
            }
        }
        let limits = http_conn::HttpLimits::from_config(&ctx.config.http);
        for (listener, app) in plain {
            accept_tasks.push(http_conn::serve(
                listener,
                app,
                limits.clone(),
                shutdown_tx.subscribe(),
            ));
        }
        for (listener, app) in secure {
            accept_tasks.push(http_conn::serve(
                listener,
                app,
                limits.clone(),
                shutdown_tx.subscribe(),
            ));
        }
        for l in ctx.registry.lifecycle_listeners() {
            l.server_started(&ctx).await;
        }
        Ok(Server {
            ctx,
            timers,
            http_endpoints,
            endpoints,
            shutdown_tx,
            accept_tasks,
        })
    }

    pub fn ctx(&self) -> &ServerCtx {
        &self.ctx
    }

    /// Changes to `true` when the server shuts down; transports other than the built-in
    /// listeners pass it to `c2s::serve_framing`.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Where a module's own listener `name` listens (its first address).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.ctx
            .listener_addrs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
    }

    /// Where the HTTP listener listens (nothing when no module serves routes).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_endpoints.first().copied()
    }

    /// Where the HTTPS listener (`[http] tls_port`) listens.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.listener_addr("https")
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The first STARTTLS endpoint (what clients use by default).
    pub fn c2s_addr(&self) -> Option<SocketAddr> {
        self.endpoints
            .iter()
            .find(|e| !e.direct_tls)
            .map(|e| e.addr)
    }

    pub fn c2s_tls_addr(&self) -> Option<SocketAddr> {
        self.endpoints.iter().find(|e| e.direct_tls).map(|e| e.addr)
    }

    /// Stops accepting, closes every stream with `<system-shutdown/>`, and waits (up to the
    /// configured grace period) for the sessions to finish.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        let _ = self.shutdown_tx.send(true);
        for t in &self.accept_tasks {
            t.abort();
        }
        control::remove(&self.ctx.config);
        let grace = Duration::from_secs(self.ctx.config.c2s.shutdown_grace);
        if self.ctx.admission.all_closed(grace).await {
            tracing::info!("all sessions closed");
        } else {
            tracing::warn!("some sessions did not close within the grace period");
        }
        // Parked sessions end too, routing what they held (e.g. into offline storage).
        self.ctx.router.end_parked();
        let deadline = tokio::time::Instant::now() + grace;
        while self.ctx.router.parked_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Timers saw the shutdown signal; a tick in progress gets a moment to finish.
        for t in self.timers {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for l in self.ctx.registry.lifecycle_listeners() {
            l.server_stopping(&self.ctx).await;
        }
        // What was written behind (last activity, last presence) is written now.
        if let Err(e) = self.ctx.stores.data.flush().await {
            tracing::error!(error = %e, "writing held-back documents at shutdown failed");
        }
    }
}

/// Runs a module's timer every `period` until shutdown. It holds the server weakly between
/// ticks, so a dropped server ends it too.
fn spawn_timer(
    ctx: &ServerCtx,
    period: Duration,
    timer: Arc<dyn module::Timer>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let weak = Arc::downgrade(ctx);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the first run is one period after the start.
        every.tick().await;
        loop {
            tokio::select! {
                _ = every.tick() => {
                    let Some(ctx) = weak.upgrade() else { return };
                    timer.tick(&ctx).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// Port 0 in the config means "any free port" only in tests; operators disable with 0.
fn is_test_port(config: &Config) -> bool {
    config.c2s.port == 0 && config.c2s.tls_port == 0
}

fn ipv6_missing(e: &std::io::Error) -> bool {
    // EAFNOSUPPORT (97) and EADDRNOTAVAIL (99) on Linux: no IPv6 stack or address.
    matches!(
        e.kind(),
        std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::Unsupported
    ) || matches!(e.raw_os_error(), Some(97) | Some(99))
}

/// Listens on `addr`; `None` when it is a default IPv6 address (`::`, `::1`) on a host
/// without IPv6, so the defaults still start there.
fn listen_on(addr: SocketAddr) -> Result<Option<TcpListener>, StartError> {
    let ip = addr.ip();
    match bind(addr) {
        Ok(l) => Ok(Some(l)),
        Err(e) if ip.is_ipv6() && (ip.is_unspecified() || ip.is_loopback()) && ipv6_missing(&e) => {
            tracing::warn!(%addr, error = %e, "IPv6 is not available; not listening on it");
            Ok(None)
        }
        Err(e) => Err(StartError::Listen(addr, e)),
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if addr.is_ipv6() {
        // Lets `0.0.0.0` and `::` listen on the same port side by side.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

async fn accept_loop(
    ctx: ServerCtx,
    listener: TcpListener,
    direct_tls: bool,
    shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => {
                backoff = Duration::from_millis(5);
                c
            }
            Err(e) => {
                // Usually EMFILE: wait and retry rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let admitted = match ctx.admission.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(%peer, ?why, "connection limit reached; refusing");
                drop(tcp);
                continue;
            }
        };
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            c2s::serve(ctx, tcp, peer, direct_tls, shutdown).await;
            drop(admitted);
        });
    }
}
