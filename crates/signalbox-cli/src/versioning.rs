//! `signalbox version next` and `signalbox changelog`: local commands over a git repository,
//! no server needed. The work is done by `signalbox-versioning`; this module maps flags and the
//! `[changelog]` configuration section onto it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use signalbox_versioning::{render, ChangelogConfig, Selection};

use crate::config::Settings;

#[derive(clap::Args, Debug)]
pub struct RepoArgs {
    /// The git repository (a work tree, any directory inside one, or a bare repository).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Configuration file with a `[changelog]` section; see docs/VERSIONING.md.
    #[arg(long, env = "SIGNALBOX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Monorepo package: its tags (`NAME@1.2.3`, `NAME-v1.2.3` or `changelog.packages.NAME.tag_pattern`)
    /// and include paths.
    #[arg(long)]
    pub package: Option<String>,
    /// Release tags: a template such as `v{version}` or `pkg@{version}`, or a regex.
    #[arg(long = "tag-pattern")]
    pub tag_pattern: Option<String>,
    /// Only commits changing a path matching one of these globs (`crates/api/**`).
    #[arg(long = "include-path", num_args = 1..)]
    pub include_path: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum VersionCmd {
    /// The next SemVer version from the Conventional Commits since the last release tag.
    Next(NextArgs),
}

#[derive(clap::Args, Debug)]
pub struct NextArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Pre-release channel, e.g. `rc`: gives `1.3.0-rc.1`, then `1.3.0-rc.2`, ….
    #[arg(long)]
    pub pre: Option<String>,
    /// List the commits that caused the bump and the rules applied.
    #[arg(long)]
    pub explain: bool,
    /// Print JSON instead of the bare version.
    #[arg(long)]
    pub json: bool,
    /// Compute up to this revision instead of HEAD.
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ChangelogFormat {
    Markdown,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct ChangelogArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Leave out history reachable from this revision.
    #[arg(long)]
    pub from: Option<String>,
    /// Read history up to this revision (default HEAD).
    #[arg(long)]
    pub to: Option<String>,
    /// Only the commits since the last release tag.
    #[arg(long)]
    pub unreleased: bool,
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: ChangelogFormat,
    /// A minijinja template rendering the whole document (context: `releases`, `config`).
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Insert the releases into this existing changelog file (below its header) instead of printing.
    #[arg(long)]
    pub prepend: Option<PathBuf>,
}

fn load_config(args: &RepoArgs) -> anyhow::Result<ChangelogConfig> {
    let settings = Settings::load(args.config.as_deref()).map_err(anyhow::Error::msg)?;
    Ok(settings.changelog)
}

fn selection(args: &RepoArgs, from: Option<String>, to: Option<String>, unreleased: bool) -> Selection {
    Selection {
        from,
        to,
        unreleased_only: unreleased,
        tag_pattern: args.tag_pattern.clone(),
        include_paths: args.include_path.clone(),
        package: args.package.clone(),
    }
}

pub fn version_next(args: NextArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.repo)?;
    let sel = selection(&args.repo, None, args.to.clone(), false);
    let next = signalbox_versioning::next_version(&args.repo.repo, &config, &sel, args.pre.as_deref())?;
    let mut out = String::new();
    if args.json {
        out = serde_json::to_string_pretty(&next)?;
        out.push('\n');
    } else {
        out.push_str(&next.version);
        out.push('\n');
        if args.explain {
            let base = next.base_tag.as_deref().unwrap_or("(no release tag)");
            out.push_str(&format!(
                "\nbase: {base}; {} commit(s) since; commits ask for {}, applied {}\n",
                next.commits_since,
                next.level.as_str(),
                next.applied.as_str()
            ));
            if let Some(tag) = &next.tag {
                out.push_str(&format!("tag: {tag}\n"));
            }
            for note in &next.notes {
                out.push_str(&format!("note: {note}\n"));
            }
            for r in &next.reasons {
                out.push_str(&format!("{:<6} {} {} ({})\n", r.level.as_str(), &r.id[..r.id.len().min(10)], r.subject, r.why));
            }
        }
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

pub fn changelog(args: ChangelogArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.repo)?;
    let template = match &args.template {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--template {}: {e}", path.display()))?),
        None => None,
    };
    let sel = selection(&args.repo, args.from.clone(), args.to.clone(), args.unreleased);
    if template.is_none() && args.prepend.is_none() {
        // Straight to stdout one release at a time: a long history never holds every entry or
        // the whole document in memory. Nothing is printed if reading the repository fails.
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        match args.format {
            ChangelogFormat::Markdown => {
                let mut text = String::new();
                render::markdown_header(&mut text, &config);
                let mut header = Some(text.clone());
                signalbox_versioning::generate_each(&args.repo.repo, &config, &sel, |release| -> anyhow::Result<()> {
                    text.clear();
                    if let Some(h) = header.take() {
                        text.push_str(&h);
                    }
                    render::markdown_release(&mut text, &release, &config);
                    out.write_all(text.as_bytes())?;
                    Ok(())
                })?;
                if let Some(h) = header {
                    out.write_all(h.as_bytes())?;
                }
            }
            ChangelogFormat::Json => {
                let mut json = render::JsonWriter::new(&mut out);
                signalbox_versioning::generate_each(&args.repo.repo, &config, &sel, |release| -> anyhow::Result<()> {
                    json.release(&release)?;
                    Ok(())
                })?;
                json.finish()?.write_all(b"\n")?;
            }
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let changelog = signalbox_versioning::generate(&args.repo.repo, &config, &sel)?;
    let with_header = args.prepend.is_none();
    let text = match (&template, args.format) {
        (Some(source), _) => render::template(&changelog, &config, source)?,
        (None, ChangelogFormat::Json) => render::json(&changelog) + "\n",
        (None, ChangelogFormat::Markdown) => render::markdown(&changelog, &config, with_header),
    };
    match &args.prepend {
        Some(path) => {
            let existing = match std::fs::read_to_string(path) {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => anyhow::bail!("--prepend {}: {e}", path.display()),
            };
            let updated = render::prepend(&existing, &text, &config);
            std::fs::write(path, updated).map_err(|e| anyhow::anyhow!("--prepend {}: {e}", path.display()))?;
        }
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
