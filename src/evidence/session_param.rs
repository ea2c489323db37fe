//! A raw session id in the query (forgeable), the seed's approach 3 as
//! written. Off unless referrers are allow-listed, because whoever sees
//! such a link can fixate or take over the session.

use crate::identity::{Method, Rejected, Rejection};
use crate::request::Parsed;
use crate::settings::Settings;
use crate::store::{Store, StoreError};

use super::{Cx, Found};

/// The parameter it owns, while the feature is on.
pub fn param(settings: &Settings) -> Option<&str> {
    (!settings.session_id_referrers.is_open()).then_some(settings.session_id_param.as_str())
}

pub async fn read<S: Store>(
    cx: &Cx<'_, S>,
    req: &Parsed<'_>,
    rejected: &mut Vec<Rejected>,
) -> Result<Option<Found>, StoreError> {
    let allowed = &cx.settings.session_id_referrers;
    if allowed.is_open() {
        // The feature is off: a parameter of that name is none of ours.
        return Ok(None);
    }
    let Some(value) = req.param(&cx.settings.session_id_param) else {
        return Ok(None);
    };
    let reject = |reason, detail: &str| Rejected::new(Method::SessionIdParameter, reason, detail);
    let from_allowed = req
        .referer_host()
        .is_some_and(|h| allowed.allows(&h.to_ascii_lowercase()));
    if !from_allowed {
        rejected.push(reject(
            Rejection::NotAllowed,
            "raw session id parameter from a referrer outside session_id_param_referrers",
        ));
        return Ok(None);
    }
    // The same plausibility as a `_ga` cookie: no zero id, no creation
    // time before GA4 or ahead of the clock.
    let Ok(client_id) = crate::ga::parse_client_id(&format!("GA1.1.{value}"), cx.now) else {
        rejected.push(reject(
            Rejection::Malformed,
            "raw session id parameter is not a plausible client id",
        ));
        return Ok(None);
    };
    let identity = cx.settings.policy.new_identity(client_id, cx.now);
    super::forgeable(cx, identity, Method::SessionIdParameter, 0.5, rejected).await
}
