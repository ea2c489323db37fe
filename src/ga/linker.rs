//! The GA4 cross-domain linker parameter, `_gl`, read and written as
//! gtag.js reads and writes it.
//!
//! A `_gl` is `1*<checksum>*<key>*<value>*…`: each value is the text of a
//! cookie in base64 with the URL-safe alphabet (`-`, `_`) and `.` as
//! padding, and the checksum is the CRC-32 (base 36) of
//! `<User-Agent>*<time-zone offset>*<language>*<minute since epoch>*
//! <key>*<value>*…`, computed the way gtag.js computes it: over the low
//! byte of each UTF-16 code unit (`charCodeAt(i) & 255`), not over UTF-8.
//! gtag.js accepts the current minute and the two before it. The time-zone
//! offset (JavaScript's `getTimezoneOffset()`, minutes) is in no header, so
//! the reader tries every offset in use on Earth, and the search is cheap
//! because the CRC of the parts that do not change is computed once (see
//! [`Search`]).
//!
//! What gtag.js does and the AMP linker does not: a link from the two
//! previous minutes is still good; the values are bytes taken from UTF-16
//! code units (no UTF-8 step); a value a redirect percent-encoded once or
//! twice more is decoded; keys are not checked against any pattern. Where
//! both agree (ASCII input) AMP's published vectors hold, and the tests
//! below use them.

use std::borrow::Cow;

use super::GaSession;
use super::{parse_client_id, parse_client_link, parse_session_link, session_link_value};
use crate::identity::ClientId;

/// Longest `_gl` value read as it arrives (it may be percent-encoded).
pub const MAX_RAW: usize = 8192;
/// Longest payload read once decoded.
pub const MAX_PAYLOAD: usize = 2048;
/// How many minutes old a link gtag.js still accepts, besides the current
/// one.
pub const WINDOW_MINUTES: i64 = 2;
/// How far back a checksum is still recognised as this browser's, to tell
/// an expired link from another browser's.
pub const EXPIRED_MINUTES: i64 = 30;

/// Why a `_gl` value was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkerError {
    #[error("_gl is not `1*<checksum>*<key>*<value>...` with base64 values")]
    Malformed,
    #[error("_gl was written for this browser more than two minutes ago (gtag.js accepts the current minute and the two before)")]
    Expired,
    #[error("_gl checksum matches this browser at no time-zone offset in the last 30 minutes (another browser, or a device clock far from the server's)")]
    Checksum,
    #[error("_gl carries no _ga client id the service can keep byte for byte")]
    NoClientId,
}

/// The pairs of a `_gl`, in order: each key as written, each value as the
/// bytes gtag.js encoded (one per UTF-16 code unit, so Latin-1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Payload(Vec<(String, Vec<u8>)>);

impl Payload {
    /// Every pair, in order.
    pub fn pairs(&self) -> &[(String, Vec<u8>)] {
        &self.0
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// The value of `key` as text, when it is ASCII.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.get(key)
            .filter(|v| v.is_ascii())
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// Sets `key`: in place when present (a JavaScript object keeps the
    /// first position of a key), else at the end.
    pub fn set(&mut self, key: &str, value: impl Into<Vec<u8>>) {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(pair) => pair.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    /// Keeps the pairs `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) {
        self.0.retain(|(k, v)| keep(k, v));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `key*value*key*value…`, values encoded as gtag.js encodes them.
    pub fn serialize(&self) -> String {
        let mut out = String::new();
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push('*');
            }
            out.push_str(k);
            out.push('*');
            out.push_str(&encode_value(v));
        }
        out
    }

    /// Reads `key*value*…`; an odd number of fields or a value that is not
    /// base64 makes the whole payload unreadable, as in gtag.js.
    fn parse(serialized: &str) -> Option<Self> {
        let mut out = Payload::default();
        if serialized.is_empty() {
            return Some(out);
        }
        let fields: Vec<&str> = serialized.split('*').collect();
        if fields.len() % 2 != 0 {
            return None;
        }
        // A key seen again keeps its first place and takes the new value.
        let mut seen = std::collections::HashMap::with_capacity(fields.len() / 2);
        for pair in fields.chunks_exact(2) {
            let value = decode_value(pair[1])?;
            match seen.get(pair[0]) {
                Some(&i) => out.0[i] = (pair[0].to_string(), value),
                None => {
                    seen.insert(pair[0], out.0.len());
                    out.0.push((pair[0].to_string(), value));
                }
            }
        }
        Some(out)
    }
}

