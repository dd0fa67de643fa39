//! Release trains (reference gap 10): a cadence in a zone, a cut-off before each departure,
//! boarding and carry-over decisions. Pure functions; the scheduler that materializes
//! departures and fires cut-offs lives in the server.
//!
//! Boundary semantics: a departure is *boarding* while `now < cut-off`, *frozen* while
//! `cut-off <= now < departure` and *departed* from `departure` on. So boarding at exactly the
//! cut-off instant goes to the following departure.

use crate::duration::CalendarDuration;
use crate::model::{parse_local, Recurrence};
use crate::rule::RecurrenceRule;
use crate::zone::{parse_zone, resolve_local};
use chrono::{DateTime, Duration, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use signalbox_domain::validate::Invalid;
use std::collections::BTreeSet;
use utoipa::ToSchema;

/// Longest cut-off accepted: 60 days before departure.
pub const MAX_CUTOFF_DAYS: u32 = 60;
/// Most departures one call returns or looks through.
pub const MAX_DEPARTURES: usize = 1_000;

/// A train's cadence as a client sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CadenceDraft {
    /// IANA zone the departures are planned in.
    pub zone: String,
    /// First departure, local wall-clock time (`2026-01-08T10:00:00`).
    pub dtstart: String,
    /// RFC 5545 RRULE, e.g. `FREQ=WEEKLY;BYDAY=TH`.
    pub rrule: String,
    /// Local departure times that are cancelled (holidays).
    #[serde(default)]
    pub exdates: Vec<String>,
    /// RFC 5545 duration before departure when the train freezes, e.g. `PT40H`. Days are
    /// nominal (wall clock), hours exact. Absent: the cut-off is the departure itself.
    #[serde(default)]
    pub cutoff_before: Option<String>,
}

/// One departure with its cut-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Departure {
    pub departure: DateTime<Utc>,
    pub cutoff: DateTime<Utc>,
    /// RFC 3339 in the train's zone.
    pub local_departure: String,
    pub local_cutoff: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeparturePhase {
    Boarding,
    Frozen,
    Departed,
}

/// A validated cadence.
#[derive(Debug, Clone)]
pub struct TrainCadence {
    recurrence: Recurrence,
    cutoff_before: Option<CalendarDuration>,
}

impl TrainCadence {
    pub fn from_draft(draft: &CadenceDraft) -> Result<TrainCadence, Invalid> {
        let mut errors = Invalid::default();
        let zone = errors.check(parse_zone("cadence/zone", &draft.zone));
        let dtstart = errors.check(parse_local("cadence/dtstart", &draft.dtstart));
        let rule = errors.check(RecurrenceRule::parse("cadence/rrule", &draft.rrule));
        let mut exdates = BTreeSet::new();
        for (i, raw) in draft.exdates.iter().enumerate().take(crate::model::MAX_EXDATES) {
            if let Some(t) = errors.check(parse_local(&format!("cadence/exdates/{i}"), raw)) {
                exdates.insert(t);
            }
        }
        let cutoff_before = match &draft.cutoff_before {
            None => None,
            Some(raw) => errors.check(CalendarDuration::parse("cadence/cutoff_before", raw)).and_then(|d| {
                if d.max_real_seconds() > i64::from(MAX_CUTOFF_DAYS + 1) * 86_400 {
                    errors.push("cadence/cutoff_before", format!("{raw:?} is longer than {MAX_CUTOFF_DAYS} days"));
                    None
                } else {
                    Some(d)
                }
            }),
        };
        errors.into_result()?;
        let (Some(zone), Some(dtstart), Some(rule)) = (zone, dtstart, rule) else {
            return Err(Invalid::one("cadence", "could not be validated"));
        };
        // A departure is an instant; the series needs a length, one second stands in.
        let recurrence = Recurrence::new(dtstart, zone, rule, CalendarDuration::from_parts(0, 1), exdates).map_err(|e| {
            Invalid(
                e.0.into_iter()
                    .map(|f| signalbox_domain::validate::FieldError::new(f.field.replace("timing/", "cadence/"), f.message))
                    .collect(),
            )
        })?;
        Ok(TrainCadence { recurrence, cutoff_before })
    }

    pub fn recurrence(&self) -> &Recurrence {
        &self.recurrence
    }

    fn cutoff_of(&self, local: NaiveDateTime, departure: DateTime<Utc>) -> DateTime<Utc> {
        match self.cutoff_before {
            None => departure,
            Some(d) => {
                let after_days = if d.days() == 0 {
                    departure
                } else {
                    resolve_local(self.recurrence.zone(), local - Duration::days(i64::from(d.days())))
                };
                after_days - Duration::seconds(i64::from(d.seconds()))
            }
        }
    }

    fn present(&self, local: NaiveDateTime, departure: DateTime<Utc>) -> Departure {
        let cutoff = self.cutoff_of(local, departure);
        let zone = self.recurrence.zone();
        let show = |t: DateTime<Utc>| t.with_timezone(&zone).to_rfc3339_opts(SecondsFormat::Secs, false);
        Departure { departure, cutoff, local_departure: show(departure), local_cutoff: show(cutoff) }
    }

