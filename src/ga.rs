//! Google Analytics 4's own first-party cookies, read so that adopting
//! sessionbridge never resets the ids a site's GA4 history is keyed on.
//!
//! `_ga` holds the client id: `GA1.<domain depth>.<random>.<unix seconds>`.
//! `_ga_<container>` holds the session, in one of two formats:
//! - `GS1.1.<session id>.<session number>.<engaged>.<last hit>.<…>`;
//! - `GS2.1.s<session id>$o<session number>$g<engaged>$t<last hit>$…`.
//!
//! Both are written by JavaScript and so are not signed: values are checked
//! for shape, digit counts and plausible times, and anything else is
//! ignored with a reason rather than trusted.

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
    #[error("not a GS1 or GS2 session cookie")]
    Session,
    #[error("timestamps are implausible (in the future, or before GA4 existed)")]
    Time,
}

/// Earliest plausible GA timestamp (2005-01-01): older values are forged.
const EARLIEST: i64 = 1_104_537_600;
/// Tolerated clock skew for timestamps in the future.
const SKEW: i64 = 86_400;

fn digits(s: &str, max: usize) -> Option<u64> {
    (!s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Reads the client id from a `_ga` cookie value.
pub fn parse_client_id(value: &str, now: i64) -> Result<ClientId, GaCookieError> {
    let parts: Vec<&str> = value.split('.').collect();
    let [version, depth, random, created] = parts[..] else {
        return Err(GaCookieError::ClientId);
    };
    if !version.starts_with("GA")
        || !version.ends_with('1')
        || version.len() != 3
        || digits(depth, 2).is_none()
    {
        return Err(GaCookieError::ClientId);
    }
    let id: ClientId = format!("{random}.{created}")
        .parse()
        .map_err(|_| GaCookieError::ClientId)?;
    if id.random() == 0 {
        return Err(GaCookieError::ClientId);
    }
    if id.created() < EARLIEST || id.created() > now + SKEW {
        return Err(GaCookieError::Time);
    }
    Ok(id)
}

/// Reads the session from a `_ga_<container>` cookie value (GS1 or GS2).
pub fn parse_session(value: &str, now: i64) -> Result<GaSession, GaCookieError> {
    let (session_id, number, last_hit) = if let Some(rest) = value.strip_prefix("GS1.1.") {
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() < 4 {
            return Err(GaCookieError::Session);
        }
        (
            digits(parts[0], 10),
            digits(parts[1], 10),
            digits(parts[3], 10),
        )
    } else if let Some(rest) = value.strip_prefix("GS2.1.") {
        let mut s = None;
        let mut o = None;
        let mut t = None;
        for field in rest.split('$') {
            let (key, v) = field.split_at(field.len().min(1));
            match key {
                "s" => s = digits(v, 10),
                "o" => o = digits(v, 10),
                "t" => t = digits(v, 10),
                _ => {}
            }
        }
        (s, o, t)
    } else {
        return Err(GaCookieError::Session);
    };
    let (Some(session_id), Some(number), Some(last_hit)) = (session_id, number, last_hit) else {
        return Err(GaCookieError::Session);
    };
    let (session_id, last_hit) = (session_id as i64, last_hit as i64);
    let number = u32::try_from(number).map_err(|_| GaCookieError::Session)?;
    if number == 0 {
        return Err(GaCookieError::Session);
    }
    if session_id < EARLIEST || last_hit < session_id || last_hit > now + SKEW {
        return Err(GaCookieError::Time);
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
        assert_eq!(parse_client_id("GA1.1.5.99", NOW), Err(GaCookieError::Time));
        assert_eq!(
            parse_client_id("GA1.1.5.1900000000", NOW),
            Err(GaCookieError::Time)
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
        for bad in [
            "GS3.1.s1$o1$t1",
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
        assert!(is_session_cookie("_ga_ABC123XYZ"));
        assert!(
            !is_session_cookie("_ga")
                && !is_session_cookie("_ga_")
                && !is_session_cookie("_ga_a-b")
        );
    }
}
