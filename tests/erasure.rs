//! Complete erasure over gRPC, on sled, a single Redis and a Redis Cluster:
//! a user seen on more browsers than its index keeps, two users who shared
//! a browser, and an erasure while a hand-off token and a bridge entry are
//! pending. After each, everything the store holds is read back: on sled,
//! with the server stopped, every value of every tree unsealed with the key
//! file (the sealing would hide a leftover record from a byte scan); on
//! Redis, every key and value. None may name the erased user or its
//! clients.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use common::{Browser, Client, InProc};
use sessionbridge::clock::ManualClock;
use sessionbridge::identity::ClientId;
use sessionbridge::keys::Keyring;
use sessionbridge::pb::{self, RejectionReason, ResolutionMethod};
use sessionbridge::privacy::{user_key, UserKey, UserRef};

const ERASED: &str = "the visitor was erased";

#[derive(Clone, Copy, Debug)]
enum Kind {
    Sled,
    Redis,
    Cluster,
}

/// A server on one kind of store, and what the test has seen of it.
struct Env {
    kind: Kind,
    dir: tempfile::TempDir,
    keys: PathBuf,
    args: Vec<String>,
    clock: Arc<ManualClock>,
    server: Option<InProc>,
    redis: Option<common::Redis>,
    cluster: Option<common::RedisCluster>,
    /// Every client id an answer named: the records the store may hold.
    seen: BTreeSet<String>,
    /// Every user id linked.
    users: BTreeSet<String>,
}

impl Env {
    async fn start(kind: Kind) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let keys = common::keyfile(dir.path());
        let mut args = vec!["--keys".to_string(), keys.display().to_string()];
        let (mut redis, mut cluster) = (None, None);
        match kind {
            Kind::Sled => args.extend(["--durability".into(), "sync".into()]),
            Kind::Redis => {
                let r = common::Redis::start();
                args.extend(["--store".into(), "redis".into()]);
                args.extend(["--redis-urls".into(), r.url()]);
                redis = Some(r);
            }
            Kind::Cluster => {
                let c = common::RedisCluster::start();
                args.extend(["--store".into(), "redis".into()]);
                args.extend(["--redis-cluster".into(), "true".into()]);
                args.extend(["--redis-urls".into(), c.urls().join(",")]);
                cluster = Some(c);
            }
        }
        let clock = ManualClock::new();
        let mut env = Env {
            kind,
            dir,
            keys,
            args,
            clock,
            server: None,
            redis,
            cluster,
            seen: BTreeSet::new(),
            users: BTreeSet::new(),
        };
        env.serve().await;
        env
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn serve(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.server = Some(InProc::start_on(&self.data(), &args, self.clock.clone()).await);
    }

    async fn client(&self) -> Client {
        self.server.as_ref().expect("serving").client().await
    }

    /// Moves the server's clock, so that links made in turn get distinct
    /// times (the index orders by them).
    fn tick(&self) {
        self.clock.advance(1);
    }

    /// Notes the client an answer named.
    fn note(&mut self, id: &Option<pb::Identity>) -> pb::Identity {
        let id = id.clone().expect("an identity");
        self.seen.insert(id.client_id.clone());
        id
    }

    /// A visit on `browser`, then a login there: the client the user is
    /// now linked to.
    async fn login(
        &mut self,
        c: &mut Client,
        browser: &mut Browser,
        url: &str,
        user: &str,
    ) -> String {
        let first = browser.visit(c, url, "").await;
        self.note(&first.identity);
        let context = browser.context(url, "");
        let host = context.host.clone();
        let r = c
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(context),
                user_id: user.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        browser.accept(&host, &r.cookies);
        self.users.insert(user.into());
        let id = self.note(&r.identity);
        assert_eq!(id.user_id, user);
        self.tick();
        id.client_id
    }

    /// Asserts that nothing the store holds contains any of `forbidden`,
    /// and (to show the dump reads what is there) that it holds each of
    /// `kept`.
    async fn assert_nothing_names(&mut self, when: &str, forbidden: &[&str], kept: &[&str]) {
        let held = match self.kind {
            Kind::Sled => self.unsealed_sled().await,
            Kind::Redis => common::redis_dump(&[self.redis.as_ref().unwrap().port]),
            Kind::Cluster => common::redis_dump(&self.cluster.as_ref().unwrap().ports),
        };
        for f in forbidden {
            assert!(
                !held.contains(f),
                "{:?}, {when}: {f:?} is still stored:\n{held}",
                self.kind
            );
        }
        for k in kept {
            assert!(
                held.contains(k),
                "{:?}, {when}: {k:?} should still be stored:\n{held}",
                self.kind
            );
        }
    }

