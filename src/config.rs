//! Configuration: a TOML file, then `SESSIONBRIDGE_*` environment variables,
//! then command-line flags, each overriding the one before. Every setting has
//! a default, so `sessionbridge serve` starts with no configuration at all.
//!
//! Each setting is stated once, in the `settings!` table below: its name
//! (the TOML key; the flag is the name in kebab case and the environment
//! variable `SESSIONBRIDGE_` and the name in capitals), its type, its
//! default and its help text. The table generates [`Config`], its
//! [`Default`], [`Overrides`] (the partial form that both the file and the
//! command line fill in), the merge of one into the other, and
//! [`Config::KEYS`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::cookie::AllowedDomains;
use crate::identity::Consent;
use crate::store::Durability;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Text,
    /// One JSON object per line, for a cluster's log stack.
    Json,
}

/// Where identities are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Embedded sled database in `data_dir`: one store per instance.
    Sled,
    /// Redis or Valkey at `redis_urls`: one store shared by every instance.
    Redis,
}

/// The prefix of every setting's environment variable.
const ENV_PREFIX: &str = "SESSIONBRIDGE_";

/// Declares the settings. Each row is
///
/// ```text
/// /// Help text (the field's documentation, the flag's help).
/// #[arg(...)]           // optional: further clap attributes of the flag
/// name: Type = default; // or `name: Type;`, unset by default
/// ```
///
/// A row with a default is a `Type` in [`Config`]; a row without one is an
/// `Option<Type>` there, `None` unless given. In [`Overrides`] every setting
/// is an `Option<Type>`: `None` leaves the value below it.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $(#[arg($($arg:tt)*)])*
        $name:ident: $ty:ty $(= $default:expr)?;
    )*) => {
        /// Every setting of `sessionbridge serve`. Field docs are the
        /// reference the README and `sessionbridge serve --help` repeat.
        #[derive(Clone, Debug, Serialize)]
        pub struct Config {
            $(
                $(#[doc = $doc])*
                pub $name: setting!(type $ty $(, $default)?),
            )*
        }

        impl Default for Config {
            fn default() -> Self {
                Self {
                    $($name: setting!(default $($default)?),)*
                }
            }
        }

        /// Settings given in one place: the configuration file, or the
        /// command line and the environment (where clap lets a flag win
        /// over its environment variable). `None` leaves the value below:
        /// the file's, or the default.
        #[derive(Clone, Debug, Default, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Overrides {
            /// TOML configuration file.
            #[arg(long, env = env_var!(config), value_name = "FILE")]
            #[serde(skip)]
            pub config: Option<PathBuf>,
            $(
                #[arg(
                    long,
                    env = env_var!($name),
                    help = help(stringify!($name), concat!($($doc, "\n"),*), false),
                    long_help = help(stringify!($name), concat!($($doc, "\n"),*), true),
                )]
                $(#[arg($($arg)*)])*
                pub $name: Option<$ty>,
            )*
        }

        impl Config {
            /// The name of every setting: its TOML key.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($name)),*];

            /// Takes every setting `given` states.
            fn apply(&mut self, given: &Overrides) {
                $(
                    if let Some(v) = &given.$name {
                        self.$name = setting!(value v.clone() $(, $default)?);
                    }
                )*
            }
        }
    };
}

/// The parts of a row of [`settings!`] that depend on whether it has a
/// default.
macro_rules! setting {
    (type $ty:ty) => { Option<$ty> };
    (type $ty:ty, $default:expr) => { $ty };
    (default) => { None };
    (default $default:expr) => { $default };
    (value $v:expr) => { Some($v) };
    (value $v:expr, $default:expr) => { $v };
}

/// A setting's environment variable, `SESSIONBRIDGE_` and its name in
/// capitals, as a `&'static str` made at compile time.
macro_rules! env_var {
    ($name:ident) => {{
        const NAME: &str = stringify!($name);
        const BYTES: [u8; ENV_PREFIX.len() + NAME.len()] = env_var_bytes(NAME);
        const VAR: &str = match std::str::from_utf8(&BYTES) {
            Ok(var) => var,
            Err(_) => panic!("setting names are ASCII"),
        };
        VAR
    }};
}

