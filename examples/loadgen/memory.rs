//! Memory and scale of the release binary on the embedded store: what a
//! store holds after cookieless traffic and once its first visits have
//! expired (`retention`), resident memory against stored identities, page
//! cache and workload (`model`), ten minutes of mixed traffic sampled every
//! ten seconds (`soak`), and the time from start to SERVING with a large
//! store (`startup`). Each prints its tables; `benches/compare --memory`
//! (`--retention`, `--soak`, `--startup`) runs them. See docs/performance.md,
//! "Memory".

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use sessionbridge::keys::Keyring;
use sessionbridge::pb;
use sessionbridge::pb::session_bridge_service_client::SessionBridgeServiceClient;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

use crate::compare::{disk_bytes, populate};
use crate::run::{self, Plan};
use crate::work::{self, Conn, Workload};

#[derive(clap::Args)]
pub struct Args {
    /// The sessionbridge binary [default: next to this one's directory].
    #[arg(long, global = true)]
    server: Option<PathBuf>,
    /// Working directory for data directories and logs (each run empties
    /// its own).
    #[arg(long, global = true, default_value = "target/memory-work")]
    work: PathBuf,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Records, bytes and disk after cookieless requests, then after the
    /// first-visit lifetime has passed and the sweeper has run.
    Retention(RetentionArgs),
    /// Resident memory against stored identities, page cache and workload.
    Model(ModelArgs),
    /// Mixed traffic at the Helm chart's settings, resident memory sampled
    /// every ten seconds, printed and plotted as SVG.
    Soak(SoakArgs),
    /// Time from start to SERVING with many stored identities, and where
    /// it goes.
    Startup(StartupArgs),
}

#[derive(clap::Args)]
struct RetentionArgs {
    /// Cookieless requests (first visits).
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// The first-visit lifetime given to the server, seconds (a short one,
    /// so the run need not wait a day).
    #[arg(long, default_value_t = 60)]
    first_visit_ttl_secs: u64,
    /// The server's sweep period, seconds.
    #[arg(long, default_value_t = 5)]
    sweep_interval_secs: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// A second binary measured the same way (an earlier version, which
    /// may not know the first-visit setting).
    #[arg(long)]
    baseline: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ModelArgs {
    /// Stored identities, ascending (the store is filled step by step).
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000,3000000")]
    identities: Vec<u64>,
    /// Page caches (cache_mb) to run each size with.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256,512")]
    cache_mb: Vec<u64>,
    /// Seconds each workload runs on each server.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
}

#[derive(clap::Args)]
struct SoakArgs {
    /// Seconds of mixed traffic.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Seconds between two samples of resident memory.
    #[arg(long, default_value_t = 10)]
    every: u64,
    /// Requests in flight (at most, with --rate).
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Requests a second, spread evenly; 0 sends each request as soon as
    /// the last one of its task is answered.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Identities stored before the soak (returning visitors draw from
    /// them too).
    #[arg(long, default_value_t = 0)]
    identities: u64,
    /// The chart whose values.yaml sets cache_mb and the memory limit.
    #[arg(long, default_value = "helm/sessionbridge/values.yaml")]
    chart_values: PathBuf,
    /// Where the plot goes.
    #[arg(long, default_value = "docs/memory-soak.svg")]
    svg: PathBuf,
    /// Page cache, MiB, instead of the chart's.
    #[arg(long)]
    cache_mb: Option<u64>,
    /// Memory limit, MiB, instead of the chart's (drawn on the plot).
    #[arg(long)]
    limit_mib: Option<u64>,
    /// First-visit lifetime, seconds, instead of the chart's (a short one
    /// lets the store reach its steady size within the soak).
    #[arg(long)]
    first_visit_ttl_secs: Option<u64>,
    /// A mix that keeps the number of live records constant, to tell
    /// growth with the live visitors from growth without them: six in ten
    /// cookie hits of the stored identities, four in ten first visits that
    /// never come back and leave the store after --first-visit-ttl-secs
    /// (both required); no hand-offs and no returning first
    /// visitors, which would each add a record kept for the full lifetime.
    #[arg(long, requires_all = ["identities", "first_visit_ttl_secs"])]
    steady: bool,
}

#[derive(clap::Args)]
struct StartupArgs {
    /// Stored identities.
    #[arg(long, default_value_t = 10_000_000)]
    identities: u64,
    /// Page cache of the server, MiB (the Helm chart's by default).
    #[arg(long, default_value_t = 128)]
    cache_mb: u64,
    /// Starts after the first (which replays everything written since the
    /// store was last opened).
    #[arg(long, default_value_t = 3)]
    restarts: u32,
    /// Keep the store (under --work) for later runs; it is reused when its
    /// size matches.
    #[arg(long)]
    keep: bool,
    /// Use this data directory as it is (written with the same key file,
    /// `keys.json` under --work), instead of writing one; it is kept.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Identities to write into the store before the first start (on top
    /// of what it holds): what a restart replays after that many writes.
    #[arg(long, default_value_t = 0)]
    append: u64,
}

/// A server process; SIGKILL when dropped, SIGTERM on [`Srv::stop`].
struct Srv {
    child: Child,
    addr: String,
    ready_after: Duration,
}

impl Drop for Srv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process, MiB: all of it, and its anonymous part
/// (the heap; the rest is the binary and files mapped in).
#[derive(Clone, Copy, Debug, Default)]
struct Rss {
    total: f64,
    anon: f64,
}

fn rss_of(pid: u32) -> Rss {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    Rss {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
    }
}

/// CPU seconds (user, system) and bytes read (from any source, and from
/// the disk) of a process so far.
fn cpu_and_io(pid: u32) -> (f64, f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = 100.0; // USER_HZ on Linux
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let io_field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    (
        num(11) / tick,
        num(12) / tick,
        io_field("rchar:"),
        io_field("read_bytes:"),
    )
}

impl Srv {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss(&self) -> Rss {
        rss_of(self.pid())
    }