/// The bytes gtag.js feeds its CRC for `s`: the low byte of each UTF-16
/// code unit.
fn units(s: &str) -> Cow<'_, [u8]> {
    if s.is_ascii() {
        Cow::Borrowed(s.as_bytes())
    } else {
        Cow::Owned(s.encode_utf16().map(|u| u as u8).collect())
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const PAD: u8 = 64;

/// Base64 with the URL-safe alphabet, `.` as padding, always padded.
pub fn encode_value(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('.');
            }
        }
    }
    out
}

/// The value of one base64 symbol: the URL-safe alphabet gtag.js writes,
/// and the standard one (`+`, `/`, `=`) tolerated.
fn sextet(c: char) -> Option<u8> {
    Some(match c {
        'A'..='Z' => c as u8 - b'A',
        'a'..='z' => c as u8 - b'a' + 26,
        '0'..='9' => c as u8 - b'0' + 52,
        '-' | '+' => 62,
        '_' | '/' => 63,
        '.' | '=' => PAD,
        _ => return None,
    })
}

/// Decodes a value as gtag.js does: white space is skipped, padding may be
/// missing or end any group of four, any other character refuses the value.
/// The result is one byte per character (gtag.js makes each a UTF-16 code
/// unit below 256).
pub fn decode_value(text: &str) -> Option<Vec<u8>> {
    let mut symbols = Vec::with_capacity(text.len());
    for c in text.chars() {
        match sextet(c) {
            Some(s) => symbols.push(s),
            None if c.is_whitespace() => {}
            None => return None,
        }
    }
    let mut out = Vec::with_capacity(symbols.len() / 4 * 3 + 2);
    for group in symbols.chunks(4) {
        let at = |i: usize, missing: u8| group.get(i).copied().unwrap_or(missing);
        let (a, b, c, d) = (group[0], at(1, 0), at(2, PAD), at(3, PAD));
        if a == PAD || b == PAD {
            return None;
        }
        out.push(a << 2 | b >> 4);
        if c != PAD {
            out.push((b & 15) << 4 | c >> 2);
            if d != PAD {
                out.push((c & 3) << 6 | d);
            }
        }
    }
    Some(out)
}

/// JavaScript's `decodeURIComponent`: `%XX` escapes of UTF-8, `+` kept;
/// None where it would throw.
fn decode_uri_component(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// gtag.js's pattern `(.*?)\*(.*?)\*(.*)`: `.` stops at JavaScript's line
/// terminators, so the match is in the first line with two `*`.
fn split_link(s: &str) -> Option<(&str, &str, &str)> {
    s.split(['\n', '\r', '\u{2028}', '\u{2029}'])
        .find_map(|line| {
            let mut parts = line.splitn(3, '*');
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
}

/// The `_gl` text gtag.js matches: the value as it arrived, or as one or two
/// further percent-decodings leave it (a redirect that encoded it again).
fn unwrap_link(raw: &str) -> Option<Cow<'_, str>> {
    let mut text = Cow::Borrowed(raw);
    for attempt in 0..=2 {
        if split_link(&text).is_some() {
            return Some(text);
        }
        if attempt < 2 {
            text = Cow::Owned(decode_uri_component(&text)?);
        }
    }
    None
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

/// The number a checksum names, when it is spelled as JavaScript's
/// `toString(36)` spells a u32 (anything else matches no CRC).
fn parse_base36(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 7 || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'z' => b - b'a' + 10,
            _ => return None,
        };
        n = n * 36 + u64::from(d);
    }
    u32::try_from(n).ok()
}

/// Time-zone offsets in use on Earth, in JavaScript's sign convention:
/// from UTC+14 (-840) to UTC-12 (+720), in quarter hours.
fn offsets() -> impl Iterator<Item = i32> {
    (-840..=720).step_by(15)
}

/// The CRC-32 gtag.js computes for these inputs.
pub fn crc(user_agent: &str, tz_offset: i32, language: &str, minute: i64, serialized: &str) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&units(user_agent));
    h.update(format!("*{tz_offset}*").as_bytes());
    h.update(&units(language));
    h.update(format!("*{minute}*").as_bytes());
    h.update(&units(serialized));
    h.finalize()
}

/// The checksum gtag.js writes for these inputs (base 36).
pub fn checksum(
    user_agent: &str,
    tz_offset: i32,
    language: &str,
    minute: i64,
    serialized: &str,
) -> String {
    base36(crc(user_agent, tz_offset, language, minute, serialized))
}

