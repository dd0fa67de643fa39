//! The audit trail (SPEC C2): a hash chain over every mutation.
//!
//! Each entry's `hash` is SHA-256 over the canonical JSON (see [`crate::canonical`]) of all its
//! other fields, `prev_hash` included, so an entry commits to everything before it. The first
//! entry's `prev_hash` is [`GENESIS_HASH`]. [`verify_chain`] recomputes the chain and locates
//! edits, deletions, insertions and reorderings.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use utoipa::ToSchema;

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a mutation wants recorded. The store turns it into an [`AuditEntry`] by assigning the
/// sequence number, time and chain link inside the writing transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub actor: String,
    pub action: String,
    pub subject_kind: String,
    pub subject_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub reason: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub seq: i64,
    /// RFC 3339 UTC with microseconds; stored as this exact text so the hash never depends on a
    /// database's timestamp precision.
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject_kind: String,
    pub subject_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// [`AuditEntry::canonical_body`] without its chain position: the body is `head`, the JSON
/// string of `prev_hash`, `middle`, the decimal `seq`, then `tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalParts {
    pub head: String,
    pub middle: String,
    pub tail: String,
}

/// What ends the head of every canonical body, before the `prev_hash` literal.
pub const CANONICAL_HEAD_END: &str = ",\"prev_hash\":";

/// [`AuditEntry::canonical_image_parts`]: the canonical body's pieces with the images apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalImageParts {
    pub head_start: String,
    /// The canonical encoding of `after`, or `None` (`null` in the body).
    pub after: Option<String>,
    pub head_middle: String,
    /// The canonical encoding of `before`, or `None` (`null` in the body).
    pub before: Option<String>,
    pub middle: String,
    pub tail: String,
}

impl CanonicalParts {
    /// `prev_hash` as it appears in the body: a JSON string. Chain hashes are lowercase hex,
    /// which needs no escaping, so a sealer may also write `"` + hash + `"` itself.
    pub fn prev_hash_literal(prev_hash: &str) -> String {
        let mut out = String::with_capacity(prev_hash.len() + 2);
        crate::canonical::write_string(&mut out, prev_hash);
        out
    }
}

/// Formats a time the way audit entries store it.
pub fn format_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl AuditEntry {
    /// Seals a draft as the entry after `(prev_seq, prev_hash)`.
    pub fn seal(draft: AuditDraft, seq: i64, at: DateTime<Utc>, prev_hash: &str) -> AuditEntry {
        let mut entry = AuditEntry {
            seq,
            at: format_time(at),
            actor: draft.actor,
            action: draft.action,
            subject_kind: draft.subject_kind,
            subject_id: draft.subject_id,
            before: draft.before,
            after: draft.after,
            reason: draft.reason,
            request_id: draft.request_id,
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// The canonical encoding of everything but the hash itself: the canonical JSON of an
    /// object with these fields. Written field by field, in canonical key order, so hashing
    /// does not deep-copy `before` and `after`.
    pub fn canonical_body(&self) -> String {
        let parts = self.canonical_parts();
        let mut out = String::with_capacity(parts.head.len() + parts.middle.len() + parts.tail.len() + 96);
        out.push_str(&parts.head);
        out.push_str(&CanonicalParts::prev_hash_literal(&self.prev_hash));
        out.push_str(&parts.middle);
        out.push_str(&self.seq.to_string());
        out.push_str(&parts.tail);
        out
    }

    /// The canonical body cut around the two fields the chain position decides, `prev_hash`
    /// and `seq` (keys sort as `…, before, prev_hash, reason, request_id, seq, subject_id, …`),
    /// so a database can seal the entry under its own lock: `head + prev_hash literal + middle
    /// + seq + tail` is [`Self::canonical_body`].
    pub fn canonical_parts(&self) -> CanonicalParts {
        let images = self.canonical_image_parts();
        let after = images.after.as_deref().unwrap_or("null");
        let before = images.before.as_deref().unwrap_or("null");
        let mut head = String::with_capacity(images.head_start.len() + after.len() + images.head_middle.len() + before.len() + 16);
        head.push_str(&images.head_start);
        head.push_str(after);
        head.push_str(&images.head_middle);
        head.push_str(before);
        head.push_str(CANONICAL_HEAD_END);
        CanonicalParts { head, middle: images.middle, tail: images.tail }
    }

    /// [`Self::canonical_parts`] with the `after` and `before` images cut out of the head, each
    /// encoded once: `head` is `head_start + after + head_middle + before +`
    /// [`CANONICAL_HEAD_END`], an absent image reading `null`. A store that keeps the images as
    /// columns of their own sends them once and lets the database rebuild the head.
    pub fn canonical_image_parts(&self) -> CanonicalImageParts {
        use crate::canonical::{to_canonical_string, write_string};
        let opt_str = |out: &mut String, v: &Option<String>| match v {
            Some(s) => write_string(out, s),
            None => out.push_str("null"),
        };
        let mut head_start = String::with_capacity(128);
        head_start.push_str("{\"action\":");
        write_string(&mut head_start, &self.action);
        head_start.push_str(",\"actor\":");
        write_string(&mut head_start, &self.actor);
        head_start.push_str(",\"after\":");
        let mut head_middle = String::with_capacity(64);
        head_middle.push_str(",\"at\":");
        write_string(&mut head_middle, &self.at);
        head_middle.push_str(",\"before\":");
        let mut middle = String::with_capacity(96);
        middle.push_str(",\"reason\":");
        opt_str(&mut middle, &self.reason);
        middle.push_str(",\"request_id\":");
        opt_str(&mut middle, &self.request_id);
        middle.push_str(",\"seq\":");
        let mut tail = String::with_capacity(96);
        tail.push_str(",\"subject_id\":");
        write_string(&mut tail, &self.subject_id);
        tail.push_str(",\"subject_kind\":");
        write_string(&mut tail, &self.subject_kind);
        tail.push('}');
        CanonicalImageParts {
            head_start,
            after: self.after.as_ref().map(to_canonical_string),
            head_middle,
            before: self.before.as_ref().map(to_canonical_string),
            middle,
            tail,
        }
    }

    pub fn compute_hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_body().as_bytes()))
    }
}

