//! `alknet schema export|check|diff`: the schema directory and the compatibility gate.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use alknet_runtime::ServiceSpec;
use alknet_runtime::schema::{self, Change, Compatibility};
use serde_json::Value;

type Files = BTreeMap<String, String>;
/// Service documents by namespace, with the file each came from.
type Documents = BTreeMap<String, (PathBuf, Value)>;

pub fn export(services: &[ServiceSpec], out: &Path) -> Result<ExitCode, String> {
    let files = schema::export(services);
    let existing = read_json_files(out)?;
    let refused = unannounced_breaks(
        &service_documents(out, &existing)?,
        &service_documents(out, &files)?,
    );
    if !refused.is_empty() {
        print_breaks(&refused);
        return Err(format!(
            "refusing to overwrite `{}`: {} breaking change(s) without a major version bump (raise the service's major version, or delete its document to start over)",
            out.display(),
            refused.len()
        ));
    }
    for (path, text) in &files {
        let target = out.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)
                .map_err(|err| format!("cannot create `{}`: {err}", parent.display()))?;
        }
        fs::write(&target, text)
            .map_err(|err| format!("cannot write `{}`: {err}", target.display()))?;
    }
    for stale in existing.keys().filter(|path| !files.contains_key(*path)) {
        let target = out.join(stale);
        fs::remove_file(&target)
            .map_err(|err| format!("cannot remove `{}`: {err}", target.display()))?;
    }
    println!("wrote {} files to {}", files.len(), out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn check(services: &[ServiceSpec], dir: &Path) -> Result<ExitCode, String> {
    if !dir.is_dir() {
        return Err(format!(
            "`{}` is not a directory: run `alknet schema export --out {}` first",
            dir.display(),
            dir.display()
        ));
    }
    let files = schema::export(services);
    let committed = read_json_files(dir)?;
    let breaks = unannounced_breaks(
        &service_documents(dir, &committed)?,
        &service_documents(dir, &files)?,
    );
    print_breaks(&breaks);

    let mut drifted = Vec::new();
    for (path, text) in &files {
        match committed.get(path) {
            None => println!("missing: {path} (the code generates it)"),
            Some(old) if old != text => {
                let diff = similar::TextDiff::from_lines(old.as_str(), text.as_str());
                print!(
                    "{}",
                    diff.unified_diff()
                        .context_radius(3)
                        .header(&format!("committed/{path}"), &format!("generated/{path}"))
                );
            }
            Some(_) => continue,
        }
        drifted.push(path.clone());
    }
    for path in committed.keys().filter(|path| !files.contains_key(*path)) {
        println!("stale: {path} (the code no longer generates it)");
        drifted.push(path.clone());
    }

    match (breaks.is_empty(), drifted.is_empty()) {
        (true, true) => {
            println!("{} matches the code ({} files)", dir.display(), files.len());
            Ok(ExitCode::SUCCESS)
        }
        (true, false) => Err(format!(
            "{} file(s) in `{}` differ from what the code generates ({}): run `alknet schema export` and commit the result",
            drifted.len(),
            dir.display(),
            drifted.join(", ")
        )),
        (false, _) => Err(format!(
            "the code makes {} breaking change(s) to the services in `{}` without raising their major version",
            breaks.len(),
            dir.display()
        )),
    }
}

pub fn diff(old: &Path, new: &Path) -> Result<ExitCode, String> {
    let (old_docs, new_docs) = (load_documents(old)?, load_documents(new)?);
    let mut changes = Vec::new();
    for (namespace, (path, old_doc)) in &old_docs {
        match new_docs.get(namespace) {
            Some((_, new_doc)) => changes.extend(
                schema::diff(old_doc, new_doc)
                    .into_iter()
                    .map(|change| (namespace.clone(), change)),
            ),
            None => changes.push((namespace.clone(), service_removed(namespace, path))),
        }
    }
    for namespace in new_docs.keys().filter(|ns| !old_docs.contains_key(*ns)) {
        let change = Change {
            pointer: String::new(),
            kind: Compatibility::Compatible,
            description: format!("service `{namespace}` was added"),
        };
        changes.push((namespace.clone(), change));
    }
    for (namespace, change) in &changes {
        println!("{namespace}: {change}");
    }
    let breaking = changes
        .iter()
        .filter(|(_, c)| c.kind == Compatibility::Breaking)
        .count();
    println!(
        "{breaking} breaking, {} compatible",
        changes.len() - breaking
    );
    if breaking > 0 {
        return Err(format!(
            "{breaking} breaking change(s) between `{}` and `{}`",
            old.display(),
            new.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// Every breaking change from `old` to `new` in a service whose major version did not go up.
fn unannounced_breaks(old: &Documents, new: &Documents) -> Vec<(String, Change)> {
    let mut breaks = Vec::new();
    for (namespace, (path, old_doc)) in old {
        let Some((_, new_doc)) = new.get(namespace) else {
            breaks.push((namespace.clone(), service_removed(namespace, path)));
            continue;
        };
        if major_went_up(&old_doc["version"], &new_doc["version"]) {
            continue;
        }
        breaks.extend(
            schema::diff(old_doc, new_doc)
                .into_iter()
                .filter(|change| change.kind == Compatibility::Breaking)
                .map(|change| (namespace.clone(), change)),
        );
    }
    breaks
}

fn print_breaks(breaks: &[(String, Change)]) {
    if breaks.is_empty() {
        return;
    }
    println!("breaking changes without a major version bump:");
    for (namespace, change) in breaks {
        println!("  {namespace}: {change}");
    }
}

fn service_removed(namespace: &str, path: &Path) -> Change {
    Change {
        pointer: String::new(),
        kind: Compatibility::Breaking,
        description: format!("service `{namespace}` was removed ({})", path.display()),
    }
}

/// Whether `new` is a semver-incompatible release after `old`: a higher major version, or
/// for `0.y.z`, a higher minor (for `0.0.z`, a higher patch), as Cargo reads versions.
fn major_went_up(old: &Value, new: &Value) -> bool {
    let parse = |v: &Value| v.as_str().and_then(|s| semver::Version::parse(s).ok());
    let (Some(old), Some(new)) = (parse(old), parse(new)) else {
        return false;
    };
    match (old.major, new.major) {
        (o, n) if o != n => n > o,
        (0, _) if old.minor != new.minor => new.minor > old.minor,
        (0, _) if old.minor == 0 => new.patch > old.patch,
        _ => false,
    }
}

/// Every `.json` file below `dir` (none if it does not exist), by `/`-separated path.
fn read_json_files(dir: &Path) -> Result<Files, String> {
    let mut files = Files::new();
    if !dir.exists() {
        return Ok(files);
    }
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = fs::read_dir(&current)
            .map_err(|err| format!("cannot read `{}`: {err}", current.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|err| format!("cannot read `{}`: {err}", current.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                let text = fs::read_to_string(&path)
                    .map_err(|err| format!("cannot read `{}`: {err}", path.display()))?;
                let relative = path.strip_prefix(dir).unwrap_or(&path);
                let key = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                files.insert(key, text);
            }
        }
    }
    Ok(files)
}

/// The service documents among `files` (those under `services/`), by namespace.
fn service_documents(dir: &Path, files: &Files) -> Result<Documents, String> {
    let mut documents = Documents::new();
    for (path, text) in files
        .iter()
        .filter(|(path, _)| path.starts_with("services/"))
    {
        let full = dir.join(path);
        let document = parse_document(&full, text)?;
        documents.insert(namespace_of(&document).to_string(), (full, document));
    }
    Ok(documents)
}

/// A service document, or every service document below a directory.
fn load_documents(path: &Path) -> Result<Documents, String> {
    if path.is_dir() {
        let files = read_json_files(path)?;
        let mut documents = Documents::new();
        for (relative, text) in &files {
            let full = path.join(relative);
            let value: Value = serde_json::from_str(text)
                .map_err(|err| format!("`{}` is not valid JSON: {err}", full.display()))?;
            if is_service_document(&value) {
                documents.insert(namespace_of(&value).to_string(), (full, value));
            }
        }
        return Ok(documents);
    }
    let text = fs::read_to_string(path)
        .map_err(|err| format!("cannot read `{}`: {err}", path.display()))?;
    let document = parse_document(path, &text)?;
    Ok(Documents::from([(
        namespace_of(&document).to_string(),
        (path.to_path_buf(), document),
    )]))
}

fn parse_document(path: &Path, text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|err| format!("`{}` is not valid JSON: {err}", path.display()))?;
    if !is_service_document(&value) {
        return Err(format!(
            "`{}` is not an alknet service document: it has no `namespace` string and `operations` object",
            path.display()
        ));
    }
    Ok(value)
}

fn is_service_document(value: &Value) -> bool {
    value["namespace"].is_string() && value["operations"].is_object()
}

fn namespace_of(document: &Value) -> &str {
    document["namespace"].as_str().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_major_bump_is_what_cargo_calls_incompatible() {
        let bumped = |old: &str, new: &str| major_went_up(&json!(old), &json!(new));
        assert!(bumped("1.4.2", "2.0.0"));
        assert!(!bumped("1.4.2", "1.5.0"));
        assert!(!bumped("2.0.0", "1.9.0"));
        assert!(bumped("0.3.1", "0.4.0"));
        assert!(!bumped("0.3.1", "0.3.2"));
        assert!(bumped("0.0.3", "0.0.4"));
        assert!(!bumped("1.0.0", "not a version"));
    }
}
