//! The gRPC handlers: proto messages in, domain calls, proto messages out,
//! and every error turned into a status a caller can act on.

use std::sync::Arc;

use tonic::{Code, Request, Response, Status};

use crate::context::{FieldViolation, RawContext};
use crate::cookie::SetCookie;
use crate::identity::{
    Consent, ConsentMode, Identity, Method, Rejected, Rejection, Source, StatedConsent,
};
use crate::pb;
use crate::privacy::{self, UserRef};
use crate::service::{HandoffInput, Resolution, ResolveInput, Service, ServiceError};

/// Longest destination URL RecordHandoff accepts.
const MAX_DESTINATION_LEN: usize = 2048;
/// Longest `handoff_token` accepted; real tokens are at most 200.
const MAX_TOKEN_FIELD_LEN: usize = 512;
use crate::store::Store;

pub use crate::errors::invalid_argument;

fn violations(v: Vec<FieldViolation>) -> Status {
    invalid_argument(v.into_iter().map(|v| (v.field, v.description)).collect())
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(v) => violations(v),
            ServiceError::NotFound(what) => crate::errors::status(
                Code::NotFound,
                crate::errors::reason::NOT_FOUND,
                what,
                tonic_types::ErrorDetails::new(),
            ),
            ServiceError::Store(e) => crate::errors::store_unavailable(&e),
        }
    }
}

/// The SessionBridgeService implementation.
pub struct Api<S> {
    service: Arc<Service<S>>,
}

impl<S> Api<S> {
    pub fn new(service: Arc<Service<S>>) -> Self {
        Self { service }
    }
}

fn consent_state(field: &str, value: i32) -> Result<Option<Consent>, FieldViolation> {
    match pb::ConsentState::try_from(value) {
        Ok(pb::ConsentState::Unspecified) => Ok(None),
        Ok(pb::ConsentState::Granted) => Ok(Some(Consent::Granted)),
        Ok(pb::ConsentState::Denied) => Ok(Some(Consent::Denied)),
        Err(_) => Err(FieldViolation::new(
            format!("context.consent.{field}"),
            format!("unknown value {value}: use CONSENT_STATE_GRANTED or CONSENT_STATE_DENIED"),
        )),
    }
}

/// The consent signals a request states (every unknown value reported).
fn stated_consent(
    c: Option<&pb::Consent>,
    gpc: bool,
) -> Result<StatedConsent, Vec<FieldViolation>> {
    let c = c.cloned().unwrap_or_default();
    let mut bad = Vec::new();
    let mut get = |field: &str, v: i32| {
        consent_state(field, v).unwrap_or_else(|e| {
            bad.push(e);
            None
        })
    };
    let stated = StatedConsent {
        analytics: get("analytics_storage", c.analytics_storage),
        ad_storage: get("ad_storage", c.ad_storage),
        ad_user_data: get("ad_user_data", c.ad_user_data),
        ad_personalization: get("ad_personalization", c.ad_personalization),
        global_privacy_control: gpc,
    };
    if bad.is_empty() {
        Ok(stated)
    } else {
        Err(bad)
    }
}

fn consent_message(m: &ConsentMode) -> pb::Consent {
    let s = |c: Consent| match c {
        Consent::Granted => pb::ConsentState::Granted,
        Consent::Denied => pb::ConsentState::Denied,
    } as i32;
    pb::Consent {
        analytics_storage: s(m.analytics),
        ad_storage: s(m.ad_storage),
        ad_user_data: s(m.ad_user_data),
        ad_personalization: s(m.ad_personalization),
    }
}

impl<S: Store> Api<S> {
    /// Checks the request context; `extra` holds violations already found in
    /// the other fields, so all are reported together.
    fn context(
        &self,
        ctx: Option<&pb::RequestContext>,
        mut extra: Vec<FieldViolation>,
    ) -> Result<crate::context::RequestContext, Status> {
        let Some(ctx) = ctx else {
            extra.insert(
                0,
                FieldViolation::new(
                    "context",
                    "is required: pass what you know about the HTTP request",
                ),
            );
            return Err(violations(extra));
        };
        let consent =
            stated_consent(ctx.consent.as_ref(), ctx.global_privacy_control).map_err(|v| {
                extra.extend(v);
                violations(std::mem::take(&mut extra))
            })?;
        let raw = RawContext {
            host: &ctx.host,
            url: &ctx.url,
            scheme: &ctx.scheme,
            referer: &ctx.referer,
            user_agent: &ctx.user_agent,
            cookie_header: &ctx.cookie_header,
            client_ip: &ctx.client_ip,
            accept_language: &ctx.accept_language,
            consent,
        };
        let settings = self.service.settings();
        let defaults = crate::context::ConsentDefaults {
            default: settings.default_consent,
            gpc_denies_analytics: settings.gpc_denies_analytics,
        };
        match raw.check_with("context.", defaults) {
            Ok(c) if extra.is_empty() => Ok(c),
            Ok(_) => Err(violations(extra)),
            Err(mut v) => {
                v.extend(extra);
                Err(violations(v))
            }
        }
    }

