//! Serving an axum router over HTTP/1.1 on a TCP listener, with what a listener facing
//! strangers needs: a timeout on each request's headers and caps on connections, in all and
//! per address. One accept loop serves the HTTP adapter and the WebSocket call protocol.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower_service::Service as _;

use crate::slots::{Slot, SlotLimits, Slots};
use crate::{CallError, RequestId};

/// What a listener allows the connections it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a client has to send a request's line and headers, counted from when the
    /// connection is ready for the next request — so also how long an idle keep-alive
    /// connection stays open. Past it the connection is closed without an answer (there is
    /// no request to answer).
    pub header_read_timeout: Duration,
    /// How many connections are open at once; one more is answered `429` with
    /// `RESOURCE_EXHAUSTED` and closed before its request is read. A connection upgraded
    /// to a WebSocket counts until the socket closes.
    pub max_connections: usize,
    /// How many connections one address may hold open at once; one more is turned away
    /// like one over [`ConnectionLimits::max_connections`].
    pub max_connections_per_address: usize,
}

/// A connection's place among its listener's, in each of its requests' extensions: a
/// handler that upgrades the connection keeps it for as long as the upgraded socket lives.
#[derive(Clone)]
pub(crate) struct ConnectionSlot {
    _held: Arc<Slot>,
}

/// Serve `router` on `listener` until `shutdown` completes, then stop gracefully: accept no
/// more connections, let requests in progress finish and answer, and return once every
/// connection has closed (an upgraded connection is the handler's from its upgrade on).
///
/// Each connection is HTTP/1.1, upgrades allowed, with the limits of `limits`. Every
/// request carries `ConnectInfo<SocketAddr>` with the TCP peer's address.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Slots::new(
        "connections",
        SlotLimits {
            total: limits.max_connections,
            per_identity: usize::MAX,
            per_address: limits.max_connections_per_address,
        },
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let stopping = CancellationToken::new();
    // Every connection's task holds a sender: once the last is dropped, all have closed.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    crate::adapters::wait_after_accept_error(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match connections.take(None, Some(peer.ip().to_canonical())) {
            Ok(slot) => ConnectionSlot {
                _held: Arc::new(slot),
            },
            Err(err) => {
                turn_away(stream, &err);
                continue;
            }
        };
        let router = router.clone();
        let held = slot.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(held.clone());
            router.clone().call(request)
        });
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let (stopping, open) = (stopping.clone(), open.clone());
        tokio::spawn(async move {
            let mut connection = pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stopping.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(%peer, %err, "an HTTP connection ended with an error");
            }
            drop((slot, open));
        });
    }
    drop(listener);
    stopping.cancel();
    drop(open);
    let _ = all_closed.recv().await;
    Ok(())
}

/// Answers a connection over a connection limit with `429` and the error body, then closes
/// it, without reading its request or spending a task on it: the answer fits a new
/// socket's send buffer, and a client that cannot take it at once gets only the close.
fn turn_away(stream: TcpStream, err: &CallError) {
    use std::io::Write as _;
    let body = crate::adapters::error_body(err, RequestId::next()).to_string();
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    if let Ok(mut stream) = stream.into_std() {
        let _ = stream.write_all(answer.as_bytes());
    }
}
