//! Hand-off tokens: what one domain's sidecar seals and another's opens.
//!
//! A token is XChaCha20-Poly1305 (RustCrypto) over a compact binary claim,
//! so the ids it carries are unreadable and any edit is detected. The key id
//! travels in clear and is authenticated as associated data; every key of
//! the key file opens, the current one seals. Encoded as unpadded base64url,
//! a token stays under 200 characters (Stripe's `client_reference_id`
//! limit) with the longest key id and the most audience hosts allowed.
//!
//! Layout: `[version 1][kid length][kid][24-byte nonce][ciphertext + 16-byte tag]`.
//! The claim: token id (16 bytes, the key of its single-use counter), client
//! id, session id, session number, last hit, issue and expiry times, the
//! passive lifetime (minutes after issue, u16: webhooks may name the
//! visitor that long), allowed uses, flags (consent, User-Agent binding), a User-Agent fingerprint, and
//! up to [`MAX_AUDIENCE`] audience host hashes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use hmac::Mac;
use rand::RngCore;

use crate::identity::{clamp_u32, ClientId, Consent, ConsentMode, Identity, Rejection};
use crate::keys::Keyring;

/// Version 2 added the passive lifetime; version 1 tokens still open.
const VERSION: u8 = 2;
const VERSION_1: u8 = 1;
/// The longest passive lifetime a token can carry (u16 minutes, rounded
/// down to whole days: 45 days).
pub const MAX_PASSIVE_TTL_SECS: u32 = 45 * 86_400;
/// Hosts one token may be redeemed on.
pub const MAX_AUDIENCE: usize = 4;
/// The longest token this module produces, in characters.
pub const MAX_TOKEN_LEN: usize = 200;
const NONCE_LEN: usize = 24;
/// The fixed part of a version 1 claim (version 2 adds 2 bytes).
const FIXED_CLAIM_LEN: usize = 16 + 4 * 7 + 1 + 1 + 8 + 1;

const FLAG_CONSENT_DENIED: u8 = 1;
const FLAG_UA_BOUND: u8 = 2;
const FLAG_AD_STORAGE_DENIED: u8 = 4;
const FLAG_AD_USER_DATA_DENIED: u8 = 8;
const FLAG_AD_PERSONALIZATION_DENIED: u8 = 16;
const FLAG_ADOPTED: u8 = 32;
const FLAG_LINKED: u8 = 64;

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Random id; the key of the token's use counter.
    pub token_id: [u8; 16],
    pub identity: Identity,
    pub issued_at: i64,
    pub expires_at: i64,
    /// Until when passive calls (webhooks) may still read the identity; at
    /// least `expires_at`.
    pub passive_expires_at: i64,
    pub max_uses: u8,
    /// The source's consent (Consent Mode v2), one flag bit per signal.
    pub consent: ConsentMode,
    /// Forgeable evidence once named the client (or it came through a link
    /// with no login): the destination lets no login link it.
    pub adopted: bool,
    /// The source's identity was linked to a user (a login). A token of an
    /// identity no login owned lets no login link it at the destination:
    /// whoever sent the link may hold the same client.
    pub linked: bool,
    /// Keyed hash of the User-Agent the token is bound to, if bound.
    pub user_agent: Option<[u8; 8]>,
    /// Keyed hashes of the hosts it may be redeemed on.
    pub audience: Vec<[u8; 8]>,
}

/// Keyed 8-byte hash of a host or User-Agent, under the pepper-derived
/// fingerprint key (stable across key rotation). Labels keep the two
/// domains apart.
pub fn short_hash(keys: &Keyring, label: &str, value: &str) -> [u8; 8] {
    let mut mac = keys.fingerprint.start();
    mac.update(label.as_bytes());
    mac.update(&[0]);
    mac.update(value.as_bytes());
    mac.finalize().into_bytes()[..8]
        .try_into()
        .expect("8 bytes")
}

/// A fresh random token id.
pub fn new_token_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    id
}

