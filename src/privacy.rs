//! Personal data in, keyed hashes out: user ids and emails are indexed only
//! by HMAC-SHA256 under the deployment's pepper, so a copy of the store alone
//! reveals no email and cannot be searched by guessing one.

use std::fmt;

use hmac::Mac;

use crate::keys::Keyring;

/// The longest user id accepted.
pub const MAX_USER_ID_LEN: usize = 256;
/// The longest email accepted (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 320;

/// The index key of a user: a keyed hash of its user id or email, plus a
/// second keyed hash that seals the index's contents at rest.
///
/// Only `index` is ever written as a key; `seal` travels inside records
/// that are themselves sealed, so a copy of the store (old sled segments
/// included) reveals which clients a user had only to someone who already
/// knows the user id or email and holds the key file.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey {
    pub index: [u8; 32],
    pub seal: [u8; 32],
}

impl UserKey {
    /// A key from its two parts (tests and tools).
    pub const fn from_parts(index: [u8; 32], seal: [u8; 32]) -> Self {
        Self { index, seal }
    }
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Enough to tell keys apart in a log, too little to look one up.
        write!(f, "UserKey({}…)", hex::encode(&self.index[..4]))
    }
}

/// Which identifier a user key was made from; part of the hash input, so a
/// user id equal to someone's email never collides with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserRef<'a> {
    UserId(&'a str),
    /// An email already normalized by [`normalize_email`].
    Email(&'a str),
}

/// Hashes a user reference under the pepper.
pub fn user_key(keys: &Keyring, user: UserRef<'_>) -> UserKey {
    let (label, value): (&[u8], &str) = match user {
        UserRef::UserId(id) => (b"user_id\0", id),
        UserRef::Email(email) => (b"email\0", email),
    };
    let hash = |purpose: &[u8]| -> [u8; 32] {
        let mut mac = keys.user_index.start();
        mac.update(purpose);
        mac.update(label);
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().into()
    };
    UserKey {
        index: hash(b""),
        seal: hash(b"seal\0"),
    }
}

/// Why a user id or email was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserInputError {
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters or white space")]
    BadCharacters,
    #[error(
        "looks like an email address; pass it in `email` so that it is stored only as a keyed hash"
    )]
    EmailAsUserId,
    #[error("is not a valid email address")]
    NotAnEmail,
}

/// Checks a user id. An id that is an email address is refused: user ids are
/// kept in clear on the identity, emails never are.
pub fn check_user_id(id: &str) -> Result<(), UserInputError> {
    if id.len() > MAX_USER_ID_LEN {
        return Err(UserInputError::TooLong(MAX_USER_ID_LEN));
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(UserInputError::BadCharacters);
    }
    if email_address::EmailAddress::is_valid(id) {
        return Err(UserInputError::EmailAsUserId);
    }
    Ok(())
}

/// Normalizes an email for hashing: surrounding white space removed, the
/// whole address lower-cased (mailbox names are case-insensitive at every
/// provider that matters, and treating them so avoids split users). No
/// provider-specific rewriting (Gmail dots, `+tags`) is done: two addresses
/// that differ there are two users.
pub fn normalize_email(email: &str) -> Result<String, UserInputError> {
    let email = email.trim();
    if email.len() > MAX_EMAIL_LEN {
        return Err(UserInputError::TooLong(MAX_EMAIL_LEN));
    }
    if email.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(UserInputError::BadCharacters);
    }
    let parsed: email_address::EmailAddress =
        email.parse().map_err(|_| UserInputError::NotAnEmail)?;
    Ok(parsed.as_str().to_lowercase())
}

/// Serialized as hex, the index first (64 characters) then the seal.
impl serde::Serialize for UserKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!(
            "{}{}",
            hex::encode(self.index),
            hex::encode(self.seal)
        ))
    }
}

impl<'de> serde::Deserialize<'de> for UserKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; 64];
        hex::decode_to_slice(s.as_bytes(), &mut out).map_err(serde::de::Error::custom)?;
        let (index, seal) = out.split_at(32);
        Ok(UserKey {
            index: index.try_into().expect("32 bytes"),
            seal: seal.try_into().expect("32 bytes"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalize_case_and_space() {
        assert_eq!(
            normalize_email("  Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        assert_eq!(
            normalize_email("not-an-email"),
            Err(UserInputError::NotAnEmail)
        );
        assert_eq!(
            normalize_email("a b@example.com"),
            Err(UserInputError::BadCharacters)
        );
    }

    #[test]
    fn user_ids_that_are_emails_are_refused() {
        assert_eq!(
            check_user_id("ada@example.com"),
            Err(UserInputError::EmailAsUserId)
        );
        assert!(check_user_id("user-42").is_ok());
        assert_eq!(check_user_id("a\nb"), Err(UserInputError::BadCharacters));
    }
}
