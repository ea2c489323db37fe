//! GA4's own cookies (forgeable): `_ga` gives the client id; the freshest
//! valid `_ga_<container>` gives the session, continued when its last hit
//! is within the inactivity timeout (the touch that follows decides). Its
//! writer is the `_ga` Set-Cookie, for sites that want gtag.js to adopt
//! the service's client id.

use crate::cookie::{self, CookieScope, SetCookie};
use crate::ga;
use crate::identity::{ClientId, Identity, Method, Rejected, Rejection};
use crate::request::Parsed;
use crate::store::{Store, StoreError};

use super::{Cx, Found};

/// The cookie gtag.js keeps its client id in.
pub const NAME: &str = "_ga";

pub async fn read<S: Store>(
    cx: &Cx<'_, S>,
    req: &Parsed<'_>,
    rejected: &mut Vec<Rejected>,
) -> Result<Option<Found>, StoreError> {
    let mut client = None;
    for v in req.cookies_named(NAME) {
        match ga::parse_client_id(v, cx.now) {
            Ok(id) => {
                client = Some(id);
                break;
            }
            Err(e) => rejected.push(Rejected::new(
                Method::GaCookie,
                reason(e),
                format!("_ga: {e}"),
            )),
        }
    }
    let Some(client_id) = client else {
        return Ok(None);
    };
    let mut session: Option<ga::GaSession> = None;
    for &(name, value) in req.cookies() {
        if !ga::is_session_cookie(name) {
            continue;
        }
        match ga::parse_session(value, cx.now) {
            Ok(s) if session.is_none_or(|b| s.last_hit > b.last_hit) => session = Some(s),
            Ok(_) => {}
            Err(e) => rejected.push(Rejected::new(
                Method::GaCookie,
                reason(e),
                format!("{name}: {e}"),
            )),
        }
    }
    let identity = ga_identity(client_id, session);
    super::forgeable(cx, identity, Method::GaCookie, 0.9, rejected).await
}

fn reason(e: ga::GaCookieError) -> Rejection {
    match e {
        ga::GaCookieError::Future => Rejection::FromTheFuture,
        _ => Rejection::Malformed,
    }
}

/// An identity from GA4's ids: the session when one was given (the touch
/// that follows continues or renews it), else a client whose first session
/// starts with this hit.
pub(crate) fn ga_identity(client_id: ClientId, session: Option<ga::GaSession>) -> Identity {
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

/// The `_ga` Set-Cookie for `identity`. Not HttpOnly: gtag.js must read it.
pub fn write(scope: &CookieScope, identity: &Identity, ttl_secs: i64) -> SetCookie {
    SetCookie::new(
        NAME,
        cookie::ga_cookie_value(scope, &identity.client_id),
        scope,
        ttl_secs,
        false,
    )
}
