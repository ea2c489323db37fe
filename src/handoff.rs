//! RecordHandoff: resolve the visitor on the source site, then have each
//! kind of evidence that travels with a link write its part: the sealed
//! token in the destination URL, a `_gl` for gtag.js (when asked, or to
//! pass on one the request arrived with), and the referrer-bridge record
//! for an arrival that loses the parameters.

use url::Url;

use crate::context::{FieldViolation, RequestContext};
use crate::evidence::{self, bridge, linker};
use crate::identity::{Consent, PRECEDENCE};
use crate::request::Parsed;
use crate::service::{Resolution, ResolveInput, Service, ServiceError};
use crate::store::Store;
use crate::token;

/// A RecordHandoff call.
#[derive(Debug)]
pub struct HandoffInput {
    pub ctx: RequestContext,
    pub destination: Url,
    pub extra_audience: Vec<String>,
    /// 0 for the configured default.
    pub ttl_secs: u32,
    /// 0 for one use.
    pub max_uses: u32,
    /// How long passive calls (webhooks) may read the identity; 0 for the
    /// configured default.
    pub passive_ttl_secs: u32,
    pub bind_user_agent: bool,
    /// The visitor's time-zone offset, to also write a `_gl` parameter.
    pub ga_linker_tz: Option<i32>,
    /// The user the source site's login names, linked as on a page view.
    pub user: crate::service::UserInput,
    /// The visitor's `Date.now()` (ms), the clock the `_gl` is checked
    /// against on the destination.
    pub ga_linker_client_time_ms: Option<i64>,
}

/// The answer to a RecordHandoff call.
#[derive(Debug)]
pub struct Handoff {
    pub token: String,
    pub decorated_url: String,
    pub expires_at: i64,
    /// When passive calls stop being answered from the token.
    pub passive_expires_at: i64,
    /// The source-side resolution (identity and cookies to set there).
    pub source: Resolution,
}

/// The checked numbers of a hand-off request.
struct Limits {
    ttl: u32,
    passive_ttl: u32,
    max_uses: u32,
    audience: Vec<String>,
}

/// How far the visitor's clock may be from the server's.
const MAX_CLIENT_CLOCK_SKEW_MS: u64 = 86_400_000;