    /// Calls `visit` with departures strictly after `after`, in order, at most
    /// [`MAX_DEPARTURES`] of them, until it returns `false`.
    fn departures_after(&self, after: DateTime<Utc>, mut visit: impl FnMut(Departure) -> bool) {
        let mut seen = 0;
        self.recurrence.for_each_start(|local, start| {
            if start <= after {
                return true;
            }
            seen += 1;
            seen <= MAX_DEPARTURES && visit(self.present(local, start))
        });
    }

    /// The next `n` departures strictly after `after` (`n` capped at [`MAX_DEPARTURES`]).
    pub fn next_departures(&self, after: DateTime<Utc>, n: usize) -> Vec<Departure> {
        let mut out = Vec::new();
        let n = n.min(MAX_DEPARTURES);
        if n == 0 {
            return out;
        }
        self.departures_after(after, |d| {
            out.push(d);
            out.len() < n
        });
        out
    }

    /// The departure something boarding at `now` goes on: the first whose cut-off is still
    /// strictly in the future. At exactly the cut-off that departure is frozen and the item
    /// goes to the following one. `None` when the cadence has ended.
    pub fn departure_for_boarding(&self, now: DateTime<Utc>) -> Option<Departure> {
        let mut found = None;
        // A departure can only be boardable if it is after now (its cut-off is not later).
        self.departures_after(now, |d| {
            if d.cutoff > now {
                found = Some(d);
                false
            } else {
                true
            }
        });
        found
    }

    /// The departure after `departure`, where carried-over items go.
    pub fn following(&self, departure: &Departure) -> Option<Departure> {
        self.next_departures(departure.departure, 1).into_iter().next()
    }
}

/// Where a departure stands at `now`.
pub fn phase(departure: &Departure, now: DateTime<Utc>) -> DeparturePhase {
    if now < departure.cutoff {
        DeparturePhase::Boarding
    } else if now < departure.departure {
        DeparturePhase::Frozen
    } else {
        DeparturePhase::Departed
    }
}

/// Something on a departure, with what holds it back. It leaves when it is marked ready and
/// no gate fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BoardedItem {
    pub id: String,
    /// Marked ready by a person.
    pub ready: bool,
    /// Why it is not ready, when known.
    #[serde(default)]
    pub blocker: Option<String>,
    /// One sentence per failing governance gate rule for the departure's target environments
    /// (`gate <rule> fails for <environment>: …`); empty when every gate passes.
    #[serde(default)]
    pub failing_gates: Vec<String>,
    /// The names of those rules (`tests_passed`, `rego:…`), deduplicated, for machines.
    #[serde(default)]
    pub failing_rules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CarriedItem {
    pub id: String,
    pub reason: String,
    /// The departure it moves to; `None` when the cadence has ended.
    pub to_departure: Option<DateTime<Utc>>,
    /// The gate rules that failed for it at departure (empty when it was only not ready).
    #[serde(default)]
    pub failing_rules: Vec<String>,
}

/// The decision at departure time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CarryOver {
    pub departing: Vec<String>,
    pub carried_over: Vec<CarriedItem>,
}

