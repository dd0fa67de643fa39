//! Conventional Commits 1.0.0: the specification's examples as data, its numbered rules, and
//! property tests (parse ∘ render round-trips, no panic on any input).

use proptest::prelude::*;
use signalbox_versioning::message::{parse, parse_header, Separator};

struct Case {
    message: &'static str,
    kind: Option<&'static str>,
    scope: Option<&'static str>,
    breaking: bool,
    description: &'static str,
    footers: &'static [&'static str],
    body_contains: Option<&'static str>,
}

/// The examples section of the specification, in order.
const SPEC_EXAMPLES: &[Case] = &[
    Case {
        message: "feat: allow provided config object to extend other configs\n\nBREAKING CHANGE: `extends` key in config file is now used for extending other config files\n",
        kind: Some("feat"),
        scope: None,
        breaking: true,
        description: "allow provided config object to extend other configs",
        footers: &["BREAKING CHANGE"],
        body_contains: None,
    },
    Case {
        message: "feat!: send an email to the customer when a product is shipped\n",
        kind: Some("feat"),
        scope: None,
        breaking: true,
        description: "send an email to the customer when a product is shipped",
        footers: &[],
        body_contains: None,
    },
    Case {
        message: "feat(api)!: send an email to the customer when a product is shipped\n",
        kind: Some("feat"),
        scope: Some("api"),
        breaking: true,
        description: "send an email to the customer when a product is shipped",
        footers: &[],
        body_contains: None,
    },
    Case {
        message: "chore!: drop support for Node 6\n\nBREAKING CHANGE: use JavaScript features not available in Node 6.\n",
        kind: Some("chore"),
        scope: None,
        breaking: true,
        description: "drop support for Node 6",
        footers: &["BREAKING CHANGE"],
        body_contains: None,
    },
    Case {
        message: "docs: correct spelling of CHANGELOG\n",
        kind: Some("docs"),
        scope: None,
        breaking: false,
        description: "correct spelling of CHANGELOG",
        footers: &[],
        body_contains: None,
    },
    Case {
        message: "feat(lang): add Polish language\n",
        kind: Some("feat"),
        scope: Some("lang"),
        breaking: false,
        description: "add Polish language",
        footers: &[],
        body_contains: None,
    },
    Case {
        message: "fix: prevent racing of requests\n\nIntroduce a request id and a reference to latest request. Dismiss\nincoming responses other than from latest request.\n\nRemove timeouts which were used to mitigate the racing issue but are\nobsolete now.\n\nReviewed-by: Z\nRefs: #123\n",
        kind: Some("fix"),
        scope: None,
        breaking: false,
        description: "prevent racing of requests",
        footers: &["Reviewed-by", "Refs"],
        body_contains: Some("obsolete now."),
    },
    Case {
        message: "revert: let us never again speak of the noodle incident\n\nRefs: 676104e, a215868\n",
        kind: Some("revert"),
        scope: None,
        breaking: false,
        description: "let us never again speak of the noodle incident",
        footers: &["Refs"],
        body_contains: None,
    },
    Case {
        message: "Merge pull request #12 from topic/x\n\nmore words\n",
        kind: None,
        scope: None,
        breaking: false,
        description: "",
        footers: &[],
        body_contains: Some("more words"),
    },
];

#[test]
fn the_specification_examples_parse_as_the_spec_says() {
    for case in SPEC_EXAMPLES {
        let p = parse(case.message);
        assert_eq!(p.conventional.as_ref().map(|h| h.kind()).as_deref(), case.kind, "{}", case.message);
        assert_eq!(p.breaking(), case.breaking, "{}", case.message);
        if let Some(h) = &p.conventional {
            assert_eq!(h.scope.as_deref(), case.scope);
            assert_eq!(h.description, case.description);
        }
        let tokens: Vec<&str> = p.footers.iter().map(|f| f.token.as_str()).collect();
        assert_eq!(tokens, case.footers, "{}", case.message);
        if let Some(text) = case.body_contains {
            assert!(p.body.as_deref().unwrap_or("").contains(text), "{:?}", p.body);
        }
        for f in &p.footers {
            assert!(!p.body.as_deref().unwrap_or("").contains(&format!("{}:", f.token)), "footer leaked into the body: {p:?}");
        }
    }
}

