//! The governance part of `signalbox demo`: evidence on the artifacts, production and staging
//! policies, an approval in progress, a high-risk release and an expired break-glass — all
//! through the same use cases as real work, except the break-glass, whose history (an
//! emergency two days ago) is written as it would have been then.

use chrono::Duration;
use signalbox_domain::access::{Role, RoleBinding, Scope};
use signalbox_domain::model::{Bug, BugSeverity, ChangeKind, Kind, Release, User};
use signalbox_domain::tasks::{Task, TaskKind};
use signalbox_governance::approvals::Decision;
use signalbox_governance::breakglass::BreakGlass;

use crate::error::AppResult;
use crate::evidence::AddEvidence;
use crate::governance::{CastVote, PutPolicy};
use crate::mutation::{Mutation, Placement};
use crate::requests::*;
use crate::{new_id, Actor, App, RequestContext, Versioned};

fn junit(service: &str, passed: usize, failed: usize) -> String {
    let mut cases = String::new();
    for i in 0..passed {
        cases.push_str(&format!("<testcase classname=\"{service}.api\" name=\"handles_case_{i}\" time=\"0.004\"/>"));
    }
    for i in 0..failed {
        cases.push_str(&format!(
            "<testcase classname=\"{service}.api\" name=\"retries_timeout_{i}\" time=\"0.2\"><failure message=\"expected 3 attempts, saw 1\"/></testcase>"
        ));
    }
    format!("<?xml version=\"1.0\"?><testsuite name=\"{service}\" tests=\"{}\" failures=\"{failed}\">{cases}</testsuite>", passed + failed)
}

fn lcov(total: u32, hit: u32) -> String {
    let mut out = String::from("SF:src/lib.rs\n");
    for line in 1..=total {
        out.push_str(&format!("DA:{line},{}\n", u32::from(line <= hit)));
    }
    out.push_str(&format!("LF:{total}\nLH:{hit}\nend_of_record\n"));
    out
}

fn sarif(max_score: &str) -> String {
    serde_json::json!({"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "semgrep", "rules": [
        {"id": "insecure-deserialization", "properties": {"security-severity": max_score}}]}},
        "results": [{"ruleId": "insecure-deserialization", "level": "warning", "message": {"text": "untrusted input reaches a deserializer"},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": "src/handlers.rs"}, "region": {"startLine": 88}}}]}]}]})
    .to_string()
}

fn cyclonedx() -> String {
    serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": [
        {"type": "library", "name": "serde", "version": "1.0.210", "licenses": [{"expression": "MIT OR Apache-2.0"}]},
        {"type": "library", "name": "tokio", "version": "1.40.0", "licenses": [{"license": {"id": "MIT"}}]}]})
    .to_string()
}

impl App {
    async fn demo_actor(&self, username: &str, role: Role) -> AppResult<RequestContext> {
        let user: Versioned<User> = crate::mutation::decode(
            &self.store.get(Kind::User, username).await?.ok_or_else(|| crate::AppError::not_found(Kind::User, username))?,
        )?;
        let binding = RoleBinding {
            id: "demo".into(),
            user_id: user.value.id.clone(),
            role,
            scope: Scope::Organization,
            created_at: user.value.created_at,
        };
        Ok(RequestContext::new(Actor { user_id: user.value.id, username: username.into(), bindings: vec![binding] }))
    }

