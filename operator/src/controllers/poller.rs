//! Polls each deployed node's gRPC `Status`. Fast-moving figures (height, peers) go to
//! metrics; role, peer count and sync state go to `status.ledger`, written only when they
//! change, so a steady consortium causes no API writes.

use super::Context;
use crate::crd::{LedgerNode, LedgerView, NodePhase};
use crate::resources::{API_PORT, names};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use medledger_api::pb::{StatusRequest, StatusResponse, ledger_client::LedgerClient};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

pub const UNREACHABLE: &str = "unreachable";

/// The status view of a node's answer.
pub fn view(resp: &StatusResponse) -> LedgerView {
    LedgerView {
        role: if resp.role.is_empty() {
            "unknown".into()
        } else {
            resp.role.clone()
        },
        peers: resp.peers_connected,
        in_sync: resp.in_sync,
    }
}

pub fn unreachable() -> LedgerView {
    LedgerView {
        role: UNREACHABLE.into(),
        peers: 0,
        in_sync: false,
    }
}

/// The `status.ledger` to write, if any. A node is only called unreachable after two failed
/// polls in a row, so a restart does not flap the status.
pub fn next_view(
    current: Option<&LedgerView>,
    polled: Result<LedgerView, ()>,
    failures_before: u32,
) -> Option<LedgerView> {
    let new = match polled {
        Ok(v) => v,
        Err(()) if failures_before >= 1 => unreachable(),
        Err(()) => return None,
    };
    (current != Some(&new)).then_some(new)
}

/// The address of a node's client API through its headless Service.
pub fn api_address(node: &LedgerNode) -> String {
    format!(
        "http://{}.{}.svc:{API_PORT}",
        names::headless_service(&node.name_any()),
        node.namespace().unwrap_or_default()
    )
}

pub async fn status_of(address: String, timeout: Duration) -> Result<StatusResponse, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(address)
        .map_err(|e| e.to_string())?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let mut client = LedgerClient::new(channel);
    client
        .status(StatusRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|e| e.to_string())
}

fn is_deployed(node: &LedgerNode) -> bool {
    matches!(
        node.status.as_ref().and_then(|s| s.phase),
        Some(NodePhase::Running | NodePhase::Deploying | NodePhase::Degraded)
    ) && node
        .status
        .as_ref()
        .and_then(|s| s.genesis_hash.as_ref())
        .is_some()
}

