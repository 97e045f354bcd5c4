//! What the proxy accepts on its push socket: a table (`PUT /config`) or a patch
//! (`PATCH /config`) as JSON. Decoding never panics; a table that decodes is prepared
//! (or refused with an error) without panicking, and a patch that decodes applies to a
//! base table or is refused.
#![no_main]

use gatehouse_proxy::Shared;
use gatehouse_table::Table;
use gatehouse_table::patch::TablePatch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = serde_json::from_slice::<Table>(data) {
        if let Ok(shared) = Shared::new(Table::default()) {
            let _ = shared.apply(table);
        }
    }
    if let Ok(patch) = serde_json::from_slice::<TablePatch>(data) {
        let _ = Table::default().patched(patch);
    }
});
