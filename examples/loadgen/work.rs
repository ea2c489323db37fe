//! The workloads: what one request is, and how it is checked. A request
//! whose answer is not the expected one counts as an error, so a fast
//! wrong answer never passes for a fast right one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sessionbridge::cookie::{self, AllowedDomains};
use sessionbridge::identity::{ClientId, Identity, SessionPolicy};
use sessionbridge::keys::Keyring;
use sessionbridge::pb;
use sessionbridge::pb::session_bridge_service_client::SessionBridgeServiceClient;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{health_check_response::ServingStatus, HealthCheckRequest};

/// The host the page views are on, and the site a hand-off goes to.
pub const SHOP: &str = "shop.example.com";
pub const CHECKOUT: &str = "checkout.example.net";
pub const ALLOWED: &str = "example.com,example.net";
pub const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                  Chrome/148.0.0.0 Safari/537.36";

/// One connection to each backend a workload may use.
#[derive(Clone, Default)]
pub struct Conn {
    pub grpc: Option<Channel>,
    pub redis: Option<redis::aio::MultiplexedConnection>,
    pub pg: Option<Arc<tokio_postgres::Client>>,
    /// The server process behind the connection, when it is ours: its CPU
    /// time is read around each run (per-call server CPU).
    pub server_pid: Option<u32>,
}

/// The same connections, marked as served by process `pid`.
pub fn served_by(conns: Vec<Conn>, pid: u32) -> Vec<Conn> {
    conns
        .into_iter()
        .map(|c| Conn {
            server_pid: Some(pid),
            ..c
        })
        .collect()
}

/// Opens `n` separate HTTP/2 connections to a gRPC server.
pub async fn grpc_conns(addr: &str, n: usize) -> anyhow::Result<Vec<Conn>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let ch = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connect to {addr}"))?;
        out.push(Conn {
            grpc: Some(ch),
            ..Default::default()
        });
    }
    Ok(out)
}

/// Opens `n` Redis connections.
pub async fn redis_conns(url: &str, n: usize) -> anyhow::Result<Vec<Conn>> {
    let client = redis::Client::open(url)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let c = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("connect to {url}"))?;
        out.push(Conn {
            redis: Some(c),
            ..Default::default()
        });
    }
    Ok(out)
}

/// Opens `n` PostgreSQL connections.
pub async fn pg_conns(conninfo: &str, n: usize) -> anyhow::Result<Vec<Conn>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let (client, connection) = tokio_postgres::connect(conninfo, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("connect to PostgreSQL ({conninfo})"))?;
        tokio::spawn(connection);
        out.push(Conn {
            pg: Some(Arc::new(client)),
            ..Default::default()
        });
    }
    Ok(out)
}

/// What one request is.
pub enum Workload {
    /// `grpc.health.v1.Health/Check` for the whole server: the floor.
    Health,
    /// ResolveSession for a returning visitor with a valid own cookie,
    /// among a realistic set of other cookies; the cookie headers were
    /// captured from the server's own answers.
    ResolveCookie { headers: Vec<String> },
    /// The same against a store filled by `populate`: the cookie of a
    /// random one of `count` stored identities, signed here with the key
    /// file (outside the timed part).
    ResolveStored {
        keys: Arc<Keyring>,
        count: u64,
        created: u32,
        /// The visit time `populate` stored them with.
        seen: i64,
    },
    /// ResolveSession for a first visit: one new record written.
    ResolveNew,
    /// A hand-off recorded on the shop (not timed), then the arrival on the
    /// checkout with no parameter, only the origin-only Referer, resolved
    /// through the referrer bridge (timed).
    Bridge,
    /// The seed document's SQL bridge: the hand-off row inserted (not
    /// timed), then its indexed SELECT (timed).
    SqlBridge,
    /// A bare Redis GET of an existing key.
    RedisGet,
}

fn ctx(host: &str, cookie_header: String, ua: String, ip: String) -> pb::RequestContext {
    pb::RequestContext {
        host: host.into(),
        url: format!("https://{host}/products/espresso-machine?variant=42"),
        referer: format!("https://{host}/collections/all"),
        user_agent: ua,
        cookie_header,
        client_ip: ip,
        accept_language: "en-GB,en;q=0.9,de;q=0.8".into(),
        ..Default::default()
    }
}