    /// SIGTERM, then waits: the store is flushed and released.
    fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM {}", self.pid());
        let exit = self.child.wait()?;
        anyhow::ensure!(exit.success(), "server exited with {exit}");
        Ok(())
    }
}

struct Env {
    server: PathBuf,
    keys_path: PathBuf,
    keys: Arc<Keyring>,
    work: PathBuf,
}

impl Env {
    fn new(a: &Args) -> anyhow::Result<Env> {
        let server = match &a.server {
            Some(s) => s.clone(),
            None => std::env::current_exe()?
                .parent()
                .and_then(Path::parent)
                .map(|p| p.join("sessionbridge"))
                .context("cannot find the server binary; pass --server")?,
        };
        anyhow::ensure!(server.exists(), "no server binary at {}", server.display());
        std::fs::create_dir_all(&a.work)?;
        let keys_path = a.work.join("keys.json");
        if !keys_path.exists() {
            sessionbridge::keys::generate(&keys_path, "bench")?;
        }
        let keys = Arc::new(Keyring::load(&keys_path)?);
        Ok(Env {
            server,
            keys_path,
            keys,
            work: a.work.clone(),
        })
    }

    /// Starts `server` on `data_dir` with extra flags; waits for SERVING.
    async fn start(
        &self,
        server: &Path,
        name: &str,
        data_dir: &Path,
        extra: &[String],
    ) -> anyhow::Result<Srv> {
        let log_path = self.work.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let started = Instant::now();
        let mut child = Command::new(server)
            .arg("serve")
            .args([
                "--listen",
                "127.0.0.1:0",
                "--allowed-domains",
                work::ALLOWED,
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--keys")
            .arg(&self.keys_path)
            .args(extra)
            .env("SESSIONBRIDGE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", server.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("sessionbridge listening on ") else {
            let _ = child.kill();
            bail!(
                "{name} did not start (see {}): {line:?}",
                log_path.display()
            );
        };
        let mut srv = Srv {
            child,
            addr: addr.to_string(),
            ready_after: Duration::ZERO,
        };
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let mut health = HealthClient::new(ch);
        loop {
            let r = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if matches!(r, Ok(r) if r.get_ref().status == ServingStatus::Serving as i32) {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(900),
                "{name} never SERVING"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        srv.ready_after = started.elapsed();
        Ok(srv)
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

/// Copies a data directory (a run that writes must not change the store
/// the next run starts from).
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(to);
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    anyhow::ensure!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
    Ok(())
}

pub async fn main(a: Args) -> anyhow::Result<()> {
    let env = Env::new(&a)?;
    match a.what {
        What::Retention(r) => retention(&env, r).await,
        What::Model(m) => model(&env, m).await,
        What::Soak(s) => soak(&env, s).await,
        What::Startup(s) => startup(&env, s).await,
    }
}

// ---------------------------------------------------------------- retention

/// What a stopped server's store holds, by tree.
#[derive(Default)]
struct Census {
    /// tree -> (entries, live entries, bytes of keys and values)
    trees: BTreeMap<String, (u64, u64, u64)>,
    disk: u64,
}

impl Census {
    fn take(dir: &Path, keys: &Keyring) -> anyhow::Result<Census> {
        let now = sessionbridge::service::now_unix();
        let mut c = Census {
            disk: disk_bytes(dir),
            ..Default::default()
        };
        for r in sessionbridge::store::unseal_every_record(dir, &keys.store_seal, &[], &[])? {
            let t = c.trees.entry(r.tree).or_default();
            t.0 += 1;
            if r.expires_at.is_none_or(|e| e > now) {
                t.1 += 1;
            }
            t.2 += (r.key.len() + r.stored.len()) as u64;
        }
        Ok(c)
    }

    fn get(&self, tree: &str) -> (u64, u64, u64) {
        self.trees.get(tree).copied().unwrap_or_default()
    }
}

async fn retention(env: &Env, a: RetentionArgs) -> anyhow::Result<()> {
    let mut servers = vec![("this version", env.server.clone())];
    if let Some(b) = &a.baseline {
        servers.insert(0, ("baseline", b.clone()));
    }
    let mut rows = Vec::new();
    for (label, bin) in servers {
        let help = Command::new(&bin).args(["serve", "--help"]).output()?;
        let knows = String::from_utf8_lossy(&help.stdout).contains("--first-visit-ttl-secs");
        let mut flags = vec![
            "--sweep-interval-secs".to_string(),
            a.sweep_interval_secs.to_string(),
        ];
        if knows {
            flags.extend([
                "--first-visit-ttl-secs".to_string(),
                a.first_visit_ttl_secs.to_string(),
            ]);
        }
        let dir = env
            .work
            .join(format!("retention-{}", label.replace(' ', "-")));
        let _ = std::fs::remove_dir_all(&dir);
        println!("\n{label}: {} ({})", bin.display(), flags.join(" "));
        // The requests, then the lifetime (with its expiry bucket and a
        // sweep period) with the server running; twice, to see whether the
        // space the first sweep freed is used again.
        let wait = a.first_visit_ttl_secs + 60 + 2 * a.sweep_interval_secs + 5;
        for round in ["", " again"] {
            let srv = env.start(&bin, label, &dir, &flags).await?;
            let conns = work::grpc_conns(&srv.addr, 1).await?;
            let report = run::run(
                &Arc::new(Workload::ResolveNew),
                &conns,
                Plan {
                    in_flight: a.in_flight,
                    duration: Duration::from_secs(3600),
                    requests: Some(a.requests),
                    warmup: Duration::ZERO,
                },
            )
            .await;
            anyhow::ensure!(
                report.errors == 0,
                "{} errors: {:?}",
                report.errors,
                report.first_error
            );
            let rss = srv.rss();
            drop(conns);
            srv.stop()?;
            let census = Census::take(&dir, &env.keys)?;
            rows.push((label, format!("after the requests{round}"), census, rss));
            let srv = env.start(&bin, label, &dir, &flags).await?;
            println!("  waiting {wait} s for the first-visit lifetime and a sweep");
            tokio::time::sleep(Duration::from_secs(wait)).await;
            let rss = srv.rss();
            srv.stop()?;
            let census = Census::take(&dir, &env.keys)?;
            rows.push((label, format!("lifetime passed, swept{round}"), census, rss));
        }
        std::fs::remove_dir_all(&dir)?;
    }
    println!(
        "\n### {} cookieless requests, then the first-visit lifetime ({} s here) and a sweep, twice\n",
        a.requests, a.first_visit_ttl_secs
    );
    println!(
        "| server | when | client records (live) | expiry index entries | bytes stored (keys + values) | bytes per client record | size on disk | RSS |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (label, when, c, rss) in &rows {
        let (n, live, bytes) = c.get("clients");
        let (idx, _, idx_bytes) = c.get("expiry");
        let all_bytes: u64 = c.trees.values().map(|t| t.2).sum();
        let per = if n > 0 {
            format!("{:.0}", (bytes + idx_bytes) as f64 / n as f64)
        } else {
            "-".into()
        };
        println!(
            "| {label} | {when} | {n} ({live}) | {idx} | {:.1} MiB | {per} | {:.1} MiB | {:.0} MiB |",
            mib(all_bytes),
            mib(c.disk),
            rss.total
        );
    }
    Ok(())
}

// -------------------------------------------------------------------- model

/// Samples a process's resident memory every `every` until told to stop;
/// returns the samples (seconds since the start, RSS).
struct Sampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<Vec<(f64, Rss)>>,
}

impl Sampler {
    fn start(pid: u32, every: Duration) -> Sampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut out = vec![(0.0, rss_of(pid))];
            let mut next = every;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if t0.elapsed() >= next {
                    out.push((t0.elapsed().as_secs_f64(), rss_of(pid)));
                    next += every;
                }
            }
            out.push((t0.elapsed().as_secs_f64(), rss_of(pid)));
            out
        });
        Sampler { stop, handle }
    }

    fn finish(self) -> Vec<(f64, Rss)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("sampler")
    }
}

