//! Configuration: the documented example, the embedded default, validation that names the
//! line, and reloads that change everything or nothing.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use alknet_runtime::config::{
    ConfigServiceImpl, ForwardingAction, PeerPath, Placement, ProxyHeader, Rate, RateLimits,
    ReloadPart, parse,
};
use alknet_runtime::{ResourceGrant, credentials};

fn documented_example() -> String {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )
    .unwrap();
    let start = doc
        .find("```toml\n")
        .expect("docs/configuration.md has a toml block")
        + 8;
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_string()
}

#[test]
fn the_documented_example_is_valid_and_means_what_its_comments_say() {
    let (static_config, dynamic) = parse(&documented_example(), "docs").unwrap();
    let addr = |text: &str| Some(text.parse::<SocketAddr>().unwrap());
    assert_eq!(static_config.listen.call, addr("127.0.0.1:4433"));
    assert_eq!(static_config.listen.http, addr("127.0.0.1:8080"));
    assert_eq!(static_config.dns_zone, "alk.dev");
    let http = &static_config.http;
    assert_eq!(http.max_body_bytes.map(|n| n.get()), Some(1024 * 1024));
    assert_eq!(http.request_timeout_ms.map(|n| n.get()), Some(30_000));
    assert_eq!(http.max_concurrent_requests.map(|n| n.get()), Some(1024));
    // Every other number in [http] is shown with its default, so the limits they give are
    // the defaults.
    assert_eq!(
        alknet_runtime::adapters::http::HttpLimits::from_settings(http),
        alknet_runtime::adapters::http::HttpLimits::default()
    );
    assert_eq!(
        http.mcp_allowed_hosts.as_deref(),
        Some(&["localhost".to_string(), "127.0.0.1".into(), "::1".into()][..])
    );
    let call = &static_config.call;
    assert_eq!(call.max_frame_bytes.map(|n| n.get()), Some(16 << 20));
    assert_eq!(
        call.unauthenticated_max_frame_bytes.map(|n| n.get()),
        Some(1 << 20)
    );
    assert_eq!(call.max_concurrent_calls.map(|n| n.get()), Some(1024));
    assert_eq!(
        call.unauthenticated_max_concurrent_calls.map(|n| n.get()),
        Some(16)
    );
    assert_eq!(
        call.connection_buffer_bytes.map(|n| n.get()),
        Some(64 << 20)
    );
    assert_eq!(call.node_buffer_bytes.map(|n| n.get()), Some(1 << 30));
    assert_eq!(
        call.unauthenticated_buffer_bytes.map(|n| n.get()),
        Some(64 << 20)
    );
    assert_eq!(call.max_connections.map(|n| n.get()), Some(4096));
    assert_eq!(call.max_connections_per_address.map(|n| n.get()), Some(64));
    assert_eq!(call.handshake_timeout_ms.map(|n| n.get()), Some(500));
    assert_eq!(call.frame_read_timeout_ms.map(|n| n.get()), Some(10_000));
    assert_eq!(call.idle_timeout_ms.map(|n| n.get()), Some(600));
    // Every number in [call] is shown with its default, so the limits they give are the
    // defaults; the origins are an example.
    assert_eq!(
        alknet_runtime::call::CallConfig::from_settings(call),
        alknet_runtime::call::CallConfig::default()
    );
    assert_eq!(
        call.websocket_allowed_origins.as_deref(),
        Some(&["https://app.example".to_string()][..])
    );
    let irpc = &static_config.irpc;
    assert_eq!(irpc.max_request_bytes.map(|n| n.get()), Some(16 << 20));
    assert_eq!(irpc.max_concurrent_streams.map(|n| n.get()), Some(1024));
    assert_eq!(
        alknet_runtime::service_path::IrpcLimits::from_settings(irpc).max_request_size,
        16 << 20
    );
    assert_eq!(irpc.quic_config().max_concurrent_streams, 1024);
    assert_eq!(
        static_config.node_key.as_deref(),
        Some(Path::new("/etc/alknet/node.key"))
    );
    assert_eq!(static_config.worker_threads.map(|n| n.get()), Some(4));
    assert_eq!(static_config.drain_time, std::time::Duration::from_secs(5));

    assert_eq!(dynamic.token_window, Duration::from_secs(300));
    assert_eq!(dynamic.auth_cache, Duration::from_millis(5000));
    let ci = &dynamic.api_keys[0];
    assert_eq!(ci.id, "ci");
    assert_eq!(ci.identity.id, "svc:ci");
    assert_eq!(ci.identity.scopes, ["echo:admin", "config:read"]);
    assert_eq!(
        ci.identity.resources,
        [ResourceGrant::new("graph", ["read"])]
    );
    assert_eq!(ci.expires_at, Some(1_893_456_000));
    assert_eq!(
        credentials::api_key_hash("alk_docsExampleKeyNeverUseThisOne0123456789ab"),
        format!(
            "sha256:{}",
            ci.hash
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    );
    let worker_key = alknet_runtime::key_fingerprint(&[9u8; 32]);
    assert_eq!(
        dynamic.public_keys[&worker_key].identity.id,
        "node:worker-1"
    );
    assert!(dynamic.public_keys[&worker_key].cluster);
    assert_eq!(dynamic.token_keys["deploy"].identity.id, "user:deploy");
    assert_eq!(dynamic.peers[0].name, "worker-1");
    assert_eq!(dynamic.peers[0].irpc.as_deref(), Some("127.0.0.1:4534"));
    assert_eq!(static_config.services["storage"], Placement::Local);
    assert_eq!(
        static_config.services["secret"],
        Placement::Peer {
            peer: "worker-1".into(),
            over: PeerPath::Irpc
        }
    );

    let policy = &dynamic.forwarding;
    let rule = policy.decide("storage/get_node", Some("user:ada")).unwrap();
    assert_eq!(
        (rule.action, rule.peer.as_deref()),
        (ForwardingAction::Forward, Some("worker-1"))
    );
    assert_eq!(
        policy.action("echo/say", Some("guest:7")),
        ForwardingAction::Deny
    );
    assert_eq!(policy.action("echo/say", None), ForwardingAction::Local);
    assert_eq!(
        dynamic.rate_limits.per_identity,
        Some(Rate {
            per_second: 100,
            burst: 200
        })
    );
    // The example shows the keying settings at their defaults.
    let defaults = RateLimits::default();
    let limits = &dynamic.rate_limits;
    assert_eq!(
        (limits.ipv4_prefix, limits.ipv6_prefix),
        (defaults.ipv4_prefix, defaults.ipv6_prefix)
    );
    assert_eq!((limits.ipv4_prefix, limits.ipv6_prefix), (32, 64));
    assert!(limits.trusted_proxies.is_empty());
    assert_eq!(limits.proxy_header, ProxyHeader::XForwardedFor);
}

#[test]
fn limits_and_threads_are_accepted_at_their_bounds_and_refused_past_them() {
    let accepted = [
        "[node]\nworker_threads = 1\n",
        "[node]\nworker_threads = 1024\n",
        "[rate_limits]\nipv4_prefix = 0\nipv6_prefix = 0\n",
        "[rate_limits]\nipv4_prefix = 32\nipv6_prefix = 128\n",
        "[rate_limits]\ntrusted_proxies = [\"192.0.2.10\", \"10.0.0.0/8\", \"2001:db8::/32\"]\n",
    ];
    for text in accepted {
        parse(text, "node.toml").unwrap_or_else(|err| panic!("{text}\n=> {err}"));
    }
    // The line of the setting, or of its section when the problem is across settings.
    let refused = [
        ("[node]\nworker_threads = 0\n", 2, "between 1 and 1024"),
        ("[node]\nworker_threads = 1025\n", 2, "between 1 and 1024"),
        (
            "[rate_limits]\nipv4_prefix = 33\n",
            1,
            "rate_limits.ipv4_prefix is 33",
        ),
        (
            "[rate_limits]\nipv6_prefix = 129\n",
            1,
            "rate_limits.ipv6_prefix is 129",
        ),
        (
            "[rate_limits]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            2,
            "not an IP address or CIDR",
        ),
        (
            "[rate_limits]\ntrusted_proxies = [\"proxy.local\"]\n",
            2,
            "not an IP address or CIDR",
        ),
        (
            "[rate_limits]\nproxy_header = \"x-real-ip\"\n",
            2,
            "unknown variant `x-real-ip`",
        ),
    ];
    for (text, line, problem) in refused {
        let err = parse(text, "node.toml").expect_err(text);
        assert_eq!(err.line, Some(line), "{text}\n=> {err}");
        assert!(err.message.contains(problem), "{text}\n=> {err}");
    }
}

#[test]
fn the_embedded_default_runs_every_transport_on_loopback() {
    let config = ConfigServiceImpl::embedded();
    let listen = &config.static_config().listen;
    for (name, addr) in [
        ("call", listen.call),
        ("websocket", listen.websocket),
        ("http", listen.http),
        ("dns", listen.dns),
        ("irpc", listen.irpc),
    ] {
        let addr = addr.unwrap_or_else(|| panic!("the default has no {name} listener"));
        assert!(addr.ip().is_loopback(), "{name} listens on {addr}");
    }
    assert!(config.snapshot().api_keys.is_empty());
}

const HASH: &str = "sha256:55f32936c9cadebe169755b6ee8a2e62e3fc8a3e8bcc83c92a4da8c54b05c331";

#[test]
fn every_invalid_file_is_refused_with_its_line_and_problem() {
    let cases: Vec<(String, usize, &str)> = vec![
        ("[listen]\ncall = \"nowhere\"\n".into(), 2, "invalid socket address"),
        ("[listen]\nftp = \"127.0.0.1:21\"\n".into(), 2, "unknown field `ftp`"),
        ("[[api_keys]]\nid = \"a\"\nhash = \"sha256:abc\"\nidentity = \"x\"\n".into(), 3, "is not a key hash"),
        (format!("\n[[api_keys]]\nid = \"a\"\nhash = \"{HASH}\"\nidentity = \"x\"\nexpires = 2030-01-01\n"), 6, "needs a date, a time and an offset"),
        (format!("[[api_keys]]\nid = \"a\"\nhash = \"{HASH}\"\nidentity = \"x\"\n\n[[api_keys]]\nid = \"a\"\nhash = \"sha256:{}\"\nidentity = \"y\"\n", "0".repeat(64)), 6, "the API key id `a` is already defined on line 1"),
        (format!("[[api_keys]]\nid = \"a\"\nhash = \"{HASH}\"\nidentity = \"x\"\n[[api_keys]]\nid = \"b\"\nhash = \"{HASH}\"\nidentity = \"y\"\n"), 5, "same hash"),
        ("[[public_keys]]\nfingerprint = \"ed25519:xyz\"\nidentity = \"n\"\n".into(), 2, "not a key fingerprint"),
        ("[[token_keys]]\nkey_id = \"a.b\"\npublic_key = \"00\"\nidentity = \"n\"\n".into(), 2, "may use only letters"),
        ("[[api_keys]]\nid = \"a\"\nhash = \"x\"\nidentity = \"has space\"\n".into(), 3, "not a key hash"),
        ("[forwarding]\n[[forwarding.rules]]\noperations = \"storage/*\"\naction = \"forward\"\npeer = \"ghost\"\n".into(), 2, "`ghost`, which is not a peer"),
        ("[forwarding]\n[[forwarding.rules]]\noperations = \"*/get\"\naction = \"deny\"\n".into(), 2, "only at its end"),
        ("[forwarding]\ndefault = \"maybe\"\n".into(), 2, "unknown variant `maybe`"),
        ("[forwarding]\ndefault = \"forward\"\n".into(), 2, "cannot be `forward`"),
        ("[[peers]]\nname = \"w\"\naddress = \"127.0.0.1:1\"\nfingerprint = \"ed25519:{}\"\n\n[[forwarding.rules]]\noperations = \"echo/*\"\naction = \"forward\"\n".replace("{}", &"0".repeat(64)), 6, "needs a `peer`"),
        ("\n\n[rate_limits]\nper_ip = { per_second = 0, burst = 1 }\n".into(), 3, "at least 1"),
        ("[auth]\ntoken_window_secs = 0\n".into(), 2, "between 1 and 86400"),
        ("[listen]\ncall = \"127.0.0.1:1\n".into(), 2, "invalid"),
        ("[http]\nmax_concurrent_requests = 0\n".into(), 2, "nonzero"),
        ("[http]\nrequest_timeout_ms = -5\n".into(), 2, "invalid value"),
        ("[http]\nmcp_allowed_host = []\n".into(), 2, "unknown field `mcp_allowed_host`"),
        ("[call]\nmax_connections = 0\n".into(), 2, "nonzero"),
        ("[call]\nmax_frame_size = 10\n".into(), 2, "unknown field `max_frame_size`"),
        ("[services]\nsecret = \"remote\"\n".into(), 2, "`remote` is no placement"),
        ("[services]\nsecret = 3\n".into(), 2, "`\"local\"`, `\"off\"`, or a peer"),
        ("[services]\nsecret = { peer = \"s\", via = \"irpc\" }\n".into(), 2, "unknown field `via`"),
        ("[services]\nsecret = { peer = \"s\", over = \"grpc\" }\n".into(), 2, "unknown variant `grpc`"),
        ("\n[services]\nsecret = { peer = \"ghost\" }\n".into(), 3, "places `secret` on `ghost`, which is not a peer"),
        ("[[peers]]\nname = \"s\"\naddress = \"127.0.0.1:1\"\nfingerprint = \"ed25519:{}\"\n\n[services]\nsecret = { peer = \"s\", over = \"irpc\" }\n".replace("{}", &"0".repeat(64)), 7, "has no `irpc` address"),
    ];
    for (text, line, problem) in cases {
        let err = parse(&text, "node.toml").expect_err(&text);
        assert_eq!(err.line, Some(line), "{text}\n=> {err}");
        assert!(err.message.contains(problem), "{text}\n=> {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("node.toml, line {line}: ")),
            "{err}"
        );
    }
}

fn key_entry(id: &str, identity: &str, scopes: &str) -> String {
    let hash = credentials::api_key_hash(&format!("alk_{id}-0123456789012345678901"));
    format!(
        "[[api_keys]]\nid = \"{id}\"\nhash = \"{hash}\"\nidentity = \"{identity}\"\nscopes = [{scopes}]\n"
    )
}

#[test]
fn a_broken_file_changes_nothing_and_says_why_then_a_fixed_one_applies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, key_entry("ci", "svc:ci", "\"echo:admin\"")).unwrap();
    let config = ConfigServiceImpl::from_file(&path).unwrap();
    let before = config.snapshot();
    assert_eq!(before.generation, 1);

    std::fs::write(
        &path,
        format!("{}\n[rate_limits\n", key_entry("ci", "svc:other", "")),
    )
    .unwrap();
    let err = config.reload(ReloadPart::All).unwrap_err();
    assert_eq!(err.line, Some(7), "{err}");
    assert!(err.origin.ends_with("node.toml"));
    assert_eq!(
        config.snapshot(),
        before,
        "a refused reload changed the configuration"
    );
    let status = config.status();
    assert_eq!((status.generation, status.failed_reloads), (1, 1));
    assert_eq!(status.last_error.as_deref(), Some(err.to_string().as_str()));

    std::fs::write(&path, key_entry("ci", "svc:other", "")).unwrap();
    let report = config.reload(ReloadPart::All).unwrap();
    assert_eq!(report.generation, 2);
    assert_eq!(report.changed, ["api_keys"]);
    assert!(!report.restart_required);
    assert_eq!(config.snapshot().api_keys[0].identity.id, "svc:other");
    assert_eq!(config.status().last_error, None);
    // The old snapshot is untouched: whoever holds it keeps it.
    assert_eq!(before.api_keys[0].identity.id, "svc:ci");

    let unchanged = config.reload(ReloadPart::All).unwrap();
    assert_eq!((unchanged.generation, unchanged.changed.len()), (2, 0));
}

