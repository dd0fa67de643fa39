//! Releases: creation from a template, content (components pinned by digest, changes),
//! documents, dependencies, tasks, the lifecycle and the post-release review.

use signalbox_domain::access::{Permission, ResourceScopes, Scope};
use signalbox_domain::lifecycle::{allowed_targets, check_transition, ReleaseState, TransitionContext};
use signalbox_domain::model::{ActionItem, Change, Component, Domain, Environment, Kind, PostReleaseReview, Release, StateChange, User};
use signalbox_domain::tasks::{check_task_status_change, validate_dag, Task, TaskStatus};
use signalbox_domain::templates::Template;
use signalbox_domain::validate::{parse_version, require_text};
use signalbox_domain::Invalid;
use signalbox_store::ListQuery;

use crate::catalog::check_if_match;
use crate::error::{AppError, AppResult};
use crate::mutation::{Mutation, Placement};
use crate::requests::*;
use crate::{new_id, App, RequestContext, Versioned};

/// The scopes a release sits in: the organization and its domain.
pub fn release_scopes(release: &Release) -> ResourceScopes {
    let scopes = ResourceScopes::organization();
    match &release.domain_id {
        Some(d) => scopes.with(Scope::Domain(d.clone())),
        None => scopes,
    }
}

/// One possible next state and whether it is open now.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TransitionOption {
    pub to: ReleaseState,
    pub allowed: bool,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TransitionPreview {
    pub state: ReleaseState,
    pub transitions: Vec<TransitionOption>,
}

fn placement(r: &Release) -> Placement {
    Placement { key: Some(r.key.clone()), parent: r.domain_id.clone(), state: Some(r.state.as_str().to_string()) }
}

async fn resolve_component(m: &mut Mutation<'_>, field: &str, reference: &str) -> AppResult<Component> {
    let artifact = crate::governance::Reader::Tx(m).artifact(field, reference).await?;
    Ok(Component { service_id: artifact.service_id, artifact_id: artifact.id, version: artifact.version, digest: artifact.digest })
}

async fn resolve_components(m: &mut Mutation<'_>, refs: &[String]) -> AppResult<Vec<Component>> {
    let mut out: Vec<Component> = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let c = resolve_component(m, &format!("components/{i}"), r).await?;
        if out.iter().any(|o| o.service_id == c.service_id) {
            return Err(AppError::invalid(
                format!("components/{i}"),
                "a release pins each service once; this service already has a component",
            ));
        }
        out.push(c);
    }
    Ok(out)
}

async fn resolve_changes(m: &mut Mutation<'_>, refs: &[String]) -> AppResult<Vec<String>> {
    let mut out = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let c: Change =
            m.find(Kind::Change, r).await?.ok_or_else(|| AppError::invalid(format!("changes/{i}"), format!("no change {r:?}")))?.value;
        if !out.contains(&c.id) {
            out.push(c.id);
        }
    }
    Ok(out)
}

async fn resolve_environments(m: &mut Mutation<'_>, refs: &[String]) -> AppResult<Vec<String>> {
    let mut out = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let e: Environment = App::resolve_ref(m, Kind::Environment, &format!("target_environments/{i}"), r).await?.value;
        if !out.contains(&e.id) {
            out.push(e.id);
        }
    }
    Ok(out)
}

/// Resolves dependency references and refuses a dependency cycle through `this_id`.
async fn resolve_dependencies(m: &mut Mutation<'_>, this_id: &str, refs: &[String]) -> AppResult<Vec<String>> {
    let mut out = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let field = format!("depends_on/{i}");
        let dep: Release = m.find(Kind::Release, r).await?.ok_or_else(|| AppError::invalid(&field, format!("no release {r:?}")))?.value;
        if dep.id == this_id {
            return Err(AppError::invalid(field, "a release cannot depend on itself"));
        }
        // Walk the dependency's own dependencies: reaching this release would close a cycle.
        let mut stack = dep.depends_on.clone();
        let mut seen = std::collections::BTreeSet::new();
        while let Some(next) = stack.pop() {
            if next == this_id {
                return Err(AppError::invalid(
                    field,
                    format!("{} already depends on this release (directly or through others); dependencies cannot form a cycle", dep.key),
                ));
            }
            if seen.insert(next.clone()) {
                if let Some(r) = m.find::<Release>(Kind::Release, &next).await? {
                    stack.extend(r.value.depends_on);
                }
            }
        }
        if !out.contains(&dep.id) {
            out.push(dep.id);
        }
    }
    Ok(out)
}

