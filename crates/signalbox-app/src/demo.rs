//! `signalbox demo`: a believable organization, created through the same use cases (and so
//! the same audit trail) as real work.

use chrono::{Duration, Utc};
use signalbox_domain::access::{Role, Scope};
use signalbox_domain::lifecycle::ReleaseState;
use signalbox_domain::model::{ChangeKind, Criticality, DataClassification, Documents, PlannedWindow, Protection, Release, Tier};
use signalbox_domain::tasks::TaskStatus;

mod governance;
pub mod promotion;
pub mod repositories;

use crate::error::AppResult;
use crate::requests::*;
use crate::{App, RequestContext, Versioned};

const DOMAINS: [(&str, &str); 3] = [
    ("payments", "Card processing, ledgers and payouts"),
    ("storefront", "Everything a shopper sees"),
    ("platform", "Shared infrastructure and identity"),
];

/// (team, domain, services)
const TEAMS: [(&str, &str, &[&str]); 12] = [
    ("checkout-squad", "payments", &["checkout-api"]),
    ("ledger-squad", "payments", &["ledger"]),
    ("payouts-squad", "payments", &["payouts-worker"]),
    ("fraud-squad", "payments", &["fraud-scoring"]),
    ("web-squad", "storefront", &["web-frontend"]),
    ("search-squad", "storefront", &["search-api"]),
    ("catalog-squad", "storefront", &["catalog-service"]),
    ("mobile-squad", "storefront", &["mobile-bff"]),
    ("identity-squad", "platform", &["auth-service"]),
    ("messaging-squad", "platform", &["notification-hub"]),
    ("data-squad", "platform", &["events-pipeline"]),
    ("infra-squad", "platform", &["edge-gateway"]),
];

const PEOPLE: [(&str, &str, Role); 7] = [
    ("alice", "Alice Moreau", Role::ReleaseManager),
    ("bruno", "Bruno Silva", Role::Developer),
    ("chen", "Chen Wei", Role::TechLead),
    ("dara", "Dara Okafor", Role::Sre),
    ("emma", "Emma Lindqvist", Role::ProductOwner),
    ("farid", "Farid Haddad", Role::Security),
    ("grace", "Grace Kim", Role::Compliance),
];

fn digest_for(service: &str, version: &str) -> String {
    use sha2::{Digest as _, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(format!("{service}:{version}").as_bytes())))
}

fn commit_for(service: &str, version: &str) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(Sha256::digest(format!("commit:{service}:{version}").as_bytes()))[..40].to_string()
}

/// Counts of what the demo created, for the start-up banner.
#[derive(Debug, Default, Clone, Copy)]
pub struct DemoSummary {
    pub services: usize,
    pub artifacts: usize,
    /// Every release the demo made, the promotion example's included (the release trains'
    /// departures come later, from the scheduler).
    pub releases: usize,
    /// Of those, the ones walked to each lifecycle state, one per state.
    pub lifecycle_releases: usize,
}

impl App {
    /// Where the demo's generated git repositories are: `demo/` in the mirror directory.
    pub fn demo_repository_root(&self) -> std::path::PathBuf {
        self.repositories.mirror_dir.join("demo")
    }

