//! Assembly: opens the store, builds the services (the API, health,
//! reflection), wraps them in tower layers, serves, and shuts down cleanly.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::api::Api;
use crate::clock::SharedClock;
use crate::config::{Config, StoreKind};
use crate::keys::{self, Keyring};
use crate::pb::session_bridge_service_server::SessionBridgeServiceServer;
use crate::service::{Service, Settings};
use crate::shutdown::{self, Shutdown};
use crate::store::{RedisStore, SledStore, Store};

/// The service name health checks answer for, besides the server as a whole ("").
pub const SERVICE_NAME: &str = "sessionbridge.v1.SessionBridgeService";
/// The health service name for liveness probes: SERVING while the process
/// runs, whatever the store's state.
pub const LIVENESS: &str = "liveness";

/// Loads the configured key file, or the development key in the data
/// directory (with a warning: it works on this instance only).
pub fn load_keys(cfg: &Config) -> anyhow::Result<Keyring> {
    match &cfg.keys {
        Some(path) => Ok(Keyring::load(path)?),
        None => {
            std::fs::create_dir_all(&cfg.data_dir)
                .with_context(|| format!("data directory {}", cfg.data_dir.display()))?;
            let path = cfg.data_dir.join("dev-keys.json");
            tracing::warn!(
                path = %path.display(),
                "no key file configured: using a development key kept in the data directory; \
                 cookies and hand-off tokens will not be recognised by any other instance. \
                 For cross-domain use, give every sidecar the same file from `sessionbridge keygen`"
            );
            Ok(keys::load_or_create(&path)?)
        }
    }
}

/// Runs the server until `stop` resolves (or SIGTERM/SIGINT); a
/// configuration that fails [`Config::check`] is refused before anything
/// starts. Announces the bound address on stdout as `sessionbridge listening
/// on ADDR`, a line scripts and tests may rely on.
pub async fn run(
    cfg: Config,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(cfg, RunOptions::default(), stop).await
}

/// How [`run_with`] differs from a plain [`run`]: tests that host the
/// server in their own process give it their clock and learn its address.
pub struct RunOptions {
    /// Where the service reads the time.
    pub clock: SharedClock,
    /// Told the bound address once the server accepts calls.
    pub bound: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
    /// Each request makes the sweeper run at once, besides its period, and
    /// is answered with what that sweep removed (or why it failed): a test
    /// that moved its clock past an expiry sweeps when it needs to.
    pub sweep_now: Option<SweepRequests>,
}

/// Requests for an immediate sweep (see [`RunOptions::sweep_now`]).
pub type SweepRequests =
    tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<Result<usize, String>>>;

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            clock: crate::clock::system(),
            bound: None,
            sweep_now: None,
        }
    }
}

/// [`run`] with a clock of the caller's and a report of the bound address.
pub async fn run_with(
    cfg: Config,
    opts: RunOptions,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = Settings::from_config(&cfg)?;
    let keys = Arc::new(load_keys(&cfg)?);
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    match cfg.store {
        StoreKind::Sled => {
            let store = SledStore::open_with_cache(
                &cfg.data_dir,
                cfg.durability,
                Duration::from_millis(cfg.flush_interval_ms),
                &keys.store_seal,
                cfg.cache_mb,
            )
            .context("cannot open the store")?;
            serve(cfg, opts, settings, keys, listener, store, stop).await
        }
        StoreKind::Redis => {
            let store = RedisStore::connect(&cfg.redis(), &keys.store_seal)
                .await
                .context("cannot reach the Redis store")?;
            serve(cfg, opts, settings, keys, listener, store, stop).await
        }
    }
}

