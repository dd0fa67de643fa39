//! Release templates: phases with a task DAG, required documents. Three ship with the product.

use crate::model::DocumentKind;
use crate::tasks::{Task, TaskKind};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TemplateTask {
    pub key: String,
    pub name: String,
    pub kind: TaskKind,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub assignee_role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Phase {
    pub name: String,
    pub tasks: Vec<TemplateTask>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Template {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub phases: Vec<Phase>,
    #[serde(default)]
    pub required_documents: Vec<DocumentKind>,
    /// Built-in templates cannot be deleted; they can be copied.
    #[serde(default)]
    pub builtin: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl Template {
    /// The tasks a new release gets from this template, all pending.
    pub fn instantiate_tasks(&self) -> Vec<Task> {
        self.phases
            .iter()
            .flat_map(|phase| {
                phase.tasks.iter().map(move |t| Task {
                    key: t.key.clone(),
                    phase: phase.name.clone(),
                    name: t.name.clone(),
                    kind: t.kind,
                    depends_on: t.depends_on.clone(),
                    assignee: None,
                    assignee_role: t.assignee_role.clone(),
                    status: crate::tasks::TaskStatus::Pending,
                    note: None,
                    blocks_close: false,
                })
            })
            .collect()
    }
}

/// A built-in template before it has an id and creation time.
pub struct BuiltinTemplate {
    pub name: &'static str,
    pub description: &'static str,
    pub phases: Vec<Phase>,
    pub required_documents: Vec<DocumentKind>,
}

fn task(key: &str, name: &str, kind: TaskKind, deps: &[&str], role: Option<&str>) -> TemplateTask {
    TemplateTask {
        key: key.into(),
        name: name.into(),
        kind,
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        assignee_role: role.map(String::from),
    }
}

fn phase(name: &str, tasks: Vec<TemplateTask>) -> Phase {
    Phase { name: name.into(), tasks }
}

/// The templates every installation starts with: `standard`, `major`, `emergency-hotfix`.
pub fn builtin_templates() -> Vec<BuiltinTemplate> {
    use DocumentKind::*;
    use TaskKind::*;
    vec![
        BuiltinTemplate {
            name: "standard",
            description: "A routine release: test, approve, deploy in a window, verify.",
            phases: vec![
                phase("test", vec![task("regression-tests", "Regression tests pass in test", Gate, &[], Some("developer"))]),
                phase(
                    "approve",
                    vec![task("tech-lead-approval", "Tech lead approval", Approval, &["regression-tests"], Some("tech_lead"))],
                ),
                phase(
                    "deploy",
                    vec![
                        task("wait-for-window", "Wait for the release window", WaitForWindow, &["tech-lead-approval"], None),
                        task("deploy-prod", "Deploy to production", Deploy, &["wait-for-window"], Some("release_manager")),
                        task("smoke-tests", "Smoke tests in production", Gate, &["deploy-prod"], Some("sre")),
                    ],
                ),
                phase(
                    "communicate",
                    vec![task("announce", "Announce the release to stakeholders", Notification, &["smoke-tests"], Some("release_manager"))],
                ),
            ],
            required_documents: vec![RollbackPlan, ReleaseNotes],
        },
        BuiltinTemplate {
            name: "major",
            description:
                "A major release: impact assessment, broader sign-off, staged deployment and communications before, during and after.",
            phases: vec![
                phase(
                    "prepare",
                    vec![
                        task("impact-review", "Review the impact assessment with stakeholders", Manual, &[], Some("product_owner")),
                        task(
                            "announce-upcoming",
                            "Announce the upcoming release",
                            Notification,
                            &["impact-review"],
                            Some("release_manager"),
                        ),
                    ],
                ),
                phase(
                    "test",
                    vec![
                        task("regression-tests", "Full regression suite passes", Gate, &[], Some("developer")),
                        task("performance-tests", "Performance within baseline", Gate, &[], Some("sre")),
                        task("security-review", "Security review of findings", Manual, &[], Some("security")),
                    ],
                ),
                phase(
                    "approve",
                    vec![
                        task(
                            "tech-lead-approval",
                            "Tech lead approval",
                            Approval,
                            &["regression-tests", "performance-tests"],
                            Some("tech_lead"),
                        ),
                        task("product-approval", "Product owner approval", Approval, &["impact-review"], Some("product_owner")),
                        task("security-approval", "Security approval", Approval, &["security-review"], Some("security")),
                        task(
                            "go-no-go",
                            "Go/no-go meeting",
                            Manual,
                            &["tech-lead-approval", "product-approval", "security-approval"],
                            Some("release_manager"),
                        ),
                    ],
                ),
                phase(
                    "deploy",
                    vec![
                        task("wait-for-window", "Wait for the release window", WaitForWindow, &["go-no-go"], None),
                        task("deploy-staging", "Deploy to staging", Deploy, &["wait-for-window"], Some("release_manager")),
                        task("deploy-prod", "Deploy to production", Deploy, &["deploy-staging"], Some("release_manager")),
                        task(
                            "announce-during",
                            "Announce deployment in progress",
                            Notification,
                            &["wait-for-window"],
                            Some("release_manager"),
                        ),
                    ],
                ),
                phase(
                    "verify",
                    vec![
                        task("smoke-tests", "Smoke tests in production", Gate, &["deploy-prod"], Some("sre")),
                        task("business-verification", "Business verification", Manual, &["smoke-tests"], Some("product_owner")),
                        task(
                            "announce-done",
                            "Announce the release is live",
                            Notification,
                            &["business-verification"],
                            Some("release_manager"),
                        ),
                    ],
                ),
            ],
            required_documents: vec![RollbackPlan, BackoutCriteria, ImpactAssessment, ReleaseNotes],
        },
        BuiltinTemplate {
            name: "emergency-hotfix",
            description: "An emergency fix: minimal path, one approval, rollback plan required, post-facto review.",
            phases: vec![
                phase(
                    "approve",
                    vec![task("incident-commander-approval", "Incident commander approval", Approval, &[], Some("incident_commander"))],
                ),
                phase(
                    "deploy",
                    vec![
                        task("deploy-prod", "Deploy the fix to production", Deploy, &["incident-commander-approval"], Some("sre")),
                        task("smoke-tests", "Smoke tests in production", Gate, &["deploy-prod"], Some("sre")),
                        task("notify", "Notify stakeholders", Notification, &["deploy-prod"], Some("incident_commander")),
                    ],
                ),
                phase(
                    "review",
                    vec![task(
                        "post-facto-review",
                        "Post-facto review of the emergency change",
                        Manual,
                        &["smoke-tests"],
                        Some("release_manager"),
                    )],
                ),
            ],
            required_documents: vec![RollbackPlan],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_templates_are_valid_dags() {
        let templates = builtin_templates();
        assert_eq!(templates.iter().map(|t| t.name).collect::<Vec<_>>(), ["standard", "major", "emergency-hotfix"]);
        for t in templates {
            let tpl = Template {
                id: "x".into(),
                name: t.name.into(),
                description: t.description.into(),
                phases: t.phases,
                required_documents: t.required_documents,
                builtin: true,
                created_at: chrono::Utc::now(),
            };
            crate::tasks::validate_dag(&tpl.instantiate_tasks(), "tasks").unwrap();
        }
    }
}
