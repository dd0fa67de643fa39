//! The release lifecycle (SPEC section 3):
//!
//! ```text
//! planning → testing → awaiting_approval → approved → deploying → verifying → released → closed
//!                                            exits: failed, rolled_back, cancelled
//! ```
//!
//! [`allowed_targets`] is the table of edges; [`check_transition`] adds the preconditions of
//! each edge and explains every refusal in words a release manager can act on.

use crate::model::{DocumentKind, Release};
use crate::tasks::{TaskKind, TaskStatus};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    Planning,
    Testing,
    AwaitingApproval,
    Approved,
    Deploying,
    Verifying,
    Released,
    Closed,
    Failed,
    RolledBack,
    Cancelled,
}

impl ReleaseState {
    pub const ALL: [ReleaseState; 11] = [
        ReleaseState::Planning,
        ReleaseState::Testing,
        ReleaseState::AwaitingApproval,
        ReleaseState::Approved,
        ReleaseState::Deploying,
        ReleaseState::Verifying,
        ReleaseState::Released,
        ReleaseState::Closed,
        ReleaseState::Failed,
        ReleaseState::RolledBack,
        ReleaseState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Planning => "planning",
            ReleaseState::Testing => "testing",
            ReleaseState::AwaitingApproval => "awaiting_approval",
            ReleaseState::Approved => "approved",
            ReleaseState::Deploying => "deploying",
            ReleaseState::Verifying => "verifying",
            ReleaseState::Released => "released",
            ReleaseState::Closed => "closed",
            ReleaseState::Failed => "failed",
            ReleaseState::RolledBack => "rolled_back",
            ReleaseState::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<ReleaseState> {
        ReleaseState::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// No transition leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(self, ReleaseState::Closed | ReleaseState::Cancelled)
    }

    /// States in which the release's content (components, changes) may still change.
    /// Changing content after approval would void the approval, so it is refused instead.
    pub fn content_editable(self) -> bool {
        matches!(self, ReleaseState::Planning | ReleaseState::Testing | ReleaseState::AwaitingApproval)
    }

    /// A release that other releases may depend on counts as delivered in these states.
    pub fn is_delivered(self) -> bool {
        matches!(self, ReleaseState::Released | ReleaseState::Closed)
    }
}

impl std::fmt::Display for ReleaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The edges of the lifecycle. Anything not listed is refused.
pub fn allowed_targets(from: ReleaseState) -> &'static [ReleaseState] {
    use ReleaseState::*;
    match from {
        Planning => &[Testing, Cancelled],
        Testing => &[AwaitingApproval, Planning, Failed, Cancelled],
        AwaitingApproval => &[Approved, Testing, Cancelled],
        Approved => &[Deploying, AwaitingApproval, Cancelled],
        Deploying => &[Verifying, Failed, RolledBack],
        Verifying => &[Released, Failed, RolledBack],
        Released => &[Closed, RolledBack],
        // A failed or rolled-back release is either fixed and re-planned, or closed after its
        // review (the review is then the post-incident review).
        Failed => &[Planning, RolledBack, Closed, Cancelled],
        RolledBack => &[Planning, Closed],
        Closed | Cancelled => &[],
    }
}

/// What the preconditions need to know beyond the release itself.
#[derive(Debug, Clone, Default)]
pub struct TransitionContext {
    /// (key, state) of every release this one depends on.
    pub dependencies: Vec<(String, ReleaseState)>,
    /// Governance reasons (failing gates, missing approvals) for entering `approved` or
    /// `deploying`, computed by the application from evidence and policies.
    pub governance_blockers: Vec<String>,
}

/// Why a transition was refused. Every reason is a full sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub from: ReleaseState,
    pub to: ReleaseState,
    pub reasons: Vec<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot move from {} to {}: {}", self.from, self.to, self.reasons.join("; "))
    }
}

