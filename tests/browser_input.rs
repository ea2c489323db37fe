//! Browser input never fails a call. Header values as real sites receive
//! them, each sent beside a valid own cookie: the call answers OK, the
//! visitor keeps the identity the cookie names, and unusable input is named
//! in `rejected`. Then the caller's own mistakes, each INVALID_ARGUMENT
//! naming the field. On the embedded store and on Redis.

mod common;

use common::{bad_fields, cookie_header, InProc};
use sessionbridge::pb::{self, ResolutionMethod};
use tonic::Code;

type Edit = Box<dyn Fn(&mut pb::RequestContext)>;

/// (what it is, the edit, the field expected in `rejected`, if any)
fn browser_cases(own: &str) -> Vec<(&'static str, Edit, Option<&'static str>)> {
    let own = own.to_string();
    let many_cookies = {
        let own = own.clone();
        move |n: usize, at: usize| -> String {
            let mut pairs: Vec<String> = (0..n)
                .map(|i| format!("_tp{i}=v{}", "x".repeat(40 + i % 7)))
                .collect();
            pairs.insert(at.min(n), own.clone());
            pairs.join("; ")
        }
    };
    let c = |v: String| -> Edit { Box::new(move |x| x.cookie_header = v.clone()) };
    let r = |v: &'static str| -> Edit { Box::new(move |x| x.referer = v.into()) };
    let ua = |v: String| -> Edit { Box::new(move |x| x.user_agent = v.clone()) };
    let al = |v: String| -> Edit { Box::new(move |x| x.accept_language = v.clone()) };
    let ip = |v: &'static str| -> Edit { Box::new(move |x| x.client_ip = v.into()) };
    let host = |v: &'static str| -> Edit { Box::new(move |x| x.host = v.into()) };
    let url = |v: String| -> Edit { Box::new(move |x| x.url = v.clone()) };
    let with_own = |extra: &str| format!("{extra}; {own}");
    vec![
        // Referers.
        (
            "app referer (Gmail)",
            r("android-app://com.google.android.gm/"),
            Some("context.referer"),
        ),
        (
            "app referer (LinkedIn)",
            r("android-app://com.linkedin.android"),
            Some("context.referer"),
        ),
        (
            "iOS app referer",
            r("ios-app://284882215/fb"),
            Some("context.referer"),
        ),
        ("null referer", r("null"), Some("context.referer")),
        (
            "about:blank referer",
            r("about:blank"),
            Some("context.referer"),
        ),
        (
            "scheme-relative referer",
            r("//www.google.com/"),
            Some("context.referer"),
        ),
        ("truncated referer", r("https://"), Some("context.referer")),
        (
            "broken IPv6 referer",
            r("https://[::1/x"),
            Some("context.referer"),
        ),
        (
            "referer with a raw space",
            r("https://www.google.com/search?q=red shoes"),
            None,
        ),
        (
            "referer with non-ASCII",
            r("https://www.bücher.de/päth?q=grüße"),
            None,
        ),
        (
            "referer with a tab",
            r("https://www.google.com/\tx"),
            Some("context.referer"),
        ),
        (
            "referer of 9 KB",
            Box::new(|x| x.referer = format!("https://a.example/{}", "p".repeat(9000))),
            Some("context.referer"),
        ),
        // User-Agents.
        (
            "User-Agent with a tab",
            ua("Mozilla/5.0\t(Windows NT 10.0; Win64; x64)".into()),
            Some("context.user_agent"),
        ),
        (
            "User-Agent with NUL",
            ua("Mozilla/5.0\0evil".into()),
            Some("context.user_agent"),
        ),
        (
            "UTF-8 User-Agent (in-app browser)",
            ua("Mozilla/5.0 (Linux; Android 13) 微信/8.0.42 Mobile".into()),
            None,
        ),
        (
            "Latin-1-looking User-Agent",
            ua("Mozilla/5.0 (Macintosh) Safari/605.1.15 Ã©tÃ©".into()),
            None,
        ),
        (
            "User-Agent of 2 KB",
            ua("Mozilla/5.0 ".repeat(200)),
            Some("context.user_agent"),
        ),
        ("no User-Agent", ua(String::new()), None),
        // Cookie headers.
        (
            "16 KB, own cookie in the middle",
            c(many_cookies(300, 150)),
            None,
        ),
        ("16 KB, own cookie last", c(many_cookies(320, 320)), None),
        (
            "own cookie first of hundreds",
            c(many_cookies(300, 0)),
            None,
        ),
        ("duplicate pairs", c(with_own("a=1; a=2; a=3")), None),
        ("quoted value", c(with_own("q=\"quoted value\"")), None),
        ("empty pairs", c(with_own(";; ; =; a=; ;")), None),
        ("pair without =", c(with_own("flag; other=1")), None),
        ("non-ASCII value", c(with_own("name=grüße; emoji=🍪")), None),
        (
            "pair with CR LF",
            c(with_own("x=1\r\nSet-Cookie: evil=1")),
            Some("context.cookie_header"),
        ),
        (
            "pair with a tab",
            c(with_own("t=a\tb")),
            Some("context.cookie_header"),
        ),
        (
            "percent-encoded junk",
            c(with_own("p=%ZZ%; j=%E0%A4%A")),
            None,
        ),
        // Accept-Language.
        (
            "Accept-Language of 2 KB",
            al("en-US,en;q=0.9,".repeat(140)),
            Some("context.accept_language"),
        ),
        ("Accept-Language *", al("*".into()), None),
        (
            "long real Accept-Language",
            al("de-CH,de;q=0.9,fr-CH;q=0.8,fr;q=0.7,en-US;q=0.6,en;q=0.5,it;q=0.4,*;q=0.1".into()),
            None,
        ),
        (
            "Accept-Language with a tab",
            al("en\tUS".into()),
            Some("context.accept_language"),
        ),
        // Client addresses behind real proxies.
        (
            "client_ip unknown",
            ip("unknown"),
            Some("context.client_ip"),
        ),
        (
            "client_ip forwarded list",
            ip("203.0.113.9, 10.0.0.1"),
            Some("context.client_ip"),
        ),
        (
            "client_ip Forwarded syntax",
            ip("for=192.0.2.60;proto=http"),
            Some("context.client_ip"),
        ),
        (
            "client_ip out of range",
            ip("999.1.1.1"),
            Some("context.client_ip"),
        ),
        (
            "client_ip with a zone",
            ip("fe80::1%eth0"),
            Some("context.client_ip"),
        ),
        ("client_ip [v6]:port", ip("[2001:db8::1]:443"), None),
        ("client_ip v4:port", ip("203.0.113.9:51234"), None),
        ("client_ip IPv4-mapped", ip("::ffff:203.0.113.9"), None),
        ("client_ip plain v6", ip("2001:db8::1"), None),
        ("client_ip empty", ip(""), None),
        // Hosts as Host headers carry them.
        ("upper-case host", host("WWW.EXAMPLE.COM"), None),
        ("host with a port", host("www.example.com:8443"), None),
        ("host with a trailing dot", host("www.example.com."), None),
        (
            "upper case, port and dot",
            host("Www.Example.Com.:443"),
            None,
        ),
        // URLs.
        ("request target only", url("/p?q=1".into()), None),
        (
            "request target with a raw space",
            url("/search?q=red shoes".into()),
            None,
        ),
        (
            "bad percent-encoding in the query",
            url("/p?q=%E0%A4%A&x=%".into()),
            None,
        ),
        (
            "URL of another host",
            url("https://other.example.net/".into()),
            Some("context.url"),
        ),
        (
            "javascript: URL",
            url("javascript:alert(1)".into()),
            Some("context.url"),
        ),
        (
            "URL of 9 KB",
            url(format!("/p?q={}", "x".repeat(9000))),
            Some("context.url"),
        ),
    ]
}

