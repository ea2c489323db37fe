//! Cookies: reading the raw Cookie header, the service's own signed identity
//! cookie, the scope a cookie may be set on, and ready Set-Cookie headers.
//!
//! The own cookie carries the whole identity state (client id, session id,
//! session number, last hit), signed with HMAC-SHA256 under the current key
//! and bound to the domain it was set on. So a sidecar that has never seen
//! the visitor (another subdomain, a fresh replica) continues the same
//! session from the cookie alone, and a value copied to another site or
//! edited by hand is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::identity::{clamp_u32, ClientId, Identity, Rejection};
use crate::keys::Keyring;

/// The longest cookie lifetime browsers honour (Chrome caps at 400 days).
pub const MAX_COOKIE_AGE_SECS: i64 = 400 * 24 * 3600;

const VERSION: &str = "S1";
/// Bytes of the HMAC-SHA256 tag kept in the cookie (128 bits).
const TAG_LEN: usize = 16;

/// Where a cookie is set: on the registrable domain (shared by every
/// subdomain) or on the exact host only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieScope {
    /// `Domain=<registrable domain>`.
    Domain(String),
    /// No Domain attribute: the browser sends it back to this host only.
    HostOnly(String),
}

impl CookieScope {
    /// The name the signature is bound to.
    pub fn bound_name(&self) -> &str {
        match self {
            CookieScope::Domain(d) | CookieScope::HostOnly(d) => d,
        }
    }
}

/// The configured set of domains on which cookies may be set.
///
/// Each entry admits itself and every subdomain. An empty list admits every
/// host with host-only cookies (development); a non-empty list refuses hosts
/// outside it.
#[derive(Debug, Clone, Default)]
pub struct AllowedDomains(Vec<String>);

/// A host outside the allowlist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host {0:?} is not in allowed_domains")]
pub struct HostNotAllowed(pub String);

fn covers(entry: &str, host: &str) -> bool {
    host == entry
        || (host.len() > entry.len()
            && host.ends_with(entry)
            && host.as_bytes()[host.len() - entry.len() - 1] == b'.')
}

impl AllowedDomains {
    /// Builds the list; entries are lower-cased and a leading dot dropped.
    pub fn new(entries: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut out = Vec::new();
        for e in entries {
            let e = e.trim().trim_start_matches('.').to_ascii_lowercase();
            match crate::context::parse_host(&e) {
                Ok((d, true)) if d == e => out.push(d),
                _ => return Err(format!("allowed_domains entry {e:?} is not a domain name")),
            }
        }
        Ok(Self(out))
    }

    /// True when the list is empty (every host, host-only cookies).
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `host` is covered by an entry.
    pub fn allows(&self, host: &str) -> bool {
        self.is_open() || self.0.iter().any(|e| covers(e, host))
    }

    /// The configured entry that covers `host` (the longest), if any.
    pub fn entry_for(&self, host: &str) -> Option<&str> {
        self.0
            .iter()
            .filter(|e| covers(e, host))
            .max_by_key(|e| e.len())
            .map(String::as_str)
    }

    /// The scope for a cookie set on a response from `host`: the registrable
    /// domain (from the public suffix list) when the allowlist covers it,
    /// otherwise host-only. Never a public suffix, never an IP.
    pub fn scope(&self, host: &str, host_is_domain: bool) -> Result<CookieScope, HostNotAllowed> {
        if !self.allows(host) {
            return Err(HostNotAllowed(host.to_string()));
        }
        if host_is_domain && !self.is_open() {
            if let Some(site) = psl::domain_str(host) {
                if self.0.iter().any(|e| covers(e, site)) {
                    return Ok(CookieScope::Domain(site.to_string()));
                }
            }
        }
        Ok(CookieScope::HostOnly(host.to_string()))
    }

    /// Every scope a cookie received from `host` may have been set with, in
    /// the order to try them.
    pub fn candidate_scopes(&self, host: &str, host_is_domain: bool) -> Vec<String> {
        let mut out = vec![];
        if host_is_domain {
            if let Some(site) = psl::domain_str(host) {
                out.push(site.to_string());
            }
        }
        if !out.iter().any(|s| s == host) {
            out.push(host.to_string());
        }
        out
    }
}

/// The values of every cookie called `name` in a raw Cookie header. A header
/// may hold several (a host-only and a domain cookie of the same name); pairs
/// that do not parse are skipped, as browsers skip them.
pub fn values_named<'a>(header: &'a str, name: &str) -> Vec<&'a str> {
    pairs(header)
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .collect()
}