const fn env_var_bytes<const N: usize>(name: &str) -> [u8; N] {
    let (prefix, name) = (ENV_PREFIX.as_bytes(), name.as_bytes());
    assert!(N == prefix.len() + name.len());
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = if i < prefix.len() {
            prefix[i]
        } else {
            name[i - prefix.len()].to_ascii_uppercase()
        };
        i += 1;
    }
    out
}

/// A flag's help from its setting's documentation: the first sentence for
/// `-h` (without its full stop, as clap shows a doc comment's summary), all
/// of it for `--help`; then the default.
fn help(name: &str, doc: &str, long: bool) -> String {
    let mut paragraphs = Vec::new();
    let mut current = Vec::new();
    for line in doc.lines().map(str::trim) {
        if line.is_empty() {
            if !current.is_empty() {
                paragraphs.push(current.join(" "));
                current.clear();
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        paragraphs.push(current.join(" "));
    }
    let text = if long {
        paragraphs.join("\n\n")
    } else {
        let first = paragraphs.first().map(String::as_str).unwrap_or("");
        let sentence = first.find(". ").map_or(first, |end| &first[..end]);
        sentence.trim_end_matches('.').to_string()
    };
    format!("{text} [default: {}]", shown_default(name))
}

/// A setting's default as it is written on the command line.
fn shown_default(name: &str) -> String {
    static DEFAULTS: OnceLock<toml::Table> = OnceLock::new();
    let defaults = DEFAULTS.get_or_init(|| {
        match toml::Value::try_from(Config::default()).expect("the defaults serialize") {
            toml::Value::Table(table) => table,
            _ => unreachable!("a struct serializes as a table"),
        }
    });
    let show = |v: &toml::Value| match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match defaults.get(name) {
        None => "none".into(),
        Some(toml::Value::Array(items)) if items.is_empty() => "empty".into(),
        Some(toml::Value::Array(items)) => items.iter().map(show).collect::<Vec<_>>().join(","),
        Some(v) => show(v),
    }
}

/// Reads a flag's value as the file spells it (`granted`, `sync`).
fn as_in_file<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(s))
        .map_err(|e| e.to_string())
}

