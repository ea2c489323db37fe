//! Cross-domain hand-off over gRPC between separate sidecar processes:
//! sealed tokens, their rejections, and the referrer bridge.

mod common;

use common::{cookie_header, ctx, keyfile, Client, InProc};
use sessionbridge::pb::{self, RejectionReason, ResolutionMethod};
use tonic::Code;

fn handoff(context: pb::RequestContext, destination: &str) -> pb::RecordHandoffRequest {
    pb::RecordHandoffRequest {
        context: Some(context),
        destination_url: destination.into(),
        ..Default::default()
    }
}

fn arrive(host: &str, url: &str) -> pb::ResolveSessionRequest {
    let mut c = ctx(host, "");
    c.url = url.into();
    pb::ResolveSessionRequest {
        context: Some(c),
        ..Default::default()
    }
}

async fn resolve(c: &mut Client, req: pb::ResolveSessionRequest) -> pb::ResolveSessionResponse {
    c.resolve_session(req).await.unwrap().into_inner()
}

fn reasons(r: &pb::ResolveSessionResponse) -> Vec<RejectionReason> {
    r.rejected.iter().map(|e| e.reason()).collect()
}

/// Two sidecars with separate stores and one shared key file.
struct Pair {
    _dir: tempfile::TempDir,
    a: InProc,
    b: InProc,
}

async fn pair(extra: &[&str]) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let mut args = vec!["--keys", keys.to_str().unwrap()];
    args.extend_from_slice(extra);
    // One deployment: both sidecars see the same time.
    let clock = sessionbridge::clock::ManualClock::new();
    let a = InProc::start_on(&dir.path().join("a"), &args, clock.clone()).await;
    let b = InProc::start_on(&dir.path().join("b"), &args, clock).await;
    Pair { _dir: dir, a, b }
}

#[tokio::test]
async fn a_token_carries_the_identity_once_and_only_to_its_audience() {
    let p = pair(&[]).await;
    let (mut a, mut b) = (p.a.client().await, p.b.client().await);
    let h = a
        .record_handoff(handoff(
            ctx("www.example.com", ""),
            "https://checkout.example.net/start?x=1&y=%20#step2",
        ))
        .await
        .unwrap()
        .into_inner();
    let source = h.identity.clone().unwrap();
    assert!(h.token.len() <= 200, "{} characters", h.token.len());
    assert!(!h.token.contains(&source.client_id) && !h.decorated_url.contains(&source.client_id));
    assert!(!h.decorated_url.contains(&source.session_id.to_string()));
    assert_eq!(
        h.decorated_url,
        format!(
            "https://checkout.example.net/start?x=1&y=%20&_sbt={}#step2",
            h.token
        )
    );
    assert!(
        h.cookies.iter().any(|c| c.name.ends_with("-sbid")),
        "the source sets its own cookie too"
    );

    // Presented on another host: refused, and no use is lost.
    let wrong = resolve(
        &mut b,
        arrive(
            "evil.example.org",
            &h.decorated_url
                .replace("checkout.example.net", "evil.example.org"),
        ),
    )
    .await;
    assert_eq!(wrong.method(), ResolutionMethod::New);
    assert_eq!(reasons(&wrong), [RejectionReason::WrongAudience]);

    let arrived = resolve(&mut b, arrive("checkout.example.net", &h.decorated_url)).await;
    assert_eq!(arrived.method(), ResolutionMethod::HandoffToken);
    assert_eq!(arrived.confidence, 1.0);
    let id = arrived.identity.clone().unwrap();
    assert_eq!(
        (id.client_id.as_str(), id.session_id),
        (source.client_id.as_str(), source.session_id)
    );
    assert!(!arrived.new_session && !arrived.new_client);
    assert_eq!(
        arrived.clean_url,
        "https://checkout.example.net/start?x=1&y=%20#step2"
    );
    assert!(
        arrived.cookies.iter().any(|c| c.name.ends_with("-sbid")),
        "B persists the identity"
    );

    // The same link again (a bookmark, a shared link): not adopted.
    let replay = resolve(&mut b, arrive("checkout.example.net", &h.decorated_url)).await;
    assert_eq!(replay.method(), ResolutionMethod::New);
    assert_ne!(
        replay.identity.as_ref().unwrap().client_id,
        source.client_id
    );
    assert_eq!(reasons(&replay), [RejectionReason::Replayed]);

    // B's own cookie from the first arrival keeps the visitor afterwards.
    let next = resolve(&mut b, {
        let mut r = arrive("checkout.example.net", "https://checkout.example.net/pay");
        r.context.as_mut().unwrap().cookie_header = cookie_header(&arrived.cookies);
        r
    })
    .await;
    assert_eq!(next.method(), ResolutionMethod::Cookie);
    assert_eq!(next.identity.unwrap().client_id, source.client_id);
}

