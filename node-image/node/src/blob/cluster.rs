//! An ipfs-cluster peer through its REST API: `POST /add` chunks the blob, stores it in the
//! cluster's kubo daemons and pins it with the configured replication factors;
//! `GET /pins/{cid}` reports where it is pinned. ipfs-cluster has no read endpoint, so
//! reads go through the kubo RPC beside it (and are hash-checked there).

use super::http::{self, base_url};
use super::kubo::KuboStore;
use super::{BlobError, BlobRef, BlobStore, Result};
use medledger_api::crypto::{Hash, Suite};
use std::collections::BTreeMap;
use std::time::Duration;

const BACKEND: &str = "ipfs-cluster";

/// Replication factors for new pins, with ipfs-cluster's own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    min: i32,
    max: i32,
}

impl Replication {
    /// Both 0: the cluster's configured default; both -1: every peer; else 1 <= min <= max.
    pub fn new(min: i32, max: i32) -> Result<Self> {
        let ok = (min == 0 && max == 0) || (min == -1 && max == -1) || (1 <= min && min <= max);
        if !ok {
            return Err(BlobError::Config(format!(
                "replicationMin {min} / replicationMax {max}: use both 0 (cluster default), both -1 (every peer), or 1 <= min <= max"
            )));
        }
        Ok(Replication { min, max })
    }
}

/// One peer's view of a pin, as `GET /pins/{cid}` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PeerPin {
    #[serde(rename = "peername", default)]
    pub peer_name: String,
    /// `pinned`, `pinning`, `pin_queued`, `remote` (allocated elsewhere), `pin_error`, ...
    pub status: String,
    #[serde(default)]
    pub error: String,
}

/// Where a blob is pinned across the cluster, keyed by cluster peer id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PinStatus {
    pub cid: String,
    #[serde(rename = "peer_map", default)]
    pub peers: BTreeMap<String, PeerPin>,
}

impl PinStatus {
    /// How many peers hold a complete, pinned copy.
    pub fn pinned_count(&self) -> usize {
        self.peers.values().filter(|p| p.status == "pinned").count()
    }
}

/// What `/add?stream-channels=false` answers: one entry per added node, the root last.
#[derive(serde::Deserialize)]
struct Added {
    cid: String,
}

#[derive(Debug, Clone)]
pub struct ClusterStore {
    url: String,
    kubo: KuboStore,
    replication: Replication,
    timeout: Duration,
    client: reqwest::Client,
}

impl ClusterStore {
    /// `url` is the REST API's base (e.g. `http://127.0.0.1:9094`); `kubo` the daemon reads
    /// go through.
    pub fn new(
        url: &str,
        kubo: KuboStore,
        replication: Replication,
        timeout: Duration,
    ) -> Result<Self> {
        Ok(ClusterStore {
            url: base_url(BACKEND, url)?,
            kubo,
            replication,
            timeout,
            client: http::client(timeout)?,
        })
    }

    async fn call(&self, what: &str, request: reqwest::RequestBuilder) -> Result<Vec<u8>> {
        let response = http::send(BACKEND, &self.url, what, self.timeout, request).await?;
        http::body(BACKEND, &self.url, what, self.timeout, response).await
    }

    /// Where `cid` is pinned, per cluster peer.
    pub async fn pin_status(&self, cid: &str) -> Result<PinStatus> {
        let what = format!("pin status of {cid}");
        // CIDs are base32/base58: nothing in them needs escaping in a path segment.
        if !cid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(BlobError::BadCid {
                backend: BACKEND,
                cid: cid.to_string(),
                reason: "a CID has only letters and digits",
            });
        }
        let request = self.client.get(format!("{}/pins/{cid}", self.url));
        let body = self.call(&what, request).await?;
        serde_json::from_slice(&body).map_err(|e| http::protocol(BACKEND, &what, e))
    }
}

impl BlobStore for ClusterStore {
    fn suite(&self) -> Suite {
        self.kubo.suite()
    }

    async fn put(&self, bytes: Vec<u8>) -> Result<BlobRef> {
        let hash = self.suite().hash(&bytes);
        let size = bytes.len() as u64;
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("blob"),
        );
        let (min, max) = (
            self.replication.min.to_string(),
            self.replication.max.to_string(),
        );
        // Same CID parameters as the kubo backend, so a blob has one address either way;
        // `stream-channels=false` returns one JSON array and errors as an HTTP status
        // instead of a trailer.
        let request = self
            .client
            .post(format!("{}/add", self.url))
            .query(&[
                ("cid-version", "1"),
                ("raw-leaves", "true"),
                ("stream-channels", "false"),
                ("name", "medledger-blob"),
                ("replication-min", min.as_str()),
                ("replication-max", max.as_str()),
            ])
            .multipart(form);
        let body = self.call("add", request).await?;
        let added: Vec<Added> =
            serde_json::from_slice(&body).map_err(|e| http::protocol(BACKEND, "add", e))?;
        let root = added
            .into_iter()
            .last()
            .ok_or_else(|| http::protocol(BACKEND, "add", "no CID in the answer"))?;
        Ok(BlobRef {
            cid: root.cid,
            hash,
            size,
        })
    }

    async fn get(&self, cid: &str, expected_hash: &Hash) -> Result<Vec<u8>> {
        self.kubo.get(cid, expected_hash).await
    }

    async fn health(&self) -> Result<()> {
        let request = self.client.get(format!("{}/id", self.url));
        self.call("id", request).await?;
        self.kubo.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_follows_the_cluster_rules() {
        for (min, max) in [(0, 0), (-1, -1), (1, 1), (2, 3)] {
            assert!(Replication::new(min, max).is_ok(), "{min} {max}");
        }
        for (min, max) in [(0, 2), (-1, 2), (3, 2), (-2, -2), (2, -1)] {
            assert!(Replication::new(min, max).is_err(), "{min} {max}");
        }
    }

    #[test]
    fn pin_status_parses_the_rest_answer() {
        let body = r#"{"cid":"bafkreib","name":"medledger-blob","allocations":[],
            "origins":[],"created":"2025-01-01T00:00:00Z","metadata":null,
            "peer_map":{"12D3KooWA":{"peername":"a","ipfs_peer_id":"12D3KooWB",
            "status":"pinned","timestamp":"2025-01-01T00:00:00Z","error":"",
            "attempt_count":0,"priority_pin":false},
            "12D3KooWC":{"peername":"b","status":"remote","timestamp":"2025-01-01T00:00:00Z",
            "error":"","attempt_count":0,"priority_pin":false}}}"#;
        let s: PinStatus = serde_json::from_str(body).unwrap();
        assert_eq!(s.cid, "bafkreib");
        assert_eq!(s.pinned_count(), 1);
        assert_eq!(s.peers["12D3KooWA"].peer_name, "a");
    }
}
