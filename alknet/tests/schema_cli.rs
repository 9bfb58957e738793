//! `alknet schema export|check|diff`, run as a user runs them.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn alknet(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alknet"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the alknet binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A fresh schema directory exported by the binary into a temporary directory.
fn exported() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = alknet(&["schema", "export", "--out", "schemas"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    dir
}

fn edit_echo(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("schemas/services/echo.json");
    let mut doc: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut doc);
    fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
}

#[test]
fn the_committed_schemas_match_the_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = alknet(&["schema", "check"], &root);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn export_writes_every_file_and_check_accepts_it() {
    let dir = exported();
    for file in ["services/echo.json", "index.json", "openapi.json"] {
        let written = fs::read_to_string(dir.path().join("schemas").join(file)).unwrap();
        assert!(written.ends_with("}\n"), "{file}");
    }
    let out = alknet(&["schema", "check"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn check_fails_on_drift_and_shows_the_diff() {
    let dir = exported();
    edit_echo(dir.path(), |doc| {
        doc["description"] = json!("Edited by hand.")
    });
    fs::write(dir.path().join("schemas/stale.json"), "{}").unwrap();
    let out = alknet(&["schema", "check"], dir.path());
    let shown = text(&out);
    assert!(!out.status.success());
    assert!(
        shown.contains("--- committed/services/echo.json"),
        "{shown}"
    );
    assert!(
        shown.contains("-  \"description\": \"Edited by hand.\","),
        "{shown}"
    );
    assert!(shown.contains("stale: stale.json"), "{shown}");
    assert!(shown.contains("run `alknet schema export`"), "{shown}");
}

#[test]
fn check_and_export_refuse_a_breaking_change_without_a_major_bump() {
    let dir = exported();
    // The committed document has an operation the code no longer has.
    edit_echo(dir.path(), |doc| {
        doc["operations"]["gone"] = doc["operations"]["say"].clone();
        doc["operations"]["gone"]["id"] = json!("echo/gone");
    });
    let out = alknet(&["schema", "check"], dir.path());
    let shown = text(&out);
    assert!(!out.status.success());
    assert!(
        shown.contains("echo: breaking   /operations/gone: operation `echo/gone` was removed"),
        "{shown}"
    );
    assert!(
        shown.contains("without raising their major version"),
        "{shown}"
    );

    let before = fs::read_to_string(dir.path().join("schemas/services/echo.json")).unwrap();
    let out = alknet(&["schema", "export", "--out", "schemas"], dir.path());
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("refusing to overwrite"),
        "{}",
        text(&out)
    );
    let after = fs::read_to_string(dir.path().join("schemas/services/echo.json")).unwrap();
    assert_eq!(before, after, "a refused export changes nothing");
}

#[test]
fn a_major_version_bump_allows_the_breaking_change() {
    let dir = exported();
    edit_echo(dir.path(), |doc| {
        doc["version"] = json!("0.9.0");
        doc["operations"]["gone"] = doc["operations"]["say"].clone();
    });
    let out = alknet(&["schema", "check"], dir.path());
    let shown = text(&out);
    assert!(!out.status.success(), "the files still drift: {shown}");
    assert!(!shown.contains("breaking changes without"), "{shown}");
    let out = alknet(&["schema", "export", "--out", "schemas"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn diff_classifies_changes_between_files_and_directories() {
    let old = exported();
    let new = exported();
    let out = alknet(
        &[
            "schema",
            "diff",
            "schemas",
            &new.path().join("schemas").display().to_string(),
        ],
        old.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("0 breaking, 0 compatible"),
        "{}",
        text(&out)
    );

    edit_echo(new.path(), |doc| {
        let defs = &mut doc["schema"]["$defs"];
        defs["Say"]["required"] = json!(["text", "loud"]);
        defs["Say"]["properties"]["loud"] = json!({"type": "boolean"});
        defs["Echo"]["properties"]["words"] = json!({"type": "integer"});
    });
    let new_file = new.path().join("schemas/services/echo.json");
    let out = alknet(
        &[
            "schema",
            "diff",
            "schemas/services/echo.json",
            &new_file.display().to_string(),
        ],
        old.path(),
    );
    let shown = text(&out);
    assert!(!out.status.success());
    assert!(
        shown.contains("echo: breaking   /schema/$defs/Say/properties/loud: `echo/say` input gained the required field `loud`"),
        "{shown}"
    );
    assert!(
        shown.contains("echo: compatible /schema/$defs/Echo/properties/words: `echo/say` output gained the field `words`"),
        "{shown}"
    );
    assert!(shown.contains("1 breaking, 1 compatible"), "{shown}");
}

#[test]
fn bad_paths_and_documents_are_one_clear_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let out = alknet(
        &["schema", "diff", "missing.json", "missing.json"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out);
    assert!(
        shown.starts_with("alknet: cannot read `missing.json`"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 1, "{shown}");

    fs::write(dir.path().join("other.json"), "{\"a\": 1}").unwrap();
    let out = alknet(&["schema", "diff", "other.json", "other.json"], dir.path());
    assert!(
        text(&out).contains("is not an alknet service document"),
        "{}",
        text(&out)
    );

    let out = alknet(&["schema", "check", "--dir", "nowhere"], dir.path());
    assert!(
        text(&out).contains("`nowhere` is not a directory"),
        "{}",
        text(&out)
    );

    let out = alknet(&["schema", "frobnicate"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}
