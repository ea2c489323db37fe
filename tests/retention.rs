//! What the store keeps, and for how long: a first visit with no other
//! evidence is kept for `first_visit_ttl_secs` (a day by default), and the
//! visitor's next hit with the cookie keeps it for the full identity
//! lifetime, in one write. On sled the stopped server's data directory is
//! read back (every value unsealed, with its expiry); on Redis, the keys'
//! own TTL and the commands the server sent.

mod common;

use std::path::Path;

use common::{keyfile, Browser, Client, InProc};
use sessionbridge::clock::Clock;
use sessionbridge::identity::ClientId;
use sessionbridge::keys::Keyring;
use sessionbridge::pb::{self, ResolutionMethod};
use sessionbridge::store::{unseal_every_record, UnsealedRecord};

const SHOP: &str = "https://www.shop.example/";
const DAY: i64 = 86_400;
const FULL: i64 = 400 * DAY;
/// The sweeper removes a record once its expiry bucket (at most ten
/// minutes past the expiry, for lifetimes of a day) has passed.
const BUCKET: i64 = 600;

fn method(r: &pb::ResolveSessionResponse) -> ResolutionMethod {
    ResolutionMethod::try_from(r.method).unwrap()
}

fn client_id(r: &pb::ResolveSessionResponse) -> String {
    r.identity.as_ref().expect("an identity").client_id.clone()
}

/// Every value the stopped server's store holds, unsealed with the key
/// file and the client ids the test knows.
fn stored(data: &Path, keys: &Path, clients: &[&str]) -> Vec<UnsealedRecord> {
    let keyring = Keyring::load(keys).unwrap();
    let ids: Vec<ClientId> = clients.iter().map(|c| c.parse().unwrap()).collect();
    // The stopped server's last connection tasks may hold the directory's
    // lock a moment longer.
    let mut tries = 0;
    let records = loop {
        match unseal_every_record(data, &keyring.store_seal, &ids, &[]) {
            Err(e) if e.to_string().contains("could not acquire lock") && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    };
    for r in &records {
        assert!(r.plain.is_some(), "a value in {:?} does not open", r.tree);
    }
    records
}

/// The one client record among `records`, as JSON, with its expiry.
fn the_client(records: &[UnsealedRecord]) -> (String, i64, Vec<u8>) {
    let clients: Vec<_> = records.iter().filter(|r| r.tree == "clients").collect();
    assert_eq!(clients.len(), 1, "{records:?}");
    let r = clients[0];
    (
        String::from_utf8(r.plain.clone().unwrap()).unwrap(),
        r.expires_at.expect("an expiry"),
        r.stored.clone(),
    )
}

/// A passive call with the browser's cookies: whether the visitor's record
/// is stored, and the client it names.
async fn persisted(c: &mut Client, browser: &Browser) -> (bool, String) {
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(browser.context(SHOP, "")),
            passive: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(method(&r), ResolutionMethod::Cookie);
    (r.persisted, client_id(&r))
}

/// A visitor who never comes back: the record of their first visit lives a
/// day, the sweeper removes it, and nothing of it stays. Should they come
/// back after all, the cookie still names them, as for any record that has
/// expired, and they are stored again, this time for the full lifetime.
#[tokio::test]
async fn a_first_visit_that_never_returns_is_swept_after_its_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let data = dir.path().join("data");
    // Only the sweeps the test asks for run while it does.
    let args = [
        "--keys",
        keys.to_str().unwrap(),
        "--sweep-interval-secs",
        "86400",
    ];
    let server = InProc::start(&data, &args).await;
    let mut c = server.client().await;
    let mut browser = Browser::new();

    let before = server.clock.now();
    let first = browser.visit(&mut c, SHOP, "").await;
    let after = server.clock.now();
    assert_eq!(method(&first), ResolutionMethod::New);
    let id = client_id(&first);
    let cookie = first.cookies.iter().find(|k| k.value.len() > 20).unwrap();
    assert_eq!(
        cookie.max_age_seconds,
        Some(FULL),
        "the cookie keeps its full lifetime"
    );
    let server = {
        let clock = server.clock.clone();
        server.stop().await;
        let (json, expires, _) = the_client(&stored(&data, &keys, &[&id]));
        assert!(json.contains("\"first_visit\":true"), "{json}");
        assert!(
            (before + DAY..=after + DAY).contains(&expires),
            "kept for a day: {expires} against {before}"
        );
        InProc::start_on(&data, &args, clock).await
    };

    // A day later (and the expiry bucket), the sweeper removes it: the
    // record and its expiry index entry.
    server.advance(DAY - 60);
    assert_eq!(server.sweep().await, 0, "still within its day");
    server.advance(60 + BUCKET);
    assert_eq!(server.sweep().await, 1);
    let mut c = server.client().await;
    assert_eq!(persisted(&mut c, &browser).await, (false, id.clone()));
    let clock = server.clock.clone();
    server.stop().await;
    let left = stored(&data, &keys, &[&id]);
    assert!(left.is_empty(), "the store still holds {left:?}");

    // The visitor comes back after all: the cookie names them, a new
    // session starts, and the record is written for the full lifetime.
    let server = InProc::start_on(&data, &args, clock).await;
    let mut c = server.client().await;
    let back = browser.visit(&mut c, SHOP, "").await;
    assert_eq!(method(&back), ResolutionMethod::Cookie);
    assert_eq!(client_id(&back), id);
    assert!(back.new_session);
    assert_eq!(back.identity.as_ref().unwrap().session_number, 2);
    let now = server.clock.now();
    server.stop().await;
    let (json, expires, _) = the_client(&stored(&data, &keys, &[&id]));
    assert!(!json.contains("first_visit"), "{json}");
    assert!(expires >= now - 5 + FULL, "kept for the full lifetime");
}

