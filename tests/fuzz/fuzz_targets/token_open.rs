//! The hand-off token opener: any string, never a panic, never accepted
//! unless sealed with a listed key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionbridge::keys::Keyring;
use sessionbridge::token;

const KEYS: &str = r#"{"version":1,"pepper":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","keys":[{"id":"k1","secret":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","current":true}]}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let keys = Keyring::parse(KEYS, "fuzz").unwrap();
    // A forged token opening would be a broken AEAD: treat it as a crash.
    assert!(token::open(&keys, text).is_err(), "an unsealed input opened: {text:?}");
});
