//! The shared store on Redis (or Valkey): many replicas and many domains
//! see one set of identities, one single-use counter per token and one
//! referrer bridge.
//!
//! Every key has a native expiry (EXAT), so Redis removes what is dead and
//! the sweeper has nothing to do. A token use is claimed by one atomic
//! script (INCR, then compare), never read-then-write. A user index is a
//! sorted set of client ids scored by link time, trimmed to the configured
//! history on every write.
//!
//! Besides the trimmed index, every client ever linked to a user stays in
//! the user's untrimmed reverse index, a sorted set scored by the expiry of
//! the client's record (renewed by every write of the record, entries past
//! their score dropped), which itself expires with its last entry. Erasing
//! a user erases every client in either; each leaves a tombstone under a
//! keyed hash of its client id, which refuses writes of that client, and
//! drops the pending bridge entries indexed under the same hash.
//!
//! On a single Redis, a client write with its indexes, a bridge entry with
//! its index, and an erasure are each one script: atomic, and each checks
//! or sets the tombstone inside it. Redis Cluster spreads keys over slots,
//! where none of these can span keys: there each key is written atomically
//! and the order makes up for the rest. A write puts the reverse index
//! first, then the record, then the trimmed index, then reads the
//! tombstone, and undoes itself if there is one; erasure sets the
//! tombstones first, then removes records and index entries. Whichever
//! comes second sees the other, so an erased client never stays written,
//! though a concurrent write can show it for a moment.
//!
//! Keys, under the configured prefix: `c:<client id>` (JSON record),
//! `u:<hex user key>` (sorted set, trimmed), `a:<hex user key>` (sorted set,
//! untrimmed), `t:<hex token id>` (use counter), `b:<hex bridge key>` (JSON
//! entry), `x:<hex client hash>` (tombstone: the time it ends), `bx:<hex
//! client hash>` (sorted set of the client's bridge keys). No key or value
//! holds an email, a User-Agent or an IP address; no tombstone names its
//! client.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use super::seal::Sealer;
use super::{
    BridgeEntry, Claim, ClientRecord, ClientWrite, Erased, Put, Store, StoreError, UserEntry,
};
use crate::identity::ClientId;
use crate::privacy::UserKey;

/// How to reach Redis.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` or `rediss://` for TLS; for
    /// a cluster, any number of seed nodes.
    pub urls: Vec<String>,
    pub cluster: bool,
    /// Prepended to every key, so several deployments can share a Redis.
    pub key_prefix: String,
    /// A command that takes longer fails (UNAVAILABLE) rather than hang.
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The Redis-backed store. Cloning shares the connection (multiplexed).
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    prefix: String,
    /// Keys the hashes that tombstones and bridge indexes are stored under.
    sealer: Sealer,
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

const CLAIM: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIREAT', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return 0 end
return n
";

/// Keeps `member` in an expiring sorted set with at least `score` (a unix
/// time), drops members whose score has passed on Redis's clock, and makes
/// the set expire with its last member.
const KEEP_FN: &str = r"
local function keep(key, score, member, t)
  redis.call('ZADD', key, 'GT', score, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. t)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('EXPIREAT', key, last[2]) end
end
local function erased(key, now)
  local v = redis.call('GET', key)
  return v ~= false and tonumber(v) ~= nil and tonumber(v) > tonumber(now)
end
";

/// [`KEEP_FN`] on one key (a cluster runs it key by key). KEYS[1] the set;
/// ARGV: score, member.
const KEEP: &str = r"
keep(KEYS[1], ARGV[1], ARGV[2], redis.call('TIME')[1])
return 1
";