    /// Stops the server, opens its sled directory, unseals every value of
    /// every tree with the key file, and serves again on the same
    /// directory and clock. Every value must open: the test knows every
    /// client and user the store may hold.
    async fn unsealed_sled(&mut self) -> String {
        self.server.take().expect("serving").stop().await;
        let keyring = Keyring::load(&self.keys).unwrap();
        let clients: Vec<ClientId> = self.seen.iter().map(|c| c.parse().unwrap()).collect();
        let users: Vec<UserKey> = self
            .users
            .iter()
            .map(|u| user_key(&keyring, UserRef::UserId(u)))
            .collect();
        let records = sessionbridge::store::unseal_every_record(
            &self.data(),
            &keyring.store_seal,
            &clients,
            &users,
        )
        .unwrap();
        let mut text = String::new();
        for r in &records {
            let plain = r.plain.as_ref().unwrap_or_else(|| {
                panic!(
                    "a value in tree {:?} does not open with the key file and the known ids",
                    r.tree
                )
            });
            text.push_str(&r.tree);
            text.push(' ');
            text.push_str(&String::from_utf8_lossy(&r.key));
            text.push(' ');
            text.push_str(&String::from_utf8_lossy(plain));
            text.push('\n');
        }
        self.serve().await;
        text
    }
}

async fn lookup(c: &mut Client, user: &str) -> Result<Vec<String>, tonic::Code> {
    c.lookup_by_user(pb::LookupByUserRequest {
        user: Some(pb::lookup_by_user_request::User::UserId(user.into())),
        limit: 0,
    })
    .await
    .map(|r| {
        r.into_inner()
            .recent
            .into_iter()
            .map(|i| i.client_id)
            .collect()
    })
    .map_err(|s| s.code())
}

async fn forget(c: &mut Client, user: &str) -> pb::ForgetUserResponse {
    c.forget_user(pb::ForgetUserRequest {
        user: Some(pb::forget_user_request::User::UserId(user.into())),
    })
    .await
    .unwrap()
    .into_inner()
}

fn refused_as_erased(r: &pb::ResolveSessionResponse, kind: pb::EvidenceKind) -> bool {
    r.rejected
        .iter()
        .any(|x| x.kind() == kind && x.reason() == RejectionReason::NotFound && x.detail == ERASED)
}

/// A user seen on 12 browsers, two more than the index keeps: all 12 are
/// erased and counted, and none resolves with the user again.
async fn long_history(kind: Kind) {
    let mut env = Env::start(kind).await;
    let mut c = env.client().await;
    let user = "history-user-7731";
    let url = "https://www.shop.example/";
    let mut browsers = Vec::new();
    let mut clients = Vec::new();
    for i in 0..12 {
        let mut b = Browser::new();
        b.user_agent = format!("Mozilla/5.0 (Erasure) Browser/{i}");
        clients.push(env.login(&mut c, &mut b, url, user).await);
        browsers.push(b);
    }
    let recent = lookup(&mut c, user).await.unwrap();
    assert_eq!(recent.len(), 10, "the index keeps user_history (10)");
    assert!(
        !recent.contains(&clients[0]) && !recent.contains(&clients[1]),
        "the first two are trimmed from the index"
    );

    let erased = forget(&mut c, user).await;
    assert!(erased.found);
    assert_eq!(erased.identities_erased, 12, "the trimmed ones count");
    assert_eq!(lookup(&mut c, user).await, Err(tonic::Code::NotFound));

    // Each browser comes back with its cookie: a new visitor, no user.
    for (b, old) in browsers.iter_mut().zip(&clients) {
        let r = b.visit(&mut c, url, "").await;
        let id = env.note(&r.identity);
        assert_ne!(&id.client_id, old, "an erased client came back");
        assert!(id.user_id.is_empty());
        assert_eq!(r.method(), ResolutionMethod::New);
        assert!(
            refused_as_erased(&r, pb::EvidenceKind::OwnCookie),
            "{:?}",
            r.rejected
        );
    }

    let mut forbidden = vec![user];
    forbidden.extend(clients.iter().map(String::as_str));
    let returned: Vec<String> = env
        .seen
        .iter()
        .filter(|id| !clients.contains(id))
        .cloned()
        .collect();
    let kept: Vec<&str> = returned.iter().map(String::as_str).collect();
    assert!(kept.len() >= 12, "the returning browsers' new clients");
    env.assert_nothing_names(
        "after erasing a user seen on 12 browsers",
        &forbidden,
        &kept,
    )
    .await;
}

