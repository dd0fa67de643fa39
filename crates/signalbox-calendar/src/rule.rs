//! RFC 5545 section 3.3.10 recurrence rules: our own parser (so a bad rule is refused naming the
//! part that is wrong) and the hand-over to the `rrule` crate for the expansion itself.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc, Weekday};
use signalbox_domain::validate::Invalid;
use std::fmt::Write as _;

/// Most occurrences a rule may declare with COUNT.
pub const MAX_COUNT: u32 = 10_000;
/// Largest INTERVAL accepted.
pub const MAX_INTERVAL: u16 = 1_000;
/// Longest RRULE text accepted.
pub const MAX_RULE_LEN: usize = 1_000;

/// FREQ. `MINUTELY` and `SECONDLY` are refused: no release calendar needs them, and they turn a
/// one-year expansion into half a million occurrences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Frequency {
    Yearly,
    Monthly,
    Weekly,
    Daily,
    Hourly,
}

impl Frequency {
    fn as_str(self) -> &'static str {
        match self {
            Frequency::Yearly => "YEARLY",
            Frequency::Monthly => "MONTHLY",
            Frequency::Weekly => "WEEKLY",
            Frequency::Daily => "DAILY",
            Frequency::Hourly => "HOURLY",
        }
    }
}

/// UNTIL as written. RFC 5545 wants UTC when DTSTART has a zone; imported calendars also use a
/// DATE (all-day events) or a floating time, which are read in the entry's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Until {
    Utc(DateTime<Utc>),
    Date(NaiveDate),
    Local(NaiveDateTime),
}

/// A BYDAY element: `MO`, `2TU`, `-1FR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByDay {
    pub ordinal: Option<i16>,
    pub weekday: Weekday,
}

/// A parsed and checked RRULE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecurrenceRule {
    pub frequency: Frequency,
    pub interval: u16,
    pub count: Option<u32>,
    pub until: Option<Until>,
    pub by_month: Vec<u8>,
    pub by_week_no: Vec<i8>,
    pub by_year_day: Vec<i16>,
    pub by_month_day: Vec<i8>,
    pub by_day: Vec<ByDay>,
    pub by_hour: Vec<u8>,
    pub by_minute: Vec<u8>,
    pub by_second: Vec<u8>,
    pub by_set_pos: Vec<i32>,
    pub week_start: Weekday,
}

fn weekday_code(w: Weekday) -> &'static str {
    match w {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    }
}

fn parse_weekday(code: &str) -> Option<Weekday> {
    Some(match code {
        "MO" => Weekday::Mon,
        "TU" => Weekday::Tue,
        "WE" => Weekday::Wed,
        "TH" => Weekday::Thu,
        "FR" => Weekday::Fri,
        "SA" => Weekday::Sat,
        "SU" => Weekday::Sun,
        _ => return None,
    })
}

/// Parses a comma list of integers in `range`, excluding zero when `nonzero`.
fn int_list<T>(part: &str, value: &str, min: i64, max: i64, nonzero: bool) -> Result<Vec<T>, String>
where
    T: TryFrom<i64>,
{
    let mut out = Vec::new();
    for item in value.split(',') {
        let n: i64 = item.trim().parse().map_err(|_| format!("{part}: {item:?} is not an integer"))?;
        if n < min || n > max || (nonzero && n == 0) {
            let zero = if nonzero { " (not 0)" } else { "" };
            return Err(format!("{part}: {n} is out of range; allowed {min}..{max}{zero}"));
        }
        out.push(T::try_from(n).map_err(|_| format!("{part}: {n} is out of range"))?);
    }
    if out.len() > 366 {
        return Err(format!("{part}: too many values ({}); at most 366", out.len()));
    }
    Ok(out)
}

fn parse_until(value: &str) -> Result<Until, String> {
    let hint = "UNTIL: write a UTC date-time like 20261231T235959Z (or a date like 20261231)";
    if value.len() == 8 {
        return NaiveDate::parse_from_str(value, "%Y%m%d").map(Until::Date).map_err(|_| format!("{hint}; {value:?} is not a date"));
    }
    if let Some(utc) = value.strip_suffix('Z') {
        return NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S")
            .map(|t| Until::Utc(t.and_utc()))
            .map_err(|_| format!("{hint}; {value:?} is not a date-time"));
    }
    NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S").map(Until::Local).map_err(|_| format!("{hint}; {value:?} is not a date-time"))
}

