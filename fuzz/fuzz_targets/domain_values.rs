//! The value parsers every request field goes through: arbitrary strings never panic, and what
//! they accept keeps its invariants.

#![no_main]

use libfuzzer_sys::fuzz_target;
use signalbox_domain::validate::{parse_url, parse_version, require_text, Digest, Name};

fuzz_target!(|data: &[u8]| {
    let Some((&max, rest)) = data.split_first() else { return };
    let raw = String::from_utf8_lossy(rest);
    let raw = raw.as_ref();

    match Name::parse("name", raw) {
        Ok(name) => {
            assert_eq!(name.as_str(), raw, "a name is kept as given");
            assert!((1..=63).contains(&name.as_str().len()));
            assert!(name.as_str().starts_with(|c: char| c.is_ascii_lowercase()));
            assert!(!name.as_str().ends_with('-'));
            assert!(name.as_str().chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            let again = Name::parse("name", name.as_str()).expect("a parsed name parses again");
            assert_eq!(again, name);
            let via_serde: Name = serde_json::from_value(serde_json::to_value(&name).unwrap()).expect("a name roundtrips through JSON");
            assert_eq!(via_serde, name);
        }
        Err(e) => assert!(!e.is_empty() && e.0.iter().all(|f| f.field == "name")),
    }

    match Digest::parse("digest", raw) {
        Ok(digest) => {
            let s = digest.as_str();
            assert_eq!(s.len(), 71, "{s:?}");
            assert!(s.starts_with("sha256:"));
            assert!(s["sha256:".len()..].chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)), "{s:?}");
            assert!(s.eq_ignore_ascii_case(raw), "only the case of the hex digits changes");
            assert_eq!(Digest::parse("digest", s).expect("a parsed digest parses again"), digest);
        }
        Err(e) => assert!(!e.is_empty() && e.0.iter().all(|f| f.field == "digest")),
    }

    match parse_version("version", raw) {
        Ok(v) => {
            let again = parse_version("version", &v.to_string()).expect("a printed version parses again");
            assert_eq!(again, v);
        }
        Err(e) => assert!(!e.is_empty() && e.0.iter().all(|f| f.field == "version")),
    }

    match parse_url("url", raw) {
        Ok(url) => {
            assert_eq!(url, raw);
            assert!(url.len() > 8 && url.len() <= 2048);
            assert!(!url.chars().any(|c| c.is_whitespace() || c.is_control()));
        }
        Err(e) => assert!(!e.is_empty() && e.0.iter().all(|f| f.field == "url")),
    }

    let max = usize::from(max);
    match require_text("text", raw, max) {
        Ok(text) => {
            assert_eq!(text, raw.trim());
            assert!(!text.is_empty());
            assert!(text.chars().count() <= max);
        }
        Err(e) => assert!(!e.is_empty() && e.0.iter().all(|f| f.field == "text")),
    }
});