/// One thing wrong with a chain, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ChainProblem {
    /// The entry's content no longer matches its hash, or its hash no longer matches the link
    /// the next entry recorded.
    Edited { seq: i64, detail: String },
    /// Entries with these sequence numbers are missing.
    Deleted { from_seq: i64, to_seq: i64 },
    /// An entry that is not part of the original chain.
    Inserted { seq: i64, position: usize },
    /// Entries are out of their original order.
    Reordered { seq: i64, other_seq: i64 },
    /// The chain ends before the recorded head: trailing entries were removed.
    Truncated { last_seq: i64, head_seq: i64 },
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainProblem::Edited { seq, detail } => write!(f, "entry {seq} was edited: {detail}"),
            ChainProblem::Deleted { from_seq, to_seq } if from_seq == to_seq => {
                write!(f, "entry {from_seq} was deleted")
            }
            ChainProblem::Deleted { from_seq, to_seq } => {
                write!(f, "entries {from_seq}..={to_seq} were deleted")
            }
            ChainProblem::Inserted { seq, position } => {
                write!(f, "an entry claiming sequence {seq} was inserted at position {position}: it is not linked into the chain")
            }
            ChainProblem::Reordered { seq, other_seq } => {
                write!(f, "entries {seq} and {other_seq} were reordered")
            }
            ChainProblem::Truncated { last_seq, head_seq } => {
                write!(f, "the chain ends at entry {last_seq} but the recorded head is entry {head_seq}: trailing entries were deleted")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    pub entries: usize,
    pub last_seq: Option<i64>,
    pub last_hash: Option<String>,
    pub problems: Vec<ChainProblem>,
}

