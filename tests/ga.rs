//! GA4 interoperability over gRPC: a visitor gtag.js already knows keeps
//! the client id and session its GA4 history is keyed on.

mod common;

use common::{cookie_header, ctx, InProc};
use sessionbridge::pb::{self, RejectionReason, ResolutionMethod};
use sessionbridge::service::now_unix;

#[tokio::test]
async fn existing_ga_cookies_are_adopted_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &[]).await;
    let mut c = server.client().await;
    let now = now_unix();
    let (start, last) = (now - 600, now - 60);

    // A live GA4 session in the newer GS2 format: client and session kept.
    let header = format!(
        "_ga=GA1.1.1360384851.1661821242; _ga_ABC123=GS2.1.s{start}$o7$g1$t{last}$j0$l0$h0"
    );
    let minted = c
        .mint_cookie(pb::MintCookieRequest {
            context: Some(ctx("shop.example", &header)),
            ga_cookie: Some(true),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(minted.method(), ResolutionMethod::GaCookie);
    let id = minted.identity.clone().unwrap();
    assert_eq!(id.client_id, "1360384851.1661821242");
    assert_eq!((id.session_id, id.session_number), (start, 7));
    assert!(!minted.new_session);
    assert_eq!(id.first_seen_unix, 1661821242);
    let ga = minted.cookies.iter().find(|c| c.name == "_ga").unwrap();
    assert_eq!(
        ga.value, "GA1.2.1360384851.1661821242",
        "gtag.js keeps reading the same id"
    );

    // From then on the own cookie rules, and agrees.
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx(
                "shop.example",
                &format!("{header}; {}", cookie_header(&minted.cookies)),
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::Cookie);
    assert_eq!(r.identity.unwrap().session_id, start);

    // An older GS1 session past the inactivity timeout: same client, the
    // next session number.
    let stale = format!(
        "_ga=GA1.1.42.1661821242; _ga_XYZ=GS1.1.{}.3.1.{}.0.0.0",
        now - 9000,
        now - 7200
    );
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("shop.example", &stale)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::GaCookie);
    let id = r.identity.unwrap();
    assert_eq!(
        (id.client_id.as_str(), id.session_number),
        ("42.1661821242", 4)
    );
    assert!(r.new_session && !r.new_client);

    // Only _ga: the client is adopted, its first session starts now.
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("shop.example", "_ga=GA1.2.77.1661821242")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = r.identity.unwrap();
    assert_eq!(
        (id.client_id.as_str(), id.session_number),
        ("77.1661821242", 1)
    );
    assert!(id.session_id >= now);

    // Malformed values are not trusted, and say why.
    for bad in [
        "_ga=GA1.1.notanumber.1661821242",
        "_ga=GA1.1.5.4102444800",
        "_ga=GA1.1.123456789012.1661821242",
    ] {
        let r = c
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(ctx("shop.example", bad)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.method(), ResolutionMethod::New, "{bad}");
        assert_eq!(r.rejected[0].source(), ResolutionMethod::GaCookie);
        let want = if bad.contains("4102444800") {
            RejectionReason::FromTheFuture
        } else {
            RejectionReason::Malformed
        };
        assert_eq!(r.rejected[0].reason(), want, "{bad}");
    }
    // A broken session cookie does not stop the client id's adoption.
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx(
                "shop.example",
                "_ga=GA1.1.88.1661821242; _ga_ABC=GS2.1.garbage",
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::GaCookie);
    assert_eq!(r.identity.unwrap().client_id, "88.1661821242");
    assert_eq!(r.rejected.len(), 1);
}

