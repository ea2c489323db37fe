//! The gRPC API, driven over the wire against the real binary.

mod common;

use common::{bad_fields, cookie_header, ctx, keyfile, InProc, Server};
use sessionbridge::pb::{self, ResolutionMethod};
use tonic::Code;

fn resolve_req(context: pb::RequestContext) -> pb::ResolveSessionRequest {
    pb::ResolveSessionRequest {
        context: Some(context),
        ..Default::default()
    }
}

#[tokio::test]
async fn mint_then_resolve_keeps_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &[]).await;
    let mut c = server.client().await;

    let minted = c
        .mint_cookie(pb::MintCookieRequest {
            context: Some(ctx("shop.example.com", "")),
            ga_cookie: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(minted.method(), ResolutionMethod::New);
    assert!(minted.new_session);
    let id = minted.identity.clone().unwrap();
    let (random, created) = id.client_id.split_once('.').unwrap();
    assert!(random.parse::<u32>().unwrap() <= i32::MAX as u32);
    assert_eq!(created.parse::<i64>().unwrap(), id.session_id);
    assert_eq!(id.session_number, 1);
    let own = &minted.cookies[0];
    assert_eq!(own.name, "__Host-sbid", "host-only: the __Host- prefix");
    assert!(own.http_only && own.secure);
    assert_eq!(own.same_site(), pb::SameSite::Lax);
    assert_eq!(own.domain, "", "no allowlist: host-only cookie");
    assert!(own
        .set_cookie_header
        .starts_with(&format!("__Host-sbid={}", own.value)));

    let resolved = c
        .resolve_session(resolve_req(ctx(
            "shop.example.com",
            &cookie_header(&minted.cookies),
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.method(), ResolutionMethod::Cookie);
    assert_eq!(resolved.confidence, 1.0);
    assert!(!resolved.new_session && !resolved.new_client && resolved.persisted);
    let again = resolved.identity.unwrap();
    assert_eq!(again.client_id, id.client_id);
    assert_eq!(again.session_id, id.session_id);
    assert_eq!(again.session_number, 1);
    assert!(
        resolved.cookies.iter().any(|c| c.name == "__Host-sbid"),
        "cookie refreshed"
    );

    // MintCookie with the cookie refreshes rather than re-minting.
    let refreshed = c
        .mint_cookie(pb::MintCookieRequest {
            context: Some(ctx("shop.example.com", &cookie_header(&minted.cookies))),
            ga_cookie: Some(true),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refreshed.method(), ResolutionMethod::Cookie);
    assert_eq!(refreshed.identity.unwrap().client_id, id.client_id);
    let ga = refreshed
        .cookies
        .iter()
        .find(|c| c.name == "_ga")
        .expect("_ga cookie");
    assert_eq!(
        ga.value,
        format!("GA1.3.{}", id.client_id),
        "host-only on a 3-label host"
    );
    assert!(!ga.http_only, "gtag.js must read _ga");
}

#[tokio::test]
async fn forged_and_foreign_cookies_are_rejected_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let server = InProc::start(
        &dir.path().join("data"),
        &[
            "--keys",
            keys.to_str().unwrap(),
            "--allowed-domains",
            "example.com,other.org",
        ],
    )
    .await;
    let mut c = server.client().await;
    let minted = c
        .mint_cookie(pb::MintCookieRequest {
            context: Some(ctx("www.example.com", "")),
            ga_cookie: None,
        })
        .await
        .unwrap()
        .into_inner();
    let value = minted.cookies[0].value.clone();
    let client_id = minted.identity.unwrap().client_id;

    // Edited: claim another client id under the same signature.
    let forged = value.replacen(client_id.split('.').next().unwrap(), "1", 1);
    // Copied to another site that trusts the same key file.
    for (host, header, reason) in [
        (
            "www.example.com",
            format!("__Secure-sbid={forged}"),
            pb::RejectionReason::BadSeal,
        ),
        (
            "www.other.org",
            format!("__Secure-sbid={value}"),
            pb::RejectionReason::BadSeal,
        ),
        (
            "www.example.com",
            "__Secure-sbid=garbage".to_string(),
            pb::RejectionReason::Malformed,
        ),
    ] {
        let r = c
            .resolve_session(resolve_req(ctx(host, &header)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.method(), ResolutionMethod::New, "{host} {header}");
        assert_ne!(r.identity.unwrap().client_id, client_id);
        assert_eq!(r.rejected.len(), 1);
        assert_eq!(r.rejected[0].kind(), pb::EvidenceKind::OwnCookie);
        assert_eq!(r.rejected[0].reason(), reason);
        assert!(
            !r.rejected[0].detail.contains(&value),
            "detail never echoes the evidence"
        );
    }
}

#[tokio::test]
async fn parent_domain_cookie_is_shared_by_subdomains_and_sidecars() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let k = keys.to_str().unwrap();
    let shop = InProc::start(
        &dir.path().join("shop"),
        &["--keys", k, "--allowed-domains", "example.co.uk"],
    )
    .await;
    let checkout = InProc::start(
        &dir.path().join("checkout"),
        &["--keys", k, "--allowed-domains", "example.co.uk"],
    )
    .await;

    let minted = shop
        .client()
        .await
        .mint_cookie(pb::MintCookieRequest {
            context: Some(ctx("shop.example.co.uk", "")),
            ga_cookie: Some(true),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        minted.cookies[0].domain, "example.co.uk",
        "registrable domain, never the suffix co.uk"
    );
    assert!(minted.cookies[0]
        .set_cookie_header
        .contains("Domain=example.co.uk"));
    let ga = minted.cookies.iter().find(|c| c.name == "_ga").unwrap();
    assert!(ga.value.starts_with("GA1.3."), "{}", ga.value);

    // Another sidecar with its own store, same key file: same session.
    let r = checkout
        .client()
        .await
        .resolve_session(resolve_req(ctx(
            "checkout.example.co.uk",
            &cookie_header(&minted.cookies),
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::Cookie);
    let (a, b) = (minted.identity.unwrap(), r.identity.unwrap());
    assert_eq!((a.client_id, a.session_id), (b.client_id, b.session_id));
    assert!(!r.new_session);
}

#[tokio::test]
async fn hosts_outside_the_allowlist_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(
        &dir.path().join("data"),
        &["--allowed-domains", "example.com"],
    )
    .await;
    let mut c = server.client().await;
    for host in ["evil.com", "example.com.evil.com", "notexample.com"] {
        let err = c
            .mint_cookie(pb::MintCookieRequest {
                context: Some(ctx(host, "")),
                ga_cookie: None,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{host}");
        assert_eq!(bad_fields(&err), ["context.host"]);
    }
}

#[tokio::test]
async fn users_are_linked_looked_up_and_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = InProc::start(&data, &["--durability", "sync"]).await;
    let mut c = server.client().await;
    let email = "Grace.Hopper+Z7Q@Example.org";

    // Two browsers of the same user, each known by its cookie before login.
    let mut ids = vec![];
    for _ in 0..2 {
        let anonymous = c
            .resolve_session(resolve_req(ctx("app.example.org", "")))
            .await
            .unwrap()
            .into_inner();
        let r = c
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(ctx("app.example.org", &cookie_header(&anonymous.cookies))),
                user_id: "user-8812".into(),
                email: email.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.method(),
            ResolutionMethod::Cookie,
            "the cookie outranks the user link"
        );
        let id = r.identity.unwrap();
        assert_eq!(id.user_id, "user-8812");
        ids.push(id.client_id);
    }
    assert_ne!(ids[0], ids[1]);

    let by_id = c
        .lookup_by_user(pb::LookupByUserRequest {
            user: Some(pb::lookup_by_user_request::User::UserId("user-8812".into())),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_id.identity.unwrap().client_id,
        ids[1],
        "most recent first"
    );
    let recent: Vec<String> = by_id.recent.iter().map(|i| i.client_id.clone()).collect();
    assert_eq!(recent, [ids[1].clone(), ids[0].clone()]);

    // Email lookups normalize case and white space.
    let by_email = c
        .lookup_by_user(pb::LookupByUserRequest {
            user: Some(pb::lookup_by_user_request::User::Email(
                "  grace.hopper+z7q@EXAMPLE.org ".into(),
            )),
            limit: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_email.recent.len(), 1);
    assert_eq!(by_email.identity.unwrap().client_id, ids[1]);

    // The email never reaches the disk in clear, in any case.
    let bytes = common::all_bytes(&data).to_ascii_lowercase();
    assert!(
        !common::contains(&bytes, b"grace.hopper"),
        "email found on disk"
    );

    let forgotten = c
        .forget_user(pb::ForgetUserRequest {
            user: Some(pb::forget_user_request::User::Email(email.into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(forgotten.found);
    assert_eq!(forgotten.identities_erased, 2);
    for user in [
        pb::lookup_by_user_request::User::UserId("user-8812".into()),
        pb::lookup_by_user_request::User::Email(email.into()),
    ] {
        let err = c
            .lookup_by_user(pb::LookupByUserRequest {
                user: Some(user),
                limit: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
    let again = c
        .forget_user(pb::ForgetUserRequest {
            user: Some(pb::forget_user_request::User::UserId("user-8812".into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.found);
}

#[tokio::test]
async fn a_login_on_one_domain_is_found_on_another_sharing_the_service() {
    // Seed scenario 3 with one shared instance: user id inheritance.
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &[]).await;
    let mut c = server.client().await;
    let first = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("workspace-a.example", "")),
            user_id: "u-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = first.identity.unwrap();
    for host in ["workspace-b.example", "workspace-c.example"] {
        let r = c
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(ctx(host, "")),
                user_id: "u-1".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.method(), ResolutionMethod::UserId, "{host}");
        let got = r.identity.unwrap();
        assert_eq!(
            (got.client_id, got.session_id),
            (id.client_id.clone(), id.session_id)
        );
    }
}

#[tokio::test]
async fn inactivity_starts_a_new_session_of_the_same_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &[]).await;
    let mut c = server.client().await;
    let first = c
        .resolve_session(resolve_req(ctx("a.example", "")))
        .await
        .unwrap()
        .into_inner();
    // Past the default 30-minute timeout, on the server's clock.
    server.advance(30 * 60 + 1);
    let second = c
        .resolve_session(resolve_req(ctx(
            "a.example",
            &cookie_header(&first.cookies),
        )))
        .await
        .unwrap()
        .into_inner();
    let (a, b) = (first.identity.unwrap(), second.identity.unwrap());
    assert_eq!(a.client_id, b.client_id);
    assert!(second.new_session);
    assert_eq!(b.session_number, 2);
    assert!(b.session_id > a.session_id);
}

#[tokio::test]
async fn denied_consent_stores_nothing_and_sets_no_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &[]).await;
    let mut c = server.client().await;
    let granted = c
        .resolve_session(resolve_req(ctx("a.example", "")))
        .await
        .unwrap()
        .into_inner();
    let mut context = ctx("a.example", &cookie_header(&granted.cookies));
    context.consent = Some(pb::Consent {
        analytics_storage: pb::ConsentState::Denied as i32,
        ..Default::default()
    });
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(context),
            user_id: "u-denied".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::NoConsent);
    assert!(!r.persisted);
    assert_ne!(
        r.identity.unwrap().client_id,
        granted.identity.unwrap().client_id
    );
    // The only cookie is the deletion of the one the browser had.
    assert_eq!(r.cookies.len(), 1);
    assert_eq!(r.cookies[0].max_age_seconds, Some(0));
    assert_eq!(r.cookies[0].value, "");
    let err = c
        .lookup_by_user(pb::LookupByUserRequest {
            user: Some(pb::lookup_by_user_request::User::UserId("u-denied".into())),
            limit: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn a_restart_on_the_same_directory_keeps_identities() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &[]).await;
    let mut c = server.client().await;
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("a.example", "")),
            user_id: "u-restart".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let before = r.identity.unwrap();
    drop(c);

    // SIGTERM flushes; the development key persists in the data directory.
    let server = server.restart().await;
    let mut c = server.client().await;
    let after = c
        .resolve_session(resolve_req(ctx("a.example", &cookie_header(&r.cookies))))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.method(), ResolutionMethod::Cookie);
    let id = after.identity.unwrap();
    assert_eq!(id.client_id, before.client_id);
    assert_eq!(
        id.user_id, "u-restart",
        "user link read back from the store"
    );
    let found = c
        .lookup_by_user(pb::LookupByUserRequest {
            user: Some(pb::lookup_by_user_request::User::UserId("u-restart".into())),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.identity.unwrap().client_id, before.client_id);
}

#[tokio::test]
async fn health_reports_serving_then_not_serving_while_draining() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), &["--drain-secs", "3"]);
    let mut h = HealthClient::new(server.channel().await);
    for service in ["", "sessionbridge.v1.SessionBridgeService"] {
        let r = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    let pid = server.child.as_ref().unwrap().id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let r = h
        .check(HealthCheckRequest { service: "".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status(), ServingStatus::NotServing);
    // In-flight and new calls still succeed during the drain period.
    let mut c = server.client().await;
    c.mint_cookie(pb::MintCookieRequest {
        context: Some(ctx("a.example", "")),
        ga_cookie: None,
    })
    .await
    .unwrap();
    let status = server.child.take().unwrap().wait().unwrap();
    assert!(status.success(), "clean exit after drain: {status}");
    assert!(server.stderr().contains("store flushed"));
}

/// A page view that changes nothing but the time of the last hit does not
/// rewrite the stored record until the stored time is `touch_write_secs`
/// old; the cookie carries the exact time meanwhile. With 0, every hit
/// writes.
#[tokio::test]
async fn hits_that_only_touch_are_written_once_the_stored_time_is_old() {
    let dir = tempfile::tempdir().unwrap();
    for (name, touch, rewritten) in [("lazy", "60", false), ("eager", "0", true)] {
        let server = InProc::start(&dir.path().join(name), &["--touch-write-secs", touch]).await;
        let mut c = server.client().await;
        let user = format!("u-touch-{name}");
        let login = c
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(ctx("a.example", "")),
                user_id: user.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let t0 = login.identity.unwrap().last_seen_unix_seconds;
        // Into the next second.
        server.advance(1);
        let hit = c
            .resolve_session(resolve_req(ctx(
                "a.example",
                &cookie_header(&login.cookies),
            )))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(hit.method, ResolutionMethod::Cookie as i32);
        assert!(!hit.new_session);
        let seen = hit.identity.unwrap();
        assert!(
            seen.last_seen_unix_seconds > t0,
            "{name}: the answer has the hit's time"
        );
        assert_eq!(
            seen.user_id, user,
            "{name}: the user id comes from the store"
        );
        let stored = c
            .lookup_by_user(pb::LookupByUserRequest {
                user: Some(pb::lookup_by_user_request::User::UserId(user.clone())),
                limit: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .identity
            .unwrap();
        if rewritten {
            assert_eq!(
                stored.last_seen_unix_seconds, seen.last_seen_unix_seconds,
                "{name}"
            );
        } else {
            assert_eq!(
                stored.last_seen_unix_seconds, t0,
                "{name}: not rewritten yet"
            );
        }
        // The next hit with the refreshed cookie continues the same session
        // either way.
        let again = c
            .resolve_session(resolve_req(ctx("a.example", &cookie_header(&hit.cookies))))
            .await
            .unwrap()
            .into_inner();
        let again = again.identity.unwrap();
        assert_eq!(again.session_id, seen.session_id);
        assert_eq!(again.client_id, seen.client_id);
    }
}