impl ChainReport {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies a chain given in the order it was read (by sequence from a database, by line from
/// an export). `head` is the `(seq, hash)` the store recorded as the latest, when known; it
/// catches removal or addition of entries at the end, which the links alone cannot show.
///
/// The genuine chain is rebuilt by following links (`prev_hash` → `hash`) from the genesis,
/// independent of the physical order; then:
/// - an entry whose content no longer matches its hash was **edited**;
/// - a break in the links with a gap in sequence numbers means entries were **deleted**;
///   without a gap, the entry before the break was edited and re-hashed;
/// - an entry the links never reach was **inserted**;
/// - linked entries read out of link order were **reordered**.
pub fn verify_chain(entries: &[AuditEntry], head: Option<(i64, &str)>, from_genesis: bool) -> ChainReport {
    let n = entries.len();
    let mut problems = Vec::new();
    let mut seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let mut content_ok: Vec<bool> = entries.iter().map(|e| e.compute_hash() == e.hash).collect();

    // Rows that exchanged sequence numbers (a reordering inside a database, where rows are read
    // back sorted by sequence) each validate once given the other's number.
    let mut i = 0;
    while i + 1 < n {
        if !content_ok[i] && !content_ok[i + 1] {
            let mut a = entries[i].clone();
            let mut b = entries[i + 1].clone();
            std::mem::swap(&mut a.seq, &mut b.seq);
            if a.compute_hash() == a.hash && b.compute_hash() == b.hash {
                problems.push(ChainProblem::Reordered { seq: entries[i].seq, other_seq: entries[i + 1].seq });
                seqs.swap(i, i + 1);
                content_ok[i] = true;
                content_ok[i + 1] = true;
                i += 2;
                continue;
            }
        }
        i += 1;
    }

    let mut by_prev: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        by_prev.entry(e.prev_hash.as_str()).or_default().push(i);
    }
    let has_successor = |i: usize| by_prev.contains_key(entries[i].hash.as_str());

    // A partial export (`from_genesis == false`) may start mid-chain: its first link is trusted.
    let (start_link, mut expected_seq) = match entries.first() {
        Some(first) if !from_genesis => (first.prev_hash.clone(), first.seq),
        _ => (GENESIS_HASH.to_string(), 1),
    };

    let mut visited = vec![false; n];
    let mut chain: Vec<usize> = Vec::with_capacity(n);
    let mut link = start_link;
    loop {
        let candidates: Vec<usize> =
            by_prev.get(link.as_str()).map(|v| v.iter().copied().filter(|i| !visited[*i]).collect()).unwrap_or_default();
        // Prefer the candidate the chain continues from; a forged entry sharing the link
        // usually has nothing after it.
        let next = candidates
            .iter()
            .copied()
            .find(|i| has_successor(*i) && content_ok[*i])
            .or_else(|| candidates.iter().copied().find(|i| content_ok[*i]))
            .or_else(|| candidates.first().copied());
        let next = match next {
            Some(i) => i,
            None => {
                // The links break here. Resume at the first unvisited entry after the last
                // linked one, in reading order.
                let after = chain.last().map(|i| i + 1).unwrap_or(0);
                let resume = (after..n).chain(0..after).find(|i| !visited[*i]);
                let Some(resume) = resume else { break };
                let last_seq = chain.last().map(|i| seqs[*i]).unwrap_or(expected_seq.saturating_sub(1));
                // The recorded head vouches for the last linked entry: nothing genuine follows it,
                // so an unlinked entry after it is a forgery, not a sign of an edit or deletion.
                let head_is_last = chain.last().is_some_and(|&l| head.is_some_and(|(s, h)| s == seqs[l] && h == entries[l].hash));
                if head_is_last {
                    visited[resume] = true;
                    problems.push(ChainProblem::Inserted { seq: seqs[resume], position: resume });
                    continue;
                }
                if seqs[resume] > last_seq.saturating_add(1) {
                    problems.push(ChainProblem::Deleted { from_seq: last_seq.saturating_add(1), to_seq: seqs[resume].saturating_sub(1) });
                } else if let Some(&last) = chain.last() {
                    if seqs[resume] == last_seq.saturating_add(1) {
                        problems.push(ChainProblem::Edited {
                            seq: last_seq,
                            detail: format!("entry {} recorded a different hash for it", seqs[resume]),
                        });
                    } else {
                        // Numbered at or below what we already hold: not part of the chain.
                        visited[resume] = true;
                        problems.push(ChainProblem::Inserted { seq: seqs[resume], position: resume });
                        let _ = last;
                        continue;
                    }
                }
                resume
            }
        };
        visited[next] = true;
        if !content_ok[next] {
            problems.push(ChainProblem::Edited { seq: seqs[next], detail: "its content does not match its hash".into() });
        } else if seqs[next] != expected_seq && chain.last().is_some_and(|l| seqs[*l].saturating_add(1) != seqs[next]) {
            let already =
                problems.iter().any(|p| matches!(p, ChainProblem::Deleted { to_seq, .. } if to_seq.saturating_add(1) == seqs[next]));
            if !already {
                problems
                    .push(ChainProblem::Edited { seq: seqs[next], detail: "its sequence number does not follow its predecessor".into() });
            }
        }
        expected_seq = seqs[next].saturating_add(1);
        chain.push(next);
        link = entries[next].hash.clone();
    }

    for (i, seen) in visited.iter().enumerate() {
        if !seen {
            problems.push(ChainProblem::Inserted { seq: seqs[i], position: i });
        }
    }

    // Linked entries read out of link order.
    for pair in chain.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b < a {
            let (sa, sb) = (seqs[a], seqs[b]);
            let known = problems.iter().any(|p| matches!(p, ChainProblem::Reordered { seq, other_seq } if (*seq == sa && *other_seq == sb) || (*seq == sb && *other_seq == sa)));
            if !known {
                problems.push(ChainProblem::Reordered { seq: sa, other_seq: sb });
            }
        }
    }

