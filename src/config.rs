//! Configuration: a TOML file, then `SESSIONBRIDGE_*` environment variables,
//! then command-line flags, each overriding the one before. Every setting has
//! a default, so `sessionbridge serve` starts with no configuration at all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::identity::Consent;
use crate::store::Durability;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Text,
    /// One JSON object per line, for a cluster's log stack.
    Json,
}

/// Where identities are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Embedded sled database in `data_dir`: one store per instance.
    Sled,
    /// Redis or Valkey at `redis_urls`: one store shared by every instance.
    Redis,
}

/// Every setting of `sessionbridge serve`. Field docs are the reference the
/// README repeats.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Loopback by default: in a pod only the backend
    /// beside it can reach the sidecar.
    pub listen: SocketAddr,
    /// Allow a non-loopback `listen` address without TLS. Plaintext gRPC on a
    /// shared network lets anyone mint and read identities.
    pub insecure_listen: bool,
    /// PEM certificate chain for TLS on the listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): when set, callers must present a client
    /// certificate signed by one of them (mutual TLS).
    pub tls_client_ca: Option<PathBuf>,
    /// File holding a bearer token that every identity API call must carry
    /// (`authorization: Bearer <token>`). Health and reflection stay open.
    pub auth_token_file: Option<PathBuf>,
    /// Address of the Prometheus endpoint (`GET /metrics`), on its own
    /// port; none by default. In Kubernetes, `0.0.0.0:9464` so the pod's
    /// scraper can reach it: it exposes counts, never request data.
    pub metrics_listen: Option<SocketAddr>,
    /// Which store: `sled` (embedded) or `redis` (shared).
    pub store: StoreKind,
    /// Directory of the embedded store (and of the development key).
    pub data_dir: PathBuf,
    /// Redis URLs: one `redis://` or `rediss://` URL, or the seed nodes of
    /// a cluster. Credentials go in the URL; prefer the file or the
    /// environment to flags for them.
    pub redis_urls: Vec<String>,
    /// Talk to a Redis Cluster.
    pub redis_cluster: bool,
    /// Prefix of every Redis key.
    pub redis_key_prefix: String,
    /// A Redis command slower than this fails with UNAVAILABLE.
    pub redis_timeout_ms: u64,
    /// A connection attempt slower than this fails.
    pub redis_connect_timeout_ms: u64,
    /// The key file shared by every sidecar of a deployment. Without one, a
    /// development key is generated in the data directory; cookies and
    /// tokens then work on this instance only.
    pub keys: Option<PathBuf>,
    /// Domains on which cookies may be set (each admits its subdomains).
    /// Empty: every host, host-only cookies.
    pub allowed_domains: Vec<String>,
    /// Name of the service's own identity cookie.
    pub cookie_name: String,
    /// Inactivity after which the next hit starts a new session.
    pub session_timeout_secs: u64,
    /// A hit that changes nothing but the time of the last hit rewrites the
    /// stored record only when the stored time is at least this old; the
    /// cookie always carries the exact time. 0: write on every hit. Capped
    /// at a tenth of `session_timeout_secs`, so a stale stored time can
    /// never end a session early by more than that.
    pub touch_write_secs: u64,
    /// Lifetime of an identity (cookie Max-Age and stored record), in days;
    /// at most 400, the cap browsers apply.
    pub identity_ttl_days: u32,
    /// Also set a GA4 `_ga` cookie by default.
    pub ga_cookie: bool,
    /// Consent assumed when a request does not state it.
    pub default_consent: Consent,
    /// How many recent identities a user index keeps.
    pub user_history: usize,
    /// When a write is acknowledged: `interval` or `sync`.
    pub durability: Durability,
    /// With `durability = "interval"`, how often the store is flushed.
    pub flush_interval_ms: u64,
    /// Page cache of the embedded store, MiB.
    pub cache_mb: u64,
    /// How often expired records are removed.
    pub sweep_interval_secs: u64,
    /// Deadline of one call; a caller's shorter `grpc-timeout` wins.
    pub request_timeout_ms: u64,
    /// Calls served at once; beyond it calls are shed with UNAVAILABLE.
    pub concurrency_limit: usize,
    /// Largest request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// On SIGTERM, how long to report NOT_SERVING before closing the
    /// listener, so load balancers stop sending calls first.
    pub drain_secs: u64,
    /// Log line format.
    pub log_format: LogFormat,
    /// Query parameter that carries hand-off tokens.
    pub handoff_param: String,
    /// Lifetime of a hand-off token when the request does not set one.
    pub handoff_default_ttl_secs: u32,
    /// The longest lifetime a request may ask for (hours suit payment
    /// redirects and their webhooks).
    pub handoff_max_ttl_secs: u32,
    /// The most uses a request may allow on one token.
    pub handoff_max_uses: u32,
    /// How long a recorded hand-off waits for a parameterless arrival
    /// (the referrer bridge); 0 turns the bridge off.
    pub bridge_window_secs: u32,
    /// Name of the raw session id query parameter (the seed's approach 3).
    pub session_id_param: String,
    /// Referring domains (subdomains included) from which a raw session id
    /// parameter is accepted. Empty, the default, turns the feature off: a
    /// raw id in a URL lets anyone who sees the link take over the session.
    pub session_id_param_referrers: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:50051".parse().expect("valid address"),
            insecure_listen: false,
            metrics_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            auth_token_file: None,
            store: StoreKind::Sled,
            data_dir: PathBuf::from("sessionbridge-data"),
            redis_urls: Vec::new(),
            redis_cluster: false,
            redis_key_prefix: "sessionbridge:".into(),
            redis_timeout_ms: 500,
            redis_connect_timeout_ms: 1000,
            keys: None,
            allowed_domains: Vec::new(),
            cookie_name: "_sbid".into(),
            session_timeout_secs: 30 * 60,
            touch_write_secs: 60,
            identity_ttl_days: 400,
            ga_cookie: false,
            default_consent: Consent::Granted,
            user_history: 10,
            durability: Durability::Interval,
            flush_interval_ms: 500,
            cache_mb: crate::store::SLED_DEFAULT_CACHE_MB,
            sweep_interval_secs: 60,
            request_timeout_ms: 2000,
            concurrency_limit: 1024,
            max_message_bytes: 64 * 1024,
            drain_secs: 0,
            log_format: LogFormat::Text,
            handoff_param: "_sbt".into(),
            handoff_default_ttl_secs: 120,
            handoff_max_ttl_secs: 86_400,
            handoff_max_uses: 10,
            bridge_window_secs: 60,
            session_id_param: "session_id".into(),
            session_id_param_referrers: Vec::new(),
        }
    }
}