/// A client write on a single Redis, atomically. KEYS[1] the record,
/// KEYS[2] the client's tombstone, KEYS[3 .. 2+n] the trimmed indexes to
/// link, the rest the reverse indexes of every user of the record. ARGV:
/// record, expiry, now, history, client id, n. Returns 0 when the client
/// is erased (nothing written).
const PUT: &str = r"
if erased(KEYS[2], ARGV[3]) then return 0 end
local t = redis.call('TIME')[1]
local n = tonumber(ARGV[6])
for i = 3 + n, #KEYS do keep(KEYS[i], ARGV[2], ARGV[5], t) end
redis.call('SET', KEYS[1], kept_links(KEYS[1], ARGV[1]), 'EXAT', ARGV[2])
for i = 3, 2 + n do
  redis.call('ZADD', KEYS[i], ARGV[3], ARGV[5])
  redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(tonumber(ARGV[4]) + 1))
  redis.call('EXPIREAT', KEYS[i], ARGV[2])
end
return 1
";

/// A client record to write, keeping what the stored one has and it lacks:
/// a write made from a read older than a concurrent login keeps that
/// login's links (and the adopted mark). Records only ever gain users here.
const KEPT_LINKS_FN: &str = r"
local function kept_links(key, rec)
  local old = redis.call('GET', key)
  if not old then return rec end
  local ok, o = pcall(cjson.decode, old)
  local okn, w = pcall(cjson.decode, rec)
  if not (ok and okn and type(o) == 'table' and type(w) == 'table') then return rec end
  local changed = false
  local have = {}
  w.user_keys = w.user_keys or {}
  for _, k in ipairs(w.user_keys) do have[k] = true end
  for _, k in ipairs(o.user_keys or {}) do
    if not have[k] then table.insert(w.user_keys, k); have[k] = true; changed = true end
  end
  if type(o.identity) == 'table' and type(w.identity) == 'table'
    and o.identity.user_id and not w.identity.user_id then
    w.identity.user_id = o.identity.user_id; changed = true
  end
  if o.adopted and not w.adopted then w.adopted = true; changed = true end
  if changed then return cjson.encode(w) end
  return rec
end
";

/// The record key alone (a cluster's step): KEYS[1] the record; ARGV:
/// record, expiry.
const PUT_RECORD: &str = r"
redis.call('SET', KEYS[1], kept_links(KEYS[1], ARGV[1]), 'EXAT', ARGV[2])
return 1
";

/// Decides what a bridge write leaves under KEYS[1]: the entry, or the
/// ambiguous marker when a live entry of another client is there. ARGV[a]
/// entry, ARGV[c] its client id, ARGV[m] the marker, ARGV[n] now.
const BRIDGE_VALUE_FN: &str = r"
local function bridge_value(key, entry, cid, marker, now)
  local old = redis.call('GET', key)
  if old then
    local ok, o = pcall(cjson.decode, old)
    if ok and type(o) == 'table' and tonumber(o.exp or 9e18) > tonumber(now) then
      if o.ambiguous or type(o.identity) ~= 'table' or o.identity.client_id ~= cid then
        return marker
      end
    end
  end
  return entry
end
";

/// A bridge entry on a single Redis, atomically: not written when its
/// client is erased; the ambiguous marker instead when another client's
/// live entry holds the key. KEYS[1] the entry, KEYS[2] the client's bridge
/// index, KEYS[3] its tombstone. ARGV: entry, expiry, now, bridge key
/// (hex), client id, ambiguous marker.
const PUT_BRIDGE: &str = r"
if erased(KEYS[3], ARGV[3]) then return 0 end
local val = bridge_value(KEYS[1], ARGV[1], ARGV[5], ARGV[6], ARGV[3])
redis.call('SET', KEYS[1], val, 'EXAT', ARGV[2])
keep(KEYS[2], ARGV[2], ARGV[4], redis.call('TIME')[1])
return 1
";

/// The entry key alone (a cluster's step): KEYS[1] the entry. ARGV: entry,
/// expiry, now, client id, ambiguous marker.
const PUT_BRIDGE_ONE: &str = r"
local val = bridge_value(KEYS[1], ARGV[1], ARGV[4], ARGV[5], ARGV[3])
redis.call('SET', KEYS[1], val, 'EXAT', ARGV[2])
return 1
";

