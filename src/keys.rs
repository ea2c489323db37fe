//! The key file: secrets shared by every sidecar of a deployment.
//!
//! A key file holds a list of keys, each with an id, exactly one marked
//! current, and a pepper. The current key signs cookies and seals tokens;
//! every listed key verifies and opens, so a new key can be rolled out, made
//! current, and the old one removed once nothing in flight uses it. The
//! pepper keys the hashes of user ids, emails and fingerprints; it never
//! rotates, because rotating it would orphan every stored user index.
//!
//! Each purpose uses its own subkey derived with HKDF-SHA256, so a key never
//! serves two algorithms.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Length of every secret in the file, in bytes.
pub const SECRET_LEN: usize = 32;
/// Longest key id: ids travel inside every cookie and token.
pub const MAX_KEY_ID_LEN: usize = 16;

/// A 32-byte secret, wiped from memory when dropped.
pub type Secret = Zeroizing<[u8; SECRET_LEN]>;

/// What can be wrong with a key file. Each message names the file and says
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path}: not valid JSON of the expected shape: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error(
        "key file {path}: {problem}; run `sessionbridge keygen --out FILE` to write a valid one"
    )]
    Invalid { path: String, problem: String },
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    pepper: String,
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyEntry {
    id: String,
    secret: String,
    #[serde(default)]
    current: bool,
}

/// An HMAC-SHA256 key made ready once: its inner and outer padded blocks
/// are hashed when the key file is loaded, and each MAC starts from a copy
/// of that state instead of hashing the key again (two SHA-256 blocks
/// fewer per MAC, on every page view). The hashed pads are as secret as
/// the key and, like the key ring, live as long as the process; unlike a
/// [`Secret`] they are not wiped on drop (the `hmac` crate's state offers no
/// way to).
#[derive(Clone)]
pub struct MacKey(Hmac<Sha256>);

impl MacKey {
    pub fn new(key: &[u8]) -> Self {
        Self(<Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length"))
    }

    /// A MAC keyed with this key, ready for `update`.
    pub fn start(&self) -> Hmac<Sha256> {
        self.0.clone()
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(..)")
    }
}

/// One key, with the subkeys derived from it.
pub struct Key {
    pub id: String,
    /// HMAC-SHA256 key for the own cookie's signature.
    pub cookie_mac: MacKey,
    /// XChaCha20-Poly1305 key for hand-off tokens.
    pub token_seal: Secret,
}

/// All keys of a deployment, loaded and derived.
pub struct Keyring {
    keys: Vec<Key>,
    current: usize,
    /// HMAC-SHA256 key for user-id and email index hashes.
    pub user_index: MacKey,
    /// HMAC-SHA256 key for referrer-bridge fingerprints.
    pub fingerprint: MacKey,
    /// Key of the at-rest sealing of the embedded store.
    pub store_seal: Secret,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("Keyring")
            .field("keys", &ids)
            .field("current", &self.current().id)
            .finish_non_exhaustive()
    }
}