/// Dave and Erin shared a browser. A login never re-links a client another
/// user owns, so Erin's login there moved her to a client of her own (`s2`);
/// a store written before that rule can still hold a client linked to both,
/// which the store contract covers. Erasing Dave erases his clients, and
/// leaves Erin's index with hers, which her erasure then removes.
async fn shared_browser(kind: Kind) {
    let mut env = Env::start(kind).await;
    let mut c = env.client().await;
    let (dave, erin) = ("dave-shared-5521", "erin-shared-5522");
    let url = "https://www.shop.example/";
    let mut shared = Browser::new();
    let s = env.login(&mut c, &mut shared, url, dave).await;
    let s2 = env.login(&mut c, &mut shared, url, erin).await;
    assert_ne!(s2, s, "Erin's login moved her to a client of her own");
    let mut own = Browser::new();
    own.user_agent = "Mozilla/5.0 (Dave's own)".into();
    let d = env.login(&mut c, &mut own, url, dave).await;
    let mut own = Browser::new();
    own.user_agent = "Mozilla/5.0 (Erin's own)".into();
    let e = env.login(&mut c, &mut own, url, erin).await;
    assert_eq!(lookup(&mut c, erin).await.unwrap(), [e.clone(), s2.clone()]);

    let erased = forget(&mut c, dave).await;
    assert_eq!(
        erased.identities_erased, 2,
        "the shared browser's first client and Dave's"
    );
    assert_eq!(lookup(&mut c, dave).await, Err(tonic::Code::NotFound));
    assert_eq!(
        lookup(&mut c, erin).await.unwrap(),
        [e.as_str(), s2.as_str()],
        "Erin's index stays whole"
    );
    env.assert_nothing_names("after erasing Dave", &[dave, &s, &d], &[&e, &s2])
        .await;

    let mut c = env.client().await;
    let erased = forget(&mut c, erin).await;
    assert_eq!(erased.identities_erased, 2, "Erin's two clients");
    assert_eq!(lookup(&mut c, erin).await, Err(tonic::Code::NotFound));
    env.assert_nothing_names(
        "after erasing Erin too",
        &[dave, erin, &s, &d, &e, &s2],
        &[],
    )
    .await;
}