settings! {
    /// Address to listen on. Loopback by default: in a pod only the backend
    /// beside it can reach the sidecar.
    #[arg(value_name = "ADDR")]
    listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 50051));
    /// Allow a non-loopback `listen` address without TLS. Plaintext gRPC on
    /// a shared network lets anyone mint and read identities.
    insecure_listen: bool = false;
    /// PEM certificate chain: serve gRPC over TLS (then any `listen`
    /// address may be used).
    #[arg(value_name = "FILE")]
    tls_cert: PathBuf;
    /// PEM private key of `tls_cert`.
    #[arg(value_name = "FILE")]
    tls_key: PathBuf;
    /// PEM CA certificate(s): when set, callers must present a client
    /// certificate signed by one of them (mutual TLS).
    #[arg(value_name = "FILE")]
    tls_client_ca: PathBuf;
    /// File holding a bearer token that every identity API call must carry
    /// (`authorization: Bearer <token>`). Health and reflection stay open.
    #[arg(value_name = "FILE")]
    auth_token_file: PathBuf;
    /// Address of the Prometheus endpoint (`GET /metrics`), on its own
    /// port. In Kubernetes, `0.0.0.0:9464` so the pod's scraper can reach
    /// it: it exposes counts, never request data.
    #[arg(value_name = "ADDR")]
    metrics_listen: SocketAddr;
    /// Allow a non-loopback `metrics_listen` address. The endpoint has no
    /// TLS and no authentication; expose it only where a network policy
    /// limits who can scrape.
    metrics_listen_public: bool = false;
    /// Address of a health-only gRPC listener (`grpc.health.v1` alone, with
    /// the "" / service and "liveness" statuses), for the kubelet's probes,
    /// so that `listen` can stay on loopback beside the backend. Any
    /// address: it tells nothing but whether the service is serving.
    #[arg(value_name = "ADDR")]
    health_listen: SocketAddr;
    /// Which store: `sled` (embedded) or `redis` (shared).
    #[arg(value_enum)]
    store: StoreKind = StoreKind::Sled;
    /// Directory of the embedded store (and of the development key).
    #[arg(value_name = "DIR")]
    data_dir: PathBuf = PathBuf::from("sessionbridge-data");
    /// Redis URLs: one `redis://` or `rediss://` URL, or the seed nodes of
    /// a cluster (comma-separated on the command line and in the
    /// environment). Credentials go in the URL; prefer the file or the
    /// environment to flags for them.
    #[arg(value_delimiter = ',', value_name = "URLS")]
    redis_urls: Vec<String> = Vec::new();
    /// Talk to a Redis Cluster.
    redis_cluster: bool = false;
    /// Prefix of every Redis key.
    redis_key_prefix: String = "sessionbridge:".into();
    /// A Redis command slower than this, in milliseconds, fails with
    /// UNAVAILABLE.
    redis_timeout_ms: u64 = 500;
    /// A Redis connection attempt slower than this, in milliseconds, fails.
    redis_connect_timeout_ms: u64 = 1000;
    /// The key file shared by every sidecar of a deployment (see
    /// `sessionbridge keygen`). Without one, a development key is generated
    /// in the data directory; cookies and tokens then work on this instance
    /// only.
    #[arg(value_name = "FILE")]
    keys: PathBuf;
    /// Domains on which cookies may be set, each admitting its subdomains
    /// (comma-separated on the command line and in the environment). Empty:
    /// every host, host-only cookies.
    #[arg(value_delimiter = ',', value_name = "DOMAINS")]
    allowed_domains: Vec<String> = Vec::new();
    /// Base name of the service's own identity cookie, set as
    /// `__Secure-<name>` on a domain and `__Host-<name>` on a host, prefixes
    /// that keep http men-in-the-middle (and, for `__Host-`, sibling
    /// subdomains) from planting one. A cookie of the bare name (and
    /// `_sbid`, the name before prefixes) is still read once, then
    /// replaced.
    cookie_name: String = crate::settings::DEFAULT_COOKIE_BASE.into();
    /// Inactivity, in seconds, after which the next hit starts a new
    /// session.
    session_timeout_secs: u64 = 30 * 60;
    /// A hit that changes nothing but the time of the last hit rewrites the
    /// stored record only when the stored time is at least this old, in
    /// seconds; the cookie always carries the exact time. 0: write on every
    /// hit. Capped at a tenth of `session_timeout_secs`, so a stale stored
    /// time can never end a session early by more than that.
    touch_write_secs: u64 = 60;
    /// Lifetime of an identity (cookie Max-Age and stored record), in days;
    /// at most 400, the cap browsers apply.
    identity_ttl_days: u32 = 400;
    /// Lifetime of the record of a first visit that brought no verified
    /// evidence (no own cookie, token or login; a GA id, `_gl`, the
    /// referrer bridge or a session parameter alone count as none: anyone
    /// can make them up), in seconds. The
    /// visitor's second hit with the cookie extends it to
    /// `identity_ttl_days`; until then the record holds nothing the cookie
    /// does not, so bots and visitors who refuse cookies stop growing the
    /// store after this long. The cookie keeps its full Max-Age. 60 to
    /// `identity_ttl_days`.
    first_visit_ttl_secs: u64 = 86_400;
    /// Also set a GA4 `_ga` cookie by default.
    ga_cookie: bool = false;
    /// Consent assumed when a request does not state it: `granted` or
    /// `denied`.
    #[arg(value_parser = as_in_file::<Consent>)]
    default_consent: Consent = Consent::Granted;
    /// How many recent identities a user index keeps.
    user_history: usize = 10;
    /// When a write is acknowledged: `interval` (in memory, flushed every
    /// `flush_interval_ms`) or `sync` (once on disk).
    #[arg(value_parser = as_in_file::<Durability>)]
    durability: Durability = Durability::Interval;
    /// With `durability = "interval"`, how often the store is flushed, in
    /// milliseconds.
    flush_interval_ms: u64 = 500;
    /// Page cache of the embedded store, MiB.
    cache_mb: u64 = crate::store::SLED_DEFAULT_CACHE_MB;
    /// How often expired records are removed, in seconds.
    sweep_interval_secs: u64 = 60;
    /// Deadline of one call, in milliseconds; a caller's shorter
    /// `grpc-timeout` wins.
    request_timeout_ms: u64 = 2000;
    /// Identity API calls served at once; beyond it a call is refused at
    /// once with RESOURCE_EXHAUSTED (health and reflection are outside the
    /// limit).
    concurrency_limit: usize = 1024;
    /// Largest request message accepted, in bytes.
    max_message_bytes: usize = 64 * 1024;
    /// On SIGTERM, how long to report NOT_SERVING before closing the
    /// listener, in seconds, so load balancers stop sending calls first.
    drain_secs: u64 = 0;
    /// Log line format: `text` for a terminal, `json` for a cluster's log
    /// stack.
    #[arg(value_enum)]
    log_format: LogFormat = LogFormat::Text;
    /// Query parameter that carries hand-off tokens.
    handoff_param: String = "_sbt".into();
    /// Lifetime of a hand-off token when the request does not set one, in
    /// seconds.
    handoff_default_ttl_secs: u32 = 120;
    /// The longest lifetime a request may ask for, in seconds (hours suit
    /// payment redirects and their webhooks).
    handoff_max_ttl_secs: u32 = 86_400;
    /// The most uses a request may allow on one token.
    handoff_max_uses: u32 = 10;
    /// How long a token still names its visitor to passive calls (webhooks,
    /// server-to-server retries), in seconds: the default and the most a
    /// request may ask for. At least the token's own lifetime; at most 45
    /// days.
    handoff_passive_ttl_secs: u32 = 86_400;
    /// A request with Global Privacy Control (`Sec-GPC: 1`) has its ad
    /// consent signals denied; with this set, its analytics storage too (no
    /// identity is stored or set in a cookie), as some laws read the
    /// signal.
    gpc_denies_analytics: bool = false;
    /// Sites outside `allowed_domains` that RecordHandoff may send a
    /// visitor (and a token, and GA ids) to, each admitting its subdomains:
    /// payment providers, a hosted store (comma-separated on the command
    /// line and in the environment). With `allowed_domains` empty
    /// (development), every destination is allowed.
    #[arg(value_delimiter = ',', value_name = "DOMAINS")]
    handoff_destinations: Vec<String> = Vec::new();
    /// How long a recorded hand-off waits for a parameterless arrival (the
    /// referrer bridge), in seconds; 0 turns the bridge off.
    bridge_window_secs: u32 = 60;
    /// Name of the raw session id query parameter (the seed's approach 3).
    session_id_param: String = "session_id".into();
    /// Referring domains (subdomains included) from which a raw session id
    /// parameter is accepted (comma-separated on the command line and in the
    /// environment). Empty turns the feature off: a raw id in a URL lets
    /// anyone who sees the link take over the session.
    #[arg(value_delimiter = ',', value_name = "DOMAINS")]
    session_id_param_referrers: Vec<String> = Vec::new();
}