struct ModelRow {
    identities: u64,
    cache_mb: u64,
    workload: &'static str,
    per_second: f64,
    writes_per_second: f64,
    rss_open: f64,
    rss_end: f64,
    rss_max: f64,
    anon_end: f64,
}

/// Runs `one(conn, n)` for `duration` from `in_flight` tasks, each sending
/// its next request when the last is answered; returns the requests
/// answered, the errors (with the first) and the seconds it took.
async fn drive<F, Fut>(
    conns: &[Conn],
    in_flight: usize,
    duration: Duration,
    one: F,
) -> (u64, u64, Option<String>, f64)
where
    F: Fn(Conn, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let seq = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..in_flight.max(1))
        .map(|i| {
            let (conn, seq, one) = (conns[i % conns.len()].clone(), seq.clone(), one.clone());
            tokio::spawn(async move {
                let (mut ok, mut errors, mut first) = (0u64, 0u64, None);
                while Instant::now() < deadline {
                    match one(conn.clone(), seq.fetch_add(1, Ordering::Relaxed)).await {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            errors += 1;
                            first.get_or_insert(e);
                        }
                    }
                }
                (ok, errors, first)
            })
        })
        .collect();
    let (mut ok, mut errors, mut first) = (0, 0, None);
    for t in tasks {
        let (o, e, f) = t.await.expect("driver task");
        ok += o;
        errors += e;
        first = first.or(f);
    }
    (ok, errors, first, started.elapsed().as_secs_f64())
}

