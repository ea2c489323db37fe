//! The store contract: what the service needs persisted, and nothing about
//! how. Every record carries an expiry time and is invisible once past it,
//! whether or not a sweeper has removed it yet.
//!
//! Erasure: besides each user's index (the recent clients `LookupByUser`
//! shows, trimmed to the configured history), a store keeps every client
//! ever linked to a user for as long as that client's record lives (the
//! untrimmed reverse index), so that erasing the user finds them all. An
//! erased client leaves a tombstone, a keyed hash of its id, for as long as
//! a token or bridge entry issued before the erasure may still name it:
//! the store refuses to write that client again, and the evidence readers
//! refuse it.

mod compact;
mod redis;
pub(crate) mod seal;
mod sled;

pub use self::redis::{RedisSettings, RedisStore};
#[doc(hidden)]
pub use self::sled::{unseal_every_record, UnsealedRecord};
pub use self::sled::{Durability, SledStore, DEFAULT_CACHE_MB as SLED_DEFAULT_CACHE_MB};

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::identity::{ClientId, Identity};
use crate::privacy::UserKey;

/// A stored visitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub identity: Identity,
    /// The user indexes that list this client, so erasing a user can find
    /// every index that names the same person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_keys: Vec<UserKey>,
    /// Forgeable evidence (GA's cookies or `_gl`, the referrer bridge, a
    /// raw session id) once named this client: its id is not a secret, so a
    /// login on it starts a fresh client id instead of linking it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// Written by a first visit that brought no verified evidence (none, or
    /// only what anyone can write, such as a GA id), and kept for
    /// `first_visit_ttl_secs` only: the visitor's next hit with the cookie
    /// rewrites it, once, for the full lifetime. Such a record holds
    /// nothing the cookie does not but the `adopted` mark (no user), so it
    /// may expire while the cookie lives: the cookie alone names the visitor
    /// again. Records written before the mark existed read as not marked.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub first_visit: bool,
}

/// One client in a user's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub client_id: ClientId,
    /// When the client was last linked to the user.
    pub linked_at: i64,
}

/// `new` with what `old` (the stored record) has and `new` lacks: its user
/// links, its user id, its adopted mark; None when `new` lacks nothing. A
/// write computed from a read that predates a concurrent login must not
/// drop that login.
pub(crate) fn keep_links(new: &ClientRecord, old: &ClientRecord) -> Option<ClientRecord> {
    let missing: Vec<UserKey> = old
        .user_keys
        .iter()
        .filter(|k| !new.user_keys.contains(k))
        .copied()
        .collect();
    let user_id = new.identity.user_id.is_none() && old.identity.user_id.is_some();
    let adopted = old.adopted && !new.adopted;
    if missing.is_empty() && !user_id && !adopted {
        return None;
    }
    let mut out = new.clone();
    out.user_keys.extend(missing);
    if user_id {
        out.identity.user_id = old.identity.user_id.clone();
    }
    out.adopted |= old.adopted;
    Some(out)
}

/// The user key of nobody: erasing one client through it leaves every
/// real user's index to the record's own list of users.
pub(crate) const NOBODY: UserKey = UserKey::from_parts([0; 32], [0; 32]);

/// What erasing a user removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    /// Whether the user had an index at all.
    pub found: bool,
    /// Live client records removed: every client linked to the user, those
    /// trimmed from its index included.
    pub clients: u32,
}

/// What a [`Store::put_client`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Put {
    /// The record (and its links) are stored.
    Stored,
    /// Nothing was written: the client was erased and its tombstone is
    /// still live.
    Erased,
}

/// The rejection detail of evidence that names an erased client.
pub const ERASED_DETAIL: &str = "the visitor was erased";

/// A recorded hand-off, kept for the referrer bridge: the identity that left
/// a site, waiting for a parameterless arrival from the same browser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeEntry {
    pub identity: Identity,
    /// Registrable domains the visitor was sent to; an arrival elsewhere
    /// does not match.
    pub destinations: Vec<String>,
    /// When the hand-off was recorded.
    pub created_at: i64,
    /// Whether the bridge key included a client network prefix.
    pub with_network: bool,
    /// The hand-off token recorded with it: redeeming the token on a page
    /// view drops the entry (on a store the two sites share).
    #[serde(default)]
    pub token_id: [u8; 16],
    /// Two different visitors left with the same bridge key within the
    /// window: nobody is matched.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ambiguous: bool,
}

impl BridgeEntry {
    /// The marker left under a key that two visitors shared.
    pub fn ambiguous(created_at: i64) -> Self {
        Self {
            identity: Identity {
                client_id: ClientId::from_parts(1, 0),
                session_id: 0,
                session_number: 1,
                user_id: None,
                last_seen: created_at,
            },
            destinations: Vec::new(),
            created_at,
            with_network: true,
            token_id: [0; 16],
            ambiguous: true,
        }
    }
}

