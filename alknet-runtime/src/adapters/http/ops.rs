//! What an operator's tools ask a node over HTTP: `GET /healthz` (the process serves),
//! `GET /readyz` (the node is ready for traffic) and, when turned on, `GET /metrics` (the
//! Prometheus text exposition). None of them is a call: they take no call slot and need
//! no credential.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::HttpAdapter;

/// Whether a node is ready for traffic, as `GET /readyz` answers it: ready when every check
/// is. The node adds one check per listener and per peer link; an adapter given none is
/// ready while it serves.
///
/// ```
/// use alknet_runtime::adapters::http::Readiness;
///
/// let readiness = Readiness::new()
///     .check("listen.http", true)
///     .check_detail("peer.worker-1", false, "no connection since 12:03:07");
/// assert!(!readiness.is_ready());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Readiness {
    checks: Vec<ReadinessCheck>,
}

/// One thing a node needs to be ready: a listener bound, a peer connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadinessCheck {
    /// What is checked, such as `listen.call` or `peer.worker-1`.
    pub name: String,
    /// Whether it is ready.
    pub ready: bool,
    /// Why not, or anything else an operator should read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Readiness {
    /// No checks: ready.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a check.
    pub fn check(mut self, name: impl Into<String>, ready: bool) -> Self {
        self.checks.push(ReadinessCheck {
            name: name.into(),
            ready,
            detail: None,
        });
        self
    }

    /// Add a check with a sentence for the operator.
    pub fn check_detail(
        mut self,
        name: impl Into<String>,
        ready: bool,
        detail: impl Into<String>,
    ) -> Self {
        self.checks.push(ReadinessCheck {
            name: name.into(),
            ready,
            detail: Some(detail.into()),
        });
        self
    }

    /// Whether every check is ready.
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|check| check.ready)
    }

    /// The checks, in the order they were added.
    pub fn checks(&self) -> &[ReadinessCheck] {
        &self.checks
    }
}

type ReadinessHook = Arc<dyn Fn() -> Readiness + Send + Sync>;

/// The operator routes' settings, kept on the [`HttpAdapter`].
#[derive(Clone, Default)]
pub(super) struct OpsRoutes {
    readiness: Option<ReadinessHook>,
    #[cfg(feature = "prometheus")]
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl HttpAdapter {
    /// Answer `GET /readyz` from `readiness`, asked on every request (keep it quick: read
    /// state, do not probe). Without it the adapter is ready while it serves. While the
    /// server shuts down, `/readyz` answers not ready whatever `readiness` says.
    pub fn readiness(mut self, readiness: impl Fn() -> Readiness + Send + Sync + 'static) -> Self {
        self.ops.readiness = Some(Arc::new(readiness));
        self
    }

    /// Serve `GET /metrics` from `metrics`: the Prometheus text exposition of every metric
    /// the process records, among them each call's
    /// ([`telemetry`](crate::telemetry)). Get the handle with
    /// [`telemetry::prometheus`](crate::telemetry::prometheus). Without it `/metrics` is
    /// not served (`404`).
    #[cfg(feature = "prometheus")]
    pub fn metrics(mut self, metrics: metrics_exporter_prometheus::PrometheusHandle) -> Self {
        self.ops.metrics = Some(metrics);
        self
    }
}

#[derive(Clone)]
struct OpsState {
    routes: OpsRoutes,
    stopping: CancellationToken,
}

impl OpsRoutes {
    /// The operator routes, answering not ready once `stopping` is cancelled.
    pub(super) fn router<S: Clone + Send + Sync + 'static>(
        self,
        stopping: CancellationToken,
    ) -> Router<S> {
        #[cfg(feature = "prometheus")]
        let with_metrics = self.metrics.is_some();
        let router = Router::new()
            .route("/healthz", get(health))
            .route("/readyz", get(ready));
        #[cfg(feature = "prometheus")]
        let router = if with_metrics {
            router.route("/metrics", get(exposition))
        } else {
            router
        };
        router.with_state(OpsState {
            routes: self,
            stopping,
        })
    }
}

async fn health() -> Response {
    json(StatusCode::OK, r#"{"status":"ok"}"#.to_owned())
}

async fn ready(State(state): State<OpsState>) -> Response {
    let mut readiness = state
        .routes
        .readiness
        .as_ref()
        .map_or_else(Readiness::new, |readiness| readiness());
    if state.stopping.is_cancelled() {
        readiness = readiness.check_detail("server", false, "the node is shutting down");
    }
    let (status, word) = if readiness.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    let body = serde_json::json!({ "status": word, "checks": readiness.checks });
    json(status, body.to_string())
}

#[cfg(feature = "prometheus")]
async fn exposition(State(state): State<OpsState>) -> Response {
    let text = state
        .routes
        .metrics
        .as_ref()
        .map(metrics_exporter_prometheus::PrometheusHandle::render)
        .unwrap_or_default();
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}
