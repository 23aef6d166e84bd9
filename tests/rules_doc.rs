//! docs/RULES.md stays true: every rule id cited in the code has an entry,
//! and every end-to-end test an entry names exists.

use std::collections::BTreeSet;
use std::path::Path;

fn read_tree(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("node_modules") {
                read_tree(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.display().to_string(), text));
        }
    }
}

/// `SEED-12`, `NEW-1`, ... as they appear in `text`.
fn rule_ids(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for prefix in ["SEED-", "NEW-"] {
        for (at, _) in text.match_indices(prefix) {
            let digits: String = text[at + prefix.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if !digits.is_empty() {
                ids.insert(format!("{prefix}{digits}"));
            }
        }
    }
    ids
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_cited_rule_has_an_entry() {
    let rules = std::fs::read_to_string(root().join("docs/RULES.md")).unwrap();
    let mut files = Vec::new();
    read_tree(&root().join("src"), &mut files);
    read_tree(&root().join("tests"), &mut files);
    let mut missing = Vec::new();
    for (path, text) in &files {
        for id in rule_ids(text) {
            if !rules.contains(&format!("### {id} ")) {
                missing.push(format!("{id} (cited in {path})"));
            }
        }
    }
    assert!(missing.is_empty(), "no entry in docs/RULES.md: {missing:?}");
}

#[test]
fn every_named_end_to_end_test_exists() {
    let rules = std::fs::read_to_string(root().join("docs/RULES.md")).unwrap();
    let mut checked = 0;
    let mut missing = Vec::new();
    let test_lists = rules
        .split("\n- ")
        .filter(|item| item.starts_with("Tests:"));
    let names = test_lists.flat_map(|item| item.split('`').skip(1).step_by(2));
    for name in names {
        let Some((file, func)) = name.split_once("::") else {
            continue;
        };
        let path = root().join("tests").join(format!("{file}.rs"));
        if !path.exists() || func == "*" {
            continue; // a unit test in src/, or a whole test file
        }
        let text = std::fs::read_to_string(&path).unwrap();
        checked += 1;
        if !text.contains(&format!("fn {func}(")) {
            missing.push(name.to_string());
        }
    }
    assert!(checked > 20, "RULES.md names only {checked} tests");
    assert!(
        missing.is_empty(),
        "named in RULES.md, not found: {missing:?}"
    );
}