/// The outcome of claiming one use of a hand-off token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This is use number `n` (1-based) of the token.
    Granted(u32),
    /// Every allowed use was already claimed.
    UsedUp,
}

/// Why a store call failed. Both map to UNAVAILABLE: the caller may retry,
/// and nothing was half-written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store record is corrupt: {0}")]
    Corrupt(String),
}

/// A record that does not decode. The text says where, never what: a
/// decoder's message can quote the value, and store errors are logged.
pub(crate) fn undecodable(e: &serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!(
        "undecodable record ({:?} error at line {}, column {})",
        e.classify(),
        e.line(),
        e.column()
    ))
}

/// A write: one client record plus the user indexes to put it at the head
/// of, applied atomically.
#[derive(Debug)]
pub struct ClientWrite<'a> {
    pub record: &'a ClientRecord,
    /// Link the client to these users (most recent first in their index).
    pub link: &'a [UserKey],
    /// Unix seconds after which the record and the indexes it touches expire.
    pub expires_at: i64,
    /// How many clients a user index keeps; older ones drop off.
    pub history: usize,
}

/// Persistence for the service. Implementations must make each call atomic
/// (all of it or none of it) and durable to the degree configured before
/// the returned future resolves.
pub trait Store: Send + Sync + 'static {
    /// A client's record, or None when absent or expired.
    fn get_client(
        &self,
        id: ClientId,
        now: i64,
    ) -> impl Future<Output = Result<Option<ClientRecord>, StoreError>> + Send;

    /// Writes a client record and links it to users, atomically, and keeps
    /// the client in the untrimmed reverse index of every user in
    /// `record.user_keys` (and `link`) until at least `expires_at`. A client
    /// with a live tombstone is not written: [`Put::Erased`].
    fn put_client(
        &self,
        write: ClientWrite<'_>,
    ) -> impl Future<Output = Result<Put, StoreError>> + Send;

    /// A user's linked clients, newest first, without expired entries.
    fn lookup_user(
        &self,
        key: UserKey,
        now: i64,
    ) -> impl Future<Output = Result<Vec<UserEntry>, StoreError>> + Send;

    /// Erases a user: every client ever linked to it whose record lives
    /// (not only the last `history` of its index), each such client from
    /// the indexes of other users (which stay, with their other clients),
    /// the pending bridge entries that name those clients, and the user's
    /// own indexes. Each erased client leaves a tombstone until
    /// `tombstone_until`. Counts the live records removed at `now`.
    fn forget_user(
        &self,
        key: UserKey,
        now: i64,
        tombstone_until: i64,
    ) -> impl Future<Output = Result<Erased, StoreError>> + Send;

    /// Erases one client: its record, its entries in the indexes of every
    /// user it is linked to (those indexes stay), its pending bridge
    /// entries, and leaves a tombstone until `tombstone_until`. `clients`
    /// counts the live record removed (0 or 1).
    fn forget_client(
        &self,
        id: ClientId,
        now: i64,
        tombstone_until: i64,
    ) -> impl Future<Output = Result<Erased, StoreError>> + Send;

    /// Whether `id` was erased and its tombstone is still live at `now`.
    fn is_erased(
        &self,
        id: ClientId,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Claims one use of token `id`, atomically across every caller of this
    /// store: of N concurrent claims on a token with `max_uses` uses,
    /// exactly `max_uses` are granted. The counter lives until `expires_at`.
    fn claim_token(
        &self,
        id: [u8; 16],
        max_uses: u32,
        expires_at: i64,
        now: i64,
    ) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Records a hand-off for the referrer bridge under a fingerprint key,
    /// under its token id, and under its client (so that erasing the client
    /// removes it). When a live entry under the same key names another
    /// client, the key becomes ambiguous (an entry with `ambiguous` set)
    /// until `expires_at`: two visitors are never told apart by a guess. The
    /// same client again replaces its entry. An entry whose client has a
    /// live tombstone does not stay.
    fn put_bridge(
        &self,
        key: [u8; 32],
        entry: &BridgeEntry,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops the bridge entries recorded with token `token_id` (its page
    /// view arrived with the token: nobody else may take them).
    fn drop_bridge_of_token(
        &self,
        token_id: [u8; 16],
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes and returns the live bridge entry under `key`: one hand-off
    /// matches one arrival.
    fn take_bridge(
        &self,
        key: [u8; 32],
        now: i64,
    ) -> impl Future<Output = Result<Option<BridgeEntry>, StoreError>> + Send;

    /// Removes records that expired before `now`; returns how many.
    fn sweep(&self, now: i64) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Makes every acknowledged write durable (called at shutdown).
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the store answers; the health check reports it.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Bytes the store's files take on disk, for an embedded store; None
    /// for a store that is not this process's (Redis). Cheap: no record is
    /// read.
    fn disk_bytes(&self) -> Option<u64> {
        None
    }
}