impl RecurrenceRule {
    /// Parses an RRULE value (`FREQ=WEEKLY;BYDAY=TH`), with or without the `RRULE:` prefix.
    /// Every problem is reported against `field`, naming the rule part.
    pub fn parse(field: &str, raw: &str) -> Result<RecurrenceRule, Invalid> {
        Self::parse_inner(raw).map_err(|message| Invalid::one(field, message))
    }

    fn parse_inner(raw: &str) -> Result<RecurrenceRule, String> {
        if raw.len() > MAX_RULE_LEN {
            return Err(format!("the rule is {} characters long; at most {MAX_RULE_LEN}", raw.len()));
        }
        let text = raw.trim();
        let text = text.strip_prefix("RRULE:").unwrap_or(text);
        if text.is_empty() {
            return Err("the rule is empty; write e.g. \"FREQ=WEEKLY;BYDAY=TH\"".into());
        }
        let mut frequency = None;
        let mut rule = RecurrenceRule {
            frequency: Frequency::Daily,
            interval: 1,
            count: None,
            until: None,
            by_month: vec![],
            by_week_no: vec![],
            by_year_day: vec![],
            by_month_day: vec![],
            by_day: vec![],
            by_hour: vec![],
            by_minute: vec![],
            by_second: vec![],
            by_set_pos: vec![],
            week_start: Weekday::Mon,
        };
        let mut seen: Vec<String> = Vec::new();
        for part in text.split(';') {
            let Some((name, value)) = part.split_once('=') else {
                return Err(format!("{part:?} is not a NAME=VALUE part"));
            };
            let name = name.trim().to_ascii_uppercase();
            let value = value.trim().to_ascii_uppercase();
            if seen.contains(&name) {
                return Err(format!("{name} appears twice"));
            }
            seen.push(name.clone());
            if value.is_empty() {
                return Err(format!("{name} has no value"));
            }
            match name.as_str() {
                "FREQ" => {
                    frequency = Some(match value.as_str() {
                        "YEARLY" => Frequency::Yearly,
                        "MONTHLY" => Frequency::Monthly,
                        "WEEKLY" => Frequency::Weekly,
                        "DAILY" => Frequency::Daily,
                        "HOURLY" => Frequency::Hourly,
                        "MINUTELY" | "SECONDLY" => {
                            return Err(format!("FREQ={value} is not supported; the finest frequency is HOURLY"));
                        }
                        _ => return Err(format!("FREQ: {value:?} is not a frequency; use YEARLY, MONTHLY, WEEKLY, DAILY or HOURLY")),
                    })
                }
                "INTERVAL" => {
                    let n: u16 = value.parse().map_err(|_| format!("INTERVAL: {value:?} is not a positive integer"))?;
                    if n == 0 || n > MAX_INTERVAL {
                        return Err(format!("INTERVAL: {n} is out of range; allowed 1..{MAX_INTERVAL}"));
                    }
                    rule.interval = n;
                }
                "COUNT" => {
                    let n: u32 = value.parse().map_err(|_| format!("COUNT: {value:?} is not a positive integer"))?;
                    if n == 0 || n > MAX_COUNT {
                        return Err(format!("COUNT: {n} is out of range; allowed 1..{MAX_COUNT} (use UNTIL or no end for longer series)"));
                    }
                    rule.count = Some(n);
                }
                "UNTIL" => rule.until = Some(parse_until(&value)?),
                "BYMONTH" => rule.by_month = int_list("BYMONTH", &value, 1, 12, true)?,
                "BYWEEKNO" => rule.by_week_no = int_list("BYWEEKNO", &value, -53, 53, true)?,
                "BYYEARDAY" => rule.by_year_day = int_list("BYYEARDAY", &value, -366, 366, true)?,
                "BYMONTHDAY" => rule.by_month_day = int_list("BYMONTHDAY", &value, -31, 31, true)?,
                "BYHOUR" => rule.by_hour = int_list("BYHOUR", &value, 0, 23, false)?,
                "BYMINUTE" => rule.by_minute = int_list("BYMINUTE", &value, 0, 59, false)?,
                "BYSECOND" => rule.by_second = int_list("BYSECOND", &value, 0, 59, false)?,
                "BYSETPOS" => rule.by_set_pos = int_list("BYSETPOS", &value, -366, 366, true)?,
                "WKST" => rule.week_start = parse_weekday(&value).ok_or_else(|| format!("WKST: {value:?} is not a weekday; use MO..SU"))?,
                "BYDAY" => {
                    for item in value.split(',') {
                        let item = item.trim();
                        let split = item.len().saturating_sub(2);
                        let (number, code) = (item.get(..split).unwrap_or(""), item.get(split..).unwrap_or(""));
                        let weekday = parse_weekday(code).ok_or_else(|| {
                            format!("BYDAY: {item:?} is not a weekday; use MO, TU, WE, TH, FR, SA, SU, optionally with an ordinal like 1MO or -1FR")
                        })?;
                        let ordinal = if number.is_empty() {
                            None
                        } else {
                            let n: i16 = number
                                .trim_start_matches('+')
                                .parse()
                                .map_err(|_| format!("BYDAY: {item:?} has an ordinal that is not an integer"))?;
                            if n == 0 || !(-53..=53).contains(&n) {
                                return Err(format!("BYDAY: ordinal {n} in {item:?} is out of range; allowed -53..53 (not 0)"));
                            }
                            Some(n)
                        };
                        rule.by_day.push(ByDay { ordinal, weekday });
                    }
                }
                "DTSTART" | "TZID" => return Err(format!("{name} is not a rule part; give the start and zone in their own fields")),
                "RSCALE" | "SKIP" | "BYEASTER" => return Err(format!("{name} is not supported")),
                _ => return Err(format!("{name:?} is not an RRULE part (RFC 5545 section 3.3.10)")),
            }
        }
        rule.frequency = frequency.ok_or("FREQ is missing; every rule starts with e.g. FREQ=WEEKLY")?;
        rule.check_combinations()?;
        Ok(rule)
    }