    fn user_key(&self, user: Option<&UserOneof<'_>>) -> Result<crate::privacy::UserKey, Status> {
        let keys = self.service.keys();
        match user {
            None => Err(invalid_argument(vec![(
                "user".into(),
                "set exactly one of user_id or email".into(),
            )])),
            Some(UserOneof::UserId(id)) => {
                if id.is_empty() {
                    return Err(invalid_argument(vec![(
                        "user_id".into(),
                        "must not be empty".into(),
                    )]));
                }
                privacy::check_user_id(id)
                    .map_err(|e| invalid_argument(vec![("user_id".into(), e.to_string())]))?;
                Ok(privacy::user_key(keys, UserRef::UserId(id)))
            }
            Some(UserOneof::Email(email)) => {
                let e = privacy::normalize_email(email)
                    .map_err(|e| invalid_argument(vec![("email".into(), e.to_string())]))?;
                Ok(privacy::user_key(keys, UserRef::Email(&e)))
            }
        }
    }
}

impl<S: Store> Api<S> {
    fn source_label(&self, ctx: &crate::context::RequestContext) -> String {
        crate::metrics::source_label(
            &self.service.settings().allowed,
            &ctx.host,
            ctx.referer.as_ref().and_then(|r| r.host_str()),
        )
    }
}

