//! What an operator sees of a node: health and readiness over curl, metrics scraped and
//! parsed by the Prometheus client's own parser, and a span per call in a real `tracing`
//! subscriber's output.

use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use alknet_runtime::adapters::http::{HttpAdapter, Readiness};
use alknet_tests::adapters::{self, curl, dig, env, python};
use alknet_tests::probe::Probe;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

async fn serve(adapter: HttpAdapter) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(adapter.serve(listener));
    base
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_and_readyz_answer_what_the_node_says() {
    let peer_up = Arc::new(AtomicBool::new(true));
    let readiness = {
        let peer_up = peer_up.clone();
        move || {
            let up = peer_up.load(Ordering::SeqCst);
            let readiness = Readiness::new().check("listen.http", true);
            if up {
                readiness.check("peer.worker-1", true)
            } else {
                readiness.check_detail("peer.worker-1", false, "not connected")
            }
        }
    };
    let base = serve(HttpAdapter::new(env(Probe::default())).readiness(readiness)).await;

    let (status, body) = curl(&[&format!("{base}/healthz")]).await;
    assert_eq!(status, "200");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "ok"})
    );

    let (status, body) = curl(&[&format!("{base}/readyz")]).await;
    assert_eq!(status, "200", "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "ready", "checks": [
            {"name": "listen.http", "ready": true},
            {"name": "peer.worker-1", "ready": true},
        ]})
    );

    peer_up.store(false, Ordering::SeqCst);
    let (status, body) = curl(&[&format!("{base}/readyz")]).await;
    assert_eq!(status, "503", "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "not_ready", "checks": [
            {"name": "listen.http", "ready": true},
            {"name": "peer.worker-1", "ready": false, "detail": "not connected"},
        ]})
    );

    // Health does not depend on readiness, and without a handle there is no `/metrics`.
    let (status, _) = curl(&[&format!("{base}/healthz")]).await;
    assert_eq!(status, "200");
    let (status, _) = curl(&[&format!("{base}/metrics")]).await;
    assert_eq!(status, "404");

    // An adapter told nothing is ready while it serves.
    let base = serve(HttpAdapter::new(env(Probe::default()))).await;
    let (status, body) = curl(&[&format!("{base}/readyz")]).await;
    assert_eq!(status, "200");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"status": "ready", "checks": []})
    );
}

/// What the Prometheus client's parser read from an exposition.
struct Scrape(Value);

