//! At-rest sealing of stored records: storage keys and record keys derived
//! from the identifiers a record is stored under, and authenticated
//! encryption (XChaCha20-Poly1305) bound to the storage key. Any engine that
//! keeps records where others could read them seals them with this.

use std::sync::Arc;

use super::StoreError;
use crate::identity::ClientId;
use crate::privacy::UserKey;

fn client_bytes(id: ClientId) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&id.random().to_be_bytes());
    k[4..].copy_from_slice(&(id.created() as u32).to_be_bytes());
    k
}

/// Record keys and value keys derived from identifiers, so the data
/// directory holds no identifier and no readable value.
#[derive(Clone)]
pub(crate) struct Sealer {
    key: Arc<crate::keys::MacKey>,
}

impl Sealer {
    /// A sealer whose subkeys derive from `key` (the key file's `store_seal`).
    pub(crate) fn new(key: &crate::keys::Secret) -> Self {
        Self {
            key: Arc::new(crate::keys::MacKey::new(key.as_slice())),
        }
    }

    fn derive(&self, purpose: &[u8], material: &[u8]) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = self.key.start();
        mac.update(purpose);
        mac.update(&[0]);
        mac.update(material);
        mac.finalize().into_bytes().into()
    }

    /// Where a client's record is stored.
    pub(crate) fn client_key(&self, id: ClientId) -> [u8; 16] {
        self.derive(b"client-key", &client_bytes(id))[..16]
            .try_into()
            .expect("16 bytes")
    }

    /// The keyed hash an erased client's tombstone, and the index of the
    /// bridge entries that name a client, are stored under: it names the
    /// client only to someone who holds the key file and the client id.
    pub(crate) fn mark(&self, id: ClientId) -> [u8; 16] {
        self.derive(b"client-mark", &client_bytes(id))[..16]
            .try_into()
            .expect("16 bytes")
    }

    pub(crate) fn client_cipher(&self, id: ClientId) -> [u8; 32] {
        self.derive(b"client-seal", &client_bytes(id))
    }

    pub(crate) fn user_cipher(&self, user: &UserKey) -> [u8; 32] {
        self.derive(b"user-seal", &user.seal)
    }

    pub(crate) fn bridge_cipher(&self, key: &[u8; 32]) -> [u8; 32] {
        self.derive(b"bridge-seal", key)
    }
}

/// Encrypts `plain` under `key`, bound to the record's storage key.
pub(crate) fn seal(key: &[u8; 32], at: &[u8], plain: &[u8]) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(key.into());
    let nonce = chacha20poly1305::XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let mut out = nonce.to_vec();
    out.extend(
        cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: at,
                },
            )
            .expect("encryption of a record cannot fail"),
    );
    out
}

/// Opens what [`seal`] sealed under the same key and storage key.
pub(crate) fn unseal(key: &[u8; 32], at: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    if sealed.len() < 24 {
        return Err(StoreError::Corrupt("sealed record too short".into()));
    }
    let (nonce, ciphertext) = sealed.split_at(24);
    chacha20poly1305::XChaCha20Poly1305::new(key.into())
        .decrypt(
            nonce.into(),
            Payload {
                msg: ciphertext,
                aad: at,
            },
        )
        .map_err(|_| StoreError::Corrupt("sealed record does not open (another key file?)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&zeroize::Zeroizing::new([byte; crate::keys::SECRET_LEN]))
    }

    #[test]
    fn sealed_records_open_only_with_the_same_key_and_place() {
        let s = sealer(7);
        let id = ClientId::from_parts(1, 1000);
        let at = s.client_key(id);
        let sealed = seal(&s.client_cipher(id), &at, b"record");
        assert_ne!(&sealed[24..], b"record");
        assert_eq!(
            unseal(&s.client_cipher(id), &at, &sealed).unwrap(),
            b"record"
        );
        // Another place, another client or another key file: no.
        assert!(unseal(&s.client_cipher(id), b"elsewhere", &sealed).is_err());
        let other = ClientId::from_parts(2, 1000);
        assert!(unseal(&s.client_cipher(other), &at, &sealed).is_err());
        assert!(unseal(&sealer(8).client_cipher(id), &at, &sealed).is_err());
        assert!(unseal(&s.client_cipher(id), &at, &sealed[..20]).is_err());
    }

    #[test]
    fn derived_keys_depend_on_purpose_identifier_and_key_file() {
        let s = sealer(7);
        let id = ClientId::from_parts(1, 1000);
        assert_eq!(s.client_key(id), sealer(7).client_key(id));
        assert_ne!(s.client_key(id), sealer(8).client_key(id));
        assert_ne!(
            s.client_key(id),
            s.client_key(ClientId::from_parts(1, 1001))
        );
        assert_ne!(s.client_cipher(id)[..16], s.client_key(id));
        assert_ne!(s.mark(id), s.client_key(id));
        assert_ne!(s.mark(id), sealer(8).mark(id));
        let user = UserKey::from_parts([1; 32], [2; 32]);
        assert_ne!(s.user_cipher(&user), s.bridge_cipher(&[2; 32]));
    }
}
