//! The GA4-format visitor id: `<random 31-bit>.<unix seconds>`.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

/// A visitor id in GA4's format, so a backend can pass it unchanged as a
/// Measurement Protocol `client_id` or put it in a `_ga` cookie.
///
/// Both parts are kept as numbers rather than as the string: the id is
/// compared, signed and sealed on every request, and a number has one
/// canonical spelling where a string could carry leading zeros or spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId {
    random: u32,
    created: u32,
}

/// Why a string is not a client id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client id must be `<random>.<unix seconds>` with 1 to 10 digits in each part")]
pub struct ClientIdError;

impl ClientId {
    /// The largest random part GA4's own code produces (2^31 - 1).
    pub const MAX_RANDOM: u32 = i32::MAX as u32;

    /// Mints a fresh id created at `now` (unix seconds).
    pub fn generate(now: i64) -> Self {
        let random = rand::thread_rng().gen_range(1..=Self::MAX_RANDOM);
        Self {
            random,
            created: clamp_u32(now),
        }
    }

    /// Builds an id from its two parts.
    pub fn from_parts(random: u32, created: u32) -> Self {
        Self { random, created }
    }

    /// The random part.
    pub fn random(&self) -> u32 {
        self.random
    }

    /// Unix seconds at which the id was created; GA4 treats it as the
    /// client's first visit.
    pub fn created(&self) -> i64 {
        i64::from(self.created)
    }
}

/// Unix seconds as u32 (valid until 2106), clamped rather than wrapped.
pub(crate) fn clamp_u32(v: i64) -> u32 {
    v.clamp(0, i64::from(u32::MAX)) as u32
}

fn parse_part(s: &str) -> Result<u32, ClientIdError> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ClientIdError);
    }
    s.parse().map_err(|_| ClientIdError)
}

impl FromStr for ClientId {
    type Err = ClientIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (random, created) = s.split_once('.').ok_or(ClientIdError)?;
        Ok(Self {
            random: parse_part(random)?,
            created: parse_part(created)?,
        })
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.random, self.created)
    }
}

impl serde::Serialize for ClientId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ClientId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_ga4_shape() {
        let id = ClientId::generate(1_700_000_000);
        let s = id.to_string();
        let (r, t) = s.split_once('.').unwrap();
        assert!(r.parse::<u32>().unwrap() <= ClientId::MAX_RANDOM);
        assert_eq!(t, "1700000000");
        assert_eq!(s.parse::<ClientId>().unwrap(), id);
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1.2.3",
            "a.1",
            "1.b",
            "-1.2",
            "1 .2",
            "12345678901.1",
            "1.99999999999",
            "9999999999.1",
        ] {
            assert_eq!(bad.parse::<ClientId>(), Err(ClientIdError), "{bad:?}");
        }
    }
}
