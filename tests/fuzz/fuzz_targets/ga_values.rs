//! GA4's cookie values and the `_gl` linker, as read from outside input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionbridge::ga;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let now = 1_795_000_000;
    if let Ok(id) = ga::parse_client_id(text, now) {
        assert!(id.random() > 0);
    }
    if let Ok(s) = ga::parse_session(text, now) {
        assert!(s.session_number > 0 && s.last_hit >= s.session_id);
    }
    let _ = ga::linker::read(text, "Mozilla/5.0", "en-US", now);
});
