//! The application core: takes checked requests, applies the identity rules
//! in precedence order, persists through the store contract, and says which
//! cookies to set. It knows neither gRPC nor the storage engine.

use std::sync::Arc;

use crate::context::{FieldViolation, RequestContext};
use crate::cookie::{self, CookieScope, SetCookie};
use crate::identity::{ClientId, Consent, Identity, Method, Rejected, MINT_ONLY, PRECEDENCE};
use crate::keys::Keyring;
use crate::privacy::{self, UserKey, UserRef};
pub use crate::settings::Settings;
use crate::store::{BridgeEntry, Claim, ClientRecord, ClientWrite, Erased, Store, StoreError};
use crate::token::{self, Claims};
use crate::{ga, identity::Rejection, query};
use url::Url;

/// Why a call failed, in terms the API layer maps to status codes.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    fn field(field: &str, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

/// The user a request names, already checked and hashed.
#[derive(Debug, Default, Clone)]
pub struct UserInput {
    pub user_id: Option<String>,
    /// Index keys for the user id and the email, whichever were given.
    pub keys: Vec<UserKey>,
}

/// A ResolveSession (or MintCookie) call.
#[derive(Debug)]
pub struct ResolveInput {
    pub ctx: RequestContext,
    pub user: UserInput,
    /// Whether to also return a `_ga` cookie; None for the configured default.
    pub ga_cookie: Option<bool>,
    /// A hand-off token passed outside the URL (a webhook's reference).
    pub handoff_token: Option<String>,
    /// Not a page view: report without counting a hit, set no cookie.
    pub passive: bool,
}

impl ResolveInput {
    /// A page view with nothing but the request context.
    pub fn page_view(ctx: RequestContext) -> Self {
        Self {
            ctx,
            user: UserInput::default(),
            ga_cookie: None,
            handoff_token: None,
            passive: false,
        }
    }
}

/// A RecordHandoff call.
#[derive(Debug)]
pub struct HandoffInput {
    pub ctx: RequestContext,
    pub destination: Url,
    pub extra_audience: Vec<String>,
    /// 0 for the configured default.
    pub ttl_secs: u32,
    /// 0 for one use.
    pub max_uses: u32,
    pub bind_user_agent: bool,
    /// The visitor's time-zone offset, to also write a `_gl` parameter.
    pub ga_linker_tz: Option<i32>,
}

/// The answer to a RecordHandoff call.
#[derive(Debug)]
pub struct Handoff {
    pub token: String,
    pub decorated_url: String,
    pub expires_at: i64,
    /// The source-side resolution (identity and cookies to set there).
    pub source: Resolution,
}

/// The answer to a ResolveSession (or MintCookie) call.
#[derive(Debug)]
pub struct Resolution {
    pub identity: Identity,
    pub method: Method,
    pub confidence: f32,
    pub new_session: bool,
    pub new_client: bool,
    pub cookies: Vec<SetCookie>,
    pub rejected: Vec<Rejected>,
    pub clean_url: Option<String>,
    pub persisted: bool,
}

/// Evidence that named an identity.
struct Found {
    identity: Identity,
    method: Method,
    confidence: f32,
    /// The record already stored for this client, if any.
    record: Option<ClientRecord>,
    /// The consent the evidence carries (tokens carry the source's).
    consent: Consent,
}

/// The core service, generic over its store.
pub struct Service<S> {
    store: S,
    keys: Arc<Keyring>,
    settings: Settings,
}

