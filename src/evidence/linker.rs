//! GA4's `_gl` linker (forgeable): the client id (and session) another
//! site's gtag.js put in the link, accepted only when its checksum matches
//! this browser in the current or previous minute, as gtag.js itself
//! checks. Its writer decorates a hand-off link with a `_gl` of its own.

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
    let Some(value) = req.param(PARAM) else {
        return Ok(None);
    };
    let ctx = req.ctx;
    let language = ga::linker::primary_language(&ctx.accept_language);
    let linked = match ga::linker::read(value, &ctx.user_agent, language, cx.now) {
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
    let identity = super::ga_cookie::ga_identity(linked.client_id, linked.session);
    super::forgeable(cx, identity, Method::GaLinker, 0.8, rejected).await
}

/// `url` with a `_gl` for this browser, written as gtag.js writes one.
pub fn write(url: &Url, req: &Parsed<'_>, identity: &Identity, tz: i32, now: i64) -> Url {
    let ctx = req.ctx;
    let language = ga::linker::primary_language(&ctx.accept_language);
    let gl = ga::linker::write(&identity.client_id, &ctx.user_agent, tz, language, now);
    query::with(url, PARAM, &gl)
}