/// Kill-switch flag keys: named, short, at most 50 (flag sets are per environment, so keys are
/// not resolved here; a key missing from an environment's set is reported when it is switched).
fn validate_flag_keys(errors: &mut Invalid, keys: &[String]) {
    if keys.len() > 50 {
        errors.push("kill_switch_flags", "name at most 50 flags");
    }
    for (i, k) in keys.iter().enumerate() {
        if k.trim().is_empty() || k.len() > 200 || k.chars().any(char::is_whitespace) {
            errors.push(
                format!("kill_switch_flags/{i}"),
                format!("{k:?} is not a flag key; use the key as in the flag set, e.g. new-checkout"),
            );
        }
    }
}

fn validate_window(errors: &mut Invalid, window: &Option<signalbox_domain::model::PlannedWindow>) {
    if let Some(w) = window {
        if w.end <= w.start {
            errors.push("planned_window/end", "must be after planned_window/start");
        }
    }
}

impl App {
    pub async fn create_release(&self, ctx: &RequestContext, req: CreateRelease) -> AppResult<Versioned<Release>> {
        crate::mutation::optimistically(|optimistic| self.create_release_once(ctx, req.clone(), optimistic)).await
    }

    async fn create_release_once(&self, ctx: &RequestContext, req: CreateRelease, optimistic: bool) -> AppResult<Versioned<Release>> {
        let mut errors = Invalid::default();
        let name = errors.check(require_text("name", &req.name, 200));
        if let Some(v) = &req.version {
            errors.check(parse_version("version", v));
        }
        validate_window(&mut errors, &req.planned_window);
        validate_flag_keys(&mut errors, &req.kill_switch_flags);
        errors.into_result()?;

        let mut m = Mutation::begin_with(self, ctx, optimistic).await?;
        let domain = match &req.domain {
            Some(d) => Some(App::resolve_ref::<Domain>(&mut m, Kind::Domain, "domain", d).await?.value),
            None => None,
        };
        let mut scopes = ResourceScopes::organization();
        if let Some(d) = &domain {
            scopes = scopes.with(Scope::Domain(d.id.clone()));
        }
        ctx.actor.require(Permission::EditRelease, &scopes)?;
        let template: Template =
            App::resolve_ref(&mut m, Kind::Template, "template", req.template.as_deref().unwrap_or("standard")).await?.value;
        let owner = match &req.owner {
            Some(o) => App::resolve_ref::<User>(&mut m, Kind::User, "owner", o).await?.value.username,
            None => ctx.actor.username.clone(),
        };
        let components = resolve_components(&mut m, &req.components).await?;
        let change_ids = resolve_changes(&mut m, &req.changes).await?;
        let target_environments = resolve_environments(&mut m, &req.target_environments).await?;
        let id = new_id(Kind::Release);
        let depends_on = resolve_dependencies(&mut m, &id, &req.depends_on).await?;
        let number = m.next_number("release").await?;
        let content_digest = Release::compute_content_digest(&components, &change_ids);
        let release = Release {
            id,
            key: format!("R-{number}"),
            name: name.expect("checked"),
            version: req.version,
            domain_id: domain.map(|d| d.id),
            owner,
            template_id: template.id.clone(),
            state: ReleaseState::Planning,
            components,
            change_ids,
            target_environments,
            planned_window: req.planned_window,
            documents: req.documents,
            required_documents: template.required_documents.clone(),
            depends_on,
            kill_switch_flags: req.kill_switch_flags,
            tasks: template.instantiate_tasks(),
            review: None,
            history: vec![StateChange {
                from: None,
                to: ReleaseState::Planning,
                at: m.now,
                by: ctx.actor.username.clone(),
                reason: ctx.reason.clone(),
            }],
            content_digest,
            created_by: ctx.actor.username.clone(),
            created_at: m.now,
        };
        let version = m.insert("release.create", Kind::Release, &release.id, placement(&release), &release).await?;
        let out = Versioned { version, value: release };
        m.commit(201, &out.value).await?;
        Ok(out)
    }

    /// Loads a release for a change, checking permission and `If-Match`.
    async fn release_for_change(
        m: &mut Mutation<'_>,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<i64>,
        permission: Permission,
    ) -> AppResult<Versioned<Release>> {
        let current: Versioned<Release> = m.get(Kind::Release, id).await?;
        ctx.actor.require(permission, &release_scopes(&current.value))?;
        check_if_match(Kind::Release, &current.value.id, if_match, current.version)?;
        Ok(current)
    }

