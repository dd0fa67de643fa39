//! Evidence (SPEC C4): a file a real tool produced, attached to an artifact or a release. The
//! raw bytes are kept (with their digest) in their own record; the parsed facts are what
//! gates read. A file that does not parse is refused whole, with the place that is wrong.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use signalbox_domain::access::{Permission, ResourceScopes};
use signalbox_domain::model::{Artifact, Environment, Kind, Release, Service};
use signalbox_evidence::{EvidenceKind, Facts};
use signalbox_store::ListQuery;
use utoipa::ToSchema;

use crate::catalog::service_scopes;
use crate::error::{AppError, AppResult};
use crate::mutation::{decode, Mutation, Placement};
use crate::releases::release_scopes;
use crate::{new_id, App, RequestContext, Versioned};

/// Largest evidence upload the server takes. The parsers accept up to 64 MiB; the store keeps
/// the raw file in one record, so uploads are held to a size every backend handles well.
pub const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceSubjectKind {
    Artifact,
    Release,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EvidenceRecord {
    pub id: String,
    pub subject_kind: EvidenceSubjectKind,
    pub subject_id: String,
    pub kind: EvidenceKind,
    #[serde(default)]
    pub file_name: Option<String>,
    /// `sha256:` digest of the raw file as uploaded.
    pub file_digest: String,
    pub size: u64,
    /// Where the evidence was produced (smoke tests in staging), when it matters.
    #[serde(default)]
    pub environment_id: Option<String>,
    pub facts: Facts,
    pub uploaded_by: String,
    pub created_at: DateTime<Utc>,
}

/// The raw bytes of an evidence file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceFile {
    pub id: String,
    pub evidence_id: String,
    pub content_base64: String,
}

/// Where an upload goes and what it is; the file itself travels as the request body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AddEvidence {
    /// Artifact id, or `service@version`.
    #[serde(default)]
    pub artifact: Option<String>,
    /// Release id or key (`R-12`).
    #[serde(default)]
    pub release: Option<String>,
    /// One of junit, sarif, cyclonedx, spdx, lcov, cobertura, performance, smoke, signoff, document_link.
    pub kind: String,
    /// Environment id or name where the evidence was produced (required for smoke results).
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub file_name: Option<String>,
}

