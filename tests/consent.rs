//! GA4 Consent Mode v2 and Global Privacy Control over gRPC: the four
//! signals in force are reported, ad signals keep ad-click ids out of a
//! `_gl`, tokens carry the source's signals, and Sec-GPC is honoured as
//! configured.

mod common;

use common::{cookie_header, InProc, UA};
use sessionbridge::pb::{self, ConsentState as S, ResolutionMethod};

const GCLID: &str = "GCL.1795000000.Cj0KCQiAtestclick";

fn ctx(host: &str, cookies: &str) -> pb::RequestContext {
    pb::RequestContext {
        host: host.into(),
        url: format!("https://{host}/"),
        user_agent: UA.into(),
        cookie_header: cookies.into(),
        client_ip: "198.51.100.20".into(),
        accept_language: "en-US".into(),
        ..Default::default()
    }
}

fn consent(analytics: S, ads: S) -> Option<pb::Consent> {
    Some(pb::Consent {
        analytics_storage: analytics as i32,
        ad_storage: ads as i32,
        ad_user_data: ads as i32,
        ad_personalization: ads as i32,
    })
}

async fn handoff(c: &mut common::Client, context: pb::RequestContext) -> pb::RecordHandoffResponse {
    c.record_handoff(pb::RecordHandoffRequest {
        context: Some(context),
        destination_url: "https://checkout.example.net/pay".into(),
        ga_linker_timezone_offset: Some(-60),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}

fn gl_of(url: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "_gl")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn consent_mode_and_global_privacy_control() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(
        &dir.path().join("data"),
        &["--allowed-domains", "example.com,example.net"],
    )
    .await;
    let mut c = server.client().await;
    let first = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("shop.example.com", "")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let state = first.consent.unwrap();
    assert_eq!(
        (state.analytics_storage(), state.ad_storage()),
        (S::Granted, S::Granted),
        "the configured default fills every signal"
    );
    let jar = format!("{}; _gcl_aw={GCLID}", cookie_header(&first.cookies));

    // Ads granted: the ad click travels in the `_gl`.
    let mut granted = ctx("shop.example.com", &jar);
    granted.consent = consent(S::Granted, S::Granted);
    let h = handoff(&mut c, granted.clone()).await;
    assert!(
        gl_of(&h.decorated_url).contains("*_gcl_aw*"),
        "{}",
        h.decorated_url
    );

    // Ads denied: no ad-click id in the link, the analytics id still.
    let mut denied = ctx("shop.example.com", &jar);
    denied.consent = consent(S::Granted, S::Denied);
    let h = handoff(&mut c, denied).await;
    let gl = gl_of(&h.decorated_url);
    assert!(gl.contains("*_ga*") && !gl.contains("_gcl"), "{gl}");

    // Global Privacy Control denies the ad signals, whatever is stated.
    let mut gpc = granted.clone();
    gpc.global_privacy_control = true;
    let h = handoff(&mut c, gpc.clone()).await;
    assert!(!gl_of(&h.decorated_url).contains("_gcl"));
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(gpc),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let state = r.consent.unwrap();
    assert_eq!(state.analytics_storage(), S::Granted);
    assert_eq!(
        (
            state.ad_storage(),
            state.ad_user_data(),
            state.ad_personalization()
        ),
        (S::Denied, S::Denied, S::Denied)
    );
    assert_eq!(
        r.method(),
        ResolutionMethod::Cookie,
        "analytics stays by default"
    );

    // The token carries the source's signals; the destination's own
    // statement wins.
    let mut source = ctx("shop.example.com", &jar);
    source.consent = consent(S::Granted, S::Denied);
    let h = handoff(&mut c, source).await;
    let mut arrive = ctx("checkout.example.net", "");
    arrive.url = h.decorated_url.clone();
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(arrive.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::HandoffToken);
    assert_eq!(r.consent.unwrap().ad_user_data(), S::Denied, "carried");
}

#[tokio::test]
async fn global_privacy_control_can_deny_analytics_too() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(
        &dir.path().join("data"),
        &["--gpc-denies-analytics", "true"],
    )
    .await;
    let mut c = server.client().await;
    let mut gpc = ctx("shop.example.com", "");
    gpc.global_privacy_control = true;
    gpc.consent = consent(S::Granted, S::Granted);
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(gpc),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::NoConsent);
    assert!(!r.persisted && r.cookies.is_empty());
    assert_eq!(r.consent.unwrap().analytics_storage(), S::Denied);
}