/// Puts a `_ga` cookie anyone could write (random number `random`, first
/// visit a moment before `now`) in the browser's jar for the shop.
fn made_up_ga(browser: &mut Browser, random: u32, now: i64) {
    browser.accept(
        "www.shop.example",
        &[pb::Cookie {
            name: "_ga".into(),
            value: format!("GA1.1.{random}.{}", now - 100),
            ..Default::default()
        }],
    );
}

/// A GA id is written by anyone: a first visit that brings only a `_ga`
/// (a bot can make one up for every request) is kept no longer than one
/// that brings nothing, with its `adopted` mark; the visitor's next hit,
/// with the own cookie, keeps it for the full lifetime and the mark with
/// it, so a later login on it still moves to a fresh client id.
#[tokio::test]
async fn a_first_visit_with_only_a_ga_id_is_kept_for_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let data = dir.path().join("data");
    let args = [
        "--keys",
        keys.to_str().unwrap(),
        "--sweep-interval-secs",
        "86400",
    ];
    let server = InProc::start(&data, &args).await;
    let mut browser = Browser::new();
    made_up_ga(&mut browser, 734826195, server.clock.now());
    let before = server.clock.now();
    let first = browser.visit(&mut server.client().await, SHOP, "").await;
    let after = server.clock.now();
    assert_eq!(method(&first), ResolutionMethod::GaCookie);
    let id = client_id(&first);
    assert!(id.starts_with("734826195."), "{id}");
    let clock = server.clock.clone();
    server.stop().await;
    let (json, expires, _) = the_client(&stored(&data, &keys, &[&id]));
    assert!(json.contains("\"first_visit\":true"), "{json}");
    assert!(json.contains("\"adopted\":true"), "{json}");
    assert!(
        (before + DAY..=after + DAY).contains(&expires),
        "kept for a day: {expires} against {before}"
    );

    // Back with the own cookie (and the `_ga`): the full lifetime, still
    // adopted.
    let server = InProc::start_on(&data, &args, clock.clone()).await;
    let second = browser.visit(&mut server.client().await, SHOP, "").await;
    assert_eq!(method(&second), ResolutionMethod::Cookie);
    assert_eq!(client_id(&second), id);
    let now = server.clock.now();
    server.stop().await;
    let (json, expires, _) = the_client(&stored(&data, &keys, &[&id]));
    assert!(!json.contains("first_visit"), "{json}");
    assert!(json.contains("\"adopted\":true"), "{json}");
    assert!(expires >= now - 5 + FULL, "kept for the full lifetime");

    // Never back: after its day the sweeper removes it.
    let fresh = dir.path().join("fresh");
    let server = InProc::start_on(&fresh, &args, clock).await;
    let mut bot = Browser::new();
    made_up_ga(&mut bot, 111222333, server.clock.now());
    let r = bot.visit(&mut server.client().await, SHOP, "").await;
    assert_eq!(method(&r), ResolutionMethod::GaCookie);
    server.advance(DAY + BUCKET + 60);
    assert_eq!(server.sweep().await, 1, "the made-up id's record goes");
    server.stop().await;
    let left = stored(&fresh, &keys, &[&client_id(&r)]);
    assert!(left.is_empty(), "the store still holds {left:?}");
}