fn derive(secret: &[u8], purpose: &str) -> Secret {
    let mut out = Zeroizing::new([0u8; SECRET_LEN]);
    Hkdf::<Sha256>::new(Some(b"sessionbridge/v1"), secret)
        .expand(purpose.as_bytes(), out.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

fn random_secret() -> Secret {
    let mut s = Zeroizing::new([0u8; SECRET_LEN]);
    rand::rngs::OsRng.fill_bytes(s.as_mut());
    s
}

/// True for ids made of `[A-Za-z0-9_-]`, 1 to 16 characters.
pub fn valid_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Keyring {
    /// Loads and checks a key file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text, &p)
    }

    /// Parses key-file text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyError> {
        let file: KeyFile = serde_json::from_str(text).map_err(|source| KeyError::Parse {
            path: origin.to_string(),
            source,
        })?;
        Self::from_file(file).map_err(|problem| KeyError::Invalid {
            path: origin.to_string(),
            problem,
        })
    }

    fn from_file(file: KeyFile) -> Result<Self, String> {
        if file.version != 1 {
            return Err(format!("unsupported version {} (expected 1)", file.version));
        }
        let decode = |what: &str, s: &str| -> Result<Secret, String> {
            let bytes = Zeroizing::new(
                B64.decode(s.trim_end_matches('='))
                    .map_err(|_| format!("{what} is not base64url"))?,
            );
            let arr: [u8; SECRET_LEN] = bytes.as_slice().try_into().map_err(|_| {
                format!(
                    "{what} must decode to {SECRET_LEN} bytes, not {}",
                    bytes.len()
                )
            })?;
            Ok(Zeroizing::new(arr))
        };
        let pepper = decode("pepper", &file.pepper)?;
        if file.keys.is_empty() {
            return Err("no keys listed".into());
        }
        let mut keys = Vec::with_capacity(file.keys.len());
        let mut current = None;
        for (i, entry) in file.keys.iter().enumerate() {
            if !valid_key_id(&entry.id) {
                return Err(format!(
                    "key id {:?} must be 1 to {MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 _ -",
                    entry.id
                ));
            }
            if keys.iter().any(|k: &Key| k.id == entry.id) {
                return Err(format!("key id {:?} is listed twice", entry.id));
            }
            let secret = decode(&format!("secret of key {:?}", entry.id), &entry.secret)?;
            if entry.current {
                if current.is_some() {
                    return Err("more than one key is marked current".into());
                }
                current = Some(i);
            }
            keys.push(Key {
                id: entry.id.clone(),
                cookie_mac: MacKey::new(derive(secret.as_ref(), "cookie-mac").as_ref()),
                token_seal: derive(secret.as_ref(), "token-seal"),
            });
        }
        let current = current.ok_or("no key is marked current")?;
        Ok(Self {
            keys,
            current,
            user_index: MacKey::new(derive(pepper.as_ref(), "user-index").as_ref()),
            fingerprint: MacKey::new(derive(pepper.as_ref(), "fingerprint").as_ref()),
            store_seal: derive(pepper.as_ref(), "store-seal"),
        })
    }

    /// The key that signs and seals.
    pub fn current(&self) -> &Key {
        &self.keys[self.current]
    }

    /// A key by id, to verify or open.
    pub fn get(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }
}

/// Writes a new key file with one current key and a fresh pepper. Refuses to
/// overwrite an existing file.
pub fn generate(path: &Path, key_id: &str) -> Result<(), KeyError> {
    let p = path.display().to_string();
    if !valid_key_id(key_id) {
        return Err(KeyError::Invalid {
            path: p,
            problem: format!(
                "key id {key_id:?} must be 1 to {MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 _ -"
            ),
        });
    }
    let file = KeyFile {
        version: 1,
        pepper: B64.encode(random_secret().as_ref()),
        keys: vec![KeyEntry {
            id: key_id.to_string(),
            secret: B64.encode(random_secret().as_ref()),
            current: true,
        }],
    };
    write_new(path, &file)
}

/// Adds a new key to an existing file as the *next* key: every instance
/// that has the file accepts what it signs, none signs with it yet. Roll
/// the file out everywhere, then [`promote`] it. Older keys stay listed so
/// that what they sealed still opens.
pub fn rotate(path: &Path, key_id: &str) -> Result<(), KeyError> {
    edit(path, |file| {
        if !valid_key_id(key_id) || file.keys.iter().any(|k| k.id == key_id) {
            return Err(format!(
                "new key id {key_id:?} is invalid or already listed"
            ));
        }
        file.keys.push(KeyEntry {
            id: key_id.to_string(),
            secret: B64.encode(random_secret().as_ref()),
            current: false,
        });
        Ok(())
    })
}

