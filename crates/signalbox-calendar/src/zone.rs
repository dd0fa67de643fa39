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

/// A `TZID` parameter as calendar programs write it, resolved to an IANA zone:
/// - an IANA name (`Europe/Berlin`);
/// - a Windows zone name, as Outlook and Exchange write them (`W. Europe Standard Time`,
///   `Eastern Standard Time`), mapped with CLDR's `windowsZones` table (the world-wide default,
///   territory `001`; from the `localzone` crate);
/// - a globally unique TZID (RFC 5545 §3.2.19: a leading `/`), e.g. Mozilla's
///   `/mozilla.org/20071231_1/Europe/London`: the IANA name its last segments spell.
///
/// Quotes around the parameter value are removed by the content-line parser.
pub fn resolve_tzid(raw: &str) -> Option<Tz> {
    let raw = raw.trim();
    if let Ok(tz) = raw.parse::<Tz>() {
        return Some(tz);
    }
    if let Some(unique) = raw.strip_prefix('/') {
        let segments: Vec<&str> = unique.split('/').collect();
        return (0..segments.len()).find_map(|i| segments[i..].join("/").parse::<Tz>().ok());
    }
    localzone::win_zone_to_iana(raw, Some("001")).and_then(|iana| iana.parse::<Tz>().ok())
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

    #[test]
    fn tzids_in_the_wild_resolve_to_iana_zones() {
        let cases = [
            ("Europe/Lisbon", "Europe/Lisbon"),
            // Windows names (CLDR windowsZones, territory 001), as Outlook writes them.
            ("W. Europe Standard Time", "Europe/Berlin"),
            ("Eastern Standard Time", "America/New_York"),
            ("Pacific Standard Time", "America/Los_Angeles"),
            ("Central Standard Time", "America/Chicago"),
            ("GMT Standard Time", "Europe/London"),
            ("Romance Standard Time", "Europe/Paris"),
            ("Central Europe Standard Time", "Europe/Budapest"),
            ("AUS Eastern Standard Time", "Australia/Sydney"),
            ("Tokyo Standard Time", "Asia/Tokyo"),
            ("E. South America Standard Time", "America/Sao_Paulo"),
            // Globally unique TZIDs (Mozilla's prefix and a bare leading slash).
            ("/mozilla.org/20071231_1/Europe/London", "Europe/London"),
            ("/America/New_York", "America/New_York"),
            ("  Tokyo Standard Time ", "Asia/Tokyo"),
        ];
        for (tzid, iana) in cases {
            assert_eq!(resolve_tzid(tzid).map(|z| z.name()), Some(iana), "{tzid}");
        }
        for unknown in ["Mars Standard Time", "/mozilla.org/2007/Mars/Olympus", "", "W. Europe"] {
            assert_eq!(resolve_tzid(unknown), None, "{unknown}");
        }
        // India's CLDR default is the old name, which the tz database keeps as a link.
        assert_eq!(
            resolve_tzid("India Standard Time").map(|z| resolve_local(z, "2026-01-01T12:00:00".parse().unwrap())),
            Some("2026-01-01T06:30:00Z".parse().unwrap())
        );
    }
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