    async fn save_release(m: Mutation<'_>, action: &str, current: Versioned<Release>, mut next: Release) -> AppResult<Versioned<Release>> {
        let mut m = m;
        next.content_digest = Release::compute_content_digest(&next.components, &next.change_ids);
        let version = m.update(action, Kind::Release, &next.id.clone(), placement(&next), &current, &next).await?;
        let out = Versioned { version, value: next };
        m.commit(200, &out.value).await?;
        Ok(out)
    }

    pub async fn update_release(
        &self,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<i64>,
        req: UpdateRelease,
    ) -> AppResult<Versioned<Release>> {
        crate::mutation::optimistically(|optimistic| self.update_release_once(ctx, id, if_match, req.clone(), optimistic)).await
    }

    async fn update_release_once(
        &self,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<i64>,
        req: UpdateRelease,
        optimistic: bool,
    ) -> AppResult<Versioned<Release>> {
        let mut errors = Invalid::default();
        let name = match &req.name {
            Some(n) => errors.check(require_text("name", n, 200)),
            None => None,
        };
        if let Some(v) = &req.version {
            errors.check(parse_version("version", v));
        }
        validate_window(&mut errors, &req.planned_window);
        if let Some(flags) = &req.kill_switch_flags {
            validate_flag_keys(&mut errors, flags);
        }
        errors.into_result()?;

        let mut m = Mutation::begin_with(self, ctx, optimistic).await?;
        let current = App::release_for_change(&mut m, ctx, id, if_match, Permission::EditRelease).await?;
        let mut next = current.value.clone();
        if next.state.is_terminal() {
            return Err(AppError::Conflict {
                code: "release-final",
                detail: format!("{} is {} and can no longer change", next.key, next.state),
            });
        }
        let touches_content = req.components.is_some() || req.changes.is_some();
        if touches_content && !next.state.content_editable() {
            return Err(AppError::Conflict {
                code: "release-content-locked",
                detail: format!(
                    "{} is {}; its components and changes are locked after approval. Move it back to awaiting_approval (which voids approvals) to change them",
                    next.key, next.state
                ),
            });
        }
        if let Some(n) = name {
            next.name = n;
        }
        if let Some(v) = req.version {
            next.version = Some(v);
        }
        if let Some(o) = req.owner {
            next.owner = App::resolve_ref::<User>(&mut m, Kind::User, "owner", &o).await?.value.username;
        }
        if let Some(c) = req.components {
            next.components = resolve_components(&mut m, &c).await?;
        }
        if let Some(c) = req.changes {
            next.change_ids = resolve_changes(&mut m, &c).await?;
        }
        if let Some(e) = req.target_environments {
            next.target_environments = resolve_environments(&mut m, &e).await?;
        }
        if let Some(w) = req.planned_window {
            next.planned_window = Some(w);
        }
        if let Some(d) = req.documents {
            next.documents = d;
        }
        if let Some(d) = req.depends_on {
            next.depends_on = resolve_dependencies(&mut m, &next.id, &d).await?;
        }
        if let Some(flags) = req.kill_switch_flags {
            next.kill_switch_flags = flags;
        }
        App::save_release(m, "release.update", current, next).await
    }

    /// Pins a service to an artifact in the release, replacing that service's earlier pin.
    pub async fn add_component(
        &self,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<i64>,
        req: AddComponent,
    ) -> AppResult<Versioned<Release>> {
        crate::mutation::optimistically(|optimistic| self.add_component_once(ctx, id, if_match, req.clone(), optimistic)).await
    }

    async fn add_component_once(
        &self,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<i64>,
        req: AddComponent,
        optimistic: bool,
    ) -> AppResult<Versioned<Release>> {
        let mut m = Mutation::begin_with(self, ctx, optimistic).await?;
        let current = App::release_for_change(&mut m, ctx, id, if_match, Permission::EditRelease).await?;
        if !current.value.state.content_editable() {
            return Err(AppError::Conflict {
                code: "release-content-locked",
                detail: format!("{} is {}; components can only change before approval", current.value.key, current.value.state),
            });
        }
        let component = resolve_component(&mut m, "artifact", &req.artifact).await?;
        let mut next = current.value.clone();
        next.components.retain(|c| c.service_id != component.service_id);
        next.components.push(component);
        App::save_release(m, "release.component.set", current, next).await
    }

