//! Services the integration tests share: `vault` (access control), `orders` and `relay`
//! (composition with and without an authority), and `probe` (cancellation, deadlines,
//! panics, request ids).

pub mod vault {
    //! Access control.
    use alknet_runtime::prelude::*;

    /// Holds secrets behind scopes.
    #[alk_service(namespace = "vault", version = "1.0.0")]
    pub enum VaultProtocol {
        /// Open to anyone.
        #[alk_operation(query, output = String)]
        Motd,
        /// Needs the scope `vault:read`.
        #[alk_operation(query, output = String, scopes = ["vault:read"])]
        Read,
        /// Needs one of `vault:admin` and `root`.
        #[alk_operation(mutation, output = String, any_scopes = ["vault:admin", "root"])]
        Rotate,
        /// Needs `read` on the `graph` resource.
        #[alk_operation(query, output = String, resource = "graph:read")]
        Graph,
        /// Only nested calls reach it.
        #[alk_operation(query, output = String, internal)]
        Peek,
    }

    /// The `vault` service.
    pub struct Vault;

    impl VaultHandler for Vault {
        async fn motd(&self, _: &OperationContext, _: Motd) -> Result<String, CallError> {
            Ok("welcome".into())
        }
        async fn read(&self, ctx: &OperationContext, _: Read) -> Result<String, CallError> {
            Ok(format!(
                "secret for {}",
                ctx.identity().map_or("nobody", |i| i.id.as_str())
            ))
        }
        async fn rotate(&self, _: &OperationContext, _: Rotate) -> Result<String, CallError> {
            Ok("rotated".into())
        }
        async fn graph(&self, _: &OperationContext, _: Graph) -> Result<String, CallError> {
            Ok("graph".into())
        }
        async fn peek(&self, _: &OperationContext, _: Peek) -> Result<String, CallError> {
            Ok("peeked".into())
        }
    }
}

/// A nested call's outcome as JSON: `{"output": …}` or `{"error": code}`.
async fn forward(
    ctx: &alknet_runtime::OperationContext,
    ns: &str,
    op: &str,
) -> Result<alknet_runtime::Json, alknet_runtime::CallError> {
    let reply = ctx
        .env()
        .invoke(ns, op, alknet_runtime::serde_json::json!({}))
        .await;
    Ok(alknet_runtime::Json(match reply.result {
        Ok(output) => alknet_runtime::serde_json::json!({ "output": output }),
        Err(err) => alknet_runtime::serde_json::json!({ "error": err.code }),
    }))
}

pub mod orders {
    //! Composition with an authority.
    use alknet_runtime::prelude::*;

    /// Composes `vault` with its own authority.
    #[alk_service(
    namespace = "orders",
    version = "1.0.0",
    authority(scopes = ["vault:read"]),
    calls = ["vault/read", "vault/peek", "vault/rotate"]
)]
    pub enum OrdersProtocol {
        /// Calls `vault/<op>` and returns its envelope's output or error code.
        #[alk_operation(query, output = Json)]
        Forward {
            /// The vault operation.
            op: String,
        },
    }

    /// The `orders` service.
    pub struct Orders;

    impl OrdersHandler for Orders {
        async fn forward(&self, ctx: &OperationContext, req: Forward) -> Result<Json, CallError> {
            super::forward(ctx, "vault", &req.op).await
        }
    }
}

pub mod relay {
    //! Composition with the caller's identity.
    use alknet_runtime::prelude::*;

    /// Composes `vault` with the caller's own identity.
    #[alk_service(namespace = "relay", version = "1.0.0", calls = ["vault/*"])]
    pub enum RelayProtocol {
        /// Calls `<ns>/<op>` and returns its envelope's output or error code.
        #[alk_operation(query, output = Json)]
        Forward {
            /// The namespace.
            ns: String,
            /// The operation.
            op: String,
        },
    }

    /// The `relay` service.
    pub struct Relay;

    impl RelayHandler for Relay {
        async fn forward(&self, ctx: &OperationContext, req: Forward) -> Result<Json, CallError> {
            super::forward(ctx, &req.ns, &req.op).await
        }
    }
}

