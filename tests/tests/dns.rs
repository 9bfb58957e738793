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

/// An env serving [`bulk`] alone.
fn bulk_env() -> alknet_runtime::OperationEnv {
    alknet_runtime::OperationEnv::builder()
        .local(bulk::BulkProtocol::local(bulk::Bulk))
        .build()
        .unwrap()
}

/// The name asking for `size` bytes of text.
fn blob(size: usize) -> String {
    format!("{}.blob.bulk.alk.dev", label(&json!({ "size": size })))
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_too_large_for_udp_are_truncated_and_complete_over_tcp() {
    let server = serve_dns(bulk_env()).await;
    let name = blob;

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
    let exchanges = dnspython(server, &name(2000), None).await;
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

#[tokio::test(flavor = "multi_thread")]
async fn answers_point_at_the_question_name_so_larger_ones_fit_a_datagram() {
    let server = serve_dns(bulk_env()).await;
    for edns in [None, Some(1232)] {
        let limit = usize::from(edns.unwrap_or(512));
        let size = |output: usize, owner: Owner| answer_size(&blob(output), output, edns, owner);
        // The largest output whose answer fits, and would not with its owner name in full.
        let largest = (0..limit)
            .filter(|&output| size(output, Owner::Pointer) <= limit)
            .max()
            .unwrap();
        assert!(size(largest, Owner::InFull) > limit, "{edns:?}");

        let exchanges = dnspython(server, &blob(largest), edns).await;
        assert_eq!(exchanges.as_array().map(Vec::len), Some(1), "{exchanges}");
        let udp = &exchanges[0];
        assert!(!udp["flags"].as_array().unwrap().contains(&json!("tc")));
        assert_eq!(text_len(&udp["txt"][0]), largest);
        let wire = unhex(&udp["wire"]);
        assert_eq!(wire.len(), size(largest, Owner::Pointer), "{edns:?}");
        // The record's owner name, right after the question: a pointer to offset 12.
        let question_end = 12 + wire_len(&blob(largest)) + 4;
        assert_eq!(wire[question_end..question_end + 2], [0xC0, 0x0C]);

        let bufsize = format!("+bufsize={limit}");
        let options = [if edns.is_some() { &bufsize } else { "+noedns" }];
        let (flags, received) = dig_size(server, &blob(largest), &options).await;
        assert!(!flags.contains(&"tc".to_string()), "{flags:?}");
        assert_eq!(received, size(largest, Owner::Pointer));

        // One byte more does not fit: truncated, then whole over TCP, compressed there too.
        let (flags, _) = dig_size(server, &blob(largest + 1), &options).await;
        assert!(flags.contains(&"tc".to_string()), "{flags:?}");
        let exchanges = dnspython(server, &blob(largest + 1), edns).await;
        assert_eq!(exchanges.as_array().map(Vec::len), Some(2), "{exchanges}");
        let tcp = &exchanges[1];
        assert_eq!(text_len(&tcp["txt"][0]), largest + 1);
        assert_eq!(unhex(&tcp["wire"]).len(), size(largest + 1, Owner::Pointer));
    }
}

/// How an answer writes its record's owner name.
#[derive(Clone, Copy)]
enum Owner {
    /// A 2-byte pointer to the question's name (RFC 1035 §4.1.4).
    Pointer,
    /// Every label again.
    InFull,
}

/// The size of the answer to `name`'s TXT query whose output is `output` bytes of text
/// (and a JSON string: 2 more), for a query with or without EDNS.
fn answer_size(name: &str, output: usize, edns: Option<u16>, owner: Owner) -> usize {
    const HEADER: usize = 12;
    /// A record's type, class, TTL and data length; an OPT record without options.
    const RECORD_FIELDS: usize = 10;
    const OPT: usize = 11;
    let question = wire_len(name) + 4;
    let owner = match owner {
        Owner::Pointer => 2,
        Owner::InFull => wire_len(name),
    };
    let json = output + 2;
    // TXT strings of at most 255 bytes, each after its length.
    let data = json + json.div_ceil(255);
    HEADER + question + owner + RECORD_FIELDS + data + edns.map_or(0, |_| OPT)
}

/// How many bytes `name` (without its final dot) takes uncompressed: each label after its
/// length, then the root's empty label.
fn wire_len(name: &str) -> usize {
    name.len() + 2
}

/// The length of a JSON string's text, from what dnspython printed for a TXT record.
fn text_len(txt: &serde_json::Value) -> usize {
    let output: serde_json::Value = serde_json::from_str(txt.as_str().unwrap()).unwrap();
    output.as_str().unwrap().len()
}

/// The bytes of a hex string.
fn unhex(hex: &serde_json::Value) -> Vec<u8> {
    let hex = hex.as_str().unwrap();
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).unwrap())
        .collect()
}