/// Checks that `release` may move to `to` now. Returns every unmet precondition, not only the
/// first, so one refusal tells the whole story.
pub fn check_transition(release: &Release, to: ReleaseState, ctx: &TransitionContext) -> Result<(), Refusal> {
    use ReleaseState::*;
    let from = release.state;
    let refuse = |reasons: Vec<String>| Refusal { from, to, reasons };

    if from == to {
        return Err(refuse(vec![format!("the release is already {to}")]));
    }
    if !allowed_targets(from).contains(&to) {
        let allowed: Vec<&str> = allowed_targets(from).iter().map(|s| s.as_str()).collect();
        let reason = if from.is_terminal() {
            format!("a {from} release is final; no transition leaves it")
        } else {
            format!("{from} → {to} is not a lifecycle step; from {from} a release can move to {}", allowed.join(", "))
        };
        return Err(refuse(vec![reason]));
    }

    let mut reasons = Vec::new();
    match to {
        Testing if from == Planning && release.components.is_empty() => {
            reasons.push("a release needs at least one component (a service pinned to an artifact digest) before testing".to_string());
        }
        AwaitingApproval => {
            let missing: Vec<&str> =
                release.required_documents.iter().filter(|d| release.documents.get(**d).is_none()).map(|d| d.label()).collect();
            if !missing.is_empty() {
                reasons.push(format!("the template requires documents that are missing: {}", missing.join(", ")));
            }
            push_unfinished(release, to, "tasks before approval", &mut reasons);
        }
        Approved => {
            push_unfinished(release, to, "approval tasks", &mut reasons);
            reasons.extend(ctx.governance_blockers.iter().cloned());
        }
        Deploying => {
            for (key, state) in &ctx.dependencies {
                if !state.is_delivered() {
                    reasons.push(format!("dependency release {key} is not released yet (it is {state})"));
                }
            }
            if release.target_environments.is_empty() {
                reasons.push("a release needs at least one target environment before deploying".to_string());
            }
            reasons.extend(ctx.governance_blockers.iter().cloned());
        }
        Verifying => {
            push_unfinished(release, to, "deployment tasks", &mut reasons);
        }
        Closed => {
            if release.review.is_none() {
                reasons.push("a release cannot be closed before its post-release review is recorded".to_string());
            }
            for t in release.tasks.iter().filter(|t| t.blocks_close && !t.status.releases_successors()) {
                reasons.push(format!("task {} ({}) must be done before the release is closed", t.key, t.name));
            }
        }
        _ => {}
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(refuse(reasons))
    }
}

/// The tasks that must be done (or skipped) before a release may enter `to`:
/// - `awaiting_approval`: every task of the phases before the first approval phase (the
///   preparation and testing approvers look at);
/// - `approved`: every approval task;
/// - `verifying`: every deploy task.
pub fn tasks_required_for(release: &Release, to: ReleaseState) -> Vec<&crate::tasks::Task> {
    match to {
        ReleaseState::AwaitingApproval => {
            let Some(first_approval) = release.tasks.iter().find(|t| t.kind == TaskKind::Approval) else {
                return vec![];
            };
            release.tasks.iter().take_while(|t| t.phase != first_approval.phase).collect()
        }
        ReleaseState::Approved => release.tasks.iter().filter(|t| t.kind == TaskKind::Approval).collect(),
        ReleaseState::Verifying => release.tasks.iter().filter(|t| t.kind == TaskKind::Deploy).collect(),
        _ => vec![],
    }
}

fn push_unfinished(release: &Release, to: ReleaseState, what: &str, reasons: &mut Vec<String>) {
    let open: Vec<String> = tasks_required_for(release, to)
        .into_iter()
        .filter(|t| !matches!(t.status, TaskStatus::Done | TaskStatus::Skipped))
        .map(|t| format!("\"{}\" ({})", t.name, t.status.as_str()))
        .collect();
    if !open.is_empty() {
        reasons.push(format!("{what} are not done: {}", open.join(", ")));
    }
}

