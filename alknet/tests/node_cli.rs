//! `alknet serve`, `alknet call` and `alknet keys new`, run as a user runs them.
//!
//! This build has no transport adapters yet, so `serve` cannot be called from outside;
//! these tests observe its reloads in its structured log (stderr) and prove credentials
//! end to end through `alknet call`, which assembles the same node in-process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

fn alknet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_alknet"))
        .args(args)
        .env_remove("ALKNET_API_KEY")
        .env_remove("ALKNET_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("the alknet binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A running `alknet serve`, with its output (stdout) and its log (stderr) read line by line.
struct Server {
    child: Child,
    output: Receiver<String>,
    log: Receiver<String>,
}

impl Server {
    fn start(config: &Path, watch_ms: u64) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_alknet"))
            .args(["serve", "--config"])
            .arg(config)
            .args(["--watch-interval-ms", &watch_ms.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("alknet serve starts");
        let lines = |stream: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let output = lines(Box::new(child.stdout.take().unwrap()));
        let log = lines(Box::new(child.stderr.take().unwrap()));
        let server = Server { child, output, log };
        server.expect("INFO node ready");
        server
    }

    /// The next log line containing `needle`.
    fn expect(&self, needle: &str) -> String {
        next_line(&self.log, needle)
    }

    /// The next output line containing `needle`.
    fn expect_output(&self, needle: &str) -> String {
        next_line(&self.output, needle)
    }
}

/// The first line from `lines` containing `needle` (the lines skipped are shown on failure).
fn next_line(lines: &Receiver<String>, needle: &str) -> String {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line with `{needle}`; saw:\n{}", seen.join("\n")),
        }
    }
}

impl Server {
    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) with the pid of a child this test spawned and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill failed");
    }

    fn stop(mut self) {
        self.signal(libc::SIGTERM);
        self.expect("node stopped");
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `alknet keys new --id ID ARGS..`: the key, and the entry to paste.
fn new_key(id: &str, args: &[&str]) -> (String, String) {
    alknet_tests::new_api_key(Path::new(env!("CARGO_BIN_EXE_alknet")), id, args)
}

#[test]
fn serve_reports_its_listeners_and_reloads_on_sighup_keeping_the_old_config_when_broken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, "[listen]\nhttp = \"127.0.0.1:0\"\n").unwrap();
    // A watch interval long enough that only SIGHUP can trigger these reloads.
    let server = Server::start(&path, 3_600_000);
    let listener = server.expect_output("  http");
    assert!(listener.contains("127.0.0.1:"), "{listener}");
    server.expect_output("try: curl http://");

    let (_, entry) = new_key("ci", &["--scope", "echo:admin"]);
    std::fs::write(&path, format!("[listen]\nhttp = \"127.0.0.1:0\"\n{entry}")).unwrap();
    server.signal(libc::SIGHUP);
    let line = server.expect("configuration reloaded");
    assert!(
        line.contains("trigger=\"SIGHUP\"") || line.contains("trigger=SIGHUP"),
        "{line}"
    );
    assert!(
        line.contains("generation=2") && line.contains("changed=api_keys"),
        "{line}"
    );

    std::fs::write(
        &path,
        format!("{entry}\n[forwarding]\ndefault = \"sometimes\"\n"),
    )
    .unwrap();
    server.signal(libc::SIGHUP);
    let line = server.expect("configuration reload refused");
    assert!(
        line.contains("line 8") && line.contains("unknown variant `sometimes`"),
        "{line}"
    );

    // Fixed again, with a changed static setting: applied, with a restart asked for.
    std::fs::write(
        &path,
        format!("[listen]\nhttp = \"127.0.0.1:9090\"\n{entry}[forwarding]\ndefault = \"deny\"\n"),
    )
    .unwrap();
    server.signal(libc::SIGHUP);
    let line = server.expect("configuration reloaded");
    assert!(
        line.contains("generation=3") && line.contains("changed=forwarding"),
        "exactly one reload per SIGHUP that changes something: {line}"
    );
    assert!(line.contains("restart_required=true"), "{line}");
    server.stop();
}

