//! The seed document's four scenarios, end to end, each domain with its own
//! sidecar process unless the scenario needs a shared store.

mod common;

use common::{cookie_header, ctx, keyfile, InProc};
use sessionbridge::pb::{self, RejectionReason, ResolutionMethod};

/// Scenario 1: your site → Stripe-hosted checkout → back. The token rides in
/// `client_reference_id` and in the success URL; both the browser's return
/// and Stripe's webhook (no cookie, no referrer) resolve to the original
/// session; a third presentation is refused.
#[tokio::test]
async fn stripe_checkout_return_and_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let k = keys.to_str().unwrap();
    let shop = InProc::start(&dir.path().join("shop"), &["--keys", k]).await;
    // The return and webhook land on another domain's sidecar.
    let orders = InProc::start(&dir.path().join("orders"), &["--keys", k]).await;

    let mut shop_c = shop.client().await;
    let visit = shop_c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("www.shop.example", "")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let original = visit.identity.unwrap();

    let h = shop_c
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(ctx("www.shop.example", &cookie_header(&visit.cookies))),
            destination_url:
                "https://orders.example-payments.test/thanks?session={CHECKOUT_SESSION_ID}".into(),
            extra_audience: vec!["hooks.example-payments.test".into()],
            // The return page view: once, within half an hour. Webhooks:
            // the default passive lifetime (one day).
            ttl_seconds: 1800,
            max_uses: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let client_reference_id = h.token.clone();
    assert!(client_reference_id.len() <= 200);
    assert!(client_reference_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));

    let mut orders_c = orders.client().await;
    // The browser comes back through the success URL.
    let mut ret = ctx("orders.example-payments.test", "");
    ret.url = h
        .decorated_url
        .replace("{CHECKOUT_SESSION_ID}", "cs_test_123");
    ret.referer = "https://checkout.stripe.com/".into();
    let back = orders_c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ret),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(back.method(), ResolutionMethod::HandoffToken);
    let id = back.identity.unwrap();
    assert_eq!(
        (id.client_id.as_str(), id.session_id),
        (original.client_id.as_str(), original.session_id)
    );
    assert_eq!(
        back.clean_url,
        "https://orders.example-payments.test/thanks?session=cs_test_123"
    );

    // Stripe's webhook: server to server, the token from the event's
    // client_reference_id, no cookie, no referrer.
    let webhook = pb::ResolveSessionRequest {
        context: Some(pb::RequestContext {
            host: "hooks.example-payments.test".into(),
            user_agent: "Stripe/1.0 (+https://stripe.com/docs/webhooks)".into(),
            ..Default::default()
        }),
        handoff_token: client_reference_id.clone(),
        passive: true,
        ..Default::default()
    };
    let hook = orders_c
        .resolve_session(webhook.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hook.method(), ResolutionMethod::HandoffToken);
    let hid = hook.identity.unwrap();
    assert_eq!(
        (hid.client_id.as_str(), hid.session_id),
        (original.client_id.as_str(), original.session_id)
    );
    assert!(
        hook.cookies.is_empty() && !hook.new_session,
        "a webhook is not a page view"
    );

    // Stripe delivers at least once and retries: the same webhook, five
    // times, the last an hour later, names the same visitor every time, and
    // spends nothing.
    for delivery in 2..=5 {
        if delivery == 5 {
            orders.advance(3600);
        }
        let again = orders_c
            .resolve_session(webhook.clone())
            .await
            .unwrap_or_else(|s| panic!("delivery {delivery}: {s:?}"))
            .into_inner();
        assert_eq!(again.method(), ResolutionMethod::HandoffToken);
        let aid = again.identity.unwrap();
        assert_eq!(
            (aid.client_id.as_str(), aid.session_id),
            (original.client_id.as_str(), original.session_id),
            "delivery {delivery}"
        );
        assert!(again.cookies.is_empty() && !again.new_client);
    }

    // A page view with the same token an hour later is still refused (its
    // own lifetime is minutes), and gets a new visitor, not the original.
    let mut late = ctx("orders.example-payments.test", "");
    late.url = format!("https://orders.example-payments.test/thanks?_sbt={client_reference_id}");
    let replay = orders_c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(late),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay.method(), ResolutionMethod::New);
    assert_eq!(replay.rejected[0].reason(), RejectionReason::Expired);
    assert_ne!(replay.identity.unwrap().client_id, original.client_id);

    // A passive call with a forged token: NOT_FOUND, nothing minted.
    let mut forged = webhook.clone();
    forged.handoff_token = format!("{}A", &client_reference_id[..client_reference_id.len() - 1]);
    let err = orders_c.resolve_session(forged).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

