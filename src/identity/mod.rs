//! The domain: who a visitor is, which session they are in, and the order in
//! which evidence decides it. Nothing here knows about gRPC or storage, so the
//! rules are testable on their own.

mod client_id;
mod session;

pub(crate) use client_id::clamp_u32;
pub use client_id::{ClientId, ClientIdError};
pub use session::SessionPolicy;

use serde::{Deserialize, Serialize};

/// One visitor and the session they are in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub client_id: ClientId,
    /// GA4 session id: unix seconds at the start of the current session.
    pub session_id: i64,
    /// Sessions of this client so far, the current one included.
    pub session_number: u32,
    /// The backend's user id, once a login linked one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Unix seconds of the latest hit; the inactivity timeout counts from it.
    pub last_seen: i64,
}

impl Identity {
    /// GA4 counts a client's first visit from the id's own timestamp, so the
    /// first-seen time needs no field of its own.
    pub fn first_seen(&self) -> i64 {
        self.client_id.created()
    }
}

/// Where an identity came from. The order of [`PRECEDENCE`] is the product's
/// central rule; everything else follows from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// The service's own signed cookie.
    Cookie,
    /// A sealed hand-off token in the request URL.
    HandoffToken,
    /// GA4's `_gl` linker parameter, verified as gtag.js verifies it.
    GaLinker,
    /// The most recent identity linked to the request's user id.
    UserId,
    /// The most recent identity linked to the request's email (read in the
    /// same step of the precedence as the user id).
    Email,
    /// A recent hand-off from the referring site by the same browser and
    /// network (a heuristic).
    ReferrerBridge,
    /// A raw `session_id` parameter from an allow-listed referrer (opt-in).
    SessionIdParameter,
    /// The GA4 `_ga` cookie (and `_ga_<container>` session) the site's
    /// gtag.js already set, adopted so GA4 history is not reset.
    GaCookie,
    /// Nothing usable: a new identity.
    New,
    /// Consent denied: an ephemeral identity, never stored.
    NoConsent,
}

/// The order in which ResolveSession weighs evidence: the first source that
/// yields an identity wins, and a weaker source can never override a
/// stronger one.
///
/// Verified evidence first (a cookie this domain set, a token another
/// domain sealed, the user the backend's own login asserts), then the
/// forgeable kinds, which may carry analytics ids but never a user: GA4's
/// `_gl` and cookies (a visitor this site's gtag.js already knows keeps that
/// client id rather than being re-identified by a guess), the heuristic
/// bridge, the opt-in raw parameter. When all are absent or rejected, a new
/// identity is minted.
pub const PRECEDENCE: &[Method] = &[
    Method::Cookie,
    Method::HandoffToken,
    Method::UserId,
    Method::GaLinker,
    Method::GaCookie,
    Method::ReferrerBridge,
    Method::SessionIdParameter,
];

/// Every kind, for loops that must visit each (URL parameters to clean).
pub const ALL_KINDS: &[Method] = &[
    Method::Cookie,
    Method::HandoffToken,
    Method::GaLinker,
    Method::UserId,
    Method::Email,
    Method::GaCookie,
    Method::ReferrerBridge,
    Method::SessionIdParameter,
    Method::New,
    Method::NoConsent,
];

/// What MintCookie looks at: the own cookie (refresh it), else the GA4
/// cookie (adopt it), else a new identity.
pub const MINT_ONLY: &[Method] = &[Method::Cookie, Method::GaCookie];

/// Why a piece of evidence was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    Malformed,
    BadSeal,
    UnknownKey,
    Expired,
    Replayed,
    WrongAudience,
    FingerprintMismatch,
    NotFound,
    NotAllowed,
    NoConsent,
    /// Larger than the service reads.
    TooLarge,
    /// Forgeable evidence named a client that a login owns.
    LinkedToUser,
    /// Two valid pieces of the same evidence name different visitors.
    Conflict,
    /// A time from the visitor lies in the future.
    FromTheFuture,
}

