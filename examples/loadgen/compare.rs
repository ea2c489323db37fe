//! The whole comparison, in one process: starts sessionbridge servers
//! (embedded store in both durability modes, Redis store, a 10-thousand and
//! a many-million identity store), runs each workload side by side with its
//! baseline, and reports every ratio against its target.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use sessionbridge::keys::Keyring;
use sessionbridge::store::{ClientRecord, ClientWrite, Store};
use sessionbridge::store::{Durability, SledStore};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

use crate::run::{self, print_table, Plan, Report};
use crate::work::{self, Conn, Workload};

#[derive(clap::Args)]
pub struct Args {
    /// The sessionbridge binary [default: next to this one's directory].
    #[arg(long)]
    server: Option<PathBuf>,
    /// Working directory for data directories and logs (emptied first).
    #[arg(long, default_value = "target/bench-work")]
    work: PathBuf,
    /// PostgreSQL connection string for the SQL bridge baseline.
    #[arg(long)]
    postgres: Option<String>,
    /// Redis URL for the Redis baselines.
    #[arg(long)]
    redis: Option<String>,
    /// Seconds each side-by-side comparison measures (split in rounds)
    /// [default: 10; 3 with --quick].
    #[arg(long)]
    duration: Option<f64>,
    /// Alternating rounds per comparison.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Rows of the SQL bridge table in its large run: the seed's design
    /// never deletes, so a real table holds every hand-off ever made
    /// (0 skips the large run).
    #[arg(long, default_value_t = 10_000_000)]
    sql_rows: u64,
    /// Identities in the large store.
    #[arg(long, default_value_t = 10_000_000)]
    identities: u64,
    /// Identities in the store whose start-up time is measured.
    #[arg(long, default_value_t = 1_000_000)]
    startup_identities: u64,
    /// Identities in the small store the large one is compared with.
    #[arg(long, default_value_t = 10_000)]
    small_identities: u64,
    /// Runs of the comparison of the large store with the small one, each
    /// reported with its own p99 ratio.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// Page cache (MiB) of the second run on the large store; the first
    /// runs with the server's default.
    #[arg(long, default_value_t = 8192)]
    big_cache_mb: u64,
    /// Write the full results as JSON here.
    #[arg(long, default_value = "target/bench-report.json")]
    out: PathBuf,
    /// The regression guard: only the cookie hit against the floor (sled,
    /// and Redis with --redis) and the bridge against the floor, about a
    /// minute in all; no PostgreSQL, no large store. `--duration` defaults
    /// to 3 s per comparison then. Targets are printed, never enforced.
    #[arg(long)]
    quick: bool,
    /// Only the scale comparison (start-up, then the large store against
    /// the small one, `--repeat` times): no PostgreSQL; the Redis store is
    /// not measured.
    #[arg(long, conflicts_with = "quick")]
    scale: bool,
}

/// One target of the performance issue, with its measured value.
#[derive(Debug, Serialize)]
struct Target {
    what: String,
    measured: f64,
    target: String,
    met: bool,
}

#[derive(Default, Serialize)]
struct Results {
    machine: Machine,
    sections: Vec<(String, Vec<Report>)>,
    facts: Vec<(String, String)>,
    targets: Vec<Target>,
}

#[derive(Default, Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    memory: String,
    kernel: String,
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|s| s.trim_start_matches([' ', '\t', ':']).to_string())
                .unwrap_or_default(),
            memory: meminfo.lines().next().unwrap_or_default().to_string(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
        }
    }
}

impl Results {
    fn section(&mut self, title: &str, reports: Vec<Report>) -> Vec<Report> {
        print_table(title, &reports);
        for r in &reports {
            if r.errors > 0 {
                println!(
                    "  !! {} had {} errors: {}",
                    r.workload,
                    r.errors,
                    r.first_error.clone().unwrap_or_default()
                );
            }
        }
        self.sections.push((title.to_string(), reports.clone()));
        reports
    }

    /// Runs workloads side by side and records them as a section;
    /// `labels` say which target each ran against (empty: none).
    async fn versus(
        &mut self,
        title: &str,
        items: &[(Arc<Workload>, Vec<Conn>)],
        plan: Plan,
        rounds: u32,
        labels: &[String],
    ) -> Vec<Report> {
        let mut reports = run::side_by_side(items, plan, rounds).await;
        if !labels.is_empty() {
            reports = reports
                .into_iter()
                .zip(labels)
                .map(|(r, l)| r.labelled(l))
                .collect();
        }
        self.section(title, reports)
    }