    let last = chain.last().map(|i| &entries[*i]);
    match (head, last) {
        (Some((head_seq, head_hash)), Some(last)) => {
            if head_seq > last.seq {
                problems.push(ChainProblem::Truncated { last_seq: last.seq, head_seq });
            } else if head_seq < last.seq {
                for (pos, e) in chain.iter().map(|i| (*i, &entries[*i])).filter(|(_, e)| e.seq > head_seq) {
                    problems.push(ChainProblem::Inserted { seq: e.seq, position: pos });
                }
            } else if head_hash != last.hash && problems.is_empty() {
                problems.push(ChainProblem::Edited { seq: last.seq, detail: "it does not match the recorded chain head".into() });
            }
        }
        (Some((head_seq, _)), None) if head_seq > 0 => {
            problems.push(ChainProblem::Truncated { last_seq: 0, head_seq });
        }
        _ => {}
    }

    ChainReport { entries: n, last_seq: last.map(|e| e.seq), last_hash: last.map(|e| e.hash.clone()), problems }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn draft(n: usize) -> AuditDraft {
        AuditDraft {
            actor: format!("user{}", n % 3),
            action: "release.update".into(),
            subject_kind: "release".into(),
            subject_id: format!("rel_{n}"),
            before: Some(json!({"n": n})),
            after: Some(json!({"n": n + 1, "nested": {"b": 1, "a": [1, 2]}})),
            reason: n.is_multiple_of(2).then(|| "because".to_string()),
            request_id: Some(format!("req-{n}")),
        }
    }