impl Scrape {
    async fn of(base: &str) -> Scrape {
        let (status, text) = curl(&[&format!("{base}/metrics")]).await;
        assert_eq!(status, "200", "{text}");
        let mut parser = tokio::process::Command::new(python())
            .arg(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("interop/python/prometheus_scrape.py"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the Python parser starts");
        let mut stdin = parser.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).await.unwrap();
        drop(stdin);
        let output = parser.wait_with_output().await.unwrap();
        assert!(
            output.status.success(),
            "the exposition does not parse: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        Scrape(serde_json::from_slice(&output.stdout).unwrap())
    }

    /// The value of the one sample `name` whose labels include `labels`; 0 if none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<f64> = self.0["samples"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|sample| sample["name"] == name)
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(key, value)| sample["labels"][*key] == *value)
            })
            .map(|sample| sample["value"].as_f64().unwrap())
            .collect();
        assert!(matching.len() <= 1, "{name} {labels:?}: {matching:?}");
        matching.first().copied().unwrap_or(0.0)
    }

    fn family_type(&self, family: &str) -> &str {
        self.0["types"][family].as_str().unwrap_or("missing")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_calls_per_transport_for_a_prometheus_scrape() {
    let node = adapters::serve(adapters::node(Probe::default(), "[http]\nmetrics = true\n")).await;
    let base = format!("http://{}", node.http);
    let dns = node.dns;

    for text in ["a", "bb", "ccc"] {
        let (status, _) = curl(&[
            "--data",
            &json!({ "text": text }).to_string(),
            &format!("{base}/v1/echo/say"),
        ])
        .await;
        assert_eq!(status, "200");
    }
    let (status, _) = curl(&["--data", r#"{"text": 5}"#, &format!("{base}/v1/echo/say")]).await;
    assert_eq!(status, "422");
    for _ in 0..2 {
        let answer = dig(dns, "motd.vault.alk.dev", "TXT", &[]).await;
        assert_eq!(answer.status, "NOERROR");
    }
    let connection = node.connect_call().await;
    connection
        .call("/echo/say", json!({ "text": "over QUIC" }))
        .await
        .unwrap();
    let guessed = alknet_runtime::call::CallOptions::new().auth_token("alk_a-guess");
    let err = connection
        .call_with("/echo/say", json!({ "text": "as someone" }), &guessed)
        .await
        .unwrap_err();
    assert_eq!(err.code, "UNAUTHENTICATED");

    // Refused before it began: `vault/read` needs a scope an anonymous caller lacks.
    let (status, _) = curl(&["--data", "{}", &format!("{base}/v1/vault/read")]).await;
    assert_eq!(status, "401");
    // Refused by the adapter, before the env: a bearer token nobody holds; a body that is
    // not JSON.
    let (status, _) = curl(&[
        "-H",
        "Authorization: Bearer alk_nobody-holds-this",
        "--data",
        "{}",
        &format!("{base}/v1/echo/shout"),
    ])
    .await;
    assert_eq!(status, "401");
    let (status, _) = curl(&["--data", "{", &format!("{base}/v1/echo/shout")]).await;
    assert_eq!(status, "400");

    let scrape = Scrape::of(&base).await;
    let quic = [("transport", "quic"), ("operation", "echo/say")];
    assert_eq!(scrape.value("alknet_calls_total", &quic), 2.0);
    assert_eq!(
        scrape.value(
            "alknet_call_errors_total",
            &[quic[0], quic[1], ("code", "UNAUTHENTICATED")]
        ),
        1.0
    );
    let refused = [("transport", "http"), ("operation", "vault/read")];
    assert_eq!(scrape.value("alknet_calls_total", &refused), 1.0);
    assert_eq!(
        scrape.value(
            "alknet_call_errors_total",
            &[refused[0], refused[1], ("code", "UNAUTHENTICATED")]
        ),
        1.0
    );
    let shout = [("transport", "http"), ("operation", "echo/shout")];
    assert_eq!(scrape.value("alknet_calls_total", &shout), 2.0);
    for code in ["UNAUTHENTICATED", "INVALID_INPUT"] {
        let labels = [shout[0], shout[1], ("code", code)];
        assert_eq!(
            scrape.value("alknet_call_errors_total", &labels),
            1.0,
            "{code}"
        );
    }
    let http = [("transport", "http"), ("operation", "echo/say")];
    let over_dns = [("transport", "dns"), ("operation", "vault/motd")];
    assert_eq!(scrape.value("alknet_calls_total", &http), 4.0);
    assert_eq!(scrape.value("alknet_calls_total", &over_dns), 2.0);
    assert_eq!(
        scrape.value(
            "alknet_call_errors_total",
            &[http[0], http[1], ("code", "INVALID_INPUT")]
        ),
        1.0
    );
    assert_eq!(scrape.value("alknet_call_errors_total", &over_dns), 0.0);
    assert_eq!(
        scrape.family_type("alknet_call_duration_seconds"),
        "histogram"
    );
    assert_eq!(
        scrape.value("alknet_call_duration_seconds_count", &http),
        4.0
    );
    assert_eq!(
        scrape.value(
            "alknet_call_duration_seconds_bucket",
            &[http[0], http[1], ("le", "+Inf")]
        ),
        4.0
    );
    assert_eq!(
        scrape.value("alknet_call_duration_seconds_count", &over_dns),
        2.0
    );
    assert_eq!(scrape.value("alknet_calls_in_flight", &http), 0.0);
    assert_eq!(scrape.value("alknet_calls_in_flight", &over_dns), 0.0);
}

/// A `tracing` writer into a buffer the test reads.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// `name=value` of a fmt line's span fields (the innermost span's when `last`), unquoted.
fn field(line: &str, name: &str) -> Option<String> {
    let start = line
        .rfind(&format!(" {name}="))
        .or_else(|| line.rfind(&format!("{{{name}=")))?
        + name.len()
        + 2;
    let rest = &line[start..];
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()?
    } else {
        rest.split([' ', '}']).next()?
    };
    Some(value.to_string())
}

#[test]
fn each_call_has_a_span_that_its_nested_calls_continue() {
    use tracing_subscriber::fmt::format::FmtSpan;

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let env = env(Probe::default());
    let (ids, boom) = tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let caller = alknet_runtime::Caller::new()
                .transport("http")
                .identity(alknet_runtime::Identity::new("user:ada"));
            let ids = env
                .with_caller(caller)
                .invoke("probe", "ids", json!({"nest": true}))
                .await;
            let boom = env.invoke("probe", "boom", json!({})).await;
            (ids, boom)
        })
    });
    let report = ids.result.unwrap();
    let (outer_id, inner_id) = (
        report["id"].as_str().unwrap().to_string(),
        report["nested"]["id"].as_str().unwrap().to_string(),
    );
    let lines = captured.lines();
    let closed: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains(": close"))
        .collect();
    let closing = |id: &str| {
        closed
            .iter()
            .find(|line| field(line, "request_id").as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no span closed for {id}: {lines:#?}"))
            .to_string()
    };

    let outer = closing(&outer_id);
    assert_eq!(
        field(&outer, "operation").as_deref(),
        Some("probe/ids"),
        "{outer}"
    );
    assert_eq!(
        field(&outer, "caller").as_deref(),
        Some("user:ada"),
        "{outer}"
    );
    assert_eq!(
        field(&outer, "transport").as_deref(),
        Some("http"),
        "{outer}"
    );
    assert_eq!(field(&outer, "outcome").as_deref(), Some("ok"), "{outer}");
    assert!(
        field(&outer, "duration_ms").is_some_and(|ms| ms.parse::<f64>().is_ok()),
        "{outer}"
    );
    assert_eq!(field(&outer, "parent_request_id"), None, "{outer}");

    // The nested call's span is within its parent's and names it.
    let inner = closing(&inner_id);
    assert!(
        inner.contains(&format!("call{{request_id={outer_id} ")),
        "the parent's span encloses the nested one: {inner}"
    );
    assert_eq!(
        field(&inner, "parent_request_id").as_deref(),
        Some(outer_id.as_str()),
        "{inner}"
    );
    assert_eq!(
        field(&inner, "transport").as_deref(),
        Some("nested"),
        "{inner}"
    );
    assert_eq!(
        field(&inner, "caller").as_deref(),
        Some("user:ada"),
        "{inner}"
    );
    assert_eq!(field(&inner, "outcome").as_deref(), Some("ok"), "{inner}");

    // A failed call's outcome is the code its caller received; the handler's own events
    // are within its span.
    let boom_id = boom.request_id.to_string();
    assert_eq!(boom.result.unwrap_err().code, "INTERNAL");
    let failed = closing(&boom_id);
    assert_eq!(
        field(&failed, "outcome").as_deref(),
        Some("INTERNAL"),
        "{failed}"
    );
    assert_eq!(
        field(&failed, "caller").as_deref(),
        Some("anonymous"),
        "{failed}"
    );
    assert_eq!(
        field(&failed, "transport").as_deref(),
        Some("local"),
        "{failed}"
    );
    assert!(
        lines.iter().any(|line| line.contains("handler panicked")
            && line.contains(&format!("call{{request_id={boom_id} "))),
        "{lines:#?}"
    );
}