/// What [`Config::check`] parsed beyond the settings' own types.
#[derive(Clone, Debug)]
pub struct Checked {
    /// `allowed_domains`, parsed.
    pub allowed_domains: AllowedDomains,
    /// `session_id_param_referrers`, parsed.
    pub session_id_param_referrers: AllowedDomains,
    /// `handoff_destinations`, parsed.
    pub handoff_destinations: AllowedDomains,
}

impl Overrides {
    /// The settings a TOML file states; unknown keys are errors, so a typo
    /// is not silently ignored.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("configuration file {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("configuration file {}: {e}", path.display()))
    }
}

impl Config {
    /// Reads a TOML file over the defaults; unknown keys are errors.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let mut cfg = Self::default();
        cfg.apply(&Overrides::from_file(path)?);
        Ok(cfg)
    }

    /// The defaults, then the file (if any), then the environment and the
    /// flags; then checks.
    pub fn load(o: &Overrides) -> anyhow::Result<Self> {
        let mut cfg = match &o.config {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        cfg.apply(o);
        cfg.check()?;
        Ok(cfg)
    }

    /// Refuses settings that cannot work, with what to change; returns the
    /// settings it had to parse, parsed.
    pub fn check(&self) -> anyhow::Result<Checked> {
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
        if self.first_visit_ttl_secs < 60
            || self.first_visit_ttl_secs > self.identity_ttl_secs() as u64
        {
            bail!(
                "first_visit_ttl_secs {}: must be 60 to identity_ttl_days in seconds ({})",
                self.first_visit_ttl_secs,
                self.identity_ttl_secs()
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
        if let Some(m) = self.metrics_listen {
            if !m.ip().is_loopback() && !self.metrics_listen_public {
                bail!(
                    "metrics_listen {m}: refusing to expose metrics beyond loopback without \
                     --metrics-listen-public true (the endpoint has no TLS or authentication)"
                );
            }
        }
        if !self.listen.ip().is_loopback() && !self.insecure_listen && self.tls_cert.is_none() {
            bail!(
                "listen {}: refusing to serve plaintext gRPC beyond loopback; listen on 127.0.0.1, \
                 configure tls_cert and tls_key, or pass --insecure-listen true when a network \
                 policy already limits who can connect",
                self.listen
            );
        }
        let allowed_domains =
            AllowedDomains::new(self.allowed_domains.clone()).map_err(anyhow::Error::msg)?;
        let session_id_param_referrers =
            AllowedDomains::new(self.session_id_param_referrers.clone())
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
        if self.handoff_passive_ttl_secs > crate::token::MAX_PASSIVE_TTL_SECS {
            bail!(
                "handoff_passive_ttl_secs {}: at most {} (45 days)",
                self.handoff_passive_ttl_secs,
                crate::token::MAX_PASSIVE_TTL_SECS
            );
        }
        if !(1..=255).contains(&self.handoff_max_uses) {
            bail!(
                "handoff_max_uses {}: must be 1 to 255",
                self.handoff_max_uses
            );
        }
        let handoff_destinations = AllowedDomains::new(self.handoff_destinations.clone())
            .map_err(|e| anyhow::anyhow!("handoff_destinations: {e}"))?;
        Ok(Checked {
            allowed_domains,
            session_id_param_referrers,
            handoff_destinations,
        })
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
    fn a_first_visit_lives_a_minute_to_the_identity_lifetime() {
        let check = |secs, days| {
            Config {
                first_visit_ttl_secs: secs,
                identity_ttl_days: days,
                ..Default::default()
            }
            .check()
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert_eq!(check(86_400, 400), Ok(()));
        assert_eq!(check(60, 1), Ok(()));
        assert_eq!(check(86_400, 1), Ok(()));
        let err = check(59, 400).unwrap_err();
        assert!(err.contains("first_visit_ttl_secs 59"), "{err}");
        let err = check(86_401, 1).unwrap_err();
        assert!(err.contains("first_visit_ttl_secs 86401"), "{err}");
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

    #[test]
    fn the_file_fills_optional_and_list_settings_and_knows_no_config_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "metrics_listen = \"127.0.0.1:9464\"\nallowed_domains = [\"a.com\", \"b.org\"]\n\
             default_consent = \"denied\"\ndurability = \"sync\"\nstore = \"sled\"\n",
        )
        .unwrap();
        let cfg = Config::from_file(&path).unwrap();
        assert_eq!(cfg.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(cfg.allowed_domains, ["a.com", "b.org"]);
        assert_eq!(cfg.default_consent, Consent::Denied);
        assert_eq!(cfg.durability, Durability::Sync);
        // Unstated settings keep their defaults.
        assert_eq!(cfg.cookie_name, Config::default().cookie_name);
        let o = Overrides {
            config: Some(path.clone()),
            allowed_domains: Some(vec!["c.net".into()]),
            ..Default::default()
        };
        let cfg = Config::load(&o).unwrap();
        assert_eq!(cfg.allowed_domains, ["c.net"]);
        assert_eq!(cfg.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        // The file cannot name another file.
        std::fs::write(&path, "config = \"other.toml\"\n").unwrap();
        let err = Config::load(&o).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn check_returns_the_parsed_domain_lists() {
        let cfg = Config {
            allowed_domains: vec![".Example.COM".into()],
            session_id_param_referrers: vec!["shop.example.org".into()],
            ..Config::default()
        };
        let checked = cfg.check().unwrap();
        assert!(format!("{:?}", checked.allowed_domains).contains("\"example.com\""));
        assert!(format!("{:?}", checked.session_id_param_referrers).contains("shop.example.org"));
        let bad = Config {
            session_id_param_referrers: vec!["not a domain".into()],
            ..Config::default()
        };
        let err = crate::settings::Settings::from_config(&bad).unwrap_err();
        assert!(
            err.to_string().contains("session_id_param_referrers"),
            "{err}"
        );
    }

    #[test]
    fn every_setting_has_its_flag_environment_variable_and_default() {
        use clap::Args;
        let cmd = Overrides::augment_args(clap::Command::new("serve"));
        let mut args: Vec<_> = cmd.get_arguments().collect();
        for key in Config::KEYS {
            let flag = key.replace('_', "-");
            let pos = args
                .iter()
                .position(|a| a.get_long() == Some(flag.as_str()))
                .unwrap_or_else(|| panic!("no --{flag}"));
            let arg = args.remove(pos);
            let env = format!("SESSIONBRIDGE_{}", key.to_ascii_uppercase());
            assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(&env)), "--{flag}");
            for help in [arg.get_help(), arg.get_long_help()] {
                let help = help
                    .unwrap_or_else(|| panic!("--{flag} has no help"))
                    .to_string();
                assert!(help.contains(" [default: "), "--{flag}: {help}");
            }
        }
        let rest: Vec<_> = args.iter().map(|a| a.get_id().as_str()).collect();
        assert_eq!(rest, ["config"]);
        let listen = cmd
            .get_arguments()
            .find(|a| a.get_id() == "listen")
            .unwrap();
        assert_eq!(
            listen.get_help().unwrap().to_string(),
            "Address to listen on [default: 127.0.0.1:50051]"
        );
        assert_eq!(shown_default("redis_urls"), "empty");
        assert_eq!(shown_default("keys"), "none");
        assert_eq!(shown_default("default_consent"), "granted");
    }

    #[test]
    fn flags_read_values_as_the_file_spells_them() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            o: Overrides,
        }
        let cli = Cli::try_parse_from([
            "serve",
            "--default-consent",
            "denied",
            "--durability",
            "sync",
            "--allowed-domains",
            "a.com,b.org",
            "--insecure-listen",
            "true",
        ])
        .unwrap();
        assert_eq!(cli.o.default_consent, Some(Consent::Denied));
        assert_eq!(cli.o.durability, Some(Durability::Sync));
        assert_eq!(
            cli.o.allowed_domains,
            Some(vec!["a.com".into(), "b.org".into()])
        );
        assert_eq!(cli.o.insecure_listen, Some(true));
        let err = Cli::try_parse_from(["serve", "--durability", "often"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("`interval` or `sync`"), "{err}");
    }
}