    /// Seeds an empty store. Call after [`App::bootstrap`].
    pub async fn seed_demo(&self) -> AppResult<DemoSummary> {
        let ctx = RequestContext::system();
        let mut summary = DemoSummary::default();
        let root = self.demo_repository_root();
        let repos = tokio::task::spawn_blocking(move || repositories::create_all(&root)).await.unwrap_or_default();
        for (name, description) in DOMAINS {
            self.create_domain(&ctx, CreateDomain { name: name.into(), description: description.into() }).await?;
        }
        for (tier, name, position, protected) in [
            (Tier::Dev, "dev", 10, false),
            (Tier::Test, "test", 20, false),
            (Tier::Staging, "staging", 30, false),
            (Tier::Prod, "prod", 40, true),
        ] {
            let config = [
                ("LOG_LEVEL".to_string(), if name == "prod" { "info" } else { "debug" }.to_string()),
                ("DATABASE_URL".to_string(), format!("secret://{name}/database-url")),
            ]
            .into_iter()
            .collect();
            self.create_environment(
                &ctx,
                CreateEnvironment {
                    name: name.into(),
                    tier,
                    position,
                    protection: Protection { protected, ..Default::default() },
                    config,
                    owner: None,
                },
            )
            .await?;
        }
        for (username, display, role) in PEOPLE {
            self.create_user(
                &ctx,
                CreateUser {
                    username: username.into(),
                    display_name: display.into(),
                    email: Some(format!("{username}@example.com")),
                    password: Some(format!("{username}-demo-password")),
                },
            )
            .await?;
            self.create_role_binding(&ctx, CreateRoleBinding { user: username.into(), role, scope: Scope::Organization }).await?;
        }
        self.create_role_binding(
            &ctx,
            CreateRoleBinding { user: "bruno".into(), role: Role::Developer, scope: Scope::Domain("payments".into()) },
        )
        .await
        .ok();
        for (team, domain, services) in TEAMS {
            self.create_team(&ctx, CreateTeam { name: team.into(), domain: domain.into(), description: String::new() }).await?;
            for service in services {
                let customer_facing = matches!(*service, "checkout-api" | "web-frontend" | "search-api" | "mobile-bff" | "auth-service");
                self.create_service(
                    &ctx,
                    CreateService {
                        name: service.to_string(),
                        team: team.into(),
                        repo_url: Some(format!("https://git.example.com/{domain}/{service}.git")),
                        owners: vec![format!("{team}@example.com")],
                        criticality: if customer_facing { Criticality::CustomerFacing } else { Criticality::Internal },
                        data_classification: if domain == "payments" {
                            DataClassification::Restricted
                        } else {
                            DataClassification::Internal
                        },
                    },
                )
                .await?;
                summary.services += 1;
                if let Some(repo) = repos.get(*service) {
                    let url = repo.path.display().to_string();
                    self.set_service_repository(&ctx, service, None, crate::repositories::SetRepository { url, ..Default::default() })
                        .await?;
                }
                for version in ["1.4.0", "1.4.1", "1.5.0", "2.0.0-rc.1"] {
                    self.register_artifact(
                        &ctx,
                        RegisterArtifact {
                            service: service.to_string(),
                            version: version.into(),
                            digest: digest_for(service, version),
                            source_commit: Some(
                                repos
                                    .get(*service)
                                    .and_then(|r| r.commits.get(version).cloned())
                                    .unwrap_or_else(|| commit_for(service, version)),
                            ),
                            build_url: Some(format!("https://ci.example.com/{service}/builds/{}", version.replace('.', "-"))),
                        },
                    )
                    .await?;
                    summary.artifacts += 1;
                }
                for (i, (ty, title, flags)) in [
                    ("feat", "add idempotent retries to outbound calls", vec![]),
                    ("fix", "handle empty pages in list endpoints", vec![]),
                    ("feat", "migrate orders table to partitioned layout", vec!["schema_migration".to_string()]),
                ]
                .into_iter()
                .enumerate()
                {
                    self.record_change(
                        &ctx,
                        RecordChange {
                            kind: ChangeKind::PullRequest,
                            reference: format!("{}", 100 + i),
                            title: format!("{ty}: {title}"),
                            change_type: Some(ty.into()),
                            author: PEOPLE[1 + i % 2].0.into(),
                            service: Some(service.to_string()),
                            authored_at: Some(Utc::now() - Duration::days(10 - i as i64)),
                            committed_at: Some(Utc::now() - Duration::days(9 - i as i64)),
                            merged_at: Some(Utc::now() - Duration::days(8 - i as i64)),
                            links: vec![format!("https://git.example.com/{domain}/{service}/pull/{}", 100 + i)],
                            risk_flags: flags,
                            bug: None,
                        },
                    )
                    .await?;
                }
            }
        }

        let docs = Documents {
            rollback_plan: Some(
                "Redeploy the previous digest of every component with `signalbox deploy`; no data migration to revert.".into(),
            ),
            backout_criteria: Some("Error rate above 1% or p99 latency above 800 ms for 10 minutes after deployment.".into()),
            impact_assessment: Some("Customer-facing checkout path; a failure blocks purchases. Traffic is lowest 06:00-08:00 UTC.".into()),
            release_notes: Some("Retries for outbound calls; fixes for empty list pages.".into()),
        };
        // One release in every lifecycle state, oldest first so dependencies can point back.
        let plan: [(&str, &str, &str, &[&str], ReleaseState); 11] = [
            ("Checkout 1.4 rollout", "payments", "standard", &["checkout-api@1.4.0", "ledger@1.4.0"], ReleaseState::Closed),
            ("Search relevance tuning", "storefront", "standard", &["search-api@1.4.1"], ReleaseState::Released),
            ("Ledger partitioning", "payments", "major", &["ledger@1.5.0"], ReleaseState::Verifying),
            ("Auth hotfix: token refresh", "platform", "emergency-hotfix", &["auth-service@1.4.1"], ReleaseState::Deploying),
            ("Payouts batching", "payments", "standard", &["payouts-worker@1.5.0"], ReleaseState::Approved),
            ("Catalog images v2", "storefront", "standard", &["catalog-service@1.5.0"], ReleaseState::AwaitingApproval),
            ("Web frontend spring refresh", "storefront", "major", &["web-frontend@1.5.0", "mobile-bff@1.5.0"], ReleaseState::Testing),
            ("Fraud scoring 2.0", "payments", "major", &["fraud-scoring@2.0.0-rc.1"], ReleaseState::Planning),
            ("Events pipeline upgrade", "platform", "standard", &["events-pipeline@1.5.0"], ReleaseState::Failed),
            ("Notification hub retries", "platform", "standard", &["notification-hub@1.4.1"], ReleaseState::RolledBack),
            ("Edge gateway TLS change", "platform", "standard", &["edge-gateway@1.5.0"], ReleaseState::Cancelled),
        ];
        let start = Utc::now() + Duration::days(2);
        let mut import_into = Vec::new();
        for (i, (name, domain, template, components, target)) in plan.into_iter().enumerate() {
            let release = self
                .create_release(
                    &ctx,
                    CreateRelease {
                        name: name.into(),
                        version: Some(format!("2026.{}.0", 10 + i)),
                        domain: Some(domain.into()),
                        template: Some(template.into()),
                        owner: Some("alice".into()),
                        components: components.iter().map(|c| c.to_string()).collect(),
                        changes: vec![],
                        target_environments: vec!["staging".into(), "prod".into()],
                        planned_window: Some(PlannedWindow {
                            start: start + Duration::days(i as i64),
                            end: start + Duration::days(i as i64) + Duration::hours(2),
                        }),
                        documents: docs.clone(),
                        depends_on: vec![],
                        kill_switch_flags: vec![],
                    },
                )
                .await?;
            if target.content_editable()
                && components.iter().any(|c| repositories::REPOSITORY_SERVICES.iter().any(|s| c.starts_with(&format!("{s}@"))))
            {
                import_into.push(release.value.key.clone());
            }
            self.drive_release_to(&ctx, release, target).await?;
            summary.lifecycle_releases += 1;
        }
        self.seed_governance_demo(&ctx).await?;
        self.seed_calendar_demo(&ctx).await?;
        self.seed_flags_demo(&ctx).await?;
        self.seed_promotion_demo(&ctx).await?;
        // Releases still being planned get their changes from git, as a release manager would
        // (after the governance demo, which sets some releases' changes).
        for key in import_into {
            self.import_release_changes(&ctx, &key, Some("prod")).await?;
        }
        summary.releases = usize::try_from(self.store.count(signalbox_domain::model::Kind::Release).await?).unwrap_or(0);
        Ok(summary)
    }

