//! One contract, two engines: the same checks run unchanged against the
//! embedded sled store and against a real Redis.

mod common;

use std::time::Duration;

use sessionbridge::identity::{ClientId, SessionPolicy};
use sessionbridge::privacy::UserKey;
use sessionbridge::service::now_unix;
use sessionbridge::store::{
    BridgeEntry, Claim, ClientRecord, ClientWrite, Durability, Put, RedisSettings, RedisStore,
    SledStore, Store,
};

fn record(random: u32, now: i64, user_keys: Vec<UserKey>) -> ClientRecord {
    let mut identity =
        SessionPolicy::default().new_identity(ClientId::from_parts(random, 1_700_000_000), now);
    identity.user_id = (!user_keys.is_empty()).then(|| "u".to_string());
    ClientRecord {
        identity,
        user_keys,
        adopted: false,
        first_visit: false,
    }
}

async fn put<S: Store>(
    s: &S,
    rec: &ClientRecord,
    link: &[UserKey],
    ttl: i64,
    history: usize,
) -> Put {
    s.put_client(ClientWrite {
        record: rec,
        link,
        expires_at: rec.identity.last_seen + ttl,
        history,
    })
    .await
    .unwrap()
}

fn randoms(entries: &[sessionbridge::store::UserEntry]) -> Vec<u32> {
    entries.iter().map(|e| e.client_id.random()).collect()
}