/// The CRC-32 table (reflected polynomial 0xEDB88320), to step a CRC over
/// zero bytes, forwards and backwards.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

/// Each table entry's index by its top byte: the top bytes are all
/// distinct, which is what makes a step over a zero byte reversible.
const BY_TOP_BYTE: [u8; 256] = {
    let mut index = [0u8; 256];
    let mut n = 0;
    while n < 256 {
        index[(TABLE[n] >> 24) as usize] = n as u8;
        n += 1;
    }
    index
};

/// What appending `n` zero bytes does to a finished CRC-32. It is linear
/// (the initial and final inversions cancel out), so
/// CRC(X‖Y) = append_zeros(CRC(X), |Y|) ^ CRC(Y).
fn append_zeros(mut crc: u32, n: usize) -> u32 {
    for _ in 0..n {
        crc = (crc >> 8) ^ TABLE[(crc & 0xff) as usize];
    }
    crc
}

/// The inverse of [`append_zeros`]: the CRC that `n` zero bytes turn into
/// `crc`.
fn remove_zeros(mut crc: u32, n: usize) -> u32 {
    for _ in 0..n {
        let low = BY_TOP_BYTE[(crc >> 24) as usize];
        crc = ((crc ^ TABLE[usize::from(low)]) << 8) | u32::from(low);
    }
    crc
}

/// `*<offset>*` for every time-zone offset, made once.
static OFFSET_TEXTS: std::sync::LazyLock<Vec<(i32, String)>> =
    std::sync::LazyLock::new(|| offsets().map(|tz| (tz, format!("*{tz}*"))).collect());

/// The search for the time-zone offset and minute a checksum was written
/// at. The checksummed text is A‖B‖S: A = `<UA>*<tz>*<language>*` (one per
/// offset), B = `<minute>*` (one per minute), S = the payload (fixed).
/// Because CRC(A‖B‖S) = Z_|S|(Z_|B|(CRC(A)) ^ CRC(B)) ^ CRC(S), where Z_n
/// appends n zero bytes and can be undone, a checksum T matches where
/// Z_|B|(CRC(A)) = Z⁻¹_|S|(T ^ CRC(S)) ^ CRC(B). The User-Agent and the
/// payload are hashed once, each offset and each minute costs one short
/// CRC, and each (offset, minute) pair a comparison: for 105 offsets and 30
/// minutes about 135 short CRCs, where hashing every combination whole
/// would take 3,150 over the whole text.
struct Search {
    /// CRC(A) for each offset.
    per_offset: Vec<(i32, u32)>,
    payload_len: usize,
    payload_crc: u32,
}

impl Search {
    fn new(user_agent: &str, language: &str, payload: &[u8]) -> Self {
        let mut ua = crc32fast::Hasher::new();
        ua.update(&units(user_agent));
        let mut tail = units(language).into_owned();
        tail.push(b'*');
        let per_offset = OFFSET_TEXTS
            .iter()
            .map(|(tz, text)| {
                let mut h = ua.clone();
                h.update(text.as_bytes());
                h.update(&tail);
                (*tz, h.finalize())
            })
            .collect();
        Search {
            per_offset,
            payload_len: payload.len(),
            payload_crc: crc32fast::hash(payload),
        }
    }

    /// The first of `minutes` (with an offset) at which `target` is the
    /// CRC.
    fn find(&self, target: u32, minutes: impl Iterator<Item = i64>) -> Option<(i32, i64)> {
        let wanted = remove_zeros(target ^ self.payload_crc, self.payload_len);
        // Z_|B|(CRC(A)) for every offset, recomputed only if a minute has
        // another number of digits.
        let mut shifted: Option<(usize, Vec<u32>)> = None;
        let mut b = String::new();
        for minute in minutes {
            b.clear();
            b.push_str(&minute.to_string());
            b.push('*');
            if shifted.as_ref().is_none_or(|(len, _)| *len != b.len()) {
                let values = self
                    .per_offset
                    .iter()
                    .map(|&(_, c)| append_zeros(c, b.len()))
                    .collect();
                shifted = Some((b.len(), values));
            }
            let (_, values) = shifted.as_ref().expect("just computed");
            let want = wanted ^ crc32fast::hash(b.as_bytes());
            if let Some(i) = values.iter().position(|&v| v == want) {
                return Some((self.per_offset[i].0, minute));
            }
        }
        None
    }
}

