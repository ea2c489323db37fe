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
//! On a single Redis, a client write and its user links are one MULTI/EXEC
//! transaction and erasure is one script. Redis Cluster spreads keys over
//! slots, where neither can span keys: there each key is written atomically,
//! the client record first, then its indexes, and erasure runs key by key.
//!
//! Keys, under the configured prefix: `c:<client id>` (JSON record),
//! `u:<hex user key>` (sorted set), `t:<hex token id>` (use counter),
//! `b:<hex bridge key>` (JSON entry). No key or value holds an email, a
//! User-Agent or an IP address.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use super::{BridgeEntry, Claim, ClientRecord, ClientWrite, Erased, Store, StoreError, UserEntry};
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

/// Erasure on a single Redis, atomically: the user's index, every client
/// it lists, and every other index those clients name.
/// Records a bridge entry; a live entry of another client under the same
/// key makes it ambiguous instead. KEYS[1] bridge key; ARGV: the stamped
/// entry, its client id, the stamped ambiguous marker, now, expiry.
const PUT_BRIDGE: &str = r"
local val = ARGV[1]
local old = redis.call('GET', KEYS[1])
if old then
  local ok, o = pcall(cjson.decode, old)
  if ok and type(o) == 'table' and tonumber(o.exp or 9e18) > tonumber(ARGV[4]) then
    local other = type(o.identity) ~= 'table' or o.identity.client_id ~= ARGV[2]
    if o.ambiguous or other then
      val = ARGV[3]
    end
  end
end
redis.call('SET', KEYS[1], val, 'EXAT', ARGV[5])
return 1
";

const FORGET: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
local prefix = ARGV[1]
local erased = 0
local others = {}
for _, cid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = prefix .. 'c:' .. cid
  local rec = redis.call('GET', key)
  if rec then
    erased = erased + 1
    local ok, r = pcall(cjson.decode, rec)
    if ok and type(r) == 'table' and type(r.user_keys) == 'table' then
      for _, uk in ipairs(r.user_keys) do others[prefix .. 'u:' .. string.sub(uk, 1, 64)] = true end
    end
    redis.call('DEL', key)
  end
end
redis.call('DEL', KEYS[1])
for k, _ in pairs(others) do redis.call('DEL', k) end
return {1, erased}
";

impl RedisStore {
    /// Connects (and checks the connection with a PING).
    pub async fn connect(s: &RedisSettings) -> Result<Self, StoreError> {
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
    StoreError::Corrupt(e.to_string())
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

    async fn put_client(&self, w: ClientWrite<'_>) -> Result<(), StoreError> {
        let id = w.record.identity.client_id;
        let now = w.record.identity.last_seen;
        let keep = w.history.max(1) as i64;
        let mut set = redis::cmd("SET");
        set.arg(self.client_key(id))
            .arg(stamp(w.record, w.expires_at))
            .arg("EXAT")
            .arg(w.expires_at);
        // The three commands that maintain one user index.
        let link = |p: &mut Pipeline, user: &UserKey| {
            let key = self.user_key(user);
            p.cmd("ZADD")
                .arg(&key)
                .arg(now)
                .arg(id.to_string())
                .ignore();
            p.cmd("ZREMRANGEBYRANK")
                .arg(&key)
                .arg(0)
                .arg(-(keep + 1))
                .ignore();
            p.cmd("EXPIREAT").arg(&key).arg(w.expires_at).ignore();
        };
        let mut conn = self.conn.clone();
        if self.cluster() {
            // Keys live in different slots: the record first, then each
            // index in a transaction of its own.
            let _: () = set.query_async(&mut conn).await.map_err(unavailable)?;
            for user in w.link {
                let mut p = redis::pipe();
                p.atomic();
                link(&mut p, user);
                let _: () = p.query_async(&mut conn).await.map_err(unavailable)?;
            }
        } else {
            let mut p = redis::pipe();
            p.atomic().add_command(set).ignore();
            for user in w.link {
                link(&mut p, user);
            }
            let _: () = p.query_async(&mut conn).await.map_err(unavailable)?;
        }
        Ok(())
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
                let client_id = m
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("user index member {m:?}")))?;
                Ok(UserEntry {
                    client_id,
                    linked_at,
                })
            })
            .collect()
    }

    async fn forget_user(&self, key: UserKey) -> Result<Erased, StoreError> {
        let mut conn = self.conn.clone();
        if !self.cluster() {
            let (found, erased): (i64, u32) = Script::new(FORGET)
                .key(self.user_key(&key))
                .arg(&self.prefix)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            return Ok(Erased {
                found: found == 1,
                clients: erased,
            });
        }
        // Cluster: key by key (each step atomic, the whole not).
        let index = self.user_key(&key);
        let members: Vec<String> = redis::cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut erased = Erased {
            found: !members.is_empty(),
            clients: 0,
        };
        for m in members {
            let ck = format!("{}c:{m}", self.prefix);
            let rec: Option<Vec<u8>> = redis::cmd("GETDEL")
                .arg(&ck)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let Some(rec) = rec else { continue };
            erased.clients += 1;
            if let Ok(r) = serde_json::from_slice::<ClientRecord>(&rec) {
                for other in r.user_keys.iter().filter(|k| **k != key) {
                    let _: () = redis::cmd("DEL")
                        .arg(self.user_key(other))
                        .query_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                }
            }
        }
        let _: () = redis::cmd("DEL")
            .arg(&index)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(erased)
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
        let mut conn = self.conn.clone();
        let bridge_key = format!("{}b:{}", self.prefix, hex::encode(key));
        let _: i64 = Script::new(PUT_BRIDGE)
            .key(&bridge_key)
            .arg(stamp(entry, expires_at))
            .arg(entry.identity.client_id.to_string())
            .arg(stamp(&BridgeEntry::ambiguous(entry.created_at), expires_at))
            .arg(entry.created_at)
            .arg(expires_at)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if entry.token_id != [0; 16] {
            // token id -> the bridge keys recorded with it (a separate
            // step: on a cluster the two keys live in different slots).
            let tkey = format!("{}bt:{}", self.prefix, hex::encode(entry.token_id));
            let _: () = redis::pipe()
                .cmd("SADD")
                .arg(&tkey)
                .arg(&bridge_key)
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
            .arg(format!("{}b:{}", self.prefix, hex::encode(key)))
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