/// Deletes a bridge entry if it names client ARGV[1] (or does not parse).
const DROP_BRIDGE_OF: &str = r"
local e = redis.call('GET', KEYS[1])
if not e then return 0 end
local ok, d = pcall(cjson.decode, e)
if ok and type(d) == 'table' and type(d.identity) == 'table' and d.identity.client_id ~= ARGV[1] then
  return 0
end
return redis.call('DEL', KEYS[1])
";

/// Erasure on a single Redis, atomically. KEYS[1] the user's trimmed index,
/// KEYS[2] its reverse index. ARGV: prefix, the user key's index (hex),
/// now, the tombstones' end, then (client id, client hash) pairs: every
/// client the two indexes named when read. Each is tombstoned; its record
/// goes, and it leaves the indexes of the other users its record names
/// (those indexes stay); its pending bridge entries go. Returns {found,
/// live records erased}.
const FORGET: &str = r"
local prefix, me, now, till = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local found = redis.call('EXISTS', KEYS[1], KEYS[2]) > 0
local count = 0
for i = 5, #ARGV, 2 do
  local cid, mark = ARGV[i], ARGV[i + 1]
  found = true
  redis.call('SET', prefix .. 'x:' .. mark, till, 'EXAT', till)
  local key = prefix .. 'c:' .. cid
  local rec = redis.call('GET', key)
  if rec then
    redis.call('DEL', key)
    local ok, r = pcall(cjson.decode, rec)
    if not ok or type(r) ~= 'table' or tonumber(r.exp or 9e18) > now then count = count + 1 end
    if ok and type(r) == 'table' and type(r.user_keys) == 'table' then
      for _, uk in ipairs(r.user_keys) do
        local other = string.sub(uk, 1, 64)
        if other ~= me then
          redis.call('ZREM', prefix .. 'u:' .. other, cid)
          redis.call('ZREM', prefix .. 'a:' .. other, cid)
        end
      end
    end
  end
  redis.call('ZREM', KEYS[1], cid)
  redis.call('ZREM', KEYS[2], cid)
  local bx = prefix .. 'bx:' .. mark
  for _, b in ipairs(redis.call('ZRANGE', bx, 0, -1)) do
    local bk = prefix .. 'b:' .. b
    local e = redis.call('GET', bk)
    if e then
      local ok, d = pcall(cjson.decode, e)
      if not (ok and type(d) == 'table' and type(d.identity) == 'table' and d.identity.client_id ~= cid) then
        redis.call('DEL', bk)
      end
    end
  end
  redis.call('DEL', bx)
end
return {found and 1 or 0, count}
";

fn script(body: &str) -> Script {
    Script::new(&format!("{KEEP_FN}{BRIDGE_VALUE_FN}{KEPT_LINKS_FN}{body}"))
}

/// The scripts, hashed once.
static SCRIPTS: std::sync::LazyLock<Scripts> = std::sync::LazyLock::new(|| Scripts {
    keep: script(KEEP),
    put: script(PUT),
    put_bridge: script(PUT_BRIDGE),
    put_bridge_one: script(PUT_BRIDGE_ONE),
    put_record: script(PUT_RECORD),
    forget: script(FORGET),
    drop_bridge_of: Script::new(DROP_BRIDGE_OF),
});

struct Scripts {
    keep: Script,
    put: Script,
    put_bridge: Script,
    put_bridge_one: Script,
    put_record: Script,
    forget: Script,
    drop_bridge_of: Script,
}