pub mod probe {
    //! Cancellation, deadlines, panics and request ids.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use alknet_runtime::futures::stream;
    use alknet_runtime::prelude::*;

    /// What the probe saw: how many handlers started and how many were dropped unfinished.
    #[derive(Default)]
    pub struct ProbeState {
        /// Handlers of `hang` that started.
        pub started: AtomicUsize,
        /// Handlers of `hang` whose future was dropped (cancelled).
        pub dropped: AtomicUsize,
        /// Items `forever` produced.
        pub produced: AtomicUsize,
        /// How the nested call `orphan` started after returning ended.
        pub orphan: std::sync::Mutex<Option<Result<(), String>>>,
    }

    struct DropCounter(Arc<ProbeState>);

    impl Drop for DropCounter {
        fn drop(&mut self) {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// What `probe/ids` saw.
    #[alk_type]
    #[derive(Debug, Clone)]
    pub struct IdReport {
        /// Its own request id.
        pub id: String,
        /// Its parent's.
        pub parent: Option<String>,
        /// The ids of the nested call it made, if any.
        pub nested: Option<Box<IdReport>>,
    }

    /// Cancellation, deadlines, panics and request ids.
    #[alk_service(namespace = "probe", version = "0.1.0", calls = ["probe/*"])]
    pub enum ProbeProtocol {
        /// Calls itself `depth` times (spawning each nested call if `spawn`), then hangs.
        #[alk_operation(mutation)]
        Hang {
            /// How many nested calls below this one.
            depth: u32,
            /// Run each nested call on its own task.
            #[serde(default)]
            spawn: bool,
        },
        /// Sleeps, but may take at most 50 ms.
        #[alk_operation(mutation, idempotent, timeout = "50ms")]
        Slow {
            /// How long to sleep.
            ms: u64,
        },
        /// Reports how long is left before its deadline, and that of a nested `slow`-like call.
        #[alk_operation(query, output = Vec<Option<u64>>)]
        Remaining {
            /// Nest once more.
            nest: bool,
        },
        /// Reports the time left, with its own 100 ms limit.
        #[alk_operation(query, output = Option<u64>, timeout = "100ms")]
        Limited,
        /// Panics.
        #[alk_operation(mutation)]
        Boom,
        /// Returns an error code it did not declare.
        #[alk_operation(mutation)]
        Undeclared,
        /// Returns its request ids, nesting once if asked.
        #[alk_operation(query, output = IdReport)]
        Ids {
            /// Nest once.
            nest: bool,
        },
        /// Streams numbers until dropped.
        #[alk_operation(subscription, item = u64)]
        Forever,
        /// Streams one item, then panics.
        #[alk_operation(subscription, item = u64)]
        Sputter,
        /// Subscribes to `forever` as a nested call and returns its first `take` items.
        #[alk_operation(query, output = Vec<u64>)]
        Relay {
            /// How many items to take.
            take: usize,
        },
        /// Starts a nested `hang` on its own task after it has itself returned.
        #[alk_operation(mutation)]
        Orphan,
    }

    /// The `probe` service.
    #[derive(Clone, Default)]
    pub struct Probe(pub Arc<ProbeState>);

    impl ProbeHandler for Probe {
        async fn hang(&self, ctx: &OperationContext, req: Hang) -> Result<(), CallError> {
            self.0.started.fetch_add(1, Ordering::SeqCst);
            let _counter = DropCounter(self.0.clone());
            if req.depth == 0 {
                std::future::pending::<()>().await;
            }
            let nested = Hang {
                depth: req.depth - 1,
                spawn: req.spawn,
            };
            let client = ProbeClient::new(ctx.env());
            if req.spawn {
                let task =
                    tokio::spawn(async move { client.hang(nested.depth, nested.spawn).await });
                task.await.map_err(|e| CallError::internal(e.to_string()))?
            } else {
                client.hang(nested.depth, nested.spawn).await
            }
        }

        async fn slow(&self, _: &OperationContext, req: Slow) -> Result<(), CallError> {
            tokio::time::sleep(Duration::from_millis(req.ms)).await;
            Ok(())
        }

        async fn remaining(
            &self,
            ctx: &OperationContext,
            req: Remaining,
        ) -> Result<Vec<Option<u64>>, CallError> {
            let mine = ctx.remaining().map(|d| d.as_millis() as u64);
            let client = ProbeClient::new(ctx.env());
            let mut all = vec![mine];
            if req.nest {
                all.extend(client.remaining(false).await?);
                all.push(client.limited().await?);
            }
            Ok(all)
        }

        async fn limited(
            &self,
            ctx: &OperationContext,
            _: Limited,
        ) -> Result<Option<u64>, CallError> {
            Ok(ctx.remaining().map(|d| d.as_millis() as u64))
        }

        async fn boom(&self, _: &OperationContext, _: Boom) -> Result<(), CallError> {
            panic!("the probe exploded")
        }

        async fn undeclared(&self, _: &OperationContext, _: Undeclared) -> Result<(), CallError> {
            Err(CallError::new("SURPRISE", "nobody declared this"))
        }

        async fn ids(&self, ctx: &OperationContext, req: Ids) -> Result<IdReport, CallError> {
            let nested = if req.nest {
                Some(Box::new(ProbeClient::new(ctx.env()).ids(false).await?))
            } else {
                None
            };
            Ok(IdReport {
                id: ctx.request_id().to_string(),
                parent: ctx.parent_request_id().map(|id| id.to_string()),
                nested,
            })
        }

        async fn forever(
            &self,
            _: &OperationContext,
            _: Forever,
        ) -> Result<ItemStream<u64>, CallError> {
            let state = self.0.clone();
            Ok(Box::pin(stream::unfold(0u64, move |n| {
                let state = state.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    state.produced.fetch_add(1, Ordering::SeqCst);
                    Some((Ok(n), n + 1))
                }
            })))
        }

        async fn relay(&self, ctx: &OperationContext, req: Relay) -> Result<Vec<u64>, CallError> {
            use alknet_runtime::futures::StreamExt;
            let items = ProbeClient::new(ctx.env()).forever().await?;
            items
                .take(req.take)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect()
        }

        async fn orphan(&self, ctx: &OperationContext, _: Orphan) -> Result<(), CallError> {
            let client = ProbeClient::new(ctx.env());
            let state = self.0.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let outcome = client.hang(0, false).await;
                *state.orphan.lock().unwrap() = Some(outcome.map_err(|e| e.code.into_owned()));
            });
            Ok(())
        }

