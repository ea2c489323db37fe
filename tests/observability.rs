//! Metrics and logs as an operator sees them: the Prometheus endpoint on its
//! own port, and JSON log lines with a request id and no personal data.

mod common;

use std::io::{Read, Write};

use common::{ctx, keyfile, Server};
use sessionbridge::pb;

fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

#[tokio::test]
async fn metrics_show_the_stitch_rate_and_logs_hold_no_personal_data() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let (server, port) = Server::start_with_port(
        &dir.path().join("data"),
        &[
            "--keys",
            keys.to_str().unwrap(),
            "--allowed-domains",
            "brand.example,shop.example",
            "--metrics-listen",
            "127.0.0.1:{port}",
            "--log-format",
            "json",
        ],
    );
    let mut c = server.client().await;
    let email = "Observable.Person@Probe.example";
    let ua = "Mozilla/5.0 (ObservabilityProbe/3.1)";
    let ip = "192.0.2.219";
    let mut source = ctx("www.brand.example", "");
    source.user_agent = ua.into();
    source.client_ip = ip.into();

    let h = c
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(source.clone()),
            destination_url: "https://www.shop.example/cart".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut arrive = ctx("www.shop.example", "");
    arrive.url = h.decorated_url.clone();
    arrive.referer = "https://www.brand.example/".into();
    arrive.user_agent = ua.into();
    arrive.client_ip = ip.into();
    for _ in 0..2 {
        // The second is a replay.
        c.resolve_session(pb::ResolveSessionRequest {
            context: Some(arrive.clone()),
            email: email.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let _ = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(pb::RequestContext::default()),
            ..Default::default()
        })
        .await
        .unwrap_err();

    let text = scrape(port);
    for expected in [
        r#"sessionbridge_requests_total{rpc="RecordHandoff",code="Ok"} 1"#,
        r#"sessionbridge_requests_total{rpc="ResolveSession",code="Ok"} 2"#,
        r#"sessionbridge_requests_total{rpc="ResolveSession",code="InvalidArgument"} 1"#,
        // An anonymous visitor's link with a login on arrival: the login
        // starts a fresh client (whoever sent the link may hold the one in
        // it), reported as new.
        r#"sessionbridge_resolutions_total{method="new",source="brand.example"} 1"#,
        // The replay still resolves: by the email the first call linked.
        r#"sessionbridge_resolutions_total{method="email",source="brand.example"} 1"#,
        r#"sessionbridge_rejected_evidence_total{evidence="token",reason="replayed"} 1"#,
        r#"sessionbridge_request_duration_seconds_bucket{rpc="ResolveSession",le="+Inf"} 3"#,
        "sessionbridge_store_up 1",
    ] {
        assert!(text.contains(expected), "metrics lack {expected}:\n{text}");
    }

    // Logs: JSON lines, a request id on every call line, no personal data.
    let log = server.stderr();
    let calls: Vec<serde_json::Value> = log
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .filter(|v| v["message"] == "call")
        .collect();
    assert!(calls.len() >= 4, "{log}");
    for v in &calls {
        let id = v["span"]["request_id"].as_str().unwrap_or_default();
        assert_eq!(id.len(), 16, "{v}");
    }
    let lower = log.to_ascii_lowercase();
    for secret in [
        "observable.person",
        "observabilityprobe",
        ip,
        &h.token.to_ascii_lowercase(),
    ] {
        assert!(!lower.contains(secret), "{secret} in the log:\n{log}");
    }
}

/// The value of an unlabelled series in a scrape.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The server's resident memory, as the kernel reports it, in bytes.
fn vm_rss(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024.0
}

/// Resident memory and the embedded store's size on disk are gauges: the
/// first is the server process's own (what the kernel reports for it, in
/// bytes), the second the size of the store's file.
#[tokio::test]
async fn metrics_show_resident_memory_and_the_store_size() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let data = dir.path().join("data");
    let (server, port) = Server::start_with_port(
        &data,
        &[
            "--keys",
            keys.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:{port}",
        ],
    );
    let mut c = server.client().await;
    for _ in 0..50 {
        c.resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("www.brand.example", "")),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let pid = server.child.as_ref().unwrap().id();
    let text = scrape(port);
    let rss = gauge(&text, "sessionbridge_resident_memory_bytes")
        .unwrap_or_else(|| panic!("no resident memory gauge:\n{text}"));
    let kernel = vm_rss(pid);
    // Sampled a few seconds apart at most: the same order of magnitude,
    // in bytes (not kB, not pages).
    assert!(
        rss > kernel / 2.0 && rss < kernel * 2.0,
        "gauge {rss} against VmRSS {kernel}"
    );
    // The store writes its file on its next flush and the gauge follows on
    // its next sample (every few seconds): wait for both, on a loaded
    // machine too. Then the gauge is the file's size in bytes, sampled a
    // few seconds earlier: the same order of magnitude.
    let started = std::time::Instant::now();
    loop {
        let text = scrape(port);
        let disk = gauge(&text, "sessionbridge_store_disk_bytes")
            .unwrap_or_else(|| panic!("no store size gauge:\n{text}"));
        let file = std::fs::metadata(data.join("db")).unwrap().len() as f64;
        if disk > 0.0 {
            assert!(
                disk > file / 4.0 && disk < file * 4.0,
                "gauge {disk} against the file's {file}"
            );
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the store size gauge stayed 0 (file {file} bytes)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        text.contains("# TYPE sessionbridge_resident_memory_bytes gauge"),
        "{text}"
    );
    // Transparent huge pages are off for the server process (the kernel
    // says so in its status; docs/performance.md says why).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim);
    // Older kernels do not report it.
    if let Some(thp) = thp {
        assert_eq!(thp, "0", "huge pages not disabled:\n{status}");
    }
}