/// Makes a listed key the current one (the one that signs and seals). Do
/// it once every instance has the file that lists it.
pub fn promote(path: &Path, key_id: &str) -> Result<(), KeyError> {
    edit(path, |file| {
        if !file.keys.iter().any(|k| k.id == key_id) {
            let ids: Vec<&str> = file.keys.iter().map(|k| k.id.as_str()).collect();
            return Err(format!("key id {key_id:?} is not listed (listed: {ids:?})"));
        }
        for k in &mut file.keys {
            k.current = k.id == key_id;
        }
        Ok(())
    })
}

/// Applies `change` to the key file at `path`, checks the result loads,
/// and replaces the file atomically.
fn edit(
    path: &Path,
    change: impl FnOnce(&mut KeyFile) -> Result<(), String>,
) -> Result<(), KeyError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: p.clone(),
        source,
    })?;
    let mut file: KeyFile = serde_json::from_str(&text).map_err(|source| KeyError::Parse {
        path: p.clone(),
        source,
    })?;
    change(&mut file).map_err(|problem| KeyError::Invalid {
        path: p.clone(),
        problem,
    })?;
    // Check the result loads before replacing the original.
    Keyring::from_file(
        serde_json::from_str(&serde_json::to_string(&file).expect("serializable"))
            .expect("round trip"),
    )
    .map_err(|problem| KeyError::Invalid {
        path: p.clone(),
        problem,
    })?;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, &file)?;
    std::fs::rename(&tmp, path).map_err(|source| KeyError::Io { path: p, source })
}

fn write_new(path: &Path, file: &KeyFile) -> Result<(), KeyError> {
    use std::io::Write;
    let p = path.display().to_string();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let io = |source| KeyError::Io {
        path: p.clone(),
        source,
    };
    let mut f = opts.open(path).map_err(io)?;
    let mut text = serde_json::to_string_pretty(file).expect("key file serializes");
    text.push('\n');
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Loads the key file at `path`, or, when it does not exist, creates it.
/// Used for the zero-configuration development key kept in the data
/// directory.
pub fn load_or_create(path: &Path) -> Result<Keyring, KeyError> {
    if !path.exists() {
        generate(path, "dev")?;
    }
    Keyring::load(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_then_load_and_rotate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        generate(&path, "k1").unwrap();
        assert!(generate(&path, "k1").is_err(), "must not overwrite");
        let ring = Keyring::load(&path).unwrap();
        assert_eq!(ring.current().id, "k1");
        let index_of = |ring: &Keyring| ring.user_index.start().finalize().into_bytes();
        let pepper_before = index_of(&ring);
        rotate(&path, "k2").unwrap();
        let ring = Keyring::load(&path).unwrap();
        assert_eq!(
            ring.current().id,
            "k1",
            "a rotated key is next, not current"
        );
        assert!(ring.get("k2").is_some(), "but it is accepted");
        assert!(promote(&path, "k3").is_err());
        promote(&path, "k2").unwrap();
        let ring = Keyring::load(&path).unwrap();
        assert_eq!(ring.current().id, "k2");
        assert!(ring.get("k1").is_some());
        assert_eq!(index_of(&ring), pepper_before, "rotation keeps the pepper");
    }

    #[test]
    fn explains_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, r#"{"version":1,"pepper":"AAAA","keys":[]}"#).unwrap();
        let err = Keyring::load(&path).unwrap_err().to_string();
        assert!(err.contains("pepper must decode to 32 bytes"), "{err}");
        let ok = B64.encode([1u8; 32]);
        std::fs::write(
            &path,
            format!(r#"{{"version":1,"pepper":"{ok}","keys":[{{"id":"a","secret":"{ok}"}}]}}"#),
        )
        .unwrap();
        let err = Keyring::load(&path).unwrap_err().to_string();
        assert!(err.contains("no key is marked current"), "{err}");
        assert!(err.contains("sessionbridge keygen"), "{err}");
    }
}
