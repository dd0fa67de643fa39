//! An audit export file (`signalbox audit verify FILE`) is outside input: whatever its bytes,
//! verifying it must report problems or a parse error, never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use signalbox_app::audit::verify_jsonl;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for from_genesis in [true, false] {
        if let Ok(report) = verify_jsonl(&text, from_genesis) {
            // The report describes what was read.
            assert!(report.entries <= text.lines().count());
            assert_eq!(report.last_seq.is_some(), report.last_hash.is_some());
        }
    }
});
