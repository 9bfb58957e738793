//! The DNS adapter answering `dig`.

use alknet_runtime::adapters::dns::DnsAdapter;
use alknet_runtime::codes;
use alknet_tests::adapters::{base64url, dig, env, python, serve_dns};
use alknet_tests::probe::Probe;
use serde_json::json;

/// The input label of `input`.
fn label(input: &serde_json::Value) -> String {
    base64url(input.to_string().as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn operations_answer_txt_records_of_their_json_output() {
    let server = serve_dns(env(Probe::default())).await;

    let input = label(&json!({"text": "hi"}));
    let answer = dig(server, &format!("{input}.say.echo.alk.dev"), "TXT", &[]).await;
    assert_eq!(answer.status, "NOERROR");
    assert!(answer.flags.contains(&"aa".to_string()), "{answer:?}");
    assert_eq!(answer.json(), json!({"text": "hi", "length": 2}));

    // Names are case-insensitive; the input label keeps its case.
    let answer = dig(server, &format!("{input}.SAY.Echo.ALK.dev"), "TXT", &[]).await;
    assert_eq!(answer.json(), json!({"text": "hi", "length": 2}));

    // An operation whose input needs no field, without an input label.
    let answer = dig(server, "motd.vault.alk.dev", "TXT", &[]).await;
    assert_eq!(answer.status, "NOERROR", "{answer:?}");
    assert_eq!(answer.json(), "welcome");

    // Non-ASCII text survives the label and the TXT strings.
    let long = "é".repeat(14);
    let answer = dig(
        server,
        &format!("{}.say.echo.alk.dev", label(&json!({"text": long}))),
        "TXT",
        &[],
    )
    .await;
    assert_eq!(answer.json()["text"], long);

    // Another record type for an operation's name: the name exists, with no such record.
    let answer = dig(server, "motd.vault.alk.dev", "A", &[]).await;
    assert_eq!((answer.status.as_str(), answer.txt.len()), ("NOERROR", 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_answer_the_error_json_with_a_fitting_code() {
    let server = serve_dns(env(Probe::default())).await;
    let error = |answer: &alknet_tests::adapters::DigAnswer| {
        answer.json()["error"]["code"].as_str().unwrap().to_string()
    };

    for name in [
        "nope.echo.alk.dev",
        "ticks.echo.alk.dev",
        "peek.vault.alk.dev",
        "a.b.c.say.echo.alk.dev",
        "alk.dev",
    ] {
        let answer = dig(server, name, "TXT", &[]).await;
        assert_eq!(answer.status, "NXDOMAIN", "{name}: {answer:?}");
    }
    let answer = dig(server, "say.echo.example.com", "TXT", &[]).await;
    assert_eq!(answer.status, "REFUSED", "outside the zone");
    assert!(
        !answer.flags.contains(&"aa".to_string()),
        "not ours: {answer:?}"
    );

    let answer = dig(server, "say.echo.alk.dev", "TXT", &[]).await;
    assert_eq!(
        (answer.status.as_str(), error(&answer)),
        ("SERVFAIL", codes::INVALID_INPUT.into())
    );
    let answer = dig(server, "not-base64!.say.echo.alk.dev", "TXT", &[]).await;
    assert_eq!(
        (answer.status.as_str(), error(&answer)),
        ("SERVFAIL", codes::INVALID_INPUT.into())
    );
    let answer = dig(
        server,
        &format!("{}.say.echo.alk.dev", label(&json!({"text": 1}))),
        "TXT",
        &[],
    )
    .await;
    assert_eq!(answer.json()["error"]["details"]["field"], "text");

    let answer = dig(server, "served.echo.alk.dev", "TXT", &[]).await;
    assert_eq!(
        (answer.status.as_str(), error(&answer)),
        ("REFUSED", codes::UNAUTHENTICATED.into())
    );
    // A name in the zone is answered with authority, whatever the code.
    assert!(answer.flags.contains(&"aa".to_string()), "{answer:?}");
    let answer = dig(
        server,
        &format!("{}.shout.echo.alk.dev", label(&json!({"text": " "}))),
        "TXT",
        &[],
    )
    .await;
    assert_eq!(
        (answer.status.as_str(), error(&answer)),
        ("SERVFAIL", "EMPTY_TEXT".into())
    );
    let answer = dig(server, "boom.probe.alk.dev", "TXT", &[]).await;
    assert_eq!(
        (answer.status.as_str(), error(&answer)),
        ("SERVFAIL", codes::INTERNAL.into())
    );
}

/// A service with outputs of any size.
mod bulk {
    use alknet_runtime::prelude::*;

    /// Makes text.
    #[alk_service(namespace = "bulk", version = "1.0.0")]
    pub enum BulkProtocol {
        /// `size` bytes of text.
        #[alk_operation(query, output = String)]
        Blob {
            /// How many bytes.
            size: usize,
        },
    }

    pub struct Bulk;

    impl BulkHandler for Bulk {
        async fn blob(&self, _: &OperationContext, req: Blob) -> Result<String, CallError> {
            Ok("abcdefghij".chars().cycle().take(req.size).collect())
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_too_large_for_udp_are_truncated_and_complete_over_tcp() {
    let env = alknet_runtime::OperationEnv::builder()
        .local(bulk::BulkProtocol::local(bulk::Bulk))
        .build()
        .unwrap();
    let server = serve_dns(env).await;
    let name = |size: usize| format!("{}.blob.bulk.alk.dev", label(&json!({ "size": size })));

    // Fits 512 bytes: several strings of one record.
    let answer = dig(server, &name(300), "TXT", &["+noedns"]).await;
    assert_eq!(answer.json().as_str().map(str::len), Some(300));

    // Too large for plain UDP, and for the EDNS size offered: the truncation flag, no
    // record, never a broken packet.
    for options in [&["+noedns"][..], &["+bufsize=1232"][..]] {
        let answer = dig(server, &name(2000), "TXT", options).await;
        assert!(
            answer.flags.contains(&"tc".to_string()),
            "{options:?}: {answer:?}"
        );
        assert!(answer.txt.is_empty(), "{answer:?}");
    }

    // Over TCP it arrives whole.
    let answer = dig(server, &name(2000), "TXT", &["+tcp"]).await;
    assert_eq!(answer.status, "NOERROR");
    assert_eq!(answer.json().as_str().map(str::len), Some(2000));

    // A strict resolver library (dnspython, which rejects bytes after the last record)
    // takes the truncated answer — header and question alone — and retries over TCP.
    let exchanges = dnspython(server, &name(2000)).await;
    assert_eq!(exchanges.as_array().map(Vec::len), Some(2), "{exchanges}");
    let (udp, tcp) = (&exchanges[0], &exchanges[1]);
    assert_eq!(udp["rcode"], "NOERROR");
    assert!(
        udp["flags"].as_array().unwrap().contains(&json!("tc")),
        "{udp}"
    );
    assert_eq!(udp["question"], json!([name(2000) + "."]));
    assert_eq!(udp["txt"], json!([]));
    let output: serde_json::Value = serde_json::from_str(tcp["txt"][0].as_str().unwrap()).unwrap();
    assert_eq!(output.as_str().map(str::len), Some(2000));
}

/// What dnspython (`interop/python/dns_client.py`) got for `name`'s TXT record: the UDP
/// exchange, and the TCP one if UDP was truncated.
async fn dnspython(server: std::net::SocketAddr, name: &str) -> serde_json::Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/python/dns_client.py");
    let output = tokio::process::Command::new(python())
        .arg(script)
        .args([&server.ip().to_string(), &server.port().to_string(), name])
        .output()
        .await
        .expect("python runs");
    assert!(
        output.status.success(),
        "dnspython failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn udp_and_tcp_share_one_port_and_a_taken_fixed_port_fails_at_once() {
    let (udp, tcp) = DnsAdapter::bind(([127, 0, 0, 1], 0).into()).await.unwrap();
    assert_eq!(udp.local_addr().unwrap(), tcp.local_addr().unwrap());

    // Someone else's TCP listener on the port asked for: no retry on another port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = DnsAdapter::bind(taken.local_addr().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
}