/// Settings given on the command line or in the environment; `None` leaves
/// the file's (or default) value.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, env = "SESSIONBRIDGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long, env = "SESSIONBRIDGE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Allow listening beyond loopback without TLS.
    #[arg(long, env = "SESSIONBRIDGE_INSECURE_LISTEN")]
    pub insecure_listen: Option<bool>,
    /// Prometheus endpoint address, e.g. 0.0.0.0:9464 [default: off].
    #[arg(long, env = "SESSIONBRIDGE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// PEM certificate chain: serve gRPC over TLS.
    #[arg(long, env = "SESSIONBRIDGE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SESSIONBRIDGE_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA: require client certificates it signed (mutual TLS).
    #[arg(long, env = "SESSIONBRIDGE_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// File with the bearer token callers must send.
    #[arg(long, env = "SESSIONBRIDGE_AUTH_TOKEN_FILE", value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// `sled` (embedded, default) or `redis` (shared).
    #[arg(long, env = "SESSIONBRIDGE_STORE", value_enum)]
    pub store: Option<StoreKind>,
    /// Redis URLs, comma-separated (several for a cluster's seed nodes).
    #[arg(
        long,
        env = "SESSIONBRIDGE_REDIS_URLS",
        value_delimiter = ',',
        value_name = "URLS"
    )]
    pub redis_urls: Option<Vec<String>>,
    /// Use Redis Cluster.
    #[arg(long, env = "SESSIONBRIDGE_REDIS_CLUSTER")]
    pub redis_cluster: Option<bool>,
    /// Prefix of every Redis key [default: sessionbridge:].
    #[arg(long, env = "SESSIONBRIDGE_REDIS_KEY_PREFIX")]
    pub redis_key_prefix: Option<String>,
    /// Redis command timeout, ms [default: 500].
    #[arg(long, env = "SESSIONBRIDGE_REDIS_TIMEOUT_MS")]
    pub redis_timeout_ms: Option<u64>,
    /// Redis connection timeout, ms [default: 1000].
    #[arg(long, env = "SESSIONBRIDGE_REDIS_CONNECT_TIMEOUT_MS")]
    pub redis_connect_timeout_ms: Option<u64>,
    /// Directory of the embedded store [default: ./sessionbridge-data].
    #[arg(long, env = "SESSIONBRIDGE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Key file shared by every sidecar (see `sessionbridge keygen`).
    #[arg(long, env = "SESSIONBRIDGE_KEYS", value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// Domains cookies may be set on, comma-separated.
    #[arg(
        long,
        env = "SESSIONBRIDGE_ALLOWED_DOMAINS",
        value_delimiter = ',',
        value_name = "DOMAINS"
    )]
    pub allowed_domains: Option<Vec<String>>,
    /// Name of the identity cookie [default: _sbid].
    #[arg(long, env = "SESSIONBRIDGE_COOKIE_NAME")]
    pub cookie_name: Option<String>,
    /// Session inactivity timeout in seconds [default: 1800].
    #[arg(long, env = "SESSIONBRIDGE_SESSION_TIMEOUT_SECS")]
    pub session_timeout_secs: Option<u64>,
    /// Rewrite a record on a hit that changes nothing else only when its
    /// stored last-hit time is this old, in seconds; 0 writes every hit
    /// [default: 60].
    #[arg(long, env = "SESSIONBRIDGE_TOUCH_WRITE_SECS")]
    pub touch_write_secs: Option<u64>,
    /// Identity lifetime in days, at most 400 [default: 400].
    #[arg(long, env = "SESSIONBRIDGE_IDENTITY_TTL_DAYS")]
    pub identity_ttl_days: Option<u32>,
    /// Set a GA4 `_ga` cookie by default.
    #[arg(long, env = "SESSIONBRIDGE_GA_COOKIE")]
    pub ga_cookie: Option<bool>,
    /// Consent assumed when a request does not state it [default: granted].
    #[arg(long, env = "SESSIONBRIDGE_DEFAULT_CONSENT", value_parser = parse_consent)]
    pub default_consent: Option<Consent>,
    /// Recent identities kept per user [default: 10].
    #[arg(long, env = "SESSIONBRIDGE_USER_HISTORY")]
    pub user_history: Option<usize>,
    /// `interval` or `sync` [default: interval].
    #[arg(long, env = "SESSIONBRIDGE_DURABILITY", value_parser = parse_durability)]
    pub durability: Option<Durability>,
    /// Flush interval with durability=interval, ms [default: 500].
    #[arg(long, env = "SESSIONBRIDGE_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Page cache of the embedded store, MiB [default: 1024].
    #[arg(long, env = "SESSIONBRIDGE_CACHE_MB")]
    pub cache_mb: Option<u64>,
    /// Expired-record sweep interval, s [default: 60].
    #[arg(long, env = "SESSIONBRIDGE_SWEEP_INTERVAL_SECS")]
    pub sweep_interval_secs: Option<u64>,
    /// Per-call deadline, ms [default: 2000].
    #[arg(long, env = "SESSIONBRIDGE_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Calls served at once before shedding [default: 1024].
    #[arg(long, env = "SESSIONBRIDGE_CONCURRENCY_LIMIT")]
    pub concurrency_limit: Option<usize>,
    /// Largest request message, bytes [default: 65536].
    #[arg(long, env = "SESSIONBRIDGE_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// NOT_SERVING period before closing on SIGTERM, s [default: 0].
    #[arg(long, env = "SESSIONBRIDGE_DRAIN_SECS")]
    pub drain_secs: Option<u64>,
    /// `text` or `json` [default: text].
    #[arg(long, env = "SESSIONBRIDGE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Query parameter of hand-off tokens [default: _sbt].
    #[arg(long, env = "SESSIONBRIDGE_HANDOFF_PARAM")]
    pub handoff_param: Option<String>,
    /// Default hand-off token lifetime, s [default: 120].
    #[arg(long, env = "SESSIONBRIDGE_HANDOFF_DEFAULT_TTL_SECS")]
    pub handoff_default_ttl_secs: Option<u32>,
    /// Longest hand-off token lifetime a request may ask for, s [default: 86400].
    #[arg(long, env = "SESSIONBRIDGE_HANDOFF_MAX_TTL_SECS")]
    pub handoff_max_ttl_secs: Option<u32>,
    /// Most uses a request may allow on one token [default: 10].
    #[arg(long, env = "SESSIONBRIDGE_HANDOFF_MAX_USES")]
    pub handoff_max_uses: Option<u32>,
    /// Referrer bridge window, s; 0 disables the bridge [default: 60].
    #[arg(long, env = "SESSIONBRIDGE_BRIDGE_WINDOW_SECS")]
    pub bridge_window_secs: Option<u32>,
    /// Name of the raw session id parameter [default: session_id].
    #[arg(long, env = "SESSIONBRIDGE_SESSION_ID_PARAM")]
    pub session_id_param: Option<String>,
    /// Referring domains a raw session id parameter is accepted from,
    /// comma-separated [default: none, feature off].
    #[arg(
        long,
        env = "SESSIONBRIDGE_SESSION_ID_PARAM_REFERRERS",
        value_delimiter = ',',
        value_name = "DOMAINS"
    )]
    pub session_id_param_referrers: Option<Vec<String>>,
}