        async fn sputter(
            &self,
            _: &OperationContext,
            _: Sputter,
        ) -> Result<ItemStream<u64>, CallError> {
            Ok(Box::pin(stream::unfold(0u64, |n| async move {
                if n == 1 {
                    panic!("the stream sputtered");
                }
                Some((Ok(n), n + 1))
            })))
        }
    }
}

pub mod adapters;
pub mod fuzz;
pub mod netns;
pub mod served;

/// `PROGRAM keys new --id ID ARGS..` of a node binary (`alknet`, or a user's made with
/// `alknet::cli`): the API key it printed, and the `[[api_keys]]` entry that admits it.
pub fn new_api_key(program: &std::path::Path, id: &str, args: &[&str]) -> (String, String) {
    let made = std::process::Command::new(program)
        .args(["keys", "new", "--id", id])
        .args(args)
        .env_remove("ALKNET_API_KEY")
        .env_remove("ALKNET_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("{} runs: {err}", program.display()));
    let text = String::from_utf8_lossy(&made.stdout).into_owned();
    assert!(
        made.status.success(),
        "keys new failed: {text}{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let key = text
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("alk_"))
        .expect("keys new prints the key")
        .to_string();
    let entry = text[text.find("[[api_keys]]").expect("and its entry")..].to_string();
    assert!(!entry.contains(&key), "the entry holds the key itself");
    (key, entry)
}

/// Wait until `condition` holds, polling every 2 ms; panics, naming `what`, after 5 s.
pub async fn until(what: &str, condition: impl Fn() -> bool) {
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while !condition() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

pub mod gate {
    //! The far side of the call-protocol tests: a call that hangs until cancelled, the
    //! counts that show it was, and who the caller was.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use alknet_runtime::prelude::*;

    /// How many `gate/hang` handlers started, and how many were dropped unfinished.
    #[alk_type]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct HangCounts {
        /// Handlers started.
        pub started: u64,
        /// Handlers dropped (cancelled).
        pub dropped: u64,
    }

    /// Who a call came from, as the serving node saw it.
    #[alk_type]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Seen {
        /// The caller's identity id.
        pub identity: Option<String>,
        /// Who the call was forwarded for.
        pub forwarded_for: Option<String>,
    }

    /// Hangs, counts, and reports callers.
    #[alk_service(namespace = "gate", version = "1.0.0")]
    pub enum GateProtocol {
        /// Hangs until cancelled.
        #[alk_operation(mutation)]
        Hang,
        /// How many `hang` calls started and were cancelled.
        #[alk_operation(query, output = HangCounts)]
        Counts,
        /// Who is calling.
        #[alk_operation(query, output = Seen)]
        Whoami,
    }

    /// The `gate` service.
    #[derive(Clone, Default)]
    pub struct Gate {
        started: Arc<AtomicU64>,
        dropped: Arc<AtomicU64>,
    }

    struct OnDrop(Arc<AtomicU64>);

    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl GateHandler for Gate {
        async fn hang(&self, _: &OperationContext, _: Hang) -> Result<(), CallError> {
            self.started.fetch_add(1, Ordering::SeqCst);
            let _dropped = OnDrop(self.dropped.clone());
            std::future::pending().await
        }

        async fn counts(&self, _: &OperationContext, _: Counts) -> Result<HangCounts, CallError> {
            Ok(HangCounts {
                started: self.started.load(Ordering::SeqCst),
                dropped: self.dropped.load(Ordering::SeqCst),
            })
        }

        async fn whoami(&self, ctx: &OperationContext, _: Whoami) -> Result<Seen, CallError> {
            Ok(Seen {
                identity: ctx.identity().map(|i| i.id.clone()),
                forwarded_for: ctx.forwarded_for().map(str::to_string),
            })
        }
    }
}