    fn fact(&mut self, what: &str, value: String) {
        println!("  {what}: {value}");
        self.facts.push((what.to_string(), value));
    }

    /// A ratio that should be at most `max` (lower is better).
    fn at_most(&mut self, what: &str, measured: f64, max: f64) {
        self.targets.push(Target {
            what: what.to_string(),
            measured,
            target: format!("≤ {max}x"),
            met: measured <= max,
        });
    }

    /// A ratio that should be at least `min`.
    fn at_least(&mut self, what: &str, measured: f64, min: f64) {
        self.targets.push(Target {
            what: what.to_string(),
            measured,
            target: format!("≥ {min}x"),
            met: measured >= min,
        });
    }
}

/// A server process, killed when dropped.
pub struct Proc {
    child: Child,
    pub addr: String,
    /// From spawn until health reported SERVING.
    pub ready_after: Duration,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// `n` connections to this server, marked with its process id.
    async fn conns(&self, n: usize) -> anyhow::Result<Vec<Conn>> {
        Ok(work::served_by(
            work::grpc_conns(&self.addr, n).await?,
            self.child.id(),
        ))
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

struct Env {
    server: PathBuf,
    keys_path: PathBuf,
    work: PathBuf,
}

impl Env {
    /// Starts a server on `data_dir` with extra flags and waits for SERVING.
    async fn start(&self, name: &str, data_dir: &Path, extra: &[&str]) -> anyhow::Result<Proc> {
        let log = std::fs::File::create(self.work.join(format!("{name}.log")))?;
        let started = Instant::now();
        let mut child = Command::new(&self.server)
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
            .with_context(|| format!("start {}", self.server.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("sessionbridge listening on ") else {
            let _ = child.kill();
            bail!(
                "{name} did not start (see {}): {line:?}",
                self.work.join(format!("{name}.log")).display()
            );
        };
        let mut proc = Proc {
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
                started.elapsed() < Duration::from_secs(600),
                "{name} never SERVING"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        proc.ready_after = started.elapsed();
        Ok(proc)
    }
}

/// Creates the seed document's bridge table with `rows` earlier hand-offs,
/// then its index, and says what the rows are. The seed's design never
/// deletes a row, so the table holds every hand-off ever made: the rows are
/// spread over the last 90 days (all older than the one-minute window the
/// query asks for), over three source sites, and share 100,000 User-Agent
/// strings with the visitors the benchmark sends, so each lookup descends
/// an index that also holds that browser's past hand-offs.
pub async fn prepare_sql(conn: &Conn, rows: u64) -> anyhow::Result<String> {
    const DISTINCT_AGENTS: i64 = 100_000;
    const SPREAD_SECS: i64 = 90 * 86_400;
    let pg = conn.pg.as_ref().context("no PostgreSQL connection")?;
    let now = sessionbridge::service::now_unix();
    pg.batch_execute(
        "DROP TABLE IF EXISTS session_bridge;
         CREATE TABLE session_bridge (
             session_id    text   NOT NULL,
             source_domain text   NOT NULL,
             created_at    bigint NOT NULL,
             user_agent    text   NOT NULL);",
    )
    .await?;
    if rows > 0 {
        pg.execute(
            "INSERT INTO session_bridge
             SELECT 'seed' || g,
                    (ARRAY[$5::text, 'blog.example.com', 'example.org'])[1 + g % 3],
                    $1::bigint - 3600 - (g * 7919) % $4::bigint,
                    $2::text || ' Bench/' || (g % $3::bigint)
             FROM generate_series(1, $6::bigint) AS g",
            &[
                &now,
                &work::UA,
                &DISTINCT_AGENTS,
                &SPREAD_SECS,
                &work::SHOP,
                &(rows as i64),
            ],
        )
        .await?;
    }
    pg.batch_execute(
        "CREATE INDEX session_bridge_lookup
             ON session_bridge (source_domain, user_agent, created_at);
         ANALYZE session_bridge;",
    )
    .await?;
    let size: i64 = pg
        .query_one("SELECT pg_total_relation_size('session_bridge')", &[])
        .await?
        .get(0);
    Ok(format!(
        "{rows} earlier hand-offs over 90 days, {DISTINCT_AGENTS} User-Agents, {:.0} MiB with its index",
        size as f64 / 1048576.0
    ))
}

/// The key a bare Redis GET reads: a 100-byte value.
pub async fn prepare_redis(conn: &Conn) -> anyhow::Result<()> {
    let mut r = conn.redis.clone().context("no Redis connection")?;
    redis::cmd("SET")
        .arg("bench:key")
        .arg(vec![b'x'; 100])
        .query_async::<()>(&mut r)
        .await?;
    Ok(())
}

/// Writes identities `from..to` straight into a sled data directory, as the
/// server would have stored them on a visit at `seen` (see
/// `work::stored_identity`).
pub async fn populate(
    dir: &Path,
    keys: &Keyring,
    created: u32,
    seen: i64,
    from: u64,
    to: u64,
) -> anyhow::Result<()> {
    let store = SledStore::open(
        dir,
        Durability::Interval,
        Duration::from_secs(3600),
        &keys.store_seal,
    )?;
    let now = sessionbridge::service::now_unix();
    let started = Instant::now();
    // One writer thread per core, each with a runtime of its own: the
    // load generator's runtime has a single thread.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = store.clone();
                scope.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().build()?;
                    rt.block_on(async {
                        let mut i = from + t;
                        while i < to {
                            let record = ClientRecord {
                                identity: work::stored_identity(i, created, seen),
                                user_keys: Vec::new(),
                                adopted: false,
                                first_visit: false,
                            };
                            store
                                .put_client(ClientWrite {
                                    record: &record,
                                    link: &[],
                                    expires_at: now + 400 * 86_400,
                                    history: 10,
                                })
                                .await?;
                            i += threads;
                        }
                        anyhow::Ok(())
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("writer thread panicked"))
    })?;
    store.flush().await?;
    println!(
        "  stored identities {from}..{to} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Bytes the files under `dir` occupy on disk.
pub fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::INFINITY
    }
}

pub async fn main(a: Args) -> anyhow::Result<()> {
    let server = match a.server.clone() {
        Some(s) => s,
        None => {
            let me = std::env::current_exe()?;
            // target/<profile>/examples/loadgen -> target/<profile>/sessionbridge
            me.parent()
                .and_then(Path::parent)
                .map(|p| p.join("sessionbridge"))
                .context("cannot find the server binary; pass --server")?
        }
    };
    anyhow::ensure!(server.exists(), "no server binary at {}", server.display());
    anyhow::ensure!(a.rounds >= 1, "--rounds must be at least 1");
    let _ = std::fs::remove_dir_all(&a.work);
    std::fs::create_dir_all(&a.work)?;
    let keys_path = a.work.join("keys.json");
    sessionbridge::keys::generate(&keys_path, "bench")?;
    let keys = Arc::new(Keyring::load(&keys_path)?);
    let env = Env {
        server,
        keys_path,
        work: a.work.clone(),
    };
    let mut res = Results {
        machine: Machine::read(),
        ..Default::default()
    };
    println!(
        "# sessionbridge comparison: {} CPUs ({}), {}",
        res.machine.cpus, res.machine.cpu_model, res.machine.memory
    );
    let secs = Duration::from_secs_f64(a.duration.unwrap_or(if a.quick { 3.0 } else { 10.0 }));
    let warm = Duration::from_secs(1);
    let one = |in_flight| Plan {
        in_flight,
        duration: secs,
        requests: None,
        warmup: warm,
    };

    if a.scale {
        scale(&env, &a, &keys, &mut res, one(8)).await?;
        return finish(res, &a.out);
    }

    // 1. Cookie hit against the floor, on the embedded store.
    let main_srv = env.start("main", &a.work.join("main"), &[]).await?;
    let c1 = main_srv.conns(1).await?;
    let headers = work::captured_cookie_headers(&c1[0], 1000).await?;
    let health = Arc::new(Workload::Health);
    let cookie = Arc::new(Workload::ResolveCookie { headers });
    let r = res
        .versus(
            "Cookie hit against the floor, 1 connection, 1 in flight",
            &[(health.clone(), c1.clone()), (cookie.clone(), c1.clone())],
            one(1),
            a.rounds,
            &[],
        )
        .await;
    res.at_most(
        "cookie-hit ResolveSession p50 / health p50 (1 in flight)",
        ratio(r[1].p50_us, r[0].p50_us),
        1.3,
    );
    res.at_most(
        "cookie-hit ResolveSession p99 / health p99 (1 in flight)",
        ratio(r[1].p99_us, r[0].p99_us),
        1.3,
    );
    let r = res
        .versus(
            "Cookie hit against the floor, 1 connection, 64 in flight",
            &[(health.clone(), c1.clone()), (cookie.clone(), c1.clone())],
            one(64),
            a.rounds,
            &[],
        )
        .await;
    res.at_least(
        "cookie-hit ResolveSession req/s / health req/s (64 in flight)",
        ratio(r[1].per_second, r[0].per_second),
        0.75,
    );
    if let (Some(cookie), Some(floor)) = (r[1].server_cpu_us_per_call, r[0].server_cpu_us_per_call)
    {
        res.fact(
            "server CPU per cookie hit / per health check (64 in flight)",
            format!(
                "{:.2}x ({cookie:.1} µs against {floor:.1} µs)",
                ratio(cookie, floor)
            ),
        );
    }

    // 2. The referrer bridge against the seed's SQL bridge.
    let bridge = Arc::new(Workload::Bridge);
    if a.quick {
        let r = res
            .versus(
                "Referrer bridge against the floor, 1 connection, 1 in flight",
                &[(health.clone(), c1.clone()), (bridge.clone(), c1.clone())],
                one(1),
                a.rounds,
                &[],
            )
            .await;
        res.fact(
            "bridge resolve p50 / health p50 (1 in flight)",
            format!("{:.2}x", ratio(r[1].p50_us, r[0].p50_us)),
        );
    } else if let Some(pg) = &a.postgres {
        let pgc = work::pg_conns(pg, 1).await?;
        let pg16 = work::pg_conns(pg, 16).await?;
        let sql = Arc::new(Workload::SqlBridge);
        let mut sizes = vec![200_000];
        if a.sql_rows > 0 {
            sizes.push(a.sql_rows);
        }
        for rows in sizes {
            let started = Instant::now();
            let table = prepare_sql(&pgc[0], rows).await?;
            res.fact(
                &format!("SQL bridge table, {rows} rows"),
                format!(
                    "{table}; index (source_domain, user_agent, created_at); \
                     filled in {:.0} s",
                    started.elapsed().as_secs_f64()
                ),
            );
            let r = res
                .versus(
                    &format!(
                        "Referrer bridge: sessionbridge against the SQL bridge on {rows} rows, \
                         1 connection, 1 in flight"
                    ),
                    &[(bridge.clone(), c1.clone()), (sql.clone(), pgc.clone())],
                    one(1),
                    a.rounds,
                    &[],
                )
                .await;
            let what =
                format!("SQL bridge p50 / sessionbridge bridge p50 ({rows} rows, 1 in flight)");
            let p50 = ratio(r[1].p50_us, r[0].p50_us);
            let r = res
                .versus(
                    &format!(
                        "Referrer bridge: sessionbridge against the SQL bridge on {rows} rows, \
                         16 in flight"
                    ),
                    &[(bridge.clone(), c1.clone()), (sql.clone(), pg16.clone())],
                    one(16),
                    a.rounds,
                    &[],
                )
                .await;
            let what16 = format!("bridge req/s, sessionbridge / SQL ({rows} rows, 16 in flight)");
            let tput = ratio(r[0].per_second, r[1].per_second);
            if rows == 200_000 {
                res.fact(&what, format!("{p50:.2}x"));
                res.fact(&what16, format!("{tput:.2}x"));
            } else {
                res.at_least(&what, p50, 2.0);
                res.at_least(&what16, tput, 2.0);
            }
        }
    } else {
        println!("\n(no --postgres: SQL bridge baseline skipped)");
    }

    // 3. Redis: a bare GET, and the service on the Redis store.
    if let Some(url) = &a.redis {
        let rc = work::redis_conns(url, 1).await?;
        prepare_redis(&rc[0]).await?;
        let srv = env
            .start(
                "redis-store",
                &a.work.join("unused"),
                &["--store", "redis", "--redis-urls", url],
            )
            .await?;
        let sc = srv.conns(1).await?;
        let headers = work::captured_cookie_headers(&sc[0], 1000).await?;
        let r = res
            .versus(
                "Redis: bare GET, and sessionbridge on the Redis store, 1 connection, 1 in flight",
                &[
                    (Arc::new(Workload::RedisGet), rc),
                    (health.clone(), sc.clone()),
                    (Arc::new(Workload::ResolveCookie { headers }), sc.clone()),
                    (bridge.clone(), sc),
                ],
                one(1),
                a.rounds,
                &[],
            )
            .await;
        res.at_most(
            "Redis store: cookie-hit p50 / health p50 (1 in flight)",
            ratio(r[2].p50_us, r[1].p50_us),
            1.5,
        );
    } else {
        println!("\n(no --redis: Redis baselines skipped)");
    }
    drop(main_srv);
    if a.quick {
        return finish(res, &a.out);
    }

    // 4. Durable writes against interval writes.
    let interval = env
        .start(
            "interval",
            &a.work.join("interval"),
            &["--durability", "interval"],
        )
        .await?;
    let sync = env
        .start("sync", &a.work.join("sync"), &["--durability", "sync"])
        .await?;
    let ic = work::grpc_conns(&interval.addr, 1).await?;
    let sc = work::grpc_conns(&sync.addr, 1).await?;
    let new = Arc::new(Workload::ResolveNew);
    for in_flight in [1, 8, 64] {
        let title = format!(
            "New visitors (one record written each): interval flush against durable, \
             {in_flight} in flight"
        );
        let items = [(new.clone(), ic.clone()), (new.clone(), sc.clone())];
        let labels = ["interval".to_string(), "durable".to_string()];
        let r = res
            .versus(&title, &items, one(in_flight), a.rounds, &labels)
            .await;
        let what = format!("durable writes/s / interval writes/s ({in_flight} in flight)");
        if in_flight == 64 {
            res.at_least(&what, ratio(r[1].per_second, r[0].per_second), 0.5);
        } else {
            res.fact(
                &what,
                format!("{:.2}x", ratio(r[1].per_second, r[0].per_second)),
            );
        }
    }
    drop((interval, sync));

    scale(&env, &a, &keys, &mut res, one(8)).await?;
    finish(res, &a.out)
}

/// Flags for both servers of the scale comparison where a cookie hit only
/// reads: sessions last a day and a record is rewritten only once it is
/// 2.4 hours old, so the hits, on identities `populate` stored minutes
/// before, read the store and write nothing, on both stores alike.
const READS_ONLY: [&str; 4] = [
    "--session-timeout-secs",
    "86400",
    "--touch-write-secs",
    "8640",
];

/// Section 5, scale: start-up with many records, then the large store
/// against the small one, with hits that only read and with hits that each
/// write.
///
/// Both sides must do the same work per hit. With the defaults (a record is
/// rewritten once it is a minute old) nearly every hit on ten million
/// identities is that identity's first in a minute and writes, while the
/// hits on ten thousand mostly read: that compares writes with reads, not
/// sizes. So the store size is compared twice, each time with the same
/// write share on both sides: reads only (a visitor's page views within a
/// session, the common case), and a write on every hit (`--touch-write-secs
/// 0`: the first hit of each session, or a server told to write always).
async fn scale(
    env: &Env,
    a: &Args,
    keys: &Arc<Keyring>,
    res: &mut Results,
    plan: Plan,
) -> anyhow::Result<()> {
    let created = (sessionbridge::service::now_unix() - 86_400) as u32;
    let seen = sessionbridge::service::now_unix() - 60;
    let small_dir = a.work.join("small");
    let big_dir = a.work.join("big");
    populate(&small_dir, keys, created, seen, 0, a.small_identities).await?;
    let startup_n = a.startup_identities.min(a.identities);
    populate(&big_dir, keys, created, seen, 0, startup_n).await?;
    {
        let mut times = Vec::new();
        for _ in 0..3 {
            let p = env.start("startup", &big_dir, &[]).await?;
            times.push(p.ready_after.as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        res.fact(
            &format!("start to SERVING with {startup_n} identities (median of 3)"),
            format!("{:.2} s", times[1]),
        );
    }
    populate(&big_dir, keys, created, seen, startup_n, a.identities).await?;
    let mut small = env.start("small", &small_dir, &READS_ONLY).await?;
    let mut big = env.start("big", &big_dir, &READS_ONLY).await?;
    res.fact(
        &format!("start to SERVING with {} identities", a.identities),
        format!("{:.2} s", big.ready_after.as_secs_f64()),
    );
    let stored = |count| {
        Arc::new(Workload::ResolveStored {
            keys: Arc::clone(keys),
            count,
            created,
            seen,
        })
    };
    let labels = [
        format!("{} stored", a.small_identities),
        format!("{} stored", a.identities),
    ];
    for (mode, flags) in [
        ("reads only", &READS_ONLY[..]),
        (
            "a write on every hit",
            &["--session-timeout-secs", "86400", "--touch-write-secs", "0"][..],
        ),
    ] {
        if mode != "reads only" {
            drop((big, small));
            small = env.start("small-writes", &small_dir, flags).await?;
            big = env.start("big-writes", &big_dir, flags).await?;
        }
        let small_c = small.conns(1).await?;
        let big_c = big.conns(1).await?;
        for run in 1..=a.repeat.max(1) {
            let nth = match a.repeat {
                0 | 1 => String::new(),
                n => format!(", run {run} of {n}"),
            };
            let r = res
                .versus(
                    &format!(
                        "Cookie hits on random stored identities, {mode}: {} against {} identities, 8 in flight{nth}",
                        a.identities, a.small_identities
                    ),
                    &[
                        (stored(a.small_identities), small_c.clone()),
                        (stored(a.identities), big_c.clone()),
                    ],
                    plan,
                    a.rounds,
                    &labels,
                )
                .await;
            res.at_most(
                &format!(
                    "p99 with {} identities / p99 with {}, {mode}{nth}",
                    a.identities, a.small_identities
                ),
                ratio(r[1].p99_us, r[0].p99_us),
                1.5,
            );
        }
    }
    let bytes = disk_bytes(&big_dir);
    res.fact(
        &format!("disk with {} identities", a.identities),
        format!(
            "{:.1} MiB, {:.0} bytes per identity",
            bytes as f64 / 1048576.0,
            bytes as f64 / a.identities as f64
        ),
    );
    res.fact(
        "resident memory after the run",
        format!(
            "{:.0} MiB with {} identities, {:.0} MiB with {}",
            big.rss_mib(),
            a.identities,
            small.rss_mib(),
            a.small_identities
        ),
    );
    drop((big, small));

    // Reads only again, with a page cache that holds the whole large store.
    let small = env.start("small", &small_dir, &READS_ONLY).await?;
    let cache = a.big_cache_mb.to_string();
    let mut flags = READS_ONLY.to_vec();
    flags.extend(["--cache-mb", &cache]);
    let big = env.start("big-cache", &big_dir, &flags).await?;
    let small_c = small.conns(1).await?;
    let big_c = big.conns(1).await?;
    let r = res
        .versus(
            &format!(
                "The same, reads only, with a {} MiB page cache on the large store",
                a.big_cache_mb
            ),
            &[
                (stored(a.small_identities), small_c),
                (stored(a.identities), big_c),
            ],
            plan,
            a.rounds,
            &[
                format!("{} stored", a.small_identities),
                format!("{} stored, {} MiB cache", a.identities, a.big_cache_mb),
            ],
        )
        .await;
    res.fact(
        &format!(
            "p99 with {} identities and a {} MiB cache / p99 with {}, reads only",
            a.identities, a.big_cache_mb, a.small_identities
        ),
        format!("{:.2}x", ratio(r[1].p99_us, r[0].p99_us)),
    );
    res.fact(
        &format!("resident memory with a {} MiB cache", a.big_cache_mb),
        format!("{:.0} MiB", big.rss_mib()),
    );
    Ok(())
}

/// Prints the targets, writes the JSON report, and fails only when a
/// request got a wrong answer or an error: a missed target is a number to
/// read, never a failure (the machine is shared and noisy).
fn finish(res: Results, out: &Path) -> anyhow::Result<()> {
    println!("\n## Targets\n");
    println!(
        "| {:<70} | {:>9} | {:>8} | {:<4} |",
        "ratio", "measured", "target", "met"
    );
    println!("|{:-<72}|{:->11}|{:->10}|{:-<6}|", "", "", "", "");
    for t in &res.targets {
        println!(
            "| {:<70} | {:>8.2}x | {:>8} | {:<4} |",
            t.what,
            t.measured,
            t.target,
            if t.met { "yes" } else { "NO" }
        );
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&res)? + "\n")?;
    println!("\nfull results: {}", out.display());
    let failed: u64 = res
        .sections
        .iter()
        .flat_map(|(_, r)| r)
        .map(|r| r.errors)
        .sum();
    anyhow::ensure!(
        failed == 0,
        "{failed} requests failed; see the tables above"
    );
    Ok(())
}
