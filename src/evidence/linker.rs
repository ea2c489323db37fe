//! GA4's `_gl` linker (forgeable): the client id (and session) another
//! site's gtag.js put in the link, accepted only when its checksum matches
//! this browser in the current minute or the two before, as gtag.js itself
//! checks. Its writer decorates a hand-off link with a `_gl` of its own,
//! carrying what gtag.js would carry, and passes on the payload of a `_gl`
//! the request arrived with, so a chain of server-side hops keeps it alive.

use url::Url;

use crate::ga;
use crate::identity::{Identity, Method, Rejected, Rejection};
use crate::query;
use crate::request::Parsed;
use crate::store::{Store, StoreError};

use super::{Cx, Found};

/// The query parameter gtag.js reads.
pub const PARAM: &str = "_gl";

pub async fn read<S: Store>(
    cx: &Cx<'_, S>,
    req: &Parsed<'_>,
    rejected: &mut Vec<Rejected>,
) -> Result<Option<Found>, StoreError> {
    let Some(raw) = req.raw_param(PARAM) else {
        return Ok(None);
    };
    let ctx = req.ctx;
    let language = ga::linker::primary_language(&ctx.accept_language);
    let linked = ga::linker::read(raw, &ctx.user_agent, language, cx.now)
        .and_then(|v| ga::linker::linked(&v.payload, cx.now));
    let linked = match linked {
        Ok(l) => l,
        Err(e) => {
            let reason = match e {
                ga::linker::LinkerError::Expired => Rejection::Expired,
                ga::linker::LinkerError::Checksum => Rejection::FingerprintMismatch,
                ga::linker::LinkerError::Malformed | ga::linker::LinkerError::NoClientId => {
                    Rejection::Malformed
                }
            };
            rejected.push(Rejected::new(Method::GaLinker, reason, e.to_string()));
            return Ok(None);
        }
    };
    let identity = super::ga_cookie::ga_identity(linked.client_id, linked.session);
    super::forgeable(cx, identity, Method::GaLinker, 0.8, rejected).await
}

/// The visitor's clock, as the page reports it, for the link's checksum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrowserClock {
    /// `new Date().getTimezoneOffset()`, minutes.
    pub tz_offset: Option<i32>,
    /// `Date.now()`, milliseconds: gtag.js on the destination checks the
    /// link against the device's clock, not the server's.
    pub now_ms: Option<i64>,
}

/// `url` with a `_gl` for this browser, written as gtag.js writes one: the
/// payload the request's cookies give (see [`ga::linker::from_cookies`]),
/// after everything a valid `_gl` that arrived with the request carried
/// ([`ga::linker::carry`]). Written when the time-zone offset is known:
/// given by the page, or the one the arrived `_gl` matched at. Otherwise
/// `url` unchanged.
pub fn write(
    url: &Url,
    req: &Parsed<'_>,
    identity: &Identity,
    clock: BrowserClock,
    ads_allowed: bool,
    now: i64,
) -> Url {
    let ctx = req.ctx;
    let language = ga::linker::primary_language(&ctx.accept_language);
    let arrived = req
        .raw_param(PARAM)
        .and_then(|raw| ga::linker::read(raw, &ctx.user_agent, language, now).ok());
    let Some(tz) = clock.tz_offset.or(arrived.as_ref().map(|v| v.tz_offset)) else {
        return url.clone();
    };
    let own = ga::linker::from_cookies(req.cookies(), &identity.client_id, now);
    let mut payload = match &arrived {
        Some(v) => ga::linker::carry(&v.payload, &identity.client_id, &own, now),
        None => own,
    };
    if !ads_allowed {
        // Consent Mode: ad storage or ad user data denied, so no ad-click
        // id travels in the link.
        payload.retain(|k, _| !ga::linker::is_ad_key(k));
    }
    let minute = clock
        .now_ms
        .map_or(now.div_euclid(60), |ms| ms.div_euclid(60_000));
    let gl = ga::linker::write(&payload, &ctx.user_agent, tz, language, minute);
    query::with(url, PARAM, &gl)
}