/// A `_gl` whose checksum matched this browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Every pair it carried, in order.
    pub payload: Payload,
    /// The browser's time-zone offset the checksum matched at.
    pub tz_offset: i32,
    /// How many minutes before the current one it was written (0 to 2).
    pub age_minutes: i64,
}

/// Reads a `_gl` value as it arrived in the URL (not percent-decoded) and
/// checks it against this request's browser at `now` (unix seconds), as
/// gtag.js checks it: version `1`, a checksum of this User-Agent and
/// language at some time-zone offset in the current minute or the two
/// before. A checksum that matches an older minute (up to 30) is reported
/// as expired rather than as another browser.
pub fn read(
    raw: &str,
    user_agent: &str,
    language: &str,
    now: i64,
) -> Result<Verified, LinkerError> {
    if raw.len() > MAX_RAW {
        return Err(LinkerError::Malformed);
    }
    let text = unwrap_link(raw).ok_or(LinkerError::Malformed)?;
    let (version, sum, serialized) = split_link(&text).ok_or(LinkerError::Malformed)?;
    if version != "1" || serialized.len() > MAX_PAYLOAD {
        return Err(LinkerError::Malformed);
    }
    let target = parse_base36(sum).ok_or(LinkerError::Malformed)?;
    let payload = Payload::parse(serialized).ok_or(LinkerError::Malformed)?;
    let minute = now.div_euclid(60);
    let search = Search::new(user_agent, language, &units(serialized));
    match search.find(target, (0..EXPIRED_MINUTES).map(|age| minute - age)) {
        Some((tz_offset, at)) if minute - at <= WINDOW_MINUTES => Ok(Verified {
            payload,
            tz_offset,
            age_minutes: minute - at,
        }),
        Some(_) => Err(LinkerError::Expired),
        None => Err(LinkerError::Checksum),
    }
}

/// A `_gl` value for this payload, browser and minute.
pub fn write(
    payload: &Payload,
    user_agent: &str,
    tz_offset: i32,
    language: &str,
    minute: i64,
) -> String {
    let serialized = payload.serialize();
    let sum = checksum(user_agent, tz_offset, language, minute, &serialized);
    format!("1*{sum}*{serialized}")
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

/// What a verified `_gl` says about the visitor, for GA4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linked {
    pub client_id: ClientId,
    /// The freshest valid `_ga_<container>` session it carried.
    pub session: Option<GaSession>,
}

/// The client id (`_ga`, bare `<random>.<seconds>`) and the freshest session
/// (`_ga_<container>`, GS1 or GS2 without its prefix) a payload carries.
pub fn linked(payload: &Payload, now: i64) -> Result<Linked, LinkerError> {
    let client_id = payload
        .text("_ga")
        .and_then(|v| parse_client_link(v, now).ok())
        .ok_or(LinkerError::NoClientId)?;
    let mut session: Option<GaSession> = None;
    for (key, value) in payload.pairs() {
        if !super::is_session_cookie(key) || !value.is_ascii() {
            continue;
        }
        let Ok(text) = std::str::from_utf8(value) else {
            continue;
        };
        if let Ok(s) = parse_session_link(text, now) {
            if session.is_none_or(|b| s.last_hit > b.last_hit) {
                session = Some(s);
            }
        }
    }
    Ok(Linked { client_id, session })
}

/// The Google Ads and Floodlight click cookies gtag.js's conversion linker
/// carries (with the default `_gcl` prefix), in the order written.
pub const AD_CLICK_COOKIES: &[&str] = &[
    "_gcl_aw", "_gcl_dc", "_gcl_gb", "_gcl_gf", "_gcl_ha", "_gcl_gp", "_gcl_ag",
];

/// Whether a key can travel in a link as it is: the characters every
/// gtag.js key is made of. Another key would need escaping, and gtag.js
/// checksums the text it receives, escapes included.
pub fn is_link_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A click cookie as gtag.js writes it: `GCL.<unix seconds>.<click id>`.
fn is_click_value(v: &str) -> bool {
    let mut parts = v.splitn(3, '.');
    parts.next() == Some("GCL")
        && parts.next().is_some_and(|s| super::digits(s, 10).is_some())
        && parts.next().is_some_and(|id| {
            !id.is_empty() && id.len() <= 512 && id.bytes().all(|b| b.is_ascii_graphic())
        })
}