/// Scenario 2: your site → a Shopify store that drops every parameter. Both
/// domains use one shared sidecar (the bridge needs a shared store); the
/// visitor arrives with only the origin-only Referer a browser sends
/// cross-site, and is matched by the referrer bridge.
#[tokio::test]
async fn shopify_arrival_without_parameters_matches_the_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let shared = InProc::start(&dir.path().join("shared"), &[]).await;
    let mut c = shared.client().await;

    let leave = |ua: &str, ip: &str| {
        let mut x = ctx("www.brand.example", "");
        x.user_agent = ua.into();
        x.client_ip = ip.into();
        pb::RecordHandoffRequest {
            context: Some(x),
            destination_url: "https://brand-store.myshopify.example/products/tee".into(),
            ..Default::default()
        }
    };
    let arrive = |ua: &str, ip: &str, referer: &str| {
        let mut x = ctx("brand-store.myshopify.example", "");
        x.url = "https://brand-store.myshopify.example/products/tee".into();
        x.user_agent = ua.into();
        x.client_ip = ip.into();
        x.referer = referer.into();
        pb::ResolveSessionRequest {
            context: Some(x),
            ..Default::default()
        }
    };
    let ua = "Mozilla/5.0 (Macintosh) Safari/605.1.15";
    let h = c
        .record_handoff(leave(ua, "198.51.100.23"))
        .await
        .unwrap()
        .into_inner();
    let source = h.identity.unwrap();

    // Another browser from the same network, then a visitor from elsewhere:
    // neither is matched.
    for (other_ua, ip) in [
        ("Mozilla/5.0 (Windows) Chrome/140", "198.51.100.23"),
        (ua, "192.0.2.99"),
    ] {
        let r = c
            .resolve_session(arrive(other_ua, ip, "https://www.brand.example/"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.method(), ResolutionMethod::New);
    }

    // The visitor, from a neighbouring address of the same /24 network.
    let r = c
        .resolve_session(arrive(ua, "198.51.100.24", "https://www.brand.example/"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::ReferrerBridge);
    assert!((0.6..=0.9).contains(&r.confidence), "{}", r.confidence);
    let id = r.identity.unwrap();
    assert_eq!(
        (id.client_id.as_str(), id.session_id),
        (source.client_id.as_str(), source.session_id)
    );

    // One hand-off matches one arrival.
    let again = c
        .resolve_session(arrive(ua, "198.51.100.23", "https://www.brand.example/"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.method(), ResolutionMethod::New);

    // Past the window, no match.
    c.record_handoff(leave(ua, "198.51.100.23")).await.unwrap();
    // Past the default 60-second window, on the server's clock.
    shared.advance(61);
    let late = c
        .resolve_session(arrive(ua, "198.51.100.23", "https://www.brand.example/"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(late.method(), ResolutionMethod::New);
}

/// The bridge is a heuristic and never overrides stronger evidence: a
/// visitor who already has the store's cookie keeps it.
#[tokio::test]
async fn the_bridge_never_overrides_a_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let shared = InProc::start(&dir.path().join("shared"), &[]).await;
    let mut c = shared.client().await;
    let existing = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx("store.example-shop.test", "")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    c.record_handoff(pb::RecordHandoffRequest {
        context: Some(ctx("www.brand.example", "")),
        destination_url: "https://store.example-shop.test/".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut x = ctx("store.example-shop.test", &cookie_header(&existing.cookies));
    x.referer = "https://www.brand.example/".into();
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(x),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::Cookie);
    assert_eq!(
        r.identity.unwrap().client_id,
        existing.identity.unwrap().client_id
    );
}

/// Scenario 3: a SaaS with three workspace domains, each with its own
/// sidecar. The user id is inherited everywhere (seed approach 5), and
/// hand-offs between workspaces keep one client id.
#[tokio::test]
async fn multi_workspace_saas_user_id_inheritance() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let k = keys.to_str().unwrap();
    let hosts = [
        "app.acme-one.test",
        "app.acme-two.test",
        "app.acme-three.test",
    ];
    let mut servers: Vec<InProc> = Vec::new();
    for i in 0..hosts.len() {
        servers.push(InProc::start(&dir.path().join(format!("w{i}")), &["--keys", k]).await);
    }

    let mut first = servers[0].client().await;
    let login = first
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx(hosts[0], "")),
            user_id: "acct-77".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let original = login.identity.unwrap();
    let mut cookies = login.cookies;
    let mut from = 0;
    for to in 1..3 {
        let h = servers[from]
            .client()
            .await
            .record_handoff(pb::RecordHandoffRequest {
                context: Some(ctx(hosts[from], &cookie_header(&cookies))),
                destination_url: format!("https://{}/dashboard", hosts[to]),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut x = ctx(hosts[to], "");
        x.url = h.decorated_url;
        // Each workspace's backend knows the logged-in user and says so.
        let r = servers[to]
            .client()
            .await
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(x),
                user_id: "acct-77".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.method(),
            ResolutionMethod::HandoffToken,
            "token outranks the user link"
        );
        let id = r.identity.unwrap();
        assert_eq!(id.client_id, original.client_id);
        assert_eq!(id.session_id, original.session_id);
        assert_eq!(id.user_id, "acct-77");
        // Each workspace can now look the user up on its own.
        let found = servers[to]
            .client()
            .await
            .lookup_by_user(pb::LookupByUserRequest {
                user: Some(pb::lookup_by_user_request::User::UserId("acct-77".into())),
                limit: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(found.identity.unwrap().client_id, original.client_id);
        cookies = r.cookies;
        from = to;
    }
}

/// Scenario 4: many subdomains. One parent-domain cookie minted on
/// shop.example.com is honoured on checkout.example.com by another sidecar;
/// `example.co.uk`-style suffixes give `Domain=example.co.uk`; a lookalike
/// domain cannot use the cookie.
#[tokio::test]
async fn many_subdomains_share_one_parent_domain_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let k = keys.to_str().unwrap();
    let allowed = "example.com,example.co.uk,example-lookalike.com";
    let shop = InProc::start(
        &dir.path().join("shop"),
        &["--keys", k, "--allowed-domains", allowed],
    )
    .await;
    let checkout = InProc::start(
        &dir.path().join("checkout"),
        &["--keys", k, "--allowed-domains", allowed],
    )
    .await;

    for (a, b, domain) in [
        ("shop.example.com", "checkout.example.com", "example.com"),
        (
            "shop.example.co.uk",
            "checkout.example.co.uk",
            "example.co.uk",
        ),
    ] {
        let minted = shop
            .client()
            .await
            .mint_cookie(pb::MintCookieRequest {
                context: Some(ctx(a, "")),
                ga_cookie: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(minted.cookies[0].domain, domain);
        let r = checkout
            .client()
            .await
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(ctx(b, &cookie_header(&minted.cookies))),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.method(), ResolutionMethod::Cookie, "{b}");
        assert_eq!(
            r.identity.unwrap().client_id,
            minted.identity.unwrap().client_id
        );

        // The same value replayed on a lookalike site is refused.
        let r = checkout
            .client()
            .await
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(ctx(
                    "www.example-lookalike.com",
                    &cookie_header(&minted.cookies),
                )),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.method(), ResolutionMethod::New);
        assert_eq!(r.rejected[0].reason(), RejectionReason::BadSeal);
    }
}

/// Seed approach 3 as written (a raw id in the URL) is off by default, and
/// when enabled it is accepted only from allow-listed referrers.
#[tokio::test]
async fn raw_session_id_parameter_is_opt_in_and_referrer_bound() {
    let dir = tempfile::tempdir().unwrap();
    let off = InProc::start(&dir.path().join("off"), &[]).await;
    let on = InProc::start(
        &dir.path().join("on"),
        &["--session-id-param-referrers", "partner.example"],
    )
    .await;
    let victim = "1234567.1700000000";
    let req = |referer: &str| {
        let mut x = ctx("shop.example", "");
        x.url = format!("https://shop.example/landing?session_id={victim}&utm=1");
        x.referer = referer.into();
        pb::ResolveSessionRequest {
            context: Some(x),
            ..Default::default()
        }
    };
    let r = off
        .client()
        .await
        .resolve_session(req("https://partner.example/"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::New);
    assert_ne!(r.identity.unwrap().client_id, victim);
    assert!(
        r.rejected.is_empty() && r.clean_url.is_empty(),
        "off: the parameter is not ours"
    );

    let mut on_c = on.client().await;
    let r = on_c
        .resolve_session(req("https://attacker.example/"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::New);
    assert_eq!(r.rejected[0].reason(), RejectionReason::NotAllowed);
    assert_eq!(r.clean_url, "https://shop.example/landing?utm=1");

    let r = on_c
        .resolve_session(req("https://www.partner.example/checkout"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.method(), ResolutionMethod::SessionIdParameter);
    assert_eq!(r.confidence, 0.5);
    assert_eq!(r.identity.unwrap().client_id, victim);
}