#[tokio::test]
async fn tampered_expired_foreign_and_unbound_tokens_are_never_accepted() {
    let p = pair(&[]).await;
    let (mut a, mut b) = (p.a.client().await, p.b.client().await);
    let dest = "https://checkout.example.net/";
    let h = a
        .record_handoff(handoff(ctx("www.example.com", ""), dest))
        .await
        .unwrap()
        .into_inner();
    let source = h.identity.unwrap().client_id;

    // Every character changed, the token cut short, and extended.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut variants = vec![
        h.token[..h.token.len() - 1].to_string(),
        format!("{}A", h.token),
        String::new(),
    ];
    for i in 0..h.token.len() {
        let mut t = h.token.clone().into_bytes();
        t[i] = *alphabet.iter().find(|&&c| c != t[i]).unwrap();
        variants.push(String::from_utf8(t).unwrap());
    }
    for t in variants.iter().filter(|t| !t.is_empty()) {
        let r = resolve(
            &mut b,
            arrive("checkout.example.net", &format!("{dest}?_sbt={t}")),
        )
        .await;
        assert_eq!(r.method(), ResolutionMethod::New, "{t}");
        let reason = reasons(&r)[0];
        assert!(
            matches!(
                reason,
                RejectionReason::BadSeal | RejectionReason::Malformed | RejectionReason::UnknownKey
            ),
            "{t}: {reason:?}"
        );
    }

    // A sidecar with another key file: unknown key.
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.json");
    sessionbridge::keys::generate(&foreign, "foreign").unwrap();
    let stranger = InProc::start(
        &dir.path().join("s"),
        &["--keys", foreign.to_str().unwrap()],
    )
    .await;
    let r = resolve(
        &mut stranger.client().await,
        arrive("checkout.example.net", &h.decorated_url),
    )
    .await;
    assert_eq!(reasons(&r), [RejectionReason::UnknownKey]);
    // Same key id, another secret: the seal does not open.
    let same_id = tempfile::tempdir().unwrap();
    let impostor = InProc::start(
        &same_id.path().join("s"),
        &["--keys", keyfile(same_id.path()).to_str().unwrap()],
    )
    .await;
    let r = resolve(
        &mut impostor.client().await,
        arrive("checkout.example.net", &h.decorated_url),
    )
    .await;
    assert_eq!(reasons(&r), [RejectionReason::BadSeal]);

    // Bound to a User-Agent: another browser cannot use it.
    let mut bound_req = handoff(ctx("www.example.com", ""), dest);
    bound_req.bind_user_agent = true;
    let bound = a.record_handoff(bound_req).await.unwrap().into_inner();
    let mut other_browser = arrive("checkout.example.net", &bound.decorated_url);
    other_browser.context.as_mut().unwrap().user_agent = "curl/8.0".into();
    let r = resolve(&mut b, other_browser).await;
    assert_eq!(reasons(&r), [RejectionReason::FingerprintMismatch]);
    let r = resolve(&mut b, arrive("checkout.example.net", &bound.decorated_url)).await;
    assert_eq!(
        r.method(),
        ResolutionMethod::HandoffToken,
        "the same browser still can"
    );

    // Expired.
    let mut short = handoff(ctx("www.example.com", ""), dest);
    short.ttl_seconds = 1;
    let short = a.record_handoff(short).await.unwrap().into_inner();
    p.a.advance(2);
    let r = resolve(&mut b, arrive("checkout.example.net", &short.decorated_url)).await;
    assert_eq!(r.method(), ResolutionMethod::New);
    assert_eq!(reasons(&r), [RejectionReason::Expired]);
    assert_ne!(r.identity.unwrap().client_id, source);
}

#[tokio::test]
async fn fifty_concurrent_resolves_of_a_single_use_token_give_one_success() {
    let p = pair(&[]).await;
    let h =
        p.a.client()
            .await
            .record_handoff(handoff(
                ctx("www.example.com", ""),
                "https://checkout.example.net/",
            ))
            .await
            .unwrap()
            .into_inner();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut b = p.b.client().await;
        let url = h.decorated_url.clone();
        tasks.push(tokio::spawn(async move {
            resolve(&mut b, arrive("checkout.example.net", &url)).await
        }));
    }
    let mut won = 0;
    let mut replayed = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.method() {
            ResolutionMethod::HandoffToken => won += 1,
            _ => {
                assert_eq!(reasons(&r), [RejectionReason::Replayed]);
                replayed += 1;
            }
        }
    }
    assert_eq!((won, replayed), (1, 49));
}