/// Splits a departure's items into those that leave and those carried over to `next`, each
/// with the reason recorded and announced: every failing gate, then "not ready" (with the
/// blocker) when it was not marked ready.
pub fn plan_carry_over(departure: &Departure, items: &[BoardedItem], next: Option<&Departure>) -> CarryOver {
    let mut decision = CarryOver { departing: vec![], carried_over: vec![] };
    for item in items {
        if item.ready && item.failing_gates.is_empty() {
            decision.departing.push(item.id.clone());
            continue;
        }
        let mut why: Vec<String> = item.failing_gates.clone();
        if !item.ready {
            why.push(format!("not ready: {}", item.blocker.as_deref().unwrap_or("not marked ready")));
        }
        let destination = match next {
            Some(n) => format!("carried over to the departure at {}", n.local_departure),
            None => "no later departure exists; it stays unscheduled".to_string(),
        };
        decision.carried_over.push(CarriedItem {
            id: item.id.clone(),
            reason: format!("held at departure {} ({}); {destination}", departure.local_departure, why.join("; ")),
            to_departure: next.map(|n| n.departure),
            failing_rules: item.failing_rules.clone(),
        });
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lisbon_thursday() -> TrainCadence {
        TrainCadence::from_draft(&CadenceDraft {
            zone: "Europe/Lisbon".into(),
            dtstart: "2026-01-01T10:00:00".into(),
            rrule: "FREQ=WEEKLY;BYDAY=TH".into(),
            exdates: vec!["2026-12-24T10:00:00".into()],
            cutoff_before: Some("PT40H".into()),
        })
        .unwrap()
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn cutoff_is_tuesday_18_00_for_thursday_10_00() {
        let d = &lisbon_thursday().next_departures(t("2026-07-01T00:00:00Z"), 1)[0];
        assert_eq!(d.local_departure, "2026-07-02T10:00:00+01:00");
        assert_eq!(d.local_cutoff, "2026-06-30T18:00:00+01:00");
    }

    #[test]
    fn boarding_at_just_before_and_just_after_the_cutoff() {
        let train = lisbon_thursday();
        let cutoff = t("2026-06-30T17:00:00Z");
        let this = train.departure_for_boarding(cutoff - Duration::seconds(1)).unwrap();
        assert_eq!(this.departure, t("2026-07-02T09:00:00Z"));
        assert_eq!(phase(&this, cutoff - Duration::seconds(1)), DeparturePhase::Boarding);
        assert_eq!(phase(&this, cutoff), DeparturePhase::Frozen);
        assert_eq!(phase(&this, this.departure), DeparturePhase::Departed);
        let at = train.departure_for_boarding(cutoff).unwrap();
        assert_eq!(at.departure, t("2026-07-09T09:00:00Z"), "at the cut-off the departure is frozen");
        let after = train.departure_for_boarding(cutoff + Duration::seconds(1)).unwrap();
        assert_eq!(after.departure, t("2026-07-09T09:00:00Z"));
    }

    #[test]
    fn cancelled_departure_and_dst() {
        let train = lisbon_thursday();
        let around_christmas: Vec<_> = train.next_departures(t("2026-12-20T00:00:00Z"), 2).into_iter().map(|d| d.local_departure).collect();
        assert_eq!(around_christmas, ["2026-12-31T10:00:00+00:00", "2027-01-07T10:00:00+00:00"]);
        // Lisbon goes to summer time on 29 March 2026: 10:00 stays 10:00, the cut-off is exact.
        let d = &train.next_departures(t("2026-03-29T00:00:00Z"), 1)[0];
        assert_eq!(d.local_departure, "2026-04-02T10:00:00+01:00");
        assert_eq!(d.local_cutoff, "2026-03-31T18:00:00+01:00");
    }

    #[test]
    fn carry_over_names_the_next_departure() {
        let train = lisbon_thursday();
        let d = &train.next_departures(t("2026-07-01T00:00:00Z"), 1)[0];
        let next = train.following(d);
        let item = |id: &str, ready: bool, blocker: Option<&str>, gates: &[&str]| BoardedItem {
            id: id.into(),
            ready,
            blocker: blocker.map(Into::into),
            failing_gates: gates.iter().map(|g| format!("gate {g} fails for prod: no evidence")).collect(),
            failing_rules: gates.iter().map(|g| g.to_string()).collect(),
        };
        let items = [
            item("a", true, None, &[]),
            item("b", false, Some("smoke tests failing"), &[]),
            item("c", true, None, &["tests_passed"]),
            item("d", false, None, &["coverage_min"]),
        ];
        let plan = plan_carry_over(d, &items, next.as_ref());
        assert_eq!(plan.departing, ["a"]);
        let carried: Vec<(&str, &str, Vec<String>)> =
            plan.carried_over.iter().map(|c| (c.id.as_str(), c.reason.as_str(), c.failing_rules.clone())).collect();
        assert_eq!(
            carried,
            vec![
                (
                    "b",
                    "held at departure 2026-07-02T10:00:00+01:00 (not ready: smoke tests failing); carried over to the departure at 2026-07-09T10:00:00+01:00",
                    vec![]
                ),
                (
                    "c",
                    "held at departure 2026-07-02T10:00:00+01:00 (gate tests_passed fails for prod: no evidence); carried over to the departure at 2026-07-09T10:00:00+01:00",
                    vec!["tests_passed".to_string()]
                ),
                (
                    "d",
                    "held at departure 2026-07-02T10:00:00+01:00 (gate coverage_min fails for prod: no evidence; not ready: not marked ready); carried over to the departure at 2026-07-09T10:00:00+01:00",
                    vec!["coverage_min".to_string()]
                ),
            ]
        );
        assert!(plan.carried_over.iter().all(|c| c.to_departure == Some(t("2026-07-09T09:00:00Z"))));
    }

    #[test]
    fn ended_cadence_has_no_boarding() {
        let train = TrainCadence::from_draft(&CadenceDraft {
            zone: "UTC".into(),
            dtstart: "2026-01-01T10:00:00".into(),
            rrule: "FREQ=DAILY;COUNT=2".into(),
            exdates: vec![],
            cutoff_before: None,
        })
        .unwrap();
        assert!(train.departure_for_boarding(t("2026-01-03T00:00:00Z")).is_none());
        // Without a cut-off, boarding at the departure instant goes to the next one.
        assert_eq!(train.departure_for_boarding(t("2026-01-01T10:00:00Z")).unwrap().departure, t("2026-01-02T10:00:00Z"));
    }

    #[test]
    fn bad_cadence_names_fields() {
        let err = TrainCadence::from_draft(&CadenceDraft {
            zone: "Europe/Lisboa".into(),
            dtstart: "2026-01-01T10:00:00".into(),
            rrule: "FREQ=WEEKLY;BYDAY=THU".into(),
            exdates: vec![],
            cutoff_before: Some("P90D".into()),
        })
        .unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["cadence/zone", "cadence/rrule", "cadence/cutoff_before"]);
    }
}
