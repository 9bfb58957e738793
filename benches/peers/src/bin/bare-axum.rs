//! The footprint baseline: a bare axum server answering one route, on tokio's default
//! multi-threaded runtime (one worker per core, as `alknet serve` by default).
//! Usage: bare-axum ADDRESS

use axum::Router;
use axum::routing::post;

#[tokio::main]
async fn main() {
    let address = std::env::args()
        .nth(1)
        .expect("usage: bare-axum ADDRESS");
    let app = Router::new().route("/v1/echo/say", post(|body: String| async move { body }));
    let listener = tokio::net::TcpListener::bind(address).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}
