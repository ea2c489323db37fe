//! The raw Cookie header and the own signed cookie inside it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionbridge::cookie;
use sessionbridge::keys::Keyring;

const KEYS: &str = r#"{"version":1,"pepper":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","keys":[{"id":"k1","secret":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE","current":true}]}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    let keys = Keyring::parse(KEYS, "fuzz").unwrap();
    let scopes = vec!["example.com".to_string(), "www.example.com".to_string()];
    for (name, value) in cookie::pairs(header) {
        let _ = (name.len(), value.len());
    }
    for value in cookie::values_named(header, "_sbid") {
        if let Ok(id) = cookie::open_identity(&keys, &scopes, "_sbid", value) {
            // Whatever opens must have been sealed by us: re-sealing the
            // same identity must verify too.
            let scope = cookie::CookieScope::Domain("example.com".into());
            let again = cookie::seal_identity(&keys, &scope, "_sbid", &id);
            assert_eq!(cookie::open_identity(&keys, &scopes, "_sbid", &again).unwrap(), id);
        }
    }
});