async fn browser_input_keeps_the_visitor(flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--allowed-domains", "example.com"];
    args.extend_from_slice(flags);
    let server = InProc::start(&dir.path().join("data"), &args).await;
    let mut c = server.client().await;
    let base = pb::RequestContext {
        host: "www.example.com".into(),
        url: "https://www.example.com/".into(),
        referer: "https://www.google.com/".into(),
        user_agent: common::UA.into(),
        client_ip: "203.0.113.7".into(),
        accept_language: "en-US,en;q=0.9".into(),
        ..Default::default()
    };
    let first = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(base.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let own = cookie_header(&first.cookies);
    let visitor = first.identity.unwrap().client_id;
    let cases = browser_cases(&own);
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for (what, edit, expect) in cases {
        let mut ctx = pb::RequestContext {
            cookie_header: own.clone(),
            ..base.clone()
        };
        edit(&mut ctx);
        let r = c
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(ctx),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("{what}: {s:?}"))
            .into_inner();
        assert_eq!(r.method(), ResolutionMethod::Cookie, "{what}: {r:?}");
        assert_eq!(r.identity.unwrap().client_id, visitor, "{what}");
        let fields: Vec<&str> = r.rejected.iter().map(|x| x.field.as_str()).collect();
        match expect {
            Some(f) => assert_eq!(fields, [f], "{what}: {:?}", r.rejected),
            None => assert!(r.rejected.is_empty(), "{what}: {:?}", r.rejected),
        }
        // Nothing of the input comes back in a header or a detail.
        for cookie in &r.cookies {
            assert!(
                !cookie.set_cookie_header.chars().any(char::is_control),
                "{what}"
            );
        }
    }
}

