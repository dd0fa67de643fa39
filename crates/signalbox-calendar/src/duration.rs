//! RFC 5545 section 3.3.6 durations (`P1W`, `P1DT2H`, `PT40H`).
//!
//! Days and weeks are *nominal*: they are added to the local wall-clock time in the entry's
//! zone, so `P1D` across a daylight-saving change is 23 or 25 real hours. Hours, minutes and
//! seconds are *exact*. That is the split RFC 5545 makes, and what makes an all-day event stay
//! all-day in March and October.

use serde::{Deserialize, Serialize};
use signalbox_domain::validate::Invalid;
use std::fmt;

/// Longest duration accepted anywhere in the calendar: a year and a day. Anything longer is
/// almost certainly a typo (`P365W`) and would make every conflict query scan it.
pub const MAX_DURATION_SECONDS: i64 = 367 * 86_400;

/// A positive duration: nominal days plus exact seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CalendarDuration {
    days: u32,
    seconds: u32,
}

impl CalendarDuration {
    pub fn from_parts(days: u32, seconds: u32) -> CalendarDuration {
        CalendarDuration { days, seconds }
    }
    /// Nominal days (weeks counted as 7 days).
    pub fn days(&self) -> u32 {
        self.days
    }
    /// Exact seconds after the nominal days.
    pub fn seconds(&self) -> u32 {
        self.seconds
    }
    /// Upper bound of the real length: nominal days may be at most a few hours longer than
    /// 24 h around a daylight-saving change, so one extra day per day is a safe margin for
    /// index look-behind.
    pub fn max_real_seconds(&self) -> i64 {
        i64::from(self.days) * 86_400 + i64::from(self.days.min(1)) * 86_400 + i64::from(self.seconds)
    }
    pub fn is_zero(&self) -> bool {
        self.days == 0 && self.seconds == 0
    }

    /// Parses `P[nW]` or `P[nD][T[nH][nM][nS]]`. A leading `+` is accepted, a `-` is not:
    /// calendar entries never end before they start.
    pub fn parse(field: &str, raw: &str) -> Result<CalendarDuration, Invalid> {
        let bad = |why: &str| {
            Invalid::one(
                field,
                format!("{raw:?} is not an RFC 5545 duration ({why}); write e.g. \"PT2H\", \"P1D\", \"P1DT12H\" or \"P2W\""),
            )
        };
        let text = raw.trim();
        let text = text.strip_prefix('+').unwrap_or(text);
        if text.starts_with('-') {
            return Err(bad("negative durations are not allowed"));
        }
        let Some(body) = text.strip_prefix('P') else {
            return Err(bad("it must start with P"));
        };
        if body.is_empty() || body == "T" {
            return Err(bad("no amount after P"));
        }
        let (date_part, time_part) = match body.split_once('T') {
            Some((d, t)) => (d, Some(t)),
            None => (body, None),
        };
        let mut days: u64 = 0;
        let mut seconds: u64 = 0;
        let mut seen_weeks = false;
        for (number, unit) in split_units(date_part).map_err(|e| bad(&e))? {
            match unit {
                'W' => {
                    seen_weeks = true;
                    days = days.saturating_add(number.saturating_mul(7));
                }
                'D' => days = days.saturating_add(number),
                other => return Err(bad(&format!("unit {other:?} is not allowed before T; use W or D"))),
            }
        }
        if let Some(time_part) = time_part {
            if time_part.is_empty() {
                return Err(bad("T must be followed by hours, minutes or seconds"));
            }
            if seen_weeks {
                return Err(bad("weeks cannot be combined with a time part"));
            }
            for (number, unit) in split_units(time_part).map_err(|e| bad(&e))? {
                let factor = match unit {
                    'H' => 3600,
                    'M' => 60,
                    'S' => 1,
                    other => return Err(bad(&format!("unit {other:?} is not allowed after T; use H, M or S"))),
                };
                seconds = seconds.saturating_add(number.saturating_mul(factor));
            }
        }
        let total = days.saturating_mul(86_400).saturating_add(seconds);
        if total == 0 {
            return Err(bad("it is zero; an entry must last at least one second"));
        }
        if total > MAX_DURATION_SECONDS as u64 {
            return Err(Invalid::one(field, format!("{raw:?} is longer than the maximum of 367 days; split the entry or check the units")));
        }
        // Both fit: total <= 367 days.
        Ok(CalendarDuration { days: days as u32, seconds: seconds as u32 })
    }
}