#[tokio::test]
async fn keys_rotate_without_breaking_tokens_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let old = keyfile(dir.path());
    let a = InProc::start(&dir.path().join("a"), &["--keys", old.to_str().unwrap()]).await;
    let in_flight = a
        .client()
        .await
        .record_handoff(handoff(
            ctx("www.example.com", ""),
            "https://checkout.example.net/",
        ))
        .await
        .unwrap()
        .into_inner();
    let rotated = dir.path().join("rotated.json");
    std::fs::copy(&old, &rotated).unwrap();
    // Step 1 of a rolling rotation: the new key is only *next*. A sidecar
    // already given the file seals with the old key still, so what it
    // seals opens on sidecars not yet updated.
    sessionbridge::keys::rotate(&rotated, "test2").unwrap();
    let next = InProc::start(
        &dir.path().join("next"),
        &["--keys", rotated.to_str().unwrap()],
    )
    .await;
    let during = next
        .client()
        .await
        .record_handoff(handoff(
            ctx("www.example.com", ""),
            "https://checkout.example.net/",
        ))
        .await
        .unwrap()
        .into_inner();
    let r = resolve(
        &mut a.client().await,
        arrive("checkout.example.net", &during.decorated_url),
    )
    .await;
    assert_eq!(r.method(), ResolutionMethod::HandoffToken, "mid-rollout");
    // Step 2, once every sidecar has the file: promote.
    sessionbridge::keys::promote(&rotated, "test2").unwrap();
    let b = InProc::start(
        &dir.path().join("b"),
        &["--keys", rotated.to_str().unwrap()],
    )
    .await;
    let mut b = b.client().await;
    let r = resolve(
        &mut b,
        arrive("checkout.example.net", &in_flight.decorated_url),
    )
    .await;
    assert_eq!(
        r.method(),
        ResolutionMethod::HandoffToken,
        "old key still opens"
    );
    // What the rotated sidecar seals opens on a sidecar that has both keys,
    // and not on one that has only the old key.
    let fresh = b
        .record_handoff(handoff(
            ctx("www.example.com", ""),
            "https://checkout.example.net/",
        ))
        .await
        .unwrap()
        .into_inner();
    let r = resolve(
        &mut a.client().await,
        arrive("checkout.example.net", &fresh.decorated_url),
    )
    .await;
    assert_eq!(reasons(&r), [RejectionReason::UnknownKey]);
}

#[tokio::test]
async fn refused_consent_travels_with_the_token() {
    let p = pair(&[]).await;
    let mut source = ctx("www.example.com", "");
    source.consent = Some(pb::Consent {
        analytics_storage: pb::ConsentState::Denied as i32,
        ..Default::default()
    });
    let h =
        p.a.client()
            .await
            .record_handoff(handoff(source, "https://checkout.example.net/"))
            .await
            .unwrap()
            .into_inner();
    assert!(h.cookies.is_empty(), "no cookie where consent is refused");
    let r = resolve(
        &mut p.b.client().await,
        arrive("checkout.example.net", &h.decorated_url),
    )
    .await;
    assert_eq!(r.method(), ResolutionMethod::NoConsent);
    assert!(!r.persisted && r.cookies.is_empty());
    assert_eq!(reasons(&r), [RejectionReason::NoConsent]);
    assert_eq!(
        r.clean_url, "https://checkout.example.net/",
        "the token is still stripped"
    );
}

#[tokio::test]
async fn record_handoff_checks_its_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let s = InProc::start(
        &dir.path().join("a"),
        &["--handoff-max-ttl-secs", "600", "--handoff-max-uses", "3"],
    )
    .await;
    let mut c = s.client().await;
    let cases: Vec<(&str, pb::RecordHandoffRequest)> = vec![
        ("destination_url", handoff(ctx("a.example", ""), "")),
        (
            "destination_url",
            handoff(ctx("a.example", ""), "ftp://files.example/"),
        ),
        (
            "destination_url",
            handoff(
                ctx("a.example", ""),
                &format!("https://b.example/{}", "x".repeat(3000)),
            ),
        ),
        (
            "ttl_seconds",
            pb::RecordHandoffRequest {
                ttl_seconds: 601,
                ..handoff(ctx("a.example", ""), "https://b.example/")
            },
        ),
        (
            "max_uses",
            pb::RecordHandoffRequest {
                max_uses: 4,
                ..handoff(ctx("a.example", ""), "https://b.example/")
            },
        ),
        (
            "extra_audience[0]",
            pb::RecordHandoffRequest {
                extra_audience: vec!["not a host".into()],
                ..handoff(ctx("a.example", ""), "https://b.example/")
            },
        ),
        (
            "extra_audience",
            pb::RecordHandoffRequest {
                extra_audience: vec![
                    "c.example".into(),
                    "d.example".into(),
                    "e.example".into(),
                    "f.example".into(),
                ],
                ..handoff(ctx("a.example", ""), "https://b.example/")
            },
        ),
        ("context.host", handoff(ctx("", ""), "https://b.example/")),
    ];
    for (field, req) in cases {
        let err = c.record_handoff(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        assert!(
            common::bad_fields(&err).contains(&field.to_string()),
            "{field}: {:?}",
            common::bad_fields(&err)
        );
    }
}