/// A hand-off recorded a token and a bridge entry; the user is erased
/// before either is used. The bridge entry goes with the erasure, the
/// token is refused on a page view and to a passive call, and nothing of
/// the visitor is stored again.
async fn pending_token_and_bridge(kind: Kind) {
    let mut env = Env::start(kind).await;
    let mut c = env.client().await;
    let user = "frank-pending-6631";
    let mut b = Browser::new();
    let id = env
        .login(&mut c, &mut b, "https://www.source-a.example/", user)
        .await;
    let h = c
        .record_handoff(pb::RecordHandoffRequest {
            context: Some(b.context("https://www.source-a.example/checkout", "")),
            destination_url: "https://www.dest-b.example/landing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.identity.unwrap().client_id, id);

    let erased = forget(&mut c, user).await;
    assert_eq!(erased.identities_erased, 1);
    // Before any arrival could take it, the bridge entry is gone too.
    env.assert_nothing_names("with a token and a bridge entry pending", &[user, &id], &[])
        .await;
    let mut c = env.client().await;

    // The same browser arrives without the link's parameters: the bridge
    // does not match it to the erased visitor.
    let mut arriving = Browser::new();
    let r = arriving
        .visit(
            &mut c,
            "https://www.dest-b.example/landing",
            "https://www.source-a.example/",
        )
        .await;
    let arrived = env.note(&r.identity);
    assert_ne!(r.method(), ResolutionMethod::ReferrerBridge);
    assert_ne!(arrived.client_id, id);
    assert!(arrived.user_id.is_empty());

    // The token on a page view: refused; a new visitor.
    let mut other = Browser::new();
    let r = other.visit(&mut c, &h.decorated_url, "").await;
    let got = env.note(&r.identity);
    assert_eq!(r.method(), ResolutionMethod::New);
    assert!(
        refused_as_erased(&r, pb::EvidenceKind::HandoffToken),
        "{:?}",
        r.rejected
    );
    assert_ne!(got.client_id, id);
    assert!(got.user_id.is_empty());

    // The token to a passive call (a webhook): no visitor.
    let err = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(common::ctx("www.dest-b.example", "")),
            handoff_token: h.token.clone(),
            passive: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains(ERASED), "{}", err.message());

    let (arrived, redeemed) = (arrived.client_id, got.client_id);
    env.assert_nothing_names(
        "after the token and the arrival",
        &[user, &id],
        &[&arrived, &redeemed],
    )
    .await;
}

#[tokio::test]
async fn sled_erases_a_long_history() {
    long_history(Kind::Sled).await;
}

#[tokio::test]
async fn redis_erases_a_long_history() {
    long_history(Kind::Redis).await;
}

#[tokio::test]
async fn redis_cluster_erases_a_long_history() {
    long_history(Kind::Cluster).await;
}

#[tokio::test]
async fn sled_erases_a_shared_browser_and_keeps_the_other_user() {
    shared_browser(Kind::Sled).await;
}

#[tokio::test]
async fn redis_erases_a_shared_browser_and_keeps_the_other_user() {
    shared_browser(Kind::Redis).await;
}

#[tokio::test]
async fn redis_cluster_erases_a_shared_browser_and_keeps_the_other_user() {
    shared_browser(Kind::Cluster).await;
}

#[tokio::test]
async fn sled_erasure_refuses_a_pending_token_and_bridge_entry() {
    pending_token_and_bridge(Kind::Sled).await;
}

#[tokio::test]
async fn redis_erasure_refuses_a_pending_token_and_bridge_entry() {
    pending_token_and_bridge(Kind::Redis).await;
}

#[tokio::test]
async fn redis_cluster_erasure_refuses_a_pending_token_and_bridge_entry() {
    pending_token_and_bridge(Kind::Cluster).await;
}

/// ForgetVisitor: an anonymous visitor, and a logged-in user's second
/// browser, erased through their own cookie alone. The user keeps the other
/// browser; nothing names the erased clients; the cookie deletions come
/// back; a bare client id (a forged `_ga`) erases nothing.
async fn forget_visitor(kind: Kind) {
    let mut env = Env::start(kind).await;
    let mut c = env.client().await;
    let url = "https://www.shop.example/";
    let mut anon = Browser::new();
    let a = anon.visit(&mut c, url, "").await;
    let anon_id = env.note(&a.identity).client_id;
    let user = "gina-visitor-8841";
    let mut home = Browser::new();
    let h = env.login(&mut c, &mut home, url, user).await;
    let mut work = Browser::new();
    work.user_agent = "Mozilla/5.0 (Gina's work)".into();
    let w = env.login(&mut c, &mut work, url, user).await;

    // A client id is not a secret: without the own cookie, nothing goes.
    let forged = pb::RequestContext {
        cookie_header: format!("_ga=GA1.2.{anon_id}"),
        ..anon.context(url, "")
    };
    let err = c
        .forget_visitor(pb::ForgetVisitorRequest {
            context: Some(pb::RequestContext {
                host: forged.host.clone(),
                cookie_header: forged.cookie_header.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    for (browser, id) in [(&mut anon, &anon_id), (&mut work, &w)] {
        let r = c
            .forget_visitor(pb::ForgetVisitorRequest {
                context: Some(browser.context(url, "")),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.found && r.identities_erased == 1, "{id}: {r:?}");
        assert!(
            r.cookies
                .iter()
                .any(|c| c.name.ends_with("-sbid") && c.max_age_seconds == Some(0)),
            "the own cookie is deleted: {:?}",
            r.cookies
        );
    }
    assert_eq!(
        lookup(&mut c, user).await.unwrap(),
        [h.as_str()],
        "the user keeps the browser not erased"
    );
    // The erased browser, still holding its cookie, starts afresh.
    let again = work.visit(&mut c, url, "").await;
    assert_ne!(again.identity.clone().unwrap().client_id, w);
    assert_eq!(again.identity.clone().unwrap().user_id, "");
    env.note(&again.identity);
    env.assert_nothing_names("after ForgetVisitor", &[&anon_id, &w], &[&h])
        .await;
}

#[tokio::test]
async fn sled_forgets_a_visitor_by_its_cookie() {
    forget_visitor(Kind::Sled).await;
}

#[tokio::test]
async fn redis_forgets_a_visitor_by_its_cookie() {
    forget_visitor(Kind::Redis).await;
}

#[tokio::test]
async fn redis_cluster_forgets_a_visitor_by_its_cookie() {
    forget_visitor(Kind::Cluster).await;
}