    pub(crate) fn chain(n: usize) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| e.hash.clone()).unwrap_or_else(|| GENESIS_HASH.into());
            let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(i as i64);
            out.push(AuditEntry::seal(draft(i), i as i64 + 1, at, &prev));
        }
        out
    }

    fn head(c: &[AuditEntry]) -> Option<(i64, &str)> {
        c.last().map(|e| (e.seq, e.hash.as_str()))
    }

    #[test]
    fn the_field_by_field_encoding_is_the_canonical_json_of_the_entry() {
        for e in chain(6) {
            let reference = crate::canonical::to_canonical_string(&json!({
                "seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action,
                "subject_kind": e.subject_kind, "subject_id": e.subject_id,
                "before": e.before, "after": e.after, "reason": e.reason,
                "request_id": e.request_id, "prev_hash": e.prev_hash,
            }));
            assert_eq!(e.canonical_body(), reference);
        }
    }

    #[test]
    fn extreme_sequence_numbers_do_not_overflow() {
        for seq in [i64::MAX, i64::MIN, 0] {
            let mut c = chain(3);
            c[1].seq = seq;
            assert!(!verify_chain(&c, None, true).is_valid());
        }
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let c = chain(10);
        let report = verify_chain(&c, head(&c), true);
        assert!(report.is_valid(), "{:?}", report.problems);
        assert_eq!(report.last_seq, Some(10));
        assert!(verify_chain(&[], None, true).is_valid());
    }

    #[test]
    fn an_edited_entry_is_located() {
        let mut c = chain(10);
        let h = c[9].hash.clone();
        c[4].actor = "mallory".into();
        let report = verify_chain(&c, Some((10, &h)), true);
        assert_eq!(report.problems, vec![ChainProblem::Edited { seq: 5, detail: "its content does not match its hash".into() }]);
    }

    #[test]
    fn an_edited_and_rehashed_entry_is_located_by_the_broken_link() {
        let mut c = chain(10);
        let h = c[9].hash.clone();
        c[4].actor = "mallory".into();
        c[4].hash = c[4].compute_hash();
        let report = verify_chain(&c, Some((10, &h)), true);
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(matches!(&report.problems[0], ChainProblem::Edited { seq: 5, .. }));
    }

    #[test]
    fn a_deleted_entry_is_located() {
        let mut c = chain(10);
        let h = c[9].hash.clone();
        c.remove(4);
        let report = verify_chain(&c, Some((10, &h)), true);
        assert_eq!(report.problems, vec![ChainProblem::Deleted { from_seq: 5, to_seq: 5 }]);
    }

    #[test]
    fn deleting_the_tail_is_caught_by_the_head() {
        let mut c = chain(10);
        let h = c[9].hash.clone();
        c.truncate(8);
        let report = verify_chain(&c, Some((10, &h)), true);
        assert_eq!(report.problems, vec![ChainProblem::Truncated { last_seq: 8, head_seq: 10 }]);
    }

    #[test]
    fn an_inserted_entry_is_located() {
        let mut c = chain(10);
        let h = c[9].hash.clone();
        // A forger writes a well-formed entry claiming to follow entry 5.
        let forged = AuditEntry::seal(draft(99), 6, Utc::now(), &c[4].hash);
        c.insert(5, forged);
        let report = verify_chain(&c, Some((10, &h)), true);
        assert_eq!(report.problems, vec![ChainProblem::Inserted { seq: 6, position: 5 }], "{:?}", report.problems);
    }

    #[test]
    fn an_unlinked_entry_after_the_head_is_an_insertion_not_an_edit() {
        for seq in [11, 13] {
            let mut c = chain(10);
            let h = c[9].hash.clone();
            c.push(AuditEntry::seal(draft(77), seq, Utc::now(), &"f".repeat(64)));
            let report = verify_chain(&c, Some((10, &h)), true);
            assert_eq!(report.problems, vec![ChainProblem::Inserted { seq, position: 10 }]);
        }
    }

    #[test]
    fn swapped_sequence_numbers_are_reported_as_reordering() {
        let mut c = chain(10);
        let h = c[9].hash.clone();
        // In a database: the two rows exchange their sequence numbers and are read back sorted.
        let (a, b) = (c[4].seq, c[5].seq);
        c[4].seq = b;
        c[5].seq = a;
        c.swap(4, 5);
        let report = verify_chain(&c, Some((10, &h)), true);
        assert_eq!(report.problems, vec![ChainProblem::Reordered { seq: 5, other_seq: 6 }], "{:?}", report.problems);
    }

    #[test]
    fn moved_lines_in_an_export_are_reported_as_reordering() {
        let mut c = chain(10);
        let h = c[9].hash.clone();
        c.swap(4, 5); // lines 5 and 6 exchanged, their contents intact
        let report = verify_chain(&c, Some((10, &h)), true);
        assert!(!report.is_valid());
        assert!(report.problems.iter().all(|p| matches!(p, ChainProblem::Reordered { .. })), "{:?}", report.problems);
    }
}

#[cfg(test)]
mod properties {
    use super::tests_support::chain;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The parts a database seals with are exactly the body the verifier hashes.
        #[test]
        fn canonical_parts_rebuild_the_body(
            actor in ".{0,12}", action in "[a-z.]{1,12}", reason in proptest::option::of(".{0,20}"),
            seq in 1i64..i64::MAX, prev in "[0-9a-f]{64}", after in proptest::option::of(any::<i64>()),
        ) {
            let draft = AuditDraft {
                actor, action, subject_kind: "release".into(), subject_id: "rel_1\"\\".into(), before: None,
                after: after.map(|n| serde_json::json!({"n": n, "s": "\u{1F600}\n"})), reason, request_id: Some("req".into()),
            };
            let entry = AuditEntry::seal(draft, seq, chrono::Utc::now(), &prev);
            let parts = entry.canonical_parts();
            let rebuilt = format!("{}\"{}\"{}{}{}", parts.head, prev, parts.middle, seq, parts.tail);
            prop_assert_eq!(&rebuilt, &entry.canonical_body());
            prop_assert_eq!(hex::encode(Sha256::digest(rebuilt.as_bytes())), entry.hash);
        }

