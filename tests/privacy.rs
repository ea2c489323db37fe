//! Privacy, checked on the bytes: what the store holds after a run with
//! distinctive personal data, and after erasure.

mod common;

use common::{all_bytes, contains, cookie_header, ctx, InProc};
use sessionbridge::pb;

#[tokio::test]
async fn sled_holds_no_email_ip_or_user_agent_and_forgets_users() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = InProc::start(&data, &["--durability", "sync"]).await;
    let mut c = server.client().await;

    let email = "Zelda.Quartermaine@Privacy-Probe.example";
    let ip = "198.51.100.173";
    let ua = "Mozilla/5.0 (Distinctive; ProbeBrowser/77.7.7)";
    let user = "user-privacy-probe-4412";
    let mut context = ctx("www.probe.example", "");
    context.client_ip = ip.into();
    context.user_agent = ua.into();
    context.referer = "https://referrer.probe.example/".into();
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(context.clone()),
            user_id: user.into(),
            email: email.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let client_id = r.identity.unwrap().client_id;
    // A hand-off records the bridge (hashed UA and network).
    context.cookie_header = cookie_header(&r.cookies);
    c.record_handoff(pb::RecordHandoffRequest {
        context: Some(context),
        destination_url: "https://shop.probe-store.example/".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    let bytes = all_bytes(&data).to_ascii_lowercase();
    for secret in [
        email.to_ascii_lowercase().as_str(),
        "zelda",
        ip,
        "198.51.100",
        "probebrowser",
    ] {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{secret:?} is on disk in clear"
        );
    }
    // Records are sealed at rest: not even the user id or client id is
    // readable in the data directory.
    assert!(
        !contains(&bytes, user.as_bytes()),
        "the user id is on disk in clear"
    );
    assert!(
        !contains(&bytes, client_id.as_bytes()),
        "the client id is on disk in clear"
    );

    let erased = c
        .forget_user(pb::ForgetUserRequest {
            user: Some(pb::forget_user_request::User::Email(email.into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.identities_erased, 1);
    let err = c
        .lookup_by_user(pb::LookupByUserRequest {
            user: Some(pb::lookup_by_user_request::User::UserId(user.into())),
            limit: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    // sled is log-structured, so erased records can linger in old segment
    // bytes until sled reuses them; sealed, they open only with the key file
    // AND the identifier. The live store no longer has them:
    drop(c);
    let server = server.restart().await;
    let r = server
        .client()
        .await
        .lookup_by_user(pb::LookupByUserRequest {
            user: Some(pb::lookup_by_user_request::User::Email(email.into())),
            limit: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        r.code(),
        tonic::Code::NotFound,
        "erasure survives a restart"
    );
    drop(server);
    let bytes = all_bytes(&data);
    for secret in [user, client_id.as_str()] {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{secret:?} readable after erasure"
        );
    }
}

/// On Redis, erasure removes the data itself: after ForgetUser no key and
/// no value anywhere in Redis names the user or the client.
#[tokio::test]
async fn redis_erasure_leaves_no_trace() {
    let redis = common::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let server = InProc::start(
        &dir.path().join("data"),
        &["--store", "redis", "--redis-urls", &url],
    )
    .await;
    let mut c = server.client().await;
    let user = "user-redis-erasure-9931";
    let mut clients = Vec::new();
    for host in ["one.probe.example", "two.probe.example"] {
        let r = c
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(ctx(host, "")),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let linked = c
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(ctx(host, &cookie_header(&r.cookies))),
                user_id: user.into(),
                email: "erase.me@probe.example".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        clients.push(linked.identity.unwrap().client_id);
    }
    let dump = |redis: &common::Redis| {
        let keys = redis.cli(&["--scan", "--pattern", "*"]);
        let mut all = keys.clone();
        for k in keys.lines() {
            match redis.cli(&["TYPE", k]).trim() {
                "string" => all.push_str(&redis.cli(&["GET", k])),
                "zset" => all.push_str(&redis.cli(&["ZRANGE", k, "0", "-1"])),
                other => panic!("unexpected key type {other} for {k}"),
            }
        }
        all
    };
    let before = dump(&redis);
    assert!(before.contains(user) && before.contains(&clients[0]));
    let erased = c
        .forget_user(pb::ForgetUserRequest {
            user: Some(pb::forget_user_request::User::UserId(user.into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.identities_erased, 2);
    let after = dump(&redis);
    assert!(!after.contains(user), "user id left in Redis");
    for cid in &clients {
        assert!(!after.contains(cid.as_str()), "client {cid} left in Redis");
    }
}
