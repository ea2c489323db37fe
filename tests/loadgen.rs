//! A smoke run of the load generator (examples/loadgen) against a real
//! server: a few hundred requests per workload, every answer checked by the
//! generator, the JSON report read back. Numbers are not judged here; the
//! comparison lives in `benches/compare`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Server;

/// `cargo test` builds the examples next to the test binaries' profile.
fn loadgen() -> PathBuf {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_sessionbridge"));
    let path = server
        .parent()
        .expect("profile directory")
        .join("examples")
        .join("loadgen");
    assert!(
        path.exists(),
        "{} missing: cargo test builds examples unless told not to",
        path.display()
    );
    path
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(loadgen())
        .args(args)
        .output()
        .expect("run loadgen");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn load_generator_smoke_run() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--allowed-domains", "example.com,example.net"],
    );
    for (workload, requests, in_flight) in [
        ("health", 300, 4),
        ("resolve-cookie", 300, 4),
        ("resolve-new", 200, 8),
        ("bridge", 100, 2),
    ] {
        let json = dir.path().join(format!("{workload}.json"));
        let (ok, stdout, stderr) = run(&[
            "run",
            "--target",
            &server.addr,
            "--workload",
            workload,
            "--requests",
            &requests.to_string(),
            "--in-flight",
            &in_flight.to_string(),
            "--visitors",
            "20",
            "--warmup",
            "0",
            "--json",
            json.to_str().unwrap(),
        ]);
        assert!(ok, "{workload}: {stdout}\n{stderr}");
        assert!(
            stdout.contains("p99 µs"),
            "{workload}: table printed: {stdout}"
        );
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(report["requests"], requests, "{workload}: {report}");
        assert_eq!(report["errors"], 0, "{workload}: {report}");
        assert_eq!(report["in_flight"], in_flight, "{workload}: {report}");
        let p50 = report["p50_us"].as_f64().unwrap();
        let p99 = report["p99_us"].as_f64().unwrap();
        let max = report["max_us"].as_f64().unwrap();
        assert!(
            p50 > 0.0 && p50 <= p99 && p99 <= max,
            "{workload}: {report}"
        );
        assert!(report["per_second"].as_f64().unwrap() > 0.0);
    }
}

/// A wrong answer is an error, not a fast success: a server that does not
/// know the checkout's domain answers the bridge workload's arrival with a
/// refusal, and the run fails naming it.
#[test]
fn load_generator_counts_wrong_answers_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--allowed-domains", "example.com"],
    );
    let (ok, stdout, stderr) = run(&[
        "run",
        "--target",
        &server.addr,
        "--workload",
        "bridge",
        "--requests",
        "5",
        "--warmup",
        "0",
    ]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("requests failed"), "{stderr}");
    assert!(stdout.contains("\"errors\": 5"), "{stdout}");

    let (ok, _, stderr) = run(&["run", "--target", "127.0.0.1:1", "--workload", "health"]);
    assert!(!ok);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
}
