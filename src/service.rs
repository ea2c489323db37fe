//! The application core: takes checked requests, applies the identity rules
//! in precedence order, persists through the store contract, and says which
//! cookies to set. It knows neither gRPC nor the storage engine.

use std::sync::Arc;

use crate::context::{FieldViolation, RequestContext};
use crate::cookie::{self, AllowedDomains, CookieScope, SetCookie};
use crate::identity::{
    ClientId, Consent, Identity, Method, Rejected, SessionPolicy, MINT_ONLY, PRECEDENCE,
};
use crate::keys::Keyring;
use crate::privacy::{self, UserKey, UserRef};
use crate::store::{ClientRecord, ClientWrite, Erased, Store, StoreError};

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

/// The settings the core needs, taken from the configuration once.
#[derive(Clone, Debug)]
pub struct Settings {
    pub policy: SessionPolicy,
    pub allowed: AllowedDomains,
    pub cookie_name: String,
    pub identity_ttl_secs: i64,
    pub ga_cookie: bool,
    pub default_consent: Consent,
    pub user_history: usize,
}

impl Settings {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Self {
            policy: SessionPolicy {
                timeout_secs: cfg.session_timeout_secs as i64,
            },
            allowed: AllowedDomains::new(cfg.allowed_domains.clone())
                .expect("checked with the config"),
            cookie_name: cfg.cookie_name.clone(),
            identity_ttl_secs: cfg.identity_ttl_secs(),
            ga_cookie: cfg.ga_cookie,
            default_consent: cfg.default_consent,
            user_history: cfg.user_history,
        }
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
        if input.ctx.consent == Consent::Denied {
            return Ok(self.without_consent(&input.ctx, &scope, now));
        }

        let mut rejected = Vec::new();
        let mut found = None;
        for &source in sources {
            found = match source {
                Method::Cookie => self.cookie_evidence(&input.ctx, now, &mut rejected).await?,
                Method::UserId => self.user_evidence(&input.user, now).await?,
                // Sources that are not wired into this build yield nothing.
                _ => None,
            };
            if found.is_some() {
                break;
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
        let new_session = new_client || self.settings.policy.touch(&mut identity, now);

        let mut user_keys = record.map(|r| r.user_keys).unwrap_or_default();
        if let Some(uid) = &input.user.user_id {
            identity.user_id = Some(uid.clone());
        }
        for k in &input.user.keys {
            if !user_keys.contains(k) {
                user_keys.push(*k);
            }
        }
        let record = ClientRecord {
            identity,
            user_keys,
        };
        self.store
            .put_client(ClientWrite {
                record: &record,
                link: &input.user.keys,
                expires_at: now + self.settings.identity_ttl_secs,
                history: self.settings.user_history,
            })
            .await?;
        let identity = record.identity;
        let cookies = self.cookies(&scope, &identity, input.ga_cookie);
        Ok(Resolution {
            identity,
            method,
            confidence,
            new_session,
            new_client,
            cookies,
            rejected,
            clean_url: None,
            persisted: true,
        })
    }

    /// Consent denied: an identity for this response only, nothing stored,
    /// and any identity cookie the browser holds deleted.
    fn without_consent(&self, ctx: &RequestContext, scope: &CookieScope, now: i64) -> Resolution {
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
            clean_url: None,
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
        }))
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
