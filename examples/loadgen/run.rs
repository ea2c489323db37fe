//! The closed-loop runner: `in_flight` tasks spread over the connections,
//! each issuing one request after the other, latencies in HDR histograms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::work::{Conn, Workload};

/// How long or how much to run.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub in_flight: usize,
    pub duration: Duration,
    /// When set, stop after this many requests instead of after `duration`.
    pub requests: Option<u64>,
    pub warmup: Duration,
}

/// What one workload did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub workload: String,
    pub connections: usize,
    pub in_flight: usize,
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// CPU time (user + system) the server process spent during the run,
    /// when the connections name it, per answered call.
    pub server_cpu_us_per_call: Option<f64>,
    /// CPU time of this load generator per answered call.
    pub client_cpu_us_per_call: f64,
    server_cpu_secs: Option<f64>,
    client_cpu_secs: f64,
    #[serde(skip)]
    hist: Option<Histogram<u64>>,
}

fn new_hist() -> Histogram<u64> {
    // 1 ns .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

impl Report {
    fn from_parts(
        workload: &str,
        connections: usize,
        in_flight: usize,
        hist: Histogram<u64>,
        errors: u64,
        first_error: Option<String>,
        elapsed: Duration,
    ) -> Report {
        let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
        let seconds = elapsed.as_secs_f64();
        Report {
            workload: workload.to_string(),
            connections,
            in_flight,
            requests: hist.len(),
            errors,
            first_error,
            seconds,
            per_second: if seconds > 0.0 {
                hist.len() as f64 / seconds
            } else {
                0.0
            },
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: hist.max() as f64 / 1000.0,
            server_cpu_us_per_call: None,
            client_cpu_us_per_call: 0.0,
            server_cpu_secs: None,
            client_cpu_secs: 0.0,
            hist: Some(hist),
        }
    }

    fn with_cpu(mut self, server: Option<f64>, client: f64) -> Report {
        let calls = (self.requests.max(1)) as f64;
        self.server_cpu_secs = server;
        self.client_cpu_secs = client;
        self.server_cpu_us_per_call = server.map(|s| s * 1e6 / calls);
        self.client_cpu_us_per_call = client * 1e6 / calls;
        self
    }

    /// Names the report after the target it ran against too.
    pub fn labelled(mut self, label: &str) -> Report {
        self.workload = format!("{} [{label}]", self.workload);
        self
    }

    /// Adds another run of the same workload (side-by-side rounds).
    pub fn merge(self, other: Report) -> Report {
        let server = match (self.server_cpu_secs, other.server_cpu_secs) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        let client = self.client_cpu_secs + other.client_cpu_secs;
        let mut hist = self.hist.unwrap_or_else(new_hist);
        if let Some(h) = &other.hist {
            hist.add(h).expect("same histogram bounds");
        }
        Report::from_parts(
            &self.workload,
            self.connections,
            self.in_flight,
            hist,
            self.errors + other.errors,
            self.first_error.or(other.first_error),
            Duration::from_secs_f64(self.seconds + other.seconds),
        )
        .with_cpu(server, client)
    }
}

/// Runs `workload` against `conns` as planned; a warm-up run first, not
/// counted.
pub async fn run(workload: &Arc<Workload>, conns: &[Conn], plan: Plan) -> Report {
    if !plan.warmup.is_zero() {
        let warm = Plan {
            duration: plan.warmup,
            requests: None,
            warmup: Duration::ZERO,
            ..plan
        };
        let _ = run_once(workload, conns, warm).await;
    }
    run_once(workload, conns, plan).await
}

/// CPU seconds (user + system, all threads) of process `pid`, or of this
/// process; None when /proc cannot tell.
fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf reads a constant of the running system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

async fn run_once(workload: &Arc<Workload>, conns: &[Conn], plan: Plan) -> Report {
    let server_pid = conns.first().and_then(|c| c.server_pid);
    let server_before = server_pid.and_then(|p| cpu_secs(Some(p)));
    let client_before = cpu_secs(None).unwrap_or_default();
    let budget = Arc::new(AtomicU64::new(plan.requests.unwrap_or(u64::MAX)));
    let seq = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = plan.requests.is_none().then(|| start + plan.duration);
    let mut tasks = Vec::with_capacity(plan.in_flight);
    for t in 0..plan.in_flight.max(1) {
        let conn = conns[t % conns.len()].clone();
        let workload = Arc::clone(workload);
        let budget = Arc::clone(&budget);
        let seq = Arc::clone(&seq);
        tasks.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let mut errors = 0u64;
            let mut first_error = None;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if budget
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| b.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                let n = seq.fetch_add(1, Ordering::Relaxed);
                match workload.one(&conn, n).await {
                    Ok(latency) => {
                        hist.saturating_record(latency.as_nanos().max(1) as u64);
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (hist, errors, first_error)
        }));
    }
    let mut hist = new_hist();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (h, e, f) = t.await.expect("load task panicked");
        hist.add(&h).expect("same histogram bounds");
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let server = server_before
        .zip(server_pid.and_then(|p| cpu_secs(Some(p))))
        .map(|(a, b)| b - a);
    let client = cpu_secs(None).unwrap_or_default() - client_before;
    Report::from_parts(
        workload.name(),
        conns.len(),
        plan.in_flight,
        hist,
        errors,
        first_error,
        start.elapsed(),
    )
    .with_cpu(server, client)
}

