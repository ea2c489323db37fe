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
    if id.created() < EARLIEST {
        return Err(GaCookieError::Time);
    }
    if id.created() > now + SKEW {
        return Err(GaCookieError::Future);
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

/// The GA4 cross-domain linker parameter, `_gl`, as gtag.js writes it:
/// `1*<checksum>*<key>*<value>*…`, values base64 with `=` written as `.`,
/// checksum = base36(CRC32 of `<User-Agent>*<time-zone offset>*<language>*
/// <minute since epoch>*<key>*<value>*…`). gtag.js accepts the current
/// minute and the one before. The time-zone offset (JavaScript's
/// `getTimezoneOffset()`, minutes) is not in any header, so every real
/// offset is tried.
pub mod linker {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;

    use super::{parse_client_id, parse_session, GaSession};
    use crate::identity::ClientId;

    /// What a valid `_gl` carried.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Linked {
        pub client_id: ClientId,
        pub session: Option<GaSession>,
    }

    /// Why a `_gl` value was refused.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
    pub enum LinkerError {
        #[error("_gl is not `1*<checksum>*<key>*<value>...`")]
        Malformed,
        #[error("_gl checksum matches this browser at no time-zone offset in the current or previous minute (an old link, or another browser)")]
        Checksum,
        #[error("_gl carries no valid _ga client id")]
        NoClientId,
    }

    /// Time-zone offsets in use on Earth, in JavaScript's sign convention:
    /// from UTC+14 (-840) to UTC-12 (+720), in quarter hours.
    fn offsets() -> impl Iterator<Item = i32> {
        (-840..=720).step_by(15)
    }

    fn base36(mut n: u32) -> String {
        const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut out = Vec::new();
        loop {
            out.push(DIGITS[(n % 36) as usize]);
            n /= 36;
            if n == 0 {
                break;
            }
        }
        out.reverse();
        String::from_utf8(out).expect("ASCII digits")
    }

    /// The checksum gtag.js computes for these inputs.
    pub fn checksum(
        user_agent: &str,
        tz_offset: i32,
        language: &str,
        minute: i64,
        serialized: &str,
    ) -> String {
        let mut h = crc32fast::Hasher::new();
        h.update(format!("{user_agent}*{tz_offset}*{language}*{minute}*{serialized}").as_bytes());
        base36(h.finalize())
    }

    /// The first language of an Accept-Language header, as
    /// `navigator.language` reports it.
    pub fn primary_language(accept_language: &str) -> &str {
        accept_language
            .split(',')
            .next()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
    }

    fn encode_value(v: &str) -> String {
        B64.encode(v).replace('=', ".")
    }

    fn decode_value(v: &str) -> Option<String> {
        String::from_utf8(B64.decode(v.replace('.', "=")).ok()?).ok()
    }

    /// Writes a `_gl` value for this browser and minute.
    pub fn write(
        client_id: &ClientId,
        user_agent: &str,
        tz_offset: i32,
        language: &str,
        now: i64,
    ) -> String {
        let serialized = format!("_ga*{}", encode_value(&client_id.to_string()));
        let sum = checksum(
            user_agent,
            tz_offset,
            language,
            now.div_euclid(60),
            &serialized,
        );
        format!("1*{sum}*{serialized}")
    }

    /// Reads and verifies a `_gl` value against this request's browser.
    pub fn read(
        value: &str,
        user_agent: &str,
        language: &str,
        now: i64,
    ) -> Result<Linked, LinkerError> {
        if value.len() > 2048 {
            return Err(LinkerError::Malformed);
        }
        let parts: Vec<&str> = value.split('*').collect();
        if parts.len() < 4 || parts.len() % 2 != 0 || parts[0] != "1" {
            return Err(LinkerError::Malformed);
        }
        let sum = parts[1];
        if sum.is_empty()
            || sum.len() > 7
            || !sum
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        {
            return Err(LinkerError::Malformed);
        }
        let serialized = parts[2..].join("*");
        let minute = now.div_euclid(60);
        let valid = [minute, minute - 1].iter().any(|&m| {
            offsets().any(|tz| checksum(user_agent, tz, language, m, &serialized) == sum)
        });
        if !valid {
            return Err(LinkerError::Checksum);
        }
        let mut client_id = None;
        let mut session: Option<GaSession> = None;
        for pair in parts[2..].chunks_exact(2) {
            let Some(v) = decode_value(pair[1]) else {
                continue;
            };
            if pair[0] == "_ga" {
                client_id = parse_client_id(&format!("GA1.1.{v}"), now).ok();
            } else if super::is_session_cookie(pair[0]) {
                let full = if v.starts_with('s') {
                    format!("GS2.1.{v}")
                } else {
                    format!("GS1.1.{v}")
                };
                if let Ok(s) = parse_session(&full, now) {
                    if session.is_none_or(|b| s.last_hit > b.last_hit) {
                        session = Some(s);
                    }
                }
            }
        }
        Ok(Linked {
            client_id: client_id.ok_or(LinkerError::NoClientId)?,
            session,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trip_and_expiry() {
            let id: ClientId = "1360384851.1661821242".parse().unwrap();
            let ua = "Mozilla/5.0 (X11; Linux x86_64)";
            let now = 1_795_000_030;
            let gl = write(&id, ua, -120, "de-DE", now);
            assert!(
                gl.starts_with("1*") && gl.ends_with("*_ga*MTM2MDM4NDg1MS4xNjYxODIxMjQy"),
                "{gl}"
            );
            assert_eq!(read(&gl, ua, "de-DE", now).unwrap().client_id, id);
            assert_eq!(
                read(&gl, ua, "de-DE", now + 60).unwrap().client_id,
                id,
                "the next minute"
            );
            assert_eq!(
                read(&gl, ua, "de-DE", now + 120),
                Err(LinkerError::Checksum),
                "too old"
            );
            assert_eq!(
                read(&gl, "curl/8", "de-DE", now),
                Err(LinkerError::Checksum),
                "another browser"
            );
            assert_eq!(
                read(&gl, ua, "en-US", now),
                Err(LinkerError::Checksum),
                "another language"
            );
            for bad in ["", "1*abc", "2*abc*_ga*x", "1*ABC*_ga*x", "1*abc*_ga"] {
                assert_eq!(
                    read(bad, ua, "de-DE", now),
                    Err(LinkerError::Malformed),
                    "{bad:?}"
                );
            }
        }

        #[test]
        fn base36_matches_javascript() {
            // (4294967295).toString(36) and (0).toString(36) in JavaScript.
            assert_eq!(base36(u32::MAX), "1z141z3");
            assert_eq!(base36(0), "0");
            assert_eq!(primary_language("en-GB,en;q=0.9"), "en-GB");
        }
    }
}
