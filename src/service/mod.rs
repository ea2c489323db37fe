//! The application core: takes checked requests, has the evidence modules
//! read them in precedence order, persists through the store contract, and
//! says which cookies to set. It knows neither gRPC nor the storage engine,
//! nor how any one kind of evidence is read (that is [`crate::evidence`]).

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::context::{FieldViolation, RequestContext};
use crate::cookie::{CookieScope, SetCookie};
use crate::evidence::{self, own_cookie, Cx, Found};
use crate::identity::{
    ClientId, Consent, ConsentMode, Identity, Method, Rejected, Rejection, MINT_ONLY, PRECEDENCE,
};
use crate::keys::Keyring;
use crate::privacy::{self, UserKey, UserRef};
use crate::query;
use crate::request::Parsed;
pub use crate::settings::Settings;
use crate::store::{ClientRecord, ClientWrite, Erased, Put, Store, StoreError, ERASED_DETAIL};

pub use crate::handoff::{Handoff, HandoffInput};

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
    pub(crate) fn field(field: &str, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

/// The user a request names, already checked and hashed.
#[derive(Debug, Default, Clone)]
pub struct UserInput {
    pub user_id: Option<String>,
    /// Index keys for the user id and the email, whichever were given.
    pub keys: Vec<UserKey>,
    /// The email's key among `keys`, if an email was given.
    pub email_key: Option<UserKey>,
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

/// The answer to a ResolveSession (or MintCookie) call.
#[derive(Debug)]
pub struct Resolution {
    pub identity: Identity,
    pub method: Method,
    pub confidence: f64,
    pub new_session: bool,
    pub new_client: bool,
    pub cookies: Vec<SetCookie>,
    pub rejected: Vec<Rejected>,
    pub clean_url: Option<String>,
    pub persisted: bool,
    /// The consent in force for the request.
    pub consent: ConsentMode,
    /// No login may link this client (see `ClientRecord::adopted`); a
    /// token sealed for it says so.
    pub adopted: bool,
}

/// The core service, generic over its store.
pub struct Service<S> {
    pub(crate) store: S,
    pub(crate) keys: Arc<Keyring>,
    pub(crate) settings: Settings,
    pub(crate) clock: SharedClock,
}

/// Current unix time in seconds from the system clock.
pub fn now_unix() -> i64 {
    crate::clock::system_now()
}

impl<S: Store> Service<S> {
    /// A service on the system clock.
    pub fn new(store: S, keys: Arc<Keyring>, settings: Settings) -> Self {
        Self::with_clock(store, keys, settings, crate::clock::system())
    }

    /// A service reading time from `clock`.
    pub fn with_clock(
        store: S,
        keys: Arc<Keyring>,
        settings: Settings,
        clock: SharedClock,
    ) -> Self {
        Self {
            store,
            keys,
            settings,
            clock,
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

    /// The time as this service sees it.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub(crate) fn cx(&self, now: i64) -> Cx<'_, S> {
        Cx {
            store: &self.store,
            keys: &self.keys,
            settings: &self.settings,
            now,
        }
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
                Ok(e) => {
                    let key = privacy::user_key(&self.keys, UserRef::Email(&e));
                    out.keys.push(key);
                    out.email_key = Some(key);
                }
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

    pub(crate) fn scope(&self, ctx: &RequestContext) -> Result<CookieScope, ServiceError> {
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
        let req = Parsed::new(&input.ctx);
        self.resolve_parsed(&req, &input, PRECEDENCE, self.now())
            .await
    }

    /// MintCookie: the own cookie, refreshed, or a new identity.
    pub async fn mint(&self, input: ResolveInput) -> Result<Resolution, ServiceError> {
        let req = Parsed::new(&input.ctx);
        self.resolve_parsed(&req, &input, MINT_ONLY, self.now())
            .await
    }

    /// Resolves an already parsed request at time `now`.
    pub(crate) async fn resolve_parsed(
        &self,
        req: &Parsed<'_>,
        input: &ResolveInput,
        sources: &[Method],
        now: i64,
    ) -> Result<Resolution, ServiceError> {
        let ctx = req.ctx;
        let scope = self.scope(ctx)?;
        let clean_url = self.clean_url(ctx);
        if ctx.consent == Consent::Denied {
            // A passive call mints nothing, not even an ephemeral identity.
            if input.passive {
                return Err(no_consent_passive());
            }
            return Ok(self.without_consent(req, &scope, now, clean_url));
        }

        let mut rejected = ctx.ignored.clone();
        let cx = self.cx(now);
        let found = evidence::first(
            &cx,
            &evidence::Input {
                req,
                user: &input.user,
                handoff_token: input.handoff_token.as_deref(),
                passive: input.passive,
            },
            sources,
            &mut rejected,
        )
        .await?;
        let found = self.unless_erased(found, &mut rejected, now).await?;
        // The consent in force: what this request states, else what a token
        // carried from the source site, else the configured default; then
        // Global Privacy Control.
        let carried = found.as_ref().and_then(|f| f.consent);
        let consent = ctx.defaults.in_force(&ctx.stated, carried);
        // A token sealed where the visitor refused consent: unless this
        // request states consent itself, the destination must not identify.
        if let Some(f) = &found {
            if consent.analytics == Consent::Denied {
                if input.passive {
                    return Err(no_consent_passive());
                }
                rejected.push(Rejected::new(
                    f.method,
                    Rejection::NoConsent,
                    "the source site recorded that the visitor refused consent",
                ));
                let mut r = self.without_consent(req, &scope, now, clean_url);
                r.rejected = rejected;
                return Ok(r);
            }
        }

        if input.passive {
            return self.passive_answer(found, rejected, clean_url, consent);
        }
        if found
            .as_ref()
            .is_none_or(|f| f.method != Method::HandoffToken)
        {
            evidence::token::drop_unused(&cx, req).await?;
        }
        let mut link = !input.user.keys.is_empty();
        let found = match found {
            // Own cookies that disagree: no login is linked on this
            // request (one of them may have been planted).
            Some(f) if f.conflict && link => {
                rejected.push(Rejected::new(
                    f.method,
                    Rejection::Conflict,
                    "own cookies name different visitors: the login is not linked on this request",
                ));
                link = false;
                Some(f)
            }
            // A login never re-links a client that forgeable evidence
            // named, or that another user's login owns: the visitor moves
            // to a fresh client id.
            Some(f) if link && self.login_must_move(&f, &input.user) => {
                rejected.push(Rejected::new(
                    f.method,
                    Rejection::NotAllowed,
                    "a login on a client named by forgeable evidence or owned by another user starts a fresh client id",
                ));
                None
            }
            other => other,
        };
        let (mut identity, method, confidence, record, new_client, adopt) = match found {
            Some(Found {
                identity,
                method,
                confidence,
                record,
                adopt,
                ..
            }) => (identity, method, confidence, record, false, adopt),
            None => {
                let id = self
                    .settings
                    .policy
                    .new_identity(ClientId::generate(now), now);
                // The new identity's session starts now: no touch needed.
                (id, Method::New, 0.0, None, true, false)
            }
        };
        // Whether forgeable evidence ever named this client (or a link
        // brought it with no login): a later login on it moves to a fresh
        // client id, even through the own cookie.
        let adopted = record.as_ref().is_some_and(|r| r.adopted)
            || adopt
            || evidence::trust(method) == evidence::Trust::Forgeable && !new_client;
        let new_session = new_client || self.settings.policy.touch(&mut identity, now);
        // Time from the visitor never runs ahead of the server's clock.
        identity.last_seen = identity.last_seen.min(now);
        let link_keys: &[UserKey] = if link { &input.user.keys } else { &[] };

        if link {
            if let Some(uid) = &input.user.user_id {
                identity.user_id = Some(uid.clone());
            }
        }
        // A record still on its first-visit lifetime is rewritten on the
        // visitor's next hit (the one that comes back with the cookie), for
        // the full lifetime: one write, after which hits are fresh again.
        let fresh = record.as_ref().is_some_and(|stored| {
            link_keys.is_empty()
                && stored.adopted == adopted
                && !stored.first_visit
                && self.only_touched(&stored.identity, &identity)
        });
        let first_contact = record.is_none();
        let mut user_keys = record.map(|r| r.user_keys).unwrap_or_default();
        for k in link_keys {
            if !user_keys.contains(k) {
                user_keys.push(*k);
            }
        }
        // A first visit that brings no evidence but what anyone can write
        // (none at all, a GA id, the referrer bridge, a raw session
        // parameter) is kept for a short time: its record holds nothing the
        // cookie does not but the `adopted` mark, so if the visitor never
        // comes back (a bot, a browser that refuses cookies) it goes, and if
        // they do, the cookie names them again either way. A made-up `_ga`
        // on every request then grows the store no more than no cookie at
        // all; the second hit, with the own cookie, keeps the record (and
        // its mark) for the full lifetime.
        let first_visit = first_contact
            && method != Method::NoConsent
            && evidence::trust(method) == evidence::Trust::Forgeable
            && user_keys.is_empty()
            && identity.user_id.is_none();
        let record = ClientRecord {
            identity,
            user_keys,
            adopted,
            first_visit,
        };
        // Most page views change nothing but the time of the last hit, which
        // the refreshed cookie carries exactly; the stored copy is rewritten
        // once it is `touch_write_secs` old.
        if !fresh {
            let ttl = if first_visit {
                self.settings.first_visit_ttl_secs
            } else {
                self.settings.identity_ttl_secs
            };
            let put = self
                .store
                .put_client(ClientWrite {
                    record: &record,
                    link: link_keys,
                    expires_at: now + ttl,
                    history: self.settings.user_history,
                })
                .await?;
            if put == Put::Erased {
                // Erased between the read and this write (a concurrent
                // ForgetUser): not stored again; the visitor starts over.
                rejected.push(Rejected::new(method, Rejection::NotFound, ERASED_DETAIL));
                let mut r = Box::pin(self.resolve_parsed(req, input, &[], now)).await?;
                r.rejected = rejected;
                return Ok(r);
            }
        }
        let identity = record.identity;
        let cookies = self.cookies(&scope, &identity, input.ga_cookie, req);
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
            consent,
            adopted,
        })
    }

    /// Whether a login must not link the client `f` names: forgeable
    /// evidence named it (now or ever), or another user's login owns it.
    fn login_must_move(&self, f: &Found, user: &UserInput) -> bool {
        if f.adopt || evidence::trust(f.method) == evidence::Trust::Forgeable {
            return true;
        }
        f.record.as_ref().is_some_and(|r| {
            r.adopted
                || (!r.user_keys.is_empty() && !r.user_keys.iter().any(|k| user.keys.contains(k)))
        })
    }

    /// Evidence that names an erased client (an own cookie or GA cookie
    /// the browser still holds) counts as none while its tombstone lives:
    /// the client is not stored again. Readers of tokens and bridge entries
    /// check on their own; a client with a stored record is not erased.
    async fn unless_erased(
        &self,
        found: Option<Found>,
        rejected: &mut Vec<Rejected>,
        now: i64,
    ) -> Result<Option<Found>, ServiceError> {
        let Some(f) = found else { return Ok(None) };
        if f.record.is_some() || !self.store.is_erased(f.identity.client_id, now).await? {
            return Ok(Some(f));
        }
        rejected.push(Rejected::new(f.method, Rejection::NotFound, ERASED_DETAIL));
        Ok(None)
    }

    /// A passive call (a webhook, a retry): the identity the evidence names,
    /// as stored, as often as asked. Nothing is minted, written, spent or
    /// started; no cookie is set. Without usable evidence: NOT_FOUND.
    fn passive_answer(
        &self,
        found: Option<Found>,
        rejected: Vec<Rejected>,
        clean_url: Option<String>,
        consent: ConsentMode,
    ) -> Result<Resolution, ServiceError> {
        let Some(f) = found else {
            let why: Vec<String> = rejected
                .iter()
                .map(|r| format!("{:?}: {}", r.reason, r.detail))
                .collect();
            return Err(ServiceError::NotFound(if why.is_empty() {
                "a passive call needs a hand-off token, an own cookie or a user id".into()
            } else {
                format!("no usable evidence names a visitor ({})", why.join("; "))
            }));
        };
        Ok(Resolution {
            identity: f.identity,
            method: f.method,
            confidence: f.confidence,
            new_session: false,
            new_client: false,
            cookies: Vec::new(),
            rejected,
            clean_url,
            persisted: f.record.is_some(),
            adopted: f.adopt || f.record.as_ref().is_some_and(|r| r.adopted),
            consent,
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

    /// The request URL without the parameters that carry evidence, when it
    /// had any (each kind of evidence names its own).
    fn clean_url(&self, ctx: &RequestContext) -> Option<String> {
        let url = ctx.url.as_ref()?;
        url.query()?;
        query::without(url, &evidence::url_params(&self.settings)).map(String::from)
    }

    /// Consent denied: an identity for this response only, nothing stored,
    /// and any identity cookie the browser holds deleted.
    fn without_consent(
        &self,
        req: &Parsed<'_>,
        scope: &CookieScope,
        now: i64,
        clean_url: Option<String>,
    ) -> Resolution {
        let identity = self
            .settings
            .policy
            .new_identity(ClientId::generate(now), now);
        let cookies = own_cookie::delete(&self.settings, scope, req);
        Resolution {
            identity,
            method: Method::NoConsent,
            confidence: 0.0,
            new_session: true,
            new_client: true,
            cookies,
            rejected: req.ctx.ignored.clone(),
            clean_url,
            persisted: false,
            consent: ConsentMode {
                analytics: Consent::Denied,
                ..req.ctx.defaults.in_force(&req.ctx.stated, None)
            },
            adopted: false,
        }
    }

    fn cookies(
        &self,
        scope: &CookieScope,
        identity: &Identity,
        ga: Option<bool>,
        req: &Parsed<'_>,
    ) -> Vec<SetCookie> {
        let mut out = own_cookie::write(&self.keys, &self.settings, scope, identity, req);
        if ga.unwrap_or(self.settings.ga_cookie) {
            out.push(evidence::ga_cookie::write(
                scope,
                identity,
                self.settings.identity_ttl_secs,
            ));
        }
        out
    }

    /// LookupByUser: the user's recent identities, newest first.
    pub async fn lookup(&self, key: UserKey, limit: usize) -> Result<Vec<Identity>, ServiceError> {
        let now = self.now();
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

    /// ForgetUser: erase every identity ever linked to the user (not only
    /// those its index still lists), each leaving a tombstone for
    /// [`Settings::tombstone_secs`].
    pub async fn forget(&self, key: UserKey) -> Result<Erased, ServiceError> {
        let now = self.now();
        let until = now + self.settings.tombstone_secs();
        Ok(self.store.forget_user(key, now, until).await?)
    }

    /// ForgetVisitor: erase the identity the request's own cookie names,
    /// verified (never a bare client id, which is not a secret), and say
    /// which cookies to delete. Without a valid own cookie: NOT_FOUND.
    pub async fn forget_visitor(
        &self,
        ctx: &RequestContext,
    ) -> Result<(Erased, Vec<SetCookie>), ServiceError> {
        let now = self.now();
        let scope = self.scope(ctx)?;
        let req = Parsed::new(ctx);
        let mut rejected = Vec::new();
        let Some(found) = own_cookie::read(&self.cx(now), &req, &mut rejected).await? else {
            return Err(ServiceError::NotFound(
                "no valid own cookie in the request: a visitor is erased only through the \
                 cookie this service set"
                    .into(),
            ));
        };
        let id = found.identity.client_id;
        let until = now + self.settings.tombstone_secs();
        let erased = self.store.forget_client(id, now, until).await?;
        let mut cookies = own_cookie::delete(&self.settings, &scope, &req);
        // A `_ga` cookie naming the same client goes too.
        let same_ga = req
            .cookies_named(evidence::ga_cookie::NAME)
            .any(|v| crate::ga::parse_client_id(v, now).is_ok_and(|c| c == id));
        if same_ga {
            cookies.push(SetCookie::new(
                evidence::ga_cookie::NAME,
                String::new(),
                &scope,
                0,
                false,
            ));
        }
        Ok((erased, cookies))
    }

    /// Removes expired records (the sweeper calls it on the service's
    /// clock).
    pub async fn sweep(&self) -> Result<usize, ServiceError> {
        Ok(self.store.sweep(self.now()).await?)
    }
}

/// A passive call about a visitor whose analytics consent is denied: there
/// is no identity to report, and none is minted.
fn no_consent_passive() -> ServiceError {
    ServiceError::NotFound(
        "analytics consent is denied for this visitor: a passive call reports no identity".into(),
    )
}

#[cfg(test)]
mod tests;