fn check<S>(service: &Service<S>, input: &HandoffInput, now: i64) -> Result<Limits, ServiceError> {
    let s = &service.settings;
    let mut bad = Vec::new();
    let ttl = match input.ttl_secs {
        0 => s.handoff_default_ttl_secs,
        t if t > s.handoff_max_ttl_secs => {
            bad.push(FieldViolation::new(
                "ttl_seconds",
                format!(
                    "must be at most {} (handoff_max_ttl_secs)",
                    s.handoff_max_ttl_secs
                ),
            ));
            0
        }
        t => t,
    };
    let passive_ttl = match input.passive_ttl_secs {
        0 => s.handoff_passive_ttl_secs,
        t if t > s.handoff_passive_ttl_secs => {
            bad.push(FieldViolation::new(
                "passive_ttl_seconds",
                format!(
                    "must be at most {} (handoff_passive_ttl_secs)",
                    s.handoff_passive_ttl_secs
                ),
            ));
            0
        }
        t => t,
    }
    .max(ttl);
    let max_uses = match input.max_uses {
        0 => 1,
        u if u > s.handoff_max_uses => {
            bad.push(FieldViolation::new(
                "max_uses",
                format!("must be at most {} (handoff_max_uses)", s.handoff_max_uses),
            ));
            0
        }
        u => u,
    };
    let dest_host = input
        .destination
        .host_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    // A token (and the GA ids of a `_gl`) go only to the operator's own
    // sites and the external destinations it configured.
    let allowed_destination = |host: &str| {
        s.allowed.is_open() || s.allowed.allows(host) || {
            !s.handoff_destinations.is_open() && s.handoff_destinations.allows(host)
        }
    };
    if !allowed_destination(&dest_host) {
        bad.push(FieldViolation::new(
            "destination_url",
            format!(
                "{dest_host:?} is neither in allowed_domains nor in handoff_destinations: \
                 add the payment provider or store to handoff_destinations"
            ),
        ));
    }
    let mut audience = vec![dest_host];
    if input.extra_audience.len() >= token::MAX_AUDIENCE {
        bad.push(FieldViolation::new(
            "extra_audience",
            format!("at most {} hosts", token::MAX_AUDIENCE - 1),
        ));
    }
    for (i, h) in input.extra_audience.iter().enumerate() {
        match crate::context::parse_host(h) {
            Ok((host, _)) if h.len() <= 253 => {
                if !allowed_destination(&host) {
                    bad.push(FieldViolation::new(
                        format!("extra_audience[{i}]"),
                        "is neither in allowed_domains nor in handoff_destinations",
                    ));
                } else if !audience.contains(&host) {
                    audience.push(host);
                }
            }
            _ => bad.push(FieldViolation::new(
                format!("extra_audience[{i}]"),
                "is not a host name",
            )),
        }
    }
    if input
        .ga_linker_tz
        .is_some_and(|tz| !(-840..=720).contains(&tz))
    {
        bad.push(FieldViolation::new(
            "ga_linker_timezone_offset",
            "must be a time-zone offset in minutes, -840 to 720",
        ));
    }
    if input
        .ga_linker_client_time_ms
        .is_some_and(|ms| ms.abs_diff(now.saturating_mul(1000)) > MAX_CLIENT_CLOCK_SKEW_MS)
    {
        bad.push(FieldViolation::new(
            "ga_linker_client_time_ms",
            "must be the visitor's Date.now() in milliseconds, within a day of the server's clock",
        ));
    }
    if !bad.is_empty() {
        return Err(ServiceError::Invalid(bad));
    }
    audience.truncate(token::MAX_AUDIENCE);
    Ok(Limits {
        ttl,
        passive_ttl,
        max_uses,
        audience,
    })
}

impl<S: Store> Service<S> {
    /// RecordHandoff: resolve the visitor here, seal a token for the
    /// destination, decorate the destination URL, and record the hand-off
    /// for the referrer bridge.
    pub async fn handoff(&self, input: HandoffInput) -> Result<Handoff, ServiceError> {
        let now = self.now();
        let limits = check(self, &input, now)?;
        let req = Parsed::new(&input.ctx);
        let page_view = ResolveInput {
            user: input.user.clone(),
            ..ResolveInput::page_view(input.ctx.clone())
        };
        let source = self
            .resolve_parsed(&req, &page_view, PRECEDENCE, now)
            .await?;
        let expires_at = now + i64::from(limits.ttl);
        // The source's consent travels with the token.
        let consent = source.consent;
        let (sealed, token_id, mut decorated) = evidence::token::write(
            &self.keys,
            &self.settings,
            &input.destination,
            evidence::token::Issue {
                identity: &source.identity,
                now,
                expires_at,
                passive_expires_at: now + i64::from(limits.passive_ttl),
                max_uses: limits.max_uses as u8,
                consent,
                adopted: source.adopted,
                linked: source.identity.user_id.is_some(),
                bind_user_agent: input
                    .bind_user_agent
                    .then_some(input.ctx.user_agent.as_str()),
                audience: &limits.audience,
            },
        );
        if consent.analytics == Consent::Granted {
            let clock = linker::BrowserClock {
                tz_offset: input.ga_linker_tz,
                now_ms: input.ga_linker_client_time_ms,
            };
            decorated = linker::write(
                &decorated,
                &req,
                &source.identity,
                clock,
                consent.ads_allowed(),
                now,
            );
            bridge::write(
                &self.cx(now),
                &req,
                &source.identity,
                &limits.audience,
                token_id,
            )
            .await?;
        }
        Ok(Handoff {
            token: sealed,
            decorated_url: decorated.into(),
            expires_at,
            passive_expires_at: now + i64::from(limits.passive_ttl),
            source,
        })
    }
}
