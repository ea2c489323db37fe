//! Evidence: each kind of proof a request can carry of who the visitor is,
//! one module per kind. A module owns its reader (parsed request in, a
//! [`Found`] identity or a rejection out), its rejection texts, the URL
//! parameters it owns, and, where it has one, its writer (the link
//! decoration or record that `RecordHandoff` makes).
//!
//! [`first`] walks [`PRECEDENCE`](crate::identity::PRECEDENCE) and
//! dispatches with an exhaustive `match`: a new kind of evidence is a new
//! [`Method`] variant, and the compiler lists every place that must handle
//! it (see `docs/architecture.md`).

pub mod bridge;
pub mod ga_cookie;
pub mod linker;
pub mod own_cookie;
pub mod session_param;
pub mod token;
pub mod user;

use crate::identity::{ConsentMode, Identity, Method, Rejected};
use crate::keys::Keyring;
use crate::request::Parsed;
use crate::service::UserInput;
use crate::settings::Settings;
use crate::store::{ClientRecord, Store, StoreError};

/// How far a kind of evidence can be believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Only this service (or the backend's own login) can produce it: the
    /// own signed cookie, a sealed token, the user id the backend asserts.
    Verified,
    /// Anyone can write it: GA's cookies and `_gl`, the referrer bridge, a
    /// raw session id parameter. It may carry analytics ids only.
    Forgeable,
}

/// The trust of each kind of evidence.
pub const fn trust(kind: Method) -> Trust {
    match kind {
        Method::Cookie | Method::HandoffToken | Method::UserId | Method::Email => Trust::Verified,
        Method::GaLinker
        | Method::GaCookie
        | Method::ReferrerBridge
        | Method::SessionIdParameter => Trust::Forgeable,
        // Not evidence: nothing was found.
        Method::New | Method::NoConsent => Trust::Forgeable,
    }
}

/// What every reader may use: the store, the keys, the settings and the
/// time of the call (from the service's clock).
pub struct Cx<'a, S> {
    pub store: &'a S,
    pub keys: &'a Keyring,
    pub settings: &'a Settings,
    pub now: i64,
}

/// One request as the readers see it.
pub struct Input<'a> {
    pub req: &'a Parsed<'a>,
    pub user: &'a UserInput,
    /// A hand-off token passed outside the URL (a webhook's reference).
    pub handoff_token: Option<&'a str>,
    /// A passive call: readers must not change the store.
    pub passive: bool,
}

/// Evidence that named an identity.
#[derive(Debug)]
pub struct Found {
    pub identity: Identity,
    pub method: Method,
    pub confidence: f64,
    /// The record already stored for this client, if any.
    pub record: Option<ClientRecord>,
    /// The consent the evidence carries: a token carries the source's;
    /// None for evidence that carries none.
    pub consent: Option<ConsentMode>,
    /// Valid pieces of this evidence disagreed: link no login on it.
    pub conflict: bool,
    /// The client must be marked `adopted`: no login may link it (it came
    /// through a link, or from forgeable evidence by way of a token).
    pub adopt: bool,
}

impl Found {
    pub fn new(
        identity: Identity,
        method: Method,
        confidence: f64,
        record: Option<ClientRecord>,
    ) -> Self {
        Self {
            identity,
            method,
            confidence,
            record,
            consent: None,
            conflict: false,
            adopt: false,
        }
    }
}

/// What forgeable evidence may yield: the analytics ids it carries, and
/// nothing stored. When the client it names is linked to a user, it yields
/// nothing: a client id is not a secret, and knowing one must not reveal,
/// resume or move anyone's login.
pub(crate) async fn forgeable<S: Store>(
    cx: &Cx<'_, S>,
    mut identity: Identity,
    method: Method,
    confidence: f64,
    rejected: &mut Vec<Rejected>,
) -> Result<Option<Found>, StoreError> {
    let record = cx.store.get_client(identity.client_id, cx.now).await?;
    if let Some(r) = &record {
        if !r.user_keys.is_empty() || r.identity.user_id.is_some() {
            rejected.push(Rejected::new(
                method,
                crate::identity::Rejection::LinkedToUser,
                "names a client that a login owns: forgeable evidence cannot carry it",
            ));
            return Ok(None);
        }
    }
    identity.user_id = None;
    Ok(Some(Found::new(identity, method, confidence, record)))
}

/// The first kind of evidence in `sources` that names an identity; every
/// kind found and refused on the way is added to `rejected`.
pub async fn first<S: Store>(
    cx: &Cx<'_, S>,
    input: &Input<'_>,
    sources: &[Method],
    rejected: &mut Vec<Rejected>,
) -> Result<Option<Found>, StoreError> {
    for &source in sources {
        if input.passive && !PASSIVE.contains(&source) {
            continue;
        }
        let found = match source {
            Method::Cookie => own_cookie::read(cx, input.req, rejected).await?,
            Method::HandoffToken => token::read(cx, input, rejected).await?,
            // One step reads both: the user id's index, then the email's.
            Method::UserId | Method::Email => user::read(cx, input.user).await?,
            Method::ReferrerBridge => bridge::read(cx, input.req, rejected).await?,
            Method::GaCookie => ga_cookie::read(cx, input.req, rejected).await?,
            Method::GaLinker => linker::read(cx, input.req, rejected).await?,
            Method::SessionIdParameter => session_param::read(cx, input.req, rejected).await?,
            Method::New | Method::NoConsent => None,
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// What a passive call (a webhook, a server-to-server retry) reads: the
/// verified kinds, which name a visitor without changing the store. The
/// referrer bridge would spend its entry, and forgeable kinds prove
/// nothing to a server that is not the visitor's browser.
pub const PASSIVE: &[Method] = &[Method::Cookie, Method::HandoffToken, Method::UserId];

/// The URL parameters that carry evidence, which a landing page's URL
/// should lose: each kind says which are its own.
pub fn url_params(settings: &Settings) -> Vec<&str> {
    let mut names = Vec::new();
    for &kind in crate::identity::ALL_KINDS {
        let own = match kind {
            Method::HandoffToken => Some(token::param(settings)),
            Method::GaLinker => Some(linker::PARAM),
            Method::SessionIdParameter => session_param::param(settings),
            Method::Cookie
            | Method::UserId
            | Method::Email
            | Method::ReferrerBridge
            | Method::GaCookie
            | Method::New
            | Method::NoConsent => None,
        };
        names.extend(own);
    }
    names
}

/// Completes an identity named by evidence with what the store knows of
/// the same client: the user id, and the session state when the store saw
/// a later hit.
pub(crate) async fn with_record<S: Store>(
    cx: &Cx<'_, S>,
    mut identity: Identity,
) -> Result<(Identity, Option<ClientRecord>), StoreError> {
    let record = cx.store.get_client(identity.client_id, cx.now).await?;
    if let Some(r) = &record {
        if r.identity.last_seen > identity.last_seen {
            identity = r.identity.clone();
        } else {
            identity.user_id = r.identity.user_id.clone();
        }
    }
    Ok((identity, record))
}

/// The registrable domain of a host (public suffix list), or the host.
pub fn site_of(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    psl::domain_str(&host).map(str::to_string).unwrap_or(host)
}
