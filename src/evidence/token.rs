//! A sealed hand-off token (verified), from the request (webhooks) or the
//! URL. Checks that cost nothing come before the claim, so a token
//! presented in the wrong place does not lose a use. Its writer seals the
//! token and puts it in the destination URL.

use url::Url;

use crate::identity::{Identity, Method, Rejected, Rejection};
use crate::keys::Keyring;
use crate::query;
use crate::settings::Settings;
use crate::store::{Claim, Store, StoreError};
use crate::token::{self, Claims};

use super::{Cx, Found, Input};

/// The query parameter that carries tokens.
pub fn param(settings: &Settings) -> &str {
    settings.handoff_param.as_str()
}

fn detail(reason: Rejection) -> &'static str {
    match reason {
        Rejection::Malformed => "hand-off token is not in the expected format",
        Rejection::BadSeal => "hand-off token does not open: forged, edited or truncated",
        Rejection::UnknownKey => "hand-off token was sealed with a key this service does not hold",
        _ => "hand-off token rejected",
    }
}

pub async fn read<S: Store>(
    cx: &Cx<'_, S>,
    input: &Input<'_>,
    rejected: &mut Vec<Rejected>,
) -> Result<Option<Found>, StoreError> {
    let Some(sealed) = input
        .handoff_token
        .or_else(|| input.req.param(param(cx.settings)))
    else {
        return Ok(None);
    };
    let ctx = input.req.ctx;
    let reject = |reason, detail: &str| Rejected::new(Method::HandoffToken, reason, detail);
    let claims = match token::open(cx.keys, sealed) {
        Ok(c) => c,
        Err(reason) => {
            rejected.push(reject(reason, detail(reason)));
            return Ok(None);
        }
    };
    // A passive call (a webhook, a retry) may read the identity for the
    // token's passive lifetime, and never spends a use; a page view must
    // come within the token's own lifetime.
    let expires_at = if input.passive {
        claims.passive_expires_at
    } else {
        claims.expires_at
    };
    if cx.now >= expires_at {
        rejected.push(reject(Rejection::Expired, "hand-off token has expired"));
        return Ok(None);
    }
    let host = token::short_hash(cx.keys, "host", &ctx.host);
    if !claims.audience.contains(&host) {
        rejected.push(reject(
            Rejection::WrongAudience,
            "hand-off token was issued for another host",
        ));
        return Ok(None);
    }
    if let Some(bound) = claims.user_agent {
        if token::short_hash(cx.keys, "ua", &ctx.user_agent) != bound {
            rejected.push(reject(
                Rejection::FingerprintMismatch,
                "hand-off token is bound to another User-Agent",
            ));
            return Ok(None);
        }
    }
    if cx
        .store
        .is_erased(claims.identity.client_id, cx.now)
        .await?
    {
        rejected.push(reject(Rejection::NotFound, crate::store::ERASED_DETAIL));
        return Ok(None);
    }
    if input.passive {
        return found(cx, claims, rejected).await;
    }
    match cx
        .store
        .claim_token(
            claims.token_id,
            u32::from(claims.max_uses),
            claims.expires_at,
            cx.now,
        )
        .await?
    {
        Claim::UsedUp => {
            rejected.push(reject(
                Rejection::Replayed,
                "hand-off token was already used up",
            ));
            return Ok(None);
        }
        Claim::Granted(_) => {}
    }
    // The visitor arrived with the link: the bridge entry recorded with it
    // must not serve anyone else.
    cx.store
        .drop_bridge_of_token(claims.token_id, cx.now)
        .await?;
    found(cx, claims, rejected).await
}

async fn found<S: Store>(
    cx: &Cx<'_, S>,
    claims: Claims,
    rejected: &mut Vec<Rejected>,
) -> Result<Option<Found>, StoreError> {
    let Claims {
        identity,
        consent,
        adopted,
        linked,
        ..
    } = claims;
    if adopted {
        // The source got this client id from forgeable evidence: the token
        // proves no more than that evidence did.
        let found = super::forgeable(cx, identity, Method::HandoffToken, 1.0, rejected).await?;
        return Ok(found.map(|f| Found {
            consent: Some(consent),
            adopt: true,
            ..f
        }));
    }
    let (identity, record) = super::with_record(cx, identity).await?;
    // A client no login owned at the source, arriving through a link:
    // whoever sent the link may hold the same client, so no login may link
    // it here.
    let adopt = !linked;
    Ok(Some(Found {
        consent: Some(consent),
        adopt,
        ..Found::new(identity, Method::HandoffToken, 1.0, record)
    }))
}

/// What a hand-off seals into its token.
pub struct Issue<'a> {
    pub identity: &'a Identity,
    pub now: i64,
    pub expires_at: i64,
    pub passive_expires_at: i64,
    pub max_uses: u8,
    pub consent: crate::identity::ConsentMode,
    /// The source's client came from forgeable evidence.
    pub adopted: bool,
    /// The source's identity was linked to a user.
    pub linked: bool,
    /// The User-Agent to bind the token to, if any.
    pub bind_user_agent: Option<&'a str>,
    /// The hosts that may redeem it.
    pub audience: &'a [String],
}

/// Seals a token and returns it, its id, and `destination` carrying it.
pub fn write(
    keys: &Keyring,
    settings: &Settings,
    destination: &Url,
    t: Issue<'_>,
) -> (String, [u8; 16], Url) {
    let token_id = token::new_token_id();
    let claims = Claims {
        token_id,
        identity: t.identity.clone(),
        issued_at: t.now,
        expires_at: t.expires_at,
        passive_expires_at: t.passive_expires_at,
        max_uses: t.max_uses,
        consent: t.consent,
        adopted: t.adopted,
        linked: t.linked,
        user_agent: t
            .bind_user_agent
            .map(|ua| token::short_hash(keys, "ua", ua)),
        audience: t
            .audience
            .iter()
            .map(|h| token::short_hash(keys, "host", h))
            .collect(),
    };
    let sealed = token::seal(keys, &claims);
    let url = query::with(destination, param(settings), &sealed);
    (sealed, token_id, url)
}

/// A token in the URL of a page view that other evidence decided (the
/// visitor already had the destination's cookie): the hand-off is done all
/// the same, so its bridge entries must not serve anyone else. Opens the
/// token only to learn its id; spends no use.
pub async fn drop_unused<S: Store>(
    cx: &Cx<'_, S>,
    req: &crate::request::Parsed<'_>,
) -> Result<(), StoreError> {
    let Some(sealed) = req.param(param(cx.settings)) else {
        return Ok(());
    };
    let Ok(claims) = token::open(cx.keys, sealed) else {
        return Ok(());
    };
    let host = token::short_hash(cx.keys, "host", &req.ctx.host);
    if cx.now < claims.expires_at && claims.audience.contains(&host) {
        cx.store
            .drop_bridge_of_token(claims.token_id, cx.now)
            .await?;
    }
    Ok(())
}