/// Where `populate` wrote identities, and when: the cookie of identity `i`
/// names exactly what the store holds for it.
#[derive(Clone)]
struct Stored {
    keys: Arc<Keyring>,
    scope: sessionbridge::cookie::CookieScope,
    created: u32,
    /// (first index of a batch, the `seen` time it was written with)
    batches: Arc<Vec<(u64, i64)>>,
}

impl Stored {
    fn cookie_header(&self, i: u64) -> String {
        let at = self
            .batches
            .iter()
            .rev()
            .find(|b| b.0 <= i)
            .map_or(0, |b| b.1);
        let value = sessionbridge::cookie::seal_identity(
            &self.keys,
            &self.scope,
            "__Secure-sbid",
            &work::stored_identity(i, self.created, at),
        );
        format!("locale=en-GB; cart=eyJpdGVtcyI6WzQyXX0; __Secure-sbid={value}")
    }
}

/// A cookie hit of a random one of the first `count` stored identities.
async fn stored_hit(conn: Conn, stored: Stored, count: u64) -> Result<(), String> {
    let i = rand::random::<u64>() % count;
    let ch = conn.grpc.clone().ok_or("no gRPC connection")?;
    let r = SessionBridgeServiceClient::new(ch)
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(soak_ctx(stored.cookie_header(i), i)),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("ResolveSession: {e}"))?
        .into_inner();
    if r.method != pb::ResolutionMethod::Cookie as i32 {
        return Err(format!("answered {:?}, expected a cookie hit", r.method));
    }
    Ok(())
}