/// Cookies a returning visitor of a real shop also carries.
/// (Its `_ga` is the one the server sets beside its own cookie.)
const OTHER_COOKIES: &str = "_ga_X1Y2Z3W4V5=GS2.1.s1764288000$o3$g1$t1764288420$j60$l0$h0; \
    cart=eyJpdGVtcyI6WzQyXSwidG90YWwiOjE5OX0; locale=en-GB; _fbp=fb.1.1764288000000.1234567890";

/// Cookies a first-time visitor already has (no analytics cookie yet).
const FIRST_VISIT_COOKIES: &str = "locale=en-GB; consent=analytics";

/// A distinct browser and network per sequence number.
fn visitor(n: u64) -> (String, String) {
    (
        format!("{UA} Bench/{n}"),
        format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff),
    )
}

impl Workload {
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Health => "grpc health check (floor)",
            Workload::ResolveCookie { .. } => "ResolveSession, cookie hit",
            Workload::ResolveStored { .. } => "ResolveSession, stored identity",
            Workload::ResolveNew => "ResolveSession, new visitor (write)",
            Workload::Bridge => "ResolveSession via referrer bridge",
            Workload::SqlBridge => "SQL bridge SELECT (PostgreSQL)",
            Workload::RedisGet => "Redis GET",
        }
    }

    /// Issues request number `n`; returns the latency of its timed part.
    pub async fn one(&self, conn: &Conn, n: u64) -> Result<Duration, String> {
        match self {
            Workload::Health => {
                let mut c = HealthClient::new(grpc(conn)?);
                let t = Instant::now();
                let r = c
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                let took = t.elapsed();
                if r.into_inner().status != ServingStatus::Serving as i32 {
                    return Err("health: not SERVING".into());
                }
                Ok(took)
            }
            Workload::ResolveCookie { headers } => {
                let header = &headers[(n as usize) % headers.len()];
                let (ua, ip) = visitor(n % headers.len() as u64);
                resolve_expect(
                    conn,
                    ctx(SHOP, header.clone(), ua, ip),
                    pb::ResolutionMethod::Cookie,
                )
                .await
            }
            Workload::ResolveStored {
                keys,
                count,
                created,
                seen,
            } => {
                let i = rand::random::<u64>() % count;
                let header = stored_cookie_header(keys, i, *created, *seen);
                let (ua, ip) = visitor(i);
                resolve_expect(
                    conn,
                    ctx(SHOP, header, ua, ip),
                    pb::ResolutionMethod::Cookie,
                )
                .await
            }
            Workload::ResolveNew => {
                let (ua, ip) = visitor(n);
                resolve_expect(
                    conn,
                    ctx(SHOP, FIRST_VISIT_COOKIES.to_string(), ua, ip),
                    pb::ResolutionMethod::New,
                )
                .await
            }
            Workload::Bridge => {
                let (ua, ip) = visitor(n);
                let mut c = SessionBridgeServiceClient::new(grpc(conn)?);
                c.record_handoff(pb::RecordHandoffRequest {
                    context: Some(ctx(SHOP, OTHER_COOKIES.to_string(), ua.clone(), ip.clone())),
                    destination_url: format!("https://{CHECKOUT}/pay"),
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("RecordHandoff: {e}"))?;
                let arrival = pb::RequestContext {
                    host: CHECKOUT.into(),
                    url: format!("https://{CHECKOUT}/pay"),
                    referer: format!("https://{SHOP}/"),
                    user_agent: ua,
                    client_ip: ip,
                    accept_language: "en-GB,en;q=0.9".into(),
                    ..Default::default()
                };
                resolve_expect(conn, arrival, pb::ResolutionMethod::ReferrerBridge).await
            }
            Workload::SqlBridge => {
                let pg = conn.pg.as_ref().ok_or("no PostgreSQL connection")?;
                let (ua, _) = visitor(n);
                let now = sessionbridge::service::now_unix();
                let session = format!("{}", 1_000_000_000 + n);
                pg.execute(
                    "INSERT INTO session_bridge (session_id, source_domain, created_at, user_agent) \
                     VALUES ($1, $2, $3, $4)",
                    &[&session, &SHOP, &now, &ua],
                )
                .await
                .map_err(|e| format!("INSERT: {e}"))?;
                let t = Instant::now();
                let row = pg
                    .query_opt(
                        "SELECT session_id FROM session_bridge WHERE source_domain = $1 \
                         AND user_agent = $2 AND created_at > $3 \
                         ORDER BY created_at DESC LIMIT 1",
                        &[&SHOP, &ua, &(now - 60)],
                    )
                    .await
                    .map_err(|e| format!("SELECT: {e}"))?;
                let took = t.elapsed();
                match row {
                    Some(r) if r.get::<_, String>(0) == session => Ok(took),
                    _ => Err("SQL bridge: hand-off row not found".into()),
                }
            }
            Workload::RedisGet => {
                let mut r = conn.redis.clone().ok_or("no Redis connection")?;
                let t = Instant::now();
                let v: Option<Vec<u8>> = redis::cmd("GET")
                    .arg("bench:key")
                    .query_async(&mut r)
                    .await
                    .map_err(|e| e.to_string())?;
                let took = t.elapsed();
                match v {
                    Some(v) if v.len() == 100 => Ok(took),
                    _ => Err("Redis GET: key missing".into()),
                }
            }
        }
    }
}