impl RedisStore {
    /// Connects (and checks the connection with a PING). `seal_key` (the
    /// key file's `store_seal`) keys the hashes of erased clients.
    pub async fn connect(
        s: &RedisSettings,
        seal_key: &crate::keys::Secret,
    ) -> Result<Self, StoreError> {
        if s.urls.is_empty() {
            return Err(StoreError::Unavailable("redis: no URL configured".into()));
        }
        let conn = if s.cluster {
            let client = redis::cluster::ClusterClient::builder(s.urls.clone())
                .connection_timeout(s.connect_timeout)
                .response_timeout(s.response_timeout)
                .retries(1)
                .build()
                .map_err(unavailable)?;
            Conn::Cluster(client.get_async_connection().await.map_err(unavailable)?)
        } else {
            if s.urls.len() > 1 {
                return Err(StoreError::Unavailable(
                    "redis: several URLs given without cluster mode; give one, or enable redis_cluster".into(),
                ));
            }
            let client = redis::Client::open(s.urls[0].as_str()).map_err(unavailable)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(s.connect_timeout))
                .set_response_timeout(Some(s.response_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(2));
            Conn::Single(
                tokio::time::timeout(
                    s.connect_timeout * 2,
                    client.get_connection_manager_with_config(config),
                )
                .await
                .map_err(|_| StoreError::Unavailable("redis: connection timed out".into()))?
                .map_err(unavailable)?,
            )
        };
        let store = Self {
            conn,
            prefix: s.key_prefix.clone(),
            sealer: Sealer::new(seal_key),
        };
        store.ping().await?;
        Ok(store)
    }