async fn serve<S: Store + Clone>(
    cfg: Config,
    opts: RunOptions,
    settings: Settings,
    keys: Arc<Keyring>,
    listener: TcpListener,
    store: S,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    if let Some(metrics_addr) = cfg.metrics_listen {
        crate::metrics::install(metrics_addr)?;
        tracing::info!(%metrics_addr, "metrics at http://{metrics_addr}/metrics");
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    let service = Arc::new(Service::with_clock(store, keys, settings, opts.clock));

    let (trigger, shutdown) = shutdown::channel();
    let sweeper = tokio::spawn(sweep_loop(
        Arc::clone(&service),
        Duration::from_secs(cfg.sweep_interval_secs.max(1)),
        opts.sweep_now,
        shutdown.clone(),
    ));
    // The store is open: SERVING from here, as long as it answers.
    set_health(&health, true).await;
    // "liveness" only says the process serves gRPC: a store outage makes
    // the instance unready, never a restart candidate.
    health
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
    let watcher = tokio::spawn(health_loop(
        Arc::clone(&service),
        health.clone(),
        shutdown.clone(),
    ));
    let memory = cfg.metrics_listen.map(|_| {
        tokio::spawn(memory_loop(
            Arc::clone(&service),
            Duration::from_secs(MEMORY_SAMPLE_SECS),
            shutdown.clone(),
        ))
    });

    let auth = crate::auth::BearerAuth::from_file(cfg.auth_token_file.as_deref())?;
    let api = crate::errors::Edge::new(tonic::service::interceptor::InterceptedService::new(
        crate::limit::Shed::new(
            SessionBridgeServiceServer::new(Api::new(Arc::clone(&service)))
                .max_decoding_message_size(cfg.max_message_bytes),
            cfg.concurrency_limit,
        ),
        auth,
    ))
    .with_timeout(Duration::from_millis(cfg.request_timeout_ms));
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let drain = Duration::from_secs(cfg.drain_secs);
    let health_on_stop = health.clone();
    let mut serve_shutdown = shutdown.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls_config(&cfg)? {
        builder = builder.tls_config(tls).context("TLS configuration")?;
    }
    // The kubelet's probes on a listener of their own: health alone, so the
    // identity API can stay on loopback beside the backend.
    let health_only = match cfg.health_listen {
        Some(health_addr) => {
            let listener = TcpListener::bind(health_addr)
                .await
                .with_context(|| format!("cannot listen on {health_addr} (health_listen)"))?;
            tracing::info!(health_addr = %listener.local_addr()?, "health probes");
            let mut stop = shutdown.clone();
            Some(tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(health_service.clone())
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(listener)
                            .with_nodelay(Some(true)),
                        async move { stop.wait().await },
                    ),
            ))
        }
        None => None,
    };
    let server = builder
        // The identity API's own deadline is in `Edge` (a complete status);
        // this one, a little later, bounds health and reflection.
        .timeout(Duration::from_millis(cfg.request_timeout_ms) + Duration::from_millis(250))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(api)
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a response written as more than one
            // segment waits for the client's delayed ACK: 40 ms per call.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async move {
                serve_shutdown.wait().await;
            },
        );

    tracing::info!(%addr, tls = cfg.tls_cert.is_some(), mutual_tls = cfg.tls_client_ca.is_some(), bearer_auth = cfg.auth_token_file.is_some(), store = ?cfg.store, data_dir = %cfg.data_dir.display(), durability = ?cfg.durability, "serving");
    println!("sessionbridge listening on {addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    if let Some(bound) = opts.bound {
        let _ = bound.send(addr);
    }

    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown::signal() => {},
            _ = stop => {},
        }
        tracing::info!(
            drain_secs = drain.as_secs(),
            "stopping: reporting NOT_SERVING, then draining"
        );
        trigger.draining();
        set_health(&health_on_stop, false).await;
        tokio::time::sleep(drain).await;
        trigger.fire();
    });

    // The server future returns once the listener is closed and every
    // connection is done. No call outlives the request timeout, so once that
    // has passed after shutdown, what remains are idle keep-alive
    // connections, which must not hold the process up.
    let grace = Duration::from_millis(cfg.request_timeout_ms) + Duration::from_secs(1);
    let mut server = tokio::spawn(server);
    let mut stopped = shutdown.clone();
    tokio::select! {
        result = &mut server => result.context("server task failed")?.context("server failed")?,
        _ = async { stopped.wait().await; tokio::time::sleep(grace).await } => {
            tracing::info!("in-flight calls done; closing idle connections");
            server.abort();
        }
    }
    sweeper.abort();
    watcher.abort();
    if let Some(m) = memory {
        m.abort();
        let _ = m.await;
    }
    if let Some(h) = health_only {
        h.abort();
        let _ = h.await;
    }
    // Wait for both to be gone, so nothing holds the store once run ends
    // (a restart in the same process reopens the directory).
    let _ = sweeper.await;
    let _ = watcher.await;
    service
        .store()
        .flush()
        .await
        .context("final store flush failed")?;
    tracing::info!("stopped; store flushed");
    Ok(())
}

/// The listener's TLS settings, read from the configured PEM files.
fn tls_config(cfg: &Config) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) else {
        return Ok(None);
    };
    let read = |what: &str, p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("{what} {}", p.display()))
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read("tls_cert", cert)?,
        read("tls_key", key)?,
    ));
    if let Some(ca) = &cfg.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read("tls_client_ca", ca)?));
    }
    Ok(Some(tls))
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

async fn set_health(health: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    health.set_service_status("", status).await;
    health.set_service_status(SERVICE_NAME, status).await;
}

/// Checks the store every second and reports it in the health service: a
/// sidecar whose shared store is down is NOT_SERVING until it answers again.
async fn health_loop<S: Store>(
    service: Arc<Service<S>>,
    health: HealthReporter,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serving = true;
    crate::metrics::store_up(true);
    loop {
        tokio::select! {
            _ = tick.tick() => {},
            _ = shutdown.wait() => return,
        }
        if shutdown.is_draining() {
            return;
        }
        let ok = tokio::time::timeout(Duration::from_secs(1), service.store().ping())
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false);
        if ok != serving {
            if ok {
                tracing::info!("store answers again: SERVING");
            } else {
                tracing::warn!("store does not answer: NOT_SERVING");
            }
            serving = ok;
            crate::metrics::store_up(ok);
            set_health(&health, ok).await;
        }
    }
}

/// How often the memory gauges are sampled, in seconds.
const MEMORY_SAMPLE_SECS: u64 = 5;

/// Samples resident memory and the store's size on disk for the metrics,
/// at once and then every `every`, until shutdown.
async fn memory_loop<S: Store>(service: Arc<Service<S>>, every: Duration, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {},
            _ = shutdown.wait() => return,
        }
        crate::metrics::memory(service.store().disk_bytes());
    }
}

/// Removes expired records every `every`, and whenever `asked`, until
/// shutdown.
async fn sweep_loop<S: Store>(
    service: Arc<Service<S>>,
    every: Duration,
    mut asked: Option<SweepRequests>,
    mut shutdown: Shutdown,
) {
    // The first sweep one period after the start, like every other.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let reply = tokio::select! {
            _ = tick.tick() => None,
            Some(reply) = async {
                match asked.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => Some(reply),
            _ = shutdown.wait() => return,
        };
        let result = service.sweep().await;
        match &result {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "swept expired records"),
            Err(e) => tracing::warn!(error = %e, "sweep failed; will retry"),
        }
        if let Some(reply) = reply {
            let _ = reply.send(result.map_err(|e| e.to_string()));
        }
    }
}
