//! Commit message parsing: Conventional Commits 1.0.0 headers, bodies and footers
//! (<https://www.conventionalcommits.org/en/v1.0.0/>, items 1–16 of the specification), plus the
//! facts a changelog needs from any message: issue references, co-authors and reverts.
//!
//! Every message parses: a message whose header is not conventional still yields its subject,
//! body and git-trailer style footers, with [`ParsedMessage::conventional`] set to `None`.

use serde::Serialize;

/// Messages longer than this are cut before parsing (a megabyte-sized message must not cost
/// more than a bounded amount of work; the header and usual footers fit easily).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A parsed commit message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParsedMessage {
    /// The first line, without its line ending.
    pub subject: String,
    /// The Conventional Commits header, if the subject is one.
    pub conventional: Option<ConventionalHeader>,
    /// Free-form text between the header and the footers (paragraphs kept), or `None`.
    pub body: Option<String>,
    /// Footers (spec items 8–10), in message order.
    pub footers: Vec<Footer>,
}

/// `<type>[(scope)][!]: <description>` (spec items 1, 4, 5, 13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConventionalHeader {
    /// The type as written (`FEAT` stays `FEAT`); compare with [`ConventionalHeader::kind`].
    pub r#type: String,
    pub scope: Option<String>,
    /// `!` immediately before the colon (item 13).
    pub bang: bool,
    pub description: String,
}

impl ConventionalHeader {
    /// The type in lower case: units are not case-sensitive (item 15).
    pub fn kind(&self) -> String {
        self.r#type.to_ascii_lowercase()
    }
}

/// The separator between a footer token and its value (item 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Separator {
    /// `token: value`
    ColonSpace,
    /// `token #value` (the spec's own `Refs #133`).
    SpaceHash,
}

/// One footer: `token separator value`; the value may span lines (item 10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Footer {
    pub token: String,
    pub separator: Separator,
    pub value: String,
}

impl Footer {
    /// `BREAKING CHANGE` or its synonym `BREAKING-CHANGE`, upper case only (items 12, 15, 16).
    pub fn is_breaking_change(&self) -> bool {
        self.separator == Separator::ColonSpace && (self.token == "BREAKING CHANGE" || self.token == "BREAKING-CHANGE")
    }

    fn token_is(&self, name: &str) -> bool {
        self.token.eq_ignore_ascii_case(name)
    }
}

/// An issue referenced by a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssueRef {
    /// The number without `#`.
    pub id: String,
    /// Named by a closing footer (`Closes`, `Fixes`, `Resolves`).
    pub closes: bool,
}

/// `Name <email>` from a `Co-authored-by` footer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    pub name: String,
    pub email: String,
}

impl ParsedMessage {
    /// Whether the commit declares a breaking change, by `!` or by footer (item 11).
    pub fn breaking(&self) -> bool {
        self.conventional.as_ref().is_some_and(|h| h.bang) || self.footers.iter().any(Footer::is_breaking_change)
    }

    /// The text that describes the break: the `BREAKING CHANGE` footer value, else the
    /// description of a `!` header (item 13).
    pub fn breaking_description(&self) -> Option<String> {
        if let Some(f) = self.footers.iter().find(|f| f.is_breaking_change()) {
            return Some(f.value.clone());
        }
        match &self.conventional {
            Some(h) if h.bang => Some(h.description.clone()),
            _ => None,
        }
    }

    /// `#123` anywhere in the subject and body, plus `Refs`/`Closes`/`Fixes`/`Resolves`/`Issue`
    /// footers (both separators). Deduplicated, in order of appearance; closing wins.
    pub fn issues(&self) -> Vec<IssueRef> {
        let mut out: Vec<IssueRef> = Vec::new();
        let mut add = |id: &str, closes: bool| {
            if let Some(existing) = out.iter_mut().find(|r| r.id == id) {
                existing.closes |= closes;
            } else {
                out.push(IssueRef { id: id.to_string(), closes });
            }
        };
        for id in hash_numbers(&self.subject) {
            add(id, false);
        }
        if let Some(body) = &self.body {
            for id in hash_numbers(body) {
                add(id, false);
            }
        }
        for f in &self.footers {
            let closes =
                ["closes", "close", "closed", "fixes", "fix", "fixed", "resolves", "resolve", "resolved"].iter().any(|t| f.token_is(t));
            let refs = closes || ["refs", "ref", "references", "issue", "issues", "see"].iter().any(|t| f.token_is(t));
            if !refs {
                continue;
            }
            match f.separator {
                Separator::SpaceHash => {
                    let digits: String = f.value.chars().take_while(char::is_ascii_digit).collect();
                    if !digits.is_empty() {
                        add(&digits, closes);
                    }
                }
                Separator::ColonSpace => {
                    for id in hash_numbers(&f.value) {
                        add(id, closes);
                    }
                }
            }
        }
        out
    }