impl App {
    pub async fn add_evidence(&self, ctx: &RequestContext, req: AddEvidence, bytes: &[u8]) -> AppResult<Versioned<EvidenceRecord>> {
        let kind: EvidenceKind = req.kind.parse().map_err(|e: signalbox_evidence::UnknownKind| AppError::invalid("kind", e.to_string()))?;
        if bytes.is_empty() {
            return Err(AppError::invalid("file", "the request body is empty; send the evidence file as the body"));
        }
        if bytes.len() > MAX_UPLOAD_BYTES {
            return Err(AppError::invalid("file", format!("the file is {} bytes; evidence uploads may be at most 16 MiB", bytes.len())));
        }
        if let Some(name) = &req.file_name {
            if name.len() > 255 || name.contains(['/', '\\', '\0']) {
                return Err(AppError::invalid("file_name", "give a plain file name of at most 255 characters, without slashes"));
            }
        }
        // Parse before opening the transaction: a malformed file costs no lock.
        let facts = signalbox_evidence::parse(kind, bytes).map_err(signalbox_domain::Invalid::from)?;
        let mut m = Mutation::begin(self, ctx).await?;
        let (subject_kind, subject_id, scopes) = match (&req.artifact, &req.release) {
            (Some(a), None) => {
                let artifact = resolve_artifact(&mut m, a).await?;
                let service: Service = m.get(Kind::Service, &artifact.service_id).await?.value;
                (EvidenceSubjectKind::Artifact, artifact.id, service_scopes(&service))
            }
            (None, Some(r)) => {
                let release: Release =
                    m.find(Kind::Release, r).await?.ok_or_else(|| AppError::invalid("release", format!("no release {r:?}")))?.value;
                let scopes = release_scopes(&release);
                (EvidenceSubjectKind::Release, release.id, scopes)
            }
            _ => return Err(AppError::invalid("artifact", "give exactly one of artifact or release")),
        };
        ctx.actor.require(Permission::AddEvidence, &scopes)?;
        let environment_id = match &req.environment {
            Some(e) => Some(App::resolve_ref::<Environment>(&mut m, Kind::Environment, "environment", e).await?.value.id),
            None => None,
        };
        if kind == EvidenceKind::Smoke && environment_id.is_none() {
            return Err(AppError::invalid("environment", "smoke results count for the environment they ran in; name it"));
        }
        let file_digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        let record = EvidenceRecord {
            id: new_id(Kind::Evidence),
            subject_kind,
            subject_id: subject_id.clone(),
            kind,
            file_name: req.file_name,
            file_digest: file_digest.clone(),
            size: bytes.len() as u64,
            environment_id,
            facts,
            uploaded_by: ctx.actor.username.clone(),
            created_at: m.now,
        };
        let place = Placement { key: None, parent: Some(subject_id), state: Some(kind.as_str().to_string()) };
        let version = m.insert("evidence.add", Kind::Evidence, &record.id, place, &record).await?;
        let file = EvidenceFile {
            id: new_id(Kind::EvidenceFile),
            evidence_id: record.id.clone(),
            content_base64: base64::engine::general_purpose::STANDARD.encode(bytes),
        };
        // The audit entry names the file by digest; the bytes themselves stay out of the chain.
        let audit_view = serde_json::json!({"evidence_id": record.id, "file_digest": file_digest, "size": bytes.len()});
        m.insert_secret(
            "evidence.file.store",
            Kind::EvidenceFile,
            &file.id,
            Placement { key: Some(record.id.clone()), parent: Some(record.id.clone()), state: None },
            &file,
            audit_view,
        )
        .await?;
        let out = Versioned { version, value: record };
        m.commit(201, &out.value).await?;
        Ok(out)
    }

    /// Evidence attached to an artifact or a release, oldest first.
    pub async fn list_evidence(
        &self,
        ctx: &RequestContext,
        artifact: Option<&str>,
        release: Option<&str>,
    ) -> AppResult<Vec<EvidenceRecord>> {
        ctx.actor.require(Permission::Read, &ResourceScopes::organization())?;
        let subject = match (artifact, release) {
            (Some(a), None) => {
                let mut reader = crate::governance::Reader::Store(self.store.as_ref());
                reader.artifact("artifact", a).await?.id
            }
            (None, Some(r)) => self.get_resource::<Release>(ctx, Kind::Release, r).await?.value.id,
            _ => return Err(AppError::invalid("artifact", "give exactly one of artifact or release")),
        };
        let page = self.store.list(&ListQuery::all(Kind::Evidence).with_parent(subject)).await?;
        page.items.iter().map(|r| decode(r).map(|v| v.value)).collect()
    }

    pub async fn get_evidence(&self, ctx: &RequestContext, id: &str) -> AppResult<Versioned<EvidenceRecord>> {
        self.get_resource(ctx, Kind::Evidence, id).await
    }

    /// The raw file of an evidence record, byte for byte as uploaded.
    pub async fn evidence_file(&self, ctx: &RequestContext, id: &str) -> AppResult<(EvidenceRecord, Vec<u8>)> {
        let record: EvidenceRecord = self.get_resource(ctx, Kind::Evidence, id).await?.value;
        let file: EvidenceFile = self.get_resource(ctx, Kind::EvidenceFile, &record.id).await?.value;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(file.content_base64)
            .map_err(|e| AppError::Internal(format!("stored evidence file {} does not decode: {e}", file.id)))?;
        Ok((record, bytes))
    }
}

pub(crate) async fn resolve_artifact(m: &mut Mutation<'_>, reference: &str) -> AppResult<Artifact> {
    let mut reader = crate::governance::Reader::Tx(m);
    reader.artifact("artifact", reference).await
}
