//! The HTTP adapter's `/openapi.json` as client generators and a linter take it, each at
//! its defaults: openapi-python-client (Python) and @hey-api/openapi-ts (TypeScript, the
//! result type-checked with `tsc --strict`) generate clients whose real calls — a success,
//! a declared domain error, a refused bearer token (401), invalid input (422) — parse into
//! the declared types; @redocly/cli lints the served and the committed document with its
//! recommended rules, without an error.

use std::path::{Path, PathBuf};

use alknet_tests::adapters::{node, python, serve, ts_interop_dir};
use alknet_tests::probe::Probe;
use serde_json::{Value, json};

/// A node's base URL and its OpenAPI document, written to a fresh directory.
async fn node_and_document(dir: &Path) -> (String, PathBuf) {
    let addr = serve(node(Probe::default(), "")).await.http;
    let base = format!("http://{addr}");
    let document = reqwest::get(format!("{base}/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let path = dir.join("openapi.json");
    std::fs::write(&path, document).unwrap();
    (base, path)
}

/// A fresh directory under `tests/interop/ts/generated-openapi/` (Node resolves the
/// interop packages from there).
fn fresh_dir(name: &str) -> PathBuf {
    let dir = ts_interop_dir().join("generated-openapi").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run `program` with `args` in `dir`; its stdout, after asserting it succeeded.
async fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str], dir: &Path) -> String {
    let venv_bin = python().parent().unwrap().to_path_buf();
    // The generators' own helpers (openapi-python-client runs `ruff`) come from the venv.
    let path = std::env::join_paths(std::iter::once(venv_bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let output = tokio::process::Command::new(&program)
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{:?} runs: {e}", program.as_ref()));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{:?} {args:?} failed:\n{stdout}\n{stderr}",
        program.as_ref()
    );
    stdout + &stderr
}

/// The result of `call` among the client's results.
fn result<'a>(results: &'a Value, call: &str) -> &'a Value {
    results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["call"] == call)
        .unwrap_or_else(|| panic!("no `{call}` in {results}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_python_client_parses_successes_and_every_declared_error() {
    let dir = fresh_dir("python");
    let (base, document) = node_and_document(&dir).await;
    let generator = python().with_file_name("openapi-python-client");
    let log = run(
        &generator,
        &[
            "generate",
            "--path",
            document.to_str().unwrap(),
            "--meta",
            "none",
        ],
        &dir,
    )
    .await;
    // The generator drops what it cannot name or resolve, with a warning.
    assert!(
        !log.contains("Warning"),
        "the generator dropped parts:\n{log}"
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/python/openapi_client.py");
    let stdout = run(
        python(),
        &[script.to_str().unwrap(), dir.to_str().unwrap(), &base],
        &dir,
    )
    .await;
    let results: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    let success = result(&results, "success");
    assert_eq!(
        (success["status"].as_u64(), success["type"].as_str()),
        (Some(200), Some("EchoEcho"))
    );
    assert_eq!(success["body"], json!({"text": "hi", "length": 2}));

    let domain = result(&results, "domain_error");
    assert_eq!(domain["status"], 422);
    assert_eq!(domain["type"], "EchoShoutErrorEmptyText", "{domain}");
    assert_eq!(domain["body"]["error"]["details"], json!({"whitespace": 2}));

    let refused = result(&results, "unauthenticated");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["type"], "AlknetErrorUnauthenticated", "{refused}");
    assert_eq!(refused["body"]["error"]["code"], "UNAUTHENTICATED");

    let invalid = result(&results, "invalid_input");
    assert_eq!(invalid["status"], 422);
    assert_eq!(invalid["type"], "AlknetErrorInvalidInput", "{invalid}");
    assert_eq!(invalid["body"]["error"]["details"]["field"], "text");
}

#[tokio::test(flavor = "multi_thread")]
async fn hey_api_openapi_ts_types_check_strictly_and_parse_every_declared_error() {
    let dir = fresh_dir("typescript");
    let (base, document) = node_and_document(&dir).await;
    let ts = ts_interop_dir();
    let bin = |name: &str| ts.join("node_modules/.bin").join(name);
    run(
        bin("openapi-ts"),
        &[
            "-i",
            document.to_str().unwrap(),
            "-o",
            dir.join("client").to_str().unwrap(),
        ],
        &dir,
    )
    .await;
    std::fs::copy(ts.join("openapi_client.ts"), dir.join("openapi_client.ts")).unwrap();
    let tsconfig = json!({
        "compilerOptions": {
            "strict": true, "target": "es2022", "module": "commonjs",
            "moduleResolution": "node10", "outDir": "out", "types": ["node"],
            "skipLibCheck": false,
        },
        "files": ["openapi_client.ts"],
    });
    std::fs::write(dir.join("tsconfig.json"), tsconfig.to_string()).unwrap();
    // CommonJS here: the interop package around it is ESM.
    std::fs::write(dir.join("package.json"), r#"{"type": "commonjs"}"#).unwrap();
    run(bin("tsc"), &["-p", "tsconfig.json"], &dir).await;
    let stdout = run("node", &["out/openapi_client.js", &base], &dir).await;
    let results: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    let success = result(&results, "success");
    assert_eq!(success["status"], 200);
    assert_eq!(success["data"], json!({"text": "hi", "length": 2}));
    let domain = result(&results, "domain_error");
    assert_eq!(domain["status"], 422);
    assert_eq!(domain["error"]["error"]["code"], "EMPTY_TEXT");
    assert_eq!(domain["error"]["whitespace"], 2);
    let refused = result(&results, "unauthenticated");
    assert_eq!(refused["status"], 401);
    assert_eq!(refused["error"]["error"]["code"], "UNAUTHENTICATED");
    let invalid = result(&results, "invalid_input");
    assert_eq!(invalid["status"], 422);
    assert_eq!(invalid["error"]["error"]["code"], "INVALID_INPUT");
    let ticks = &result(&results, "default_field")["data"];
    assert_eq!(ticks[0], json!({"n": 1}), "{ticks}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redocly_lints_the_served_and_the_committed_document_clean() {
    let dir = fresh_dir("lint");
    let (_, served) = node_and_document(&dir).await;
    let committed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/openapi.json");
    let redocly = ts_interop_dir().join("node_modules/.bin/redocly");
    for document in [served, committed] {
        // No configuration file: the recommended rules; an error fails the command. The
        // one warning left is `info-license`: a node's API has no license of its own.
        let log = run(
            &redocly,
            &["lint", "--format", "summary", document.to_str().unwrap()],
            &dir,
        )
        .await;
        let warnings: Vec<&str> = log.lines().filter(|l| l.starts_with("warning")).collect();
        assert_eq!(
            warnings,
            ["warning info-license: 1"],
            "{}: {log}",
            document.display()
        );
    }
}