async fn model(env: &Env, a: ModelArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.identities.windows(2).all(|w| w[0] < w[1]),
        "--identities must ascend"
    );
    let base = env.work.join("model-base");
    let run_dir = env.work.join("model-run");
    let _ = std::fs::remove_dir_all(&base);
    let created = (sessionbridge::service::now_unix() - 86_400) as u32;
    let scope = work::shop_scope();
    let mut batches = Vec::new();
    let secs = Duration::from_secs_f64(a.seconds);
    let mut rows: Vec<ModelRow> = Vec::new();
    let mut stored = 0;
    for &n in &a.identities {
        let seen = sessionbridge::service::now_unix() - 60;
        batches.push((stored, seen));
        populate(&base, &env.keys, created, seen, stored, n).await?;
        stored = n;
        let view = Stored {
            keys: env.keys.clone(),
            scope: scope.clone(),
            created,
            batches: Arc::new(batches.clone()),
        };
        // Open once, so that the runs below start from a snapshot (sled
        // replays its log since the last opening).
        env.start(&env.server, "model-open", &base, &[])
            .await?
            .stop()?;
        println!(
            "  {n} identities: {:.0} MiB on disk",
            mib(disk_bytes(&base))
        );
        for &cache in &a.cache_mb {
            let workloads: [(&'static str, Vec<String>); 3] = [
                // The cookie names what is stored and the stored time is
                // recent enough for this touch_write_secs: nothing is
                // written.
                (
                    "cookie hits, reads only",
                    vec![
                        "--session-timeout-secs".into(),
                        "864000".into(),
                        "--touch-write-secs".into(),
                        "86400".into(),
                    ],
                ),
                // With the defaults, the first hit on each stored identity
                // rewrites its record (its stored time is older than
                // touch_write_secs); later hits within the run do not.
                ("cookie hits, touch writes", vec![]),
                ("first visits, each a new record", vec![]),
            ];
            for (name, extra) in workloads {
                copy_dir(&base, &run_dir)?;
                let mut flags = vec!["--cache-mb".to_string(), cache.to_string()];
                flags.extend(extra);
                let srv = env.start(&env.server, "model", &run_dir, &flags).await?;
                let rss_open = srv.rss().total;
                let conns = work::grpc_conns(&srv.addr, 1).await?;
                let sampler = Sampler::start(srv.pid(), Duration::from_secs(1));
                let (done, errors, first, took) = if name.starts_with("first") {
                    drive(&conns, a.in_flight, secs, |conn, i| async move {
                        Workload::ResolveNew.one(&conn, i).await.map(|_| ())
                    })
                    .await
                } else {
                    let view = view.clone();
                    drive(&conns, a.in_flight, secs, move |conn, _| {
                        stored_hit(conn, view.clone(), n)
                    })
                    .await
                };
                let samples = sampler.finish();
                anyhow::ensure!(errors == 0, "{name}: {errors} errors, first: {first:?}");
                let end = samples.last().map(|s| s.1).unwrap_or_default();
                let writes = match name {
                    "cookie hits, reads only" => 0.0,
                    // Distinct identities among `done` random picks of n.
                    "cookie hits, touch writes" => {
                        n as f64 * (1.0 - (-(done as f64) / n as f64).exp())
                    }
                    _ => done as f64,
                };
                let row = ModelRow {
                    identities: n,
                    cache_mb: cache,
                    workload: name,
                    per_second: done as f64 / took,
                    writes_per_second: writes / took,
                    rss_open,
                    rss_end: end.total,
                    rss_max: samples.iter().map(|s| s.1.total).fold(0.0, f64::max),
                    anon_end: end.anon,
                };
                println!(
                    "  {n} identities, cache {cache} MiB, {name}: {:.0}/s ({:.0} writes/s), RSS {:.0} MiB open, {:.0} end, {:.0} max",
                    row.per_second, row.writes_per_second, row.rss_open, row.rss_end, row.rss_max
                );
                rows.push(row);
                drop(conns);
                srv.stop()?;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&run_dir);
    let _ = std::fs::remove_dir_all(&base);
    println!(
        "\n### Resident memory (MiB) of the release binary: {} s of each workload at {} in flight\n",
        a.seconds, a.in_flight
    );
    println!("| identities | cache_mb | workload | req/s | writes/s | RSS after opening | RSS at the end | RSS max | heap (RssAnon) at the end |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            r.identities,
            r.cache_mb,
            r.workload,
            r.per_second,
            r.writes_per_second,
            r.rss_open,
            r.rss_end,
            r.rss_max,
            r.anon_end
        );
    }
    Ok(())
}

// --------------------------------------------------------------------- soak

/// The memory limit and the page cache the chart's values.yaml sets.
fn chart_settings(values: &Path) -> anyhow::Result<(u64, u64)> {
    let text =
        std::fs::read_to_string(values).with_context(|| format!("read {}", values.display()))?;
    let mut cache = None;
    let mut limit = None;
    let mut in_limits = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("cacheMb:") {
            cache = v.trim().parse::<u64>().ok();
        }
        if t == "limits:" {
            in_limits = true;
        } else if in_limits {
            if let Some(v) = t.strip_prefix("memory:") {
                let v = v.trim();
                limit = match v.strip_suffix("Gi") {
                    Some(g) => g.parse::<u64>().ok().map(|g| g * 1024),
                    None => v.strip_suffix("Mi").and_then(|m| m.parse::<u64>().ok()),
                };
                in_limits = false;
            }
        }
    }
    Ok((
        limit.context("no resources.limits.memory (Mi or Gi) in the chart's values")?,
        cache.context("no store.sled.cacheMb in the chart's values")?,
    ))
}

fn soak_ctx(cookie_header: String, n: u64) -> pb::RequestContext {
    pb::RequestContext {
        host: work::SHOP.into(),
        url: format!(
            "https://{}/products/espresso-machine?variant=42",
            work::SHOP
        ),
        referer: format!("https://{}/collections/all", work::SHOP),
        user_agent: format!("Mozilla/5.0 (X11; Linux x86_64) Soak/{n}"),
        cookie_header,
        client_ip: format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff),
        accept_language: "en-GB,en;q=0.9".into(),
        ..Default::default()
    }
}

/// Returning visitors: the cookies of recent first visits, most recent
/// kept.
struct Returning {
    headers: Mutex<Vec<String>>,
    next: AtomicU64,
}

const RETURNING: usize = 200_000;

impl Returning {
    fn add(&self, h: String) {
        let mut v = self.headers.lock().unwrap();
        if v.len() < RETURNING {
            v.push(h);
        } else {
            let i = self.next.fetch_add(1, Ordering::Relaxed) as usize % RETURNING;
            v[i] = h;
        }
    }

    fn pick(&self) -> Option<String> {
        let v = self.headers.lock().unwrap();
        (!v.is_empty()).then(|| v[rand::random::<usize>() % v.len()].clone())
    }
}

