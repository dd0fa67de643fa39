//! Artifacts (immutable builds identified by digest) and changes.

use signalbox_domain::access::Permission;
use signalbox_domain::model::{Artifact, Change, Kind, Service};
use signalbox_domain::validate::{parse_url, parse_version, require_text, Digest};
use signalbox_domain::Invalid;

use crate::catalog::service_scopes;
use crate::error::{AppError, AppResult};
use crate::mutation::{Mutation, Placement};
use crate::requests::{RecordChange, RegisterArtifact};
use crate::{new_id, App, RequestContext, Versioned};

/// Natural key of an artifact: one version of one service.
pub fn artifact_key(service_id: &str, version: &semver::Version) -> String {
    format!("{service_id}@{version}")
}

/// What registering an artifact did: created it, or found the identical one already there.
#[derive(Debug)]
pub enum Registered {
    Created(Versioned<Artifact>),
    AlreadyRegistered(Versioned<Artifact>),
}

impl App {
    /// Registers an artifact. Registering the same service/version/digest again is a no-op
    /// that returns the stored artifact (CI retries are safe); the same service/version with
    /// another digest is a conflict: artifacts are immutable.
    pub async fn register_artifact(&self, ctx: &RequestContext, req: RegisterArtifact) -> AppResult<Registered> {
        let mut errors = Invalid::default();
        let version = errors.check(parse_version("version", &req.version));
        let digest = errors.check(Digest::parse("digest", &req.digest));
        if let Some(commit) = &req.source_commit {
            let ok = (7..=64).contains(&commit.len()) && commit.chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                errors.push("source_commit", "must be a git commit id: 7 to 64 hex digits");
            }
        }
        let build_url = match &req.build_url {
            Some(u) => errors.check(parse_url("build_url", u)),
            None => None,
        };
        errors.into_result()?;
        let (version, digest) = (version.expect("checked"), digest.expect("checked"));

        let mut m = Mutation::begin(self, ctx).await?;
        let service: Service = App::resolve_ref(&mut m, Kind::Service, "service", &req.service).await?.value;
        ctx.actor.require(Permission::RegisterArtifact, &service_scopes(&service))?;
        let key = artifact_key(&service.id, &version);
        if let Some(existing) = m.find::<Artifact>(Kind::Artifact, &key).await? {
            if existing.value.digest == digest.as_str() {
                return Ok(Registered::AlreadyRegistered(existing));
            }
            return Err(AppError::Conflict {
                code: "artifact-immutable",
                detail: format!(
                    "{}@{} is already registered with digest {}; artifacts are immutable, so publish a new version instead of re-registering {}",
                    service.name, version, existing.value.digest, digest
                ),
            });
        }
        let artifact = Artifact {
            id: new_id(Kind::Artifact),
            service_id: service.id.clone(),
            version: version.to_string(),
            digest: digest.to_string(),
            source_commit: req.source_commit.map(|c| c.to_ascii_lowercase()),
            build_url,
            created_at: m.now,
        };
        let version = m
            .insert(
                "artifact.register",
                Kind::Artifact,
                &artifact.id,
                Placement { key: Some(key), parent: Some(service.id), state: None },
                &artifact,
            )
            .await?;
        let out = Versioned { version, value: artifact };
        m.commit(201, &out.value).await?;
        Ok(Registered::Created(out))
    }

    pub async fn record_change(&self, ctx: &RequestContext, req: RecordChange) -> AppResult<Versioned<Change>> {
        let mut errors = Invalid::default();
        let reference = errors.check(require_text("reference", &req.reference, 200));
        let title = errors.check(require_text("title", &req.title, 500));
        let author = errors.check(require_text("author", &req.author, 200));
        if let Some(t) = &req.change_type {
            if t.is_empty() || t.len() > 32 || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                errors.push("change_type", "must be a Conventional Commit type such as feat, fix or chore");
            }
        }
        for (i, link) in req.links.iter().enumerate() {
            errors.check(parse_url(&format!("links/{i}"), link));
        }
        for (i, flag) in req.risk_flags.iter().enumerate() {
            if flag.is_empty() || !flag.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                errors.push(format!("risk_flags/{i}"), "risk flags are snake_case words such as schema_migration");
            }
        }
        errors.into_result()?;
        let mut m = Mutation::begin(self, ctx).await?;
        let service = match &req.service {
            Some(s) => Some(App::resolve_ref::<Service>(&mut m, Kind::Service, "service", s).await?.value),
            None => None,
        };
        let scopes = match &service {
            Some(s) => service_scopes(s),
            None => signalbox_domain::access::ResourceScopes::organization(),
        };
        ctx.actor.require(Permission::RecordChange, &scopes)?;
        let reference = reference.expect("checked");
        let key = format!("{}:{:?}:{}", service.as_ref().map(|s| s.id.as_str()).unwrap_or("-"), req.kind, reference);
        let change = Change {
            id: new_id(Kind::Change),
            kind: req.kind,
            reference,
            title: title.expect("checked"),
            change_type: req.change_type,
            author: author.expect("checked"),
            service_id: service.as_ref().map(|s| s.id.clone()),
            authored_at: req.authored_at,
            committed_at: req.committed_at,
            merged_at: req.merged_at,
            links: req.links,
            risk_flags: req.risk_flags,
            bug: req.bug,
            commit: None,
            created_at: m.now,
        };
        let version = m
            .insert(
                "change.record",
                Kind::Change,
                &change.id,
                Placement { key: Some(key), parent: change.service_id.clone(), state: None },
                &change,
            )
            .await?;
        let out = Versioned { version, value: change };
        m.commit(201, &out.value).await?;
        Ok(out)
    }
}
