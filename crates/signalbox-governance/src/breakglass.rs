//! Break-glass (SPEC C5): an emergency bypass of named gates for one release and environment.
//! It needs a reason and an incident reference, a second person with incident_commander or
//! release_manager to confirm it, and it expires. The application announces it in the audit
//! trail and adds a post-facto review task that blocks closing the release.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use signalbox_domain::access::Role;
use signalbox_domain::validate::Invalid;
use utoipa::ToSchema;

use crate::gates::BUILT_IN_RULES;

pub const DEFAULT_TTL_HOURS: u32 = 4;
pub const MAX_TTL_HOURS: u32 = 72;
/// Roles that may confirm somebody else's break-glass.
pub const CONFIRMING_ROLES: [Role; 3] = [Role::IncidentCommander, Role::ReleaseManager, Role::Admin];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakGlassState {
    /// Requested, waiting for a second person.
    Pending,
    Active,
    Expired,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BreakGlass {
    pub id: String,
    pub release_id: String,
    pub environment_id: String,
    /// Gate rules bypassed: built-in names, `rego:<name>`, or `*` for every gate.
    pub rules: Vec<String>,
    /// Also bypasses a freeze (calendar).
    #[serde(default)]
    pub freeze: bool,
    pub reason: String,
    pub incident: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub ttl_hours: u32,
    #[serde(default)]
    pub confirmed_by: Option<String>,
    #[serde(default)]
    pub confirmed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub revoked: bool,
    /// Key of the review task added to the release.
    pub review_task: String,
}

impl BreakGlass {
    pub fn state(&self, now: DateTime<Utc>) -> BreakGlassState {
        if self.revoked {
            return BreakGlassState::Revoked;
        }
        match (self.confirmed_at, self.expires_at) {
            (Some(_), Some(exp)) if now >= exp => BreakGlassState::Expired,
            (Some(_), _) => BreakGlassState::Active,
            // An unconfirmed request also lapses: nobody can confirm it after its time is up.
            (None, _) if now >= self.requested_at + Duration::hours(i64::from(self.ttl_hours)) => BreakGlassState::Expired,
            (None, _) => BreakGlassState::Pending,
        }
    }
}

/// Validates a request; `rego_rules` are the names of the custom rules that apply.
pub fn validate_request(
    rules: &[String],
    reason: &str,
    incident: &str,
    ttl_hours: Option<u32>,
    freeze: bool,
    rego_rules: &[String],
) -> Result<u32, Invalid> {
    let mut errors = Invalid::default();
    if reason.trim().len() < 10 {
        errors.push("reason", "say why the gates must be bypassed (at least 10 characters); it is shown to reviewers and auditors");
    }
    if incident.trim().is_empty() {
        errors.push("incident", "give the incident reference (e.g. INC-2041) that justifies the emergency");
    }
    if rules.is_empty() && !freeze {
        errors.push("rules", "name the gate rules to bypass (e.g. [\"tests_passed\"]) or \"*\" for all, or set freeze");
    }
    for (i, r) in rules.iter().enumerate() {
        let known = r == "*"
            || BUILT_IN_RULES.contains(&r.as_str())
            || r.strip_prefix("rego:").is_some_and(|name| rego_rules.iter().any(|n| n == name));
        if !known {
            errors.push(
                format!("rules/{i}"),
                format!("{r:?} is not a gate rule here; use one of {}, rego:<name>, or *", BUILT_IN_RULES.join(", ")),
            );
        }
    }
    let ttl = ttl_hours.unwrap_or(DEFAULT_TTL_HOURS);
    if ttl == 0 || ttl > MAX_TTL_HOURS {
        errors.push("ttl_hours", format!("must be between 1 and {MAX_TTL_HOURS} hours"));
    }
    errors.into_result()?;
    Ok(ttl)
}

/// Refuses a confirmation that is not a second person with a confirming role, or that comes
/// too late.
pub fn check_confirmation(bg: &BreakGlass, username: &str, roles: &[Role], now: DateTime<Utc>) -> Result<(), String> {
    match bg.state(now) {
        BreakGlassState::Pending => {}
        BreakGlassState::Active => {
            return Err(format!("break-glass {} is already confirmed by {}", bg.id, bg.confirmed_by.as_deref().unwrap_or("?")))
        }
        BreakGlassState::Expired => return Err(format!("break-glass {} has expired; request a new one if the emergency continues", bg.id)),
        BreakGlassState::Revoked => return Err(format!("break-glass {} was revoked", bg.id)),
    }
    if bg.requested_by == username {
        return Err(format!(
            "segregation of duties: {username} requested this break-glass and cannot confirm it; a second person (incident_commander or release_manager) must"
        ));
    }
    if !roles.iter().any(|r| CONFIRMING_ROLES.contains(r)) {
        return Err(format!(
            "{username} holds neither incident_commander nor release_manager here, which confirming a break-glass requires"
        ));
    }
    Ok(())
}

/// Applies a confirmation.
pub fn confirm(bg: &mut BreakGlass, username: &str, now: DateTime<Utc>) {
    bg.confirmed_by = Some(username.to_string());
    bg.confirmed_at = Some(now);
    bg.expires_at = Some(now + Duration::hours(i64::from(bg.ttl_hours)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-29T12:00:00Z".parse().unwrap()
    }

    fn bg() -> BreakGlass {
        BreakGlass {
            id: "bg_1".into(),
            release_id: "rel_1".into(),
            environment_id: "env_1".into(),
            rules: vec!["tests_passed".into()],
            freeze: false,
            reason: "payment outage hotfix".into(),
            incident: "INC-1".into(),
            requested_by: "rita".into(),
            requested_at: now(),
            ttl_hours: 4,
            confirmed_by: None,
            confirmed_at: None,
            expires_at: None,
            revoked: false,
            review_task: "break-glass-review-1".into(),
        }
    }

    #[test]
    fn requests_need_reason_incident_and_known_rules() {
        let err = validate_request(&["nope".into()], "", "", Some(0), false, &[]).unwrap_err();
        let fields: Vec<&str> = err.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["reason", "incident", "rules/0", "ttl_hours"]);
        assert_eq!(validate_request(&["rego:x".into()], "database is on fire", "INC-9", None, false, &["x".into()]), Ok(4));
    }

    #[test]
    fn self_confirmation_wrong_role_and_expiry_are_refused() {
        let b = bg();
        assert!(check_confirmation(&b, "rita", &[Role::IncidentCommander], now()).unwrap_err().contains("segregation of duties"));
        assert!(check_confirmation(&b, "dev", &[Role::Developer], now()).unwrap_err().contains("neither"));
        assert!(check_confirmation(&b, "ivan", &[Role::IncidentCommander], now() + Duration::hours(5)).unwrap_err().contains("expired"));
        check_confirmation(&b, "ivan", &[Role::IncidentCommander], now()).unwrap();
        let mut b = b;
        confirm(&mut b, "ivan", now() + Duration::hours(1));
        assert_eq!(b.state(now() + Duration::hours(4)), BreakGlassState::Active);
        assert_eq!(b.state(now() + Duration::hours(5)), BreakGlassState::Expired);
    }
}
