//! GA4 interoperability over gRPC: a visitor gtag.js already knows keeps
//! the client id and session its GA4 history is keyed on.

mod common;

use std::collections::BTreeMap;

use common::{cookie_header, ctx, InProc};
use sessionbridge::clock::Clock;
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
    assert_eq!(id.first_seen_unix_seconds, 1661821242);
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

    // Every prefix Google's code writes is read: a path depth after the
    // domain depth, and the older plain `1` version.
    for (header, id) in [
        ("_ga=GA1.2-2.78.1661821242", "78.1661821242"),
        ("_ga=1.2.79.1661821242", "79.1661821242"),
    ] {
        let r = c
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(ctx("shop.example", header)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.method(), ResolutionMethod::GaCookie, "{header}");
        assert_eq!(r.identity.unwrap().client_id, id);
    }

    // Malformed values are not trusted, and say why; an id the service
    // could not give back exactly as written (leading zeros) is one.
    for bad in [
        "_ga=GA1.1.notanumber.1661821242",
        "_ga=GA1.1.5.4102444800",
        "_ga=GA1.1.123456789012.1661821242",
        "_ga=GA1.1.0123.1661821242",
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
        assert_eq!(r.rejected[0].kind(), pb::EvidenceKind::GaCookie);
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

const GL_JS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/gl.js");

/// The `_gl` gtag.js writes for these pairs (the independent JavaScript
/// implementation, run by Node).
fn gtag_write(ua: &str, tz: i32, lang: &str, time_ms: i64, pairs: &[(&str, &str)]) -> String {
    let mut args = vec![
        GL_JS.to_string(),
        "write".into(),
        ua.into(),
        tz.to_string(),
        lang.into(),
        time_ms.to_string(),
    ];
    for (k, v) in pairs {
        args.extend([k.to_string(), v.to_string()]);
    }
    let out = std::process::Command::new("node")
        .args(&args)
        .output()
        .expect("node (Node.js 20) is needed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The pairs gtag.js reads from `gl` at `time_ms`, or None when it refuses
/// the link.
fn gtag_read(
    ua: &str,
    tz: i32,
    lang: &str,
    time_ms: i64,
    gl: &str,
) -> Option<BTreeMap<String, String>> {
    let out = std::process::Command::new("node")
        .args([
            GL_JS,
            "read",
            ua,
            &tz.to_string(),
            lang,
            &time_ms.to_string(),
            gl,
        ])
        .output()
        .expect("node (Node.js 20) is needed for this test");
    match out.status.code() {
        Some(0) => Some(serde_json::from_slice(&out.stdout).unwrap()),
        Some(1) => None,
        other => panic!("gl.js: {other:?} {}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// The server's clock (unix seconds), first moved out of a minute's last
/// ten seconds, so the few calls that follow fall in one minute.
fn settled_now(server: &InProc) -> i64 {
    let now = server.clock.now();
    if now.rem_euclid(60) >= 50 {
        server.advance(60 - now.rem_euclid(60));
    }
    server.clock.now()
}

/// The `_gl` value of a URL, as it is written there.
fn gl_of(url: &str) -> &str {
    let start = url.find("_gl=").expect("a _gl parameter") + 4;
    let rest = &url[start..];
    &rest[..rest.find(['&', '#']).unwrap_or(rest.len())]
}

/// The text after `1*<checksum>*`.
fn payload_of(gl: &str) -> &str {
    gl.splitn(3, '*').nth(2).unwrap()
}

/// A page view of `url` by a browser with this User-Agent and language.
fn arrival(url: &str, ua: &str, accept_language: &str) -> pb::ResolveSessionRequest {
    let host = url::Url::parse(url)
        .unwrap()
        .host_str()
        .unwrap()
        .to_string();
    let mut x = ctx(&host, "");
    x.url = url.into();
    x.user_agent = ua.into();
    x.accept_language = accept_language.into();
    pb::ResolveSessionRequest {
        context: Some(x),
        ..Default::default()
    }
}

const CHROME: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/140.0 Safari/537.36";

/// A `_gl` gtag.js wrote for a browser in UTC-5 speaking en-US is read by
/// the service from the User-Agent and Accept-Language alone: client id and
/// GA4 session (GS2).
#[tokio::test]
async fn a_gl_link_from_gtag_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &[]).await;
    let mut c = server.client().await;
    let now = settled_now(&server);
    let session = format!("s{}$o5$g1$t{}$j0$l0$h0", now - 300, now - 20);
    let gl = gtag_write(
        CHROME,
        300,
        "en-US",
        now * 1000,
        &[("_ga", "555000111.1661821242"), ("_ga_TEST42", &session)],
    );
    let url = format!("https://checkout.partner.example/pay?item=3&_gl={gl}");
    let r = c
        .resolve_session(arrival(&url, CHROME, "en-US,en;q=0.9,de;q=0.5"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::GaLinker, "{:?}", r.rejected);
    let id = r.identity.unwrap();
    assert_eq!(id.client_id, "555000111.1661821242");
    assert_eq!((id.session_id, id.session_number), (now - 300, 5));
    assert_eq!(r.clean_url, "https://checkout.partner.example/pay?item=3");

    // The same link in another browser is refused, as gtag.js refuses it.
    let r = c
        .resolve_session(arrival(&url, "Mozilla/5.0 (Macintosh) Safari/605", "en-US"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::New);
    assert_eq!(r.rejected[0].kind(), pb::EvidenceKind::GaLinker);
    assert_eq!(r.rejected[0].reason(), RejectionReason::FingerprintMismatch);
}

/// gtag.js checksums the low byte of each UTF-16 code unit: a User-Agent
/// with `é` links (a UTF-8 checksum would not match).
#[tokio::test]
async fn a_non_ascii_user_agent_links() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &[]).await;
    let mut c = server.client().await;
    let ua = "Mozilla/5.0 (Linux; Android 14; Téléphone Numéro 5) AppleWebKit/537.36 \
              Chrome/140.0 Mobile Safari/537.36";
    let now = settled_now(&server);
    let gl = gtag_write(ua, -60, "fr-FR", now * 1000, &[("_ga", "31415.1661821242")]);
    let url = format!("https://boutique.example/?_gl={gl}");
    let r = c
        .resolve_session(arrival(&url, ua, "fr-FR,fr;q=0.9"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::GaLinker, "{:?}", r.rejected);
    assert_eq!(r.identity.unwrap().client_id, "31415.1661821242");
}

/// A redirect that percent-encoded the link twice (`*` → `%2A` → `%252A`):
/// gtag.js decodes up to twice, and so does the service.
#[tokio::test]
async fn a_gl_link_a_redirect_encoded_twice_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &[]).await;
    let mut c = server.client().await;
    let now = settled_now(&server);
    let gl = gtag_write(
        CHROME,
        0,
        "en-GB",
        now * 1000,
        &[("_ga", "2718.1661821242")],
    );
    let twice = gl.replace('*', "%2A").replace('%', "%25");
    assert!(twice.contains("%252A") && !twice.contains('*'));
    assert!(
        gtag_read(CHROME, 0, "en-GB", now * 1000, &twice).is_some(),
        "gtag.js reads it"
    );
    let url = format!("https://landing.example/?_gl={twice}&utm_source=x");
    let r = c
        .resolve_session(arrival(&url, CHROME, "en-GB"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::GaLinker, "{:?}", r.rejected);
    assert_eq!(r.identity.unwrap().client_id, "2718.1661821242");
    assert_eq!(r.clean_url, "https://landing.example/?utm_source=x");
}

/// gtag.js accepts a link written in the current minute or the two
/// before: two minutes later it still links; four minutes later it is
/// refused as expired (not as another browser).
#[tokio::test]
async fn a_link_is_good_for_three_minutes_then_expires() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &[]).await;
    let mut c = server.client().await;
    let written = settled_now(&server);
    let gl = gtag_write(
        CHROME,
        300,
        "en-US",
        written * 1000,
        &[("_ga", "1618.1661821242")],
    );
    let url = format!("https://shop.example/?_gl={gl}");

    server.advance(120);
    let r = c
        .resolve_session(arrival(&url, CHROME, "en-US"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::GaLinker, "{:?}", r.rejected);
    assert_eq!(r.identity.unwrap().client_id, "1618.1661821242");

    server.advance(120);
    let r = c
        .resolve_session(arrival(&url, CHROME, "en-US"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::New);
    assert_eq!(r.rejected[0].kind(), pb::EvidenceKind::GaLinker);
    assert_eq!(
        r.rejected[0].reason(),
        RejectionReason::Expired,
        "{:?}",
        r.rejected
    );
    let now_ms = server.clock.now() * 1000;
    assert!(
        gtag_read(CHROME, 300, "en-US", now_ms, &gl).is_none(),
        "gtag.js agrees"
    );
}

/// RecordHandoff writes a `_gl` next to the sealed token; gtag.js accepts
/// it, and a destination reads it even when the token is gone (a sidecar
/// that does not hold the key, or a redirect that kept only `_gl`).
#[tokio::test]
async fn record_handoff_writes_a_gl_the_destination_reads() {
    let dir = tempfile::tempdir().unwrap();
    let a = InProc::start(&dir.path().join("a"), &[]).await;
    // Another deployment, on the same time.
    let b = InProc::start_on(&dir.path().join("b"), &[], a.clock.clone()).await;
    let mut source = ctx("www.brand.example", "");
    source.accept_language = "fr-CA,fr;q=0.8".into();
    let now = settled_now(&a);
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
    let gl = gl_of(&h.decorated_url);
    // gtag.js on a destination without sessionbridge continues the same
    // client id.
    let client_id = h.identity.as_ref().unwrap().client_id.clone();
    let pairs = gtag_read(&source.user_agent, 240, "fr-CA", now * 1000, gl)
        .unwrap_or_else(|| panic!("gtag.js refused {gl}"));
    assert_eq!(pairs["_ga"], client_id);
    assert!(
        gtag_read(&source.user_agent, 0, "fr-CA", now * 1000, gl).is_none(),
        "another time zone is another browser"
    );
    // b has its own development key: the token does not open there, _gl does.
    let r = b
        .client()
        .await
        .resolve_session(arrival(
            &h.decorated_url,
            &source.user_agent,
            "fr-CA,fr;q=0.8",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::GaLinker, "{:?}", r.rejected);
    // Both development keys are called "dev": same id, other secret.
    assert_eq!(
        r.rejected[0].reason(),
        RejectionReason::BadSeal,
        "the token was tried first"
    );
    assert_eq!(r.identity.unwrap().client_id, client_id);
    assert_eq!(r.clean_url, "https://shop.partner.example/p?x=1");

    // A device whose clock is ten minutes ahead: with its Date.now() the
    // link is written for its clock, and gtag.js there accepts it.
    let device_ms = (a.clock.now() + 600) * 1000;
    let h = a
        .client()
        .await
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(source.clone()),
            destination_url: "https://shop.partner.example/".into(),
            ga_linker_timezone_offset: Some(240),
            ga_linker_client_unix_millis: Some(device_ms),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let gl = gl_of(&h.decorated_url);
    assert!(gtag_read(&source.user_agent, 240, "fr-CA", device_ms, gl).is_some());
    assert!(
        gtag_read(&source.user_agent, 240, "fr-CA", a.clock.now() * 1000, gl).is_none(),
        "written for the device's clock, not the server's"
    );

    for (tz, client_ms, field) in [
        (2000, None, "ga_linker_timezone_offset"),
        (
            0,
            Some((now + 2 * 86_400) * 1000),
            "ga_linker_client_time_ms",
        ),
        (0, Some(now), "ga_linker_client_time_ms"),
        (0, Some(i64::MIN), "ga_linker_client_time_ms"),
        (0, Some(i64::MAX), "ga_linker_client_time_ms"),
    ] {
        let err = a
            .client()
            .await
            .record_handoff(pb::RecordHandoffRequest {
                context: Some(source.clone()),
                destination_url: "https://shop.partner.example/".into(),
                ga_linker_timezone_offset: Some(tz),
                ga_linker_client_unix_millis: client_ms,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(common::bad_fields(&err), [field]);
    }
}

/// What gtag.js carries travels in the service's `_gl`, from the source
/// request's cookies, in gtag.js's order: ad clicks, `_gcl_au`, `FPAU`,
/// `_ga`, the GA4 session (GS2), `_fplc`. The destination's gtag.js gets
/// them all, and a destination running sessionbridge continues the session.
#[tokio::test]
async fn gtag_cookies_travel_with_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let a = InProc::start(&dir.path().join("a"), &[]).await;
    let b = InProc::start_on(&dir.path().join("b"), &[], a.clock.clone()).await;
    let now = settled_now(&a);
    let (start, last) = (now - 900, now - 30);
    let cookies = format!(
        "_gcl_au=1.1.560639266.1702047599; _ga=GA1.1.1360384851.1661821242; \
         _ga_ABC123=GS2.1.s{start}$o7$g1$t{last}$j0$l0$h0; theme=dark; \
         _gcl_aw=GCL.{now}.Cj0KCQjw; FPAU=1.2.560639266.1702047599; FPLC=k3j%2Bz%3D%3D"
    );
    let mut source = ctx("www.brand.example", &cookies);
    source.accept_language = "en-US".into();
    let h = a
        .client()
        .await
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(source.clone()),
            destination_url: "https://shop.partner.example/".into(),
            ga_linker_timezone_offset: Some(-120),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.identity.as_ref().unwrap().client_id,
        "1360384851.1661821242"
    );
    let gl = gl_of(&h.decorated_url);
    let keys: Vec<&str> = payload_of(gl).split('*').step_by(2).collect();
    assert_eq!(
        keys,
        ["_gcl_aw", "_gcl_au", "FPAU", "_ga", "_ga_ABC123", "_fplc"]
    );
    let pairs = gtag_read(&source.user_agent, -120, "en-US", now * 1000, gl)
        .unwrap_or_else(|| panic!("gtag.js refused {gl}"));
    let expected: BTreeMap<String, String> = [
        ("_gcl_aw", format!("GCL.{now}.Cj0KCQjw")),
        ("_gcl_au", "560639266.1702047599".into()),
        ("FPAU", "560639266.1702047599".into()),
        ("_ga", "1360384851.1661821242".into()),
        ("_ga_ABC123", format!("s{start}$o7$g1$t{last}$j0$l0$h0")),
        ("_fplc", "k3j%2Bz%3D%3D".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(pairs, expected);

    // sessionbridge on the destination: the same client, the same session.
    let mut arrive = arrival(
        &format!("https://shop.partner.example/?_gl={gl}"),
        &source.user_agent,
        "en-US",
    );
    arrive.context.as_mut().unwrap().cookie_header = String::new();
    let r = b
        .client()
        .await
        .resolve_session(arrive)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::GaLinker, "{:?}", r.rejected);
    let id = r.identity.unwrap();
    assert_eq!(id.client_id, "1360384851.1661821242");
    assert_eq!((id.session_id, id.session_number), (start, 7));
    assert!(!r.new_session);
}

/// A `_gl` survives a chain of server-side hops: each hop's RecordHandoff
/// passes on the payload it arrived with (unknown keys included) under a
/// fresh checksum, for the time-zone offset the link was written for, so
/// the link stays valid as long as each hop is quick, though the whole
/// chain takes longer than any one link lives.
#[tokio::test]
async fn server_side_hops_keep_the_link_alive() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &[]).await;
    let mut c = server.client().await;
    let written = settled_now(&server);
    let session = format!("{}.2.1.{}.0.0.0", written - 400, written - 10);
    let original = gtag_write(
        CHROME,
        -330,
        "hi-IN",
        written * 1000,
        &[
            ("_up", "1"),
            ("_ga", "1414.1661821242"),
            ("_ga_HOPS", &session),
            ("_gcl_aw", "GCL.1700000000.abc"),
        ],
    );
    let hop = |url: String| pb::RecordHandoffRequest {
        context: Some(arrival(&url, CHROME, "hi-IN,en;q=0.5").context.unwrap()),
        destination_url: String::new(),
        ..Default::default()
    };

    // Hop 1, a redirect service: no page, no time zone given.
    server.advance(100);
    let h1 = c
        .record_handoff(pb::RecordHandoffRequest {
            destination_url: "https://hop2.example/go".into(),
            ..hop(format!("https://hop1.example/r?_gl={original}"))
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h1.identity.as_ref().unwrap().client_id, "1414.1661821242");
    let gl1 = gl_of(&h1.decorated_url);
    assert_eq!(payload_of(gl1), payload_of(&original), "the same payload");
    assert_ne!(gl1, original, "a fresh checksum");

    // Hop 2, a hundred seconds later.
    server.advance(100);
    let h2 = c
        .record_handoff(pb::RecordHandoffRequest {
            destination_url: "https://shop.example/".into(),
            ..hop(h1.decorated_url.clone())
        })
        .await
        .unwrap()
        .into_inner();
    let gl2 = gl_of(&h2.decorated_url).to_string();
    assert_eq!(payload_of(&gl2), payload_of(&original));

    // The shop, another hundred seconds later: five minutes after the
    // original was written, which alone is refused.
    server.advance(100);
    let now_ms = server.clock.now() * 1000;
    assert!(gtag_read(CHROME, -330, "hi-IN", now_ms, &original).is_none());
    let pairs = gtag_read(CHROME, -330, "hi-IN", now_ms, &gl2)
        .unwrap_or_else(|| panic!("gtag.js refused {gl2}"));
    assert_eq!(pairs["_up"], "1");
    assert_eq!(pairs["_ga_HOPS"], session);
    assert_eq!(pairs["_gcl_aw"], "GCL.1700000000.abc");
    let r = c
        .resolve_session(arrival(
            &format!("https://shop.example/?_gl={gl2}"),
            CHROME,
            "hi-IN,en;q=0.5",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::GaLinker, "{:?}", r.rejected);
    let id = r.identity.unwrap();
    assert_eq!(id.client_id, "1414.1661821242");
    assert_eq!(id.session_id, written - 400);

    // A hop that is too slow has nothing to pass on: the link it got has
    // expired, and without a time zone no `_gl` is written.
    server.advance(240);
    let late = c
        .record_handoff(pb::RecordHandoffRequest {
            destination_url: "https://shop.example/".into(),
            ..hop(h2.decorated_url.clone())
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        !late.decorated_url.contains("_gl="),
        "{}",
        late.decorated_url
    );
}