/// Current unix time in seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl<S: Store> Service<S> {
    pub fn new(store: S, keys: Arc<Keyring>, settings: Settings) -> Self {
        Self {
            store,
            keys,
            settings,
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Checks and hashes a user id and email (either may be empty).
    pub fn user_input(
        &self,
        user_id: &str,
        email: &str,
        prefix: &str,
    ) -> Result<UserInput, ServiceError> {
        let mut violations = Vec::new();
        let mut out = UserInput::default();
        if !user_id.is_empty() {
            match privacy::check_user_id(user_id) {
                Ok(()) => {
                    out.keys
                        .push(privacy::user_key(&self.keys, UserRef::UserId(user_id)));
                    out.user_id = Some(user_id.to_string());
                }
                Err(e) => violations.push(FieldViolation::new(
                    format!("{prefix}user_id"),
                    e.to_string(),
                )),
            }
        }
        if !email.is_empty() {
            match privacy::normalize_email(email) {
                Ok(e) => out
                    .keys
                    .push(privacy::user_key(&self.keys, UserRef::Email(&e))),
                Err(e) => {
                    violations.push(FieldViolation::new(format!("{prefix}email"), e.to_string()))
                }
            }
        }
        if violations.is_empty() {
            Ok(out)
        } else {
            Err(ServiceError::Invalid(violations))
        }
    }

    fn scope(&self, ctx: &RequestContext) -> Result<CookieScope, ServiceError> {
        self.settings
            .allowed
            .scope(&ctx.host, ctx.host_is_domain)
            .map_err(|e| {
                ServiceError::field(
                    "context.host",
                    format!("{e}; add its domain to allowed_domains"),
                )
            })
    }

    /// ResolveSession: every source of evidence, in precedence order.
    pub async fn resolve(&self, input: ResolveInput) -> Result<Resolution, ServiceError> {
        self.resolve_with(input, PRECEDENCE).await
    }

    /// MintCookie: the own cookie, refreshed, or a new identity.
    pub async fn mint(&self, input: ResolveInput) -> Result<Resolution, ServiceError> {
        self.resolve_with(input, MINT_ONLY).await
    }

    async fn resolve_with(
        &self,
        input: ResolveInput,
        sources: &[Method],
    ) -> Result<Resolution, ServiceError> {
        let now = now_unix();
        let scope = self.scope(&input.ctx)?;
        let clean_url = self.clean_url(&input.ctx);
        if input.ctx.consent == Consent::Denied {
            return Ok(self.without_consent(&input.ctx, &scope, now, clean_url));
        }

        let mut rejected = Vec::new();
        let mut found = None;
        for &source in sources {
            found = match source {
                Method::Cookie => self.cookie_evidence(&input.ctx, now, &mut rejected).await?,
                Method::HandoffToken => self.token_evidence(&input, now, &mut rejected).await?,
                Method::UserId => self.user_evidence(&input.user, now).await?,
                Method::ReferrerBridge => self.bridge_evidence(&input.ctx, now).await?,
                Method::GaCookie => self.ga_evidence(&input.ctx, now, &mut rejected).await?,
                Method::GaLinker => self.linker_evidence(&input.ctx, now, &mut rejected).await?,
                Method::SessionIdParameter => {
                    self.session_param_evidence(&input.ctx, now, &mut rejected)
                        .await?
                }
                Method::New | Method::NoConsent => None,
            };
            if found.is_some() {
                break;
            }
        }
        // A token sealed where the visitor refused consent: unless this
        // request states consent itself, the destination must not identify.
        if let Some(f) = &found {
            if f.consent == Consent::Denied && input.ctx.consent_stated.is_none() {
                rejected.push(Rejected::new(
                    f.method,
                    Rejection::NoConsent,
                    "the source site recorded that the visitor refused consent",
                ));
                let mut r = self.without_consent(&input.ctx, &scope, now, clean_url);
                r.rejected = rejected;
                return Ok(r);
            }
        }

        let (mut identity, method, confidence, record, new_client) = match found {
            Some(f) => (f.identity, f.method, f.confidence, f.record, false),
            None => {
                let id = self
                    .settings
                    .policy
                    .new_identity(ClientId::generate(now), now);
                // The new identity's session starts now: no touch needed.
                (id, Method::New, 0.0, None, true)
            }
        };
        let new_session =
            new_client || (!input.passive && self.settings.policy.touch(&mut identity, now));

        if let Some(uid) = &input.user.user_id {
            identity.user_id = Some(uid.clone());
        }
        let fresh = record.as_ref().is_some_and(|stored| {
            input.user.keys.is_empty() && self.only_touched(&stored.identity, &identity)
        });
        let mut user_keys = record.map(|r| r.user_keys).unwrap_or_default();
        for k in &input.user.keys {
            if !user_keys.contains(k) {
                user_keys.push(*k);
            }
        }
        let record = ClientRecord {
            identity,
            user_keys,
        };
        // Most page views change nothing but the time of the last hit, which
        // the refreshed cookie carries exactly; the stored copy is rewritten
        // once it is `touch_write_secs` old.
        if !fresh {
            self.store
                .put_client(ClientWrite {
                    record: &record,
                    link: &input.user.keys,
                    expires_at: now + self.settings.identity_ttl_secs,
                    history: self.settings.user_history,
                })
                .await?;
        }
        let identity = record.identity;
        let cookies = if input.passive {
            Vec::new()
        } else {
            self.cookies(&scope, &identity, input.ga_cookie)
        };
        Ok(Resolution {
            identity,
            method,
            confidence,
            new_session,
            new_client,
            cookies,
            rejected,
            clean_url,
            persisted: true,
        })
    }

    /// Whether `now` differs from the stored identity only by a last-hit
    /// time that is not yet `touch_write_secs` newer.
    fn only_touched(&self, stored: &Identity, now: &Identity) -> bool {
        stored.client_id == now.client_id
            && stored.session_id == now.session_id
            && stored.session_number == now.session_number
            && stored.user_id == now.user_id
            && now.last_seen >= stored.last_seen
            && now.last_seen - stored.last_seen < self.settings.touch_write_secs
    }

    /// The request URL without hand-off parameters, when it had any.
    fn clean_url(&self, ctx: &RequestContext) -> Option<String> {
        let url = ctx.url.as_ref()?;
        let mut names = vec![self.settings.handoff_param.as_str(), "_gl"];
        if !self.settings.session_id_referrers.is_open() {
            names.push(self.settings.session_id_param.as_str());
        }
        query::without(url, &names).map(String::from)
    }

    /// Consent denied: an identity for this response only, nothing stored,
    /// and any identity cookie the browser holds deleted.
    fn without_consent(
        &self,
        ctx: &RequestContext,
        scope: &CookieScope,
        now: i64,
        clean_url: Option<String>,
    ) -> Resolution {
        let identity = self
            .settings
            .policy
            .new_identity(ClientId::generate(now), now);
        let mut cookies = Vec::new();
        if !cookie::values_named(&ctx.cookie_header, &self.settings.cookie_name).is_empty() {
            cookies.push(SetCookie::new(
                &self.settings.cookie_name,
                String::new(),
                scope,
                0,
                true,
            ));
        }
        Resolution {
            identity,
            method: Method::NoConsent,
            confidence: 0.0,
            new_session: true,
            new_client: true,
            cookies,
            rejected: Vec::new(),
            clean_url,
            persisted: false,
        }
    }

    /// The own cookie. The cookie carries the session state, so it stands
    /// alone; a stored record adds the user id, and wins when it saw a later
    /// hit (another tab, or a sidecar that set a newer cookie).
    async fn cookie_evidence(
        &self,
        ctx: &RequestContext,
        now: i64,
        rejected: &mut Vec<Rejected>,
    ) -> Result<Option<Found>, ServiceError> {
        let values = cookie::values_named(&ctx.cookie_header, &self.settings.cookie_name);
        if values.is_empty() {
            return Ok(None);
        }
        let scopes = self
            .settings
            .allowed
            .candidate_scopes(&ctx.host, ctx.host_is_domain);
        let mut best: Option<Identity> = None;
        for v in values {
            match cookie::open_identity(&self.keys, &scopes, &self.settings.cookie_name, v) {
                // The cookie's own Max-Age ends its life in the browser; a
                // value replayed from elsewhere after that is refused too.
                Ok(id) if now - id.last_seen > self.settings.identity_ttl_secs => {
                    rejected.push(Rejected::new(
                        Method::Cookie,
                        Rejection::Expired,
                        "identity cookie is older than identity_ttl_days",
                    ))
                }
                Ok(id) => {
                    if best.as_ref().is_none_or(|b| id.last_seen > b.last_seen) {
                        best = Some(id);
                    }
                }
                Err(reason) => {
                    rejected.push(Rejected::new(Method::Cookie, reason, cookie_detail(reason)))
                }
            }
        }
        let Some(mut identity) = best else {
            return Ok(None);
        };
        let record = self.store.get_client(identity.client_id, now).await?;
        if let Some(r) = &record {
            if r.identity.last_seen > identity.last_seen {
                identity = r.identity.clone();
            } else {
                identity.user_id = r.identity.user_id.clone();
            }
        }
        Ok(Some(Found {
            identity,
            method: Method::Cookie,
            confidence: 1.0,
            record,
            consent: Consent::Granted,
        }))
    }

    /// Completes an identity named by evidence with what the store knows of
    /// the same client: the user id, and the session state when the store
    /// saw a later hit.
    async fn with_record(
        &self,
        mut identity: Identity,
        now: i64,
    ) -> Result<(Identity, Option<ClientRecord>), ServiceError> {
        let record = self.store.get_client(identity.client_id, now).await?;
        if let Some(r) = &record {
            if r.identity.last_seen > identity.last_seen {
                identity = r.identity.clone();
            } else {
                identity.user_id = r.identity.user_id.clone();
            }
        }
        Ok((identity, record))
    }

    /// A sealed hand-off token, from the request (webhooks) or the URL.
    /// Checks that cost nothing come before the claim, so a token presented
    /// in the wrong place does not lose a use.
    async fn token_evidence(
        &self,
        input: &ResolveInput,
        now: i64,
        rejected: &mut Vec<Rejected>,
    ) -> Result<Option<Found>, ServiceError> {
        let from_url = input
            .ctx
            .url
            .as_ref()
            .and_then(|u| query::param(u, &self.settings.handoff_param));
        let Some(token) = input.handoff_token.clone().or(from_url) else {
            return Ok(None);
        };
        let reject = |reason, detail: &str| Rejected::new(Method::HandoffToken, reason, detail);
        let claims = match token::open(&self.keys, &token) {
            Ok(c) => c,
            Err(reason) => {
                rejected.push(reject(reason, token_detail(reason)));
                return Ok(None);
            }
        };
        if now >= claims.expires_at {
            rejected.push(reject(Rejection::Expired, "hand-off token has expired"));
            return Ok(None);
        }
        let host = token::short_hash(&self.keys, "host", &input.ctx.host);
        if !claims.audience.contains(&host) {
            rejected.push(reject(
                Rejection::WrongAudience,
                "hand-off token was issued for another host",
            ));
            return Ok(None);
        }
        if let Some(bound) = claims.user_agent {
            if token::short_hash(&self.keys, "ua", &input.ctx.user_agent) != bound {
                rejected.push(reject(
                    Rejection::FingerprintMismatch,
                    "hand-off token is bound to another User-Agent",
                ));
                return Ok(None);
            }
        }
        match self
            .store
            .claim_token(
                claims.token_id,
                u32::from(claims.max_uses),
                claims.expires_at,
                now,
            )
            .await?
        {
            Claim::UsedUp => {
                rejected.push(reject(
                    Rejection::Replayed,
                    "hand-off token was already used up",
                ));
                return Ok(None);
            }
            Claim::Granted(_) => {}
        }
        let Claims {
            identity, consent, ..
        } = claims;
        let (identity, record) = self.with_record(identity, now).await?;
        Ok(Some(Found {
            identity,
            method: Method::HandoffToken,
            confidence: 1.0,
            record,
            consent,
        }))
    }

    /// The referrer bridge key: the source site, the destination site, the
    /// browser and its network, hashed together under the pepper.
    fn bridge_key(&self, source_site: &str, dest_site: &str, ctx: &RequestContext) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(self.keys.fingerprint.as_ref())
            .expect("HMAC takes any key length");
        let net = ctx.client_ip.map(network_prefix).unwrap_or_default();
        for part in ["bridge", source_site, dest_site, &ctx.user_agent, &net] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac.finalize().into_bytes().into()
    }

    /// Seed approach 2: a visitor who arrives with no cookie and no
    /// parameter, referred by a site that recorded a hand-off moments ago
    /// from the same User-Agent and network.
    ///
    /// A heuristic: two people behind one NAT with identical browsers,
    /// arriving within the window, could be confused. Confidence falls with
    /// the age of the hand-off, and is lower without a client IP.
    async fn bridge_evidence(
        &self,
        ctx: &RequestContext,
        now: i64,
    ) -> Result<Option<Found>, ServiceError> {
        let window = i64::from(self.settings.bridge_window_secs);
        if window == 0 || ctx.user_agent.is_empty() {
            return Ok(None);
        }
        let Some(referer) = ctx.referer.as_ref().and_then(|r| r.host_str()) else {
            return Ok(None);
        };
        let source = site_of(referer);
        let dest = site_of(&ctx.host);
        if source == dest {
            return Ok(None);
        }
        let Some(entry) = self
            .store
            .take_bridge(self.bridge_key(&source, &dest, ctx), now)
            .await?
        else {
            return Ok(None);
        };
        let age = (now - entry.created_at).clamp(0, window);
        let mut confidence = 0.9 - 0.3 * (age as f32 / window as f32);
        if !entry.with_network {
            confidence -= 0.2;
        }
        let (identity, record) = self.with_record(entry.identity, now).await?;
        Ok(Some(Found {
            identity,
            method: Method::ReferrerBridge,
            confidence,
            record,
            consent: Consent::Granted,
        }))
    }

    /// Seed approach 3 as written: a raw client id in the query. Off unless
    /// referrers are allow-listed, because whoever sees such a link can
    /// fixate or take over the session.
    async fn session_param_evidence(
        &self,
        ctx: &RequestContext,
        now: i64,
        rejected: &mut Vec<Rejected>,
    ) -> Result<Option<Found>, ServiceError> {
        let Some(value) = ctx
            .url
            .as_ref()
            .and_then(|u| query::param(u, &self.settings.session_id_param))
        else {
            return Ok(None);
        };
        let reject =
            |reason, detail: &str| Rejected::new(Method::SessionIdParameter, reason, detail);
        let allowed = &self.settings.session_id_referrers;
        if allowed.is_open() {
            // The feature is off: a parameter of that name is none of ours.
            return Ok(None);
        }
        let from_allowed = ctx
            .referer
            .as_ref()
            .and_then(|r| r.host_str())
            .is_some_and(|h| allowed.allows(&h.to_ascii_lowercase()));
        if !from_allowed {
            rejected.push(reject(
                Rejection::NotAllowed,
                "raw session id parameter from a referrer outside session_id_param_referrers",
            ));
            return Ok(None);
        }
        let Ok(client_id) = value.parse::<ClientId>() else {
            rejected.push(reject(
                Rejection::Malformed,
                "raw session id parameter is not a client id",
            ));
            return Ok(None);
        };
        let (identity, record) = match self.store.get_client(client_id, now).await? {
            Some(r) => (r.identity.clone(), Some(r)),
            None => (self.settings.policy.new_identity(client_id, now), None),
        };
        Ok(Some(Found {
            identity,
            method: Method::SessionIdParameter,
            confidence: 0.5,
            record,
            consent: Consent::Granted,
        }))
    }

    /// GA4's `_gl` linker: the client id (and session) another site's
    /// gtag.js put in the link, accepted only when its checksum matches this
    /// browser in the current or previous minute, as gtag.js itself checks.
    async fn linker_evidence(
        &self,
        ctx: &RequestContext,
        now: i64,
        rejected: &mut Vec<Rejected>,
    ) -> Result<Option<Found>, ServiceError> {
        let Some(value) = ctx.url.as_ref().and_then(|u| query::param(u, "_gl")) else {
            return Ok(None);
        };
        let language = ga::linker::primary_language(&ctx.accept_language);
        let linked = match ga::linker::read(&value, &ctx.user_agent, language, now) {
            Ok(l) => l,
            Err(e) => {
                let reason = match e {
                    ga::linker::LinkerError::Checksum => Rejection::FingerprintMismatch,
                    _ => Rejection::Malformed,
                };
                rejected.push(Rejected::new(Method::GaLinker, reason, e.to_string()));
                return Ok(None);
            }
        };
        let identity = ga_identity(linked.client_id, linked.session);
        let (identity, record) = self.with_record(identity, now).await?;
        Ok(Some(Found {
            identity,
            method: Method::GaLinker,
            confidence: 0.8,
            record,
            consent: Consent::Granted,
        }))
    }

    /// GA4's own cookies: `_ga` gives the client id; the freshest valid
    /// `_ga_<container>` gives the session, continued when its last hit is
    /// within the inactivity timeout (the touch that follows decides).
    async fn ga_evidence(
        &self,
        ctx: &RequestContext,
        now: i64,
        rejected: &mut Vec<Rejected>,
    ) -> Result<Option<Found>, ServiceError> {
        let mut client = None;
        for v in cookie::values_named(&ctx.cookie_header, "_ga") {
            match ga::parse_client_id(v, now) {
                Ok(id) => {
                    client = Some(id);
                    break;
                }
                Err(e) => rejected.push(Rejected::new(
                    Method::GaCookie,
                    Rejection::Malformed,
                    format!("_ga: {e}"),
                )),
            }
        }
        let Some(client_id) = client else {
            return Ok(None);
        };
        let mut session: Option<ga::GaSession> = None;
        for (name, value) in cookie::pairs(&ctx.cookie_header) {
            if !ga::is_session_cookie(name) {
                continue;
            }
            match ga::parse_session(value, now) {
                Ok(s) if session.is_none_or(|b| s.last_hit > b.last_hit) => session = Some(s),
                Ok(_) => {}
                Err(e) => rejected.push(Rejected::new(
                    Method::GaCookie,
                    Rejection::Malformed,
                    format!("{name}: {e}"),
                )),
            }
        }
        let identity = ga_identity(client_id, session);
        let (identity, record) = self.with_record(identity, now).await?;
        Ok(Some(Found {
            identity,
            method: Method::GaCookie,
            confidence: 0.9,
            record,
            consent: Consent::Granted,
        }))
    }

    /// RecordHandoff: resolve the visitor here, seal a token for the
    /// destination, decorate the destination URL, and record the hand-off
    /// for the referrer bridge.
    pub async fn handoff(&self, input: HandoffInput) -> Result<Handoff, ServiceError> {
        let s = &self.settings;
        let mut bad = Vec::new();
        let ttl = match input.ttl_secs {
            0 => s.handoff_default_ttl_secs,
            t if t > s.handoff_max_ttl_secs => {
                bad.push(FieldViolation::new(
                    "ttl_seconds",
                    format!(
                        "must be at most {} (handoff_max_ttl_secs)",
                        s.handoff_max_ttl_secs
                    ),
                ));
                0
            }
            t => t,
        };
        let max_uses = match input.max_uses {
            0 => 1,
            u if u > s.handoff_max_uses => {
                bad.push(FieldViolation::new(
                    "max_uses",
                    format!("must be at most {} (handoff_max_uses)", s.handoff_max_uses),
                ));
                0
            }
            u => u,
        };
        let dest_host = input
            .destination
            .host_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut audience_hosts = vec![dest_host];
        if input.extra_audience.len() >= token::MAX_AUDIENCE {
            bad.push(FieldViolation::new(
                "extra_audience",
                format!("at most {} hosts", token::MAX_AUDIENCE - 1),
            ));
        }
        for (i, h) in input.extra_audience.iter().enumerate() {
            match crate::context::parse_host(h) {
                Ok((host, _)) if h.len() <= 253 => {
                    if !audience_hosts.contains(&host) {
                        audience_hosts.push(host);
                    }
                }
                _ => bad.push(FieldViolation::new(
                    format!("extra_audience[{i}]"),
                    "is not a host name",
                )),
            }
        }
        if input
            .ga_linker_tz
            .is_some_and(|tz| !(-840..=720).contains(&tz))
        {
            bad.push(FieldViolation::new(
                "ga_linker_timezone_offset",
                "must be a time-zone offset in minutes, -840 to 720",
            ));
        }
        if !bad.is_empty() {
            return Err(ServiceError::Invalid(bad));
        }
        audience_hosts.truncate(token::MAX_AUDIENCE);

        let ctx = input.ctx.clone();
        let source = self.resolve(ResolveInput::page_view(input.ctx)).await?;
        let now = source.identity.last_seen;
        let expires_at = now + i64::from(ttl);
        let consent = if source.method == Method::NoConsent {
            Consent::Denied
        } else {
            Consent::Granted
        };
        let claims = Claims {
            token_id: token::new_token_id(),
            identity: source.identity.clone(),
            issued_at: now,
            expires_at,
            max_uses: max_uses as u8,
            consent,
            user_agent: input
                .bind_user_agent
                .then(|| token::short_hash(&self.keys, "ua", &ctx.user_agent)),
            audience: audience_hosts
                .iter()
                .map(|h| token::short_hash(&self.keys, "host", h))
                .collect(),
        };
        let sealed = token::seal(&self.keys, &claims);
        let mut decorated = query::with(&input.destination, &s.handoff_param, &sealed);
        if let (Some(tz), Consent::Granted) = (input.ga_linker_tz, consent) {
            let language = ga::linker::primary_language(&ctx.accept_language);
            let gl = ga::linker::write(
                &source.identity.client_id,
                &ctx.user_agent,
                tz,
                language,
                now,
            );
            decorated = query::with(&decorated, "_gl", &gl);
        }

        if consent == Consent::Granted && s.bridge_window_secs > 0 && !ctx.user_agent.is_empty() {
            let source_site = site_of(&ctx.host);
            let mut dest_sites: Vec<String> = audience_hosts.iter().map(|h| site_of(h)).collect();
            dest_sites.dedup();
            for dest in dest_sites.iter().filter(|d| **d != source_site) {
                let entry = BridgeEntry {
                    identity: source.identity.clone(),
                    destinations: vec![dest.clone()],
                    created_at: now,
                    with_network: ctx.client_ip.is_some(),
                };
                let key = self.bridge_key(&source_site, dest, &ctx);
                self.store
                    .put_bridge(key, &entry, now + i64::from(s.bridge_window_secs))
                    .await?;
            }
        }
        Ok(Handoff {
            token: sealed,
            decorated_url: decorated.into(),
            expires_at,
            source,
        })
    }

    /// The identity most recently linked to the request's user (a login on
    /// another domain sharing this store).
    async fn user_evidence(
        &self,
        user: &UserInput,
        now: i64,
    ) -> Result<Option<Found>, ServiceError> {
        for key in &user.keys {
            for entry in self.store.lookup_user(*key, now).await? {
                if let Some(record) = self.store.get_client(entry.client_id, now).await? {
                    return Ok(Some(Found {
                        identity: record.identity.clone(),
                        method: Method::UserId,
                        confidence: 1.0,
                        record: Some(record),
                        consent: Consent::Granted,
                    }));
                }
            }
        }
        Ok(None)
    }

    fn cookies(
        &self,
        scope: &CookieScope,
        identity: &Identity,
        ga: Option<bool>,
    ) -> Vec<SetCookie> {
        let value = cookie::seal_identity(&self.keys, scope, &self.settings.cookie_name, identity);
        let ttl = self.settings.identity_ttl_secs;
        let mut out = vec![SetCookie::new(
            &self.settings.cookie_name,
            value,
            scope,
            ttl,
            true,
        )];
        if ga.unwrap_or(self.settings.ga_cookie) {
            // Not HttpOnly: gtag.js must read it.
            out.push(SetCookie::new(
                "_ga",
                cookie::ga_cookie_value(scope, &identity.client_id),
                scope,
                ttl,
                false,
            ));
        }
        out
    }

    /// LookupByUser: the user's recent identities, newest first.
    pub async fn lookup(&self, key: UserKey, limit: usize) -> Result<Vec<Identity>, ServiceError> {
        let now = now_unix();
        let limit = if limit == 0 {
            self.settings.user_history
        } else {
            limit.min(self.settings.user_history)
        };
        let mut out = Vec::new();
        for entry in self.store.lookup_user(key, now).await? {
            if out.len() == limit {
                break;
            }
            if let Some(r) = self.store.get_client(entry.client_id, now).await? {
                out.push(r.identity);
            }
        }
        if out.is_empty() {
            return Err(ServiceError::NotFound(
                "no identity is linked to this user".into(),
            ));
        }
        Ok(out)
    }

    /// ForgetUser: erase the user's index and every identity it lists.
    pub async fn forget(&self, key: UserKey) -> Result<Erased, ServiceError> {
        Ok(self.store.forget_user(key).await?)
    }
}

