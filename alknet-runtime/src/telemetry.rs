//! What a node tells its operators about the calls it serves: a [`tracing`] span per call
//! and, once a recorder is installed, metrics through the [`metrics`] facade.
//!
//! Every call through an [`OperationEnv`](crate::OperationEnv) — from an adapter, a peer or
//! a handler's nested call — gets a span `call` (target `alknet::call`, level `INFO`) with
//! the fields:
//!
//! | field | value |
//! |---|---|
//! | `request_id` | the call's id, as its caller is answered with it; a call a cluster node continues here keeps the id it has there |
//! | `operation` | `namespace/operation` |
//! | `caller` | the identity the call runs with, or `anonymous` |
//! | `transport` | how the call arrived ([`Caller::transport`](crate::Caller::transport)): `http`, `mcp`, `dns`, `quic`, `websocket`, `irpc`, `nested`, or `local` |
//! | `parent_request_id` | the calling call's id, for a nested call, or one a cluster node sent (irpc, the call protocol) on behalf of a call of its own |
//! | `forwarded_for` | who another node forwarded the call for, when it did |
//! | `outcome` | `ok`, or the error code the caller received |
//! | `duration_ms` | from the call's admission to its answer (a subscription: to its end) |
//!
//! A nested call's span is a child of its parent call's span, and its events are within
//! it. A call's end is also an event (level `DEBUG`, target `alknet::call`, message
//! `call ended`) with the outcome and duration. With no subscriber interested in the
//! target, a span costs one check of a cached flag.
//!
//! Metrics are recorded only after [`record_metrics`] (which [`prometheus`] calls): until
//! then a call pays one relaxed atomic load for them. The names and labels:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `alknet_calls_total` | counter: calls that ended, whatever their outcome | `transport`, `operation` |
//! | `alknet_call_errors_total` | counter: calls that ended in an error | `transport`, `operation`, `code` |
//! | `alknet_call_duration_seconds` | histogram: how long calls took | `transport`, `operation` |
//! | `alknet_calls_in_flight` | gauge: calls admitted and not yet ended | `transport`, `operation` |
//!
//! A call refused before it began (access, admission, a node shutting down; over HTTP
//! also a refused bearer token, a body over the limit or too slow, no free call slot;
//! over the call protocol a refused `auth_token`)
//! counts in `alknet_calls_total` and `alknet_call_errors_total` with its code, with no
//! duration ([`OperationEnv::count_refused`](crate::OperationEnv::count_refused) for a
//! transport's); a call to an operation that does not exist is not counted (its
//! name is the caller's).
//!
//! A query or mutation whose caller went away before it ended (an HTTP client that
//! disconnected) counts as `ABORTED`; a subscription its consumer stopped counts as `ok`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use metrics::{counter, gauge, histogram};
use tracing::Span;

use crate::{Identity, OperationSpec, RequestId};

/// The target of every call's span and end event: filter on it
/// (`RUST_LOG=alknet::call=debug` gives one line per call).
pub const TARGET: &str = "alknet::call";

/// Calls counted and timed in metrics.
pub const CALLS_TOTAL: &str = "alknet_calls_total";
/// Calls that ended in an error, by code.
pub const CALL_ERRORS_TOTAL: &str = "alknet_call_errors_total";
/// How long calls took, in seconds.
pub const CALL_DURATION_SECONDS: &str = "alknet_call_duration_seconds";
/// Calls in progress.
pub const CALLS_IN_FLIGHT: &str = "alknet_calls_in_flight";

/// The histogram buckets of [`CALL_DURATION_SECONDS`] in the Prometheus exposition: from
/// 100 µs (a local call) to 30 s (the HTTP adapter's default timeout).
pub const DURATION_BUCKETS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The transport of a call a handler made ([`crate::OperationContext::env`]).
pub(crate) const NESTED: &str = "nested";
/// The transport of a call adopted from where it was admitted
/// ([`TypedEntry`](crate::TypedEntry)): the irpc path, from a cluster peer or from this
/// process's own irpc client of a mounted actor.
pub(crate) const IRPC: &str = "irpc";
/// The transport of a call made on an env no adapter described
/// ([`Caller::transport`](crate::Caller::transport) unset).
pub(crate) const LOCAL: &str = "local";

