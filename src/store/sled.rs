//! The embedded store: one sled database per sidecar.
//!
//! Layout: a tree per record kind (`clients`, `users`, `links`, `tokens`,
//! `bridge`, `erased`, `bridge_by_client`) whose values are an envelope
//! `[expires_at u64 BE][bucket u64 BE][body]` (a client record's body in
//! the compact layout of `compact.rs`, other bodies JSON), and an `expiry` tree keyed
//! `[bucket u64 BE][kind u8][record key]` that the sweeper walks in time
//! order. The bucket is the expiry rounded up to a granularity that
//! grows with the lifetime, so touching a long-lived record on every hit
//! rarely moves its index entry. Every multi-record change is one sled
//! transaction: all of it lands or none of it does.
//!
//! Erasure: `users` holds each user's recent clients (trimmed to the
//! history); `links` holds every client ever linked to a user, one entry
//! `[user index][client storage key]` per pair, kept at least as long as the
//! client's record (its expiry is the record's, rounded up to a day, and
//! renewed when a write outlives it). `erased` holds tombstones under a
//! keyed hash of the client id; `bridge_by_client` indexes bridge entries by
//! the same hash (`[hash][bridge key]`), so erasure finds pending ones.
//! Erasing a user scans its `links` prefix, then holds the write locks of
//! those clients while one transaction tombstones and removes them: a write
//! of one of them either lands before (and is erased) or sees the
//! tombstone. A bridge entry is indexed, then written, then checked
//! against the tombstone; erasure tombstones, then scans the index: one of
//! the two always sees the other.
//!
//! Sealed at rest: a client record is stored under a keyed hash of its
//! client id and encrypted (XChaCha20-Poly1305) under a key derived from the
//! client id; a user index under its keyed user hash, encrypted under a key
//! derived from the user id or email; a bridge entry encrypted under its
//! keyed fingerprint. sled is log-structured, so erased records can linger
//! in old segments: sealed this way, they read as noise to anyone who does
//! not hold both the key file and the identifier they were stored under.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use tokio::sync::{mpsc, watch};

use super::compact;
use super::seal::{seal, unseal, Sealer};
use super::{
    BridgeEntry, Claim, ClientRecord, ClientWrite, Erased, Put, Store, StoreError, UserEntry,
};
use crate::identity::ClientId;
use crate::privacy::UserKey;

const KIND_CLIENT: u8 = 1;
const KIND_USER: u8 = 2;
const KIND_TOKEN: u8 = 3;
const KIND_BRIDGE: u8 = 4;
const KIND_LINK: u8 = 5;
const KIND_TOMBSTONE: u8 = 6;
const KIND_BRIDGE_INDEX: u8 = 7;
/// Reverse-index entries expire on whole days after the record they cover,
/// so a client seen every minute renews them about once a day.
const LINK_GRAIN: i64 = 86_400;
const HEADER: usize = 16;
/// Expired records removed per sweeper transaction, so a sweep never holds
/// up requests for long.
const SWEEP_BATCH: usize = 512;

/// When a write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// After it is in memory; sled flushes to disk every `flush_interval`.
    /// A crash loses at most that interval of writes.
    Interval,
    /// Only once it is on disk. Concurrent writes share one flush (group
    /// commit), so the cost is one fsync per batch, not per write.
    Sync,
}

/// Group commit: writers note a sequence number and wait until a flush that
/// started after their write has finished.
struct GroupCommit {
    written: AtomicU64,
    /// Wakes the committer; when the store (every clone) is dropped, the
    /// channel closes and the committer ends, releasing the database.
    wake: mpsc::Sender<()>,
    flushed: watch::Sender<Result<u64, String>>,
}

/// The sled-backed store.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    clients: sled::Tree,
    users: sled::Tree,
    /// The untrimmed reverse index: `[user index][client storage key]`.
    links: sled::Tree,
    tokens: sled::Tree,
    bridge: sled::Tree,
    /// Tombstones of erased clients, under [`Sealer::mark`].
    erased: sled::Tree,
    /// `[client mark][bridge key]`: the bridge entries of a client.
    bridge_by_client: sled::Tree,
    expiry: sled::Tree,
    commit: Option<Arc<GroupCommit>>,
    sealer: Sealer,
    /// Serialize writes of one key (by the key's first byte) between the
    /// plain writes of [`put_plain`] and the transactions that touch the
    /// same record. A client's record and its `links` entries are written
    /// under the stripe of the client's storage key, a bridge entry and its
    /// `bridge_by_client` entry under the bridge key's. The directory is
    /// locked to this process, so in-process locks are enough.
    stripes: Arc<[std::sync::Mutex<()>; STRIPES]>,
}

const STRIPES: usize = 64;

/// sled's own default page cache, 1 GiB.
pub const DEFAULT_CACHE_MB: u64 = 1024;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => unavailable(e),
    }
}

fn bucket_of(expires_at: i64, now: i64) -> u64 {
    let ttl = expires_at.saturating_sub(now);
    let grain: i64 = if ttl <= 3600 {
        60
    } else if ttl <= 86_400 {
        600
    } else {
        3600
    };
    let e = expires_at.max(0);
    ((e + grain - 1) / grain * grain) as u64
}