enum UserOneof<'a> {
    UserId(&'a str),
    Email(&'a str),
}

fn identity(i: &Identity) -> pb::Identity {
    pb::Identity {
        client_id: i.client_id.to_string(),
        session_id: i.session_id,
        session_number: i.session_number,
        user_id: i.user_id.clone().unwrap_or_default(),
        first_seen_unix_seconds: i.first_seen(),
        last_seen_unix_seconds: i.last_seen,
    }
}

fn method(m: Method) -> pb::ResolutionMethod {
    use pb::ResolutionMethod as P;
    match m {
        Method::Cookie => P::Cookie,
        Method::HandoffToken => P::HandoffToken,
        Method::UserId => P::UserId,
        Method::Email => P::Email,
        Method::ReferrerBridge => P::ReferrerBridge,
        Method::SessionIdParameter => P::SessionIdParameter,
        Method::GaCookie => P::GaCookie,
        Method::GaLinker => P::GaLinker,
        Method::New => P::New,
        Method::NoConsent => P::NoConsent,
    }
}

fn rejection(r: Rejection) -> pb::RejectionReason {
    use pb::RejectionReason as P;
    match r {
        Rejection::Malformed => P::Malformed,
        Rejection::BadSeal => P::BadSeal,
        Rejection::UnknownKey => P::UnknownKey,
        Rejection::Expired => P::Expired,
        Rejection::Replayed => P::Replayed,
        Rejection::WrongAudience => P::WrongAudience,
        Rejection::FingerprintMismatch => P::FingerprintMismatch,
        Rejection::NotFound => P::NotFound,
        Rejection::NotAllowed => P::NotAllowed,
        Rejection::NoConsent => P::NoConsent,
        Rejection::TooLarge => P::TooLarge,
        Rejection::LinkedToUser => P::LinkedToUser,
        Rejection::Conflict => P::Conflict,
        Rejection::FromTheFuture => P::FromTheFuture,
    }
}

/// The kind of evidence (or request field) a rejection is about.
fn evidence_kind(s: Source) -> pb::EvidenceKind {
    use pb::EvidenceKind as K;
    match s {
        Source::Evidence(m) => match m {
            Method::Cookie => K::OwnCookie,
            Method::HandoffToken => K::HandoffToken,
            Method::UserId => K::UserId,
            Method::Email => K::Email,
            Method::GaLinker => K::GaLinker,
            Method::GaCookie => K::GaCookie,
            Method::ReferrerBridge => K::ReferrerBridge,
            Method::SessionIdParameter => K::SessionIdParameter,
            Method::New | Method::NoConsent => K::Unspecified,
        },
        Source::Input(i) => match i {
            crate::identity::Input::Url => K::Url,
            crate::identity::Input::Referer => K::Referer,
            crate::identity::Input::UserAgent => K::UserAgent,
            crate::identity::Input::CookieHeader => K::CookieHeader,
            crate::identity::Input::AcceptLanguage => K::AcceptLanguage,
            crate::identity::Input::ClientIp => K::ClientIp,
        },
    }
}

fn rejected(r: &Rejected) -> pb::RejectedEvidence {
    let field = match r.source {
        Source::Evidence(_) => String::new(),
        Source::Input(i) => i.field().to_string(),
    };
    pb::RejectedEvidence {
        kind: evidence_kind(r.source) as i32,
        reason: rejection(r.reason) as i32,
        detail: r.detail.clone(),
        field,
    }
}

pub(crate) fn cookie(c: &SetCookie) -> pb::Cookie {
    pb::Cookie {
        name: c.name.clone(),
        value: c.value.clone(),
        domain: c.domain.clone().unwrap_or_default(),
        path: c.path.clone(),
        // Every cookie this service sets is persistent or a deletion.
        max_age_seconds: Some(c.max_age_secs),
        secure: c.secure,
        http_only: c.http_only,
        same_site: match c.same_site {
            cookie::SameSite::Lax => pb::SameSite::Lax,
            cookie::SameSite::Strict => pb::SameSite::Strict,
            cookie::SameSite::None => pb::SameSite::None,
        } as i32,
        set_cookie_header: c.header(),
    }
}

fn resolution(r: &Resolution) -> pb::ResolveSessionResponse {
    pb::ResolveSessionResponse {
        identity: Some(identity(&r.identity)),
        method: method(r.method) as i32,
        confidence: r.confidence,
        new_session: r.new_session,
        new_client: r.new_client,
        cookies: r.cookies.iter().map(cookie).collect(),
        rejected: r.rejected.iter().map(rejected).collect(),
        clean_url: r.clean_url.clone().unwrap_or_default(),
        persisted: r.persisted,
        consent: Some(consent_message(&r.consent)),
    }
}

/// The handlers proper; the trait implementation below wraps each with
/// its request id, log line and metrics.
impl<S: Store> Api<S> {
    async fn mint_cookie_inner(
        &self,
        request: Request<pb::MintCookieRequest>,
    ) -> Result<Response<pb::MintCookieResponse>, Status> {
        let req = request.into_inner();
        let ctx = self.context(req.context.as_ref(), vec![])?;
        let source = self.source_label(&ctx);
        let r = self
            .service
            .mint(ResolveInput {
                ga_cookie: req.ga_cookie,
                ..ResolveInput::page_view(ctx)
            })
            .await?;
        crate::metrics::resolution(r.method, source, &r.rejected);
        let full = resolution(&r);
        Ok(Response::new(pb::MintCookieResponse {
            identity: full.identity,
            method: full.method,
            cookies: full.cookies,
            new_session: full.new_session,
            rejected: full.rejected,
            confidence: full.confidence,
            new_client: full.new_client,
            persisted: full.persisted,
            consent: full.consent,
        }))
    }

    async fn record_handoff_inner(
        &self,
        request: Request<pb::RecordHandoffRequest>,
    ) -> Result<Response<pb::RecordHandoffResponse>, Status> {
        let req = request.into_inner();
        let mut bad = Vec::new();
        let destination = if req.destination_url.is_empty() {
            bad.push(FieldViolation::new(
                "destination_url",
                "is required: the URL the visitor is sent to",
            ));
            None
        } else if req.destination_url.len() > MAX_DESTINATION_LEN {
            bad.push(FieldViolation::new(
                "destination_url",
                format!("must be at most {MAX_DESTINATION_LEN} bytes"),
            ));
            None
        } else {
            match crate::context::parse_web_url(&req.destination_url) {
                Ok(u) => Some(u),
                Err(what) => {
                    bad.push(FieldViolation::new("destination_url", what));
                    None
                }
            }
        };
        let user = match self.service.user_input(&req.user_id, &req.email, "") {
            Ok(u) => u,
            Err(ServiceError::Invalid(v)) => {
                bad.extend(v);
                Default::default()
            }
            Err(e) => return Err(e.into()),
        };
        let ctx = self.context(req.context.as_ref(), bad)?;
        let destination = destination.expect("a bad destination is reported above");
        let h = self
            .service
            .handoff(HandoffInput {
                ctx,
                destination,
                extra_audience: req.extra_audience,
                ttl_secs: req.ttl_seconds,
                max_uses: req.max_uses,
                passive_ttl_secs: req.passive_ttl_seconds,
                bind_user_agent: req.bind_user_agent,
                ga_linker_tz: req.ga_linker_timezone_offset,
                ga_linker_client_time_ms: req.ga_linker_client_unix_millis,
                user,
            })
            .await?;
        let source = resolution(&h.source);
        Ok(Response::new(pb::RecordHandoffResponse {
            token: h.token,
            decorated_url: h.decorated_url,
            expires_at_unix_seconds: h.expires_at,
            passive_expires_at_unix_seconds: h.passive_expires_at,
            identity: source.identity,
            cookies: source.cookies,
            method: source.method,
            confidence: source.confidence,
            new_session: source.new_session,
            new_client: source.new_client,
            rejected: source.rejected,
        }))
    }

    async fn resolve_session_inner(
        &self,
        request: Request<pb::ResolveSessionRequest>,
    ) -> Result<Response<pb::ResolveSessionResponse>, Status> {
        let req = request.into_inner();
        let (user, mut bad) = match self.service.user_input(&req.user_id, &req.email, "") {
            Ok(u) => (u, vec![]),
            Err(ServiceError::Invalid(v)) => (Default::default(), v),
            Err(e) => return Err(e.into()),
        };
        if req.handoff_token.len() > MAX_TOKEN_FIELD_LEN
            || !req.handoff_token.bytes().all(|b| b.is_ascii_graphic())
        {
            bad.push(FieldViolation::new(
                "handoff_token",
                format!("must be at most {MAX_TOKEN_FIELD_LEN} printable ASCII characters"),
            ));
        }
        let ctx = self.context(req.context.as_ref(), bad)?;
        let source = self.source_label(&ctx);
        let r = self
            .service
            .resolve(ResolveInput {
                ctx,
                user,
                ga_cookie: req.ga_cookie,
                handoff_token: (!req.handoff_token.is_empty()).then_some(req.handoff_token),
                passive: req.passive,
            })
            .await?;
        crate::metrics::resolution(r.method, source, &r.rejected);
        Ok(Response::new(resolution(&r)))
    }

    async fn lookup_by_user_inner(
        &self,
        request: Request<pb::LookupByUserRequest>,
    ) -> Result<Response<pb::LookupByUserResponse>, Status> {
        use pb::lookup_by_user_request::User;
        let req = request.into_inner();
        let user = req.user.as_ref().map(|u| match u {
            User::UserId(id) => UserOneof::UserId(id),
            User::Email(e) => UserOneof::Email(e),
        });
        let key = self.user_key(user.as_ref())?;
        let found = self.service.lookup(key, req.limit as usize).await?;
        let recent: Vec<pb::Identity> = found.iter().map(identity).collect();
        Ok(Response::new(pb::LookupByUserResponse {
            identity: recent.first().cloned(),
            recent,
        }))
    }

    async fn forget_user_inner(
        &self,
        request: Request<pb::ForgetUserRequest>,
    ) -> Result<Response<pb::ForgetUserResponse>, Status> {
        use pb::forget_user_request::User;
        let req = request.into_inner();
        let user = req.user.as_ref().map(|u| match u {
            User::UserId(id) => UserOneof::UserId(id),
            User::Email(e) => UserOneof::Email(e),
        });
        let key = self.user_key(user.as_ref())?;
        let erased = self.service.forget(key).await?;
        Ok(Response::new(pb::ForgetUserResponse {
            identities_erased: erased.clients,
            found: erased.found,
        }))
    }
}

impl<S: Store> Api<S> {
    async fn forget_visitor_inner(
        &self,
        request: Request<pb::ForgetVisitorRequest>,
    ) -> Result<Response<pb::ForgetVisitorResponse>, Status> {
        let req = request.into_inner();
        let ctx = self.context(req.context.as_ref(), vec![])?;
        let (erased, cookies) = self.service.forget_visitor(&ctx).await?;
        Ok(Response::new(pb::ForgetVisitorResponse {
            found: erased.found,
            identities_erased: erased.clients,
            cookies: cookies.iter().map(cookie).collect(),
        }))
    }
}

/// Runs one call with a request id span, then records its outcome: one
/// debug log line (RPC, code, duration, request id: never request data) and
/// the request metrics.
///
/// `call` comes boxed: each RPC's future is several KiB, and the layers
/// around it (this span, tonic's boxed trait future) would otherwise move it
/// by value, a copy each time.
async fn observe<T>(
    rpc: &'static str,
    request_id: String,
    call: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let span = tracing::debug_span!("rpc", rpc, request_id = %request_id);
    let result = call.instrument(span.clone()).await;
    let code = match &result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    crate::metrics::rpc(rpc, code, started);
    span.in_scope(|| {
        let micros = started.elapsed().as_micros() as u64;
        match code {
            Code::Ok | Code::InvalidArgument | Code::NotFound => {
                tracing::debug!(?code, micros, "call")
            }
            _ => tracing::warn!(?code, micros, "call failed"),
        }
    });
    result
}

/// The call's request id, given by [`crate::errors::Edge`] (a new one when
/// the API is served without it).
fn request_id<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<crate::errors::RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()))
}

