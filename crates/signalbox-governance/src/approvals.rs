//! Approvals (SPEC C5) with segregation of duties enforced here, not in a UI: the requester of
//! a promotion and the authors of the release's changes cannot approve it; a person counts
//! once, in one group, whatever roles they hold; an approval binds to the release content
//! digest and stops counting when the content changes or it expires; a rejection stops the
//! round until someone requests approval again.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use signalbox_domain::access::Role;
use utoipa::ToSchema;

use crate::policy::{ApprovalGroup, ApprovalRules};
use crate::risk::RiskLevel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

/// One person's decision in a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Vote {
    pub user_id: String,
    pub username: String,
    /// Roles the person held over the release when voting.
    pub roles: Vec<Role>,
    pub decision: Decision,
    #[serde(default)]
    pub comment: Option<String>,
    /// The release content digest the vote was given for.
    pub content_digest: String,
    pub at: DateTime<Utc>,
}

/// A request for approval of a release into one environment, and the votes on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalRound {
    pub number: u32,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub content_digest: String,
    pub votes: Vec<Vote>,
}

/// Everything needed to judge a vote or a round besides the round itself.
#[derive(Debug, Clone)]
pub struct ApprovalContext<'a> {
    pub rules: &'a ApprovalRules,
    pub risk: RiskLevel,
    pub content_digest: &'a str,
    /// Usernames of the authors of the release's changes.
    pub change_authors: &'a [String],
    pub now: DateTime<Utc>,
}

/// The groups that apply at this risk level.
pub fn effective_groups(rules: &ApprovalRules, risk: RiskLevel) -> Vec<ApprovalGroup> {
    let mut groups = rules.groups.clone();
    for extra in rules.by_risk.iter().filter(|r| risk >= r.at_or_above) {
        match groups.iter_mut().find(|g| g.name == extra.group.name) {
            Some(g) => g.min = g.min.max(extra.group.min),
            None => groups.push(extra.group.clone()),
        }
    }
    groups
}

