//! The request-context validator with URL, Referer and Host parsing, and
//! the query edits that build clean and decorated URLs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionbridge::context::RawContext;
use sessionbridge::identity::Consent;
use sessionbridge::query;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Split the input into the context's fields.
    let mut f = text.splitn(7, '\u{1f}');
    let mut next = || f.next().unwrap_or("");
    let raw = RawContext {
        host: next(),
        url: next(),
        referer: next(),
        user_agent: next(),
        cookie_header: next(),
        client_ip: next(),
        accept_language: next(),
        consent: Default::default(),
        scheme: "",
    };
    // Whatever the browser sent, a good host never fails the call, and
    // nothing with a control character survives into the context.
    let browser_only = RawContext {
        host: "shop.example.com",
        ..raw.clone()
    };
    let ctx = browser_only
        .check("context.", Consent::Granted)
        .expect("browser input never fails a call");
    for v in [&ctx.user_agent, &ctx.cookie_header, &ctx.accept_language] {
        assert!(!v.chars().any(char::is_control), "{v:?}");
    }
    if let Ok(ctx) = raw.check("context.", Consent::Granted) {
        assert!(!ctx.host.is_empty());
        assert!(!ctx.host.contains([';', ',', ' ', '\r', '\n']), "{:?}", ctx.host);
        if let Some(url) = &ctx.url {
            let decorated = query::with(url, "_sbt", "TOKEN");
            assert_eq!(query::param(&decorated, "_sbt").as_deref(), Some("TOKEN"));
            let clean = query::without(&decorated, &["_sbt"]).expect("the parameter was added");
            assert!(query::param(&clean, "_sbt").is_none());
        }
    }
});