/// The header flags and the size of what `dig` received for `name`'s TXT record over UDP
/// (`options` such as `+noedns`), without retrying a truncated answer over TCP.
async fn dig_size(
    server: std::net::SocketAddr,
    name: &str,
    options: &[&str],
) -> (Vec<String>, usize) {
    let output = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), name, "TXT"])
        .args([
            "+noall",
            "+comments",
            "+stats",
            "+tries=1",
            "+time=5",
            "+ignore",
        ])
        .args(options)
        .output()
        .await
        .expect("dig runs");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let after = |marker: &str, end: char| {
        let rest = text
            .split(marker)
            .nth(1)
            .unwrap_or_else(|| panic!("no {marker}: {text}"));
        rest.split(end).next().unwrap().trim().to_string()
    };
    let flags = after("flags: ", ';')
        .split_whitespace()
        .map(str::to_string)
        .collect();
    (flags, after("MSG SIZE  rcvd: ", '\n').parse().unwrap())
}

/// What dnspython (`interop/python/dns_client.py`) got for `name`'s TXT record: the UDP
/// exchange (with EDNS offering `edns` bytes, if given), and the TCP one if UDP was
/// truncated.
async fn dnspython(
    server: std::net::SocketAddr,
    name: &str,
    edns: Option<u16>,
) -> serde_json::Value {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/python/dns_client.py");
    let output = tokio::process::Command::new(python())
        .arg(script)
        .args([&server.ip().to_string(), &server.port().to_string(), name])
        .args(edns.map(|size| format!("--edns={size}")))
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

/// Serves the namespace `far` by calling `echo` in another env, as a remote node mounted
/// whole does: `far/echo/say` is `echo/say` there.
struct Whole(alknet_runtime::OperationEnv);

impl alknet_runtime::DispatchPath for Whole {
    fn invoke(
        &self,
        ctx: alknet_runtime::OperationContext,
        input: serde_json::Value,
    ) -> futures::future::BoxFuture<'static, Result<serde_json::Value, alknet_runtime::CallError>>
    {
        let inner = self.0.clone();
        Box::pin(async move {
            let (ns, op) = ctx.operation().name.split_once('/').unwrap();
            inner.invoke(ns, op, input).await.result
        })
    }

    fn subscribe(
        &self,
        _ctx: alknet_runtime::OperationContext,
        _input: serde_json::Value,
    ) -> futures::future::BoxFuture<
        'static,
        Result<alknet_runtime::ValueStream, alknet_runtime::CallError>,
    > {
        Box::pin(async { Err(alknet_runtime::CallError::internal("not here")) })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operation_whose_name_holds_a_slash_answers_under_one_label_per_part() {
    use alknet_example::{EchoProtocol, EchoService};
    let echo = EchoProtocol::local(EchoService::default());
    let mut spec = echo.spec().clone();
    spec.namespace = "far".into();
    for op in &mut spec.operations {
        op.name = format!("echo/{}", op.name);
        op.id = format!("far/{}", op.name);
        op.namespace = "far".into();
    }
    let inner = alknet_runtime::OperationEnv::builder()
        .local(echo)
        .build()
        .unwrap();
    let env = alknet_runtime::OperationEnv::builder()
        .mount(spec, Whole(inner))
        .build()
        .unwrap();
    let say = env.spec("far", "echo/say").unwrap().bindings();
    assert_eq!(say.dns_name.as_deref(), Some("say.echo.far"));
    let server = serve_dns(env).await;

    let input = label(&json!({"text": "hi"}));
    let answer = dig(server, &format!("{input}.say.echo.far.alk.dev"), "TXT", &[]).await;
    assert_eq!(answer.status, "NOERROR", "{answer:?}");
    assert_eq!(answer.json(), json!({"text": "hi", "length": 2}));
    let answer = dig(server, "served.echo.far.alk.dev", "TXT", &[]).await;
    assert_eq!(answer.status, "REFUSED", "{answer:?}");
    let answer = dig(server, &format!("{input}.say.far.alk.dev"), "TXT", &[]).await;
    assert_eq!(answer.status, "NXDOMAIN", "{answer:?}");
}