fn grpc(conn: &Conn) -> Result<Channel, String> {
    conn.grpc.clone().ok_or_else(|| "no gRPC connection".into())
}

async fn resolve_expect(
    conn: &Conn,
    context: pb::RequestContext,
    want: pb::ResolutionMethod,
) -> Result<Duration, String> {
    let mut c = SessionBridgeServiceClient::new(grpc(conn)?);
    let t = Instant::now();
    let r = c
        .resolve_session(pb::ResolveSessionRequest {
            context: Some(context),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("ResolveSession: {e}"))?;
    let took = t.elapsed();
    let r = r.into_inner();
    if r.method != want as i32 {
        return Err(format!(
            "ResolveSession answered {:?}, expected {want:?}",
            pb::ResolutionMethod::try_from(r.method)
        ));
    }
    Ok(took)
}

/// The client id of stored identity number `i` (see `populate`).
pub fn stored_client_id(i: u64, created: u32) -> ClientId {
    ClientId::from_parts(
        (i as u32).wrapping_add(1),
        created.wrapping_sub((i >> 32) as u32),
    )
}

/// The identity `populate` stores as number `i`: its session started, and
/// it was last seen, at `seen`.
pub fn stored_identity(i: u64, created: u32, seen: i64) -> Identity {
    let mut id = SessionPolicy::default().new_identity(stored_client_id(i, created), seen);
    id.session_number = 1 + (i % 7) as u32;
    id
}

/// The cookie scope of the shop's registrable domain, as the server uses it.
pub fn shop_scope() -> cookie::CookieScope {
    AllowedDomains::new(ALLOWED.split(',').map(String::from))
        .expect("domains")
        .scope(SHOP, true)
        .expect("shop allowed")
}

/// The Cookie header of stored identity `i`, as the server set it on the
/// shop's registrable domain when it stored the identity at `seen`: the
/// browser returns exactly what the store holds.
pub fn stored_cookie_header(keys: &Keyring, i: u64, created: u32, seen: i64) -> String {
    let value = cookie::seal_identity(
        keys,
        &shop_scope(),
        "__Secure-sbid",
        &stored_identity(i, created, seen),
    );
    format!("{OTHER_COOKIES}; __Secure-sbid={value}")
}

/// Mints `n` identities through the server and returns the Cookie headers a
/// browser would send back (the server's cookies plus the other cookies).
pub async fn captured_cookie_headers(conn: &Conn, n: usize) -> anyhow::Result<Vec<String>> {
    let mut c = SessionBridgeServiceClient::new(conn.grpc.clone().context("no gRPC connection")?);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (ua, ip) = visitor(i as u64);
        let r = c
            .resolve_session(pb::ResolveSessionRequest {
                context: Some(ctx(SHOP, FIRST_VISIT_COOKIES.to_string(), ua, ip)),
                ..Default::default()
            })
            .await?
            .into_inner();
        let own: Vec<String> = r
            .cookies
            .iter()
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        anyhow::ensure!(!own.is_empty(), "the server set no cookie");
        out.push(format!("{OTHER_COOKIES}; {}", own.join("; ")));
    }
    Ok(out)
}