/// Counts of what the soak sent.
#[derive(Default)]
struct Sent {
    first: AtomicU64,
    hits: AtomicU64,
    handoffs: AtomicU64,
    errors: AtomicU64,
}

/// One request of the mix: six in ten cookie hits of returning visitors
/// (half of them stored before the soak, when there are, half from its own
/// first visits), three first visits, one hand-off (RecordHandoff, then
/// the arrival on the other site through the referrer bridge). With
/// `steady`, six in ten cookie hits of stored identities and four first
/// visits that never return.
async fn mixed(
    conn: &Conn,
    n: u64,
    back: &Returning,
    sent: &Sent,
    stored: Option<&(Stored, u64)>,
    steady: bool,
) -> Result<(), String> {
    let ch = conn.grpc.clone().ok_or("no gRPC connection")?;
    let mut c = SessionBridgeServiceClient::new(ch);
    let slot = n % 10;
    let stored_slots = if steady { 0..=5 } else { 0..=2 };
    if let Some((view, count)) = stored.filter(|_| stored_slots.contains(&slot)) {
        stored_hit(conn.clone(), view.clone(), *count).await?;
        sent.hits.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let returning = if slot < 6 && !steady {
        back.pick()
    } else {
        None
    };
    if slot == 9 && !steady {
        Workload::Bridge.one(conn, n).await?;
        sent.handoffs.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let (header, want) = match &returning {
        Some(h) => (h.clone(), pb::ResolutionMethod::Cookie),
        None => ("locale=en-GB".to_string(), pb::ResolutionMethod::New),
    };
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(soak_ctx(header, n)),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("ResolveSession: {e}"))?
        .into_inner();
    if r.method != want as i32 {
        return Err(format!("answered {:?}, expected {want:?}", r.method));
    }
    if returning.is_some() {
        sent.hits.fetch_add(1, Ordering::Relaxed);
    } else {
        sent.first.fetch_add(1, Ordering::Relaxed);
        let own: Vec<String> = r
            .cookies
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        if !steady {
            back.add(format!("locale=en-GB; {}", own.join("; ")));
        }
    }
    Ok(())
}

async fn soak(env: &Env, a: SoakArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !a.steady || a.identities > 0,
        "--steady needs stored identities (--identities above 0)"
    );
    let (limit_mib, cache_mb) = chart_settings(&a.chart_values)?;
    let (limit_mib, cache_mb) = (
        a.limit_mib.unwrap_or(limit_mib),
        a.cache_mb.unwrap_or(cache_mb),
    );
    let dir = env.work.join("soak");
    let _ = std::fs::remove_dir_all(&dir);
    let mut flags = vec!["--cache-mb".to_string(), cache_mb.to_string()];
    if let Some(ttl) = a.first_visit_ttl_secs {
        flags.extend([
            "--first-visit-ttl-secs".to_string(),
            ttl.to_string(),
            "--sweep-interval-secs".to_string(),
            "10".to_string(),
        ]);
    }
    let stored = if a.identities > 0 {
        let created = (sessionbridge::service::now_unix() - 86_400) as u32;
        let seen = sessionbridge::service::now_unix() - 60;
        populate(&dir, &env.keys, created, seen, 0, a.identities).await?;
        // Opened once: the soak starts from a snapshot, as a pod that
        // restarts on its volume would.
        env.start(&env.server, "soak-open", &dir, &flags)
            .await?
            .stop()?;
        let scope = work::shop_scope();
        Some(Arc::new((
            Stored {
                keys: env.keys.clone(),
                scope,
                created,
                batches: Arc::new(vec![(0, seen)]),
            },
            a.identities,
        )))
    } else {
        None
    };
    println!(
        "# soak: {} s of {} traffic, {} in flight, {}; {} identities stored before; the chart's settings: memory limit {limit_mib} MiB, cache_mb {cache_mb}; server flags: {}",
        a.seconds,
        if a.steady { "steady (no new lasting records)" } else { "mixed" },
        a.in_flight,
        if a.rate > 0.0 { format!("{} requests/s", a.rate) } else { "as fast as answered".into() },
        a.identities,
        flags.join(" ")
    );
    let srv = env.start(&env.server, "soak", &dir, &flags).await?;
    let conns = work::grpc_conns(&srv.addr, 1).await?;
    let back = Arc::new(Returning {
        headers: Mutex::new(Vec::new()),
        next: AtomicU64::new(0),
    });
    let sent = Arc::new(Sent::default());
    let seq = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    let t0 = tokio::time::Instant::now();
    let rate = a.rate;
    let steady = a.steady;
    for i in 0..a.in_flight.max(1) {
        let conn = conns[i % conns.len()].clone();
        let (back, sent, seq, stored) = (back.clone(), sent.clone(), seq.clone(), stored.clone());
        tasks.push(tokio::spawn(async move {
            let mut first_error = None;
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                if rate > 0.0 {
                    tokio::time::sleep_until(t0 + Duration::from_secs_f64(n as f64 / rate)).await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                if let Err(e) = mixed(&conn, n, &back, &sent, stored.as_deref(), steady).await {
                    sent.errors.fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
            first_error
        }));
    }
    // Samples on this runtime's thread between requests would be late
    // under load: a thread of their own.
    let pid = srv.pid();
    let every = Duration::from_secs(a.every.max(1));
    let sent_s = sent.clone();
    let start = Instant::now();
    let sampler = std::thread::spawn(move || {
        let mut rows = Vec::new();
        let mut next = Duration::ZERO;
        loop {
            let now = start.elapsed();
            if now >= next {
                let rss = rss_of(pid);
                let total = sent_s.first.load(Ordering::Relaxed)
                    + sent_s.hits.load(Ordering::Relaxed)
                    + sent_s.handoffs.load(Ordering::Relaxed);
                let first = sent_s.first.load(Ordering::Relaxed);
                println!(
                    "  {:>4.0} s  RSS {:>6.1} MiB (heap {:>6.1})  requests {total}  first visits {first}",
                    now.as_secs_f64(),
                    rss.total,
                    rss.anon
                );
                let _ = std::io::stdout().flush();
                rows.push((now.as_secs_f64(), rss, total, first));
                next += every;
            }
            if now >= deadline.saturating_duration_since(start) + Duration::from_millis(500) {
                return rows;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut first_error = None;
    for t in tasks {
        if let Some(e) = t.await? {
            first_error.get_or_insert(e);
        }
    }
    let rows = sampler.join().expect("sampler");
    let disk = disk_bytes(&dir);
    drop(conns);
    srv.stop()?;
    let errors = sent.errors.load(Ordering::Relaxed);
    println!(
        "\n### Soak: {} s, {} in flight, cache_mb {cache_mb}, limit {limit_mib} MiB\n",
        a.seconds, a.in_flight
    );
    println!("| seconds | RSS MiB | heap (RssAnon) MiB | requests | first visits |");
    println!("| --- | --- | --- | --- | --- |");
    for (t, rss, total, first) in &rows {
        println!(
            "| {t:.0} | {:.1} | {:.1} | {total} | {first} |",
            rss.total, rss.anon
        );
    }
    let last_minutes: Vec<f64> = rows
        .iter()
        .filter(|r| r.0 >= a.seconds as f64 / 2.0)
        .map(|r| r.1.total)
        .collect();
    let max = rows.iter().map(|r| r.1.total).fold(0.0, f64::max);
    println!(
        "\n- sent: {} cookie hits, {} first visits, {} hand-offs, {errors} errors{}",
        sent.hits.load(Ordering::Relaxed),
        sent.first.load(Ordering::Relaxed),
        sent.handoffs.load(Ordering::Relaxed),
        first_error
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    println!(
        "- RSS max {max:.0} MiB against a limit of {limit_mib} MiB; second half: {:.0} to {:.0} MiB",
        last_minutes.iter().copied().fold(f64::INFINITY, f64::min),
        last_minutes.iter().copied().fold(0.0, f64::max),
    );
    println!("- size on disk at the end: {:.0} MiB", mib(disk));
    let about = format!(
        "{} identities stored before, {}, {}; {}",
        a.identities,
        if a.rate > 0.0 {
            format!("{} requests/s", a.rate)
        } else {
            format!("{} in flight", a.in_flight)
        },
        if a.steady {
            "6 in 10 cookie hits of stored identities, 4 first visits that never return"
        } else {
            "6 in 10 cookie hits, 3 first visits, 1 hand-off"
        },
        flags.join(" ")
    );
    write_svg(&a.svg, &rows, limit_mib as f64, cache_mb as f64, &about)?;
    println!("- plot: {}", a.svg.display());
    anyhow::ensure!(errors == 0, "{errors} requests failed");
    Ok(())
}

/// A small line plot of RSS over time, with the limit and the cache.
fn write_svg(
    path: &Path,
    rows: &[(f64, Rss, u64, u64)],
    limit: f64,
    cache: f64,
    about: &str,
) -> anyhow::Result<()> {
    let (w, h) = (640.0, 320.0);
    let (left, right, top, bottom) = (56.0, 16.0, 40.0, 40.0);
    let t_max = rows.last().map_or(1.0, |r| r.0).max(1.0);
    let y_max = (limit * 1.1).max(rows.iter().map(|r| r.1.total).fold(0.0, f64::max) * 1.1);
    let x = |t: f64| left + (w - left - right) * t / t_max;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / y_max);
    let mut s = String::new();
    use std::fmt::Write as _;
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    )?;
    writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#)?;
    writeln!(
        s,
        r#"<text x="{left}" y="16" font-size="12">sessionbridge soak: resident memory (MiB) over {t_max:.0} s of traffic</text>"#
    )?;
    writeln!(
        s,
        r##"<text x="{left}" y="30" font-size="9" fill="#555">{}</text>"##,
        about.replace('&', "&amp;").replace('<', "&lt;")
    )?;
    // Axes and grid.
    let step = if y_max > 800.0 { 200.0 } else { 50.0 };
    let mut v = 0.0;
    while v <= y_max {
        writeln!(
            s,
            r##"<line x1="{left}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e5e5e5"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{v:.0}</text>"##,
            y(v),
            w - right,
            left - 4.0,
            y(v) + 4.0
        )?;
        v += step;
    }
    let mut t = 0.0;
    let t_step = if t_max > 300.0 { 60.0 } else { 10.0 };
    while t <= t_max + 0.1 {
        writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t:.0}</text>"#,
            x(t),
            h - bottom + 14.0
        )?;
        t += t_step;
    }
    writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds</text>"#,
        left + (w - left - right) / 2.0,
        h - 8.0
    )?;
    for (value, color, label) in [
        (limit, "#c0392b", "memory limit"),
        (cache, "#7f8c8d", "cache_mb"),
    ] {
        writeln!(
            s,
            r#"<line x1="{left}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="{color}" stroke-dasharray="5,4"/><text x="{1:.1}" y="{2:.1}" text-anchor="end" fill="{color}">{label} {value:.0} MiB</text>"#,
            y(value),
            w - right,
            y(value) - 4.0
        )?;
    }
    for (pick, color, label, dy) in [
        (0usize, "#2c6fbb", "RSS", 0.0),
        (1, "#27ae60", "heap (RssAnon)", 14.0),
    ] {
        let points: Vec<String> = rows
            .iter()
            .map(|r| {
                let v = if pick == 0 { r.1.total } else { r.1.anon };
                format!("{:.1},{:.1}", x(r.0), y(v))
            })
            .collect();
        writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        )?;
        writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" fill="{color}">{label}</text>"#,
            left + 8.0,
            top + 12.0 + dy
        )?;
    }
    writeln!(s, "</svg>")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, s).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