async fn caller_bugs_are_invalid_argument(flags: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--allowed-domains", "example.com"];
    args.extend_from_slice(flags);
    let server = InProc::start(&dir.path().join("data"), &args).await;
    let mut c = server.client().await;
    let ok = pb::RequestContext {
        host: "www.example.com".into(),
        ..Default::default()
    };
    let resolve =
        |ctx: Option<pb::RequestContext>, user_id: &str, email: &str| pb::ResolveSessionRequest {
            context: ctx,
            user_id: user_id.into(),
            email: email.into(),
            ..Default::default()
        };
    let host = |h: &str| {
        Some(pb::RequestContext {
            host: h.into(),
            ..Default::default()
        })
    };
    let cases = vec![
        ("context", resolve(None, "", "")),
        ("context.host", resolve(host(""), "", "")),
        ("context.host", resolve(host("exa mple.com"), "", "")),
        ("context.host", resolve(host("evil.com"), "", "")),
        ("context.host", resolve(host("a\r\nb.example.com"), "", "")),
        (
            "context.scheme",
            resolve(
                Some(pb::RequestContext {
                    scheme: "ftp".into(),
                    ..ok.clone()
                }),
                "",
                "",
            ),
        ),
        (
            "user_id",
            resolve(Some(ok.clone()), "someone@example.com", ""),
        ),
        ("email", resolve(Some(ok.clone()), "", "not-an-email")),
    ];
    for (field, req) in cases {
        let err = c.resolve_session(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert_eq!(bad_fields(&err), [field], "{field}");
    }
    let err = c
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(ok.clone()),
            destination_url: "https://pay.example.net/".into(),
            ttl_seconds: 10 * 86_400,
            passive_ttl_seconds: 100 * 86_400,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        bad_fields(&err),
        ["ttl_seconds", "passive_ttl_seconds", "destination_url"],
        "pay.example.net is in neither allowed_domains nor handoff_destinations"
    );
    let err = c
        .lookup_by_user(pb::LookupByUserRequest::default())
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["user"]);
}

#[tokio::test]
async fn browser_input_never_fails_a_call_on_sled() {
    browser_input_keeps_the_visitor(&[]).await;
    caller_bugs_are_invalid_argument(&[]).await;
}

#[tokio::test]
async fn browser_input_never_fails_a_call_on_redis() {
    let redis = common::Redis::start();
    let url = redis.url();
    let flags = ["--store", "redis", "--redis-urls", &url];
    browser_input_keeps_the_visitor(&flags).await;
    caller_bugs_are_invalid_argument(&flags).await;
}