#[test]
fn serve_reloads_when_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, "").unwrap();
    let server = Server::start(&path, 50);
    std::fs::write(
        &path,
        "[rate_limits]\nper_ip = { per_second = 1, burst = 1 }\n",
    )
    .unwrap();
    let line = server.expect("configuration reloaded");
    assert!(
        line.contains("file changed") && line.contains("changed=rate_limits"),
        "{line}"
    );
    server.stop();
}

#[test]
fn serve_enforces_its_rate_limits_and_forwarding_policy_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        "[listen]\nhttp = \"127.0.0.1:0\"\n\n[rate_limits]\nper_ip = { per_second = 1, burst = 1 }\n\n\
         [[forwarding.rules]]\noperations = \"echo/shout\"\naction = \"deny\"\n",
    )
    .unwrap();
    let server = Server::start(&path, 3_600_000);
    let line = server.expect_output("  http");
    let http_addr = line.split_whitespace().nth(1).unwrap().to_string();
    // curl's status line and headers: `-i`, body discarded.
    let post = |operation: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-i",
                "-o",
                "-",
                "-X",
                "POST",
                "-d",
                r#"{"text": "hi"}"#,
            ])
            .arg(format!("http://{http_addr}/v1/{operation}"))
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
    };
    let denied = post("echo/shout");
    assert!(denied.starts_with("http/1.1 403"), "{denied}");
    assert!(denied.contains("rule 1 of [forwarding]"), "{denied}");
    // The denied call spent no token: the next call passes, the one after is limited.
    assert!(post("echo/say").starts_with("http/1.1 200"));
    let limited = post("echo/say");
    assert!(limited.starts_with("http/1.1 429"), "{limited}");
    assert!(limited.contains("retry-after: 1"), "{limited}");
    assert!(limited.contains("resource_exhausted"), "{limited}");
    server.stop();
}

#[test]
fn serve_refuses_a_broken_config_in_one_sentence_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, "[listen]\n\ncall = \"localhost\"\n").unwrap();
    let out = alknet(&["serve", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.starts_with("alknet: ") && err.contains("node.toml, line 3: "),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn a_key_from_keys_new_calls_what_its_scopes_allow_once_it_is_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    let (admin, admin_entry) = new_key(
        "admin",
        &["--scope", "echo:admin", "--identity", "user:ops"],
    );
    let (plain, plain_entry) = new_key("plain", &[]);
    let (old, old_entry) = new_key(
        "old",
        &["--scope", "echo:admin", "--expires", "2001-01-01T00:00:00Z"],
    );
    std::fs::write(&path, format!("{admin_entry}{plain_entry}{old_entry}")).unwrap();
    let config = path.to_str().unwrap();
    let call = |key: &str, op: &str| alknet(&["call", "--config", config, "--api-key", key, op]);

    let out = call(&admin, "auth/whoami");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"id\": \"user:ops\""),
        "{}",
        stdout(&out)
    );
    assert!(call(&admin, "echo/served").status.success());

    let out = call(&plain, "echo/served");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("FORBIDDEN"), "{}", stderr(&out));

    let out = call(&old, "echo/served");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the API key `old` expired"),
        "{}",
        stderr(&out)
    );

    let out = call("alk_", "echo/say");
    assert!(stderr(&out).contains("too short"), "{}", stderr(&out));
}

