//! Errors every client can act on: each non-OK status carries an ErrorInfo
//! (domain `sessionbridge.v1`, a reason per cause), a BadRequest for invalid
//! arguments, a RetryInfo where retrying helps; store error text never
//! reaches the caller; every answer carries an `x-request-id`.

mod common;

use common::{ctx, InProc};
use sessionbridge::pb;
use tonic::{Code, Status};
use tonic_types::StatusExt;

fn reason(s: &Status) -> String {
    let d = s.get_error_details();
    let info = d
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo on {s:?}"));
    assert_eq!(info.domain, "sessionbridge.v1");
    info.reason.clone()
}

fn request_id(s: &Status) -> String {
    s.metadata()
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id on {s:?}"))
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn every_error_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(
        &dir.path().join("data"),
        &[
            "--allowed-domains",
            "example.com",
            "--max-message-bytes",
            "4096",
        ],
    )
    .await;
    let mut c = server.client().await;

    // An OK answer has a request id too; a caller's own id is kept.
    let mut req = tonic::Request::new(pb::ResolveSessionRequest {
        context: Some(ctx("www.example.com", "")),
        ..Default::default()
    });
    req.metadata_mut()
        .insert("x-request-id", "checkout-42".parse().unwrap());
    let ok = c.resolve_session(req).await.unwrap();
    assert_eq!(ok.metadata().get("x-request-id").unwrap(), "checkout-42");
    let ok = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("www.example.com", "")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ok.metadata().get("x-request-id").unwrap().len(),
        16,
        "a generated id"
    );

    let err = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("evil.com", "")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason(&err), "HOST_NOT_ALLOWED");
    assert!(err.get_details_bad_request().is_some());
    request_id(&err);

    let err = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("www.example.com", "")),
            user_id: "someone@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "INVALID_FIELD");

    // Over max_message_bytes: a caller bug, not shedding.
    let err = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("www.example.com", &"a=b; ".repeat(2000))),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(reason(&err), "MESSAGE_TOO_LARGE");
    request_id(&err);

    let err = c
        .lookup_by_user(pb::LookupByUserRequest {
            user: Some(pb::lookup_by_user_request::User::UserId("nobody".into())),
            limit: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(reason(&err), "NOT_FOUND");
}

#[tokio::test]
async fn a_store_outage_is_retryable_and_says_nothing_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = common::Redis::start();
    let url = redis.url();
    let server = InProc::start(
        &dir.path().join("data"),
        &[
            "--store",
            "redis",
            "--redis-urls",
            &url,
            "--redis-timeout-ms",
            "200",
        ],
    )
    .await;
    let mut c = server.client().await;
    c.resolve_session(pb::ResolveSessionRequest {
        context: Some(ctx("a.example", "")),
        ..Default::default()
    })
    .await
    .unwrap();
    redis.kill();
    let err = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("a.example", "")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(reason(&err), "STORE_UNAVAILABLE");
    assert!(err.get_details_retry_info().unwrap().retry_delay.is_some());
    let m = err.message().to_ascii_lowercase();
    for word in ["redis", "connection", "refused", "io error", "127.0.0.1"] {
        assert!(!m.contains(word), "store text reached the caller: {m}");
    }
    request_id(&err);
}

#[tokio::test]
async fn a_missing_token_is_unauthenticated() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret-token-of-enough-length-0123456789").unwrap();
    let server = InProc::start(
        &dir.path().join("data"),
        &["--auth-token-file", file.to_str().unwrap()],
    )
    .await;
    let err = server
        .client()
        .await
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("a.example", "")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(reason(&err), "UNAUTHENTICATED");
    request_id(&err);
}

#[tokio::test]
async fn a_call_past_its_deadline_says_so_with_details() {
    let dir = tempfile::tempdir().unwrap();
    let redis = common::Redis::start();
    let url = redis.url();
    let server = InProc::start(
        &dir.path().join("data"),
        &[
            "--store",
            "redis",
            "--redis-urls",
            &url,
            "--redis-timeout-ms",
            "5000",
            "--request-timeout-ms",
            "300",
        ],
    )
    .await;
    let mut c = server.client().await;
    // Redis stalls for a second: the call runs past request_timeout_ms.
    redis.cli(&["CLIENT", "PAUSE", "1000", "ALL"]);
    let err = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("a.example", "")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert_eq!(reason(&err), "DEADLINE_EXCEEDED");
    request_id(&err);
}