#[test]
fn the_revert_example_names_the_reverted_commits() {
    let p = parse(SPEC_EXAMPLES[7].message);
    assert_eq!(p.reverted_ids(), vec!["676104e".to_string(), "a215868".to_string()]);
    let git_style = parse("Revert \"feat: x\"\n\nThis reverts commit 0123456789abcdef0123456789abcdef01234567.\n");
    assert!(git_style.conventional.is_none());
    assert_eq!(git_style.reverted_ids(), vec!["0123456789abcdef0123456789abcdef01234567".to_string()]);
}

#[test]
fn the_space_hash_separator_and_issue_references() {
    let p = parse("fix(ui): align the buttons (#77)\n\nSee the discussion in #78.\n\nRefs #133\nCloses: #9, #10\nCo-authored-by: Ana Silva <ana@example.org>\n");
    assert_eq!(p.footers[0].separator, Separator::SpaceHash);
    assert_eq!(p.footers[0].value, "133");
    let ids: Vec<(String, bool)> = p.issues().into_iter().map(|i| (i.id, i.closes)).collect();
    assert_eq!(ids, vec![("77".into(), false), ("78".into(), false), ("133".into(), false), ("9".into(), true), ("10".into(), true)]);
    let co = p.co_authors();
    assert_eq!(co.len(), 1);
    assert_eq!(co[0].name, "Ana Silva");
    assert_eq!(co[0].email, "ana@example.org");
}

#[test]
fn case_rules_types_are_case_insensitive_but_breaking_change_is_upper_case_only() {
    // Item 15: units are not case-sensitive…
    let p = parse("FEAT(API): shout\n");
    assert_eq!(p.conventional.as_ref().unwrap().kind(), "feat");
    // …except BREAKING CHANGE, which MUST be upper case (items 12, 15); BREAKING-CHANGE is a synonym (16).
    assert!(!parse("feat: x\n\nbreaking change: no\n").breaking());
    assert!(!parse("feat: x\n\nBreaking-Change: no\n").breaking());
    assert!(parse("feat: x\n\nBREAKING-CHANGE: yes\n").breaking());
    assert!(parse("fix: x\n\nBREAKING CHANGE: yes\n").breaking());
}

#[test]
fn footer_values_span_lines_until_the_next_token() {
    let p = parse("feat: x\n\nBREAKING CHANGE: first line\nsecond line\n\nthird paragraph\nAcked-by: Bo\n");
    assert_eq!(p.footers.len(), 2);
    assert_eq!(p.footers[0].value, "first line\nsecond line\n\nthird paragraph");
    assert_eq!(p.footers[1].token, "Acked-by");
    assert!(p.body.is_none());
    assert_eq!(p.breaking_description().as_deref(), Some("first line\nsecond line\n\nthird paragraph"));
}

#[test]
fn a_breaking_paragraph_in_the_middle_starts_the_footers() {
    let p = parse("feat: x\n\nbody text\n\nBREAKING CHANGE: the API moved\n\nMigration: call y instead of x.\n");
    assert!(p.breaking());
    assert_eq!(p.body.as_deref(), Some("body text"));
}

#[test]
fn headers_that_are_not_conventional() {
    for bad in [
        "feat:no space",
        "feat : space before colon",
        "feat(): empty scope",
        "feat(api: unclosed",
        ": no type",
        "feat: ",
        "Revert \"feat: x\"",
        "Merge branch 'main' into topic",
        "fix!x: stray",
        "1feat: digit first",
        "",
    ] {
        assert!(parse_header(bad).is_none(), "{bad:?} must not be a header");
    }
    assert!(parse_header("feat(a b c)!: spaces in scope are kept").is_some());
    assert!(parse_header("build-system: hyphenated type").is_some());
}