fn encode_claims(c: &Claims) -> Vec<u8> {
    let mut v = Vec::with_capacity(FIXED_CLAIM_LEN + 8 * c.audience.len());
    v.extend_from_slice(&c.token_id);
    for n in [
        c.identity.client_id.random(),
        clamp_u32(c.identity.client_id.created()),
        clamp_u32(c.identity.session_id),
        c.identity.session_number,
        clamp_u32(c.identity.last_seen),
        clamp_u32(c.issued_at),
        clamp_u32(c.expires_at),
    ] {
        v.extend_from_slice(&n.to_be_bytes());
    }
    let passive_minutes = ((c.passive_expires_at - c.issued_at).max(0) / 60).min(65_535) as u16;
    v.extend_from_slice(&passive_minutes.to_be_bytes());
    v.push(c.max_uses);
    let mut flags = 0;
    for (signal, flag) in [
        (c.consent.analytics, FLAG_CONSENT_DENIED),
        (c.consent.ad_storage, FLAG_AD_STORAGE_DENIED),
        (c.consent.ad_user_data, FLAG_AD_USER_DATA_DENIED),
        (c.consent.ad_personalization, FLAG_AD_PERSONALIZATION_DENIED),
    ] {
        if signal == Consent::Denied {
            flags |= flag;
        }
    }
    if c.user_agent.is_some() {
        flags |= FLAG_UA_BOUND;
    }
    if c.adopted {
        flags |= FLAG_ADOPTED;
    }
    if c.linked {
        flags |= FLAG_LINKED;
    }
    v.push(flags);
    v.extend_from_slice(&c.user_agent.unwrap_or_default());
    v.push(c.audience.len() as u8);
    for a in &c.audience {
        v.extend_from_slice(a);
    }
    v
}

fn decode_claims(v: &[u8], version: u8) -> Option<Claims> {
    let passive_len = if version == VERSION_1 { 0 } else { 2 };
    if v.len() < FIXED_CLAIM_LEN + passive_len {
        return None;
    }
    let u32_at = |i: usize| u32::from_be_bytes(v[i..i + 4].try_into().expect("4 bytes"));
    let token_id: [u8; 16] = v[..16].try_into().ok()?;
    let n: Vec<u32> = (0..7).map(|k| u32_at(16 + 4 * k)).collect();
    let mut i = 16 + 28;
    let passive_minutes = if passive_len == 2 {
        u16::from_be_bytes([v[i], v[i + 1]])
    } else {
        0
    };
    i += passive_len;
    let max_uses = v[i];
    let flags = v[i + 1];
    let ua: [u8; 8] = v[i + 2..i + 10].try_into().ok()?;
    let count = v[i + 10] as usize;
    i += 11;
    if count > MAX_AUDIENCE || v.len() != i + 8 * count || n[0] == 0 || n[3] == 0 || max_uses == 0 {
        return None;
    }
    let audience = v[i..]
        .chunks_exact(8)
        .map(|c| c.try_into().expect("8 bytes"))
        .collect();
    Some(Claims {
        token_id,
        identity: Identity {
            client_id: ClientId::from_parts(n[0], n[1]),
            session_id: i64::from(n[2]),
            session_number: n[3],
            user_id: None,
            last_seen: i64::from(n[4]),
        },
        issued_at: i64::from(n[5]),
        expires_at: i64::from(n[6]),
        passive_expires_at: (i64::from(n[5]) + 60 * i64::from(passive_minutes))
            .max(i64::from(n[6])),
        max_uses,
        consent: {
            let signal = |flag: u8| {
                if flags & flag != 0 {
                    Consent::Denied
                } else {
                    Consent::Granted
                }
            };
            ConsentMode {
                analytics: signal(FLAG_CONSENT_DENIED),
                ad_storage: signal(FLAG_AD_STORAGE_DENIED),
                ad_user_data: signal(FLAG_AD_USER_DATA_DENIED),
                ad_personalization: signal(FLAG_AD_PERSONALIZATION_DENIED),
            }
        },
        user_agent: (flags & FLAG_UA_BOUND != 0).then_some(ua),
        adopted: flags & FLAG_ADOPTED != 0,
        linked: flags & FLAG_LINKED != 0,
        audience,
    })
}

fn aad(version: u8, kid: &str) -> Vec<u8> {
    let mut a = vec![version, kid.len() as u8];
    a.extend_from_slice(kid.as_bytes());
    a
}

