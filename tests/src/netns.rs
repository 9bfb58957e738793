//! Hosts on a real network, on one machine: a Linux network namespace per host, each with
//! its own address on a veth link to one bridge, on which the test process itself sits
//! (`.254`) as the outside caller. Needs root (`ip netns`), as CI has.

use std::process::Command;

use tokio::runtime::Runtime;

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("`ip` runs (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One namespace per host on a bridge of its own, all deleted when dropped — by a failing
/// test too.
pub struct Network {
    tag: String,
    subnet: String,
    hosts: Vec<String>,
}

impl Network {
    /// A network of `hosts`, addressed `.1`, `.2`, … in their order.
    pub fn new(hosts: &[&str]) -> Network {
        let id = std::process::id() % 10_000;
        let network = Network {
            tag: format!("alk{id}"),
            subnet: format!("10.77.{}", id % 250),
            hosts: hosts.iter().map(|host| host.to_string()).collect(),
        };
        let bridge = network.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let outside = format!("{}/24", network.outside());
        ip(&["addr", "add", &outside, "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        for (index, host) in hosts.iter().enumerate() {
            let namespace = network.namespace(host);
            let (outside, inside) = (
                format!("{}v{index}h", network.tag),
                format!("{}v{index}n", network.tag),
            );
            ip(&["netns", "add", &namespace]);
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ]);
            ip(&["link", "set", &inside, "netns", &namespace]);
            ip(&["link", "set", &outside, "master", &bridge, "up"]);
            let address = format!("{}/24", network.address(host));
            ip(&["-n", &namespace, "addr", "add", &address, "dev", &inside]);
            ip(&["-n", &namespace, "link", "set", &inside, "up"]);
            ip(&["-n", &namespace, "link", "set", "lo", "up"]);
        }
        network
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn namespace(&self, host: &str) -> String {
        format!("{}-{host}", self.tag)
    }

    /// `host`'s address.
    pub fn address(&self, host: &str) -> String {
        let index = self.hosts.iter().position(|name| name == host);
        let index = index.unwrap_or_else(|| panic!("no host `{host}` in {:?}", self.hosts));
        format!("{}.{}", self.subnet, index + 1)
    }

    /// The test process's own address on the network: the outside caller's.
    pub fn outside(&self) -> String {
        format!("{}.254", self.subnet)
    }

    /// `program` run on `host`.
    pub fn command(&self, host: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.namespace(host), program]);
        command
    }

    /// A Tokio runtime whose threads are all on `host`: every socket a task spawned on it
    /// opens is that host's. (A thread's network namespace is inherited by the threads it
    /// starts; `block_on` would run on the caller's thread, so spawn instead.)
    pub fn runtime(&self, host: &str) -> Host {
        let path = format!("/var/run/netns/{}", self.namespace(host));
        let runtime = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let namespace = std::fs::File::open(&path).unwrap();
                    let entered = unsafe {
                        libc::setns(
                            std::os::fd::AsRawFd::as_raw_fd(&namespace),
                            libc::CLONE_NEWNET,
                        )
                    };
                    assert_eq!(
                        entered,
                        0,
                        "setns {path}: {}",
                        std::io::Error::last_os_error()
                    );
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .unwrap()
                })
                .join()
                .unwrap()
        });
        Host(Some(runtime))
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of each veth, and so the other end.
        for host in &self.hosts {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.namespace(host)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .output();
    }
}

/// A runtime on one host of a [`Network`]; shut down, without waiting, when dropped.
pub struct Host(Option<Runtime>);

impl Host {
    /// Run `future` on the host; its result.
    pub async fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> T {
        let runtime = self.0.as_ref().expect("running until dropped");
        runtime
            .spawn(future)
            .await
            .expect("the task ran to its end")
    }

    /// The runtime's handle, to spawn tasks on the host.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.0.as_ref().expect("running until dropped").handle()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
