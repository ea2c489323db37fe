//! Google Analytics 4's own first-party cookies, read so that adopting
//! sessionbridge never resets the ids a site's GA4 history is keyed on.
//!
//! `_ga` holds the client id: `GA1.<domain depth>[-<path depth>].<random>.
//! <unix seconds>` (older code also wrote the version as plain `1`).
//! `_ga_<container>` holds the session, in one of two formats:
//! - `GS1.<depth>.<session id>.<session number>.<engaged>.<last hit>.<…>`;
//! - `GS2.<depth>.s<session id>$o<session number>$g<engaged>$t<last hit>$…`.
//!
//! Both are written by JavaScript and so are not signed: values are checked
//! for shape, digit counts and plausible times, and anything else is
//! ignored with a reason rather than trusted. An id is taken exactly as
//! written or not at all: the service keeps ids as numbers, so a spelling
//! it could not give back byte for byte (leading zeros) is refused rather
//! than silently changed.
//!
//! [`linker`] is the `_gl` cross-domain parameter that carries these
//! values from one site to another.

pub mod linker;

use crate::identity::ClientId;

/// The session part of a `_ga_<container>` cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaSession {
    pub session_id: i64,
    pub session_number: u32,
    pub last_hit: i64,
}

/// Why a GA cookie was not adopted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GaCookieError {
    #[error("not a GA1 client id cookie (GA1.<n>.<random>.<timestamp>)")]
    ClientId,
    #[error(
        "the client id is spelled with leading zeros, which the service cannot keep byte for byte"
    )]
    Spelling,
    #[error("not a GS1 or GS2 session cookie")]
    Session,
    #[error("timestamps are implausible (before GA4 existed, or out of order)")]
    Time,
    #[error("a timestamp lies in the future: the visitor's clock is not trusted")]
    Future,
}

/// Earliest plausible GA timestamp (2005-01-01): older values are forged.
const EARLIEST: i64 = 1_104_537_600;
/// Tolerated clock skew for timestamps in the future: times from the
/// visitor never stretch a lifetime by more than this.
pub const SKEW: i64 = 300;

