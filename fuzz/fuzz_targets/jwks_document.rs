//! JWKS documents as a key server might send them: parsing never panics, and whatever
//! parses answers key lookups.
#![no_main]

use gatehouse_proxy::policy::jwks::KeySet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = KeySet::parse(data, 1) {
        let _ = set.knows(None);
        let _ = set.knows(Some("k1"));
        let _ = set.all().count();
    }
});
