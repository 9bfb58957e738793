//! A call three hops deep across three nodes, each on a host of its own (a network
//! namespace: needs root, as CI has) — `first` on A calls `second`, which A reaches on B
//! over irpc; `second` calls `third`, which B reaches on C over the call protocol — keeps
//! its deadline, shrinking, on every hop, and cancelling it at the top cancels every hop's
//! handler.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alknet::{Listeners, Node};
use alknet_runtime::config::ConfigServiceImpl;
use alknet_runtime::prelude::*;
use alknet_runtime::quic::NodeIdentity;
use alknet_tests::netns::{Host, Network};

/// What one hop's handler saw: started, cancelled, and the time left when it started.
#[derive(Default)]
struct Seen {
    started: AtomicUsize,
    cancelled: AtomicUsize,
    remaining_ms: AtomicUsize,
}

impl Seen {
    fn start(self: &Arc<Self>, ctx: &OperationContext) -> Cancelled {
        let left = ctx
            .remaining()
            .map_or(usize::MAX, |d| d.as_millis() as usize);
        self.remaining_ms.store(left, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::SeqCst);
        Cancelled(self.clone())
    }
}

/// Counts a handler whose future was dropped before it finished: every one here is.
struct Cancelled(Arc<Seen>);

impl Drop for Cancelled {
    fn drop(&mut self) {
        self.0.cancelled.fetch_add(1, Ordering::SeqCst);
    }
}

/// The first hop.
#[alk_service(namespace = "first", version = "0.1.0", calls = ["second/*"])]
enum FirstProtocol {
    /// Calls `second/pass`.
    #[alk_operation(mutation)]
    Begin,
}

/// The second hop.
#[alk_service(namespace = "second", version = "0.1.0", calls = ["third/*"])]
enum SecondProtocol {
    /// Calls `third/wait`.
    #[alk_operation(mutation)]
    Pass,
}

/// The last hop.
#[alk_service(namespace = "third", version = "0.1.0")]
enum ThirdProtocol {
    /// Waits until cancelled.
    #[alk_operation(mutation)]
    Wait,
}

struct First(Arc<Seen>);
struct Second(Arc<Seen>);
struct Third(Arc<Seen>);

impl FirstHandler for First {
    async fn begin(&self, ctx: &OperationContext, _: Begin) -> Result<(), CallError> {
        let _cancelled = self.0.start(ctx);
        SecondClient::new(ctx.env()).pass().await
    }
}

impl SecondHandler for Second {
    async fn pass(&self, ctx: &OperationContext, _: Pass) -> Result<(), CallError> {
        let _cancelled = self.0.start(ctx);
        ThirdClient::new(ctx.env()).wait().await
    }
}

impl ThirdHandler for Third {
    async fn wait(&self, ctx: &OperationContext, _: Wait) -> Result<(), CallError> {
        let _cancelled = self.0.start(ctx);
        std::future::pending().await
    }
}

fn key(dir: &Path, name: &str) -> String {
    let key = NodeIdentity::generate().unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.private_key_pem()).unwrap();
    key.fingerprint().to_string()
}

/// A node of `text` assembled by `assemble`, started on `host` (so its sockets are that
/// host's), and its listeners.
async fn node(
    host: &Host,
    dir: &Path,
    name: &'static str,
    text: String,
    assemble: impl FnOnce(alknet::NodeBuilder) -> alknet::NodeBuilder + Send + 'static,
) -> (Node, Listeners) {
    let config = format!(
        "[node]\nkey = {:?}\n\n[storage]\nin_memory = true\n\n{text}",
        dir.join(format!("{name}.key"))
    );
    host.run(async move {
        let builder =
            Node::builder(ConfigServiceImpl::from_text(config, name).unwrap()).without_secret();
        let node = assemble(builder).build().unwrap();
        let listeners = node.start().await.unwrap();
        (node, listeners)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_three_hops_deep_keeps_its_deadline_and_is_cancelled_on_every_hop() {
    let network = Network::new(&["a", "b", "c"]);
    let hosts = ["a", "b", "c"].map(|host| network.runtime(host));
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        key(dir.path(), "a"),
        key(dir.path(), "b"),
        key(dir.path(), "c"),
    );
    let seen: [Arc<Seen>; 3] = Default::default();
    let trusted = |fingerprint: &str, name: &str| {
        format!(
            "[[public_keys]]\nfingerprint = \"{fingerprint}\"\nidentity = \"node:{name}\"\ncluster = true\n\n"
        )
    };

    let third = seen[2].clone();
    let (_c_node, c_up) = node(
        &hosts[2],
        dir.path(),
        "c",
        format!(
            "[listen]\ncall = \"{}:0\"\n\n{}",
            network.address("c"),
            trusted(&b, "b")
        ),
        |n| n.local(ThirdProtocol::local(Third(third))),
    )
    .await;
    let second = seen[1].clone();
    let (_b_node, b_up) = node(
        &hosts[1],
        dir.path(),
        "b",
        format!(
            "[listen]\nirpc = \"{}:0\"\n\n[services]\nthird = {{ peer = \"c\" }}\n\n[[peers]]\nname = \"c\"\naddress = \"{}\"\nfingerprint = \"{c}\"\n\n{}",
            network.address("b"),
            c_up.address("call").unwrap(),
            trusted(&a, "a")
        ),
        |n| {
            n.local(SecondProtocol::local(Second(second)))
                .local(ThirdProtocol::local(Third(Arc::default())))
        },
    )
    .await;
    let first = seen[0].clone();
    let (a_node, _a_up) = node(
        &hosts[0],
        dir.path(),
        "a",
        format!(
            "[services]\nsecond = {{ peer = \"b\", over = \"irpc\" }}\n\n[[peers]]\nname = \"b\"\naddress = \"{}:1\"\nirpc = \"{}\"\nfingerprint = \"{b}\"\n",
            network.address("b"),
            b_up.address("irpc").unwrap()
        ),
        |n| {
            n.local(FirstProtocol::local(First(first)))
                .local(SecondProtocol::local(Second(Arc::default())))
        },
    )
    .await;

    // An outside call with 5 s to go, made on a task of its own so it can be cancelled.
    let env = a_node
        .env()
        .with_caller(Caller::new().timeout(Duration::from_secs(5)));
    let call = hosts[0]
        .handle()
        .spawn(async move { env.invoke("first", "begin", serde_json::Value::Null).await });
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while seen[2].started.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the third hop never started: {:?}",
        seen.each_ref().map(|s| s.started.load(Ordering::SeqCst))
    );

    // Each hop starts with less time than the one before it, all of it under 5 s.
    let left: Vec<usize> = seen
        .iter()
        .map(|s| s.remaining_ms.load(Ordering::SeqCst))
        .collect();
    assert!(
        left[0] <= 5000 && left[0] >= left[1] && left[1] >= left[2] && left[2] > 4000,
        "{left:?}"
    );

    // Cancelled at the top: every hop's handler is dropped, within a second.
    call.abort();
    let cascaded = tokio::time::timeout(Duration::from_secs(1), async {
        while seen.iter().any(|s| s.cancelled.load(Ordering::SeqCst) == 0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let cancelled = seen.each_ref().map(|s| s.cancelled.load(Ordering::SeqCst));
    assert!(cascaded.is_ok(), "cancelled per hop: {cancelled:?}");
}