/// A visitor who comes back with the cookie: the second hit rewrites the
/// record once, for the full lifetime; later hits write nothing (the value
/// stored is byte for byte the same, nonce included); past the first-visit
/// lifetime the sweeper leaves it, and it still names the same client.
#[tokio::test]
async fn a_second_hit_keeps_the_visitor_for_the_full_lifetime_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let data = dir.path().join("data");
    // Hits a few seconds apart change nothing but the last-hit time: none
    // of them is due for a touch write.
    let args = [
        "--keys",
        keys.to_str().unwrap(),
        "--touch-write-secs",
        "180",
        "--sweep-interval-secs",
        "86400",
    ];
    let mut server = InProc::start(&data, &args).await;
    let mut browser = Browser::new();

    let first = browser.visit(&mut server.client().await, SHOP, "").await;
    assert_eq!(method(&first), ResolutionMethod::New);
    let id = client_id(&first);
    let clock = server.clock.clone();
    server.stop().await;
    let (_, first_expiry, first_value) = the_client(&stored(&data, &keys, &[&id]));

    server = InProc::start_on(&data, &args, clock.clone()).await;
    let second = browser.visit(&mut server.client().await, SHOP, "").await;
    assert_eq!(method(&second), ResolutionMethod::Cookie);
    assert_eq!(client_id(&second), id);
    assert!(!second.new_session);
    server.stop().await;
    let (json, expiry, value) = the_client(&stored(&data, &keys, &[&id]));
    assert_ne!(value, first_value, "the second hit writes");
    assert!(!json.contains("first_visit"), "{json}");
    assert!(
        expiry >= first_expiry + FULL - DAY,
        "extended to the full lifetime: {expiry} against {first_expiry}"
    );

    server = InProc::start_on(&data, &args, clock.clone()).await;
    let mut c = server.client().await;
    for _ in 0..5 {
        let hit = browser.visit(&mut c, SHOP, "").await;
        assert_eq!(method(&hit), ResolutionMethod::Cookie);
        assert_eq!(client_id(&hit), id);
    }
    server.stop().await;
    let (_, _, unchanged) = the_client(&stored(&data, &keys, &[&id]));
    assert_eq!(unchanged, value, "later hits write nothing");

    server = InProc::start_on(&data, &args, clock).await;
    server.advance(DAY + BUCKET + 60);
    assert_eq!(server.sweep().await, 0);
    let mut c = server.client().await;
    assert_eq!(persisted(&mut c, &browser).await, (true, id.clone()));
    let back = browser.visit(&mut c, SHOP, "").await;
    assert_eq!(method(&back), ResolutionMethod::Cookie);
    assert_eq!(client_id(&back), id);
    server.stop().await;
}

/// A setting of its own: a first visit kept for an hour is gone after it.
#[tokio::test]
async fn the_first_visit_lifetime_is_a_setting() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let data = dir.path().join("data");
    let args = [
        "--keys",
        keys.to_str().unwrap(),
        "--first-visit-ttl-secs",
        "3600",
        "--sweep-interval-secs",
        "86400",
    ];
    let server = InProc::start(&data, &args).await;
    let mut c = server.client().await;
    let mut browser = Browser::new();
    let id = client_id(&browser.visit(&mut c, SHOP, "").await);
    server.advance(3600 + 60);
    assert_eq!(server.sweep().await, 1);
    assert_eq!(persisted(&mut c, &browser).await, (false, id));
    server.stop().await;
}

/// The Redis store: the record key's own TTL is the first-visit lifetime,
/// then the full lifetime after the second hit; the second hit is one
/// write script, later hits none; a visitor who does not come back is not
/// found a day later on the service's clock, before Redis's own expiry.
#[tokio::test]
async fn redis_keeps_a_first_visit_for_a_day_and_a_returning_visitor_for_good() {
    let redis = common::Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let keys = keyfile(dir.path());
    let url = redis.url();
    let args = [
        "--keys",
        keys.to_str().unwrap(),
        "--store",
        "redis",
        "--redis-urls",
        &url,
        "--touch-write-secs",
        "180",
    ];
    let server = InProc::start(&dir.path().join("data"), &args).await;
    let mut c = server.client().await;
    let ttl = |id: &str| -> i64 {
        redis
            .cli(&["TTL", &format!("sessionbridge:c:{id}")])
            .trim()
            .parse()
            .unwrap()
    };
    // Scripts run: each record write is one.
    let writes = || -> u64 {
        redis
            .cli(&["INFO", "commandstats"])
            .lines()
            .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
            .filter_map(|l| {
                l.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    };

    let mut stays = Browser::new();
    let first = stays.visit(&mut c, SHOP, "").await;
    let id = client_id(&first);
    let t = ttl(&id);
    assert!((DAY - 30..=DAY).contains(&t), "first visit TTL {t}");
    let before = writes();
    let second = stays.visit(&mut c, SHOP, "").await;
    assert_eq!(method(&second), ResolutionMethod::Cookie);
    assert_eq!(writes(), before + 1, "the second hit is one write");
    let t = ttl(&id);
    assert!(t >= FULL - 30, "after the second hit TTL {t}");
    let before = writes();
    for _ in 0..5 {
        let hit = stays.visit(&mut c, SHOP, "").await;
        assert_eq!(method(&hit), ResolutionMethod::Cookie);
    }
    assert_eq!(writes(), before, "later hits write nothing");

    let mut leaves = Browser::new();
    let gone = client_id(&leaves.visit(&mut c, SHOP, "").await);
    assert!(ttl(&gone) <= DAY);
    server.advance(DAY + 1);
    assert_eq!(persisted(&mut c, &leaves).await, (false, gone.clone()));
    assert_eq!(persisted(&mut c, &stays).await, (true, id.clone()));
    // The one who left comes back: the cookie names them, kept for good.
    let back = leaves.visit(&mut c, SHOP, "").await;
    assert_eq!(method(&back), ResolutionMethod::Cookie);
    assert_eq!(client_id(&back), gone);
    assert!(ttl(&gone) >= FULL - 30);
    server.stop().await;
}