    /// The combination rules of RFC 5545 section 3.3.10.
    fn check_combinations(&self) -> Result<(), String> {
        let f = self.frequency;
        if self.count.is_some() && self.until.is_some() {
            return Err("COUNT and UNTIL cannot both be given; keep one".into());
        }
        if !self.by_week_no.is_empty() && f != Frequency::Yearly {
            return Err("BYWEEKNO is only allowed with FREQ=YEARLY".into());
        }
        if !self.by_year_day.is_empty() && matches!(f, Frequency::Monthly | Frequency::Weekly | Frequency::Daily) {
            return Err(format!("BYYEARDAY is not allowed with FREQ={}", f.as_str()));
        }
        if !self.by_month_day.is_empty() && f == Frequency::Weekly {
            return Err("BYMONTHDAY is not allowed with FREQ=WEEKLY".into());
        }
        for d in &self.by_day {
            if let Some(n) = d.ordinal {
                let ok = match f {
                    Frequency::Monthly => (-5..=5).contains(&n),
                    Frequency::Yearly => self.by_week_no.is_empty(),
                    _ => false,
                };
                if !ok {
                    return Err(format!(
                        "BYDAY: the ordinal in {n}{} is only allowed with FREQ=MONTHLY (-5..5) or FREQ=YEARLY without BYWEEKNO",
                        weekday_code(d.weekday)
                    ));
                }
            }
        }
        let has_other_by = !(self.by_month.is_empty()
            && self.by_week_no.is_empty()
            && self.by_year_day.is_empty()
            && self.by_month_day.is_empty()
            && self.by_day.is_empty()
            && self.by_hour.is_empty()
            && self.by_minute.is_empty()
            && self.by_second.is_empty());
        if !self.by_set_pos.is_empty() && !has_other_by {
            return Err("BYSETPOS needs another BYxxx part to select from (e.g. BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1)".into());
        }
        // A cheap refusal of BYSETPOS positions no period can reach; otherwise such a rule
        // would only be found empty after the expansion engine's full search.
        if !self.by_set_pos.is_empty() {
            let len_or_one = |n: usize| n.max(1);
            let times = match f {
                Frequency::Hourly => len_or_one(self.by_minute.len()) * len_or_one(self.by_second.len()),
                _ => len_or_one(self.by_hour.len()) * len_or_one(self.by_minute.len()) * len_or_one(self.by_second.len()),
            };
            // Days one period can offer: BYMONTHDAY/BYYEARDAY/BYWEEKNO/BYDAY expand, the rest
            // only filter; without any of them a period offers the DTSTART's day once.
            let weekdays_per_month: usize = self.by_day.iter().map(|d| if d.ordinal.is_some() { 1 } else { 5 }).sum();
            let weekdays_per_year: usize = self.by_day.iter().map(|d| if d.ordinal.is_some() { 1 } else { 53 }).sum();
            let months = if self.by_month.is_empty() { 12 } else { self.by_month.len() };
            let days = match f {
                Frequency::Hourly | Frequency::Daily => 1,
                Frequency::Weekly => len_or_one(self.by_day.iter().map(|d| d.weekday).collect::<std::collections::HashSet<_>>().len()),
                Frequency::Monthly if !self.by_month_day.is_empty() => self.by_month_day.len(),
                Frequency::Monthly => len_or_one(weekdays_per_month),
                Frequency::Yearly if !self.by_year_day.is_empty() => self.by_year_day.len(),
                Frequency::Yearly if !self.by_week_no.is_empty() => self.by_week_no.len() * 7,
                Frequency::Yearly if !self.by_month_day.is_empty() => months * self.by_month_day.len(),
                Frequency::Yearly if !self.by_day.is_empty() && self.by_month.is_empty() => weekdays_per_year,
                Frequency::Yearly if !self.by_day.is_empty() => months * weekdays_per_month,
                Frequency::Yearly => len_or_one(self.by_month.len()),
            };
            let candidates = days * times;
            if self.by_set_pos.iter().all(|p| p.unsigned_abs() as usize > candidates) {
                return Err(format!("BYSETPOS can never match: each FREQ={} period has at most {candidates} candidate(s)", f.as_str()));
            }
        }
        Ok(())
    }

