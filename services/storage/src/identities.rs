//! [`StorageIdentityProvider`]: API keys, public keys and token keys kept as nodes of a
//! `storage` graph, resolved by the same code as the configuration file's.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alknet_runtime::arc_swap::ArcSwap;
use alknet_runtime::config::{CredentialEntries, DynamicConfig};
use alknet_runtime::futures::future::BoxFuture;
use alknet_runtime::futures::{FutureExt, StreamExt};
use alknet_runtime::{
    CallError, Caller, ConfigIdentityProvider, Credential, Identity, IdentityProvider, KeyHolder,
    OperationEnv, ResourceGrant,
};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::Commits;

/// The graph identities are kept in unless told otherwise.
pub const IDENTITY_GRAPH: &str = "identities";

/// How long a lookup waits for a change it has heard of to be loaded before it answers
/// `UNAVAILABLE`.
const FRESHNESS_WAIT: Duration = Duration::from_secs(2);
/// How long the provider waits before it watches again after the watch ended.
const REWATCH_DELAY: Duration = Duration::from_secs(1);
/// How long lookups answer from the last copy of the identities once the graph can no
/// longer be followed, unless [`StorageIdentityProvider::max_stale`] says otherwise.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(10);

/// The node types of the identity graph, each with the field its node id fills and the
/// list of [`CredentialEntries`] it goes to.
const KINDS: [(&str, &str); 3] = [
    ("api_key", "id"),
    ("public_key", "fingerprint"),
    ("token_key", "key_id"),
];

/// Resolves key fingerprints, API keys and signed tokens against identities kept in the
/// `storage` service, reached through an [`OperationEnv`] (in this process, or on another
/// node of the cluster).
///
/// The identity graph holds one node per credential, of type `api_key` (its id is the key's
/// id), `public_key` (its id is the fingerprint) or `token_key` (its id is the key id), whose
/// attributes are the other fields of the configuration file's `[[api_keys]]`,
/// `[[public_keys]]` or `[[token_keys]]` entry. They are read and resolved by the code that
/// reads and resolves the file's ([`DynamicConfig::with_credentials`] and
/// [`ConfigIdentityProvider`]), so the same data gives the same identities.
///
/// The provider keeps them in memory, follows the graph's changes with `watch`, and
/// reloads on each; a lookup that comes after a change was heard of waits for the reload,
/// so a key deleted from the graph is refused from the next call on. When the graph can
/// no longer be followed (the storage node is away), lookups answer from the last copy
/// for [`max_stale`](Self::max_stale) (10 s), then `UNAVAILABLE` until it can be again:
/// a key revoked meanwhile is accepted for at most that long.
#[derive(Clone)]
pub struct StorageIdentityProvider {
    resolver: ConfigIdentityProvider,
    graph: Arc<str>,
    /// The sequence number of the last change heard of, and of the last one loaded (none
    /// before the first load).
    heard: watch::Sender<u64>,
    loaded: watch::Receiver<Option<u64>>,
    commits: Option<Commits>,
    /// Since when the graph has not been followed (none while it is).
    unfollowed: Unfollowed,
    max_stale: Duration,
    /// What follows the graph, until [`follow`](Self::follow) or the first lookup starts
    /// it on the runtime it runs on.
    follower: Arc<Mutex<Option<Follower>>>,
}

/// The task that loads the graph and reloads it on each change.
struct Follower {
    loader: Loader,
    heard: watch::Sender<u64>,
    loaded: watch::Sender<Option<u64>>,
    unfollowed: Unfollowed,
}

type Unfollowed = Arc<Mutex<Option<tokio::time::Instant>>>;

/// What loads the identity graph into the resolver's snapshot.
struct Loader {
    env: OperationEnv,
    graph: String,
    base: Arc<ArcSwap<DynamicConfig>>,
    snapshot: Arc<ArcSwap<DynamicConfig>>,
}