static RECORDING: AtomicBool = AtomicBool::new(false);

/// Record every call's metrics from now on, into whatever recorder the [`metrics`] facade
/// has (yours, or the one [`prometheus`] installs). Until this is called, none is recorded.
pub fn record_metrics() {
    if !RECORDING.swap(true, Ordering::Relaxed) {
        metrics::describe_counter!(CALLS_TOTAL, "Calls that ended, whatever their outcome.");
        metrics::describe_counter!(
            CALL_ERRORS_TOTAL,
            "Calls that ended in an error, by the code the caller received."
        );
        metrics::describe_histogram!(
            CALL_DURATION_SECONDS,
            metrics::Unit::Seconds,
            "How long calls took, from admission to answer (a subscription: to its end)."
        );
        metrics::describe_gauge!(CALLS_IN_FLIGHT, "Calls admitted and not yet ended.");
    }
}

fn recording() -> bool {
    RECORDING.load(Ordering::Relaxed)
}

/// The Prometheus recorder of this process: installed as the [`metrics`] facade's global
/// recorder on first use (with [`record_metrics`] and a thread that drains its histograms
/// every five seconds), the same handle after. Fails if another recorder was installed.
#[cfg(feature = "prometheus")]
pub fn prometheus() -> Result<metrics_exporter_prometheus::PrometheusHandle, String> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use std::sync::OnceLock;

    static HANDLE: OnceLock<Result<metrics_exporter_prometheus::PrometheusHandle, String>> =
        OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(CALL_DURATION_SECONDS.into()),
                    &DURATION_BUCKETS,
                )
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|err| format!("the Prometheus recorder could not be installed: {err}"))?;
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("alknet-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .map_err(|err| format!("the metrics upkeep thread did not start: {err}"))?;
            record_metrics();
            Ok(handle)
        })
        .clone()
}

/// One call's span and timing, kept only while a subscriber or a recorder is interested:
/// otherwise a call carries one null pointer for them and its end costs one branch.
pub(crate) struct CallTelemetry(Option<Box<Watched>>);

struct Watched {
    span: Span,
    started: Instant,
    /// The call's metric labels, if its metrics count it (a recorder was on when it began).
    labels: Option<Labels>,
    /// Set when the outcome is recorded, so it is recorded once.
    ended: AtomicBool,
}

