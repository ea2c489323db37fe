//! The service's own signed cookie (verified). It carries the session
//! state, so it stands alone; a stored record adds the user id, and wins
//! when it saw a later hit (another tab, or a sidecar that set a newer
//! cookie). Its writer is the Set-Cookie of every answer.

use crate::cookie::{self, CookieScope, SetCookie};
use crate::identity::{Consent, Identity, Method, Rejected, Rejection};
use crate::request::Parsed;
use crate::settings::Settings;
use crate::store::{Store, StoreError};

use super::{Cx, Found};

fn detail(reason: Rejection) -> &'static str {
    match reason {
        Rejection::Malformed => "identity cookie is not in the expected format",
        Rejection::BadSeal => {
            "identity cookie signature does not verify for this domain (forged, edited or copied)"
        }
        Rejection::UnknownKey => "identity cookie was signed with a key this service does not hold",
        _ => "identity cookie rejected",
    }
}

pub async fn read<S: Store>(
    cx: &Cx<'_, S>,
    req: &Parsed<'_>,
    rejected: &mut Vec<Rejected>,
) -> Result<Option<Found>, StoreError> {
    let name = cx.settings.cookie_name.as_str();
    let mut values = req.cookies_named(name).peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let scopes = cx
        .settings
        .allowed
        .candidate_scopes(&req.ctx.host, req.ctx.host_is_domain);
    let mut best: Option<Identity> = None;
    for v in values {
        match cookie::open_identity(cx.keys, &scopes, name, v) {
            // The cookie's own Max-Age ends its life in the browser; a
            // value replayed from elsewhere after that is refused too.
            Ok(id) if cx.now - id.last_seen > cx.settings.identity_ttl_secs => {
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
            Err(reason) => rejected.push(Rejected::new(Method::Cookie, reason, detail(reason))),
        }
    }
    let Some(identity) = best else {
        return Ok(None);
    };
    let (identity, record) = super::with_record(cx, identity).await?;
    Ok(Some(Found {
        identity,
        method: Method::Cookie,
        confidence: 1.0,
        record,
        consent: Consent::Granted,
    }))
}

/// Whether the request carries a cookie of the own name (to delete it).
pub fn present(settings: &Settings, req: &Parsed<'_>) -> bool {
    req.cookies_named(&settings.cookie_name).next().is_some()
}

/// The Set-Cookie that stores `identity` in the browser.
pub fn write(
    keys: &crate::keys::Keyring,
    settings: &Settings,
    scope: &CookieScope,
    identity: &Identity,
) -> SetCookie {
    let value = cookie::seal_identity(keys, scope, &settings.cookie_name, identity);
    SetCookie::new(
        &settings.cookie_name,
        value,
        scope,
        settings.identity_ttl_secs,
        true,
    )
}

/// The Set-Cookie that deletes the own cookie.
pub fn delete(settings: &Settings, scope: &CookieScope) -> SetCookie {
    SetCookie::new(&settings.cookie_name, String::new(), scope, 0, true)
}