    /// People named in `Co-authored-by` footers.
    pub fn co_authors(&self) -> Vec<Person> {
        self.footers
            .iter()
            .filter(|f| f.token_is("Co-authored-by") && f.separator == Separator::ColonSpace)
            .filter_map(|f| parse_person(&f.value))
            .collect()
    }

    /// Cheap pre-check for [`ParsedMessage::reverted_ids`].
    pub fn reverts_something(&self) -> bool {
        self.body.as_deref().is_some_and(|b| b.contains("This reverts commit "))
            || self.footers.iter().any(|f| f.value.contains("This reverts commit "))
            || self.conventional.as_ref().is_some_and(|h| h.r#type.eq_ignore_ascii_case("revert"))
    }

    /// Object ids (full or abbreviated, lower-case hex of 7–64 digits) this commit reverts:
    /// git's `This reverts commit <id>.` line, and the spec's suggested `revert:` type with a
    /// `Refs: <id>, <id>` footer.
    pub fn reverted_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        if let Some(body) = &self.body {
            texts.push(body);
        }
        for f in &self.footers {
            texts.push(&f.value);
        }
        for text in texts {
            let mut rest = text;
            while let Some(pos) = rest.find("This reverts commit ") {
                rest = &rest[pos + "This reverts commit ".len()..];
                let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
                if (7..=64).contains(&hex.len()) {
                    ids.push(hex.to_ascii_lowercase());
                }
            }
        }
        let is_revert_type = self.conventional.as_ref().is_some_and(|h| h.kind() == "revert");
        if is_revert_type {
            for f in self.footers.iter().filter(|f| f.token_is("Refs")) {
                for word in f.value.split(|c: char| c == ',' || c.is_whitespace()) {
                    if (7..=64).contains(&word.len()) && word.chars().all(|c| c.is_ascii_hexdigit()) {
                        ids.push(word.to_ascii_lowercase());
                    }
                }
            }
        }
        ids.dedup();
        ids
    }

    /// The message rebuilt from its parts, in the canonical layout (header, blank line, body,
    /// blank line, footers). Parsing the rendering gives back the same [`ParsedMessage`].
    pub fn render(&self) -> String {
        let mut out = match &self.conventional {
            Some(h) => {
                let mut s = h.r#type.clone();
                if let Some(scope) = &h.scope {
                    s.push('(');
                    s.push_str(scope);
                    s.push(')');
                }
                if h.bang {
                    s.push('!');
                }
                s.push_str(": ");
                s.push_str(&h.description);
                s
            }
            None => self.subject.clone(),
        };
        if let Some(body) = &self.body {
            out.push_str("\n\n");
            out.push_str(body);
        }
        if !self.footers.is_empty() {
            out.push_str("\n\n");
            let rendered: Vec<String> = self
                .footers
                .iter()
                .map(|f| match f.separator {
                    Separator::ColonSpace => format!("{}: {}", f.token, f.value),
                    Separator::SpaceHash => format!("{} #{}", f.token, f.value),
                })
                .collect();
            out.push_str(&rendered.join("\n"));
        }
        out
    }
}