    /// The rule in RFC 5545 text, parts in a fixed order, so it can be stored and compared.
    pub fn to_rfc5545(&self) -> String {
        let mut s = format!("FREQ={}", self.frequency.as_str());
        let list = |v: &mut String, name: &str, items: Vec<String>| {
            if !items.is_empty() {
                let _ = write!(v, ";{name}={}", items.join(","));
            }
        };
        if self.interval != 1 {
            let _ = write!(s, ";INTERVAL={}", self.interval);
        }
        if let Some(c) = self.count {
            let _ = write!(s, ";COUNT={c}");
        }
        match self.until {
            Some(Until::Utc(t)) => {
                let _ = write!(s, ";UNTIL={}", t.format("%Y%m%dT%H%M%SZ"));
            }
            Some(Until::Date(d)) => {
                let _ = write!(s, ";UNTIL={}", d.format("%Y%m%d"));
            }
            Some(Until::Local(t)) => {
                let _ = write!(s, ";UNTIL={}", t.format("%Y%m%dT%H%M%S"));
            }
            None => {}
        }
        list(&mut s, "BYMONTH", self.by_month.iter().map(|n| n.to_string()).collect());
        list(&mut s, "BYWEEKNO", self.by_week_no.iter().map(|n| n.to_string()).collect());
        list(&mut s, "BYYEARDAY", self.by_year_day.iter().map(|n| n.to_string()).collect());
        list(&mut s, "BYMONTHDAY", self.by_month_day.iter().map(|n| n.to_string()).collect());
        list(
            &mut s,
            "BYDAY",
            self.by_day
                .iter()
                .map(|d| format!("{}{}", d.ordinal.map(|n| n.to_string()).unwrap_or_default(), weekday_code(d.weekday)))
                .collect(),
        );
        list(&mut s, "BYHOUR", self.by_hour.iter().map(|n| n.to_string()).collect());
        list(&mut s, "BYMINUTE", self.by_minute.iter().map(|n| n.to_string()).collect());
        list(&mut s, "BYSECOND", self.by_second.iter().map(|n| n.to_string()).collect());
        list(&mut s, "BYSETPOS", self.by_set_pos.iter().map(|n| n.to_string()).collect());
        if self.week_start != Weekday::Mon {
            let _ = write!(s, ";WKST={}", weekday_code(self.week_start));
        }
        s
    }

