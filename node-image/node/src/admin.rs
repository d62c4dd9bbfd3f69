//! The admin HTTP port: `/metrics`, `/live`, `/ready`, and fault injection when enabled.

use crate::node::Shared;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/fault/isolate", post(isolate))
        .route("/fault/heal", post(heal))
        .with_state(node);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(node): State<Arc<Shared>>) -> String {
    node.metrics.render()
}

/// Live while the process serves and its store answers.
async fn live(State(node): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    match node.store.head() {
        Ok(_) => (StatusCode::OK, "live\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n"),
    }
}

/// Ready when a leader is known, every block is held and the local log is applied.
async fn ready(State(node): State<Arc<Shared>>) -> (StatusCode, String) {
    let s = node.status();
    if s.in_sync {
        (
            StatusCode::OK,
            format!("ready: {} at height {}\n", s.role, s.height),
        )
    } else if s.leader_id == 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no Raft leader known\n".into(),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: catching up (height {})\n", s.height),
        )
    }
}

fn fault(node: &Shared, isolate: bool) -> (StatusCode, &'static str) {
    if !node.fault_injection {
        return (
            StatusCode::FORBIDDEN,
            "fault injection is disabled (faultInjection: false in the node config)\n",
        );
    }
    node.peers.isolated.store(isolate, Ordering::Relaxed);
    tracing::warn!(
        isolated = isolate,
        "fault injection changed the peer transport"
    );
    (
        StatusCode::OK,
        if isolate { "isolated\n" } else { "healed\n" },
    )
}

async fn isolate(State(node): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    fault(&node, true)
}

async fn heal(State(node): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    fault(&node, false)
}