        /// The image parts, put together the way PostgreSQL's seal does (migration 0005), are
        /// exactly the body the verifier hashes, and each image is the entry's canonical image.
        #[test]
        fn image_parts_rebuild_the_body_the_way_the_database_does(
            actor in ".{0,12}", at_micros in 0i64..4_000_000_000_000_000, seq in 1i64..i64::MAX, prev in "[0-9a-f]{64}",
            before in proptest::option::of((any::<i64>(), ".{0,16}")), after in proptest::option::of((any::<i64>(), ".{0,16}")),
        ) {
            let image = |(n, s): (i64, String)| serde_json::json!({"n": n, "s": s, "z": [null, true, 1.5]});
            let draft = AuditDraft {
                actor, action: "release.update".into(), subject_kind: "release".into(), subject_id: "rel_1".into(),
                before: before.map(image), after: after.map(image), reason: None, request_id: Some("req\"1".into()),
            };
            let at = DateTime::<Utc>::from_timestamp_micros(at_micros).expect("in range");
            let entry = AuditEntry::seal(draft, seq, at, &prev);
            let parts = entry.canonical_image_parts();
            let rebuilt = format!(
                "{}{}{}{}{}\"{}\"{}{}{}",
                parts.head_start,
                parts.after.as_deref().unwrap_or("null"),
                parts.head_middle,
                parts.before.as_deref().unwrap_or("null"),
                CANONICAL_HEAD_END,
                prev,
                parts.middle,
                seq,
                parts.tail
            );
            prop_assert_eq!(&rebuilt, &entry.canonical_body());
            prop_assert_eq!(hex::encode(Sha256::digest(rebuilt.as_bytes())), entry.hash.clone());
            prop_assert_eq!(parts.after, entry.after.as_ref().map(crate::canonical::to_canonical_string));
            prop_assert_eq!(parts.before, entry.before.as_ref().map(crate::canonical::to_canonical_string));
        }

        /// Any single edit, deletion, insertion or swap anywhere in a chain is detected.
        #[test]
        fn any_single_tampering_is_detected(len in 2usize..30, at in 0usize..30, how in 0u8..4) {
            let mut c = chain(len);
            let head_seq = c.last().unwrap().seq;
            let head_hash = c.last().unwrap().hash.clone();
            let at = at % len;
            match how {
                0 => c[at].action = "forged".into(),
                1 => { c.remove(at); }
                2 => {
                    let prev = if at == 0 { GENESIS_HASH.to_string() } else { c[at - 1].hash.clone() };
                    let forged = AuditEntry::seal(
                        AuditDraft { actor: "x".into(), action: "forged".into(), subject_kind: "k".into(), subject_id: "i".into(), before: None, after: None, reason: None, request_id: None },
                        at as i64 + 1, chrono::Utc::now(), &prev);
                    c.insert(at, forged);
                }
                _ => { let j = if at + 1 < len { at + 1 } else { at - 1 }; c.swap(at, j); }
            }
            let report = verify_chain(&c, Some((head_seq, &head_hash)), true);
            prop_assert!(!report.is_valid());
        }
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    pub fn chain(n: usize) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| e.hash.clone()).unwrap_or_else(|| GENESIS_HASH.into());
            let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(i as i64);
            let draft = AuditDraft {
                actor: "a".into(),
                action: "x.update".into(),
                subject_kind: "x".into(),
                subject_id: format!("x{i}"),
                before: None,
                after: Some(json!({ "i": i })),
                reason: None,
                request_id: None,
            };
            out.push(AuditEntry::seal(draft, i as i64 + 1, at, &prev));
        }
        out
    }
}