#[tonic::async_trait]
impl<S: Store> pb::session_bridge_service_server::SessionBridgeService for Api<S> {
    async fn mint_cookie(
        &self,
        request: Request<pb::MintCookieRequest>,
    ) -> Result<Response<pb::MintCookieResponse>, Status> {
        observe(
            "MintCookie",
            request_id(&request),
            Box::pin(self.mint_cookie_inner(request)),
        )
        .await
    }

    async fn record_handoff(
        &self,
        request: Request<pb::RecordHandoffRequest>,
    ) -> Result<Response<pb::RecordHandoffResponse>, Status> {
        observe(
            "RecordHandoff",
            request_id(&request),
            Box::pin(self.record_handoff_inner(request)),
        )
        .await
    }

    async fn resolve_session(
        &self,
        request: Request<pb::ResolveSessionRequest>,
    ) -> Result<Response<pb::ResolveSessionResponse>, Status> {
        observe(
            "ResolveSession",
            request_id(&request),
            Box::pin(self.resolve_session_inner(request)),
        )
        .await
    }

    async fn lookup_by_user(
        &self,
        request: Request<pb::LookupByUserRequest>,
    ) -> Result<Response<pb::LookupByUserResponse>, Status> {
        observe(
            "LookupByUser",
            request_id(&request),
            Box::pin(self.lookup_by_user_inner(request)),
        )
        .await
    }

