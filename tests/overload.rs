//! Overload: past the concurrency limit calls are shed at once, health keeps
//! answering, memory stays bounded, and the server serves again after.

mod common;

use std::time::{Duration, Instant};

use common::{ctx, Server};
use sessionbridge::pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_bounded_burst_is_shed_while_health_answers() {
    let dir = tempfile::tempdir().unwrap();
    // Durable writes make every call wait for a disk flush, so a burst
    // really overlaps.
    let server = Server::start(
        &dir.path().join("data"),
        &["--concurrency-limit", "2", "--durability", "sync"],
    );
    let pid = server.child.as_ref().unwrap().id();
    let channel = server.channel().await;
    let before = rss_kib(pid);

    let mut calls = Vec::new();
    for i in 0..400 {
        let mut c =
            pb::session_bridge_service_client::SessionBridgeServiceClient::new(channel.clone());
        calls.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = c
                .resolve_session(pb::ResolveSessionRequest {
                    context: Some(ctx("burst.example", "")),
                    user_id: format!("burst-{i}"),
                    ..Default::default()
                })
                .await;
            let r = r.map(|_| ()).map_err(|e| {
                if e.code() == Code::ResourceExhausted {
                    // Shedding says so, and when to come back.
                    use tonic_types::StatusExt;
                    let d = e.get_error_details();
                    assert_eq!(d.error_info().unwrap().reason, "OVERLOADED");
                    assert!(d.retry_info().unwrap().retry_delay.is_some());
                    assert!(e.metadata().get("x-request-id").is_some());
                }
                e.code()
            });
            (r, started.elapsed())
        }));
    }
    // Health is outside the limit: it answers during the burst.
    let mut health = HealthClient::new(server.channel().await);
    let status = health
        .check(HealthCheckRequest { service: "".into() })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);

    let (mut ok, mut shed) = (0, 0);
    let mut slowest_shed = Duration::ZERO;
    for c in calls {
        match c.await.unwrap() {
            (Ok(()), _) => ok += 1,
            (Err(Code::ResourceExhausted), took) => {
                shed += 1;
                slowest_shed = slowest_shed.max(took);
            }
            (Err(code), _) => panic!("unexpected {code:?}"),
        }
    }
    assert!(ok > 0 && shed > 0, "ok {ok}, shed {shed}");
    assert!(
        slowest_shed < Duration::from_secs(2),
        "shedding is immediate, not queued: {slowest_shed:?}"
    );
    let after = rss_kib(pid);
    assert!(
        after < before + 100 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );

    // And it serves normally afterwards.
    server
        .client()
        .await
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("burst.example", "")),
            ..Default::default()
        })
        .await
        .unwrap();
    eprintln!("burst of 400: {ok} served, {shed} shed; RSS {before} -> {after} KiB");
}
