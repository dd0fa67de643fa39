//! Release templates: user-defined ones, and the built-ins every installation starts with.

use signalbox_domain::access::{Permission, ResourceScopes};
use signalbox_domain::model::Kind;
use signalbox_domain::tasks::validate_dag;
use signalbox_domain::templates::{builtin_templates, Template};
use signalbox_domain::validate::Name;
use signalbox_domain::Invalid;

use crate::error::AppResult;
use crate::mutation::{Mutation, Placement};
use crate::requests::CreateTemplate;
use crate::{new_id, App, RequestContext, Versioned};

impl App {
    pub async fn create_template(&self, ctx: &RequestContext, req: CreateTemplate) -> AppResult<Versioned<Template>> {
        ctx.actor.require(Permission::ManageTemplates, &ResourceScopes::organization())?;
        let mut errors = Invalid::default();
        let name = errors.check(Name::parse("name", &req.name));
        if req.phases.is_empty() {
            errors.push("phases", "a template needs at least one phase");
        }
        errors.into_result()?;
        let mut m = Mutation::begin(self, ctx).await?;
        let template = Template {
            id: new_id(Kind::Template),
            name: name.expect("checked").to_string(),
            description: req.description,
            phases: req.phases,
            required_documents: req.required_documents,
            builtin: false,
            created_at: m.now,
        };
        validate_dag(&template.instantiate_tasks(), "phases/*/tasks")?;
        let version = m
            .insert(
                "template.create",
                Kind::Template,
                &template.id,
                Placement { key: Some(template.name.clone()), ..Default::default() },
                &template,
            )
            .await?;
        let out = Versioned { version, value: template };
        m.commit(201, &out.value).await?;
        Ok(out)
    }

    /// Installs the built-in templates that are missing. Idempotent; run at every start.
    pub async fn ensure_builtin_templates(&self) -> AppResult<usize> {
        let ctx = RequestContext::system();
        let mut m = Mutation::begin(self, &ctx).await?;
        let mut installed = 0;
        for builtin in builtin_templates() {
            if m.find::<Template>(Kind::Template, builtin.name).await?.is_some() {
                continue;
            }
            let template = Template {
                id: new_id(Kind::Template),
                name: builtin.name.to_string(),
                description: builtin.description.to_string(),
                phases: builtin.phases,
                required_documents: builtin.required_documents,
                builtin: true,
                created_at: m.now,
            };
            m.insert(
                "template.install",
                Kind::Template,
                &template.id,
                Placement { key: Some(template.name.clone()), ..Default::default() },
                &template,
            )
            .await?;
            installed += 1;
        }
        if installed > 0 {
            m.commit(200, &serde_json::json!({"installed": installed})).await?;
        }
        Ok(installed)
    }
}