/// A `_gl` written by an independent JavaScript implementation of the
/// browser algorithm (Node), for a browser in UTC-5 speaking en-US, is read
/// by the service from the User-Agent and Accept-Language alone.
#[tokio::test]
async fn a_gl_link_from_the_browser_algorithm_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &[]).await;
    let mut c = server.client().await;
    let ua =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/140.0 Safari/537.36";
    let now = now_unix();
    let session = format!("GS2.1.s{}$o5$g1$t{}$j0$l0$h0", now - 300, now - 20);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/gl.js");
    let out = std::process::Command::new("node")
        .args([
            script,
            "write",
            ua,
            "300",
            "en-US",
            "GA1.1.555000111.1661821242",
            "_ga_TEST42",
            &session,
        ])
        .output()
        .expect("node (Node.js 20) is needed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gl = String::from_utf8(out.stdout).unwrap();

    let request = |user_agent: &str| {
        let mut x = ctx("checkout.partner.example", "");
        x.url = format!("https://checkout.partner.example/pay?item=3&_gl={gl}");
        x.user_agent = user_agent.into();
        x.accept_language = "en-US,en;q=0.9,de;q=0.5".into();
        pb::ResolveSessionRequest {
            context: Some(x),
            ..Default::default()
        }
    };
    let r = c.resolve_session(request(ua)).await.unwrap().into_inner();
    assert_eq!(r.method(), ResolutionMethod::GaLinker, "{:?}", r.rejected);
    let id = r.identity.unwrap();
    assert_eq!(id.client_id, "555000111.1661821242");
    assert_eq!((id.session_id, id.session_number), (now - 300, 5));
    assert_eq!(r.clean_url, "https://checkout.partner.example/pay?item=3");

    // The same link in another browser is refused, as gtag.js refuses it.
    let r = c
        .resolve_session(request("Mozilla/5.0 (Macintosh) Safari/605"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::New);
    assert_eq!(r.rejected[0].source(), ResolutionMethod::GaLinker);
    assert_eq!(r.rejected[0].reason(), RejectionReason::FingerprintMismatch);
}

/// RecordHandoff writes a `_gl` next to the sealed token; a destination
/// reads it even when the token is gone (a sidecar that does not hold the
/// key, or a redirect that kept only `_gl`).
#[tokio::test]
async fn record_handoff_writes_a_gl_the_destination_reads() {
    let dir = tempfile::tempdir().unwrap();
    let a = InProc::start(&dir.path().join("a"), &[]).await;
    let b = InProc::start(&dir.path().join("b"), &[]).await;
    let mut source = ctx("www.brand.example", "");
    source.accept_language = "fr-CA,fr;q=0.8".into();
    let h = a
        .client()
        .await
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(source.clone()),
            destination_url: "https://shop.partner.example/p?x=1".into(),
            ga_linker_timezone_offset: Some(240),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(h.decorated_url.contains("&_gl=1*"), "{}", h.decorated_url);
    let gl = h.decorated_url.split("_gl=").nth(1).unwrap();
    // The browser algorithm accepts it: gtag.js on a destination without
    // sessionbridge continues the same client id.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/gl.js");
    let verify = |tz: &str| {
        std::process::Command::new("node")
            .args([script, "verify", &source.user_agent, tz, "fr-CA", gl])
            .output()
            .expect("node (Node.js 20) is needed for this test")
    };
    let out = verify("240");
    assert!(out.status.success(), "the browser algorithm refused {gl}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        h.identity.as_ref().unwrap().client_id
    );
    assert!(
        !verify("0").status.success(),
        "another time zone is another browser"
    );
    // b has its own development key: the token does not open there, _gl does.
    let mut arrive = ctx("shop.partner.example", "");
    arrive.url = h.decorated_url.clone();
    arrive.user_agent = source.user_agent.clone();
    arrive.accept_language = "fr-CA,fr;q=0.8".into();
    let r = b
        .client()
        .await
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(arrive),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::GaLinker);
    // Both development keys are called "dev": same id, other secret.
    assert_eq!(
        r.rejected[0].reason(),
        RejectionReason::BadSeal,
        "the token was tried first"
    );
    assert_eq!(r.identity.unwrap().client_id, h.identity.unwrap().client_id);
    assert_eq!(r.clean_url, "https://shop.partner.example/p?x=1");

    let err = a
        .client()
        .await
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(source),
            destination_url: "https://shop.partner.example/".into(),
            ga_linker_timezone_offset: Some(2000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(common::bad_fields(&err), ["ga_linker_timezone_offset"]);
}