/// Parse any commit message. Never fails: non-conventional messages keep `conventional: None`.
pub fn parse(message: &str) -> ParsedMessage {
    let message = truncate_on_char_boundary(message, MAX_MESSAGE_BYTES);
    let mut lines: Vec<&str> = message.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    // Leading blank lines are not part of the subject (git itself strips them).
    while lines.first().is_some_and(|l| l.trim().is_empty()) {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let subject = lines.first().copied().unwrap_or("").to_string();
    let conventional = parse_header(&subject);
    let rest: &[&str] = if lines.len() > 1 { &lines[1..] } else { &[] };
    // The body starts after the blank line that follows the header (item 6); tolerate its absence.
    let start = rest.iter().position(|l| !l.trim().is_empty()).unwrap_or(rest.len());
    let rest = &rest[start..];
    let footer_start = find_footer_start(rest);
    let body_lines = &rest[..footer_start];
    let body = {
        let mut end = body_lines.len();
        while end > 0 && body_lines[end - 1].trim().is_empty() {
            end -= 1;
        }
        if end == 0 {
            None
        } else {
            Some(body_lines[..end].join("\n"))
        }
    };
    let footers = parse_footers(&rest[footer_start..]);
    ParsedMessage { subject, conventional, body, footers }
}

/// `<type>[(scope)][!]: <description>`; `None` if the line is not such a header.
pub fn parse_header(line: &str) -> Option<ConventionalHeader> {
    let bytes = line.as_bytes();
    let mut i = 0;
    // type: a noun; letters first, then letters, digits, `-` or `_` (no spaces, no punctuation,
    // so `Merge branch …` and `Revert "…"` are not headers).
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-' || bytes[i] == b'_') {
        i += 1;
    }
    if i == 0 || !bytes[0].is_ascii_alphabetic() {
        return None;
    }
    let r#type = &line[..i];
    let mut scope = None;
    if bytes.get(i) == Some(&b'(') {
        let close = line[i + 1..].find(')')? + i + 1;
        let inner = &line[i + 1..close];
        if inner.trim().is_empty() || inner.contains('(') {
            return None;
        }
        scope = Some(inner.to_string());
        i = close + 1;
    }
    let bang = bytes.get(i) == Some(&b'!');
    if bang {
        i += 1;
    }
    // The terminal colon and space are required (item 1); the description follows at once (item 5).
    if bytes.get(i) != Some(&b':') || bytes.get(i + 1) != Some(&b' ') {
        return None;
    }
    let description = line[i + 2..].trim();
    if description.is_empty() {
        return None;
    }
    Some(ConventionalHeader { r#type: r#type.to_string(), scope, bang, description: description.to_string() })
}

/// If `line` starts a footer, its token, separator and the value's first line (item 8, 9).
pub fn footer_start(line: &str) -> Option<(&str, Separator, &str)> {
    for breaking in ["BREAKING CHANGE", "BREAKING-CHANGE"] {
        if let Some(rest) = line.strip_prefix(breaking) {
            if let Some(value) = rest.strip_prefix(": ") {
                return Some((breaking, Separator::ColonSpace, value));
            }
        }
    }
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-') {
        i += 1;
    }
    if i == 0 || !bytes[0].is_ascii_alphanumeric() {
        return None;
    }
    let token = &line[..i];
    let rest = &line[i..];
    if let Some(value) = rest.strip_prefix(": ") {
        return Some((token, Separator::ColonSpace, value));
    }
    if let Some(value) = rest.strip_prefix(" #") {
        if !value.is_empty() && !value.starts_with(char::is_whitespace) {
            return Some((token, Separator::SpaceHash, value));
        }
    }
    None
}

/// Where the footer block begins in `rest` (the lines after the header and its blank line).
///
/// The footer block is the longest run of trailing paragraphs that each start with a footer
/// line, as git trailers are. A `BREAKING CHANGE:` paragraph anywhere after the first starts the
/// footer block even if prose paragraphs follow it, because item 10 lets its value span lines and
/// losing a breaking change is worse than a shorter body.
fn find_footer_start(rest: &[&str]) -> usize {
    let paragraph_starts: Vec<usize> =
        (0..rest.len()).filter(|&i| !rest[i].trim().is_empty() && (i == 0 || rest[i - 1].trim().is_empty())).collect();
    let mut start = rest.len();
    for &p in paragraph_starts.iter().rev() {
        if footer_start(rest[p]).is_some() {
            start = p;
        } else {
            break;
        }
    }
    if let Some(&p) = paragraph_starts.iter().find(|&&p| p < start && footer_start(rest[p]).is_some_and(|(t, _, _)| is_breaking_token(t))) {
        start = p;
    }
    start
}

fn is_breaking_token(token: &str) -> bool {
    token == "BREAKING CHANGE" || token == "BREAKING-CHANGE"
}

fn parse_footers(lines: &[&str]) -> Vec<Footer> {
    let mut footers: Vec<Footer> = Vec::new();
    for line in lines {
        if let Some((token, separator, value)) = footer_start(line) {
            footers.push(Footer { token: token.to_string(), separator, value: value.to_string() });
        } else if let Some(last) = footers.last_mut() {
            // A value continues until the next token/separator pair (item 10).
            last.value.push('\n');
            last.value.push_str(line);
        }
    }
    for f in &mut footers {
        let trimmed = f.value.trim_end().len();
        f.value.truncate(trimmed);
    }
    footers
}

fn hash_numbers(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices('#').filter_map(move |(pos, _)| {
        let before_ok = pos == 0 || !text.as_bytes()[pos - 1].is_ascii_alphanumeric();
        let digits = &text[pos + 1..];
        let len = digits.bytes().take_while(u8::is_ascii_digit).count();
        (before_ok && len > 0 && len <= 12).then(|| &digits[..len])
    })
}

fn parse_person(value: &str) -> Option<Person> {
    let open = value.find('<')?;
    let close = value[open..].find('>')? + open;
    let name = value[..open].trim();
    let email = value[open + 1..close].trim();
    (!email.is_empty()).then(|| Person { name: name.to_string(), email: email.to_string() })
}

fn truncate_on_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The part of a raw message that rules look at (see [`MAX_MESSAGE_BYTES`]).
pub fn truncate_message(message: &str) -> &str {
    truncate_on_char_boundary(message, MAX_MESSAGE_BYTES)
}