/// Every rule of the contract, in order.
/// The contract, on the time the caller passes. `real_ttl`: the engine
/// also expires keys by itself in real time (Redis), which needs one short
/// real wait; the embedded store goes by the time it is given alone.
async fn contract<S: Store + Clone>(s: S, real_ttl: bool) {
    let now = now_unix();
    let alice = UserKey::from_parts([1; 32], [11; 32]);
    let alice_email = UserKey::from_parts([2; 32], [22; 32]);

    // Absent, then written and read back whole.
    let a = record(11, now, vec![alice, alice_email]);
    assert_eq!(s.get_client(a.identity.client_id, now).await.unwrap(), None);
    put(&s, &a, &[alice, alice_email], 3600, 2).await;
    assert_eq!(
        s.get_client(a.identity.client_id, now).await.unwrap(),
        Some(a.clone())
    );

    // The user index: newest first, bounded, no duplicates.
    for (i, r) in [12u32, 13].into_iter().enumerate() {
        let rec = record(r, now + 1 + i as i64, vec![alice]);
        put(&s, &rec, &[alice], 3600, 2).await;
    }
    let ids: Vec<u32> = s
        .lookup_user(alice, now)
        .await
        .unwrap()
        .iter()
        .map(|e| e.client_id.random())
        .collect();
    assert_eq!(ids, [13, 12], "history of 2, newest first");
    let relinked = record(12, now + 5, vec![alice]);
    put(&s, &relinked, &[alice], 3600, 2).await;
    let entries = s.lookup_user(alice, now).await.unwrap();
    assert_eq!(
        entries
            .iter()
            .map(|e| e.client_id.random())
            .collect::<Vec<_>>(),
        [12, 13]
    );
    assert_eq!(entries[0].linked_at, now + 5);
    assert!(s
        .lookup_user(UserKey::from_parts([9; 32], [99; 32]), now)
        .await
        .unwrap()
        .is_empty());

    // Erasure: every client linked to the user, removed from the other
    // indexes that name it; those indexes stay, with their other clients.
    let tomb = now + 600;
    let erased = s.forget_user(alice_email, now, tomb).await.unwrap();
    assert!(erased.found);
    assert_eq!(erased.clients, 1);
    assert_eq!(s.get_client(a.identity.client_id, now).await.unwrap(), None);
    assert!(s.lookup_user(alice_email, now).await.unwrap().is_empty());
    assert_eq!(
        randoms(&s.lookup_user(alice, now).await.unwrap()),
        [12, 13],
        "the user id index keeps its own clients"
    );
    assert!(!s.forget_user(alice_email, now, tomb).await.unwrap().found);

    // The tombstone: the erased client is refused until it ends, and a
    // write of it stores nothing.
    let a_id = a.identity.client_id;
    assert!(s.is_erased(a_id, now).await.unwrap());
    assert!(!s.is_erased(a_id, tomb).await.unwrap(), "tombstones end");
    assert!(!s
        .is_erased(ClientId::from_parts(12, 1_700_000_000), now)
        .await
        .unwrap());
    assert_eq!(put(&s, &a, &[], 3600, 2).await, Put::Erased);
    assert_eq!(put(&s, &a, &[alice], 3600, 2).await, Put::Erased);
    assert_eq!(s.get_client(a_id, now).await.unwrap(), None);
    assert_eq!(randoms(&s.lookup_user(alice, now).await.unwrap()), [12, 13]);

    // Clients trimmed from the index are erased too, and a client two users
    // shared leaves the other's index, which stays.
    let bob = UserKey::from_parts([5; 32], [55; 32]);
    let shared = record(14, now + 10, vec![alice, bob]);
    assert_eq!(put(&s, &shared, &[alice, bob], 3600, 2).await, Put::Stored);
    let bobs = record(15, now + 11, vec![bob]);
    put(&s, &bobs, &[bob], 3600, 2).await;
    assert_eq!(
        randoms(&s.lookup_user(alice, now).await.unwrap()),
        [14, 12],
        "13 is trimmed"
    );
    let pending = BridgeEntry {
        identity: bobs.identity.clone(),
        destinations: vec!["shop.example".into()],
        created_at: now,
        with_network: true,
        token_id: [0; 16],
        ambiguous: false,
    };
    s.put_bridge([40; 32], &pending, now + 60).await.unwrap();
    let erased = s.forget_user(alice, now, tomb).await.unwrap();
    assert_eq!(erased.clients, 3, "12, 13 (trimmed) and 14");
    for r in [12, 13, 14] {
        let id = ClientId::from_parts(r, 1_700_000_000);
        assert_eq!(s.get_client(id, now).await.unwrap(), None, "client {r}");
        assert!(s.is_erased(id, now).await.unwrap());
    }
    assert!(s.lookup_user(alice, now).await.unwrap().is_empty());
    assert_eq!(randoms(&s.lookup_user(bob, now).await.unwrap()), [15]);
    assert!(s
        .get_client(bobs.identity.client_id, now)
        .await
        .unwrap()
        .is_some());

    // A pending bridge entry of an erased client goes with it, and one
    // recorded after the erasure does not stay.
    let erased = s.forget_user(bob, now, tomb).await.unwrap();
    assert_eq!(erased.clients, 1);
    assert_eq!(s.take_bridge([40; 32], now).await.unwrap(), None);
    s.put_bridge([41; 32], &pending, now + 60).await.unwrap();
    assert_eq!(s.take_bridge([41; 32], now).await.unwrap(), None);

    // Token uses: exactly max_uses grants.
    let t = [7u8; 16];
    assert_eq!(
        s.claim_token(t, 2, now + 60, now).await.unwrap(),
        Claim::Granted(1)
    );
    assert_eq!(
        s.claim_token(t, 2, now + 60, now).await.unwrap(),
        Claim::Granted(2)
    );
    assert_eq!(
        s.claim_token(t, 2, now + 60, now).await.unwrap(),
        Claim::UsedUp
    );
    let race = [8u8; 16];
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_token(race, 1, now + 60, now).await.unwrap() })
        })
        .collect();
    let mut granted = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Claim::Granted(_)) {
            granted += 1;
        }
    }
    assert_eq!(granted, 1, "50 concurrent claims of a single-use token");

    // The bridge: one entry matches once.
    let entry = BridgeEntry {
        identity: record(31, now, vec![]).identity,
        destinations: vec!["shop.example".into()],
        created_at: now,
        with_network: true,
        token_id: [0; 16],
        ambiguous: false,
    };
    s.put_bridge([3; 32], &entry, now + 60).await.unwrap();
    assert_eq!(
        s.take_bridge([3; 32], now).await.unwrap(),
        Some(entry.clone())
    );
    assert_eq!(s.take_bridge([3; 32], now).await.unwrap(), None);

    // The same client again replaces its entry; another client under the
    // same key makes it ambiguous: nobody is matched.
    s.put_bridge([7; 32], &entry, now + 60).await.unwrap();
    s.put_bridge([7; 32], &entry, now + 60).await.unwrap();
    assert!(
        !s.take_bridge([7; 32], now)
            .await
            .unwrap()
            .unwrap()
            .ambiguous
    );
    let other = BridgeEntry {
        identity: record(72, now, vec![]).identity,
        ..entry.clone()
    };
    s.put_bridge([7; 32], &entry, now + 60).await.unwrap();
    s.put_bridge([7; 32], &other, now + 60).await.unwrap();
    let taken = s.take_bridge([7; 32], now).await.unwrap().unwrap();
    assert!(taken.ambiguous, "two visitors under one key");
    assert_ne!(taken.identity.client_id, entry.identity.client_id);
    assert_ne!(taken.identity.client_id, other.identity.client_id);

    // Entries recorded with a token are dropped by its id.
    let with_token = BridgeEntry {
        token_id: [8; 16],
        ..entry.clone()
    };
    s.put_bridge([8; 32], &with_token, now + 60).await.unwrap();
    s.put_bridge([9; 32], &with_token, now + 60).await.unwrap();
    s.drop_bridge_of_token([8; 16], now).await.unwrap();
    assert_eq!(s.take_bridge([8; 32], now).await.unwrap(), None);
    assert_eq!(s.take_bridge([9; 32], now).await.unwrap(), None);
    s.drop_bridge_of_token([42; 16], now).await.unwrap();

    // Expiry: every kind of record disappears on time.
    let short = record(21, now, vec![]);
    put(&s, &short, &[UserKey::from_parts([4; 32], [44; 32])], 1, 5).await;
    s.put_bridge([5; 32], &entry, now + 1).await.unwrap();
    s.claim_token([6; 16], 1, now + 1, now).await.unwrap();
    // Past its expiry on the caller's clock, a record is gone at once,
    // whatever the engine's own timers say.
    assert_eq!(
        s.get_client(short.identity.client_id, now + 3)
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.take_bridge([5; 32], now + 3).await.unwrap(), None);
    s.put_bridge([5; 32], &entry, now + 1).await.unwrap();
    // The reverse index lives as long as the record it covers: a client
    // linked with a short life, then rewritten without a link for longer,
    // is still erased once the first expiry has passed (and been swept).
    let carol = UserKey::from_parts([6; 32], [66; 32]);
    let late = record(16, now, vec![carol]);
    put(&s, &late, &[carol], 1, 2).await;
    put(&s, &late, &[], 3 * 86_400, 2).await;
    if real_ttl {
        tokio::time::sleep(Duration::from_millis(2200)).await;
    }
    let later = now + 3;
    s.sweep(later).await.unwrap();
    assert_eq!(
        s.get_client(short.identity.client_id, later).await.unwrap(),
        None
    );
    assert!(s
        .lookup_user(UserKey::from_parts([4; 32], [44; 32]), later)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.take_bridge([5; 32], later).await.unwrap(), None);
    let then = now + 2 * 86_400;
    s.sweep(then).await.unwrap();
    assert!(s
        .get_client(late.identity.client_id, then)
        .await
        .unwrap()
        .is_some());
    let erased = s.forget_user(carol, then, then + 600).await.unwrap();
    assert_eq!(erased.clients, 1, "found through the reverse index");
    assert_eq!(
        s.get_client(late.identity.client_id, then).await.unwrap(),
        None
    );
    assert_eq!(
        s.claim_token([6; 16], 1, later + 60, later).await.unwrap(),
        Claim::Granted(1),
        "an expired counter starts over (the token itself has expired by then)"
    );
    // Writes of a client racing its user's erasure: whichever lands first,
    // once both are done the client is neither stored nor indexed.
    let dora = UserKey::from_parts([8; 32], [88; 32]);
    for round in 0..5u32 {
        let racer = record(100 + round, later, vec![dora]);
        put(&s, &racer, &[dora], 3600, 5).await;
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (s, racer) = (s.clone(), racer.clone());
                tokio::spawn(async move {
                    for i in 0..20 {
                        let link = if (w + i) % 2 == 0 { vec![dora] } else { vec![] };
                        put(&s, &racer, &link, 3600, 5).await;
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        tokio::task::yield_now().await;
        let erased = s.forget_user(dora, later, later + 600).await.unwrap();
        assert!(erased.found);
        for w in writers {
            w.await.unwrap();
        }
        let id = racer.identity.client_id;
        assert_eq!(
            s.get_client(id, later).await.unwrap(),
            None,
            "round {round}"
        );
        assert!(s.is_erased(id, later).await.unwrap());
        assert!(
            !s.lookup_user(dora, later)
                .await
                .unwrap()
                .iter()
                .any(|e| e.client_id == id),
            "round {round}"
        );
    }

    s.ping().await.unwrap();
    s.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sled_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(
        dir.path(),
        Durability::Sync,
        Duration::from_millis(100),
        &zeroize::Zeroizing::new([7; 32]),
    )
    .unwrap();
    contract(s, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_meets_the_contract() {
    let redis = common::Redis::start();
    let s = RedisStore::connect(
        &RedisSettings {
            urls: vec![redis.url()],
            cluster: false,
            key_prefix: "contract:".into(),
            response_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(1000),
        },
        &zeroize::Zeroizing::new([7; 32]),
    )
    .await
    .unwrap();
    contract(s, true).await;
    // Native expiry on every key: none is left without a TTL.
    for key in redis.cli(&["--scan", "--pattern", "contract:*"]).lines() {
        let ttl: i64 = redis.cli(&["TTL", key]).trim().parse().unwrap();
        assert!(ttl > 0, "{key} has no expiry ({ttl})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_meets_the_contract() {
    let cluster = common::RedisCluster::start();
    let s = RedisStore::connect(
        &RedisSettings {
            urls: cluster.urls(),
            cluster: true,
            key_prefix: "contract:".into(),
            response_timeout: Duration::from_millis(1000),
            connect_timeout: Duration::from_millis(1000),
        },
        &zeroize::Zeroizing::new([7; 32]),
    )
    .await
    .unwrap();
    contract(s, true).await;
}