/// Every `(name, value)` pair of a raw Cookie header that parses.
pub fn pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(';').filter_map(|pair| {
        let pair = pair.trim();
        cookie::Cookie::parse(pair).ok()?;
        let (name, value) = pair.split_once('=')?;
        Some((name.trim(), value.trim().trim_matches('"')))
    })
}

fn mac(key: &crate::keys::Key, scope: &str, cookie_name: &str, payload: &str) -> Hmac<Sha256> {
    let mut mac = key.cookie_mac.start();
    for part in [scope, cookie_name, payload] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    mac
}

/// Writes the signed own-cookie value for `identity`, bound to `scope`.
pub fn seal_identity(
    keys: &Keyring,
    scope: &CookieScope,
    cookie_name: &str,
    id: &Identity,
) -> String {
    let key = keys.current();
    let payload = format!(
        "{VERSION}.{}.{}.{}.{}.{}.{}",
        key.id,
        id.client_id.random(),
        id.client_id.created(),
        clamp_u32(id.session_id),
        id.session_number,
        clamp_u32(id.last_seen),
    );
    let full = mac(key, scope.bound_name(), cookie_name, &payload)
        .finalize()
        .into_bytes();
    format!("{payload}.{}", B64.encode(&full[..TAG_LEN]))
}

/// Reads a signed own-cookie value, trying each scope it may have been set
/// on. The identity has no user id: that lives in the store.
pub fn open_identity(
    keys: &Keyring,
    scopes: &[String],
    cookie_name: &str,
    value: &str,
) -> Result<Identity, Rejection> {
    if value.len() > 128 {
        return Err(Rejection::Malformed);
    }
    let (payload, tag_b64) = value.rsplit_once('.').ok_or(Rejection::Malformed)?;
    let parts: Vec<&str> = payload.split('.').collect();
    let [version, kid, random, created, session_id, session_number, last_seen] = parts[..] else {
        return Err(Rejection::Malformed);
    };
    if version != VERSION {
        return Err(Rejection::Malformed);
    }
    let number = |s: &str| -> Result<u32, Rejection> {
        if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Rejection::Malformed);
        }
        s.parse().map_err(|_| Rejection::Malformed)
    };
    let fields = [
        number(random)?,
        number(created)?,
        number(session_id)?,
        number(session_number)?,
        number(last_seen)?,
    ];
    let given = B64.decode(tag_b64).map_err(|_| Rejection::Malformed)?;
    if given.len() != TAG_LEN {
        return Err(Rejection::Malformed);
    }
    let key = keys.get(kid).ok_or(Rejection::UnknownKey)?;
    // verify_truncated_left compares in constant time.
    let verified = scopes.iter().any(|scope| {
        mac(key, scope, cookie_name, payload)
            .verify_truncated_left(&given)
            .is_ok()
    });
    if !verified {
        return Err(Rejection::BadSeal);
    }
    let [random, created, session_id, session_number, last_seen] = fields;
    if random == 0 || session_number == 0 {
        return Err(Rejection::Malformed);
    }
    Ok(Identity {
        client_id: ClientId::from_parts(random, created),
        session_id: i64::from(session_id),
        session_number,
        user_id: None,
        last_seen: i64::from(last_seen),
    })
}

/// How a Set-Cookie header is built.
#[derive(Debug, Clone)]
pub struct SetCookie {
    pub name: String,
    pub value: String,
    /// The Domain attribute; None for host-only.
    pub domain: Option<String>,
    pub path: String,
    pub max_age_secs: i64,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: cookie::SameSite,
}

impl SetCookie {
    /// An identity cookie with the product's defaults: Path=/, Secure,
    /// SameSite=Lax, Max-Age capped at 400 days.
    pub fn new(
        name: &str,
        value: String,
        scope: &CookieScope,
        max_age_secs: i64,
        http_only: bool,
    ) -> Self {
        Self {
            name: name.to_string(),
            value,
            domain: match scope {
                CookieScope::Domain(d) => Some(d.clone()),
                CookieScope::HostOnly(_) => None,
            },
            path: "/".into(),
            max_age_secs: max_age_secs.clamp(0, MAX_COOKIE_AGE_SECS),
            secure: true,
            http_only,
            same_site: cookie::SameSite::Lax,
        }
    }