#[test]
fn footers_may_follow_the_header_directly_and_crlf_is_accepted() {
    let p = parse("fix: x\r\n\r\nRefs: #1\r\n");
    assert_eq!(p.footers.len(), 1);
    assert_eq!(p.footers[0].value, "#1");
    assert!(p.body.is_none());
}

#[test]
fn a_megabyte_message_is_bounded_and_does_not_panic() {
    let big = format!("feat: big\n\n{}", "é".repeat(600_000));
    let p = parse(&big);
    assert_eq!(p.conventional.unwrap().description, "big");
    assert!(p.body.unwrap().len() <= signalbox_versioning::message::MAX_MESSAGE_BYTES);
}

fn word() -> impl Strategy<Value = String> {
    "[a-z]{1,8}"
}

fn sentence() -> impl Strategy<Value = String> {
    prop::collection::vec(word(), 1..6).prop_map(|w| w.join(" "))
}

proptest! {
    #[test]
    fn parse_then_render_round_trips(
        kind in "[a-zA-Z][a-zA-Z0-9]{0,7}",
        scope in prop::option::of("[a-z][a-z0-9-]{0,8}"),
        bang in any::<bool>(),
        description in sentence(),
        body in prop::option::of(prop::collection::vec(sentence(), 1..4).prop_map(|p| p.join("\n\n"))),
        footers in prop::collection::vec((prop_oneof![Just("Refs".to_string()), Just("Acked-by".to_string()), Just("BREAKING CHANGE".to_string()), "[A-Z][a-z]{1,6}(-[a-z]{1,5})?"], any::<bool>(), sentence()), 0..4),
    ) {
        let mut msg = kind.clone();
        if let Some(s) = &scope { msg.push_str(&format!("({s})")); }
        if bang { msg.push('!'); }
        msg.push_str(&format!(": {description}"));
        if let Some(b) = &body { msg.push_str(&format!("\n\n{b}")); }
        if !footers.is_empty() {
            let lines: Vec<String> = footers.iter().map(|(t, hash, v)| {
                if *hash && t != "BREAKING CHANGE" { format!("{t} #{}", v.replace(' ', "-")) } else { format!("{t}: {v}") }
            }).collect();
            msg.push_str(&format!("\n\n{}", lines.join("\n")));
        }
        let parsed = parse(&msg);
        let header = parsed.conventional.clone().expect("a generated header is conventional");
        prop_assert_eq!(&header.r#type, &kind);
        prop_assert_eq!(&header.scope, &scope);
        prop_assert_eq!(header.bang, bang);
        prop_assert_eq!(&header.description, &description);
        prop_assert_eq!(&parsed.body, &body);
        prop_assert_eq!(parsed.footers.len(), footers.len());
        prop_assert_eq!(parsed.breaking(), bang || footers.iter().any(|f| f.0 == "BREAKING CHANGE"));
        prop_assert_eq!(parsed.render(), msg.clone());
        prop_assert_eq!(parse(&parsed.render()), parsed);
    }

    #[test]
    fn any_input_parses_without_panicking(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let p = parse(&text);
        let _ = (p.issues(), p.co_authors(), p.reverted_ids(), p.breaking_description(), p.render());
        prop_assert!(!p.subject.contains('\n'));
    }

    #[test]
    fn structured_noise_parses_without_panicking(s in "[a-zA-Z():!# \n#-]{0,200}") {
        let p = parse(&s);
        if let Some(h) = &p.conventional {
            prop_assert!(!h.description.is_empty());
            prop_assert!(s.to_ascii_lowercase().starts_with(&h.kind()) || s.trim_start().to_ascii_lowercase().starts_with(&h.kind()));
        }
    }
}
