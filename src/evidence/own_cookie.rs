//! The service's own signed cookie (verified). It carries the session
//! state, so it stands alone; a stored record adds the user id, and wins
//! when it saw a later hit (another tab, or a sidecar that set a newer
//! cookie). Its writer is the Set-Cookie of every answer.

use crate::cookie::{self, CookieScope, SetCookie};
use crate::identity::{Identity, Method, Rejected, Rejection};
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

/// The name the own cookie is set under for `scope`: `__Host-<base>` for
/// a host-only cookie, `__Secure-<base>` for a domain cookie. Browsers
/// accept a `__Host-` cookie only from the host itself over HTTPS, without
/// Domain, and a `__Secure-` cookie only over HTTPS: neither can be planted
/// by an http man-in-the-middle, and a `__Host-` one not by a sibling
/// subdomain either.
pub fn name_for<'s>(settings: &'s Settings, scope: &CookieScope) -> &'s str {
    let names = names(settings);
    match scope {
        CookieScope::HostOnly(_) => &names[0],
        CookieScope::Domain(_) => &names[1],
    }
}

/// Every name the own cookie is read under, in the order of trust: the
/// two prefixed names, then the unprefixed names of earlier versions
/// (`<base>`, and `_sbid` for the default base), which are read once and
/// then replaced. Made once, with the settings.
pub fn names(settings: &Settings) -> &[String] {
    &settings.cookie_names
}

/// The names [`names`] gives for a base name.
pub fn names_for_base(base: &str) -> Vec<String> {
    let mut v = vec![
        format!("__Host-{base}"),
        format!("__Secure-{base}"),
        base.to_string(),
    ];
    if base == crate::settings::DEFAULT_COOKIE_BASE {
        v.push(crate::settings::LEGACY_COOKIE_NAME.to_string());
    }
    v
}

/// Reads the own cookie. When several valid own cookies name different
/// visitors (one may have been planted), the choice is deterministic: the
/// most trusted name first (`__Host-`, `__Secure-`, then older names), and
/// among cookies of one name the first in the header, which browsers send
/// oldest first among cookies of one path (a longer path comes first).
/// The conflict is reported and no login is linked on this
/// request.
pub async fn read<S: Store>(
    cx: &Cx<'_, S>,
    req: &Parsed<'_>,
    rejected: &mut Vec<Rejected>,
) -> Result<Option<Found>, StoreError> {
    let names = names(cx.settings);
    let mut valid: Vec<Identity> = Vec::new();
    let mut scopes = None;
    for name in names {
        for v in req.cookies_named(name) {
            let scopes = scopes.get_or_insert_with(|| {
                cx.settings
                    .allowed
                    .candidate_scopes(&req.ctx.host, req.ctx.host_is_domain)
            });
            match cookie::open_identity(cx.keys, scopes, name, v) {
                // The cookie's own Max-Age ends its life in the browser; a
                // value replayed from elsewhere after that is refused too.
                Ok(id) if cx.now - id.last_seen > cx.settings.identity_ttl_secs => {
                    rejected.push(Rejected::new(
                        Method::Cookie,
                        Rejection::Expired,
                        "identity cookie is older than identity_ttl_days",
                    ))
                }
                Ok(id) => valid.push(id),
                Err(reason) => rejected.push(Rejected::new(Method::Cookie, reason, detail(reason))),
            }
        }
    }
    let mut valid = valid.into_iter();
    let Some(mut identity) = valid.next() else {
        return Ok(None);
    };
    let mut conflict = false;
    for other in valid {
        if other.client_id != identity.client_id {
            conflict = true;
        } else if other.last_seen > identity.last_seen {
            // The same visitor, a later hit (another tab): keep it.
            identity = other;
        }
    }
    if conflict {
        rejected.push(Rejected::new(
            Method::Cookie,
            Rejection::Conflict,
            "own cookies name different visitors (one may have been planted): the most trusted name, then the first sent, decides",
        ));
    }
    // Time from a cookie this service signed is the service's own; still,
    // never ahead of the clock.
    identity.last_seen = identity.last_seen.min(cx.now);
    let (identity, record) = super::with_record(cx, identity).await?;
    Ok(Some(Found {
        conflict,
        ..Found::new(identity, Method::Cookie, 1.0, record)
    }))
}

/// Whether the request carries the own cookie under any name (to delete it).
pub fn present(settings: &Settings, req: &Parsed<'_>) -> bool {
    names(settings)
        .iter()
        .any(|n| req.cookies_named(n).next().is_some())
}

/// The Set-Cookie headers that store `identity` in the browser: the
/// cookie under its name for `scope`, and the deletion of any own cookie
/// the request carried under another name (an earlier version's).
pub fn write(
    keys: &crate::keys::Keyring,
    settings: &Settings,
    scope: &CookieScope,
    identity: &Identity,
    req: &Parsed<'_>,
) -> Vec<SetCookie> {
    let name = name_for(settings, scope);
    let value = cookie::seal_identity(keys, scope, name, identity);
    let mut out = vec![SetCookie::new(
        name,
        value,
        scope,
        settings.identity_ttl_secs,
        true,
    )];
    for old in names(settings).iter().filter(|n| **n != name) {
        if req.cookies_named(old).next().is_some() {
            out.push(deletion(old, scope));
        }
    }
    out
}

fn deletion(name: &str, scope: &CookieScope) -> SetCookie {
    // A `__Host-` cookie must be deleted as it was set: without Domain.
    let scope = if name.starts_with("__Host-") {
        CookieScope::HostOnly(scope.bound_name().to_string())
    } else {
        scope.clone()
    };
    SetCookie::new(name, String::new(), &scope, 0, true)
}

/// The Set-Cookie headers that delete every own cookie the request has.
pub fn delete(settings: &Settings, scope: &CookieScope, req: &Parsed<'_>) -> Vec<SetCookie> {
    names(settings)
        .iter()
        .filter(|n| req.cookies_named(n).next().is_some())
        .map(|n| deletion(n, scope))
        .collect()
}