type Labels = [(&'static str, String); 2];

/// Who and what a call is, for its span and labels.
pub(crate) struct CallFacts<'a> {
    pub(crate) request_id: RequestId,
    pub(crate) parent_request_id: Option<RequestId>,
    pub(crate) operation: &'a OperationSpec,
    pub(crate) identity: Option<&'a Identity>,
    pub(crate) forwarded_for: Option<&'a str>,
    pub(crate) transport: &'static str,
    /// The parent call's span, when the parent runs in this process and is traced.
    pub(crate) parent_span: Option<&'a Span>,
}

impl CallTelemetry {
    /// A call's telemetry: checks two flags, and only when one is set gathers the call's
    /// facts — most calls (no subscriber, no recorder) never build them.
    #[inline]
    pub(crate) fn begin<'a>(facts: impl FnOnce() -> CallFacts<'a>) -> Self {
        // Before any subscriber exists, even a disabled span's callsite checks cost more
        // than the rest of a local call's bookkeeping; this flag is one load.
        let traced = tracing::dispatcher::has_been_set();
        let metered = recording();
        if !traced && !metered {
            return CallTelemetry(None);
        }
        Self::watch(facts(), traced, metered)
    }

    #[cold]
    #[inline(never)]
    fn watch(facts: CallFacts<'_>, traced: bool, metered: bool) -> Self {
        let span = if traced {
            call_span(&facts)
        } else {
            Span::none()
        };
        if !metered && span.is_disabled() {
            return CallTelemetry(None);
        }
        let labels = metered.then(|| labels_of(facts.operation, facts.transport));
        if let Some(labels) = &labels {
            gauge!(CALLS_IN_FLIGHT, labels).increment(1.0);
        }
        CallTelemetry(Some(Box::new(Watched {
            span,
            started: Instant::now(),
            labels,
            ended: AtomicBool::new(false),
        })))
    }

    /// Whether anyone is told of this call's end: a subscriber or a recorder.
    #[inline]
    pub(crate) fn is_watched(&self) -> bool {
        self.0.is_some()
    }

    /// The call's span, if anyone watches the call.
    #[inline]
    pub(crate) fn span(&self) -> Option<&Span> {
        self.0.as_ref().map(|watched| &watched.span)
    }

    /// Record the call's outcome (`error`: none for `ok`), once.
    pub(crate) fn end(&self, error: Option<&str>) {
        let Some(watched) = &self.0 else { return };
        if watched.ended.swap(true, Ordering::Relaxed) {
            return;
        }
        let elapsed = watched.started.elapsed();
        let outcome = error.unwrap_or("ok");
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        watched.span.record("outcome", outcome);
        watched.span.record("duration_ms", duration_ms);
        tracing::debug!(target: TARGET, parent: &watched.span, outcome, duration_ms, "call ended");
        if let Some(labels) = &watched.labels {
            gauge!(CALLS_IN_FLIGHT, labels).decrement(1.0);
            histogram!(CALL_DURATION_SECONDS, labels).record(elapsed.as_secs_f64());
            count(labels, error);
        }
    }

    /// The call ended without an outcome (its caller went away): a query or mutation
    /// counts as `ABORTED`, a subscription its consumer stopped as `ok`.
    pub(crate) fn end_dropped(&self, operation: &OperationSpec) {
        let code = (!operation.is_subscription()).then_some(crate::codes::ABORTED);
        self.end(code);
    }
}

impl Drop for Watched {
    /// A call that never ran (a context made to call a handler directly) leaves the
    /// in-flight count, and is not counted as a call.
    fn drop(&mut self) {
        if let Some(labels) = &self.labels
            && !*self.ended.get_mut()
        {
            gauge!(CALLS_IN_FLIGHT, labels).decrement(1.0);
        }
    }
}

/// A call refused before it began (its access, the node's admission steps, a node that is
/// shutting down; or, at a transport, its credential, its size, no free slot): counted as
/// a call that ended with `code`, with no duration. Transports count theirs through
/// [`OperationEnv::count_refused`](crate::OperationEnv::count_refused).
pub(crate) fn refused(operation: &OperationSpec, transport: &'static str, code: &str) {
    if recording() {
        count(&labels_of(operation, transport), Some(code));
    }
}

/// Count a call that ended, and its error if it ended in one.
fn count(labels: &Labels, error: Option<&str>) {
    counter!(CALLS_TOTAL, labels).increment(1);
    if let Some(code) = error {
        let [transport, operation] = labels.clone();
        counter!(
            CALL_ERRORS_TOTAL,
            &[transport, operation, ("code", code.to_owned())]
        )
        .increment(1);
    }
}

fn labels_of(operation: &OperationSpec, transport: &'static str) -> Labels {
    [
        ("transport", transport.to_owned()),
        ("operation", operation.id.clone()),
    ]
}

fn call_span(facts: &CallFacts<'_>) -> Span {
    let caller = facts
        .identity
        .map_or("anonymous", |identity| identity.id.as_str());
    let span = match facts.parent_span {
        Some(parent) => tracing::info_span!(
            target: TARGET,
            parent: parent,
            "call",
            request_id = %facts.request_id,
            operation = %facts.operation.id,
            caller,
            transport = facts.transport,
            parent_request_id = tracing::field::Empty,
            forwarded_for = facts.forwarded_for,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        ),
        None => tracing::info_span!(
            target: TARGET,
            "call",
            request_id = %facts.request_id,
            operation = %facts.operation.id,
            caller,
            transport = facts.transport,
            parent_request_id = tracing::field::Empty,
            forwarded_for = facts.forwarded_for,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        ),
    };
    if let Some(parent) = facts.parent_request_id {
        span.record("parent_request_id", tracing::field::display(parent));
    }
    span
}