/// All document kinds a release may carry; used by validators and the CLI.
pub const DOCUMENT_KINDS: [DocumentKind; 4] =
    [DocumentKind::RollbackPlan, DocumentKind::BackoutCriteria, DocumentKind::ImpactAssessment, DocumentKind::ReleaseNotes];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use crate::tasks::Task;
    use chrono::Utc;
    use proptest::prelude::*;

    pub(crate) fn release_in(state: ReleaseState) -> Release {
        Release {
            id: "rel_1".into(),
            key: "R-1".into(),
            name: "r".into(),
            version: None,
            domain_id: None,
            owner: "alice".into(),
            template_id: "tpl".into(),
            state,
            components: vec![],
            change_ids: vec![],
            target_environments: vec![],
            planned_window: None,
            documents: Documents::default(),
            required_documents: vec![DocumentKind::RollbackPlan],
            depends_on: vec![],
            kill_switch_flags: vec![],
            tasks: vec![],
            review: None,
            history: vec![],
            content_digest: String::new(),
            created_by: "alice".into(),
            created_at: Utc::now(),
        }
    }

    fn component() -> Component {
        Component {
            service_id: "svc".into(),
            artifact_id: "art".into(),
            version: "1.0.0".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
        }
    }

    #[test]
    fn closing_requires_the_post_release_review() {
        let r = release_in(ReleaseState::Released);
        let err = check_transition(&r, ReleaseState::Closed, &TransitionContext::default()).unwrap_err();
        assert_eq!(err.reasons, vec!["a release cannot be closed before its post-release review is recorded"]);
    }

    #[test]
    fn a_break_glass_review_task_blocks_closing_until_done() {
        let mut r = release_in(ReleaseState::Released);
        r.review = Some(PostReleaseReview {
            summary: "fine".into(),
            incidents: vec![],
            action_items: vec![],
            recorded_by: "rita".into(),
            recorded_at: Utc::now(),
        });
        let mut task =
            crate::tasks::Task::new("break-glass-review-1", "review", "Post-facto review", crate::tasks::TaskKind::Manual, vec![]);
        task.blocks_close = true;
        r.tasks.push(task);
        let err = check_transition(&r, ReleaseState::Closed, &TransitionContext::default()).unwrap_err();
        assert_eq!(err.reasons, vec!["task break-glass-review-1 (Post-facto review) must be done before the release is closed"]);
        r.tasks.last_mut().unwrap().status = crate::tasks::TaskStatus::Done;
        check_transition(&r, ReleaseState::Closed, &TransitionContext::default()).unwrap();
    }

    #[test]
    fn governance_blockers_refuse_approval_and_deploying_only() {
        let mut r = release_in(ReleaseState::AwaitingApproval);
        r.target_environments = vec!["prod".into()];
        let ctx =
            TransitionContext { governance_blockers: vec!["gate tests_passed fails for prod: 2 failed".into()], ..Default::default() };
        assert_eq!(check_transition(&r, ReleaseState::Approved, &ctx).unwrap_err().reasons, ctx.governance_blockers);
        assert!(check_transition(&r, ReleaseState::Testing, &ctx).is_ok());
        r.state = ReleaseState::Approved;
        assert_eq!(check_transition(&r, ReleaseState::Deploying, &ctx).unwrap_err().reasons, ctx.governance_blockers);
    }

    #[test]
    fn deploying_waits_for_dependency_releases() {
        let mut r = release_in(ReleaseState::Approved);
        r.target_environments = vec!["prod".into()];
        let ctx = TransitionContext {
            dependencies: vec![("R-12".into(), ReleaseState::Verifying), ("R-7".into(), ReleaseState::Closed)],
            ..Default::default()
        };
        let err = check_transition(&r, ReleaseState::Deploying, &ctx).unwrap_err();
        assert_eq!(err.reasons, vec!["dependency release R-12 is not released yet (it is verifying)"]);
    }

    #[test]
    fn every_unmet_precondition_is_reported_at_once() {
        let mut r = release_in(ReleaseState::Testing);
        r.required_documents = vec![DocumentKind::RollbackPlan, DocumentKind::ImpactAssessment];
        r.tasks = vec![
            Task::new("t1", "test", "Run regression suite", TaskKind::Manual, vec![]),
            Task::new("t2", "approve", "Tech lead approval", TaskKind::Approval, vec!["t1"]),
            Task::new("t3", "deploy", "Smoke tests", TaskKind::Gate, vec!["t2"]),
        ];
        let err = check_transition(&r, ReleaseState::AwaitingApproval, &TransitionContext::default()).unwrap_err();
        assert_eq!(err.reasons.len(), 2);
        assert!(err.reasons[0].contains("rollback plan, impact assessment"));
        assert!(err.reasons[1].contains("Run regression suite"));
    }

    #[test]
    fn not_an_edge_is_explained_with_the_allowed_moves() {
        let r = release_in(ReleaseState::Planning);
        let err = check_transition(&r, ReleaseState::Released, &TransitionContext::default()).unwrap_err();
        assert!(err.reasons[0].contains("from planning a release can move to testing, cancelled"), "{err}");
        let r = release_in(ReleaseState::Closed);
        let err = check_transition(&r, ReleaseState::Planning, &TransitionContext::default()).unwrap_err();
        assert!(err.reasons[0].contains("final"));
    }

    #[test]
    fn the_happy_path_walks_through_every_state() {
        let mut r = release_in(ReleaseState::Planning);
        r.components = vec![component()];
        r.documents.rollback_plan = Some("redeploy previous digest".into());
        r.target_environments = vec!["prod".into()];
        let path = [
            ReleaseState::Testing,
            ReleaseState::AwaitingApproval,
            ReleaseState::Approved,
            ReleaseState::Deploying,
            ReleaseState::Verifying,
            ReleaseState::Released,
        ];
        for to in path {
            check_transition(&r, to, &TransitionContext::default()).unwrap();
            r.state = to;
        }
        assert!(check_transition(&r, ReleaseState::Closed, &TransitionContext::default()).is_err());
    }

    fn any_state() -> impl Strategy<Value = ReleaseState> {
        prop::sample::select(ReleaseState::ALL.to_vec())
    }

    proptest! {
        /// No sequence of requests reaches a state outside the table: every accepted step is an
        /// edge, terminal states are never left, and closing always had a review.
        #[test]
        fn no_request_sequence_escapes_the_table(
            requests in prop::collection::vec((any_state(), any::<bool>(), any::<bool>(), any::<bool>()), 0..60)
        ) {
            let mut r = release_in(ReleaseState::Planning);
            for (to, add_component, add_doc, add_review) in requests {
                if add_component { r.components = vec![component()]; r.target_environments = vec!["prod".into()]; }
                if add_doc { r.documents.rollback_plan = Some("plan".into()); }
                if add_review && r.review.is_none() {
                    r.review = Some(PostReleaseReview { summary: "ok".into(), incidents: vec![], action_items: vec![], recorded_by: "a".into(), recorded_at: Utc::now() });
                }
                let before = r.state;
                match check_transition(&r, to, &TransitionContext::default()) {
                    Ok(()) => {
                        prop_assert!(allowed_targets(before).contains(&to));
                        prop_assert!(!before.is_terminal());
                        if to == ReleaseState::Closed { prop_assert!(r.review.is_some()); }
                        if to == ReleaseState::Testing && before == ReleaseState::Planning { prop_assert!(!r.components.is_empty()); }
                        r.state = to;
                    }
                    Err(refusal) => {
                        prop_assert!(!refusal.reasons.is_empty());
                        prop_assert_eq!(refusal.from, before);
                    }
                }
                prop_assert!(ReleaseState::ALL.contains(&r.state));
            }
        }

        #[test]
        fn state_names_roundtrip(s in any_state()) {
            prop_assert_eq!(ReleaseState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }
}