    /// Round trip to Redis; the health check uses it.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn client_key(&self, id: ClientId) -> String {
        format!("{}c:{id}", self.prefix)
    }

    fn user_key(&self, k: &UserKey) -> String {
        format!("{}u:{}", self.prefix, hex::encode(k.index))
    }

    /// The untrimmed reverse index of a user.
    fn all_key(&self, k: &UserKey) -> String {
        format!("{}a:{}", self.prefix, hex::encode(k.index))
    }

    fn mark(&self, id: ClientId) -> String {
        hex::encode(self.sealer.mark(id))
    }

    fn tombstone_key(&self, id: ClientId) -> String {
        format!("{}x:{}", self.prefix, self.mark(id))
    }

    fn bridge_index_key(&self, id: ClientId) -> String {
        format!("{}bx:{}", self.prefix, self.mark(id))
    }

    fn bridge_key(&self, key: &[u8; 32]) -> String {
        format!("{}b:{}", self.prefix, hex::encode(key))
    }

    async fn tombstoned(&self, id: ClientId, now: i64) -> Result<bool, StoreError> {
        let v: Option<i64> = redis::cmd("GET")
            .arg(self.tombstone_key(id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(v.is_some_and(|until| until > now))
    }

    /// [`KEEP`] on one key.
    async fn keep(&self, key: &str, score: i64, member: &str) -> Result<(), StoreError> {
        let _: i64 = SCRIPTS
            .keep
            .key(key)
            .arg(score)
            .arg(member)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn zrem(&self, key: &str, members: &[String]) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        let _: i64 = redis::cmd("ZREM")
            .arg(key)
            .arg(members)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// A client write on a cluster, key by key (see the module's text).
    async fn put_client_cluster(
        &self,
        w: &ClientWrite<'_>,
        users: &[UserKey],
    ) -> Result<Put, StoreError> {
        let id = w.record.identity.client_id;
        let now = w.record.identity.last_seen;
        let cid = id.to_string();
        if self.tombstoned(id, now).await? {
            return Ok(Put::Erased);
        }
        let mut conn = self.conn.clone();
        for user in users {
            self.keep(&self.all_key(user), w.expires_at, &cid).await?;
        }
        let _: i64 = SCRIPTS
            .put_record
            .key(self.client_key(id))
            .arg(stamp(w.record, w.expires_at))
            .arg(w.expires_at)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        for user in w.link {
            let key = self.user_key(user);
            let mut p = redis::pipe();
            p.atomic();
            p.cmd("ZADD").arg(&key).arg(now).arg(&cid).ignore();
            p.cmd("ZREMRANGEBYRANK")
                .arg(&key)
                .arg(0)
                .arg(-(w.history.max(1) as i64 + 1))
                .ignore();
            p.cmd("EXPIREAT").arg(&key).arg(w.expires_at).ignore();
            let _: () = p.query_async(&mut conn).await.map_err(unavailable)?;
        }
        // An erasure that tombstoned the client after the check above may
        // have run before these writes landed: undo them.
        if !self.tombstoned(id, now).await? {
            return Ok(Put::Stored);
        }
        let _: () = redis::cmd("DEL")
            .arg(self.client_key(id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let member = [cid];
        for user in users {
            self.zrem(&self.all_key(user), &member).await?;
            self.zrem(&self.user_key(user), &member).await?;
        }
        Ok(Put::Erased)
    }

    /// Erases `ids` as `key`'s clients: on a single Redis in one script, on
    /// a cluster key by key (see `forget_cluster`).
    async fn erase(
        &self,
        key: UserKey,
        ids: &[(String, ClientId)],
        now: i64,
        tombstone_until: i64,
    ) -> Result<Erased, StoreError> {
        if self.cluster() {
            let clients = self.forget_cluster(key, ids, now, tombstone_until).await?;
            return Ok(Erased {
                found: true,
                clients,
            });
        }
        let mut conn = self.conn.clone();
        let mut forget = SCRIPTS.forget.prepare_invoke();
        forget
            .key(self.user_key(&key))
            .key(self.all_key(&key))
            .arg(&self.prefix)
            .arg(hex::encode(key.index))
            .arg(now)
            .arg(tombstone_until);
        for (cid, id) in ids {
            forget.arg(cid).arg(self.mark(*id));
        }
        let (found, clients): (i64, u32) =
            forget.invoke_async(&mut conn).await.map_err(unavailable)?;
        Ok(Erased {
            found: found == 1,
            clients,
        })
    }

    /// Erasure on a cluster, key by key: tombstones first, then the
    /// records, other users' index entries and bridge entries, and the
    /// user's own index entries last.
    async fn forget_cluster(
        &self,
        key: UserKey,
        ids: &[(String, ClientId)],
        now: i64,
        tombstone_until: i64,
    ) -> Result<u32, StoreError> {
        let mut conn = self.conn.clone();
        for (_, id) in ids {
            let _: () = redis::cmd("SET")
                .arg(self.tombstone_key(*id))
                .arg(tombstone_until)
                .arg("EXAT")
                .arg(tombstone_until)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        let mut count = 0;
        for (cid, id) in ids {
            let rec: Option<Vec<u8>> = redis::cmd("GETDEL")
                .arg(self.client_key(*id))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let Some(rec) = rec else { continue };
            match serde_json::from_slice::<Stamped<ClientRecord>>(&rec) {
                Ok(r) => {
                    if r.exp > now {
                        count += 1;
                    }
                    let member = [cid.clone()];
                    for other in r.value.user_keys.iter().filter(|k| **k != key) {
                        self.zrem(&self.user_key(other), &member).await?;
                        self.zrem(&self.all_key(other), &member).await?;
                    }
                }
                Err(_) => count += 1,
            }
        }
        for (cid, id) in ids {
            let index = self.bridge_index_key(*id);
            let bridges: Vec<String> = redis::cmd("ZRANGE")
                .arg(&index)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for b in bridges {
                let _: i64 = SCRIPTS
                    .drop_bridge_of
                    .key(format!("{}b:{b}", self.prefix))
                    .arg(cid)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
            }
            let _: () = redis::cmd("DEL")
                .arg(&index)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        // Last, so that an erasure cut short is completed by a retry: the
        // user's indexes still name what is left.
        let members: Vec<String> = ids.iter().map(|(cid, _)| cid.clone()).collect();
        self.zrem(&self.user_key(&key), &members).await?;
        self.zrem(&self.all_key(&key), &members).await?;
        Ok(count)
    }

    fn cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }
}

/// A value with its expiry beside it: Redis expires the key itself (in
/// real time), and a read also checks the stored time against the
/// caller's clock, as the embedded store does.
#[derive(serde::Serialize)]
struct Stamp<'a, T> {
    exp: i64,
    #[serde(flatten)]
    value: &'a T,
}

#[derive(serde::Deserialize)]
struct Stamped<T> {
    /// Values written before the stamp existed have none: Redis's TTL
    /// alone ends them.
    #[serde(default = "never")]
    exp: i64,
    #[serde(flatten)]
    value: T,
}

fn never() -> i64 {
    i64::MAX
}

fn stamp<T: serde::Serialize>(value: &T, exp: i64) -> Vec<u8> {
    serde_json::to_vec(&Stamp { exp, value }).expect("records serialize")
}

/// The value of `bytes`, or None when its stored expiry has passed.
fn unstamp<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    now: i64,
) -> Result<Option<T>, StoreError> {
    let s: Stamped<T> = serde_json::from_slice(bytes).map_err(corrupt)?;
    Ok((now < s.exp).then_some(s.value))
}

fn corrupt(e: serde_json::Error) -> StoreError {
    super::undecodable(&e)
}

impl Store for RedisStore {
    async fn get_client(&self, id: ClientId, now: i64) -> Result<Option<ClientRecord>, StoreError> {
        let v: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.client_key(id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(v.map(|b| unstamp(&b, now)).transpose()?.flatten())
    }

    async fn put_client(&self, w: ClientWrite<'_>) -> Result<Put, StoreError> {
        let mut users = w.record.user_keys.clone();
        for k in w.link {
            if !users.contains(k) {
                users.push(*k);
            }
        }
        if self.cluster() {
            return self.put_client_cluster(&w, &users).await;
        }
        let id = w.record.identity.client_id;
        let mut put = SCRIPTS.put.prepare_invoke();
        put.key(self.client_key(id)).key(self.tombstone_key(id));
        for user in w.link {
            put.key(self.user_key(user));
        }
        for user in &users {
            put.key(self.all_key(user));
        }
        put.arg(stamp(w.record, w.expires_at))
            .arg(w.expires_at)
            .arg(w.record.identity.last_seen)
            .arg(w.history.max(1))
            .arg(id.to_string())
            .arg(w.link.len());
        let stored: i64 = put
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(if stored == 1 {
            Put::Stored
        } else {
            Put::Erased
        })
    }

    async fn lookup_user(&self, key: UserKey, _now: i64) -> Result<Vec<UserEntry>, StoreError> {
        let members: Vec<(String, i64)> = redis::cmd("ZREVRANGE")
            .arg(self.user_key(&key))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        members
            .into_iter()
            .map(|(m, linked_at)| {
                let client_id = m.parse().map_err(|_| {
                    StoreError::Corrupt("a user index member is not a client id".into())
                })?;
                Ok(UserEntry {
                    client_id,
                    linked_at,
                })
            })
            .collect()
    }

    async fn forget_user(
        &self,
        key: UserKey,
        now: i64,
        tombstone_until: i64,
    ) -> Result<Erased, StoreError> {
        let mut conn = self.conn.clone();
        // Every client either index names (on a cluster the two live in
        // different slots: read one after the other).
        let mut members: Vec<String> = Vec::new();
        for index in [self.all_key(&key), self.user_key(&key)] {
            let listed: Vec<String> = redis::cmd("ZRANGE")
                .arg(index)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            for m in listed {
                if !members.contains(&m) {
                    members.push(m);
                }
            }
        }
        let ids: Vec<(String, ClientId)> = members
            .into_iter()
            .map(|m| {
                let id = m.parse().map_err(|_| {
                    StoreError::Corrupt("a user index member is not a client id".into())
                })?;
                Ok((m, id))
            })
            .collect::<Result<_, StoreError>>()?;
        if ids.is_empty() {
            return Ok(Erased::default());
        }
        self.erase(key, &ids, now, tombstone_until).await
    }

    async fn forget_client(
        &self,
        id: ClientId,
        now: i64,
        tombstone_until: i64,
    ) -> Result<Erased, StoreError> {
        let erased = self
            .erase(super::NOBODY, &[(id.to_string(), id)], now, tombstone_until)
            .await?;
        Ok(Erased {
            found: erased.clients > 0,
            ..erased
        })
    }

    async fn is_erased(&self, id: ClientId, now: i64) -> Result<bool, StoreError> {
        self.tombstoned(id, now).await
    }

    async fn claim_token(
        &self,
        id: [u8; 16],
        max_uses: u32,
        expires_at: i64,
        _now: i64,
    ) -> Result<Claim, StoreError> {
        let n: u32 = Script::new(CLAIM)
            .key(format!("{}t:{}", self.prefix, hex::encode(id)))
            .arg(max_uses)
            .arg(expires_at)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(if n == 0 {
            Claim::UsedUp
        } else {
            Claim::Granted(n)
        })
    }

    async fn put_bridge(
        &self,
        key: [u8; 32],
        entry: &BridgeEntry,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let id = entry.identity.client_id;
        let now = entry.created_at;
        let mut conn = self.conn.clone();
        let marker = stamp(&BridgeEntry::ambiguous(now), expires_at);
        if !self.cluster() {
            let _: i64 = SCRIPTS
                .put_bridge
                .key(self.bridge_key(&key))
                .key(self.bridge_index_key(id))
                .key(self.tombstone_key(id))
                .arg(stamp(entry, expires_at))
                .arg(expires_at)
                .arg(now)
                .arg(hex::encode(key))
                .arg(id.to_string())
                .arg(&marker)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
        } else {
            // Cluster: indexed, written, then checked against the tombstone
            // (erasure sets it before it reads the index).
            self.keep(&self.bridge_index_key(id), expires_at, &hex::encode(key))
                .await?;
            let _: i64 = SCRIPTS
                .put_bridge_one
                .key(self.bridge_key(&key))
                .arg(stamp(entry, expires_at))
                .arg(expires_at)
                .arg(now)
                .arg(id.to_string())
                .arg(&marker)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if self.tombstoned(id, now).await? {
                let _: i64 = SCRIPTS
                    .drop_bridge_of
                    .key(self.bridge_key(&key))
                    .arg(id.to_string())
                    .invoke_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                return Ok(());
            }
        }
        if entry.token_id != [0; 16] {
            // token id -> the bridge keys recorded with it (a separate
            // step: on a cluster the two keys live in different slots).
            let tkey = format!("{}bt:{}", self.prefix, hex::encode(entry.token_id));
            let _: () = redis::pipe()
                .cmd("SADD")
                .arg(&tkey)
                .arg(self.bridge_key(&key))
                .ignore()
                .cmd("EXPIREAT")
                .arg(&tkey)
                .arg(expires_at)
                .ignore()
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn drop_bridge_of_token(&self, token_id: [u8; 16], _now: i64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let tkey = format!("{}bt:{}", self.prefix, hex::encode(token_id));
        let keys: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&tkey)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        for k in keys.iter().chain(std::iter::once(&tkey)) {
            let _: () = redis::cmd("DEL")
                .arg(k)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn take_bridge(
        &self,
        key: [u8; 32],
        now: i64,
    ) -> Result<Option<BridgeEntry>, StoreError> {
        let v: Option<Vec<u8>> = redis::cmd("GETDEL")
            .arg(self.bridge_key(&key))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(v.map(|b| unstamp(&b, now)).transpose()?.flatten())
    }

    async fn sweep(&self, _now: i64) -> Result<usize, StoreError> {
        // Redis expires keys itself.
        Ok(0)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Durability is Redis's own (RDB/AOF) configuration.
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        RedisStore::ping(self).await
    }
}
