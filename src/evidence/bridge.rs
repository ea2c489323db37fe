//! The referrer bridge (forgeable), the seed's approach 2: a visitor who
//! arrives with no cookie and no parameter, referred by a site that
//! recorded a hand-off moments ago from the same User-Agent and network.
//!
//! A heuristic: two people behind one NAT with identical browsers,
//! arriving within the window, could be confused. Confidence falls with
//! the age of the hand-off, and is lower without a client IP. Its writer
//! records the hand-off under a keyed fingerprint.

use std::net::IpAddr;

use hmac::Mac;

use crate::context::RequestContext;
use crate::identity::{Identity, Method, Rejected, Rejection};
use crate::keys::Keyring;
use crate::request::Parsed;
use crate::store::{BridgeEntry, Store, StoreError};

use super::{site_of, Cx, Found};

/// The client's network, coarse enough not to identify a person: /24 for
/// IPv4, /48 for IPv6. Only ever hashed.
pub fn network_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

/// The bridge key: the source site, the destination site, the browser and
/// its network, hashed together under the pepper.
fn key(keys: &Keyring, source_site: &str, dest_site: &str, ctx: &RequestContext) -> [u8; 32] {
    let mut mac = keys.fingerprint.start();
    let net = ctx.client_ip.map(network_prefix).unwrap_or_default();
    for part in ["bridge", source_site, dest_site, &ctx.user_agent, &net] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    mac.finalize().into_bytes().into()
}

pub async fn read<S: Store>(
    cx: &Cx<'_, S>,
    req: &Parsed<'_>,
    rejected: &mut Vec<Rejected>,
) -> Result<Option<Found>, StoreError> {
    let ctx = req.ctx;
    let window = i64::from(cx.settings.bridge_window_secs);
    // Without the visitor's network the key is the browser alone, shared
    // by everyone with the same User-Agent: no bridge.
    if window == 0 || ctx.user_agent.is_empty() || ctx.client_ip.is_none() {
        return Ok(None);
    }
    let Some(referer) = req.referer_host() else {
        return Ok(None);
    };
    let source = site_of(referer);
    let dest = site_of(&ctx.host);
    if source == dest {
        return Ok(None);
    }
    let Some(entry) = cx
        .store
        .take_bridge(key(cx.keys, &source, &dest, ctx), cx.now)
        .await?
    else {
        return Ok(None);
    };
    if entry.ambiguous {
        rejected.push(Rejected::new(
            Method::ReferrerBridge,
            Rejection::Conflict,
            "two visitors with this browser and network left the referring site within the window: nobody is matched",
        ));
        return Ok(None);
    }
    if cx.store.is_erased(entry.identity.client_id, cx.now).await? {
        rejected.push(Rejected::new(
            Method::ReferrerBridge,
            Rejection::NotFound,
            crate::store::ERASED_DETAIL,
        ));
        return Ok(None);
    }
    let age = (cx.now - entry.created_at).clamp(0, window);
    let confidence = 0.9 - 0.3 * (age as f64 / window as f64);
    super::forgeable(
        cx,
        entry.identity,
        Method::ReferrerBridge,
        confidence,
        rejected,
    )
    .await
}

/// Records a hand-off from the request's site to each other site among
/// `audience_hosts`, for an arrival that comes without the link's
/// parameters. The entry holds analytics ids only, never a user; without
/// the visitor's network nothing is recorded.
pub async fn write<S: Store>(
    cx: &Cx<'_, S>,
    req: &Parsed<'_>,
    identity: &Identity,
    audience_hosts: &[String],
    token_id: [u8; 16],
) -> Result<(), StoreError> {
    let ctx = req.ctx;
    let window = cx.settings.bridge_window_secs;
    if window == 0 || ctx.user_agent.is_empty() || ctx.client_ip.is_none() {
        return Ok(());
    }
    let source_site = site_of(&ctx.host);
    let mut dest_sites: Vec<String> = audience_hosts.iter().map(|h| site_of(h)).collect();
    dest_sites.dedup();
    let identity = Identity {
        user_id: None,
        ..identity.clone()
    };
    for dest in dest_sites.iter().filter(|d| **d != source_site) {
        let entry = BridgeEntry {
            identity: identity.clone(),
            destinations: vec![dest.clone()],
            created_at: cx.now,
            with_network: true,
            token_id,
            ambiguous: false,
        };
        cx.store
            .put_bridge(
                key(cx.keys, &source_site, dest, ctx),
                &entry,
                cx.now + i64::from(window),
            )
            .await?;
    }
    Ok(())
}