/// Splits `12H30M` into `[(12,'H'), (30,'M')]`, rejecting repeated or out-of-order units.
fn split_units(text: &str) -> Result<Vec<(u64, char)>, String> {
    let mut out = Vec::new();
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            if number.len() >= 9 {
                return Err("number too long".into());
            }
            number.push(c);
        } else {
            if number.is_empty() {
                return Err(format!("unit {c:?} without a number"));
            }
            let n: u64 = number.parse().map_err(|_| "bad number".to_string())?;
            if out.iter().any(|(_, u)| *u == c) {
                return Err(format!("unit {c:?} appears twice"));
            }
            out.push((n, c));
            number.clear();
        }
    }
    if !number.is_empty() {
        return Err(format!("number {number} has no unit"));
    }
    let order = "WDHMS";
    let positions: Vec<usize> = out.iter().filter_map(|(_, u)| order.find(*u)).collect();
    if positions.windows(2).any(|w| w[0] >= w[1]) {
        return Err("units are out of order".into());
    }
    Ok(out)
}

impl fmt::Display for CalendarDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P")?;
        if self.days > 0 {
            if self.days.is_multiple_of(7) && self.seconds == 0 {
                return write!(f, "{}W", self.days / 7);
            }
            write!(f, "{}D", self.days)?;
        }
        if self.seconds > 0 {
            f.write_str("T")?;
            let (h, m, s) = (self.seconds / 3600, self.seconds / 60 % 60, self.seconds % 60);
            if h > 0 {
                write!(f, "{h}H")?;
            }
            if m > 0 {
                write!(f, "{m}M")?;
            }
            if s > 0 {
                write!(f, "{s}S")?;
            }
        }
        Ok(())
    }
}

impl TryFrom<String> for CalendarDuration {
    type Error = Invalid;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        CalendarDuration::parse("duration", &value)
    }
}
impl From<CalendarDuration> for String {
    fn from(d: CalendarDuration) -> String {
        d.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_rfc_examples() {
        let cases = [("PT2H", 0, 7200), ("P1D", 1, 0), ("P2W", 14, 0), ("P15DT5H0M20S", 15, 5 * 3600 + 20), ("PT40H", 0, 144_000)];
        for (text, days, seconds) in cases {
            let d = CalendarDuration::parse("d", text).unwrap();
            assert_eq!((d.days(), d.seconds()), (days, seconds), "{text}");
        }
    }

    #[test]
    fn refuses_with_a_reason() {
        for (text, why) in [
            ("2H", "start with P"),
            ("P", "no amount"),
            ("-PT1H", "negative"),
            ("PT0S", "zero"),
            ("P1H", "not allowed before T"),
            ("PT1D", "not allowed after T"),
            ("P400D", "maximum"),
            ("PT1H1H", "twice"),
            ("PT1M1H", "out of order"),
            ("P1WT1H", "weeks"),
        ] {
            let err = CalendarDuration::parse("timing/duration", text).unwrap_err();
            assert_eq!(err.0[0].field, "timing/duration");
            assert!(err.0[0].message.contains(why), "{text}: {}", err.0[0].message);
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,20}") {
            let _ = CalendarDuration::parse("d", &s);
        }
        #[test]
        fn display_round_trips(days in 0u32..300, seconds in 0u32..86_400) {
            prop_assume!(days > 0 || seconds > 0);
            let d = CalendarDuration::from_parts(days, seconds);
            prop_assert_eq!(CalendarDuration::parse("d", &d.to_string()).unwrap(), d);
        }
    }
}