    /// Builds the `rrule` crate's rule over *floating* wall-clock time (its UTC zone stands in
    /// for "no zone"). UNTIL is left out on purpose: it is an instant, and is applied by the
    /// caller after each wall-clock time has been resolved in the real zone. The crate's own
    /// zone handling is bypassed because it drops occurrences whose local midnight does not
    /// exist (zones that change clocks at 00:00, e.g. America/Santiago) instead of resolving
    /// them (`rrule` 0.14, `iter/utils.rs::add_time_to_date`).
    pub(crate) fn to_engine(&self, dtstart_local: NaiveDateTime) -> Result<rrule::RRuleSet, String> {
        use rrule::{Frequency as F, NWeekday, Tz};
        let freq = match self.frequency {
            Frequency::Yearly => F::Yearly,
            Frequency::Monthly => F::Monthly,
            Frequency::Weekly => F::Weekly,
            Frequency::Daily => F::Daily,
            Frequency::Hourly => F::Hourly,
        };
        let mut r = rrule::RRule::new(freq).interval(self.interval).week_start(self.week_start);
        if let Some(c) = self.count {
            r = r.count(c);
        }
        if !self.by_month.is_empty() {
            let months: Vec<chrono::Month> = self.by_month.iter().filter_map(|m| chrono::Month::try_from(*m).ok()).collect();
            r = r.by_month(&months);
        }
        r = r
            .by_week_no(self.by_week_no.clone())
            .by_year_day(self.by_year_day.clone())
            .by_month_day(self.by_month_day.clone())
            .by_weekday(
                self.by_day
                    .iter()
                    .map(|d| match d.ordinal {
                        Some(n) => NWeekday::Nth(n, d.weekday),
                        None => NWeekday::Every(d.weekday),
                    })
                    .collect(),
            )
            .by_hour(self.by_hour.clone())
            .by_minute(self.by_minute.clone())
            .by_second(self.by_second.clone())
            .by_set_pos(self.by_set_pos.clone());
        let start = dtstart_local.and_utc().with_timezone(&Tz::UTC);
        r.build(start).map(|set| set.limit()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(rule: &str) -> String {
        RecurrenceRule::parse("timing/rrule", rule).unwrap_err().0.remove(0).message
    }

    #[test]
    fn refusals_name_the_part() {
        let cases = [
            ("FREQ=SECONDLY", "finest frequency is HOURLY"),
            ("FREQ=WEEKLY;BYDAY=XX", "BYDAY"),
            ("FREQ=MONTHLY;BYMONTHDAY=32", "BYMONTHDAY: 32 is out of range"),
            ("FREQ=DAILY;COUNT=5;UNTIL=20260101T000000Z", "COUNT and UNTIL"),
            ("FREQ=DAILY;COUNT=1000000", "COUNT: 1000000 is out of range"),
            ("BYDAY=MO", "FREQ is missing"),
            ("FREQ=WEEKLY;BYDAY=2MO", "ordinal"),
            ("FREQ=DAILY;BYSETPOS=1", "BYSETPOS needs"),
            ("FREQ=DAILY;FOO=1", "\"FOO\" is not an RRULE part"),
            ("FREQ=DAILY;FREQ=WEEKLY", "FREQ appears twice"),
            ("FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY is not allowed"),
            ("FREQ=DAILY;UNTIL=2026-01-01", "UNTIL"),
            ("FREQ=DAILY;INTERVAL=0", "INTERVAL"),
            ("FREQ=DAILY;BYDAY=MO;BYSETPOS=2", "BYSETPOS can never match"),
            ("FREQ=WEEKLY;BYDAY=MO;BYSETPOS=-2", "at most 1 candidate"),
            ("FREQ=YEARLY;BYMONTH=10;BYSETPOS=-2", "at most 1 candidate"),
            ("FREQ=MONTHLY;BYDAY=1TH;BYSETPOS=2", "at most 1 candidate"),
        ];
        for (rule, expected) in cases {
            let m = message(rule);
            assert!(m.contains(expected), "{rule}: {m}");
        }
    }

    #[test]
    fn canonical_text_is_stable() {
        let r = RecurrenceRule::parse("r", "RRULE:freq=monthly;byday=mo,tu,we,th,fr;bysetpos=-1;interval=2").unwrap();
        assert_eq!(r.to_rfc5545(), "FREQ=MONTHLY;INTERVAL=2;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1");
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "[A-Z=;,0-9+-]{0,60}") {
            let _ = RecurrenceRule::parse("r", &s);
        }

        #[test]
        fn canonical_text_round_trips(
            freq in prop::sample::select(vec!["YEARLY", "MONTHLY", "WEEKLY", "DAILY"]),
            interval in 1u16..10,
            count in prop::option::of(1u32..50),
            months in prop::collection::vec(1u8..=12, 0..3),
            days in prop::collection::vec(prop::sample::select(vec!["MO", "TU", "WE", "TH", "FR", "SA", "SU"]), 0..3),
            hours in prop::collection::vec(0u8..24, 0..3),
        ) {
            let mut text = format!("FREQ={freq};INTERVAL={interval}");
            if let Some(c) = count { text.push_str(&format!(";COUNT={c}")); }
            if !months.is_empty() { text.push_str(&format!(";BYMONTH={}", months.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(","))); }
            if !days.is_empty() { text.push_str(&format!(";BYDAY={}", days.join(","))); }
            if !hours.is_empty() { text.push_str(&format!(";BYHOUR={}", hours.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(","))); }
            let parsed = RecurrenceRule::parse("r", &text).unwrap();
            let again = RecurrenceRule::parse("r", &parsed.to_rfc5545()).unwrap();
            prop_assert_eq!(parsed, again);
        }
    }
}
