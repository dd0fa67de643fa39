//! The `[changelog]` section of the Signalbox configuration. Defaults follow git-cliff's default
//! `cliff.toml` (its `commit_parsers` groups, skips and group order, `filter_unconventional =
//! true`, oldest commits first in a group) so the two tools' output can be compared.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::version::{BumpRules, TagPattern};
use crate::Error;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChangelogConfig {
    /// Release tags: `v{version}`, `pkg@{version}`, or a regex. Empty: `v1.2.3` or `1.2.3`.
    pub tag_pattern: String,
    /// Pre-release tags (`v1.2.0-rc.1`) cut their own release; otherwise their commits fold into
    /// the next final release.
    pub include_prereleases: bool,
    /// Leave out commits whose header is not Conventional Commits.
    pub filter_unconventional: bool,
    /// List merge commits too (they are left out by default: the merged commits are listed).
    pub include_merge_commits: bool,
    /// A breaking commit is listed even if a `skip` parser matches it.
    pub protect_breaking_commits: bool,
    /// First match wins: assigns a group, or skips the commit.
    pub commit_parsers: Vec<CommitParser>,
    /// Group order in each release; groups not named here follow in name order.
    pub group_order: Vec<String>,
    /// Issue link, `{id}` replaced by the number, e.g. `https://github.com/o/r/issues/{id}`.
    pub issue_url: String,
    /// Commit link, `{id}` replaced by the full hash.
    pub commit_url: String,
    /// List each release's authors and co-authors.
    pub contributors: bool,
    /// Text above the first release.
    pub header: String,
    pub bump: BumpRules,
    /// Monorepo packages by name: `--package NAME`.
    pub packages: BTreeMap<String, PackageConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PackageConfig {
    /// Default: `NAME@{version}` or `NAME-v{version}`.
    pub tag_pattern: String,
    /// Default: every path.
    pub include_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CommitParser {
    /// Regex on the whole raw message (so `^feat` tests the header).
    pub message: String,
    /// Regex on the body.
    pub body: String,
    pub group: String,
    pub skip: bool,
}

fn parser(message: &str, body: &str, group: &str, skip: bool) -> CommitParser {
    CommitParser { message: message.into(), body: body.into(), group: group.into(), skip }
}

pub const KEEP_A_CHANGELOG_HEADER: &str = "# Changelog\n\nAll notable changes to this project will be documented in this file.\n\nThe format is based on [Keep a Changelog](https://keepachangelog.com/en/1.1.0/),\nand this project adheres to [Semantic Versioning](https://semver.org/spec/v2.0.0.html).\n";

impl Default for ChangelogConfig {
    fn default() -> Self {
        ChangelogConfig {
            tag_pattern: String::new(),
            include_prereleases: false,
            filter_unconventional: true,
            include_merge_commits: false,
            protect_breaking_commits: false,
            // git-cliff's default parsers, case-insensitive because Conventional Commits item 15
            // says types are not case-sensitive (git-cliff's own regexes are).
            commit_parsers: vec![
                parser("(?i)^feat", "", "Features", false),
                parser("(?i)^fix", "", "Bug Fixes", false),
                parser("(?i)^doc", "", "Documentation", false),
                parser("(?i)^perf", "", "Performance", false),
                parser("(?i)^refactor", "", "Refactor", false),
                parser("(?i)^style", "", "Styling", false),
                parser("(?i)^test", "", "Testing", false),
                parser(r"(?i)^chore\(release\): prepare for", "", "", true),
                parser(r"(?i)^chore\(deps.*\)", "", "", true),
                parser(r"(?i)^chore\(pr\)", "", "", true),
                parser(r"(?i)^chore\(pull\)", "", "", true),
                parser("(?i)^chore|^ci", "", "Miscellaneous Tasks", false),
                parser("", ".*security", "Security", false),
                parser("(?i)^revert", "", "Revert", false),
                parser(".*", "", "Other", false),
            ],
            group_order: [
                "Features",
                "Bug Fixes",
                "Refactor",
                "Documentation",
                "Performance",
                "Styling",
                "Testing",
                "Miscellaneous Tasks",
                "Security",
                "Revert",
                "Other",
            ]
            .map(String::from)
            .to_vec(),
            issue_url: String::new(),
            commit_url: String::new(),
            contributors: true,
            header: KEEP_A_CHANGELOG_HEADER.into(),
            bump: BumpRules::default(),
            packages: BTreeMap::new(),
        }
    }
}

/// A parser with its regexes compiled.
#[derive(Debug, Clone)]
pub struct CompiledParser {
    pub message: Option<Regex>,
    pub body: Option<Regex>,
    pub group: String,
    pub skip: bool,
}

impl ChangelogConfig {
    /// Compile the parsers; a bad regex is reported with its key, e.g. `changelog.commit_parsers[2].message`.
    pub fn compile_parsers(&self) -> Result<Vec<CompiledParser>, Error> {
        let compile = |text: &str, key: String| -> Result<Option<Regex>, Error> {
            if text.is_empty() {
                return Ok(None);
            }
            regex::RegexBuilder::new(text)
                .size_limit(1 << 20)
                .build()
                .map(Some)
                .map_err(|e| Error::Invalid { field: key, message: format!("`{text}` is not a valid regular expression: {e}") })
        };
        self.commit_parsers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if !p.skip && p.group.is_empty() {
                    return Err(Error::Invalid {
                        field: format!("changelog.commit_parsers[{i}]"),
                        message: "set `group` or `skip = true`".into(),
                    });
                }
                Ok(CompiledParser {
                    message: compile(&p.message, format!("changelog.commit_parsers[{i}].message"))?,
                    body: compile(&p.body, format!("changelog.commit_parsers[{i}].body"))?,
                    group: p.group.clone(),
                    skip: p.skip,
                })
            })
            .collect()
    }

    /// The tag pattern and include paths for the whole repository or for one package.
    pub fn scope_for(&self, package: Option<&str>, tag_pattern_flag: Option<&str>) -> Result<(TagPattern, Vec<String>), Error> {
        let (mut pattern, paths) = match package {
            Some(name) => {
                let pkg = self.packages.get(name).cloned().unwrap_or_default();
                let pattern = if pkg.tag_pattern.is_empty() {
                    TagPattern::for_package(name)
                } else {
                    TagPattern::new(&pkg.tag_pattern).map_err(|e| rename(e, &format!("changelog.packages.{name}.tag_pattern")))?
                };
                (pattern, pkg.include_paths)
            }
            None if self.tag_pattern.is_empty() => (TagPattern::default_pattern(), Vec::new()),
            None => (TagPattern::new(&self.tag_pattern).map_err(|e| rename(e, "changelog.tag_pattern"))?, Vec::new()),
        };
        if let Some(flag) = tag_pattern_flag {
            pattern = TagPattern::new(flag).map_err(|e| rename(e, "--tag-pattern"))?;
        }
        Ok((pattern, paths))
    }
}

fn rename(e: Error, field: &str) -> Error {
    match e {
        Error::Invalid { message, .. } => Error::Invalid { field: field.into(), message },
        other => other,
    }
}
