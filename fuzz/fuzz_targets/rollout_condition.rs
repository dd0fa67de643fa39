//! Analysis conditions (`result < 0.01`) come from users' promotion paths: parsing and
//! evaluating any text must never panic, and a parsed condition prints back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use signalbox_rollout::analysis::expr::{eval, parse, MAX_SOURCE_LEN};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match parse(&text) {
        Err(e) => assert!(e.position <= text.len() && !e.message.is_empty()),
        Ok(expr) => {
            for values in [&[][..], &[0.5], &[f64::NAN, 1.0, -1.0]] {
                let _ = eval(&expr, values);
            }
            let printed = expr.to_string();
            if printed.len() <= MAX_SOURCE_LEN {
                assert_eq!(parse(&printed), Ok(expr));
            }
        }
    }
});