/// Polls every deployed node once per `interval` until the process stops.
pub async fn run(
    ctx: Arc<Context>,
    store: Store<DeserializeGuard<LedgerNode>>,
    interval: Duration,
) {
    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut exported: HashSet<[String; 4]> = HashSet::new();
    loop {
        let nodes: Vec<LedgerNode> = store
            .state()
            .iter()
            .filter_map(|g| g.0.as_ref().ok().cloned())
            .filter(is_deployed)
            .collect();
        let results: Vec<(LedgerNode, Result<StatusResponse, String>)> =
            futures::stream::iter(nodes)
                .map(|n| async move {
                    let r = status_of(api_address(&n), Duration::from_secs(3)).await;
                    (n, r)
                })
                .buffer_unordered(8)
                .collect()
                .await;
        let mut seen = HashSet::new();
        for (node, result) in results {
            let key = super::object_key(&node);
            let labels = [
                node.namespace().unwrap_or_default(),
                node.name_any(),
                node.spec.member_name.clone(),
                node.spec.consortium_ref.name.clone(),
            ];
            seen.insert(labels.clone());
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            let polled = match &result {
                Ok(resp) => {
                    ctx.metrics.node_polls.with_label_values(&["ok"]).inc();
                    ctx.metrics.node_reachable.with_label_values(&labels).set(1);
                    ctx.metrics
                        .node_height
                        .with_label_values(&labels)
                        .set(resp.height as i64);
                    ctx.metrics
                        .node_peers
                        .with_label_values(&labels)
                        .set(resp.peers_connected as i64);
                    ctx.metrics
                        .node_in_sync
                        .with_label_values(&labels)
                        .set(resp.in_sync as i64);
                    Ok(view(resp))
                }
                Err(e) => {
                    ctx.metrics.node_polls.with_label_values(&["error"]).inc();
                    ctx.metrics.node_reachable.with_label_values(&labels).set(0);
                    tracing::debug!(node = %key, error = %e, "status poll failed");
                    Err(())
                }
            };
            let before = failures.get(&key).copied().unwrap_or(0);
            if polled.is_ok() {
                failures.remove(&key);
            } else {
                failures.insert(key.clone(), before + 1);
            }
            let current = node.status.as_ref().and_then(|s| s.ledger.as_ref());
            if let Some(new) = next_view(current, polled, before) {
                let api: Api<LedgerNode> =
                    Api::namespaced(ctx.client.clone(), &node.namespace().unwrap_or_default());
                let patch = serde_json::json!({"status": {"ledger": new}});
                let pp = PatchParams {
                    field_manager: Some(crate::resources::FIELD_MANAGER.into()),
                    ..Default::default()
                };
                if let Err(e) = api
                    .patch_status(&node.name_any(), &pp, &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!(node = %key, error = %e, "cannot record the node's ledger status");
                }
            }
        }
        // Nodes deleted or no longer deployed stop being exported.
        for gone in exported.difference(&seen) {
            ctx.metrics
                .forget_node(&gone[0], &gone[1], &gone[2], &gone[3]);
        }
        exported = seen;
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_view_takes_role_peers_and_sync_only() {
        let resp = StatusResponse {
            role: "leader".into(),
            peers_connected: 3,
            in_sync: true,
            height: 1234,
            ..Default::default()
        };
        assert_eq!(
            view(&resp),
            LedgerView {
                role: "leader".into(),
                peers: 3,
                in_sync: true
            }
        );
        // The height changes constantly; it must not cause a status write.
        let later = StatusResponse {
            height: 99999,
            ..resp.clone()
        };
        assert_eq!(next_view(Some(&view(&resp)), Ok(view(&later)), 0), None);
    }

    #[test]
    fn writes_only_on_change_and_unreachable_only_after_two_failures() {
        let v = LedgerView {
            role: "follower".into(),
            peers: 2,
            in_sync: true,
        };
        assert_eq!(next_view(None, Ok(v.clone()), 0), Some(v.clone()));
        assert_eq!(next_view(Some(&v), Ok(v.clone()), 0), None);
        assert_eq!(next_view(Some(&v), Err(()), 0), None);
        assert_eq!(next_view(Some(&v), Err(()), 1), Some(unreachable()));
        assert_eq!(next_view(Some(&unreachable()), Err(()), 5), None);
        let fewer = LedgerView {
            peers: 1,
            ..v.clone()
        };
        assert_eq!(next_view(Some(&v), Ok(fewer.clone()), 0), Some(fewer));
    }

    /// A ledger that answers `Status` only, on a loopback port.
    struct FakeLedger;

    #[tonic::async_trait]
    impl medledger_api::pb::ledger_server::Ledger for FakeLedger {
        async fn submit_tx(
            &self,
            _: tonic::Request<medledger_api::pb::SubmitTxRequest>,
        ) -> Result<tonic::Response<medledger_api::pb::SubmitTxResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("test"))
        }
        async fn get_tx(
            &self,
            _: tonic::Request<medledger_api::pb::GetTxRequest>,
        ) -> Result<tonic::Response<medledger_api::pb::GetTxResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("test"))
        }
        async fn get_block(
            &self,
            _: tonic::Request<medledger_api::pb::GetBlockRequest>,
        ) -> Result<tonic::Response<medledger_api::pb::GetBlockResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("test"))
        }
        type StreamBlocksStream =
            futures::stream::Empty<Result<medledger_api::pb::GetBlockResponse, tonic::Status>>;
        async fn stream_blocks(
            &self,
            _: tonic::Request<medledger_api::pb::StreamBlocksRequest>,
        ) -> Result<tonic::Response<Self::StreamBlocksStream>, tonic::Status> {
            Err(tonic::Status::unimplemented("test"))
        }
        async fn status(
            &self,
            _: tonic::Request<StatusRequest>,
        ) -> Result<tonic::Response<StatusResponse>, tonic::Status> {
            Ok(tonic::Response::new(StatusResponse {
                role: "leader".into(),
                peers_connected: 3,
                in_sync: true,
                height: 42,
                ..Default::default()
            }))
        }
        async fn query(
            &self,
            _: tonic::Request<medledger_api::pb::QueryRequest>,
        ) -> Result<tonic::Response<medledger_api::pb::QueryResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("test"))
        }
    }

    #[tokio::test]
    async fn polls_a_real_grpc_server_on_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(medledger_api::pb::ledger_server::LedgerServer::new(
                    FakeLedger,
                ))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let resp = status_of(format!("http://{addr}"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            view(&resp),
            LedgerView {
                role: "leader".into(),
                peers: 3,
                in_sync: true
            }
        );
        assert_eq!(resp.height, 42);
        // A closed port is an error, not a hang or a panic.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(
            status_of(format!("http://{closed}"), Duration::from_secs(5))
                .await
                .is_err()
        );
    }

    #[test]
    fn api_address_uses_the_headless_service() {
        let n = crate::resources::fixtures::node();
        assert_eq!(api_address(&n), "http://node-a.hospital-a.svc:7050");
    }
}
