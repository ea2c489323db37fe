//! The attacks on evidence trust, each tried over gRPC against the real
//! server, on the embedded store and on Redis: forged client ids (`_ga`,
//! `_gl`, the bridge, a raw session id) never reveal or move a user; the
//! bridge never hands an identity to a second person; time from the visitor
//! never stretches a lifetime; planted cookies decide nothing silently;
//! tokens go only where the operator allows, once.

mod common;

use base64::Engine;
use common::{cookie_header, InProc, UA};
use sessionbridge::clock::Clock;
use sessionbridge::pb::{self, RejectionReason, ResolutionMethod};

const SHOP: &str = "shop.example.com";
const CHECKOUT: &str = "checkout.example.net";

fn flags(store: &[String]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--allowed-domains",
        "example.com,example.net",
        "--handoff-destinations",
        "pay.example-psp.test",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend_from_slice(store);
    v
}

fn context(host: &str, cookies: &str, ip: &str) -> pb::RequestContext {
    pb::RequestContext {
        host: host.into(),
        url: format!("https://{host}/"),
        user_agent: UA.into(),
        cookie_header: cookies.into(),
        client_ip: ip.into(),
        accept_language: "en-US".into(),
        ..Default::default()
    }
}

async fn resolve(
    c: &mut common::Client,
    ctx: pb::RequestContext,
    user_id: &str,
) -> pb::ResolveSessionResponse {
    c.resolve_session(pb::ResolveSessionRequest {
        context: Some(ctx),
        user_id: user_id.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}

fn reasons(r: &pb::ResolveSessionResponse) -> Vec<RejectionReason> {
    r.rejected.iter().map(|x| x.reason()).collect()
}

/// A `_gl` as the published linker arithmetic makes it, for the given
/// browser: anyone can compute one, for any client id.
fn forge_gl(client_id: &str, ua: &str, tz: i32, lang: &str, now: i64) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE
        .encode(client_id)
        .replace('=', ".");
    let payload = format!("_ga*{b64}");
    let mut h = crc32fast::Hasher::new();
    h.update(format!("{ua}*{tz}*{lang}*{}*{payload}", now.div_euclid(60)).as_bytes());
    let mut n = h.finalize();
    let mut sum = Vec::new();
    loop {
        sum.push(std::char::from_digit(n % 36, 36).unwrap());
        n /= 36;
        if n == 0 {
            break;
        }
    }
    let sum: String = sum.into_iter().rev().collect();
    format!("1*{sum}*{payload}")
}

async fn attacks(store: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let keyfile = common::keyfile(dir.path());
    let mut flags = flags(store);
    flags.extend(["--keys".to_string(), keyfile.display().to_string()]);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = InProc::start(&dir.path().join("data"), &args).await;
    let mut c = server.client().await;

    // The victim logs in on the shop.
    let victim = resolve(&mut c, context(SHOP, "", "198.51.100.10"), "victim").await;
    let victim_id = victim.identity.clone().unwrap();
    assert_eq!(victim_id.user_id, "victim");
    let victim_cookie = cookie_header(&victim.cookies);

    // 1. A forged `_ga` naming the victim's client: no user, no state.
    let forged = format!("_ga=GA1.2.{}", victim_id.client_id);
    let r = resolve(&mut c, context(SHOP, &forged, "203.0.113.66"), "").await;
    let id = r.identity.clone().unwrap();
    assert_eq!(id.user_id, "", "a forged _ga must not reveal the user");
    assert_ne!(id.client_id, victim_id.client_id);
    assert_eq!(r.method(), ResolutionMethod::New);
    assert_eq!(reasons(&r), [RejectionReason::LinkedToUser]);
    // ...and logging in with what it got moves nobody.
    let attacker = resolve(
        &mut c,
        context(SHOP, &cookie_header(&r.cookies), "203.0.113.66"),
        "attacker",
    )
    .await;
    assert_ne!(attacker.identity.unwrap().client_id, victim_id.client_id);
    let again = resolve(&mut c, context(SHOP, &victim_cookie, "198.51.100.10"), "").await;
    assert_eq!(
        again.identity.unwrap().user_id,
        "victim",
        "the victim keeps the user"
    );

    // 2. A `_gl` computed for the attacker's own browser, naming the victim.
    let now = server.clock.now();
    let gl = forge_gl(&victim_id.client_id, UA, 0, "en-US", now);
    let mut ctx = context(CHECKOUT, "", "203.0.113.66");
    ctx.url = format!("https://{CHECKOUT}/?_gl={gl}");
    let r = resolve(&mut c, ctx, "").await;
    assert_eq!(r.identity.clone().unwrap().user_id, "");
    assert_ne!(r.identity.clone().unwrap().client_id, victim_id.client_id);
    assert_eq!(reasons(&r), [RejectionReason::LinkedToUser]);

    // 3. A client linked to no user: forgeable evidence may carry its
    // analytics id (GA does the same), but a login on it starts afresh and
    // never takes the client over.
    let anon = resolve(&mut c, context(SHOP, "", "198.51.100.11"), "").await;
    let anon_id = anon.identity.clone().unwrap();
    let forged = format!("_ga=GA1.2.{}", anon_id.client_id);
    let adopted = resolve(&mut c, context(SHOP, &forged, "203.0.113.66"), "").await;
    assert_eq!(adopted.method(), ResolutionMethod::GaCookie);
    assert_eq!(
        adopted.identity.clone().unwrap().client_id,
        anon_id.client_id
    );
    let login = resolve(
        &mut c,
        context(SHOP, &cookie_header(&adopted.cookies), "203.0.113.66"),
        "attacker",
    )
    .await;
    assert_ne!(
        login.identity.unwrap().client_id,
        anon_id.client_id,
        "a login never links a client forgeable evidence named"
    );
    let back = resolve(
        &mut c,
        context(SHOP, &cookie_header(&anon.cookies), "198.51.100.11"),
        "",
    )
    .await;
    assert_eq!(
        back.identity.unwrap().user_id,
        "",
        "the anonymous visitor is not the attacker"
    );

    // 4. The referrer bridge.
    let leave = |cookies: &str, ip: &str| pb::RecordHandoffRequest {
        context: Some(context(SHOP, cookies, ip)),
        destination_url: format!("https://{CHECKOUT}/cart"),
        ..Default::default()
    };
    let arrive = |ip: &str| {
        let mut ctx = context(CHECKOUT, "", ip);
        ctx.referer = format!("https://{SHOP}/");
        ctx
    };
    // The visitor redeems the link: a stranger with the same browser and
    // network arriving next gets nothing.
    let h = c
        .record_handoff(leave(&victim_cookie, "198.51.100.10"))
        .await
        .unwrap()
        .into_inner();
    let mut with_token = arrive("198.51.100.10");
    with_token.url = h.decorated_url.clone();
    let redeemed = resolve(&mut c, with_token, "").await;
    assert_eq!(redeemed.method(), ResolutionMethod::HandoffToken);
    let stranger = resolve(&mut c, arrive("198.51.100.99"), "").await;
    assert_eq!(
        stranger.method(),
        ResolutionMethod::New,
        "entry dropped on redemption"
    );
    // Without the visitor's address there is no bridge at all.
    c.record_handoff(leave(&victim_cookie, "")).await.unwrap();
    let anywhere = resolve(&mut c, arrive(""), "").await;
    assert_eq!(anywhere.method(), ResolutionMethod::New);
    // Two visitors behind one NAT within the window: nobody is matched.
    let other = resolve(&mut c, context(SHOP, "", "198.51.100.12"), "").await;
    c.record_handoff(leave(&cookie_header(&anon.cookies), "198.51.100.12"))
        .await
        .unwrap();
    c.record_handoff(leave(&cookie_header(&other.cookies), "198.51.100.13"))
        .await
        .unwrap();
    let first = resolve(&mut c, arrive("198.51.100.12"), "").await;
    assert_eq!(first.method(), ResolutionMethod::New);
    assert_eq!(reasons(&first), [RejectionReason::Conflict]);
    // A bridge match never carries a user.
    c.record_handoff(leave(&victim_cookie, "198.51.100.10"))
        .await
        .unwrap();
    let bridged = resolve(&mut c, arrive("198.51.100.10"), "").await;
    assert_eq!(bridged.method(), ResolutionMethod::New);
    assert_eq!(reasons(&bridged), [RejectionReason::LinkedToUser]);
    assert_eq!(bridged.identity.unwrap().user_id, "");

    // 5. Time from the visitor.
    let now = server.clock.now();
    let future = format!(
        "_ga=GA1.2.1234567.{}; _ga_ABC=GS2.1.s{}$o3$t{}",
        now - 1000,
        now - 500,
        now + 86_000
    );
    let r = resolve(&mut c, context(SHOP, &future, "203.0.113.70"), "").await;
    assert!(
        reasons(&r).contains(&RejectionReason::FromTheFuture),
        "{r:?}"
    );
    assert!(r.identity.clone().unwrap().last_seen_unix_seconds <= server.clock.now());
    let h = c
        .record_handoff(leave(&cookie_header(&r.cookies), "203.0.113.70"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        h.expires_at_unix_seconds <= server.clock.now() + 120,
        "a token's lifetime runs on the server's clock"
    );

    // 6. A planted own cookie beside the victim's: the choice is fixed, the
    // conflict reported, and no login is linked on that request.
    let planted = cookie_header(&attacker_cookies(&mut c).await);
    let both = format!("{victim_cookie}; {planted}");
    let r = resolve(&mut c, context(SHOP, &both, "198.51.100.10"), "victim").await;
    assert!(reasons(&r).contains(&RejectionReason::Conflict), "{r:?}");
    assert_eq!(
        r.identity.unwrap().client_id,
        victim_id.client_id,
        "the older cookie decides"
    );
    let swapped = format!("{planted}; {victim_cookie}");
    let r = resolve(&mut c, context(SHOP, &swapped, "198.51.100.10"), "victim").await;
    assert!(reasons(&r).contains(&RejectionReason::Conflict));

    // 7. The cookie of an earlier version (`_sbid`) is read once, then
    // replaced by the prefixed name and deleted.
    let keys = sessionbridge::keys::Keyring::load(&keyfile).unwrap();
    let scope = sessionbridge::cookie::CookieScope::Domain("example.com".into());
    let identity = sessionbridge::identity::Identity {
        client_id: anon_id.client_id.parse().unwrap(),
        session_id: anon_id.session_id,
        session_number: anon_id.session_number,
        user_id: None,
        last_seen: anon_id.last_seen_unix_seconds,
    };
    let legacy = format!(
        "_sbid={}",
        sessionbridge::cookie::seal_identity(&keys, &scope, "_sbid", &identity)
    );
    let r = resolve(&mut c, context(SHOP, &legacy, "198.51.100.11"), "").await;
    assert_eq!(r.method(), ResolutionMethod::Cookie);
    assert_eq!(r.identity.unwrap().client_id, anon_id.client_id);
    let set: Vec<(&str, i64)> = r
        .cookies
        .iter()
        .map(|c| (c.name.as_str(), c.max_age_seconds.unwrap_or(-1)))
        .collect();
    assert!(set.contains(&("_sbid", 0)), "{set:?}");
    assert!(
        set.iter().any(|(n, age)| *n == "__Secure-sbid" && *age > 0),
        "{set:?}"
    );
    // The old value under the new name does not verify: names are bound.
    let renamed = format!("__Secure-sbid={}", &legacy["_sbid=".len()..]);
    let r = resolve(&mut c, context(SHOP, &renamed, "198.51.100.11"), "").await;
    assert_eq!(reasons(&r), [RejectionReason::BadSeal]);

    // 8. Tokens go only where the operator allows, and once.
    let err = c
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(context(SHOP, &victim_cookie, "198.51.100.10")),
            destination_url: "https://evil.example.org/collect".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    c.record_handoff(pb::RecordHandoffRequest {
        context: Some(context(SHOP, &victim_cookie, "198.51.100.10")),
        destination_url: "https://pay.example-psp.test/c/1".into(),
        ..Default::default()
    })
    .await
    .expect("a configured external destination");
    // A token that leaked (a Referer, a shared link) is spent once used.
    let h = c
        .record_handoff(leave(&victim_cookie, "198.51.100.10"))
        .await
        .unwrap()
        .into_inner();
    let mut use_it = context(CHECKOUT, "", "198.51.100.10");
    use_it.url = h.decorated_url.clone();
    assert_eq!(
        resolve(&mut c, use_it.clone(), "").await.method(),
        ResolutionMethod::HandoffToken
    );
    use_it.client_ip = "203.0.113.66".into();
    let replay = resolve(&mut c, use_it, "").await;
    assert_eq!(replay.method(), ResolutionMethod::New);
    assert_eq!(reasons(&replay), [RejectionReason::Replayed]);
    // A link handed to a browser that already has its own identity does
    // not replace it: the own cookie comes first.
    let h = c
        .record_handoff(leave(&planted, "203.0.113.66"))
        .await
        .unwrap()
        .into_inner();
    let victim_checkout = resolve(&mut c, context(CHECKOUT, "", "198.51.100.10"), "").await;
    let mut lure = context(
        CHECKOUT,
        &cookie_header(&victim_checkout.cookies),
        "198.51.100.10",
    );
    lure.url = h.decorated_url.clone();
    let r = resolve(&mut c, lure, "").await;
    assert_eq!(r.method(), ResolutionMethod::Cookie);
    assert_eq!(
        r.identity.unwrap().client_id,
        victim_checkout.identity.unwrap().client_id
    );
}

/// A visitor of the attacker's own, with its cookies.
async fn attacker_cookies(c: &mut common::Client) -> Vec<pb::Cookie> {
    resolve(c, context(SHOP, "", "203.0.113.66"), "")
        .await
        .cookies
}

#[tokio::test]
async fn attacks_fail_on_sled() {
    attacks(&[]).await;
}

#[tokio::test]
async fn attacks_fail_on_redis() {
    let redis = common::Redis::start();
    attacks(&[
        "--store".into(),
        "redis".into(),
        "--redis-urls".into(),
        redis.url(),
    ])
    .await;
}

/// Found in review: a link is a fixation vector. An attacker records a
/// hand-off for an anonymous client of their own and sends the link; the
/// victim opens it and logs in. The login must not link the attacker's
/// client, or the attacker's cookie would resolve with the victim's user.
#[tokio::test]
async fn a_link_cannot_fixate_a_login() {
    let dir = tempfile::tempdir().unwrap();
    let flags = flags(&[]);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = InProc::start(&dir.path().join("data"), &args).await;
    let mut c = server.client().await;
    let attacker = resolve(&mut c, context(SHOP, "", "203.0.113.66"), "").await;
    let a = attacker.identity.clone().unwrap().client_id;
    let h = c
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(context(
                SHOP,
                &cookie_header(&attacker.cookies),
                "203.0.113.66",
            )),
            destination_url: format!("https://{CHECKOUT}/"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut lure = context(CHECKOUT, "", "198.51.100.30");
    lure.url = h.decorated_url.clone();
    let opened = resolve(&mut c, lure, "").await;
    assert_eq!(opened.method(), ResolutionMethod::HandoffToken);
    let login = resolve(
        &mut c,
        context(CHECKOUT, &cookie_header(&opened.cookies), "198.51.100.30"),
        "victim",
    )
    .await;
    assert_ne!(
        login.identity.unwrap().client_id,
        a,
        "the login moved to a fresh client"
    );
    let back = resolve(
        &mut c,
        context(SHOP, &cookie_header(&attacker.cookies), "203.0.113.66"),
        "",
    )
    .await;
    assert_eq!(
        back.identity.unwrap().user_id,
        "",
        "the attacker holds no user"
    );
}

/// Found in review: with separate stores, a forged `_ga` laundered through
/// RecordHandoff must not come out as a trusted token for a client the
/// destination's store links to a user.
#[tokio::test]
async fn a_forged_ga_is_not_laundered_through_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let keys = common::keyfile(dir.path());
    let mut flags = flags(&[]);
    flags.extend(["--keys".to_string(), keys.display().to_string()]);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let shop = InProc::start(&dir.path().join("shop"), &args).await;
    let checkout = InProc::start(&dir.path().join("checkout"), &args).await;
    let mut s = shop.client().await;
    let mut k = checkout.client().await;
    let victim = resolve(&mut k, context(CHECKOUT, "", "198.51.100.31"), "victim").await;
    let v = victim.identity.unwrap().client_id;
    let forged = format!("_ga=GA1.2.{v}");
    let h = s
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(context(SHOP, &forged, "203.0.113.66")),
            destination_url: format!("https://{CHECKOUT}/"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.method(), ResolutionMethod::GaCookie);
    let mut arrive = context(CHECKOUT, "", "203.0.113.66");
    arrive.url = h.decorated_url.clone();
    let r = resolve(&mut k, arrive, "").await;
    assert_eq!(r.identity.clone().unwrap().user_id, "");
    assert_ne!(r.identity.clone().unwrap().client_id, v);
    assert_eq!(reasons(&r), [RejectionReason::LinkedToUser]);
}

/// Found in review: page views racing a login must not drop its link (the
/// record write is computed from an older read).
async fn page_views_racing_a_login(store: &[String], trials: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut flags = vec!["--touch-write-secs".to_string(), "0".to_string()];
    flags.extend_from_slice(store);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = InProc::start(&dir.path().join("data"), &args).await;
    let c = server.client().await;
    for trial in 0..trials {
        let mut first = c.clone();
        let visit = resolve(&mut first, context(SHOP, "", "198.51.100.40"), "").await;
        let jar = cookie_header(&visit.cookies);
        let user = format!("racer-{trial}");
        let mut tasks = Vec::new();
        for i in 0..4 {
            let mut c = c.clone();
            let jar = jar.clone();
            let user = if i == 0 { user.clone() } else { String::new() };
            tasks.push(tokio::spawn(async move {
                resolve(&mut c, context(SHOP, &jar, "198.51.100.40"), &user).await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut c2 = c.clone();
        let after = resolve(&mut c2, context(SHOP, &jar, "198.51.100.40"), "").await;
        assert_eq!(after.identity.unwrap().user_id, user, "trial {trial}");
        let found = c2
            .lookup_by_user(pb::LookupByUserRequest {
                user: Some(pb::lookup_by_user_request::User::UserId(user.clone())),
                limit: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            found.identity.unwrap().client_id,
            visit.identity.clone().unwrap().client_id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn page_views_racing_a_login_keep_its_link_on_sled() {
    page_views_racing_a_login(&[], 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn page_views_racing_a_login_keep_its_link_on_redis() {
    let redis = common::Redis::start();
    page_views_racing_a_login(
        &[
            "--store".into(),
            "redis".into(),
            "--redis-urls".into(),
            redis.url(),
        ],
        20,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn page_views_racing_a_login_keep_its_link_on_redis_cluster() {
    let cluster = common::RedisCluster::start();
    let mut flags = vec![
        "--store".to_string(),
        "redis".into(),
        "--redis-cluster".into(),
        "true".into(),
    ];
    flags.push("--redis-urls".into());
    flags.push(cluster.urls().join(","));
    page_views_racing_a_login(&flags, 20).await;
}

/// Found in review: a passive call about a visitor whose consent is denied
/// mints nothing.
#[tokio::test]
async fn a_passive_call_without_consent_mints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &[]).await;
    let mut c = server.client().await;
    let mut ctx = context(SHOP, "", "");
    ctx.consent = Some(pb::Consent {
        analytics_storage: pb::ConsentState::Denied as i32,
        ..Default::default()
    });
    for _ in 0..2 {
        let err = c
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(ctx.clone()),
                passive: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    }
}

/// Found in review: a visitor who follows a link while already holding the
/// destination's cookie never spends the token, but the hand-off is done:
/// its bridge entry must not serve the next person with the same browser
/// and network.
#[tokio::test]
async fn a_link_followed_with_a_cookie_leaves_no_bridge_entry() {
    let dir = tempfile::tempdir().unwrap();
    let flags = flags(&[]);
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = InProc::start(&dir.path().join("data"), &args).await;
    let mut c = server.client().await;
    let ip = "198.51.100.50";
    let shop = resolve(&mut c, context(SHOP, "", ip), "").await;
    let checkout = resolve(&mut c, context(CHECKOUT, "", ip), "").await;
    let h = c
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(context(SHOP, &cookie_header(&shop.cookies), ip)),
            destination_url: format!("https://{CHECKOUT}/"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut follow = context(CHECKOUT, &cookie_header(&checkout.cookies), ip);
    follow.url = h.decorated_url.clone();
    follow.referer = format!("https://{SHOP}/");
    let r = resolve(&mut c, follow, "").await;
    assert_eq!(r.method(), ResolutionMethod::Cookie);
    // The next person behind the same network, same browser build.
    let mut next = context(CHECKOUT, "", "198.51.100.51");
    next.referer = format!("https://{SHOP}/");
    let r = resolve(&mut c, next, "").await;
    assert_eq!(r.method(), ResolutionMethod::New, "{r:?}");
}
