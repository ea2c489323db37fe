//! sessionbridge's load generator.
//!
//! `loadgen run` drives one workload against a running server (or Redis, or
//! PostgreSQL) and prints throughput and latency percentiles as a table and
//! as JSON. `loadgen compare` starts everything itself and measures the
//! service against its baselines side by side; `benches/compare` is the
//! one command that installs the baselines and runs it. See
//! docs/performance.md.

mod compare;
mod memory;
mod run;
mod work;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use run::Plan;
use work::Workload;

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator for sessionbridge")]
struct Cli {
    /// Threads of the load generator's own runtime. One thread leaves the
    /// other cores to the server and costs fewer wake-ups per request.
    #[arg(long, global = true, default_value_t = 1)]
    client_threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One workload against a running target.
    Run(RunArgs),
    /// The whole comparison: servers, baselines, ratios against targets.
    Compare(compare::Args),
    /// Memory and scale: retention, memory model, soak, start-up time.
    Memory(memory::Args),
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// grpc.health.v1 Check (the floor)
    Health,
    /// ResolveSession with a valid own cookie
    ResolveCookie,
    /// ResolveSession for first visits (writes)
    ResolveNew,
    /// RecordHandoff, then a parameterless arrival via the referrer bridge
    Bridge,
    /// The seed document's SQL bridge on PostgreSQL (needs --postgres)
    SqlBridge,
    /// GET on Redis (needs --redis)
    RedisGet,
}

#[derive(clap::Args)]
struct RunArgs {
    /// gRPC address of the sessionbridge server (host:port).
    #[arg(long, default_value = "127.0.0.1:50051")]
    target: String,
    #[arg(long, value_enum)]
    workload: Kind,
    /// Separate connections (HTTP/2, Redis or PostgreSQL).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Requests in flight at once, spread over the connections.
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Seconds to measure (ignored with --requests).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many requests instead.
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds of warm-up, not counted.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Distinct visitors whose cookies resolve-cookie cycles through.
    #[arg(long, default_value_t = 1000)]
    visitors: usize,
    /// PostgreSQL connection string for sql-bridge.
    #[arg(long)]
    postgres: Option<String>,
    /// Redis URL for redis-get.
    #[arg(long)]
    redis: Option<String>,
    /// Also write the report as JSON to this file ("-" for stdout only).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The server's allocator here too: the load generator shares the cores
/// with the server, so its own allocation cost would count against every
/// workload it drives.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = if cli.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.client_threads)
            .enable_all()
            .build()?
    };
    match cli.command {
        Command::Run(args) => rt.block_on(run_one(args)),
        Command::Compare(args) => rt.block_on(compare::main(args)),
        Command::Memory(args) => rt.block_on(memory::main(args)),
    }
}

async fn run_one(a: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.in_flight >= 1, "--in-flight must be at least 1");
    anyhow::ensure!(a.connections >= 1, "--connections must be at least 1");
    let conns = match a.workload {
        Kind::SqlBridge => {
            let pg = a
                .postgres
                .as_deref()
                .context("sql-bridge needs --postgres")?;
            let conns = work::pg_conns(pg, a.connections).await?;
            compare::prepare_sql(&conns[0], 0).await?;
            conns
        }
        Kind::RedisGet => {
            let url = a.redis.as_deref().context("redis-get needs --redis")?;
            let conns = work::redis_conns(url, a.connections).await?;
            compare::prepare_redis(&conns[0]).await?;
            conns
        }
        _ => work::grpc_conns(&a.target, a.connections).await?,
    };
    let workload = Arc::new(match a.workload {
        Kind::Health => Workload::Health,
        Kind::ResolveCookie => Workload::ResolveCookie {
            headers: work::captured_cookie_headers(&conns[0], a.visitors.max(1)).await?,
        },
        Kind::ResolveNew => Workload::ResolveNew,
        Kind::Bridge => Workload::Bridge,
        Kind::SqlBridge => Workload::SqlBridge,
        Kind::RedisGet => Workload::RedisGet,
    });
    let plan = Plan {
        in_flight: a.in_flight,
        duration: Duration::from_secs_f64(a.duration),
        requests: a.requests,
        warmup: Duration::from_secs_f64(a.warmup),
    };
    let report = run::run(&workload, &conns, plan).await;
    run::print_table(
        &format!("{} against {}", report.workload, a.target),
        std::slice::from_ref(&report),
    );
    let json = serde_json::to_string_pretty(&report)?;
    match &a.json {
        Some(p) if p.as_os_str() == "-" => println!("{json}"),
        Some(p) => {
            std::fs::write(p, json + "\n").with_context(|| format!("write {}", p.display()))?
        }
        None => println!("\n{json}"),
    }
    anyhow::ensure!(
        report.errors == 0,
        "{} requests failed; first: {}",
        report.errors,
        report.first_error.unwrap_or_default()
    );
    Ok(())
}