// ------------------------------------------------------------------ startup

async fn startup(env: &Env, a: StartupArgs) -> anyhow::Result<()> {
    let dir = a
        .store
        .clone()
        .unwrap_or_else(|| env.work.join(format!("startup-{}", a.identities)));
    let marker = dir.join("POPULATED");
    let created = (sessionbridge::service::now_unix() - 86_400) as u32;
    let seen = sessionbridge::service::now_unix() - 60;
    if a.store.is_none() && !marker.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        populate(&dir, &env.keys, created, seen, 0, a.identities).await?;
        std::fs::write(&marker, a.identities.to_string())?;
    }
    if a.append > 0 {
        // Past the identities `compare` and this command write.
        let from = 1 << 33;
        populate(&dir, &env.keys, created, seen, from, from + a.append).await?;
    }
    println!(
        "  {} identities: {:.0} MiB on disk",
        a.identities,
        mib(disk_bytes(&dir))
    );
    let flags = vec!["--cache-mb".to_string(), a.cache_mb.to_string()];
    let mut rows = Vec::new();
    for i in 0..=a.restarts {
        let what = if i == 0 && a.append > 0 {
            "first start after the appended writes"
        } else if i == 0 && a.store.is_none() {
            "first start after writing the store"
        } else if i == 0 {
            "start of the store as given"
        } else {
            "restart (nothing written since the last start)"
        };
        let srv = env.start(&env.server, "startup", &dir, &flags).await?;
        let (user, sys, rchar, read_bytes) = cpu_and_io(srv.pid());
        let rss = srv.rss();
        rows.push((what, srv.ready_after, user, sys, rchar, read_bytes, rss));
        println!(
            "  {what}: SERVING after {:.2} s ({user:.1} s user, {sys:.1} s system CPU; {:.0} MiB read; RSS {:.0} MiB)",
            srv.ready_after.as_secs_f64(),
            mib(rchar),
            rss.total
        );
        srv.stop()?;
    }
    println!(
        "\n### Start to SERVING with {} identities, cache_mb {}\n",
        a.identities, a.cache_mb
    );
    println!("| start | to SERVING | CPU user | CPU system | bytes read | of them from the disk | RSS when SERVING |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (what, t, user, sys, rchar, rb, rss) in &rows {
        println!(
            "| {what} | {:.2} s | {user:.1} s | {sys:.1} s | {:.0} MiB | {:.0} MiB | {:.0} MiB |",
            t.as_secs_f64(),
            mib(*rchar),
            mib(*rb),
            rss.total
        );
    }
    if !a.keep && a.store.is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
