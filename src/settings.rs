//! The settings the core reads, typed and checked, taken from the
//! configuration once.

use crate::config::Config;
use crate::cookie::AllowedDomains;
use crate::identity::{Consent, SessionPolicy};

/// The default base name of the own cookie (set as `__Secure-sbid` or
/// `__Host-sbid`).
pub const DEFAULT_COOKIE_BASE: &str = "sbid";
/// The own cookie's name before names were prefixed by scope; read once
/// and replaced.
pub const LEGACY_COOKIE_NAME: &str = "_sbid";

/// The settings the core needs, taken from the configuration once.
#[derive(Clone, Debug)]
pub struct Settings {
    pub policy: SessionPolicy,
    pub allowed: AllowedDomains,
    pub cookie_name: String,
    /// The own cookie's names, most trusted first (see
    /// `evidence::own_cookie::names`), made once.
    pub cookie_names: Vec<String>,
    pub identity_ttl_secs: i64,
    /// How long the record of a first visit with no verified evidence lives
    /// until the visitor's second hit extends it to `identity_ttl_secs`.
    pub first_visit_ttl_secs: i64,
    /// A hit that changes nothing but the last-hit time is written only
    /// when the stored time is at least this old.
    pub touch_write_secs: i64,
    pub ga_cookie: bool,
    pub default_consent: Consent,
    pub user_history: usize,
    pub handoff_param: String,
    pub handoff_default_ttl_secs: u32,
    pub handoff_max_ttl_secs: u32,
    pub handoff_max_uses: u32,
    pub handoff_passive_ttl_secs: u32,
    /// Global Privacy Control denies analytics storage too.
    pub gpc_denies_analytics: bool,
    pub bridge_window_secs: u32,
    pub session_id_param: String,
    /// Referrers a raw session id is accepted from; empty: feature off.
    pub session_id_referrers: AllowedDomains,
    /// External sites hand-offs may go to, beside `allowed`.
    pub handoff_destinations: AllowedDomains,
}

/// Added to the longest lifetime of a token or bridge entry for the
/// tombstone of an erased client: sidecars' clocks may disagree a little.
pub const TOMBSTONE_MARGIN_SECS: i64 = 3600;

impl Settings {
    /// How long an erased client stays refused: past the longest a token
    /// issued before the erasure may still be redeemed
    /// (`handoff_max_ttl_secs`) or read by a passive call
    /// (`handoff_passive_ttl_secs`), and past the bridge window.
    pub fn tombstone_secs(&self) -> i64 {
        let longest = self
            .handoff_max_ttl_secs
            .max(self.handoff_passive_ttl_secs)
            .max(self.bridge_window_secs);
        i64::from(longest) + TOMBSTONE_MARGIN_SECS
    }

    /// The settings of a configuration, which it checks first: the values
    /// that need parsing come parsed from [`Config::check`].
    pub fn from_config(cfg: &Config) -> anyhow::Result<Self> {
        let checked = cfg.check()?;
        Ok(Self {
            policy: SessionPolicy {
                timeout_secs: cfg.session_timeout_secs as i64,
            },
            allowed: checked.allowed_domains,
            cookie_name: cfg.cookie_name.clone(),
            cookie_names: crate::evidence::own_cookie::names_for_base(&cfg.cookie_name),
            identity_ttl_secs: cfg.identity_ttl_secs(),
            first_visit_ttl_secs: (cfg.first_visit_ttl_secs as i64).min(cfg.identity_ttl_secs()),
            touch_write_secs: cfg.touch_write_secs.min(cfg.session_timeout_secs / 10) as i64,
            ga_cookie: cfg.ga_cookie,
            default_consent: cfg.default_consent,
            user_history: cfg.user_history,
            handoff_param: cfg.handoff_param.clone(),
            handoff_default_ttl_secs: cfg.handoff_default_ttl_secs,
            handoff_max_ttl_secs: cfg.handoff_max_ttl_secs,
            handoff_max_uses: cfg.handoff_max_uses,
            handoff_passive_ttl_secs: cfg.handoff_passive_ttl_secs,
            gpc_denies_analytics: cfg.gpc_denies_analytics,
            bridge_window_secs: cfg.bridge_window_secs,
            session_id_param: cfg.session_id_param.clone(),
            session_id_referrers: checked.session_id_param_referrers,
            handoff_destinations: checked.handoff_destinations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tombstone outlives every token and bridge entry issued before the
    /// erasure: the longest of their lifetimes, plus the margin.
    #[test]
    fn tombstones_outlive_every_token_and_bridge_entry() {
        let lasts = |cfg: Config| Settings::from_config(&cfg).unwrap().tombstone_secs();
        assert_eq!(lasts(Config::default()), 86_400 + TOMBSTONE_MARGIN_SECS);
        let passive = crate::token::MAX_PASSIVE_TTL_SECS;
        assert_eq!(
            lasts(Config {
                handoff_passive_ttl_secs: passive,
                ..Default::default()
            }),
            i64::from(passive) + TOMBSTONE_MARGIN_SECS
        );
        assert_eq!(
            lasts(Config {
                handoff_max_ttl_secs: 60 * 86_400,
                handoff_passive_ttl_secs: 600,
                bridge_window_secs: 0,
                ..Default::default()
            }),
            60 * 86_400 + TOMBSTONE_MARGIN_SECS
        );
    }
}