/// Runs several workloads side by side: `rounds` alternating slices of
/// `plan.duration / rounds` each, so that a noisy neighbour hurts them all
/// alike. Returns one merged report per workload, in order.
pub async fn side_by_side(
    items: &[(Arc<Workload>, Vec<Conn>)],
    plan: Plan,
    rounds: u32,
) -> Vec<Report> {
    let slice = Plan {
        duration: plan.duration / rounds.max(1),
        warmup: Duration::ZERO,
        ..plan
    };
    let mut out: Vec<Option<Report>> = vec![None; items.len()];
    for (w, c) in items {
        if !plan.warmup.is_zero() {
            let warm = Plan {
                duration: plan.warmup,
                warmup: Duration::ZERO,
                requests: None,
                ..plan
            };
            let _ = run_once(w, c, warm).await;
        }
    }
    for _ in 0..rounds.max(1) {
        for (i, (w, c)) in items.iter().enumerate() {
            let r = run_once(w, c, slice).await;
            out[i] = Some(match out[i].take() {
                None => r,
                Some(prev) => prev.merge(r),
            });
        }
    }
    out.into_iter().map(|r| r.expect("ran")).collect()
}

/// Prints reports as a fixed-width table.
pub fn print_table(title: &str, reports: &[Report]) {
    println!("\n## {title}\n");
    println!(
        "| {:<34} | {:>5} | {:>5} | {:>9} | {:>6} | {:>10} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} |",
        "workload",
        "conns",
        "infl",
        "requests",
        "errors",
        "req/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "srv CPU",
        "cli CPU"
    );
    println!(
        "|{:-<36}|{:->7}|{:->7}|{:->11}|{:->8}|{:->12}|{:->10}|{:->10}|{:->10}|{:->10}|{:->10}|{:->10}|",
        "", "", "", "", "", "", "", "", "", "", "", ""
    );
    for r in reports {
        println!(
            "| {:<34} | {:>5} | {:>5} | {:>9} | {:>6} | {:>10.0} | {:>8.1} | {:>8.1} | {:>8.1} | {:>8.1} | {:>8} | {:>8.1} |",
            r.workload,
            r.connections,
            r.in_flight,
            r.requests,
            r.errors,
            r.per_second,
            r.p50_us,
            r.p90_us,
            r.p99_us,
            r.p999_us,
            r.server_cpu_us_per_call
                .map_or("-".to_string(), |c| format!("{c:.1}")),
            r.client_cpu_us_per_call
        );
        if let Some(e) = &r.first_error {
            println!("  first error of {}: {e}", r.workload);
        }
    }
    println!(
        "\n(srv CPU, cli CPU: CPU time in µs per answered call of the server process, all \
         threads, and of this load generator; \"-\" where the server is not ours)"
    );
}