    /// Moves a demo release to `target` the way people would: doing its tasks on the way.
    async fn drive_release_to(&self, ctx: &RequestContext, mut release: Versioned<Release>, target: ReleaseState) -> AppResult<()> {
        use ReleaseState::*;
        let path: &[ReleaseState] = match target {
            Planning => &[],
            Testing => &[Testing],
            AwaitingApproval => &[Testing, AwaitingApproval],
            Approved => &[Testing, AwaitingApproval, Approved],
            Deploying => &[Testing, AwaitingApproval, Approved, Deploying],
            Verifying => &[Testing, AwaitingApproval, Approved, Deploying, Verifying],
            Released | Closed => &[Testing, AwaitingApproval, Approved, Deploying, Verifying, Released],
            Failed => &[Testing, AwaitingApproval, Approved, Deploying, Failed],
            RolledBack => &[Testing, AwaitingApproval, Approved, Deploying, Verifying, RolledBack],
            Cancelled => &[Testing, Cancelled],
        };
        for step in path {
            // Finish whatever tasks hold this step back, predecessors first.
            loop {
                let required: Vec<String> = signalbox_domain::lifecycle::tasks_required_for(&release.value, *step)
                    .into_iter()
                    .filter(|t| t.status != TaskStatus::Done)
                    .map(|t| t.key.clone())
                    .collect();
                let Some(target) = required.first() else { break };
                let key = first_doable(&release.value.tasks, target);
                release = self
                    .update_task(
                        ctx,
                        &release.value.id,
                        &key,
                        None,
                        UpdateTask { status: Some(TaskStatus::Done), assignee: None, note: None },
                    )
                    .await?;
            }
            release = self
                .transition_release(
                    ctx,
                    &release.value.id,
                    None,
                    TransitionRequest { to: *step, reason: Some("demo history".into()), environment: None },
                )
                .await?;
        }
        if matches!(target, Closed) {
            release = self
                .record_review(
                    ctx,
                    &release.value.id,
                    None,
                    RecordReview {
                        summary: "Smooth rollout; one alert on p99 latency that resolved without action.".into(),
                        incidents: vec![],
                        action_items: vec![ActionItemInput {
                            description: "Tune the p99 alert threshold".into(),
                            owner: "dara".into(),
                            due: (Utc::now() + Duration::days(14)).date_naive(),
                        }],
                    },
                )
                .await?;
            self.transition_release(
                ctx,
                &release.value.id,
                None,
                TransitionRequest { to: Closed, reason: Some("review recorded".into()), environment: None },
            )
            .await?;
        }
        Ok(())
    }
}

/// The first task on the way to `target` that can be done now: `target` itself, or the first
/// unfinished predecessor found walking back through its dependencies.
fn first_doable(tasks: &[signalbox_domain::tasks::Task], target: &str) -> String {
    let mut key = target.to_string();
    loop {
        let Some(task) = tasks.iter().find(|t| t.key == key) else { return key };
        let open = task.depends_on.iter().find(|d| tasks.iter().any(|t| &t.key == *d && !t.status.releases_successors()));
        match open {
            Some(dep) => key = dep.clone(),
            None => return key,
        }
    }
}
