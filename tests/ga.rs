//! GA4 interoperability over gRPC: a visitor gtag.js already knows keeps
//! the client id and session its GA4 history is keyed on.

mod common;

use common::{cookie_header, ctx, Server};
use sessionbridge::pb::{self, RejectionReason, ResolutionMethod};
use sessionbridge::service::now_unix;

#[tokio::test]
async fn existing_ga_cookies_are_adopted_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
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
        assert_eq!(r.rejected[0].reason(), RejectionReason::Malformed);
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