fn parse_consent(s: &str) -> Result<Consent, String> {
    match s {
        "granted" => Ok(Consent::Granted),
        "denied" => Ok(Consent::Denied),
        _ => Err("expected `granted` or `denied`".into()),
    }
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "interval" => Ok(Durability::Interval),
        "sync" => Ok(Durability::Sync),
        _ => Err("expected `interval` or `sync`".into()),
    }
}

macro_rules! apply {
    ($cfg:ident, $o:ident, $($field:ident),*) => {
        $(if let Some(v) = $o.$field.clone() { $cfg.$field = v; })*
    };
}

impl Config {
    /// Reads a TOML file; unknown keys are errors, so a typo is not silently
    /// ignored.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("configuration file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("configuration file {}: {e}", path.display()))
    }

    /// The file (if any), then the overrides, then checks.
    pub fn load(o: &Overrides) -> anyhow::Result<Self> {
        let mut cfg = match &o.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        apply!(
            cfg,
            o,
            listen,
            insecure_listen,
            store,
            redis_urls,
            redis_cluster,
            redis_key_prefix,
            redis_timeout_ms,
            redis_connect_timeout_ms,
            data_dir,
            allowed_domains,
            cookie_name,
            session_timeout_secs,
            touch_write_secs,
            identity_ttl_days,
            ga_cookie,
            default_consent,
            user_history,
            durability,
            flush_interval_ms,
            cache_mb,
            sweep_interval_secs,
            request_timeout_ms,
            concurrency_limit,
            max_message_bytes,
            drain_secs,
            log_format,
            handoff_param,
            handoff_default_ttl_secs,
            handoff_max_ttl_secs,
            handoff_max_uses,
            bridge_window_secs,
            session_id_param,
            session_id_param_referrers
        );
        for (target, given) in [
            (&mut cfg.keys, &o.keys),
            (&mut cfg.tls_cert, &o.tls_cert),
            (&mut cfg.tls_key, &o.tls_key),
            (&mut cfg.tls_client_ca, &o.tls_client_ca),
            (&mut cfg.auth_token_file, &o.auth_token_file),
        ] {
            if given.is_some() {
                target.clone_from(given);
            }
        }
        if o.metrics_listen.is_some() {
            cfg.metrics_listen = o.metrics_listen;
        }
        cfg.check()?;
        Ok(cfg)
    }

    /// Refuses settings that cannot work, with what to change.
    pub fn check(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if !crate::cookie::valid_cookie_name(&self.cookie_name) {
            bail!(
                "cookie_name {:?}: use 1 to 64 letters, digits, `_` or `-`",
                self.cookie_name
            );
        }
        if !(1..=400).contains(&self.identity_ttl_days) {
            bail!(
                "identity_ttl_days {}: must be 1 to 400 (browsers cap cookies at 400 days)",
                self.identity_ttl_days
            );
        }
        if self.cache_mb == 0 {
            bail!("cache_mb must be at least 1");
        }
        if self.session_timeout_secs == 0 {
            bail!("session_timeout_secs must be at least 1");
        }
        if !(1..=1000).contains(&self.user_history) {
            bail!("user_history {}: must be 1 to 1000", self.user_history);
        }
        if self.concurrency_limit == 0 || self.request_timeout_ms == 0 {
            bail!("concurrency_limit and request_timeout_ms must be at least 1");
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_message_bytes) {
            bail!(
                "max_message_bytes {}: must be 1 KiB to 16 MiB",
                self.max_message_bytes
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("tls_cert and tls_key go together: give both, or neither");
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            bail!("tls_client_ca (mutual TLS) needs tls_cert and tls_key");
        }
        if !self.listen.ip().is_loopback() && !self.insecure_listen && self.tls_cert.is_none() {
            bail!(
                "listen {}: refusing to serve plaintext gRPC beyond loopback; listen on 127.0.0.1, \
                 configure tls_cert and tls_key, or pass --insecure-listen true when a network \
                 policy already limits who can connect",
                self.listen
            );
        }
        crate::cookie::AllowedDomains::new(self.allowed_domains.clone())
            .map_err(anyhow::Error::msg)?;
        crate::cookie::AllowedDomains::new(self.session_id_param_referrers.clone())
            .map_err(|e| anyhow::anyhow!("session_id_param_referrers: {e}"))?;
        for (what, name) in [
            ("handoff_param", &self.handoff_param),
            ("session_id_param", &self.session_id_param),
        ] {
            if !crate::cookie::valid_cookie_name(name) {
                bail!("{what} {name:?}: use 1 to 64 letters, digits, `_` or `-`");
            }
        }
        if self.handoff_default_ttl_secs == 0
            || self.handoff_default_ttl_secs > self.handoff_max_ttl_secs
        {
            bail!("handoff_default_ttl_secs must be at least 1 and at most handoff_max_ttl_secs");
        }
        if self.store == StoreKind::Redis {
            if self.redis_urls.is_empty() {
                bail!("store = \"redis\" needs redis_urls (for example redis://127.0.0.1:6379)");
            }
            if self.redis_urls.len() > 1 && !self.redis_cluster {
                bail!("redis_urls lists several URLs: set redis_cluster = true, or give one");
            }
            for u in &self.redis_urls {
                if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                    bail!("redis_urls: {u:?} must start with redis:// or rediss://");
                }
            }
            if self.redis_timeout_ms == 0 || self.redis_connect_timeout_ms == 0 {
                bail!("redis_timeout_ms and redis_connect_timeout_ms must be at least 1");
            }
        }
        if !(1..=255).contains(&self.handoff_max_uses) {
            bail!(
                "handoff_max_uses {}: must be 1 to 255",
                self.handoff_max_uses
            );
        }
        Ok(())
    }

    /// The Redis connection settings.
    pub fn redis(&self) -> crate::store::RedisSettings {
        crate::store::RedisSettings {
            urls: self.redis_urls.clone(),
            cluster: self.redis_cluster,
            key_prefix: self.redis_key_prefix.clone(),
            response_timeout: std::time::Duration::from_millis(self.redis_timeout_ms),
            connect_timeout: std::time::Duration::from_millis(self.redis_connect_timeout_ms),
        }
    }

    /// Identity lifetime in seconds.
    pub fn identity_ttl_secs(&self) -> i64 {
        i64::from(self.identity_ttl_days) * 86_400
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "cookie_name = \"fromfile\"\nsession_timeout_secs = 60\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path.clone()),
            session_timeout_secs: Some(90),
            ..Default::default()
        };
        let cfg = Config::load(&o).unwrap();
        assert_eq!(cfg.cookie_name, "fromfile");
        assert_eq!(cfg.session_timeout_secs, 90);
        std::fs::write(&path, "cookie_nam = \"typo\"\n").unwrap();
        let err = Config::load(&o).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn tls_allows_listening_beyond_loopback() {
        let o = Overrides {
            listen: Some("0.0.0.0:50051".parse().unwrap()),
            tls_cert: Some("cert.pem".into()),
            tls_key: Some("key.pem".into()),
            ..Default::default()
        };
        Config::load(&o).unwrap();
        let half = Overrides {
            tls_cert: Some("cert.pem".into()),
            ..Default::default()
        };
        assert!(Config::load(&half)
            .unwrap_err()
            .to_string()
            .contains("go together"));
    }

    #[test]
    fn refuses_plaintext_beyond_loopback() {
        let o = Overrides {
            listen: Some("0.0.0.0:50051".parse().unwrap()),
            ..Default::default()
        };
        assert!(Config::load(&o)
            .unwrap_err()
            .to_string()
            .contains("--insecure-listen"));
    }
}