#[test]
fn a_missing_file_is_refused_naming_it() {
    let err = ConfigServiceImpl::from_file("/nonexistent/node.toml")
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/node.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn partial_reloads_apply_only_their_section_and_static_changes_need_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    let limits = |n: u32| format!("[rate_limits]\nper_ip = {{ per_second = {n}, burst = {n} }}\n");
    let deny = "[forwarding]\ndefault = \"deny\"\n";
    std::fs::write(&path, limits(5)).unwrap();
    let config = ConfigServiceImpl::from_file(&path).unwrap();

    std::fs::write(
        &path,
        format!("{}{}{}", limits(9), deny, key_entry("k", "svc:k", "")),
    )
    .unwrap();
    let report = config.reload(ReloadPart::Forwarding).unwrap();
    assert_eq!(report.changed, ["forwarding"]);
    let now = config.snapshot();
    assert_eq!(now.forwarding.default, ForwardingAction::Deny);
    assert_eq!(now.rate_limits.per_ip.unwrap().per_second, 5);
    assert!(now.api_keys.is_empty());

    let report = config.reload(ReloadPart::RateLimits).unwrap();
    assert_eq!(report.changed, ["rate_limits"]);
    assert!(config.snapshot().api_keys.is_empty());

    std::fs::write(
        &path,
        format!("[listen]\nhttp = \"127.0.0.1:9\"\n{}{}", limits(9), deny),
    )
    .unwrap();
    let report = config.reload(ReloadPart::All).unwrap();
    assert!(report.restart_required);
    assert_eq!(
        config.static_config().listen.http,
        None,
        "static settings changed without a restart"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_watcher_never_applies_a_file_caught_mid_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, key_entry("w", "svc:w", "")).unwrap();
    let config = std::sync::Arc::new(ConfigServiceImpl::from_file(&path).unwrap());
    // Checks at 50 ms, 100 ms, ...; a change must read the same 25 ms later.
    let watcher = config.clone().watch(Duration::from_millis(50));

    // A save in two writes: the file is truncated just before a check (an empty file is
    // a valid configuration, without the key), and written whole while the watcher waits
    // for it to settle.
    tokio::time::sleep(Duration::from_millis(40)).await;
    std::fs::write(&path, "").unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let whole = format!(
        "{}{}",
        key_entry("w", "svc:w", ""),
        key_entry("x", "svc:x", "")
    );
    std::fs::write(&path, whole).unwrap();
    tokio::time::sleep(Duration::from_millis(140)).await;

    let snapshot = config.snapshot();
    assert_eq!(
        snapshot.generation, 2,
        "one reload for one save, never the empty file"
    );
    assert_eq!(snapshot.api_keys.len(), 2);
    assert_eq!(config.status().failed_reloads, 0);
    watcher.abort();
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn the_watcher_reloads_when_the_file_content_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, "").unwrap();
    let config = std::sync::Arc::new(ConfigServiceImpl::from_file(&path).unwrap());
    assert!(
        config.reload_if_changed().is_none(),
        "reloaded an unchanged file"
    );
    let watcher = config.clone().watch(Duration::from_millis(50));

    std::fs::write(&path, key_entry("w", "svc:w", "")).unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(config.snapshot().generation, 2);
    assert_eq!(config.snapshot().api_keys[0].id, "w");

    // A broken save is tried once and refused; the next good save applies.
    std::fs::write(&path, "api_keys = 3\n").unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(config.status().failed_reloads, 1);
    assert_eq!(config.snapshot().generation, 2);
    std::fs::write(&path, "").unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(config.snapshot().generation, 3);
    assert_eq!(config.status().failed_reloads, 1);
    watcher.abort();
}