/// A request input that is not itself evidence but that the browser
/// controls; unusable ones are ignored and reported, never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    Url,
    Referer,
    UserAgent,
    CookieHeader,
    AcceptLanguage,
    ClientIp,
}

impl Input {
    /// The field's path in the request message.
    pub const fn field(self) -> &'static str {
        match self {
            Input::Url => "context.url",
            Input::Referer => "context.referer",
            Input::UserAgent => "context.user_agent",
            Input::CookieHeader => "context.cookie_header",
            Input::AcceptLanguage => "context.accept_language",
            Input::ClientIp => "context.client_ip",
        }
    }
}

/// What a rejection is about: a kind of evidence, or another input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Evidence(Method),
    Input(Input),
}

/// Evidence found in a request but not used, for the caller to debug with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub source: Source,
    pub reason: Rejection,
    /// A short explanation; never the evidence itself.
    pub detail: String,
}

impl Rejected {
    pub fn new(source: Method, reason: Rejection, detail: impl Into<String>) -> Self {
        Self {
            source: Source::Evidence(source),
            reason,
            detail: detail.into(),
        }
    }

    /// An unusable input, left out.
    pub fn input(input: Input, reason: Rejection, detail: impl Into<String>) -> Self {
        Self {
            source: Source::Input(input),
            reason,
            detail: detail.into(),
        }
    }
}

/// The visitor's analytics consent (GA4 consent mode's `analytics_storage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Consent {
    #[default]
    Granted,
    Denied,
}

/// The four signals of GA4 Consent Mode v2, in force for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsentMode {
    pub analytics: Consent,
    pub ad_storage: Consent,
    pub ad_user_data: Consent,
    pub ad_personalization: Consent,
}

impl ConsentMode {
    /// Every signal the same.
    pub const fn all(c: Consent) -> Self {
        Self {
            analytics: c,
            ad_storage: c,
            ad_user_data: c,
            ad_personalization: c,
        }
    }

    /// Whether advertising ids (ad clicks) may travel in a link.
    pub fn ads_allowed(&self) -> bool {
        self.ad_storage == Consent::Granted && self.ad_user_data == Consent::Granted
    }
}

impl Default for ConsentMode {
    fn default() -> Self {
        Self::all(Consent::Granted)
    }
}

/// The consent signals a request states (None: not stated), and whether it
/// carried Global Privacy Control.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatedConsent {
    pub analytics: Option<Consent>,
    pub ad_storage: Option<Consent>,
    pub ad_user_data: Option<Consent>,
    pub ad_personalization: Option<Consent>,
    pub global_privacy_control: bool,
}

impl StatedConsent {
    /// Only the analytics signal stated.
    pub fn analytics(c: Option<Consent>) -> Self {
        Self {
            analytics: c,
            ..Self::default()
        }
    }

    /// What is in force: each stated signal, else `fallback`'s (the
    /// configured default, or what a token carried); Global Privacy Control
    /// denies the ad signals, and analytics too when `gpc_denies_analytics`.
    pub fn in_force(&self, fallback: ConsentMode, gpc_denies_analytics: bool) -> ConsentMode {
        let mut m = ConsentMode {
            analytics: self.analytics.unwrap_or(fallback.analytics),
            ad_storage: self.ad_storage.unwrap_or(fallback.ad_storage),
            ad_user_data: self.ad_user_data.unwrap_or(fallback.ad_user_data),
            ad_personalization: self
                .ad_personalization
                .unwrap_or(fallback.ad_personalization),
        };
        if self.global_privacy_control {
            m.ad_storage = Consent::Denied;
            m.ad_user_data = Consent::Denied;
            m.ad_personalization = Consent::Denied;
            if gpc_denies_analytics {
                m.analytics = Consent::Denied;
            }
        }
        m
    }
}
