//! The real server (`server::run_with`: real tonic, real store, real TCP on
//! an ephemeral port) hosted inside the test process, on a clock the test
//! moves forward instead of sleeping.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use sessionbridge::clock::{ManualClock, SharedClock};
use sessionbridge::config::{Config, Overrides};
use sessionbridge::pb::session_bridge_service_client::SessionBridgeServiceClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use super::Client;

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    overrides: Overrides,
}

/// A server running inside this test process.
pub struct InProc {
    pub addr: String,
    pub clock: Arc<ManualClock>,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    sweeps: tokio::sync::mpsc::Sender<oneshot::Sender<Result<usize, String>>>,
}

impl InProc {
    /// Starts a server on `data_dir` with the same flags `sessionbridge
    /// serve` takes, on a clock of its own.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> InProc {
        Self::start_on(data_dir, extra, ManualClock::new()).await
    }

    /// Starts a server on a clock shared with others (several sidecars of
    /// one deployment see the same time).
    pub async fn start_on(data_dir: &Path, extra: &[&str], clock: Arc<ManualClock>) -> InProc {
        let mut argv = vec![
            "serve".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let flags = Flags::try_parse_from(&argv).unwrap_or_else(|e| panic!("flags: {e}"));
        let cfg = Config::load(&flags.overrides).unwrap_or_else(|e| panic!("config: {e:#}"));
        let (bound_tx, bound_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (sweeps, sweep_rx) = tokio::sync::mpsc::channel(1);
        let opts = sessionbridge::server::RunOptions {
            clock: clock.clone() as SharedClock,
            bound: Some(bound_tx),
            sweep_now: Some(sweep_rx),
        };
        let task = tokio::spawn(sessionbridge::server::run_with(cfg, opts, async move {
            let _ = stop_rx.await;
        }));
        let addr = match bound_rx.await {
            Ok(a) => a.to_string(),
            Err(_) => panic!("server did not start: {:?}", task.await),
        };
        InProc {
            addr,
            clock,
            data_dir: data_dir.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            stop: Some(stop_tx),
            task: Some(task),
            sweeps,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        super::connect(&self.addr).await
    }

    pub async fn client(&self) -> Client {
        SessionBridgeServiceClient::new(self.channel().await)
    }

    /// Moves this server's clock forward.
    pub fn advance(&self, secs: i64) {
        self.clock.advance(secs);
    }

    /// Has the server's sweeper run now, on the server's clock; returns
    /// how many expired records it removed.
    pub async fn sweep(&self) -> usize {
        let (tx, rx) = oneshot::channel();
        self.sweeps.send(tx).await.expect("the sweeper runs");
        rx.await.expect("the sweeper answers").expect("the sweep")
    }

    /// Stops the server cleanly (drain, flush) and waits for it.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server run");
        }
    }

    /// Stops the server cleanly and starts it again on the same directory,
    /// flags and clock (on a new port).
    pub async fn restart(mut self) -> InProc {
        self.shutdown().await;
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Self::start_on(&self.data_dir, &args, self.clock.clone()).await
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A browser, as far as identity goes: a cookie jar per host that follows
/// the `cookies` of every answer, and the headers it sends.
#[derive(Clone, Debug)]
pub struct Browser {
    pub user_agent: String,
    pub client_ip: String,
    pub accept_language: String,
    /// (domain or host, host_only, name, value)
    jar: Vec<(String, bool, String, String)>,
}

impl Default for Browser {
    fn default() -> Self {
        Self {
            user_agent: super::UA.into(),
            client_ip: "203.0.113.7".into(),
            accept_language: "en-US,en;q=0.9".into(),
            jar: Vec::new(),
        }
    }
}

impl Browser {
    pub fn new() -> Self {
        Self::default()
    }

    /// The Cookie header this browser sends to `host`.
    pub fn cookie_header(&self, host: &str) -> String {
        self.jar
            .iter()
            .filter(|(d, host_only, _, _)| {
                if *host_only {
                    d == host
                } else {
                    host == d || host.ends_with(&format!(".{d}"))
                }
            })
            .map(|(_, _, n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Stores the cookies of an answer for `host` (a Max-Age of 0 deletes).
    pub fn accept(&mut self, host: &str, cookies: &[sessionbridge::pb::Cookie]) {
        for c in cookies {
            let (domain, host_only) = if c.domain.is_empty() {
                (host.to_string(), true)
            } else {
                (c.domain.clone(), false)
            };
            self.jar
                .retain(|(d, h, n, _)| !(d == &domain && *h == host_only && n == &c.name));
            if c.max_age_seconds != Some(0) {
                self.jar
                    .push((domain, host_only, c.name.clone(), c.value.clone()));
            }
        }
    }

    /// The request context of a page view of `url` (https) from this browser.
    pub fn context(&self, url: &str, referer: &str) -> sessionbridge::pb::RequestContext {
        let parsed = url::Url::parse(url).expect("test URL");
        let host = parsed.host_str().expect("host").to_string();
        sessionbridge::pb::RequestContext {
            host: host.clone(),
            url: url.into(),
            referer: referer.into(),
            user_agent: self.user_agent.clone(),
            cookie_header: self.cookie_header(&host),
            client_ip: self.client_ip.clone(),
            accept_language: self.accept_language.clone(),
            ..Default::default()
        }
    }

    /// Visits `url` (coming from `referer`): ResolveSession, cookies kept.
    pub async fn visit(
        &mut self,
        client: &mut Client,
        url: &str,
        referer: &str,
    ) -> sessionbridge::pb::ResolveSessionResponse {
        let context = self.context(url, referer);
        let host = context.host.clone();
        let r = client
            .resolve_session(sessionbridge::pb::ResolveSessionRequest {
                context: Some(context),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("ResolveSession {url}: {s:?}"))
            .into_inner();
        self.accept(&host, &r.cookies);
        r
    }
}