    pub async fn transition_preview(&self, ctx: &RequestContext, id: &str) -> AppResult<TransitionPreview> {
        let release: Versioned<Release> = self.get_resource(ctx, Kind::Release, id).await?;
        let mut tctx = self.transition_context(&release.value).await?;
        let mut transitions = Vec::new();
        for to in allowed_targets(release.value.state) {
            let mut reader = crate::governance::Reader::Store(self.store.as_ref());
            let now = chrono::Utc::now();
            tctx.governance_blockers = self.governance_blockers(&mut reader, now, &release.value, *to, None).await?;
            if *to == ReleaseState::Deploying {
                tctx.governance_blockers.extend(self.freeze_blockers(&mut reader, &release.value, None, now).await?);
            }
            transitions.push(match check_transition(&release.value, *to, &tctx) {
                Ok(()) => TransitionOption { to: *to, allowed: true, reasons: vec![] },
                Err(r) => TransitionOption { to: *to, allowed: false, reasons: r.reasons },
            });
        }
        Ok(TransitionPreview { state: release.value.state, transitions })
    }

    async fn transition_context(&self, release: &Release) -> AppResult<TransitionContext> {
        let mut dependencies = Vec::new();
        for dep in &release.depends_on {
            if let Some(r) = self.store.get(Kind::Release, dep).await? {
                let d: Release = crate::mutation::decode(&r)?.value;
                dependencies.push((d.key, d.state));
            }
        }
        Ok(TransitionContext { dependencies, governance_blockers: vec![] })
    }

    pub async fn transition_release(
        &self,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<i64>,
        req: TransitionRequest,
    ) -> AppResult<Versioned<Release>> {
        crate::mutation::optimistically(|optimistic| self.transition_release_once(ctx, id, if_match, req.clone(), optimistic)).await
    }

    async fn transition_release_once(
        &self,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<i64>,
        req: TransitionRequest,
        optimistic: bool,
    ) -> AppResult<Versioned<Release>> {
        let mut m = Mutation::begin_with(self, ctx, optimistic).await?;
        let current = App::release_for_change(&mut m, ctx, id, if_match, Permission::TransitionRelease).await?;
        // Dependencies are read inside the transaction, so the decision and the write agree.
        let mut dependencies = Vec::new();
        for dep in &current.value.depends_on {
            if let Some(d) = m.find::<Release>(Kind::Release, dep).await? {
                dependencies.push((d.value.key, d.value.state));
            }
        }
        let now = m.now;
        let governance_blockers = {
            let mut reader = crate::governance::Reader::Tx(&mut m);
            let mut blockers = self.governance_blockers(&mut reader, now, &current.value, req.to, req.environment.as_deref()).await?;
            if req.to == ReleaseState::Deploying {
                // Freezes in force (break-glass with freeze=true is the only way through).
                blockers.extend(self.freeze_blockers(&mut reader, &current.value, req.environment.as_deref(), now).await?);
            }
            blockers
        };
        check_transition(&current.value, req.to, &TransitionContext { dependencies, governance_blockers })
            .map_err(AppError::TransitionRefused)?;
        if req.to == ReleaseState::AwaitingApproval {
            // Entering awaiting_approval is the request: whoever moves it here is the requester
            // segregation of duties keeps from approving.
            App::open_approval_rounds(&mut m, &current.value, &current.value.target_environments).await?;
        }
        let mut next = current.value.clone();
        let reason = req.reason.or_else(|| ctx.reason.clone());
        m.set_reason(reason.clone());
        next.history.push(StateChange { from: Some(next.state), to: req.to, at: m.now, by: ctx.actor.username.clone(), reason });
        next.state = req.to;
        App::save_release(m, "release.transition", current, next).await
    }

    pub async fn record_review(
        &self,
        ctx: &RequestContext,
        id: &str,
        if_match: Option<i64>,
        req: RecordReview,
    ) -> AppResult<Versioned<Release>> {
        let mut errors = Invalid::default();
        let summary = errors.check(require_text("summary", &req.summary, 20_000));
        for (i, item) in req.action_items.iter().enumerate() {
            errors.check(require_text(&format!("action_items/{i}/description"), &item.description, 2000));
            errors.check(require_text(&format!("action_items/{i}/owner"), &item.owner, 200));
        }
        errors.into_result()?;
        let mut m = Mutation::begin(self, ctx).await?;
        let current = App::release_for_change(&mut m, ctx, id, if_match, Permission::EditRelease).await?;
        use ReleaseState::*;
        if !matches!(current.value.state, Released | Failed | RolledBack) {
            return Err(AppError::Conflict {
                code: "review-too-early",
                detail: format!(
                    "{} is {}; a post-release review is recorded once it is released, failed or rolled back",
                    current.value.key, current.value.state
                ),
            });
        }
        let mut next = current.value.clone();
        next.review = Some(PostReleaseReview {
            summary: summary.expect("checked"),
            incidents: req.incidents,
            action_items: req
                .action_items
                .into_iter()
                .map(|a| ActionItem { description: a.description, owner: a.owner, due: a.due })
                .collect(),
            recorded_by: ctx.actor.username.clone(),
            recorded_at: m.now,
        });
        App::save_release(m, "release.review.record", current, next).await
    }