    pub(crate) async fn seed_governance_demo(&self, ctx: &RequestContext) -> AppResult<()> {
        // Evidence: good results for most artifacts; web-frontend 1.5.0 fails two tests and has a
        // high finding, so its gates fail in the tour until better evidence arrives.
        for (artifact, failed, covered, score) in [
            ("checkout-api@1.4.0", 0, 86, "4.3"),
            ("ledger@1.4.0", 0, 91, "3.1"),
            ("catalog-service@1.5.0", 0, 82, "5.0"),
            ("web-frontend@1.5.0", 2, 64, "8.1"),
            ("mobile-bff@1.5.0", 0, 88, "2.0"),
            ("fraud-scoring@2.0.0-rc.1", 0, 79, "6.5"),
        ] {
            let service = artifact.split('@').next().unwrap_or(artifact);
            for (kind, body) in
                [("junit", junit(service, 120, failed)), ("lcov", lcov(100, covered)), ("sarif", sarif(score)), ("cyclonedx", cyclonedx())]
            {
                let req = AddEvidence {
                    artifact: Some(artifact.into()),
                    kind: kind.into(),
                    file_name: Some(format!("{kind}.out")),
                    ..Default::default()
                };
                self.add_evidence(ctx, req, body.as_bytes()).await?;
            }
        }
        let prod = serde_json::json!({
            "gates": {"tests_passed": true, "coverage_min_percent": 75.0, "max_cvss": 7.0,
                      "license_deny": ["AGPL-3.0-only"], "required_documents": ["rollback_plan", "backout_criteria"],
                      "dependencies_released": true, "critical_risk_requires_window": true},
            "approvals": {"groups": [{"name": "tech", "roles": ["tech_lead"], "min": 1},
                                     {"name": "business", "roles": ["product_owner", "sre"], "min": 1}],
                          "min_total": 2, "expires_after_hours": 72,
                          "by_risk": [{"at_or_above": "high", "group": {"name": "security", "roles": ["security"], "min": 1}}]}
        });
        let staging = serde_json::json!({"gates": {"tests_passed": true}});
        for (env, policy) in [("prod", prod), ("staging", staging)] {
            let policy = serde_json::from_value(policy).map_err(|e| crate::AppError::Internal(format!("demo policy: {e}")))?;
            self.put_policy(ctx, PutPolicy { level: "organization".into(), target: None, environment: env.into(), policy }).await?;
        }
        // Payments tightens coverage for production.
        let payments = serde_json::from_value(serde_json::json!({"gates": {"coverage_min_percent": 80.0}}))
            .map_err(|e| crate::AppError::Internal(format!("demo policy: {e}")))?;
        self.put_policy(
            ctx,
            PutPolicy { level: "domain".into(), target: Some("payments".into()), environment: "prod".into(), policy: payments },
        )
        .await?;

        let releases: Vec<Release> = self
            .store
            .list(&signalbox_store::ListQuery::all(Kind::Release))
            .await?
            .items
            .iter()
            .map(|r| crate::mutation::decode::<Release>(r).map(|v| v.value))
            .collect::<AppResult<_>>()?;
        let named = |name: &str| releases.iter().find(|r| r.name == name).cloned();

        // An approval in progress: the tech lead approved, the business side has not yet.
        if let Some(r) = named("Catalog images v2") {
            let chen = self.demo_actor("chen", Role::TechLead).await?;
            self.cast_vote(
                &chen,
                &r.id,
                CastVote { environment: "prod".into(), decision: Decision::Approve, comment: Some("Looks good".into()) },
            )
            .await?;
        }

        // A high-risk release: a payments schema migration with an open high bug on a service
        // never released before.
        if let Some(r) = named("Fraud scoring 2.0") {
            let mut change_ids = Vec::new();
            for (reference, title, flags, bug) in [
                ("FRAUD-12", "feat: new scoring model with ledger holds", vec!["schema_migration", "touches_payment_logic"], None),
                (
                    "FRAUD-31",
                    "fix: double hold on retried payments",
                    vec!["touches_payment_logic"],
                    Some(Bug { severity: BugSeverity::High, open: true }),
                ),
            ] {
                let change = self
                    .record_change(
                        ctx,
                        RecordChange {
                            kind: ChangeKind::Ticket,
                            reference: reference.into(),
                            title: title.into(),
                            change_type: Some(title.split(':').next().unwrap_or("feat").into()),
                            author: "bruno".into(),
                            service: Some("fraud-scoring".into()),
                            authored_at: None,
                            committed_at: None,
                            merged_at: None,
                            links: vec![],
                            risk_flags: flags.into_iter().map(String::from).collect(),
                            bug,
                        },
                    )
                    .await?;
                change_ids.push(change.value.id);
            }
            self.update_release(ctx, &r.id, None, UpdateRelease { changes: Some(change_ids), ..Default::default() }).await?;
        }

        // An expired break-glass from an emergency two days ago, with its review still open.
        if let Some(r) = named("Auth hotfix: token refresh") {
            let mut m = Mutation::begin(self, ctx).await?;
            let current: Versioned<Release> = m.get(Kind::Release, &r.id).await?;
            let prod: signalbox_domain::model::Environment = m.get(Kind::Environment, "prod").await?.value;
            let requested = m.now - Duration::hours(50);
            let number = m.next_number("break_glass").await?;
            let bg = BreakGlass {
                id: new_id(Kind::BreakGlass),
                release_id: r.id.clone(),
                environment_id: prod.id,
                rules: vec!["tests_passed".into()],
                freeze: false,
                reason: "token refresh outage: flaky integration suite blocked the fix".into(),
                incident: "INC-2041".into(),
                requested_by: "dara".into(),
                requested_at: requested,
                ttl_hours: 4,
                confirmed_by: Some("alice".into()),
                confirmed_at: Some(requested + Duration::minutes(6)),
                expires_at: Some(requested + Duration::minutes(6) + Duration::hours(4)),
                revoked: false,
                review_task: format!("break-glass-review-{number}"),
            };
            m.set_reason(Some("demo history: an emergency bypass two days ago".into()));
            m.insert(
                "break_glass.request",
                Kind::BreakGlass,
                &bg.id.clone(),
                Placement { key: None, parent: Some(r.id.clone()), state: Some("active".into()) },
                &bg,
            )
            .await?;
            let mut next = current.value.clone();
            let mut task = Task::new(&bg.review_task, "review", "Post-facto review of break-glass (INC-2041)", TaskKind::Manual, vec![]);
            task.blocks_close = true;
            task.assignee_role = Some("release_manager".into());
            next.tasks.push(task);
            let place =
                Placement { key: Some(next.key.clone()), parent: next.domain_id.clone(), state: Some(next.state.as_str().to_string()) };
            m.update("release.task.add", Kind::Release, &next.id.clone(), place, &current, &next).await?;
            m.commit(201, &bg).await?;
        }
        Ok(())
    }
}
