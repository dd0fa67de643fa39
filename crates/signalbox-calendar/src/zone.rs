//! IANA zones and the mapping of local wall-clock times to instants.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use signalbox_domain::validate::Invalid;

/// Parses an IANA zone name (`Europe/Berlin`, `UTC`). Abbreviations like `CET` that the tz
/// database also carries are accepted because they are IANA names too, but `CEST` is not.
pub fn parse_zone(field: &str, raw: &str) -> Result<Tz, Invalid> {
    raw.parse::<Tz>().map_err(|_| {
        Invalid::one(field, format!("{raw:?} is not an IANA time zone; use a name like \"Europe/Berlin\", \"America/New_York\" or \"UTC\""))
    })
}

/// The instant a local wall-clock time denotes, following RFC 5545 section 3.3.5:
/// a time that occurs twice (the fall-back overlap) is the *first* occurrence; a time that does
/// not exist (the spring-forward gap) is read with the UTC offset in force *before* the gap,
/// so 02:30 on the morning clocks jump from 02:00 to 03:00 becomes 03:30. This is also what
/// PEP 495's `fold=0` does, which is how the Python oracle in the tests resolves times.
pub fn resolve_local(zone: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // Walk back to the last wall-clock time that exists: its offset is the one in force
            // before the gap. Gaps are at most a day long (Samoa, 2011).
            let mut probe = local;
            for _ in 0..(4 * 26) {
                probe -= Duration::minutes(15);
                if let Some(before) = zone.from_local_datetime(&probe).latest() {
                    let offset = i64::from(before.offset().fix().local_minus_utc());
                    return (local - Duration::seconds(offset)).and_utc();
                }
            }
            // Unreachable with the real tz database; UTC is the least surprising fallback.
            local.and_utc()
        }
    }
}

/// Local wall-clock time of an instant in a zone.
pub fn to_local(zone: Tz, instant: DateTime<Utc>) -> NaiveDateTime {
    instant.with_timezone(&zone).naive_local()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn local(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, 0).unwrap()
    }

    #[test]
    fn rfc5545_examples_for_new_york() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // RFC 5545 3.3.5: 20071104T013000 is 1:30 EDT (the first one).
        assert_eq!(resolve_local(ny, local(2007, 11, 4, 1, 30)).to_rfc3339(), "2007-11-04T05:30:00+00:00");
        // RFC 5545 3.3.5: 20070311T023000 does not exist and is 3:30 EDT.
        assert_eq!(resolve_local(ny, local(2007, 3, 11, 2, 30)).to_rfc3339(), "2007-03-11T07:30:00+00:00");
    }

    #[test]
    fn lord_howe_half_hour_gap_and_overlap() {
        let lh: Tz = "Australia/Lord_Howe".parse().unwrap();
        // 2024-10-06 02:00 +10:30 -> 02:30 +11:00; 02:15 is in the gap, read at +10:30.
        assert_eq!(resolve_local(lh, local(2024, 10, 6, 2, 15)).to_rfc3339(), "2024-10-05T15:45:00+00:00");
        // 2024-04-07 02:00 +11:00 -> 01:30 +10:30; 01:45 happens twice, the first is +11:00.
        assert_eq!(resolve_local(lh, local(2024, 4, 7, 1, 45)).to_rfc3339(), "2024-04-06T14:45:00+00:00");
    }

    #[test]
    fn unknown_zone_names_the_field() {
        let err = parse_zone("zone", "Mars/Olympus").unwrap_err();
        assert_eq!(err.0[0].field, "zone");
        assert!(err.0[0].message.contains("IANA"));
    }
}
