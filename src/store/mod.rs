//! The store contract: what the service needs persisted, and nothing about
//! how. Every record carries an expiry time and is invisible once past it,
//! whether or not a sweeper has removed it yet.

mod sled;

pub use self::sled::{Durability, SledStore};

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
}

/// One client in a user's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEntry {
    pub client_id: ClientId,
    /// When the client was last linked to the user.
    pub linked_at: i64,
}

/// What erasing a user removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    /// Whether the user had an index at all.
    pub found: bool,
    /// Client records removed.
    pub clients: u32,
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

    /// Writes a client record and links it to users, atomically.
    fn put_client(
        &self,
        write: ClientWrite<'_>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A user's linked clients, newest first, without expired entries.
    fn lookup_user(
        &self,
        key: UserKey,
        now: i64,
    ) -> impl Future<Output = Result<Vec<UserEntry>, StoreError>> + Send;

    /// Removes a user's index, every client it lists, and every other user
    /// index that names those clients.
    fn forget_user(&self, key: UserKey) -> impl Future<Output = Result<Erased, StoreError>> + Send;

    /// Removes records that expired before `now`; returns how many.
    fn sweep(&self, now: i64) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Makes every acknowledged write durable (called at shutdown).
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
