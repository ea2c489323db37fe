//! Bad input of every kind: INVALID_ARGUMENT with a BadRequest naming the
//! field, nothing written, and the server still up.

mod common;

use common::{bad_fields, ctx, InProc};
use sessionbridge::pb;
use tonic::Code;

fn long(n: usize) -> String {
    "x".repeat(n)
}

#[tokio::test]
async fn every_bad_field_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(
        &dir.path().join("data"),
        &["--allowed-domains", "example.com"],
    )
    .await;
    let mut c = server.client().await;
    let mut good = ctx("www.example.com", "");
    // Without a URL, edits of the host do not also trip the URL check.
    good.url.clear();
    let with_url = |url: &str| {
        let mut c = good.clone();
        c.url = url.into();
        c
    };
    let foreign_url = with_url("https://other.example.net/");

    type Edit = fn(&mut pb::ResolveSessionRequest);
    let cases: Vec<(&str, Edit)> = vec![
        ("context", |r| r.context = None),
        ("context.host", |r| {
            r.context.as_mut().unwrap().host = String::new()
        }),
        ("context.host", |r| {
            r.context.as_mut().unwrap().host = "exa mple.com".into()
        }),
        ("context.host", |r| {
            r.context.as_mut().unwrap().host = "evil.com".into()
        }),
        ("context.host", |r| {
            r.context.as_mut().unwrap().host = long(300)
        }),
        ("context.consent.ad_storage", |r| {
            r.context.as_mut().unwrap().consent = Some(pb::Consent {
                ad_storage: 7,
                ..Default::default()
            })
        }),
        ("user_id", |r| r.user_id = "someone@example.com".into()),
        ("user_id", |r| r.user_id = long(300)),
        ("user_id", |r| r.user_id = "two words".into()),
        ("email", |r| r.email = "not-an-email".into()),
        ("email", |r| r.email = format!("{}@example.com", long(400))),
    ];
    for (field, edit) in cases {
        let mut req = pb::ResolveSessionRequest {
            context: Some(good.clone()),
            user_id: "u-bad-input".into(),
            ..Default::default()
        };
        edit(&mut req);
        let err = c.resolve_session(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(
            bad_fields(&err).contains(&field.to_string()),
            "{field}: got {:?}",
            bad_fields(&err)
        );
        assert!(
            err.message().contains(field),
            "message names the field: {}",
            err.message()
        );
    }

    // What the browser sends is never a caller bug (tests/browser_input.rs).
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(foreign_url),
            ..Default::default()
        })
        .await
        .expect("a URL of another host is ignored, not fatal")
        .into_inner();
    assert_eq!(r.rejected.len(), 1);
    assert_eq!(r.rejected[0].field, "context.url");

    // Several bad fields are reported together.
    let mut req = pb::ResolveSessionRequest {
        context: Some(good.clone()),
        email: "nope".into(),
        ..Default::default()
    };
    req.context.as_mut().unwrap().host = "exa mple.com".into();
    let err = c.resolve_session(req).await.unwrap_err();
    assert_eq!(bad_fields(&err), ["context.host", "email"]);

    // None of the refused calls linked the user.
    let err = c
        .lookup_by_user(pb::LookupByUserRequest {
            user: Some(pb::lookup_by_user_request::User::UserId(
                "u-bad-input".into(),
            )),
            limit: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Lookups and erasures need a user.
    for (req, field) in [
        (
            pb::LookupByUserRequest {
                user: None,
                limit: 0,
            },
            "user",
        ),
        (
            pb::LookupByUserRequest {
                user: Some(pb::lookup_by_user_request::User::UserId(String::new())),
                limit: 0,
            },
            "user_id",
        ),
        (
            pb::LookupByUserRequest {
                user: Some(pb::lookup_by_user_request::User::Email("@".into())),
                limit: 0,
            },
            "email",
        ),
    ] {
        let err = c.lookup_by_user(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(bad_fields(&err), [field]);
    }
    let err = c
        .forget_user(pb::ForgetUserRequest { user: None })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&err), ["user"]);

    // Still serving.
    c.resolve_session(pb::ResolveSessionRequest {
        context: Some(good),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// The wire shape of MintCookieRequest with `bytes` where the API has
/// `string`, to send what a correct client never would.
#[derive(Clone, PartialEq, prost::Message)]
struct RawContext {
    #[prost(bytes = "vec", tag = "1")]
    host: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    user_agent: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawMint {
    #[prost(message, optional, tag = "1")]
    context: Option<RawContext>,
}

async fn raw_mint(server: &InProc, msg: RawMint) -> Result<pb::MintCookieResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let path =
        http::uri::PathAndQuery::from_static("/sessionbridge.v1.SessionBridgeService/MintCookie");
    let codec = tonic_prost::ProstCodec::<RawMint, pb::MintCookieResponse>::default();
    grpc.unary(tonic::Request::new(msg), path, codec)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn non_utf8_and_oversized_messages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &["--max-message-bytes", "4096"]).await;

    let ok = raw_mint(
        &server,
        RawMint {
            context: Some(RawContext {
                host: b"a.example".to_vec(),
                user_agent: b"ok".to_vec(),
            }),
        },
    )
    .await
    .unwrap();
    assert!(ok.identity.is_some());

    let err = raw_mint(
        &server,
        RawMint {
            context: Some(RawContext {
                host: b"a.example".to_vec(),
                user_agent: vec![b'M', 0xff, 0xfe, b'z'],
            }),
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(bad_fields(&err), ["context.user_agent"]);

    let err = raw_mint(
        &server,
        RawMint {
            context: Some(RawContext {
                host: b"a.example".to_vec(),
                user_agent: vec![b'a'; 8000],
            }),
        },
    )
    .await
    .unwrap_err();
    // Over the limit is the caller's bug, told apart from shedding.
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(bad_fields(&err), ["(request)"]);

    // Still serving.
    raw_mint(
        &server,
        RawMint {
            context: Some(RawContext {
                host: b"a.example".to_vec(),
                user_agent: b"ok".to_vec(),
            }),
        },
    )
    .await
    .unwrap();
}

/// Nothing a caller sends can inject into a Set-Cookie header: every field
/// that reaches one is refused or normalized, and the headers returned are
/// plain ASCII without separators where they do not belong.
#[tokio::test]
async fn set_cookie_headers_cannot_be_injected() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(
        &dir.path().join("data"),
        &["--allowed-domains", "example.com,xn--exmple-cua.com"],
    )
    .await;
    let mut c = server.client().await;
    for host in [
        "www.example.com;Domain=evil.com",
        "www.example.com\r\nSet-Cookie: a=b",
        "www.example.com, evil.com",
    ] {
        let mut x = ctx("www.example.com", "");
        x.host = host.into();
        x.url.clear();
        let err = c
            .mint_cookie(pb::MintCookieRequest {
                context: Some(x),
                ga_cookie: Some(true),
            })
            .await
            .unwrap_err();
        assert_eq!(bad_fields(&err), ["context.host"], "{host:?}");
    }
    // A forged own cookie carrying separators is refused, never echoed.
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(ctx(
                "www.example.com",
                "_sbid=S1.x; Domain=evil.com; _ga=GA1.1.1;2",
            )),
            ga_cookie: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // A non-ASCII host is turned into its ASCII (punycode) form.
    let mut idn = ctx("www.example.com", "");
    idn.host = "shop.exämple.com".into();
    idn.url.clear();
    let m = c
        .mint_cookie(pb::MintCookieRequest {
            context: Some(idn),
            ga_cookie: Some(true),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.cookies[0].domain, "xn--exmple-cua.com");
    for cookie in r.cookies.iter().chain(m.cookies.iter()) {
        let h = &cookie.set_cookie_header;
        assert!(
            h.is_ascii() && !h.contains('\r') && !h.contains('\n'),
            "{h:?}"
        );
        assert!(!h.contains("evil"), "{h:?}");
        let value = h.split(';').next().unwrap();
        assert_eq!(value, format!("{}={}", cookie.name, cookie.value));
        assert!(
            !cookie.value.contains([';', ',', ' ', '"']),
            "{:?}",
            cookie.value
        );
    }
}

/// A deadline shorter than the work: the caller gets DEADLINE_EXCEEDED (or
/// CANCELLED), and the server keeps serving.
#[tokio::test]
async fn a_deadline_shorter_than_the_work_is_answered_and_survived() {
    let dir = tempfile::tempdir().unwrap();
    let server = InProc::start(&dir.path().join("data"), &["--durability", "sync"]).await;
    let mut c = server.client().await;
    let mut expired = 0;
    for _ in 0..20 {
        let mut req = tonic::Request::new(pb::ResolveSessionRequest {
            context: Some(ctx("a.example", "")),
            user_id: "deadline-user".into(),
            ..Default::default()
        });
        req.set_timeout(std::time::Duration::from_micros(50));
        match c.resolve_session(req).await {
            Ok(_) => {}
            Err(e) => {
                assert!(
                    matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
                    "{e:?}"
                );
                expired += 1;
            }
        }
    }
    assert!(expired > 0, "a 50 µs deadline never expired");
    c.resolve_session(pb::ResolveSessionRequest {
        context: Some(ctx("a.example", "")),
        ..Default::default()
    })
    .await
    .unwrap();
}
