//! Two domains, two sidecar processes each, one Redis: the shared store
//! makes the bridge, single use and user lookups hold across all of them,
//! and a Redis outage is reported, survived and recovered from.

mod common;

use std::time::{Duration, Instant};

use common::{ctx, keyfile, Redis, Server};
use sessionbridge::pb::{self, RejectionReason, ResolutionMethod};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

struct Fleet {
    _dir: tempfile::TempDir,
    a: Vec<Server>,
    b: Vec<Server>,
}

fn fleet(redis: &Redis) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let url = redis.url();
    let args = [
        "--keys",
        keys.to_str().unwrap(),
        "--store",
        "redis",
        "--redis-urls",
        url.as_str(),
        "--redis-timeout-ms",
        "300",
    ];
    let start = |name: &str| Server::start(&dir.path().join(name), &args);
    let a = vec![start("a1"), start("a2")];
    let b = vec![start("b1"), start("b2")];
    Fleet { _dir: dir, a, b }
}

#[tokio::test]
async fn replicas_of_two_domains_share_one_identity() {
    let redis = Redis::start();
    let f = fleet(&redis);

    // Shopify-style: hand-off recorded by a1, parameterless arrival on b2.
    let ua = "Mozilla/5.0 (iPhone) Mobile Safari";
    let mut leave = ctx("www.brand.example", "");
    leave.user_agent = ua.into();
    let h = f.a[0]
        .client()
        .await
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(leave),
            destination_url: "https://store.shop.example/".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut arrive = ctx("store.shop.example", "");
    arrive.user_agent = ua.into();
    arrive.referer = "https://www.brand.example/".into();
    let r = f.b[1]
        .client()
        .await
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(arrive),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::ReferrerBridge);
    assert_eq!(
        r.identity.unwrap().client_id,
        h.identity.as_ref().unwrap().client_id
    );

    // Two replicas race for one single-use token: exactly one wins.
    let h = f.a[1]
        .client()
        .await
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(ctx("www.brand.example", "")),
            destination_url: "https://store.shop.example/cart".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let mut c = f.b[i % 2].client().await;
        let mut x = ctx("store.shop.example", "");
        x.url = h.decorated_url.clone();
        tasks.push(tokio::spawn(async move {
            c.resolve_session(pb::ResolveSessionRequest {
                context: Some(x),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
        }));
    }
    let mut won = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.method() == ResolutionMethod::HandoffToken {
            won += 1;
        } else {
            assert_eq!(r.rejected[0].reason(), RejectionReason::Replayed);
        }
    }
    assert_eq!(won, 1);

    // A login on domain A is found by domain B, on the other replica.
    let login = f.a[0]
        .client()
        .await
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("www.brand.example", "")),
            user_id: "cust-5".into(),
            email: "Lin.Redis@Example.org".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let found = f.b[1]
        .client()
        .await
        .lookup_by_user(pb::LookupByUserRequest {
            user: Some(pb::lookup_by_user_request::User::Email(
                "lin.redis@example.org".into(),
            )),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        found.identity.unwrap().client_id,
        login.identity.unwrap().client_id
    );

    // Nothing personal in Redis in clear, and every key expires.
    let keys = redis.cli(&["--scan", "--pattern", "*"]);
    let mut dump = keys.clone();
    for key in keys.lines() {
        let ttl: i64 = redis.cli(&["TTL", key]).trim().parse().unwrap();
        assert!(ttl > 0, "{key} has no expiry");
        match redis.cli(&["TYPE", key]).trim() {
            "string" => dump.push_str(&redis.cli(&["GET", key])),
            _ => dump.push_str(&redis.cli(&["ZRANGE", key, "0", "-1"])),
        }
    }
    let dump = dump.to_ascii_lowercase();
    for secret in ["lin.redis", "iphone", "203.0.113"] {
        assert!(!dump.contains(secret), "{secret} found in Redis");
    }

    // ForgetUser on B erases what A linked.
    let erased = f.b[0]
        .client()
        .await
        .forget_user(pb::ForgetUserRequest {
            user: Some(pb::forget_user_request::User::UserId("cust-5".into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.identities_erased, 1);
    let err = f.a[1]
        .client()
        .await
        .lookup_by_user(pb::LookupByUserRequest {
            user: Some(pb::lookup_by_user_request::User::Email(
                "lin.redis@example.org".into(),
            )),
            limit: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

async fn health(server: &Server) -> ServingStatus {
    HealthClient::new(server.channel().await)
        .check(HealthCheckRequest { service: "".into() })
        .await
        .unwrap()
        .into_inner()
        .status()
}

async fn wait_health(server: &Server, want: ServingStatus, within: Duration) {
    let start = Instant::now();
    while health(server).await != want {
        assert!(
            start.elapsed() < within,
            "health did not become {want:?} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_redis_outage_fails_fast_and_heals_without_a_restart() {
    let mut redis = Redis::start();
    let port = redis.port;
    let f = fleet(&redis);
    let server = &f.a[0];
    let mut c = server.client().await;
    let page = || pb::ResolveSessionRequest {
        context: Some(ctx("www.brand.example", "")),
        ..Default::default()
    };
    c.resolve_session(page()).await.unwrap();
    assert_eq!(health(server).await, ServingStatus::Serving);

    redis.kill();
    for _ in 0..5 {
        let started = Instant::now();
        let err = c.resolve_session(page()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }
    wait_health(server, ServingStatus::NotServing, Duration::from_secs(5)).await;
    // Liveness stays SERVING: an outage of the store is no reason to
    // restart the process.
    let live = HealthClient::new(server.channel().await)
        .check(HealthCheckRequest {
            service: "liveness".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(live, ServingStatus::Serving);
    // Health itself keeps answering, and the process is up.
    assert!(server.child.as_ref().is_some());

    let _redis = Redis::start_on(port);
    wait_health(server, ServingStatus::Serving, Duration::from_secs(10)).await;
    let r = c.resolve_session(page()).await.unwrap().into_inner();
    assert_eq!(r.method(), ResolutionMethod::New);
    assert!(r.persisted);
    assert!(!server.stderr().contains("panicked"));
}
