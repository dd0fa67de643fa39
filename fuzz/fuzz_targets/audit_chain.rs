//! Tampering with a sealed audit chain: build a small genuine chain from arbitrary content,
//! apply arbitrary edits, removals, duplications, swaps and sequence changes, and check that
//! `verify_chain` never panics and calls the chain valid exactly when it is unchanged.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use chrono::{DateTime, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use signalbox_domain::audit::{verify_chain, AuditDraft, AuditEntry, GENESIS_HASH};

const MAX_ENTRIES: usize = 8;
const MAX_MUTATIONS: usize = 4;

/// A small JSON value for `before` / `after`.
#[derive(Arbitrary, Debug, Clone)]
enum SmallValue {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Array(Vec<i32>),
    Object(Vec<(String, i32)>),
}

impl SmallValue {
    fn to_json(&self) -> Value {
        match self {
            SmallValue::Null => Value::Null,
            SmallValue::Bool(b) => json!(b),
            SmallValue::Int(i) => json!(i),
            SmallValue::Str(s) => json!(s),
            SmallValue::Array(items) => json!(items),
            SmallValue::Object(pairs) => Value::Object(pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect()),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct DraftInput {
    actor: String,
    action: String,
    subject_kind: String,
    subject_id: String,
    before: Option<SmallValue>,
    after: Option<SmallValue>,
    reason: Option<String>,
    request_id: Option<String>,
    /// Seconds since the previous entry.
    gap: u16,
}

/// A new value for one field of an entry.
#[derive(Arbitrary, Debug)]
enum Field {
    At(String),
    Actor(String),
    Action(String),
    SubjectKind(String),
    SubjectId(String),
    Before(Option<SmallValue>),
    After(Option<SmallValue>),
    Reason(Option<String>),
    RequestId(Option<String>),
    PrevHash(String),
    /// Replace the link with another entry's hash (or the genesis when out of range).
    PrevHashOf(u8),
    Hash(String),
}

/// A new sequence number: near the old one, anything, or an extreme that arbitrary bytes
/// rarely spell out.
#[derive(Arbitrary, Debug)]
enum NewSeq {
    Offset(i8),
    Exact(i64),
    Max,
    Min,
    Zero,
}

impl NewSeq {
    fn apply(&self, old: i64) -> i64 {
        match self {
            NewSeq::Offset(d) => old.saturating_add(i64::from(*d)),
            NewSeq::Exact(v) => *v,
            NewSeq::Max => i64::MAX,
            NewSeq::Min => i64::MIN,
            NewSeq::Zero => 0,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    /// Change one field; with `rehash`, the forger also recomputes the entry's own hash.
    Edit {
        index: u8,
        field: Field,
        rehash: bool,
    },
    Remove {
        index: u8,
    },
    /// Insert a copy of entry `index` at position `to`.
    Duplicate {
        index: u8,
        to: u8,
    },
    /// Exchange the positions of two entries (lines moved in an export).
    Swap {
        a: u8,
        b: u8,
    },
    /// Give an entry another sequence number, optionally re-hashed.
    ChangeSeq {
        index: u8,
        seq: NewSeq,
        rehash: bool,
    },
    /// Exchange two entries' sequence numbers and then their positions (rows renumbered in a
    /// database and read back sorted by sequence).
    SwapSeqs {
        a: u8,
        b: u8,
    },
}

#[derive(Debug)]
struct Input {
    start: u32,
    drafts: Vec<DraftInput>,
    mutations: Vec<Mutation>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let start = u.arbitrary()?;
        let n = u.int_in_range(0..=MAX_ENTRIES)?;
        let drafts = (0..n).map(|_| u.arbitrary()).collect::<arbitrary::Result<_>>()?;
        let m = u.int_in_range(0..=MAX_MUTATIONS)?;
        let mutations = (0..m).map(|_| u.arbitrary()).collect::<arbitrary::Result<_>>()?;
        Ok(Input { start, drafts, mutations })
    }
}

fn seal_chain(input: &Input) -> Vec<AuditEntry> {
    // 2000-01-01 plus up to ~136 years: always a representable time.
    let mut at: DateTime<Utc> = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(i64::from(input.start));
    let mut out: Vec<AuditEntry> = Vec::with_capacity(input.drafts.len());
    for (i, d) in input.drafts.iter().enumerate() {
        at += chrono::Duration::seconds(i64::from(d.gap));
        let prev = out.last().map(|e| e.hash.clone()).unwrap_or_else(|| GENESIS_HASH.to_string());
        let draft = AuditDraft {
            actor: d.actor.clone(),
            action: d.action.clone(),
            subject_kind: d.subject_kind.clone(),
            subject_id: d.subject_id.clone(),
            before: d.before.as_ref().map(SmallValue::to_json),
            after: d.after.as_ref().map(SmallValue::to_json),
            reason: d.reason.clone(),
            request_id: d.request_id.clone(),
        };
        out.push(AuditEntry::seal(draft, i as i64 + 1, at, &prev));
    }
    out
}

fn apply(entries: &mut Vec<AuditEntry>, mutation: &Mutation) {
    let len = entries.len();
    if len == 0 {
        return;
    }
    let pick = |i: u8| usize::from(i) % len;
    match mutation {
        Mutation::Edit { index, field, rehash } => {
            let hashes: Vec<String> = entries.iter().map(|e| e.hash.clone()).collect();
            let e = &mut entries[pick(*index)];
            match field {
                Field::At(v) => e.at = v.clone(),
                Field::Actor(v) => e.actor = v.clone(),
                Field::Action(v) => e.action = v.clone(),
                Field::SubjectKind(v) => e.subject_kind = v.clone(),
                Field::SubjectId(v) => e.subject_id = v.clone(),
                Field::Before(v) => e.before = v.as_ref().map(SmallValue::to_json),
                Field::After(v) => e.after = v.as_ref().map(SmallValue::to_json),
                Field::Reason(v) => e.reason = v.clone(),
                Field::RequestId(v) => e.request_id = v.clone(),
                Field::PrevHash(v) => e.prev_hash = v.clone(),
                Field::PrevHashOf(j) => e.prev_hash = hashes.get(usize::from(*j)).cloned().unwrap_or_else(|| GENESIS_HASH.to_string()),
                Field::Hash(v) => e.hash = v.clone(),
            }
            if *rehash {
                e.hash = e.compute_hash();
            }
        }
        Mutation::Remove { index } => {
            entries.remove(pick(*index));
        }
        Mutation::Duplicate { index, to } => {
            let copy = entries[pick(*index)].clone();
            entries.insert(usize::from(*to) % (len + 1), copy);
        }
        Mutation::Swap { a, b } => entries.swap(pick(*a), pick(*b)),
        Mutation::ChangeSeq { index, seq, rehash } => {
            let e = &mut entries[pick(*index)];
            e.seq = seq.apply(e.seq);
            if *rehash {
                e.hash = e.compute_hash();
            }
        }
        Mutation::SwapSeqs { a, b } => {
            let (a, b) = (pick(*a), pick(*b));
            let (sa, sb) = (entries[a].seq, entries[b].seq);
            entries[a].seq = sb;
            entries[b].seq = sa;
            entries.swap(a, b);
        }
    }
}

/// The canonical JSON the audit hash is specified over (object keys sorted by UTF-16 code
/// units, no whitespace, serde_json's string and number forms), written independently of the
/// crate so the two can be compared.
fn reference_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key).unwrap());
                out.push(':');
                reference_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                reference_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

/// The body an entry's hash covers: every serialised field but `hash`.
fn reference_body(entry: &AuditEntry) -> String {
    let mut value = serde_json::to_value(entry).unwrap();
    value.as_object_mut().unwrap().remove("hash");
    let mut out = String::new();
    reference_canonical(&value, &mut out);
    out
}

/// Two chains are the same when they serialise the same: `Some(null)` and `None` are one value
/// in an export, and the hash covers the serialised form.
fn same(a: &[AuditEntry], b: &[AuditEntry]) -> bool {
    serde_json::to_value(a).unwrap() == serde_json::to_value(b).unwrap()
}

fuzz_target!(|input: Input| {
    let original = seal_chain(&input);
    let head_hash = original.last().map(|e| e.hash.clone());
    let head = original.last().map(|e| e.seq).zip(head_hash.as_deref());

    for e in &original {
        assert_eq!(e.canonical_body(), reference_body(e), "the hashed body is the canonical JSON of the entry");
    }

    let report = verify_chain(&original, head, true);
    assert!(report.is_valid(), "a freshly sealed chain must verify: {:?}", report.problems);
    assert_eq!(report.entries, original.len());

    let mut entries = original.clone();
    for mutation in &input.mutations {
        apply(&mut entries, mutation);
    }
    let report = verify_chain(&entries, head, true);
    let unchanged = same(&entries, &original);
    assert_eq!(
        report.is_valid(),
        unchanged,
        "valid must mean unchanged; problems: {:?}\nmutations: {:?}",
        report.problems,
        input.mutations
    );
});
