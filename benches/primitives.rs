//! Micro-benchmarks of the work every page view pays for: opening the own
//! cookie, parsing a realistic Cookie header, sealing and opening a
//! hand-off token, and checking a request context.
//!
//! The `_gl` linker check: a link gtag.js wrote a minute ago in UTC-5
//! (accepted), and the same link from another browser (refused after every
//! time-zone offset and minute is tried).
//!
//! Then the resolution logic itself (`Service::resolve`, no gRPC) on a real
//! sled store in a temporary directory: a returning visitor's cookie hit
//! and a first visit that writes a record.
//!
//! `cargo bench --bench primitives`

use criterion::{criterion_group, criterion_main, Criterion};
use sessionbridge::config::Config;
use sessionbridge::context::RawContext;
use sessionbridge::cookie::{self, CookieScope};
use sessionbridge::ga;
use sessionbridge::identity::{ClientId, Consent, SessionPolicy};
use sessionbridge::keys::Keyring;
use sessionbridge::service::{ResolveInput, Service, Settings};
use sessionbridge::store::{Durability, SledStore};
use sessionbridge::token::{self, Claims};

const KEYS: &str = r#"{"version":1,"pepper":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","keys":[{"id":"k1","secret":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","current":true}]}"#;

fn benches(c: &mut Criterion) {
    let keys = Keyring::parse(KEYS, "bench").unwrap();
    let identity = SessionPolicy::default().new_identity(
        ClientId::from_parts(123_456_789, 1_700_000_000),
        1_700_000_100,
    );
    let scope = CookieScope::Domain("example.com".into());
    let own = cookie::seal_identity(&keys, &scope, "__Secure-sbid", &identity);
    // A header as a real site sends it: analytics, consent and ad cookies.
    let header = format!(
        "_ga=GA1.1.1360384851.1661821242; _ga_ABC123=GS2.1.s1700000000$o5$g1$t1700000300$j0$l0$h0; \
         _gcl_au=1.1.1234567890.1700000000; OptanonConsent=isGpcEnabled=0&datestamp=Mon+Nov+20; \
         _fbp=fb.1.1700000000000.1234567890; cart=%7B%22items%22%3A3%7D; __Secure-sbid={own}; theme=dark"
    );
    let scopes = vec!["example.com".to_string(), "www.example.com".to_string()];

    c.bench_function("cookie header parse + own cookie open", |b| {
        b.iter(|| {
            let v = cookie::values_named(&header, "__Secure-sbid");
            cookie::open_identity(&keys, &scopes, "__Secure-sbid", v[0]).unwrap()
        })
    });
    c.bench_function("own cookie seal", |b| {
        b.iter(|| cookie::seal_identity(&keys, &scope, "__Secure-sbid", &identity))
    });

    let claims = Claims {
        token_id: token::new_token_id(),
        identity: identity.clone(),
        issued_at: 1_700_000_100,
        expires_at: 1_700_000_220,
        passive_expires_at: 1_700_086_500,
        max_uses: 1,
        consent: sessionbridge::identity::ConsentMode::default(),
        adopted: false,
        linked: false,
        user_agent: None,
        audience: vec![token::short_hash(&keys, "host", "checkout.example.net")],
    };
    let sealed = token::seal(&keys, &claims);
    c.bench_function("token seal", |b| b.iter(|| token::seal(&keys, &claims)));
    c.bench_function("token open", |b| {
        b.iter(|| token::open(&keys, &sealed).unwrap())
    });

    let context = |cookie_header: &str| {
        RawContext {
            host: "www.example.com",
            url: "https://www.example.com/products/tee?color=blue&utm_source=news",
            scheme: "",
            referer: "https://www.google.com/",
            user_agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.1 Safari/605.1.15",
            cookie_header,
            client_ip: "203.0.113.7",
            accept_language: "en-US,en;q=0.9",
            consent: Default::default(),
        }
        .check("context.", Consent::Granted)
        .unwrap()
    };
    c.bench_function("request context check", |b| b.iter(|| context(&header)));

    // The `_gl` linker check, as a request carrying one pays for it.
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
              Chrome/140.0.0.0 Safari/537.36";
    let written = 1_795_000_000_i64;
    let serialized = "_gcl_au*MzU3ODI4MTY0LjE3NTQxMzEzMzg.*_ga*MTU3MDg4NjM1NC4xNzU0MTMxMzMz*\
                      _ga_ABC123*czE3NTQxMzEzMzMkbzEkZzEkdDE3NTQxMzE0MDAkajYwJGwwJGgw";
    let gl = format!(
        "1*{}*{serialized}",
        ga::linker::checksum(ua, 300, "en-US", written.div_euclid(60), serialized)
    );
    let read_at = written + 60;
    assert!(ga::linker::read(&gl, ua, "en-US", read_at).is_ok());
    c.bench_function("_gl check: valid, previous minute, UTC-5", |b| {
        b.iter(|| ga::linker::read(&gl, ua, "en-US", read_at).unwrap())
    });
    let other = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Safari/605.1.15";
    assert!(ga::linker::read(&gl, other, "en-US", read_at).is_err());
    c.bench_function("_gl check: another browser (refused)", |b| {
        b.iter(|| ga::linker::read(&gl, other, "en-US", read_at).unwrap_err())
    });

    // The resolution logic on a real store.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = std::sync::Arc::new(keys);
    let service = rt.block_on(async {
        let store = SledStore::open(
            dir.path(),
            Durability::Interval,
            std::time::Duration::from_millis(500),
            &keys.store_seal,
        )
        .unwrap();
        let cfg = Config {
            allowed_domains: vec!["example.com".into()],
            ..Config::default()
        };
        Service::new(
            store,
            std::sync::Arc::clone(&keys),
            Settings::from_config(&cfg).unwrap(),
        )
    });
    let first = rt
        .block_on(service.resolve(ResolveInput::page_view(context("theme=dark"))))
        .unwrap();
    let own = first
        .cookies
        .iter()
        .map(|c| format!("{}={}", c.name, c.value))
        .collect::<Vec<_>>()
        .join("; ");
    let returning = format!(
        "_ga=GA1.1.1360384851.1661821242; _gcl_au=1.1.1234567890.1700000000; \
         cart=%7B%22items%22%3A3%7D; {own}; theme=dark"
    );
    c.bench_function("resolve: cookie hit (store read, no write)", |b| {
        b.iter(|| {
            let r = rt
                .block_on(service.resolve(ResolveInput::page_view(context(&returning))))
                .unwrap();
            assert_eq!(r.identity.client_id, first.identity.client_id);
        })
    });
    c.bench_function("resolve: first visit (record written)", |b| {
        b.iter(|| {
            rt.block_on(service.resolve(ResolveInput::page_view(context("theme=dark"))))
                .unwrap()
        })
    });
}

criterion_group!(primitives, benches);
criterion_main!(primitives);