/// An identity from GA4's ids: the session when one was given (the touch
/// that follows continues or renews it), else a client whose first session
/// starts with this hit.
fn ga_identity(client_id: ClientId, session: Option<ga::GaSession>) -> Identity {
    match session {
        Some(s) => Identity {
            client_id,
            session_id: s.session_id,
            session_number: s.session_number,
            user_id: None,
            last_seen: s.last_hit,
        },
        None => Identity {
            client_id,
            session_id: 0,
            session_number: 0,
            user_id: None,
            last_seen: i64::MIN / 2,
        },
    }
}

/// The registrable domain of a host (public suffix list), or the host.
fn site_of(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    psl::domain_str(&host).map(str::to_string).unwrap_or(host)
}

/// The client's network, coarse enough not to identify a person: /24 for
/// IPv4, /48 for IPv6. Only ever hashed.
fn network_prefix(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

fn token_detail(reason: Rejection) -> &'static str {
    match reason {
        Rejection::Malformed => "hand-off token is not in the expected format",
        Rejection::BadSeal => "hand-off token does not open: forged, edited or truncated",
        Rejection::UnknownKey => "hand-off token was sealed with a key this service does not hold",
        _ => "hand-off token rejected",
    }
}

fn cookie_detail(reason: crate::identity::Rejection) -> &'static str {
    use crate::identity::Rejection::*;
    match reason {
        Malformed => "identity cookie is not in the expected format",
        BadSeal => {
            "identity cookie signature does not verify for this domain (forged, edited or copied)"
        }
        UnknownKey => "identity cookie was signed with a key this service does not hold",
        _ => "identity cookie rejected",
    }
}