#[test]
fn call_takes_input_from_an_argument_or_stdin_and_explains_bad_input() {
    let out = alknet(&["call", "echo/say", r#"{"text": "hi"}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "{\n  \"length\": 2,\n  \"text\": \"hi\"\n}\n");

    let mut child = Command::new(env!("CARGO_BIN_EXE_alknet"))
        .args(["call", "echo/shout", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), br#"{"text": "hey"}"#).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "\"HEY\"\n");

    for (args, message) in [
        (
            vec!["call", "echo/say", "{"],
            "alknet: the input is not JSON",
        ),
        (vec!["call", "echo", "{}"], "is not an operation"),
        (vec!["call", "echo/nope", "{}"], "alknet: NOT_FOUND"),
        (
            vec!["call", "echo/say", "{\"text\": 1}"],
            "alknet: INVALID_INPUT",
        ),
        (
            vec!["call", "echo/shout", "{\"text\": \" \"}"],
            "alknet: EMPTY_TEXT",
        ),
    ] {
        let out = alknet(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["call", "--help"],
        vec!["keys", "--help"],
        vec!["keys", "new", "--help"],
        vec!["keys", "signing-key", "--help"],
        vec!["keys", "token", "--help"],
        vec!["keys", "node", "--help"],
        vec!["schema", "--help"],
        vec!["quickstart", "--help"],
    ] {
        let out = alknet(&args);
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).contains("Usage: alknet"), "{args:?}");
    }
    let out = alknet(&["keys", "new", "--expires", "soon"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("`soon` is not a date and time"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_signing_key_from_keys_signing_key_signs_tokens_the_node_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("deploy.key");
    let secret_path = secret.to_str().unwrap();
    let out = alknet(&[
        "keys",
        "signing-key",
        "--key-id",
        "deploy",
        "--out",
        secret_path,
        "--identity",
        "user:deploy",
        "--scope",
        "echo:admin",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let entry = &text[text.find("[[token_keys]]").unwrap()..];
    let secret_hex = std::fs::read_to_string(&secret).unwrap();
    assert!(!text.contains(secret_hex.trim()), "the secret was printed");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Never overwrites a key.
    let again = alknet(&[
        "keys",
        "signing-key",
        "--key-id",
        "x",
        "--out",
        secret_path,
        "--identity",
        "y",
    ]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("cannot create"),
        "{}",
        stderr(&again)
    );

    let config = dir.path().join("node.toml");
    std::fs::write(&config, entry).unwrap();
    let out = alknet(&[
        "keys",
        "token",
        "--key-id",
        "deploy",
        "--secret-file",
        secret_path,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_string();
    assert!(token.starts_with("alkt1.deploy."), "{token}");

    let config = config.to_str().unwrap();
    let out = alknet(&["call", "--config", config, "--token", &token, "echo/served"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = alknet(&["call", "--config", config, "--token", &token, "auth/whoami"]);
    assert!(
        stdout(&out).contains("\"id\": \"user:deploy\""),
        "{}",
        stdout(&out)
    );

    let tampered = token.replacen("alkt1.deploy.", "alkt1.deploy.1", 1);
    let out = alknet(&[
        "call",
        "--config",
        config,
        "--token",
        &tampered,
        "echo/served",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the credential was refused"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn serve_answers_over_its_transports_and_sighup_changes_what_a_key_may_do() {
    use alknet_runtime::quic::{NodeIdentity, QuicConfig};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    let (key, entry) = new_key("ops", &["--scope", "echo:admin"]);
    let peer = NodeIdentity::generate().unwrap();
    let peer_entry = format!(
        "[[public_keys]]\nfingerprint = \"{}\"\nidentity = \"node:head\"\n",
        peer.fingerprint()
    );
    let listen = "[listen]\ncall = \"127.0.0.1:0\"\nwebsocket = \"127.0.0.1:0\"\nirpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\ndns = \"127.0.0.1:0\"\n";
    std::fs::write(&path, format!("{listen}{entry}{peer_entry}")).unwrap();
    // Long enough that only SIGHUP reloads within this test.
    let server = Server::start(&path, 600_000);
    let node_key = server
        .expect_output("node key:")
        .split_whitespace()
        .last()
        .unwrap()
        .to_string();
    let address = |name: &str| -> std::net::SocketAddr {
        let line = server.expect_output(&format!("  {name} "));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let (call_addr, websocket_addr, irpc_addr) =
        (address("call"), address("websocket"), address("irpc"));
    // The node reports its listeners in the order it starts them: HTTP last, so that
    // `/readyz` can name every other one.
    let (dns_addr, http_addr) = (address("dns"), address("http"));
    let http = |operation: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", &format!("Authorization: Bearer {key}"), "-d", "{}"])
            .arg(format!("http://{http_addr}/v1/{operation}"))
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let remote = |operation: &str| {
        alknet(&[
            "call",
            "--node",
            &call_addr.to_string(),
            "--node-key",
            &node_key,
            "--api-key",
            &key,
            operation,
        ])
    };

    // The call protocol, with the API key as the call's token.
    let out = remote("echo/served");
    assert!(out.status.success(), "{}", stderr(&out));
    // irpc, from an allow-listed node key.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = alknet_runtime::service_path::connect::<alknet_example::EchoProtocol>(
            irpc_addr,
            &node_key,
            &peer,
            &QuicConfig::default(),
        )
        .unwrap();
        let env = alknet_runtime::OperationEnv::builder()
            .local(alknet_example::EchoProtocol::service(client))
            .build()
            .unwrap();
        let echo = alknet_example::EchoClient::new(env)
            .say("over irpc".into())
            .await
            .unwrap();
        assert_eq!(echo.length, 9);
    });

    // HTTP, with the API key as a bearer token.
    assert_eq!(http("echo/served"), "200");
    // `alknet call --http`: an output, a subscription's items, an error in one sentence.
    let base = format!("http://{http_addr}");
    let over_http = |args: &[&str]| {
        let mut all = vec!["call", "--http", &base, "--api-key", &key];
        all.extend_from_slice(args);
        alknet(&all)
    };
    let out = over_http(&["echo/say", r#"{"text": "hi"}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"length\": 2"), "{}", stdout(&out));
    let out = over_http(&["echo/ticks", r#"{"count": 2}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"n\": 1") && stdout(&out).contains("\"n\": 2"),
        "{}",
        stdout(&out)
    );
    let out = over_http(&["echo/shout", r#"{"text": " "}"#]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("EMPTY_TEXT"), "{}", stderr(&out));
    // `alknet call --ws`: the same over the call protocol on a WebSocket.
    let ws = format!("ws://{websocket_addr}/call");
    let over_ws = |args: &[&str]| {
        let mut all = vec!["call", "--ws", &ws, "--api-key", &key];
        all.extend_from_slice(args);
        alknet(&all)
    };
    let out = over_ws(&["echo/served"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = over_ws(&["echo/ticks", r#"{"count": 2}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"n\": 2"), "{}", stdout(&out));
    let out = over_ws(&["echo/shout", r#"{"text": " "}"#]);
    assert!(stderr(&out).contains("EMPTY_TEXT"), "{}", stderr(&out));
    // DNS: `{"text":"hi"}` as a base64url label before `say.echo`.
    let dig = Command::new("dig")
        .args([
            &format!("@{}", dns_addr.ip()),
            "-p",
            &dns_addr.port().to_string(),
        ])
        .args(["+short", "eyJ0ZXh0IjoiaGkifQ.say.echo.alk.dev", "TXT"])
        .output()
        .expect("dig runs");
    let answer = String::from_utf8_lossy(&dig.stdout);
    assert!(
        answer.contains("length") && answer.contains("hi"),
        "{answer}"
    );

    // The key loses its scope; SIGHUP; the same call is now forbidden.
    let (_, plain_entry) = new_key("ops", &[]);
    let plain_entry = plain_entry.replace(
        plain_entry.lines().find(|l| l.starts_with("hash")).unwrap(),
        entry.lines().find(|l| l.starts_with("hash")).unwrap(),
    );
    std::fs::write(&path, format!("{listen}{plain_entry}{peer_entry}")).unwrap();
    server.signal(libc::SIGHUP);
    server.expect("SIGHUP");
    let out = remote("echo/served");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("FORBIDDEN"), "{}", stderr(&out));
    assert_eq!(http("echo/served"), "403");
    let out = alknet(&["call", "--http", &base, "--api-key", &key, "echo/served"]);
    assert!(stderr(&out).contains("FORBIDDEN"), "{}", stderr(&out));
    server.stop();
}

#[test]
fn a_key_from_keys_node_is_the_key_serve_proves_and_peers_pin() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.key");
    let made = alknet(&["keys", "node", "--out", key.to_str().unwrap()]);
    assert!(made.status.success(), "{}", stderr(&made));
    let text = stdout(&made);
    let fingerprint = text
        .lines()
        .find_map(|line| line.strip_prefix("node key: "))
        .expect("keys node prints the fingerprint")
        .to_string();
    assert!(fingerprint.starts_with("ed25519:"), "{fingerprint}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only the owner may read a node key");
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let again = alknet(&["keys", "node", "--out", key.to_str().unwrap()]);
    assert!(
        !again.status.success(),
        "an existing key is never overwritten"
    );

    // The entry it printed, as it printed it, is the configuration.
    let entry = &text[text.find("[node]").expect("keys node prints the entry")..];
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!("{entry}\n[listen]\ncall = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let server = Server::start(&config, 1000);
    assert_eq!(
        server.expect_output("node key: "),
        format!("node key: {fingerprint}")
    );
    let listener = server.expect_output("  call ");
    let address = listener.split_whitespace().last().unwrap().to_string();
    // A peer pinning that fingerprint connects; a stranger, anonymous, lists what is open.
    let listed = alknet(&[
        "call",
        "--node",
        &address,
        "--node-key",
        &fingerprint,
        "services/list",
        "{}",
    ]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).contains("/echo/say"), "{}", stdout(&listed));
    server.stop();

    // What `keys signing-key` writes is no node key, and serve says what is.
    let signing = dir.path().join("signing.key");
    let made = alknet(&[
        "keys",
        "signing-key",
        "--key-id",
        "k",
        "--identity",
        "svc:k",
        "--out",
        signing.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    std::fs::write(
        &config,
        format!("[node]\nkey = {:?}\n", signing.to_str().unwrap()),
    )
    .unwrap();
    let refused = alknet(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("as `alknet keys node --out FILE` writes"),
        "{}",
        stderr(&refused)
    );
}

/// `alknet secret ARGS..`, with `passphrase` in `ALKNET_SECRET_PASSPHRASE` (none: unset)
/// and no terminal to ask on: the child starts a session of its own.
fn secret(args: &[&str], passphrase: Option<&str>) -> Output {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_alknet"));
    command
        .arg("secret")
        .args(args)
        .env_remove("ALKNET_API_KEY")
        .env_remove("ALKNET_TOKEN")
        .env_remove("ALKNET_SECRET_PASSPHRASE")
        .env_remove("ALKNET_SECRET_MNEMONIC")
        .stdin(Stdio::null());
    if let Some(passphrase) = passphrase {
        command.env("ALKNET_SECRET_PASSPHRASE", passphrase);
    }
    // SAFETY: setsid(2) is async-signal-safe; it detaches the child from this terminal.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    command.output().expect("the alknet binary runs")
}

#[test]
fn secret_init_seals_a_seed_in_process_and_unlock_and_lock_act_on_a_served_node() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    let (key, entry) = new_key("keeper", &["--scope", "secret:admin"]);
    let (plain, plain_entry) = new_key("plain", &[]);
    let seed = dir.path().join("seed").join("secret.json");
    std::fs::write(
        &path,
        format!(
            "[listen]\nhttp = \"127.0.0.1:0\"\n\n[secret]\nfile = \"{}\"\nkdf_memory_kib = 1024\nkdf_target_ms = 0\nunlock_backoff_ms = 10\n\n{entry}{plain_entry}",
            seed.display()
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let passphrase = "correct horse battery staple";

    let out = secret(&["status", "--config", config], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"uninitialized\""),
        "{}",
        stdout(&out)
    );

    // No passphrase in the environment and no terminal: a sentence naming the variable.
    let out = secret(&["init", "--config", config], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("set ALKNET_SECRET_PASSPHRASE"),
        "{}",
        stderr(&out)
    );
    assert!(!seed.exists());

    let out = secret(&["init", "--config", config], Some(passphrase));
    assert!(out.status.success(), "{}", stderr(&out));
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["mnemonic"].as_str().unwrap().split(' ').count(), 24);
    assert!(stderr(&out).contains("shown this once"), "{}", stderr(&out));
    assert!(seed.exists());
    let out = secret(&["init", "--config", config], Some(passphrase));
    assert!(
        stderr(&out).contains("ALREADY_INITIALIZED"),
        "{}",
        stderr(&out)
    );

    let out = secret(&["unlock", "--config", config], Some(passphrase));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("acts on the seed of a running node"),
        "{}",
        stderr(&out)
    );

    let server = Server::start(&path, 600_000);
    let base = format!(
        "http://{}",
        server
            .expect_output("  http ")
            .split_whitespace()
            .nth(1)
            .unwrap()
    );
    let at_node = |args: &[&str], passphrase: Option<&str>, key: &str| {
        let mut all = args.to_vec();
        all.extend(["--http", &base, "--api-key", key]);
        secret(&all, passphrase)
    };
    let state = |out: &Output| -> String {
        assert!(out.status.success(), "{}", stderr(out));
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        status["state"].as_str().unwrap().to_string()
    };
    assert_eq!(state(&at_node(&["status"], None, &key)), "locked");
    let out = at_node(&["unlock"], Some(passphrase), &plain);
    assert!(stderr(&out).contains("FORBIDDEN"), "{}", stderr(&out));
    let out = at_node(&["unlock"], Some("not the passphrase"), &key);
    assert!(
        stderr(&out).contains("WRONG_PASSPHRASE"),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        state(&at_node(&["unlock"], Some(passphrase), &key)),
        "unlocked"
    );

    let out = alknet(&[
        "call",
        "--http",
        &base,
        "--api-key",
        &key,
        "secret/public_key",
        r#"{"path": "m/44'/1234'/0'"}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("\"public_key\""), "{}", stdout(&out));

    assert_eq!(state(&at_node(&["lock"], None, &key)), "locked");
    server.stop();
}

#[test]
fn keys_kept_in_storage_authenticate_a_served_node_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(
        &path,
        format!(
            "[listen]\nhttp = \"127.0.0.1:0\"\n\n[storage]\nfile = \"{}\"\nidentities = true\n",
            dir.path().join("storage.sqlite3").display()
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let key_of = |out: &Output| -> String {
        assert!(out.status.success(), "{}", stderr(out));
        stdout(out)
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with("alk_"))
            .expect("keys add prints the key")
            .to_string()
    };
    // In this process, before the node runs: as the local operator.
    let admin = key_of(&alknet(&[
        "keys",
        "add",
        "--config",
        config,
        "--id",
        "admin",
        "--resource",
        "graph:*",
    ]));
    let ci = key_of(&alknet(&[
        "keys",
        "add",
        "--config",
        config,
        "--id",
        "ci",
        "--scope",
        "echo:admin",
    ]));
    let again = alknet(&["keys", "add", "--config", config, "--id", "ci"]);
    assert!(
        stderr(&again).contains("ALREADY_EXISTS"),
        "{}",
        stderr(&again)
    );

    let server = Server::start(&path, 600_000);
    let base = format!(
        "http://{}",
        server
            .expect_output("  http ")
            .split_whitespace()
            .nth(1)
            .unwrap()
    );
    let served = |key: &str| alknet(&["call", "--http", &base, "--api-key", key, "echo/served"]);
    assert!(served(&ci).status.success(), "{}", stderr(&served(&ci)));
    let listed = alknet(&["keys", "list", "--http", &base, "--api-key", &admin]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(
        stdout(&listed).contains("\"ci\"") && !stdout(&listed).contains(&ci),
        "{}",
        stdout(&listed)
    );
    let revoked = alknet(&[
        "keys",
        "revoke",
        "--http",
        &base,
        "--api-key",
        &admin,
        "--id",
        "ci",
    ]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let refused = served(&ci);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("UNAUTHENTICATED"),
        "{}",
        stderr(&refused)
    );
    server.stop();
}