    async fn forget_visitor(
        &self,
        request: Request<pb::ForgetVisitorRequest>,
    ) -> Result<Response<pb::ForgetVisitorResponse>, Status> {
        observe(
            "ForgetVisitor",
            request_id(&request),
            Box::pin(self.forget_visitor_inner(request)),
        )
        .await
    }

    async fn forget_user(
        &self,
        request: Request<pb::ForgetUserRequest>,
    ) -> Result<Response<pb::ForgetUserResponse>, Status> {
        observe(
            "ForgetUser",
            request_id(&request),
            Box::pin(self.forget_user_inner(request)),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order the proto documents is the order the service applies.
    #[test]
    fn the_documented_evidence_order_is_the_precedence() {
        let proto = include_str!("../proto/sessionbridge/v1/sessionbridge.proto");
        let line = proto
            .lines()
            .find_map(|l| l.trim().strip_prefix("// Order: "))
            .expect("an `// Order:` line in the proto");
        let documented: Vec<&str> = line.split(", ").collect();
        let applied: Vec<String> = crate::identity::PRECEDENCE
            .iter()
            .map(|&m| match m {
                // One step reads the user id's index, then the email's.
                Method::UserId => "USER_ID/EMAIL".to_string(),
                m => method(m)
                    .as_str_name()
                    .trim_start_matches("RESOLUTION_METHOD_")
                    .to_string(),
            })
            .collect();
        assert_eq!(documented, applied);
    }
}
