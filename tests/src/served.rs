//! A node binary running `serve` in its own process, as its user starts it: `alknet`, or
//! a binary of one's own made with `alknet::cli`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running `PROGRAM serve --config FILE`, with what it reported on start (its key and
/// its listeners); killed when dropped.
pub struct Served {
    /// The process.
    pub child: Child,
    /// The node's key fingerprint, as `serve` printed it.
    pub fingerprint: String,
    listeners: HashMap<String, SocketAddr>,
    /// The configuration file it serves (rewrite it, then reload).
    pub config: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Served {
    /// Write `config` to a fresh file and start `program serve` on it, checking the file
    /// every 50 ms, with `envs` set; returns once the node has reported its listeners.
    pub fn start(program: &Path, config: &str, envs: &[(&str, &str)]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, config).unwrap();
        let mut command = Command::new(program);
        command.envs(envs.iter().copied());
        let mut served = Served::run(command, &path);
        served._dir = Some(dir);
        served
    }

    /// Run `command` — the node binary, or a command that runs it, such as `ip netns exec
    /// NAME alknet` — with `serve`, checking `config` every 50 ms; returns once the node
    /// has reported its listeners.
    pub fn run(mut command: Command, config: &Path) -> Served {
        let program = format!("{:?}", command.get_program());
        let mut child = command
            .args(["serve", "--watch-interval-ms", "50", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("{program} starts: {err}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut fingerprint = None;
        let mut listeners = HashMap::new();
        let mut in_listeners = false;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(key) = line.strip_prefix("node key: ") {
                fingerprint = Some(key.to_string());
            } else if line == "listeners:" {
                in_listeners = true;
            } else if in_listeners && line.starts_with("  ") {
                let mut words = line.split_whitespace();
                let name = words.next().unwrap().to_string();
                listeners.insert(name, words.next().unwrap().parse().unwrap());
            } else if in_listeners {
                break;
            }
        }
        // Keep reading, so the node never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Served {
            child,
            fingerprint: fingerprint.expect("the node prints its key"),
            listeners,
            config: config.to_path_buf(),
            _dir: None,
        }
    }

    /// Where the transport `name` (`http`, `call`, `websocket`, `dns`, `irpc`) listens.
    pub fn address(&self, name: &str) -> SocketAddr {
        *self
            .listeners
            .get(name)
            .unwrap_or_else(|| panic!("the node listens for {name}: {:?}", self.listeners))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Run `command` (a node binary's one-shot command, such as `keys add`) to its end with no
/// input; what it printed on stdout, or a panic showing what it said, when it failed.
pub fn output_of(mut command: Command) -> String {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("{:?} runs: {err}", command.get_program()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{command:?}: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
