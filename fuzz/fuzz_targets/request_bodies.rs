//! Request bodies are outside input: whatever the bytes, `parse_json` answers with the value or
//! with a client error (400 malformed JSON, 422 wrong shape), never a panic or a 5xx.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use signalbox_app::requests::{
    CreateEnvironment, CreateRelease, CreateRoleBinding, CreateTemplate, RecordChange, RegisterArtifact, TransitionRequest,
};
use signalbox_server::extract::parse_json;

fn check<T: DeserializeOwned + Serialize>(bytes: &[u8]) {
    match parse_json::<T>(bytes) {
        Ok(value) => {
            // What the server accepts, a client can send again: the value survives a roundtrip.
            let encoded = serde_json::to_vec(&value).expect("an accepted body serialises");
            if let Err(e) = parse_json::<T>(&encoded) {
                panic!("re-encoded body refused: {:?}\n{}", e.0, String::from_utf8_lossy(&encoded));
            }
        }
        Err(e) => {
            let problem = &e.0;
            assert!(problem.status == 400 || problem.status == 422, "unexpected status {}: {problem:?}", problem.status);
            if problem.status == 422 {
                assert!(!problem.errors.is_empty(), "a 422 names the field: {problem:?}");
                assert!(problem.errors.iter().all(|f| !f.field.is_empty()), "{problem:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check::<CreateRelease>(data);
    check::<RegisterArtifact>(data);
    check::<CreateEnvironment>(data);
    check::<CreateTemplate>(data);
    check::<RecordChange>(data);
    check::<CreateRoleBinding>(data);
    check::<TransitionRequest>(data);
});