/// Why a person may not vote in this round, if they may not. Checked when the vote is cast,
/// so the refusal names the reason.
pub fn refuse_voter(round: &ApprovalRound, ctx: &ApprovalContext<'_>, username: &str, roles: &[Role]) -> Option<String> {
    if round.requested_by == username {
        return Some(format!(
            "segregation of duties: {username} requested this approval and cannot approve their own request; another person must"
        ));
    }
    if ctx.change_authors.iter().any(|a| a == username) {
        return Some(format!("segregation of duties: {username} authored a change in this release and cannot approve it"));
    }
    let current = |v: &&Vote| v.username == username && v.content_digest == ctx.content_digest;
    if let Some(v) = round.votes.iter().find(current) {
        return Some(format!(
            "{username} already decided ({}) on this content; one person counts once, whatever roles they hold",
            match v.decision {
                Decision::Approve => "approved",
                Decision::Reject => "rejected",
            }
        ));
    }
    let groups = effective_groups(ctx.rules, ctx.risk);
    let eligible = groups.iter().any(|g| g.roles.iter().any(|r| roles.contains(r)));
    if !groups.is_empty() && !eligible && ctx.rules.min_total.unwrap_or(0) == 0 {
        let wanted: Vec<&str> = groups.iter().flat_map(|g| g.roles.iter().map(|r| r.as_str())).collect();
        return Some(format!("{username} holds none of the approving roles ({})", wanted.join(", ")));
    }
    None
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VoteStanding {
    Counted,
    /// Valid, but not needed by any group (it still counts towards the total).
    Extra,
    ContentChanged,
    Expired,
    /// The voter may not approve (requester or change author) — kept for the record when
    /// rules or authorship changed after the vote.
    SegregationOfDuties,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VoteStatus {
    pub username: String,
    pub decision: Decision,
    pub at: DateTime<Utc>,
    pub standing: VoteStanding,
    /// The group the approval was counted for.
    pub group: Option<String>,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupStatus {
    pub name: String,
    pub roles: Vec<Role>,
    pub min: u32,
    pub approvers: Vec<String>,
    pub missing: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// No approval rules apply to this environment.
    NotRequired,
    /// No round was requested yet.
    NotRequested,
    Pending,
    Approved,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalStatus {
    pub state: ApprovalState,
    pub round: Option<u32>,
    pub requested_by: Option<String>,
    pub groups: Vec<GroupStatus>,
    pub min_total: u32,
    pub distinct_approvers: u32,
    pub votes: Vec<VoteStatus>,
    /// Sentences saying who is still needed, e.g. "1 more of tech_lead (group tech)".
    pub still_needed: Vec<String>,
    /// Who rejected and why, when rejected.
    pub rejection: Option<String>,
}

impl ApprovalStatus {
    pub fn satisfied(&self) -> bool {
        matches!(self.state, ApprovalState::Approved | ApprovalState::NotRequired)
    }
}

/// Assigns approvers to group slots so that as many slots as possible are filled, each person
/// filling at most one slot (bipartite matching by augmenting paths; sizes are tiny).
fn assign(approvers: &[(String, Vec<Role>)], groups: &[ApprovalGroup]) -> Vec<Option<usize>> {
    let slots: Vec<usize> = groups.iter().enumerate().flat_map(|(g, group)| std::iter::repeat_n(g, group.min as usize)).collect();
    let mut slot_owner: Vec<Option<usize>> = vec![None; slots.len()];
    let can = |person: usize, slot: usize| groups[slots[slot]].roles.iter().any(|r| approvers[person].1.contains(r));
    fn augment(
        person: usize,
        seen: &mut [bool],
        slot_owner: &mut [Option<usize>],
        can: &dyn Fn(usize, usize) -> bool,
        n_slots: usize,
    ) -> bool {
        for slot in 0..n_slots {
            if seen[slot] || !can(person, slot) {
                continue;
            }
            seen[slot] = true;
            let free = match slot_owner[slot] {
                None => true,
                Some(other) => augment(other, seen, slot_owner, can, n_slots),
            };
            if free {
                slot_owner[slot] = Some(person);
                return true;
            }
        }
        false
    }
    for person in 0..approvers.len() {
        let mut seen = vec![false; slots.len()];
        augment(person, &mut seen, &mut slot_owner, &can, slots.len());
    }
    let mut group_of = vec![None; approvers.len()];
    for (slot, owner) in slot_owner.iter().enumerate() {
        if let Some(p) = owner {
            group_of[*p] = Some(slots[slot]);
        }
    }
    group_of
}

/// Judges a round against the rules as they are now.
pub fn evaluate(round: Option<&ApprovalRound>, ctx: &ApprovalContext<'_>) -> ApprovalStatus {
    let groups = effective_groups(ctx.rules, ctx.risk);
    let min_total = ctx.rules.min_total.unwrap_or(0);
    let required = !groups.is_empty() || min_total > 0;
    let empty_groups = || {
        groups
            .iter()
            .map(|g| GroupStatus { name: g.name.clone(), roles: g.roles.clone(), min: g.min, approvers: vec![], missing: g.min })
            .collect::<Vec<_>>()
    };
    let Some(round) = round.filter(|_| required) else {
        let state = if required { ApprovalState::NotRequested } else { ApprovalState::NotRequired };
        let still_needed = if required { vec!["approval has not been requested yet".to_string()] } else { vec![] };
        return ApprovalStatus {
            state,
            round: None,
            requested_by: None,
            groups: empty_groups(),
            min_total,
            distinct_approvers: 0,
            votes: vec![],
            still_needed,
            rejection: None,
        };
    };
    let expiry = ctx.rules.expires_after_hours.map(|h| Duration::hours(i64::from(h)));
    let mut votes: Vec<VoteStatus> = Vec::new();
    let mut valid_approvers: Vec<(String, Vec<Role>)> = Vec::new();
    let mut rejection = None;
    for v in &round.votes {
        let standing = if v.content_digest != ctx.content_digest {
            VoteStanding::ContentChanged
        } else if expiry.is_some_and(|e| v.at + e <= ctx.now) {
            VoteStanding::Expired
        } else if v.username == round.requested_by || ctx.change_authors.contains(&v.username) {
            VoteStanding::SegregationOfDuties
        } else {
            VoteStanding::Extra
        };
        if standing == VoteStanding::Extra {
            match v.decision {
                Decision::Approve if !valid_approvers.iter().any(|(u, _)| u == &v.username) => {
                    valid_approvers.push((v.username.clone(), v.roles.clone()))
                }
                Decision::Reject if rejection.is_none() => {
                    rejection = Some(format!("{} rejected: {}", v.username, v.comment.as_deref().unwrap_or("no comment")))
                }
                _ => {}
            }
        }
        votes.push(VoteStatus {
            username: v.username.clone(),
            decision: v.decision,
            at: v.at,
            standing,
            group: None,
            comment: v.comment.clone(),
        });
    }
    let group_of = assign(&valid_approvers, &groups);
    let mut group_status = empty_groups();
    for (i, (username, _)) in valid_approvers.iter().enumerate() {
        if let Some(g) = group_of[i] {
            group_status[g].approvers.push(username.clone());
            group_status[g].missing = group_status[g].missing.saturating_sub(1);
            if let Some(vs) = votes.iter_mut().find(|vs| &vs.username == username && vs.standing == VoteStanding::Extra) {
                vs.standing = VoteStanding::Counted;
                vs.group = Some(groups[g].name.clone());
            }
        }
    }
    let distinct = valid_approvers.len() as u32;
    let mut still_needed: Vec<String> = group_status
        .iter()
        .filter(|g| g.missing > 0)
        .map(|g| {
            let roles: Vec<&str> = g.roles.iter().map(|r| r.as_str()).collect();
            format!("{} more of {} (group {})", g.missing, roles.join(" or "), g.name)
        })
        .collect();
    if distinct < min_total {
        still_needed.push(format!("{} more distinct approver(s) to reach the minimum of {min_total}", min_total - distinct));
    }
    let state = if rejection.is_some() {
        ApprovalState::Rejected
    } else if still_needed.is_empty() {
        ApprovalState::Approved
    } else {
        ApprovalState::Pending
    };
    if state == ApprovalState::Rejected {
        still_needed = vec!["the round was rejected; a new approval request starts a new round".into()];
    }
    ApprovalStatus {
        state,
        round: Some(round.number),
        requested_by: Some(round.requested_by.clone()),
        groups: group_status,
        min_total,
        distinct_approvers: distinct,
        votes,
        still_needed,
        rejection,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RiskApproval;

    fn rules() -> ApprovalRules {
        ApprovalRules {
            groups: vec![
                ApprovalGroup { name: "tech".into(), roles: vec![Role::TechLead], min: 1 },
                ApprovalGroup { name: "business".into(), roles: vec![Role::ProductOwner, Role::Sre], min: 1 },
            ],
            min_total: Some(2),
            expires_after_hours: Some(24),
            by_risk: vec![RiskApproval {
                at_or_above: RiskLevel::High,
                group: ApprovalGroup { name: "security".into(), roles: vec![Role::Security], min: 1 },
            }],
        }
    }

    fn round(votes: Vec<Vote>) -> ApprovalRound {
        ApprovalRound { number: 1, requested_by: "rita".into(), requested_at: now(), content_digest: "d1".into(), votes }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-29T12:00:00Z".parse().unwrap()
    }

    fn vote(user: &str, roles: &[Role], digest: &str) -> Vote {
        Vote {
            user_id: format!("usr_{user}"),
            username: user.into(),
            roles: roles.to_vec(),
            decision: Decision::Approve,
            comment: None,
            content_digest: digest.into(),
            at: now(),
        }
    }

    fn ctx<'a>(rules: &'a ApprovalRules, authors: &'a [String], risk: RiskLevel) -> ApprovalContext<'a> {
        ApprovalContext { rules, risk, content_digest: "d1", change_authors: authors, now: now() }
    }

    #[test]
    fn one_person_with_two_roles_fills_only_one_group() {
        let r = rules();
        let s = evaluate(Some(&round(vec![vote("tess", &[Role::TechLead, Role::Sre], "d1")])), &ctx(&r, &[], RiskLevel::Low));
        assert_eq!(s.state, ApprovalState::Pending);
        assert_eq!(s.distinct_approvers, 1);
        assert_eq!(s.still_needed.len(), 2, "{:?}", s.still_needed);
        let s = evaluate(
            Some(&round(vec![vote("tess", &[Role::TechLead, Role::Sre], "d1"), vote("sam", &[Role::TechLead], "d1")])),
            &ctx(&r, &[], RiskLevel::Low),
        );
        // Matching puts sam on tech and tess on business.
        assert_eq!(s.state, ApprovalState::Approved, "{s:?}");
        assert_eq!(s.groups[0].approvers, vec!["sam"]);
        assert_eq!(s.groups[1].approvers, vec!["tess"]);
    }

    #[test]
    fn requester_authors_and_repeat_voters_are_refused() {
        let r = rules();
        let authors = vec!["alice".to_string()];
        let c = ctx(&r, &authors, RiskLevel::Low);
        let rd = round(vec![vote("tess", &[Role::TechLead], "d1")]);
        assert!(refuse_voter(&rd, &c, "rita", &[Role::TechLead]).unwrap().contains("requested this approval"));
        assert!(refuse_voter(&rd, &c, "alice", &[Role::TechLead]).unwrap().contains("authored a change"));
        assert!(refuse_voter(&rd, &c, "tess", &[Role::Sre]).unwrap().contains("counts once"));
        assert!(refuse_voter(&rd, &c, "victor", &[Role::Viewer]).is_none(), "min_total lets anyone count towards the total");
        assert!(refuse_voter(&rd, &c, "sam", &[Role::Sre]).is_none());
    }

    #[test]
    fn content_change_and_expiry_void_approvals() {
        let r = rules();
        let mut old = vote("sam", &[Role::TechLead], "d1");
        old.at = now() - Duration::hours(25);
        let s = evaluate(Some(&round(vec![old, vote("pat", &[Role::ProductOwner], "d0")])), &ctx(&r, &[], RiskLevel::Low));
        assert_eq!(s.votes[0].standing, VoteStanding::Expired);
        assert_eq!(s.votes[1].standing, VoteStanding::ContentChanged);
        assert_eq!(s.distinct_approvers, 0);
    }

    #[test]
    fn high_risk_needs_security_and_rejection_stops_the_round() {
        let r = rules();
        let votes = vec![vote("sam", &[Role::TechLead], "d1"), vote("pat", &[Role::ProductOwner], "d1")];
        assert_eq!(evaluate(Some(&round(votes.clone())), &ctx(&r, &[], RiskLevel::Low)).state, ApprovalState::Approved);
        let s = evaluate(Some(&round(votes.clone())), &ctx(&r, &[], RiskLevel::High));
        assert_eq!(s.state, ApprovalState::Pending);
        assert!(s.still_needed[0].contains("security"), "{:?}", s.still_needed);
        let mut with_reject = votes;
        let mut no = vote("sid", &[Role::Security], "d1");
        no.decision = Decision::Reject;
        no.comment = Some("pentest open".into());
        with_reject.push(no);
        let s = evaluate(Some(&round(with_reject)), &ctx(&r, &[], RiskLevel::High));
        assert_eq!(s.state, ApprovalState::Rejected);
        assert_eq!(s.rejection.as_deref(), Some("sid rejected: pentest open"));
    }

    #[test]
    fn no_rules_means_not_required() {
        let r = ApprovalRules::default();
        assert_eq!(evaluate(None, &ctx(&r, &[], RiskLevel::Critical)).state, ApprovalState::NotRequired);
        assert!(evaluate(None, &ctx(&r, &[], RiskLevel::Critical)).satisfied());
        let r = rules();
        assert_eq!(evaluate(None, &ctx(&r, &[], RiskLevel::Low)).state, ApprovalState::NotRequested);
    }
}