impl StorageIdentityProvider {
    /// The identities of `graph`, read through `env`: loaded when the provider starts
    /// following the graph ([`follow`](Self::follow), or the first lookup), which needs no
    /// runtime until then. Lookups wait for the first load. `base` is the configuration the
    /// credentials go into (its token window applies), such as
    /// [`ConfigServiceImpl::shared`](alknet_runtime::config::ConfigServiceImpl::shared).
    pub fn new(env: &OperationEnv, graph: &str, base: Arc<ArcSwap<DynamicConfig>>) -> Self {
        let reader = Identity::new("service:storage-identities")
            .with_resources([ResourceGrant::new("graph", ["read"])]);
        let loader = Loader {
            env: env.with_caller(Caller::new().identity(reader)),
            graph: graph.to_string(),
            snapshot: Arc::new(ArcSwap::new(base.load_full())),
            base,
        };
        let (heard, _) = watch::channel(0);
        let (loaded_tx, loaded) = watch::channel(None);
        let unfollowed = Unfollowed::default();
        StorageIdentityProvider {
            resolver: ConfigIdentityProvider::new(loader.snapshot.clone()),
            graph: Arc::from(graph),
            heard: heard.clone(),
            loaded,
            commits: None,
            unfollowed: unfollowed.clone(),
            max_stale: DEFAULT_MAX_STALE,
            follower: Arc::new(Mutex::new(Some(Follower {
                loader,
                heard,
                loaded: loaded_tx,
                unfollowed,
            }))),
        }
    }

    /// [`new`](Self::new), following the graph from now, once its identities are loaded.
    pub async fn start(
        env: &OperationEnv,
        graph: &str,
        base: Arc<ArcSwap<DynamicConfig>>,
    ) -> Result<Self, CallError> {
        let provider = Self::new(env, graph, base);
        provider.fresh().await?;
        Ok(provider)
    }

    /// Start following the graph on a task of the current runtime (once; later calls do
    /// nothing).
    pub fn follow(&self) {
        let follower = self
            .follower
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(follower) = follower {
            tokio::spawn(follower.run());
        }
    }

    /// Know of a write to the graph the moment it returns, from the service in this process
    /// that `env` reaches ([`StorageService::commits`](crate::StorageService::commits)): a lookup after it waits for the
    /// reload, even before the watch delivers the change. Without it, a change counts from
    /// when the watch delivers it, a moment after the write.
    pub fn with_commits(mut self, commits: Commits) -> Self {
        self.commits = Some(commits);
        self
    }

    /// How long lookups go on answering from the last copy of the identities once the
    /// graph cannot be followed (default [`DEFAULT_MAX_STALE`]): the longest a key revoked
    /// while the storage service is unreachable is still accepted.
    pub fn max_stale(mut self, max: Duration) -> Self {
        self.max_stale = max;
        self
    }

    /// Wait until every change heard of is loaded.
    async fn fresh(&self) -> Result<(), CallError> {
        self.follow();
        let committed = self.commits.as_ref().map_or(0, |c| c.last(&self.graph));
        let mut loaded = self.loaded.clone();
        let heard = &self.heard;
        let caught_up = loaded.wait_for(|loaded| {
            loaded.is_some_and(|loaded| loaded >= committed.max(*heard.borrow()))
        });
        if tokio::time::timeout(FRESHNESS_WAIT, caught_up)
            .await
            .is_err()
        {
            return Err(CallError::unavailable(format!(
                "the identities in storage could not be loaded within {} ms",
                FRESHNESS_WAIT.as_millis()
            )));
        }
        let unfollowed = *self.unfollowed.lock().unwrap_or_else(|p| p.into_inner());
        match unfollowed {
            Some(since) if since.elapsed() > self.max_stale => {
                Err(CallError::unavailable(format!(
                    "the identities in storage have not been followed for {} ms (the storage service cannot be reached), longer than the {} ms they are trusted without it",
                    since.elapsed().as_millis(),
                    self.max_stale.as_millis()
                )))
            }
            _ => Ok(()),
        }
    }
}

impl IdentityProvider for StorageIdentityProvider {
    fn resolve<'a>(
        &'a self,
        credential: Credential<'a>,
    ) -> BoxFuture<'a, Result<Arc<Identity>, CallError>> {
        async move {
            self.fresh().await?;
            self.resolver.resolve_now(credential)
        }
        .boxed()
    }

    fn resolve_key<'a>(
        &'a self,
        fingerprint: &'a str,
    ) -> BoxFuture<'a, Result<KeyHolder, CallError>> {
        async move {
            self.fresh().await?;
            self.resolver.resolve_key(fingerprint).await
        }
        .boxed()
    }
}