fn envelope(expires_at: i64, bucket: u64, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + body.len());
    v.extend_from_slice(&(expires_at.max(0) as u64).to_be_bytes());
    v.extend_from_slice(&bucket.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// `(expires_at, bucket, body)` of a stored value.
fn open_envelope(v: &[u8]) -> Result<(i64, u64, &[u8]), StoreError> {
    if v.len() < HEADER {
        return Err(StoreError::Corrupt("value shorter than its header".into()));
    }
    let exp = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
    let bucket = u64::from_be_bytes(v[8..16].try_into().expect("8 bytes"));
    Ok((exp as i64, bucket, &v[HEADER..]))
}

fn expiry_key(bucket: u64, kind: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.extend_from_slice(&bucket.to_be_bytes());
    k.push(kind);
    k.extend_from_slice(key);
    k
}

/// Where the bridge tree keeps a token's bridge keys (bridge keys are 32
/// bytes, so the two never collide).
fn bridge_token_key(token_id: &[u8; 16]) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(b't');
    k.extend_from_slice(token_id);
    k
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(body).map_err(|e| super::undecodable(&e))
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// Inserts `body` under `key` with an expiry, keeping the expiry index in
/// step: the old index entry goes only when the bucket changes.
fn put_ttl(
    tree: &TransactionalTree,
    expiry: &TransactionalTree,
    kind: u8,
    key: &[u8],
    body: &[u8],
    expires_at: i64,
    now: i64,
) -> TxResult<()> {
    let bucket = bucket_of(expires_at, now);
    let old = tree.insert(key, envelope(expires_at, bucket, body))?;
    if let Some(old) = old {
        let (_, old_bucket, _) =
            open_envelope(&old).map_err(ConflictableTransactionError::Abort)?;
        if old_bucket == bucket {
            return Ok(());
        }
        expiry.remove(expiry_key(old_bucket, kind, key))?;
    }
    expiry.insert(expiry_key(bucket, kind, key), &[])?;
    Ok(())
}

/// Inserts one record with its expiry index entry without a transaction
/// (a multi-tree transaction costs several times a plain write in sled).
/// Safe because the index entry is written before the record, the old entry
/// is removed only after the record no longer needs it, writes of one key
/// are serialized by the caller's stripe lock, and the sweeper deletes a
/// record only after reading its own expiry: a crash between the steps can
/// leave a surplus index entry, never a record without one.
fn put_plain(
    tree: &sled::Tree,
    expiry: &sled::Tree,
    kind: u8,
    key: &[u8],
    body: &[u8],
    expires_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    let bucket = bucket_of(expires_at, now);
    let old_bucket = match tree.get(key).map_err(unavailable)? {
        Some(old) => Some(open_envelope(&old)?.1),
        None => None,
    };
    if old_bucket != Some(bucket) {
        expiry
            .insert(expiry_key(bucket, kind, key), &[])
            .map_err(unavailable)?;
    }
    tree.insert(key, envelope(expires_at, bucket, body))
        .map_err(unavailable)?;
    if let Some(old) = old_bucket.filter(|&b| b != bucket) {
        expiry
            .remove(expiry_key(old, kind, key))
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Removes a record and its expiry index entry; returns its expiry and body.
fn remove_ttl(
    tree: &TransactionalTree,
    expiry: &TransactionalTree,
    kind: u8,
    key: &[u8],
) -> TxResult<Option<(i64, Vec<u8>)>> {
    let Some(old) = tree.remove(key)? else {
        return Ok(None);
    };
    let (exp, bucket, body) = open_envelope(&old).map_err(ConflictableTransactionError::Abort)?;
    expiry.remove(expiry_key(bucket, kind, key))?;
    Ok(Some((exp, body.to_vec())))
}

/// [`remove_ttl`] without a transaction, under the key's stripe lock: the
/// record goes first, so a crash between leaves at most a surplus index
/// entry, which the sweeper drops.
fn remove_plain(
    tree: &sled::Tree,
    expiry: &sled::Tree,
    kind: u8,
    key: &[u8],
) -> Result<(), StoreError> {
    if let Some(old) = tree.remove(key).map_err(unavailable)? {
        let (_, bucket, _) = open_envelope(&old)?;
        expiry
            .remove(expiry_key(bucket, kind, key))
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Where the reverse index says that `client_key` was linked to `user`.
fn link_key(user: &UserKey, client_key: &[u8; 16]) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..32].copy_from_slice(&user.index);
    k[32..].copy_from_slice(client_key);
    k
}

fn bridge_index_key(mark: &[u8; 16], bridge_key: &[u8; 32]) -> [u8; 48] {
    let mut k = [0u8; 48];
    k[..16].copy_from_slice(mark);
    k[16..].copy_from_slice(bridge_key);
    k
}

/// The expiry of reverse-index entries covering a record that expires at
/// `expires_at`.
fn link_until(expires_at: i64) -> i64 {
    let e = expires_at.max(0);
    (e + LINK_GRAIN - 1) / LINK_GRAIN * LINK_GRAIN
}

fn stripe_of(key: &[u8]) -> usize {
    key.first().copied().unwrap_or(0) as usize % STRIPES
}

/// The users a write links its client to: the record's and the new ones.
fn users_of(w: &ClientWrite<'_>) -> Vec<UserKey> {
    let mut users = w.record.user_keys.clone();
    for k in w.link {
        if !users.contains(k) {
            users.push(*k);
        }
    }
    users
}

/// Removes `ids` from `user`'s index of recent clients, keeping the index
/// (and its expiry) for the clients that remain.
fn drop_from_index(
    users: &TransactionalTree,
    expiry: &TransactionalTree,
    sealer: &Sealer,
    user: &UserKey,
    ids: &[ClientId],
    now: i64,
) -> TxResult<()> {
    let abort = ConflictableTransactionError::Abort;
    let Some(v) = users.get(user.index)? else {
        return Ok(());
    };
    let (exp, _, body) = open_envelope(&v).map_err(abort)?;
    let cipher = sealer.user_cipher(user);
    let mut list: Vec<UserEntry> = unseal(&cipher, &user.index, body)
        .and_then(|plain| decode(&plain))
        .map_err(abort)?;
    let before = list.len();
    list.retain(|e| !ids.contains(&e.client_id));
    if list.is_empty() || exp <= now {
        remove_ttl(users, expiry, KIND_USER, &user.index)?;
    } else if list.len() != before {
        put_ttl(
            users,
            expiry,
            KIND_USER,
            &user.index,
            &seal(&cipher, &user.index, &encode(&list)),
            exp,
            now,
        )?;
    }
    Ok(())
}

fn live(v: &[u8], now: i64) -> Result<Option<&[u8]>, StoreError> {
    let (exp, _, body) = open_envelope(v)?;
    Ok((exp > now).then_some(body))
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, sealing records with
    /// subkeys of `seal_key` (the key file's `store_seal`), with sled's
    /// default page cache.
    pub fn open(
        dir: &Path,
        durability: Durability,
        flush_interval: Duration,
        seal_key: &crate::keys::Secret,
    ) -> Result<Self, StoreError> {
        Self::open_with_cache(dir, durability, flush_interval, seal_key, DEFAULT_CACHE_MB)
    }

    /// [`SledStore::open`] with a page cache of `cache_mb` MiB: the records
    /// beyond it are read back from the file (the OS page cache) and
    /// decoded again on each miss.
    pub fn open_with_cache(
        dir: &Path,
        durability: Durability,
        flush_interval: Duration,
        seal_key: &crate::keys::Secret,
        cache_mb: u64,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| unavailable(format!("data directory {}: {e}", dir.display())))?;
        let flush_every = match durability {
            Durability::Interval => Some(flush_interval.as_millis().max(1) as u64),
            Durability::Sync => None,
        };
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(flush_every)
            .cache_capacity(cache_mb.max(1).saturating_mul(1 << 20))
            .open()
            .map_err(|e| unavailable(format!("data directory {}: {e}", dir.display())))?;
        let tree = |name: &str| db.open_tree(name).map_err(unavailable);
        let store = Self {
            clients: tree("clients")?,
            users: tree("users")?,
            links: tree("links")?,
            tokens: tree("tokens")?,
            bridge: tree("bridge")?,
            erased: tree("erased")?,
            bridge_by_client: tree("bridge_by_client")?,
            expiry: tree("expiry")?,
            commit: None,
            stripes: Arc::new(std::array::from_fn(|_| std::sync::Mutex::new(()))),
            sealer: Sealer::new(seal_key),
            db,
        };
        Ok(match durability {
            Durability::Interval => store,
            Durability::Sync => store.with_group_commit(),
        })
    }

    fn with_group_commit(mut self) -> Self {
        let (tx, _) = watch::channel(Ok(0));
        let (wake, mut woken) = mpsc::channel(1);
        let gc = Arc::new(GroupCommit {
            written: AtomicU64::new(0),
            wake,
            flushed: tx,
        });
        let db = self.db.clone();
        let weak = Arc::downgrade(&gc);
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                let Some(gc) = weak.upgrade() else { return };
                let target = gc.written.load(Ordering::Acquire);
                let db = db.clone();
                let result = tokio::task::spawn_blocking(move || db.flush())
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map(|_| target).map_err(|e| e.to_string()));
                if let Err(e) = &result {
                    tracing::error!(error = %e, "store flush failed");
                }
                let _ = gc.flushed.send_replace(result);
            }
        });
        self.commit = Some(gc);
        self
    }

    fn stripe(&self, key: &[u8]) -> std::sync::MutexGuard<'_, ()> {
        self.stripes[stripe_of(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a live tombstone is stored under `mark`.
    fn tombstoned(&self, mark: &[u8; 16], now: i64) -> Result<bool, StoreError> {
        match self.erased.get(mark).map_err(unavailable)? {
            Some(v) => Ok(live(&v, now)?.is_some()),
            None => Ok(false),
        }
    }

    /// Every client the user was ever linked to within the retention: the
    /// reverse index, and the index of recent clients (which may name
    /// clients linked before the reverse index existed).
    fn linked_clients(&self, key: &UserKey) -> Result<(bool, Vec<ClientId>), StoreError> {
        let cipher = self.sealer.user_cipher(key);
        let mut ids = Vec::new();
        for item in self.links.scan_prefix(key.index) {
            let (k, v) = item.map_err(unavailable)?;
            let (_, _, body) = open_envelope(&v)?;
            let id: ClientId = decode(&unseal(&cipher, &k, body)?)?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let mut found = !ids.is_empty();
        if let Some(v) = self.users.get(key.index).map_err(unavailable)? {
            found = true;
            let (_, _, body) = open_envelope(&v)?;
            let list: Vec<UserEntry> = decode(&unseal(&cipher, &key.index, body)?)?;
            for e in list {
                if !ids.contains(&e.client_id) {
                    ids.push(e.client_id);
                }
            }
        }
        Ok((found, ids))
    }

    /// The synchronous part of erasure: tombstones, records, links and
    /// indexes in one transaction, under the write locks of the clients.
    fn erase_clients(
        &self,
        key: &UserKey,
        ids: &[ClientId],
        now: i64,
        tombstone_until: i64,
    ) -> Result<u32, StoreError> {
        let client_keys: Vec<[u8; 16]> = ids.iter().map(|&id| self.sealer.client_key(id)).collect();
        let marks: Vec<[u8; 16]> = ids.iter().map(|&id| self.sealer.mark(id)).collect();
        let mut stripes: Vec<usize> = client_keys.iter().map(|k| stripe_of(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        // In ascending order, as no other path holds more than one.
        let _held: Vec<_> = stripes
            .iter()
            .map(|&i| self.stripes[i].lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        (
            &self.clients,
            &self.users,
            &self.links,
            &self.erased,
            &self.expiry,
        )
            .transaction(|(clients, users, links, erased, expiry)| {
                let abort = ConflictableTransactionError::Abort;
                let mut count = 0;
                for ((&id, ck), mark) in ids.iter().zip(&client_keys).zip(&marks) {
                    put_ttl(
                        erased,
                        expiry,
                        KIND_TOMBSTONE,
                        mark,
                        &[],
                        tombstone_until,
                        now,
                    )?;
                    remove_ttl(links, expiry, KIND_LINK, &link_key(key, ck))?;
                    let Some((exp, body)) = remove_ttl(clients, expiry, KIND_CLIENT, ck)? else {
                        continue;
                    };
                    if exp > now {
                        count += 1;
                    }
                    let rec = unseal(&self.sealer.client_cipher(id), ck, &body)
                        .and_then(|plain| compact::decode(id, &plain))
                        .map_err(abort)?;
                    for other in rec.user_keys.iter().filter(|k| *k != key) {
                        remove_ttl(links, expiry, KIND_LINK, &link_key(other, ck))?;
                        drop_from_index(users, expiry, &self.sealer, other, &[id], now)?;
                    }
                }
                drop_from_index(users, expiry, &self.sealer, key, ids, now)?;
                Ok(count)
            })
            .map_err(tx_error)
    }

    /// Removes the bridge entries that name `id`, and their index entries.
    fn drop_bridges_of(&self, id: ClientId) -> Result<(), StoreError> {
        let mark = self.sealer.mark(id);
        let indexed: Vec<sled::IVec> = self
            .bridge_by_client
            .scan_prefix(mark)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        for ik in indexed {
            let Ok(bkey) = <[u8; 32]>::try_from(&ik[16..]) else {
                continue;
            };
            let _stripe = self.stripe(&bkey);
            if let Some(v) = self.bridge.get(bkey).map_err(unavailable)? {
                let (_, _, body) = open_envelope(&v)?;
                // Another client's entry may have replaced it under the same
                // key since; one that does not open goes too.
                let names = unseal(&self.sealer.bridge_cipher(&bkey), &bkey, body)
                    .and_then(|plain| decode::<BridgeEntry>(&plain))
                    .map_or(true, |e| e.identity.client_id == id);
                if names {
                    remove_plain(&self.bridge, &self.expiry, KIND_BRIDGE, &bkey)?;
                }
            }
            remove_plain(&self.bridge_by_client, &self.expiry, KIND_BRIDGE_INDEX, &ik)?;
        }
        Ok(())
    }

    /// Resolves once the writes made so far are durable as configured.
    async fn durable(&self) -> Result<(), StoreError> {
        let Some(gc) = &self.commit else {
            return Ok(());
        };
        let mut rx = gc.flushed.subscribe();
        let seq = gc.written.fetch_add(1, Ordering::AcqRel) + 1;
        // A full channel already holds a wake-up the committer will see.
        let _ = gc.wake.try_send(());
        loop {
            match &*rx.borrow_and_update() {
                Ok(done) if *done >= seq => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(unavailable(format!("flush failed: {e}"))),
            }
            rx.changed()
                .await
                .map_err(|_| unavailable("store is shutting down"))?;
        }
    }

    /// Bytes the database occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

impl Store for SledStore {
    async fn get_client(&self, id: ClientId, now: i64) -> Result<Option<ClientRecord>, StoreError> {
        let key = self.sealer.client_key(id);
        let Some(v) = self.clients.get(key).map_err(unavailable)? else {
            return Ok(None);
        };
        match live(&v, now)? {
            Some(body) => {
                compact::decode(id, &unseal(&self.sealer.client_cipher(id), &key, body)?).map(Some)
            }
            None => Ok(None),
        }
    }

    async fn put_client(&self, w: ClientWrite<'_>) -> Result<Put, StoreError> {
        let now = w.record.identity.last_seen;
        let id = w.record.identity.client_id;
        let key = self.sealer.client_key(id);
        let mark = self.sealer.mark(id);
        let body = seal(
            &self.sealer.client_cipher(id),
            &key,
            &compact::encode(w.record),
        );
        let until = link_until(w.expires_at);
        // The reverse-index entries of this client, sealed under each
        // user's key.
        let links: Vec<([u8; 48], Vec<u8>)> = users_of(&w)
            .iter()
            .map(|user| {
                let lk = link_key(user, &key);
                let sealed = seal(&self.sealer.user_cipher(user), &lk, &encode(&id));
                (lk, sealed)
            })
            .collect();
        let put = if w.link.is_empty() {
            let _stripe = self.stripe(&key);
            if self.tombstoned(&mark, now)? {
                return Ok(Put::Erased);
            }
            // A write made from a read older than a concurrent login keeps
            // that login's links (records only ever gain users here).
            let merged = match self.clients.get(key).map_err(unavailable)? {
                Some(v) => {
                    let (exp, _, stored) = open_envelope(&v)?;
                    if exp > now {
                        let old = compact::decode(
                            id,
                            &unseal(&self.sealer.client_cipher(id), &key, stored)?,
                        )?;
                        super::keep_links(w.record, &old)
                    } else {
                        None
                    }
                }
                None => None,
            };
            let body = match &merged {
                Some(m) => seal(&self.sealer.client_cipher(id), &key, &compact::encode(m)),
                None => body,
            };
            // The reverse index first: a crash between the two leaves an
            // entry that outlives its record, never a record it misses.
            for (lk, sealed) in &links {
                let covered = match self.links.get(lk).map_err(unavailable)? {
                    Some(v) => open_envelope(&v)?.0 >= w.expires_at,
                    None => false,
                };
                if !covered {
                    put_plain(&self.links, &self.expiry, KIND_LINK, lk, sealed, until, now)?;
                }
            }
            put_plain(
                &self.clients,
                &self.expiry,
                KIND_CLIENT,
                &key,
                &body,
                w.expires_at,
                now,
            )?;
            Put::Stored
        } else {
            let entry = UserEntry {
                client_id: id,
                linked_at: now,
            };
            let _stripe = self.stripe(&key);
            (
                &self.clients,
                &self.users,
                &self.links,
                &self.erased,
                &self.expiry,
            )
                .transaction(|(clients, users, links_tx, erased, expiry)| {
                    let abort = ConflictableTransactionError::Abort;
                    if let Some(v) = erased.get(mark)? {
                        if live(&v, now).map_err(abort)?.is_some() {
                            return Ok(Put::Erased);
                        }
                    }
                    put_ttl(clients, expiry, KIND_CLIENT, &key, &body, w.expires_at, now)?;
                    for user in w.link {
                        let cipher = self.sealer.user_cipher(user);
                        let mut list: Vec<UserEntry> = match users.get(user.index)? {
                            Some(v) => match live(&v, now).map_err(abort)? {
                                Some(body) => unseal(&cipher, &user.index, body)
                                    .and_then(|plain| decode(&plain))
                                    .map_err(abort)?,
                                None => Vec::new(),
                            },
                            None => Vec::new(),
                        };
                        list.retain(|e| e.client_id != entry.client_id);
                        list.insert(0, entry);
                        list.truncate(w.history.max(1));
                        put_ttl(
                            users,
                            expiry,
                            KIND_USER,
                            &user.index,
                            &seal(&cipher, &user.index, &encode(&list)),
                            w.expires_at,
                            now,
                        )?;
                    }
                    for (lk, sealed) in &links {
                        let covered = match links_tx.get(lk)? {
                            Some(v) => open_envelope(&v).map_err(abort)?.0 >= w.expires_at,
                            None => false,
                        };
                        if !covered {
                            put_ttl(links_tx, expiry, KIND_LINK, lk, sealed, until, now)?;
                        }
                    }
                    Ok(Put::Stored)
                })
                .map_err(tx_error)?
        };
        if put == Put::Stored {
            self.durable().await?;
        }
        Ok(put)
    }

    async fn lookup_user(&self, key: UserKey, now: i64) -> Result<Vec<UserEntry>, StoreError> {
        let Some(v) = self.users.get(key.index).map_err(unavailable)? else {
            return Ok(Vec::new());
        };
        match live(&v, now)? {
            Some(body) => decode(&unseal(&self.sealer.user_cipher(&key), &key.index, body)?),
            None => Ok(Vec::new()),
        }
    }

    async fn forget_user(
        &self,
        key: UserKey,
        now: i64,
        tombstone_until: i64,
    ) -> Result<Erased, StoreError> {
        let (found, ids) = self.linked_clients(&key)?;
        if !found {
            return Ok(Erased::default());
        }
        let clients = self.erase_clients(&key, &ids, now, tombstone_until)?;
        // After the tombstones: a bridge entry indexed before this scan is
        // found by it; one indexed after it sees its client's tombstone.
        for &id in &ids {
            self.drop_bridges_of(id)?;
        }
        self.durable().await?;
        Ok(Erased {
            found: true,
            clients,
        })
    }

    async fn forget_client(
        &self,
        id: ClientId,
        now: i64,
        tombstone_until: i64,
    ) -> Result<Erased, StoreError> {
        let clients = self.erase_clients(&super::NOBODY, &[id], now, tombstone_until)?;
        self.drop_bridges_of(id)?;
        self.durable().await?;
        Ok(Erased {
            found: clients > 0,
            clients,
        })
    }

    async fn is_erased(&self, id: ClientId, now: i64) -> Result<bool, StoreError> {
        self.tombstoned(&self.sealer.mark(id), now)
    }

    async fn claim_token(
        &self,
        id: [u8; 16],
        max_uses: u32,
        expires_at: i64,
        now: i64,
    ) -> Result<Claim, StoreError> {
        let claim = (&self.tokens, &self.expiry)
            .transaction(|(tokens, expiry)| {
                let used = match tokens.get(id)? {
                    Some(v) => match live(&v, now).map_err(ConflictableTransactionError::Abort)? {
                        Some(body) => {
                            decode::<u32>(body).map_err(ConflictableTransactionError::Abort)?
                        }
                        None => 0,
                    },
                    None => 0,
                };
                if used >= max_uses {
                    return Ok(Claim::UsedUp);
                }
                put_ttl(
                    tokens,
                    expiry,
                    KIND_TOKEN,
                    &id,
                    &encode(&(used + 1)),
                    expires_at,
                    now,
                )?;
                Ok(Claim::Granted(used + 1))
            })
            .map_err(tx_error)?;
        if matches!(claim, Claim::Granted(_)) {
            self.durable().await?;
        }
        Ok(claim)
    }

    async fn put_bridge(
        &self,
        key: [u8; 32],
        entry: &BridgeEntry,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let now = entry.created_at;
        let mark = self.sealer.mark(entry.identity.client_id);
        let ik = bridge_index_key(&mark, &key);
        {
            let _stripe = self.stripe(&key);
            let mut entry = std::borrow::Cow::Borrowed(entry);
            if let Some(old) = self.bridge.get(key).map_err(unavailable)? {
                let (exp, _, body) = open_envelope(&old)?;
                if exp > now {
                    let old: BridgeEntry =
                        decode(&unseal(&self.sealer.bridge_cipher(&key), &key, body)?)?;
                    if old.ambiguous || old.identity.client_id != entry.identity.client_id {
                        entry = std::borrow::Cow::Owned(BridgeEntry::ambiguous(now));
                    }
                }
            }
            let body = seal(&self.sealer.bridge_cipher(&key), &key, &encode(&*entry));
            // Indexed, written, then checked: an erasure tombstones before
            // it scans the index, so one of the two sees the other.
            put_plain(
                &self.bridge_by_client,
                &self.expiry,
                KIND_BRIDGE_INDEX,
                &ik,
                &[],
                expires_at,
                now,
            )?;
            put_plain(
                &self.bridge,
                &self.expiry,
                KIND_BRIDGE,
                &key,
                &body,
                expires_at,
                now,
            )?;
            if self.tombstoned(&mark, now)? {
                remove_plain(&self.bridge, &self.expiry, KIND_BRIDGE, &key)?;
                remove_plain(&self.bridge_by_client, &self.expiry, KIND_BRIDGE_INDEX, &ik)?;
            }
        }
        if entry.token_id != [0; 16] {
            // token id -> the bridge keys recorded with it (hashes only).
            let tkey = bridge_token_key(&entry.token_id);
            let _stripe = self.stripe(&tkey);
            let mut keys = match self.bridge.get(&tkey).map_err(unavailable)? {
                Some(old) => {
                    let (exp, _, body) = open_envelope(&old)?;
                    if exp > now {
                        body.to_vec()
                    } else {
                        Vec::new()
                    }
                }
                None => Vec::new(),
            };
            keys.extend_from_slice(&key);
            put_plain(
                &self.bridge,
                &self.expiry,
                KIND_BRIDGE,
                &tkey,
                &keys,
                expires_at,
                now,
            )?;
        }
        self.durable().await
    }

    async fn drop_bridge_of_token(&self, token_id: [u8; 16], now: i64) -> Result<(), StoreError> {
        let tkey = bridge_token_key(&token_id);
        let keys = {
            let _stripe = self.stripe(&tkey);
            let Some(old) = self.bridge.remove(&tkey).map_err(unavailable)? else {
                return Ok(());
            };
            let (exp, bucket, body) = open_envelope(&old)?;
            self.expiry
                .remove(expiry_key(bucket, KIND_BRIDGE, &tkey))
                .map_err(unavailable)?;
            if exp <= now {
                return Ok(());
            }
            body.to_vec()
        };
        for key in keys.chunks_exact(32) {
            let _stripe = self.stripe(key);
            if let Some(old) = self.bridge.remove(key).map_err(unavailable)? {
                let (_, bucket, _) = open_envelope(&old)?;
                self.expiry
                    .remove(expiry_key(bucket, KIND_BRIDGE, key))
                    .map_err(unavailable)?;
            }
        }
        self.durable().await
    }

    async fn take_bridge(
        &self,
        key: [u8; 32],
        now: i64,
    ) -> Result<Option<BridgeEntry>, StoreError> {
        // One remove is atomic: of two arrivals, one gets the entry. An
        // expired entry is removed too: the sweeper's work, done early.
        let taken = {
            let _stripe = self.stripe(&key);
            let Some(old) = self.bridge.remove(key).map_err(unavailable)? else {
                return Ok(None);
            };
            let (exp, bucket, body) = open_envelope(&old)?;
            self.expiry
                .remove(expiry_key(bucket, KIND_BRIDGE, &key))
                .map_err(unavailable)?;
            (exp > now).then(|| body.to_vec())
        };
        let Some(body) = taken else { return Ok(None) };
        self.durable().await?;
        decode(&unseal(&self.sealer.bridge_cipher(&key), &key, &body)?).map(Some)
    }

    async fn sweep(&self, now: i64) -> Result<usize, StoreError> {
        let mut removed = 0;
        loop {
            let due: Vec<sled::IVec> = self
                .expiry
                .range(..expiry_key(now.max(0) as u64 + 1, 0, &[]))
                .keys()
                .take(SWEEP_BATCH)
                .collect::<Result<_, _>>()
                .map_err(unavailable)?;
            if due.is_empty() {
                break;
            }
            let n = (
                &self.clients,
                &self.users,
                &self.tokens,
                &self.bridge,
                &self.links,
                &self.erased,
                &self.bridge_by_client,
                &self.expiry,
            )
                .transaction(
                    |(clients, users, tokens, bridge, links, erased, by_client, expiry)| {
                        let mut n = 0;
                        for k in &due {
                            expiry.remove(k)?;
                            let tree = match k.get(8) {
                                Some(&KIND_CLIENT) => clients,
                                Some(&KIND_USER) => users,
                                Some(&KIND_TOKEN) => tokens,
                                Some(&KIND_BRIDGE) => bridge,
                                Some(&KIND_LINK) => links,
                                Some(&KIND_TOMBSTONE) => erased,
                                Some(&KIND_BRIDGE_INDEX) => by_client,
                                _ => continue,
                            };
                            let key = &k[9..];
                            if let Some(v) = tree.get(key)? {
                                let (exp, _, _) = open_envelope(&v)
                                    .map_err(ConflictableTransactionError::Abort)?;
                                if exp <= now {
                                    tree.remove(key)?;
                                    n += 1;
                                }
                            }
                        }
                        Ok(n)
                    },
                )
                .map_err(tx_error)?;
            removed += n;
            tokio::task::yield_now().await;
        }
        Ok(removed)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn disk_bytes(&self) -> Option<u64> {
        self.db.size_on_disk().ok()
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(unavailable)?
            .map_err(unavailable)?;
        Ok(())
    }
}

/// One stored value of a data directory, unsealed (test support).
#[doc(hidden)]
#[derive(Debug)]
pub struct UnsealedRecord {
    pub tree: String,
    pub key: Vec<u8>,
    /// The value as the service wrote it before sealing (JSON, a counter,
    /// or empty; a client record shown as JSON); None when it could not be
    /// opened with what was given.
    pub plain: Option<Vec<u8>>,
    /// When the value expires (None in the expiry index, which has no
    /// envelope).
    pub expires_at: Option<i64>,
    /// The value as stored: it changes on every write (a fresh nonce).
    pub stored: Vec<u8>,
}

/// Opens a stopped server's data directory and unseals every value of
/// every tree with the key file's `store_seal` key. A client record opens
/// only with its client id and a user's entries only with its user key, so
/// the caller names every client and user that may be stored: a value left
/// unopened (`plain: None`) is one the caller did not expect. Test support:
/// it shows what erasure left, which the sealing hides from a byte scan.
#[doc(hidden)]
pub fn unseal_every_record(
    dir: &Path,
    seal_key: &crate::keys::Secret,
    clients: &[ClientId],
    users: &[UserKey],
) -> Result<Vec<UnsealedRecord>, StoreError> {
    let sealer = Sealer::new(seal_key);
    let db = sled::Config::new().path(dir).open().map_err(unavailable)?;
    let client_for = |k: &[u8]| {
        clients
            .iter()
            .find(|&&c| sealer.client_key(c) == k)
            .copied()
    };
    let user_for = |k: &[u8]| users.iter().find(|u| u.index[..] == k[..k.len().min(32)]);
    let mut out = Vec::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).map_err(unavailable)?;
        let tree_name = String::from_utf8_lossy(&name).into_owned();
        for item in tree.iter() {
            let (k, v) = item.map_err(unavailable)?;
            let body = || open_envelope(&v).map(|(_, _, b)| b.to_vec()).ok();
            let plain = match tree_name.as_str() {
                "clients" => client_for(&k).and_then(|c| {
                    let plain = unseal(&sealer.client_cipher(c), &k, &body()?).ok()?;
                    let rec = super::compact::decode(c, &plain).ok()?;
                    Some(serde_json::to_vec(&rec).expect("records serialize"))
                }),
                "users" | "links" => {
                    user_for(&k).and_then(|u| unseal(&sealer.user_cipher(u), &k, &body()?).ok())
                }
                // A token's index entry holds bridge keys (hashes) only.
                "bridge" if k.len() == 17 && k[0] == b't' => body(),
                "bridge" => <[u8; 32]>::try_from(&k[..])
                    .ok()
                    .and_then(|bk| unseal(&sealer.bridge_cipher(&bk), &k, &body()?).ok()),
                // Counters, and entries whose key is all they hold.
                "tokens" | "erased" | "bridge_by_client" => body(),
                // The expiry index holds keys only.
                "expiry" => Some(v.to_vec()),
                // A tree this function does not know: only an empty value
                // counts as opened.
                _ => v.is_empty().then(Vec::new),
            };
            out.push(UnsealedRecord {
                tree: tree_name.clone(),
                key: k.to_vec(),
                plain,
                expires_at: (tree_name != "expiry")
                    .then(|| open_envelope(&v).ok().map(|(exp, _, _)| exp))
                    .flatten(),
                stored: v.to_vec(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, SessionPolicy};

    /// A store in a fresh temporary directory (kept while the guard lives).
    fn temp_store(durability: Durability) -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(
            dir.path(),
            durability,
            Duration::from_millis(100),
            &zeroize::Zeroizing::new([7; 32]),
        )
        .unwrap();
        (dir, store)
    }

    fn record(id: ClientId, now: i64) -> ClientRecord {
        ClientRecord {
            identity: SessionPolicy::default().new_identity(id, now),
            user_keys: vec![],
            adopted: false,
            first_visit: false,
        }
    }

    #[tokio::test]
    async fn expired_records_are_invisible_then_swept() {
        let (_dir, store) = temp_store(Durability::Interval);
        let id = ClientId::from_parts(1, 1000);
        let rec = record(id, 1000);
        store
            .put_client(ClientWrite {
                record: &rec,
                link: &[],
                expires_at: 1100,
                history: 5,
            })
            .await
            .unwrap();
        assert!(store.get_client(id, 1099).await.unwrap().is_some());
        assert!(store.get_client(id, 1100).await.unwrap().is_none());
        assert_eq!(store.sweep(1050).await.unwrap(), 0);
        assert_eq!(store.sweep(2000).await.unwrap(), 1);
        assert_eq!(store.clients.len() + store.expiry.len(), 0);
    }

    /// A store written by an earlier version holds client records as
    /// JSON: they read, and their next write stores the compact layout.
    #[tokio::test]
    async fn json_records_of_earlier_versions_read_and_are_rewritten_compact() {
        let (_dir, store) = temp_store(Durability::Interval);
        let id = ClientId::from_parts(9, 1000);
        let mut rec = record(id, 1000);
        rec.adopted = true;
        rec.identity.user_id = Some("u-1".into());
        rec.user_keys = vec![UserKey::from_parts([5; 32], [6; 32])];
        let key = store.sealer.client_key(id);
        let cipher = store.sealer.client_cipher(id);
        let json = serde_json::to_vec(&rec).unwrap();
        assert_eq!(json[0], b'{');
        put_plain(
            &store.clients,
            &store.expiry,
            KIND_CLIENT,
            &key,
            &seal(&cipher, &key, &json),
            5000,
            1000,
        )
        .unwrap();
        assert_eq!(store.get_client(id, 1000).await.unwrap(), Some(rec.clone()));
        rec.identity.last_seen = 1100;
        store
            .put_client(ClientWrite {
                record: &rec,
                link: &[],
                expires_at: 5000,
                history: 5,
            })
            .await
            .unwrap();
        let stored = store.clients.get(key).unwrap().unwrap();
        let plain = unseal(&cipher, &key, open_envelope(&stored).unwrap().2).unwrap();
        assert_eq!(plain[0], 0x01, "the compact layout");
        assert!(plain.len() < json.len());
        assert_eq!(store.get_client(id, 1000).await.unwrap(), Some(rec));
    }

    #[tokio::test]
    async fn rewrites_move_the_expiry_entry() {
        let (_dir, store) = temp_store(Durability::Sync);
        let id = ClientId::from_parts(1, 1000);
        let mut rec = record(id, 1000);
        for t in [1000, 1010, 5000, 9000] {
            rec.identity = Identity {
                last_seen: t,
                ..rec.identity
            };
            store
                .put_client(ClientWrite {
                    record: &rec,
                    link: &[],
                    expires_at: t + 600,
                    history: 5,
                })
                .await
                .unwrap();
        }
        assert_eq!(store.expiry.len(), 1, "one index entry per record");
        assert_eq!(store.sweep(9599).await.unwrap(), 0);
        assert_eq!(store.sweep(9700).await.unwrap(), 1);
    }

    /// Concurrent rewrites of one record with expiries in different index
    /// buckets, from several threads: whichever write wins, its expiry has
    /// an index entry, so the record is swept in the end and nothing is
    /// left behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_rewrites_never_lose_the_index_entry() {
        let (_dir, store) = temp_store(Durability::Interval);
        let id = ClientId::from_parts(1, 1000);
        let mut tasks = Vec::new();
        for w in 0..8i64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..1000i64 {
                    let t = 1000 + n;
                    let mut rec = record(id, t);
                    rec.identity.session_number = w as u32;
                    store
                        .put_client(ClientWrite {
                            record: &rec,
                            link: &[],
                            // Two minute buckets, alternating, out of step
                            // between writers.
                            expires_at: 5000 + 60 * ((w + n) % 2),
                            history: 5,
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let live = store.get_client(id, 2000).await.unwrap();
        assert!(live.is_some());
        assert_eq!(store.sweep(100_000).await.unwrap(), 1);
        assert!(store.get_client(id, 0).await.unwrap().is_none());
        assert_eq!(store.clients.len(), 0, "record swept");
        assert_eq!(store.expiry.len(), 0, "no stray index entry");
    }

    /// Writers hammer a client while its user is erased: the erasure holds
    /// the client's write lock, so a write lands before it (and is erased)
    /// or after it (and is refused), never in between.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn an_erasure_racing_writes_leaves_nothing() {
        let (_dir, store) = temp_store(Durability::Interval);
        let user = UserKey::from_parts([3; 32], [33; 32]);
        for round in 0..20u32 {
            let id = ClientId::from_parts(round + 1, 1000);
            let mut rec = record(id, 1000);
            rec.user_keys = vec![user];
            fn w<'a>(rec: &'a ClientRecord, link: &'a [UserKey]) -> ClientWrite<'a> {
                ClientWrite {
                    record: rec,
                    link,
                    expires_at: 100_000,
                    history: 5,
                }
            }
            let linked = [user];
            assert_eq!(
                store.put_client(w(&rec, &linked)).await.unwrap(),
                Put::Stored
            );
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let writers: Vec<_> = (0..3)
                .map(|n| {
                    let (store, rec, stop) = (store.clone(), rec.clone(), stop.clone());
                    tokio::spawn(async move {
                        let mut i = 0u32;
                        while !stop.load(Ordering::Relaxed) {
                            let link = if (n + i) % 4 == 0 { &linked[..] } else { &[] };
                            store.put_client(w(&rec, link)).await.unwrap();
                            i += 1;
                        }
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(2)).await;
            let erased = store.forget_user(user, 1000, 2000).await.unwrap();
            assert_eq!(erased.clients, 1, "round {round}");
            tokio::time::sleep(Duration::from_millis(2)).await;
            stop.store(true, Ordering::Relaxed);
            for t in writers {
                t.await.unwrap();
            }
            assert_eq!(
                store.get_client(id, 1000).await.unwrap(),
                None,
                "round {round}"
            );
            assert!(store.lookup_user(user, 1000).await.unwrap().is_empty());
            assert_eq!(
                store.links.scan_prefix(user.index).count(),
                0,
                "round {round}: a reverse-index entry outlived its client"
            );
        }
    }

    /// Of many concurrent arrivals for one bridge entry, exactly one gets it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_bridge_entry_is_taken_once() {
        let (_dir, store) = temp_store(Durability::Interval);
        let key = [9u8; 32];
        let entry = BridgeEntry {
            identity: record(ClientId::from_parts(5, 1000), 1000).identity,
            destinations: vec!["example.net".into()],
            created_at: 1000,
            with_network: true,
            token_id: [0; 16],
            ambiguous: false,
        };
        store.put_bridge(key, &entry, 1060).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.take_bridge(key, 1010).await.unwrap()
            }));
        }
        let mut taken = 0;
        for t in tasks {
            if let Some(e) = t.await.unwrap() {
                assert_eq!(e.identity.client_id, entry.identity.client_id);
                taken += 1;
            }
        }
        assert_eq!(taken, 1);
        assert_eq!(store.bridge.len(), 0);
        // The entry's index by client stays until it expires with it.
        assert_eq!(store.bridge_by_client.len(), 1);
        assert_eq!(store.expiry.len(), 1);
        assert_eq!(store.sweep(2000).await.unwrap(), 1);
        assert_eq!(store.bridge_by_client.len() + store.expiry.len(), 0);
    }
}
