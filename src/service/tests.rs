//! Unit tests of the core on a real sled store in a temporary directory,
//! with a controllable clock.

use std::sync::Arc;

use super::*;
use crate::clock::ManualClock;
use crate::context::RawContext;
use crate::store::{Durability, SledStore};

struct Fixture {
    service: Service<SledStore>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("keys.json");
    crate::keys::generate(&key_path, "t1").unwrap();
    let keys = Arc::new(Keyring::load(&key_path).unwrap());
    let store = SledStore::open(
        &dir.path().join("db"),
        Durability::Interval,
        std::time::Duration::from_millis(500),
        &keys.store_seal,
    )
    .unwrap();
    let cfg = crate::config::Config {
        allowed_domains: vec!["example.com".into()],
        session_id_param_referrers: vec!["partner.example".into()],
        ..Default::default()
    };
    let clock = ManualClock::new();
    let service = Service::with_clock(
        store,
        keys,
        Settings::from_config(&cfg).unwrap(),
        clock.clone() as SharedClock,
    );
    Fixture {
        service,
        clock,
        _dir: dir,
    }
}

fn ctx(cookie_header: &str, url: &str) -> RequestContext {
    RawContext {
        host: "shop.example.com",
        url,
        scheme: "",
        referer: "https://partner.example/",
        user_agent: "Mozilla/5.0 (test)",
        cookie_header,
        client_ip: "203.0.113.9",
        accept_language: "en-US",
        consent: Default::default(),
    }
    .check("context.", Consent::Granted)
    .unwrap()
}

fn cookie_header(r: &Resolution) -> String {
    r.cookies
        .iter()
        .map(|c| format!("{}={}", c.name, c.value))
        .collect::<Vec<_>>()
        .join("; ")
}

#[tokio::test(flavor = "current_thread")]
async fn one_call_parses_the_cookie_header_and_the_query_once() {
    let f = fixture();
    // Every kind of evidence present, each one refused, so every reader
    // runs: a forged own cookie, a bad token, a bad _gl, bad GA cookies, a
    // raw session id that is not one.
    let url = "https://shop.example.com/p?_sbt=nope&_gl=1*abc*_ga*MTIz&session_id=x&q=1";
    let header = "_sbid=S1.t1.1.2.3.4.5.AAAA; _ga=GA1.2.bad; _ga_X=GS1.1.bad; a=b";
    let before = crate::request::counts::get();
    let r = f
        .service
        .resolve(ResolveInput::page_view(ctx(header, url)))
        .await
        .unwrap();
    let after = crate::request::counts::get();
    assert_eq!(r.method, Method::New);
    let kinds: Vec<Method> = r
        .rejected
        .iter()
        .filter_map(|r| match r.source {
            crate::identity::Source::Evidence(m) => Some(m),
            crate::identity::Source::Input(_) => None,
        })
        .collect();
    for k in [
        Method::Cookie,
        Method::HandoffToken,
        Method::GaLinker,
        Method::GaCookie,
        Method::SessionIdParameter,
    ] {
        assert!(kinds.contains(&k), "{k:?} not read: {kinds:?}");
    }
    assert_eq!(after.0 - before.0, 1, "Cookie header parses");
    assert_eq!(after.1 - before.1, 1, "query parses");
    assert_eq!(
        r.clean_url.as_deref(),
        Some("https://shop.example.com/p?q=1"),
        "every evidence parameter removed, the rest kept"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_session_ends_after_the_timeout_on_the_injected_clock() {
    let f = fixture();
    let url = "https://shop.example.com/";
    let first = f
        .service
        .resolve(ResolveInput::page_view(ctx("", url)))
        .await
        .unwrap();
    let jar = cookie_header(&first);
    f.clock.advance(60);
    let same = f
        .service
        .resolve(ResolveInput::page_view(ctx(&jar, url)))
        .await
        .unwrap();
    assert_eq!(same.method, Method::Cookie);
    assert_eq!(same.identity.session_id, first.identity.session_id);
    assert!(!same.new_session);
    f.clock
        .advance(f.service.settings().policy.timeout_secs + 1);
    let later = f
        .service
        .resolve(ResolveInput::page_view(ctx(&cookie_header(&same), url)))
        .await
        .unwrap();
    assert_eq!(later.identity.client_id, first.identity.client_id);
    assert!(later.new_session);
    assert_eq!(later.identity.session_number, 2);
    assert_eq!(later.identity.last_seen, f.service.now());
}

#[test]
fn every_kind_states_its_trust() {
    use crate::evidence::{trust, Trust};
    for &k in crate::identity::PRECEDENCE {
        let expected = matches!(k, Method::Cookie | Method::HandoffToken | Method::UserId);
        assert_eq!(trust(k) == Trust::Verified, expected, "{k:?}");
    }
}