    /// The value of a `Set-Cookie:` header.
    pub fn header(&self) -> String {
        let mut b = cookie::Cookie::build((self.name.as_str(), self.value.as_str()))
            .path(self.path.as_str())
            .max_age(cookie::time::Duration::seconds(self.max_age_secs))
            .secure(self.secure)
            .http_only(self.http_only)
            .same_site(self.same_site);
        if let Some(d) = &self.domain {
            b = b.domain(d.as_str());
        }
        b.build().to_string()
    }
}

/// The `_ga` cookie value gtag.js reads: `GA1.<n>.<client id>`, where n is
/// the number of labels of the domain the cookie is set on.
pub fn ga_cookie_value(scope: &CookieScope, client_id: &ClientId) -> String {
    let labels = scope.bound_name().split('.').count();
    format!("GA1.{labels}.{client_id}")
}

/// True for a valid cookie name (an RFC 6265 token of letters, digits and
/// `_-`), as configured names must be.
pub fn valid_cookie_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> (tempfile::TempDir, Keyring) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        crate::keys::generate(&p, "k1").unwrap();
        let ring = Keyring::load(&p).unwrap();
        (dir, ring)
    }

    fn sample() -> Identity {
        Identity {
            client_id: ClientId::from_parts(123456789, 1_700_000_000),
            session_id: 1_700_000_100,
            session_number: 3,
            user_id: None,
            last_seen: 1_700_000_200,
        }
    }

    #[test]
    fn round_trip_and_binding() {
        let (_d, keys) = ring();
        let scope = CookieScope::Domain("example.com".into());
        let v = seal_identity(&keys, &scope, "_sbid", &sample());
        assert_eq!(
            open_identity(&keys, &["example.com".into()], "_sbid", &v),
            Ok(sample())
        );
        // Copied to another site, or renamed: refused.
        assert_eq!(
            open_identity(&keys, &["other.com".into()], "_sbid", &v),
            Err(Rejection::BadSeal)
        );
        assert_eq!(
            open_identity(&keys, &["example.com".into()], "_x", &v),
            Err(Rejection::BadSeal)
        );
        // Any edited character is refused.
        for i in 0..v.len() {
            let mut b = v.clone().into_bytes();
            b[i] = if b[i] == b'1' { b'2' } else { b'1' };
            let edited = String::from_utf8(b).unwrap();
            assert!(
                open_identity(&keys, &["example.com".into()], "_sbid", &edited).is_err(),
                "{edited}"
            );
        }
    }

    #[test]
    fn scopes_follow_the_public_suffix_list() {
        let allowed =
            AllowedDomains::new(["example.co.uk".to_string(), "example.com".to_string()]).unwrap();
        assert_eq!(
            allowed.scope("shop.example.co.uk", true),
            Ok(CookieScope::Domain("example.co.uk".into()))
        );
        assert_eq!(
            allowed.scope("example.com", true),
            Ok(CookieScope::Domain("example.com".into()))
        );
        assert!(allowed.scope("evil.com", true).is_err());
        assert!(allowed.scope("notexample.com", true).is_err());
        // An entry below the registrable domain gives host-only cookies.
        let narrow = AllowedDomains::new(["shop.example.com".to_string()]).unwrap();
        assert_eq!(
            narrow.scope("shop.example.com", true),
            Ok(CookieScope::HostOnly("shop.example.com".into()))
        );
        // A public suffix is never a cookie domain.
        let io = AllowedDomains::new(["github.io".to_string()]).unwrap();
        assert_eq!(
            io.scope("github.io", true),
            Ok(CookieScope::HostOnly("github.io".into()))
        );
        assert_eq!(
            io.scope("me.github.io", true),
            Ok(CookieScope::Domain("me.github.io".into()))
        );
    }

    #[test]
    fn set_cookie_headers() {
        let c = SetCookie::new(
            "_sbid",
            "v".into(),
            &CookieScope::Domain("example.com".into()),
            10 * MAX_COOKIE_AGE_SECS,
            true,
        );
        let h = c.header();
        for part in [
            "_sbid=v",
            "Domain=example.com",
            "Path=/",
            "Max-Age=34560000",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
        ] {
            assert!(h.contains(part), "{h} lacks {part}");
        }
        assert_eq!(
            values_named("a=1; _sbid=x.y; junk; _sbid=\"z\"", "_sbid"),
            ["x.y", "z"]
        );
    }
}