/// Seals claims under the current key.
pub fn seal(keys: &Keyring, claims: &Claims) -> String {
    assert!(
        claims.audience.len() <= MAX_AUDIENCE,
        "audience is capped by the caller"
    );
    let key = keys.current();
    let cipher = XChaCha20Poly1305::new(key.token_seal.as_ref().into());
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let header = aad(VERSION, &key.id);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: &encode_claims(claims),
                aad: &header,
            },
        )
        .expect("encryption of a short message cannot fail");
    let mut out = header;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    let token = B64.encode(out);
    debug_assert!(
        token.len() <= MAX_TOKEN_LEN,
        "token of {} characters",
        token.len()
    );
    token
}

/// Opens a token: checks its form, its key and its seal. Expiry, audience
/// and uses are the caller's to check against the request.
pub fn open(keys: &Keyring, token: &str) -> Result<Claims, Rejection> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(Rejection::Malformed);
    }
    let raw = B64.decode(token).map_err(|_| Rejection::Malformed)?;
    let (&version, rest) = raw.split_first().ok_or(Rejection::Malformed)?;
    let (&kid_len, rest) = rest.split_first().ok_or(Rejection::Malformed)?;
    let kid_len = kid_len as usize;
    if !matches!(version, VERSION | VERSION_1) || rest.len() < kid_len + NONCE_LEN + 16 {
        return Err(Rejection::Malformed);
    }
    let kid = std::str::from_utf8(&rest[..kid_len]).map_err(|_| Rejection::Malformed)?;
    let key = keys.get(kid).ok_or(Rejection::UnknownKey)?;
    let nonce = &rest[kid_len..kid_len + NONCE_LEN];
    let ciphertext = &rest[kid_len + NONCE_LEN..];
    let cipher = XChaCha20Poly1305::new(key.token_seal.as_ref().into());
    let plain = cipher
        .decrypt(
            nonce.into(),
            Payload {
                msg: ciphertext,
                aad: &aad(version, kid),
            },
        )
        .map_err(|_| Rejection::BadSeal)?;
    decode_claims(&plain, version).ok_or(Rejection::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;

    fn ring(dir: &std::path::Path, id: &str) -> Keyring {
        let p = dir.join(format!("{id}.json"));
        keys::generate(&p, id).unwrap();
        Keyring::load(&p).unwrap()
    }

    fn claims(keys: &Keyring, audience: usize) -> Claims {
        Claims {
            token_id: new_token_id(),
            identity: Identity {
                client_id: ClientId::from_parts(i32::MAX as u32, u32::MAX),
                session_id: u32::MAX as i64,
                session_number: u32::MAX,
                user_id: None,
                last_seen: u32::MAX as i64,
            },
            issued_at: 60,
            expires_at: 180,
            passive_expires_at: 60 + MAX_PASSIVE_TTL_SECS as i64,
            max_uses: 255,
            consent: ConsentMode::all(Consent::Denied),
            adopted: true,
            linked: true,
            user_agent: Some(short_hash(keys, "ua", "Mozilla")),
            audience: (0..audience)
                .map(|i| short_hash(keys, "host", &format!("h{i}")))
                .collect(),
        }
    }

    #[test]
    fn round_trip_within_200_characters() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring(dir.path(), "abcdefghijklmnop");
        let c = claims(&keys, MAX_AUDIENCE);
        let t = seal(&keys, &c);
        assert!(t.len() <= MAX_TOKEN_LEN, "{} characters", t.len());
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(open(&keys, &t), Ok(c.clone()));
        // The client id is not readable in the token.
        assert!(!t.contains(&c.identity.client_id.random().to_string()));
    }

    #[test]
    fn every_edit_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring(dir.path(), "k1");
        let t = seal(&keys, &claims(&keys, 2));
        let raw = B64.decode(&t).unwrap();
        for i in 0..raw.len() {
            for bit in [0x01u8, 0x80] {
                let mut r = raw.clone();
                r[i] ^= bit;
                assert!(
                    open(&keys, &B64.encode(&r)).is_err(),
                    "byte {i} bit {bit:#x}"
                );
            }
        }
        assert!(open(&keys, &t[..t.len() - 1]).is_err());
        assert!(open(&keys, &t[..t.len() - 4]).is_err());
        assert!(open(&keys, &format!("{t}AAAA")).is_err());
        let other = ring(dir.path(), "k2");
        assert_eq!(open(&other, &t), Err(Rejection::UnknownKey));
    }
}