fn digits(s: &str, max: usize) -> Option<u64> {
    (!s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// The `<domain depth>[-<path depth>]` field of a versioned GA cookie.
fn is_depth(field: &str) -> bool {
    match field.split_once('-') {
        Some((domain, path)) => digits(domain, 3).is_some() && digits(path, 3).is_some(),
        None => digits(field, 3).is_some(),
    }
}

/// A client id from its two parts, refused unless it gives them back
/// exactly as written.
fn client_id_from_parts(random: &str, created: &str, now: i64) -> Result<ClientId, GaCookieError> {
    let id: ClientId = format!("{random}.{created}")
        .parse()
        .map_err(|_| GaCookieError::ClientId)?;
    if id.random() == 0 {
        return Err(GaCookieError::ClientId);
    }
    if id.random().to_string() != random || id.created().to_string() != created {
        return Err(GaCookieError::Spelling);
    }
    if id.created() < EARLIEST {
        return Err(GaCookieError::Time);
    }
    if id.created() > now + SKEW {
        return Err(GaCookieError::Future);
    }
    Ok(id)
}

/// Reads the client id from a `_ga` cookie value: `GA1.` (or `1.`), the
/// domain depth with an optional path depth (`2`, `2-3`), then the id.
pub fn parse_client_id(value: &str, now: i64) -> Result<ClientId, GaCookieError> {
    let parts: Vec<&str> = value.split('.').collect();
    let [version, depth, random, created] = parts[..] else {
        return Err(GaCookieError::ClientId);
    };
    if !matches!(version, "GA1" | "1") || !is_depth(depth) {
        return Err(GaCookieError::ClientId);
    }
    client_id_from_parts(random, created, now)
}

/// Reads a client id as a `_gl` link carries it: `<random>.<seconds>`,
/// without the cookie's `GA1.<depth>.` prefix.
pub fn parse_client_link(value: &str, now: i64) -> Result<ClientId, GaCookieError> {
    let (random, created) = value.split_once('.').ok_or(GaCookieError::ClientId)?;
    client_id_from_parts(random, created, now)
}

/// The two session cookie formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionFormat {
    /// `GS1`: dot-separated fields in a fixed order.
    Dotted,
    /// `GS2`: `$`-separated fields, each a letter and a value.
    Keyed,
}

/// A session cookie split into its format and the part after the
/// `GS<n>.<depth>.` prefix.
fn session_body(value: &str) -> Option<(SessionFormat, &str)> {
    let mut parts = value.splitn(3, '.');
    let (version, depth, body) = (parts.next()?, parts.next()?, parts.next()?);
    let format = match version {
        "GS1" => SessionFormat::Dotted,
        "GS2" => SessionFormat::Keyed,
        _ => return None,
    };
    is_depth(depth).then_some((format, body))
}

/// Reads the session from a `_ga_<container>` cookie value (GS1 or GS2).
pub fn parse_session(value: &str, now: i64) -> Result<GaSession, GaCookieError> {
    let (format, body) = session_body(value).ok_or(GaCookieError::Session)?;
    parse_session_body(format, body, now)
}

/// The value a `_gl` link carries for a `_ga_<container>` cookie: the
/// cookie without its `GS<n>.<depth>.` prefix (the receiving gtag.js
/// writes its own), or None when the cookie is not a session GA4 reads.
pub fn session_link_value(cookie: &str, now: i64) -> Option<&str> {
    let (format, body) = session_body(cookie)?;
    parse_session_body(format, body, now).ok().map(|_| body)
}

/// Reads a session as a `_gl` link carries it (the cookie without its
/// prefix); the format shows in the value: GS2's starts with a field
/// letter (`s…$o…`), GS1's with the session id's digits.
pub fn parse_session_link(value: &str, now: i64) -> Result<GaSession, GaCookieError> {
    let format = if value.starts_with(|c: char| c.is_ascii_alphabetic()) {
        SessionFormat::Keyed
    } else {
        SessionFormat::Dotted
    };
    parse_session_body(format, value, now)
}

fn parse_session_body(
    format: SessionFormat,
    body: &str,
    now: i64,
) -> Result<GaSession, GaCookieError> {
    let (session_id, number, last_hit) = match format {
        SessionFormat::Dotted => {
            let parts: Vec<&str> = body.split('.').collect();
            if parts.len() < 4 {
                return Err(GaCookieError::Session);
            }
            (
                digits(parts[0], 10),
                digits(parts[1], 10),
                digits(parts[3], 10),
            )
        }
        SessionFormat::Keyed => {
            let mut s = None;
            let mut o = None;
            let mut t = None;
            for field in body.split('$') {
                // The first character is the key; it may be any character,
                // multi-byte ones included.
                let key_len = field.chars().next().map_or(0, char::len_utf8);
                let (key, v) = field.split_at(key_len);
                match key {
                    "s" => s = digits(v, 10),
                    "o" => o = digits(v, 10),
                    "t" => t = digits(v, 10),
                    _ => {}
                }
            }
            (s, o, t)
        }
    };
    let (Some(session_id), Some(number), Some(last_hit)) = (session_id, number, last_hit) else {
        return Err(GaCookieError::Session);
    };
    let (session_id, last_hit) = (session_id as i64, last_hit as i64);
    let number = u32::try_from(number).map_err(|_| GaCookieError::Session)?;
    if number == 0 {
        return Err(GaCookieError::Session);
    }
    if session_id < EARLIEST || last_hit < session_id {
        return Err(GaCookieError::Time);
    }
    if last_hit > now + SKEW {
        return Err(GaCookieError::Future);
    }
    Ok(GaSession {
        session_id,
        session_number: number,
        last_hit,
    })
}

/// Whether `name` is a GA4 session cookie (`_ga_` and a container id).
pub fn is_session_cookie(name: &str) -> bool {
    name.strip_prefix("_ga_").is_some_and(|c| {
        !c.is_empty() && c.len() <= 32 && c.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000;

    #[test]
    fn client_ids() {
        let id = parse_client_id("GA1.1.1360384851.1661821242", NOW).unwrap();
        assert_eq!(id.to_string(), "1360384851.1661821242");
        assert_eq!(
            parse_client_id("GA1.2.98765.1700000000", NOW)
                .unwrap()
                .to_string(),
            "98765.1700000000"
        );
        for bad in [
            "",
            "GA1.1.abc.1700000000",
            "GA1.1.1.2.3",
            "GA2.1.1.1700000000",
            "GA1.1.0.1700000000",
            "GA1.1.12345678901.1700000000",
            "GA1.1.1.1700000000 ",
        ] {
            assert_eq!(
                parse_client_id(bad, NOW),
                Err(GaCookieError::ClientId),
                "{bad:?}"
            );
        }
        // Every prefix Google's code writes: the older plain `1` version,
        // and a path depth after the domain depth.
        for (cookie, id) in [
            ("1.2.98765.1700000000", "98765.1700000000"),
            ("GA1.2-2.98765.1700000000", "98765.1700000000"),
            ("GA1.3-12.2147483647.1700000000", "2147483647.1700000000"),
        ] {
            assert_eq!(
                parse_client_id(cookie, NOW).unwrap().to_string(),
                id,
                "{cookie}"
            );
        }
        for bad in [
            "GA1.2-.1.1700000000",
            "GA1.-2.1.1700000000",
            "GA1.x.1.1700000000",
        ] {
            assert_eq!(
                parse_client_id(bad, NOW),
                Err(GaCookieError::ClientId),
                "{bad:?}"
            );
        }
        // An id is kept exactly as written or not at all.
        for respelled in ["GA1.1.0123.1700000000", "GA1.1.123.01700000"] {
            assert_eq!(
                parse_client_id(respelled, NOW),
                Err(GaCookieError::Spelling),
                "{respelled:?}"
            );
        }
        assert_eq!(
            parse_client_link("1360384851.1661821242", NOW)
                .unwrap()
                .to_string(),
            "1360384851.1661821242"
        );
        assert_eq!(
            parse_client_link("007.1661821242", NOW),
            Err(GaCookieError::Spelling)
        );
        assert_eq!(
            parse_client_link("GA1.1.7.1661821242", NOW),
            Err(GaCookieError::ClientId)
        );
        assert_eq!(parse_client_id("GA1.1.5.99", NOW), Err(GaCookieError::Time));
        assert_eq!(
            parse_client_id("GA1.1.5.1900000000", NOW),
            Err(GaCookieError::Future)
        );
    }

    #[test]
    fn sessions_in_both_formats() {
        let s = GaSession {
            session_id: 1_794_999_000,
            session_number: 7,
            last_hit: 1_794_999_500,
        };
        assert_eq!(
            parse_session("GS1.1.1794999000.7.1.1794999500.0.0.0", NOW),
            Ok(s)
        );
        assert_eq!(
            parse_session("GS2.1.s1794999000$o7$g1$t1794999500$j60$l0$h0", NOW),
            Ok(s)
        );
        assert_eq!(
            parse_session("GS2.1.s1794999000$o7$g0$t1794999500", NOW),
            Ok(s)
        );
        assert_eq!(
            parse_session("GS2.2-3.s1794999000$o7$g1$t1794999500", NOW),
            Ok(s),
            "a path depth"
        );
        // A link carries the cookie without its prefix; the value shows
        // which format it is.
        assert_eq!(
            session_link_value("GS1.1.1794999000.7.1.1794999500.0.0.0", NOW),
            Some("1794999000.7.1.1794999500.0.0.0")
        );
        assert_eq!(
            session_link_value("GS2.1.s1794999000$o7$g1$t1794999500$j60$l0$h0", NOW),
            Some("s1794999000$o7$g1$t1794999500$j60$l0$h0")
        );
        assert_eq!(session_link_value("GS2.1.s1$o7", NOW), None);
        assert_eq!(
            parse_session_link("1794999000.7.1.1794999500.0.0.0", NOW),
            Ok(s)
        );
        assert_eq!(
            parse_session_link("s1794999000$o7$g1$t1794999500$j60$l0$h0", NOW),
            Ok(s)
        );
        for bad in [
            "GS3.1.s1$o1$t1",
            "GS2.x.s1794999000$o7$g1$t1794999500",
            "GS2.1.$o7$t1794999500",
            "GS1.1.1794999000.x.1.1794999500",
            "GS2.1.s1794999000$o0$t1794999500",
        ] {
            assert_eq!(
                parse_session(bad, NOW),
                Err(GaCookieError::Session),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_session("GS2.1.s1794999000$o7$t1794998000", NOW),
            Err(GaCookieError::Time),
            "last hit before start"
        );
        // A last hit beyond the tolerated skew never stretches a lifetime.
        let future = format!("GS2.1.s1794999000$o7$t{}", NOW + SKEW + 1);
        assert_eq!(parse_session(&future, NOW), Err(GaCookieError::Future));
        let skewed = format!("GS2.1.s1794999000$o7$t{}", NOW + SKEW);
        assert!(parse_session(&skewed, NOW).is_ok());
        // A multi-byte key character used to panic (found by the ga_values
        // fuzz target).
        assert_eq!(
            parse_session("GS2.1.(ss\u{1}$\u{30c}11$ss", NOW),
            Err(GaCookieError::Session)
        );
        assert!(is_session_cookie("_ga_ABC123XYZ"));
        assert!(
            !is_session_cookie("_ga")
                && !is_session_cookie("_ga_")
                && !is_session_cookie("_ga_a-b")
        );
    }
}