    pub async fn add_task(&self, ctx: &RequestContext, id: &str, if_match: Option<i64>, req: AddTask) -> AppResult<Versioned<Release>> {
        let mut m = Mutation::begin(self, ctx).await?;
        let current = App::release_for_change(&mut m, ctx, id, if_match, Permission::EditRelease).await?;
        if current.value.state.is_terminal() {
            return Err(AppError::Conflict {
                code: "release-final",
                detail: format!("{} is {}; tasks can no longer be added", current.value.key, current.value.state),
            });
        }
        let mut errors = Invalid::default();
        let key = errors.check(signalbox_domain::validate::Name::parse("key", &req.key));
        let name = errors.check(require_text("name", &req.name, 200));
        errors.into_result()?;
        let mut next = current.value.clone();
        let mut task =
            Task::new(key.expect("checked").as_str(), req.phase.as_deref().unwrap_or("extra"), &name.expect("checked"), req.kind, vec![]);
        task.depends_on = req.depends_on;
        task.assignee = req.assignee;
        next.tasks.push(task);
        validate_dag(&next.tasks, "tasks").map_err(|e| {
            // Point errors about the new task at the request's own fields.
            let last = next.tasks.len() - 1;
            AppError::Invalid(
                e.0.into_iter()
                    .map(|fe| signalbox_domain::FieldError::new(fe.field.replace(&format!("tasks/{last}/"), ""), fe.message))
                    .collect(),
            )
        })?;
        App::save_release(m, "release.task.add", current, next).await
    }

    pub async fn update_task(
        &self,
        ctx: &RequestContext,
        id: &str,
        task_key: &str,
        if_match: Option<i64>,
        req: UpdateTask,
    ) -> AppResult<Versioned<Release>> {
        let mut m = Mutation::begin(self, ctx).await?;
        let current = App::release_for_change(&mut m, ctx, id, if_match, Permission::UpdateTask).await?;
        if current.value.state.is_terminal() {
            return Err(AppError::Conflict {
                code: "release-final",
                detail: format!("{} is {}; its tasks can no longer change", current.value.key, current.value.state),
            });
        }
        let mut next = current.value.clone();
        if let Some(status) = req.status {
            check_task_status_change(&next.tasks, task_key, status).map_err(|detail| {
                if next.tasks.iter().any(|t| t.key == task_key) {
                    AppError::Conflict { code: "task-blocked", detail }
                } else {
                    AppError::not_found(Kind::Release, format!("{}/tasks/{task_key}", current.value.key))
                }
            })?;
        }
        let Some(task) = next.tasks.iter_mut().find(|t| t.key == task_key) else {
            return Err(AppError::not_found(Kind::Release, format!("{}/tasks/{task_key}", current.value.key)));
        };
        if let Some(status) = req.status {
            task.status = status;
            if status == TaskStatus::InProgress && task.assignee.is_none() {
                task.assignee = Some(ctx.actor.username.clone());
            }
        }
        if let Some(a) = req.assignee {
            task.assignee = Some(a);
        }
        if let Some(n) = req.note {
            task.note = Some(n);
        }
        App::save_release(m, "release.task.update", current, next).await
    }

    /// Releases filtered by state and domain.
    pub async fn list_releases(
        &self,
        ctx: &RequestContext,
        state: Option<ReleaseState>,
        domain: Option<&str>,
        page: &crate::PageRequest,
    ) -> AppResult<crate::Paged<Release>> {
        let mut query = ListQuery::all(Kind::Release);
        query.state = state.map(|s| s.as_str().to_string());
        if let Some(d) = domain {
            let dom: Versioned<Domain> = self.get_resource(ctx, Kind::Domain, d).await?;
            query.parent = Some(dom.value.id);
        }
        self.list_resources(ctx, query, page).await
    }
}