pub mod front {
    //! The near side of the call-protocol tests: composes `gate` and `echo`, wherever
    //! they are served.
    use alknet_runtime::prelude::*;

    use crate::gate::{GateClient, Seen};

    /// Calls `gate` and `echo` as nested calls.
    #[alk_service(namespace = "front", version = "1.0.0", calls = ["gate/*", "echo/*"])]
    pub enum FrontProtocol {
        /// Calls `gate/hang`.
        #[alk_operation(mutation)]
        Hang,
        /// Calls `gate/whoami` and returns what it saw.
        #[alk_operation(query, output = Seen)]
        Whoami,
        /// Calls `echo/shout` with the text.
        #[alk_operation(query, output = String)]
        Shout {
            /// The text.
            text: String,
        },
    }

    /// The `front` service.
    pub struct Front;

    impl FrontHandler for Front {
        async fn hang(&self, ctx: &OperationContext, _: Hang) -> Result<(), CallError> {
            GateClient::new(ctx.env()).hang().await
        }

        async fn whoami(&self, ctx: &OperationContext, _: Whoami) -> Result<Seen, CallError> {
            GateClient::new(ctx.env()).whoami().await
        }

        async fn shout(&self, ctx: &OperationContext, req: Shout) -> Result<String, CallError> {
            let reply = ctx
                .env()
                .invoke(
                    "echo",
                    "shout",
                    alknet_runtime::serde_json::json!({ "text": req.text }),
                )
                .await;
            let output = reply.result?;
            Ok(output.as_str().unwrap_or_default().to_string())
        }
    }
}

// The guide and the README, so that their examples run as doctests.
#[doc = include_str!("../../docs/guide.md")]
pub mod guide {}
#[doc = include_str!("../../README.md")]
pub mod readme {}