/// `<random>.<seconds>` of a `_gcl_au` or `FPAU` cookie
/// (`1.<depth>.<random>.<seconds>`), as the link carries it.
fn auid_link_value(v: &str) -> Option<&str> {
    let mut parts = v.splitn(3, '.');
    let (version, depth, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let (random, seconds) = rest.split_once('.')?;
    (super::digits(version, 3).is_some()
        && super::is_depth(depth)
        && super::digits(random, 10).is_some()
        && super::digits(seconds, 10).is_some())
    .then_some(rest)
}

/// The first-party linker cookie of server-side GTM, carried as `_fplc`.
fn is_fplc_value(v: &str) -> bool {
    !v.is_empty() && v.len() <= 512 && v.bytes().all(|b| b.is_ascii_graphic())
}

/// Whether a payload key carries an advertising id (ad clicks, the
/// first-party ads cookie), which Consent Mode's ad signals govern.
pub fn is_ad_key(key: &str) -> bool {
    key.starts_with("_gcl") || key == "FPAU"
}

/// The payload gtag.js would write for a page with these cookies, where
/// the visitor's GA client id is `client_id`, in gtag.js's order: ad clicks
/// (`_gcl_aw`, `_gcl_dc`, …), `_gcl_au`, `FPAU`, `_ga`, each
/// `_ga_<container>`, and `_fplc` last.
///
/// Sessions are taken only while no `_ga` cookie names another client
/// (they would be that client's). Of several cookies of one name, a click
/// cookie's greatest value wins (as gtag.js sorts them), a session's
/// latest last hit, otherwise the first.
pub fn from_cookies(cookies: &[(&str, &str)], client_id: &ClientId, now: i64) -> Payload {
    let named = |name: &'static str| {
        cookies
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| *v)
    };
    let mut out = Payload::default();
    for &name in AD_CLICK_COOKIES {
        if let Some(v) = named(name).filter(|v| is_click_value(v)).max() {
            out.set(name, v);
        }
    }
    for (cookie, key) in [("_gcl_au", "_gcl_au"), ("FPAU", "FPAU")] {
        if let Some(v) = named(cookie).find_map(auid_link_value) {
            out.set(key, v);
        }
    }
    out.set("_ga", client_id.to_string());
    let ga_cookies: Vec<ClientId> = named("_ga")
        .filter_map(|v| parse_client_id(v, now).ok())
        .collect();
    if ga_cookies.is_empty() || ga_cookies.contains(client_id) {
        let mut sessions: Vec<(&str, &str, i64)> = Vec::new();
        for &(name, value) in cookies {
            if !super::is_session_cookie(name) {
                continue;
            }
            let Some(body) = session_link_value(value, now) else {
                continue;
            };
            let last_hit = parse_session_link(body, now).map_or(i64::MIN, |s| s.last_hit);
            match sessions.iter_mut().find(|(n, _, _)| *n == name) {
                Some(best) if last_hit > best.2 => *best = (name, body, last_hit),
                Some(_) => {}
                None => sessions.push((name, body, last_hit)),
            }
        }
        for (name, body, _) in sessions {
            out.set(name, body);
        }
    }
    if let Some(v) = named("FPLC").find(|v| is_fplc_value(v)) {
        out.set("_fplc", v);
    }
    out
}

/// The payload to write when a valid `_gl` arrived with the request:
/// everything it carried, in its order and byte for byte, then what this
/// request's cookies add (`own`, from [`from_cookies`]) for keys it did not
/// carry, before a final `_fplc`. Its GA ids (`_ga`, `_ga_<container>`)
/// are dropped when its `_ga` names another client than `client_id` (the
/// visitor was resolved from stronger evidence), and keys that could not
/// travel unescaped are dropped.
pub fn carry(arrived: &Payload, client_id: &ClientId, own: &Payload, now: i64) -> Payload {
    let same_client = match arrived.get("_ga") {
        None => true,
        Some(_) => {
            arrived
                .text("_ga")
                .and_then(|v| parse_client_link(v, now).ok())
                == Some(*client_id)
        }
    };
    let mut out = arrived.clone();
    out.retain(|k, _| {
        is_link_key(k) && (same_client || (k != "_ga" && !super::is_session_cookie(k)))
    });
    let last_fplc = match out.0.last() {
        Some((k, _)) if k == "_fplc" => out.0.pop(),
        _ => None,
    };
    for (k, v) in own.pairs() {
        let carried = out.contains(k) || (last_fplc.is_some() && k == "_fplc");
        if !carried {
            out.0.push((k.clone(), v.clone()));
        }
    }
    out.0.extend(last_fplc);
    out
}

#[cfg(test)]
mod tests;