impl Loader {
    async fn head(&self) -> Result<u64, CallError> {
        let log = self.env.invoke("storage", "change_log", json!({})).await;
        let head = log.result?["head"].as_u64();
        head.ok_or_else(|| CallError::internal("`storage/change_log` answered without a head"))
    }

    /// Read every credential node of the graph and swap them in.
    async fn load(&self) -> Result<(), CallError> {
        let mut entries = CredentialEntries::default();
        for (node_type, id_field) in KINDS {
            let mut cursor: Option<String> = None;
            loop {
                let input = json!({"graph": self.graph, "type": node_type, "limit": 1000, "cursor": cursor});
                let page = self.env.invoke("storage", "list_nodes", input).await.result;
                let page = match page {
                    Ok(page) => page,
                    // No graph yet: no identities yet.
                    Err(err) if err.code == "GRAPH_NOT_FOUND" => break,
                    Err(err) => return Err(err),
                };
                for node in page["items"].as_array().into_iter().flatten() {
                    let mut entry = node["attributes"].clone();
                    if let Value::Object(fields) = &mut entry {
                        fields.insert(id_field.to_string(), node["id"].clone());
                    }
                    let list = match node_type {
                        "api_key" => &mut entries.api_keys,
                        "public_key" => &mut entries.public_keys,
                        _ => &mut entries.token_keys,
                    };
                    list.push(entry);
                }
                match page["next"].as_str() {
                    Some(next) => cursor = Some(next.to_string()),
                    None => break,
                }
            }
        }
        let (config, refused) = self.base.load().with_credentials(entries);
        for why in refused {
            tracing::warn!(target: "alknet::storage", graph = %self.graph, "an identity left out: {why}");
        }
        self.snapshot.store(Arc::new(config));
        Ok(())
    }
}

impl Follower {
    /// Load the graph, then watch it and reload after each change; when the watch ends
    /// (the log was pruned past it, the storage node went away), start over with a fresh
    /// load. Ends when every copy of the provider is dropped.
    async fn run(self) {
        loop {
            let Some(mut since) = self.load_all().await else {
                return;
            };
            self.set_unfollowed(None);
            let input = json!({"graph": self.loader.graph, "since": since});
            let mut changes = self.loader.env.subscribe("storage", "watch", input).await;
            while let Some(Ok(change)) = changes.next().await {
                let mut seq = change["seq"].as_u64().unwrap_or(since);
                self.heard.send_replace(seq);
                // Changes that came together load together.
                while let Some(Some(Ok(change))) = changes.next().now_or_never() {
                    seq = change["seq"].as_u64().unwrap_or(seq);
                    self.heard.send_replace(seq);
                }
                if let Err(err) = self.loader.load().await {
                    tracing::warn!(target: "alknet::storage", graph = %self.loader.graph, "reloading identities failed: {}", err.message);
                    break;
                }
                since = seq;
                if self.loaded.send(Some(seq)).is_err() {
                    return;
                }
            }
            if self.loaded.is_closed() {
                return;
            }
            self.set_unfollowed(Some(tokio::time::Instant::now()));
            tokio::time::sleep(REWATCH_DELAY).await;
        }
    }

    fn set_unfollowed(&self, since: Option<tokio::time::Instant>) {
        *self.unfollowed.lock().unwrap_or_else(|p| p.into_inner()) = since;
    }

    /// Every identity of the graph, from a head read first (so the watch after it misses
    /// nothing); retried until it works. None once nobody is left to ask.
    async fn load_all(&self) -> Option<u64> {
        loop {
            let loaded = async {
                let head = self.loader.head().await?;
                self.loader.load().await?;
                Ok::<_, CallError>(head)
            };
            match loaded.await {
                Ok(head) => {
                    self.heard.send_modify(|heard| *heard = (*heard).max(head));
                    return self.loaded.send(Some(head)).is_ok().then_some(head);
                }
                Err(err) => {
                    tracing::warn!(target: "alknet::storage", graph = %self.loader.graph, "loading identities failed: {}", err.message);
                    if self.loaded.is_closed() {
                        return None;
                    }
                    tokio::time::sleep(REWATCH_DELAY).await;
                }
            }
        }
    }
}
