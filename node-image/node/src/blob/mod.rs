//! Blob storage for encrypted records: one trait, three backends.
//!
//! - [`local::LocalStore`]: an embedded content-addressed directory (the demo's default);
//! - [`kubo::KuboStore`]: a kubo (go-ipfs) daemon through its RPC API;
//! - [`cluster::ClusterStore`]: an ipfs-cluster peer through its REST API, with replication
//!   factors, reading through the kubo daemon beside it.
//!
//! Every read checks the blob against the content hash recorded on the ledger (SHA-256 or
//! SM3, by the consortium suite) and refuses a mismatch with [`BlobError::Tampered`]. IPFS
//! addresses are content hashes too, but of IPFS's own DAG encoding and under IPFS's hash
//! choice; checking our own hash of the exact ciphertext keeps the guarantee independent of
//! the backend and of how a CID was produced.

pub mod cluster;
mod config;
mod error;
mod http;
pub mod kubo;
pub mod local;

pub use config::BlobConfig;
pub use error::{BlobError, Result};

use medledger_api::crypto::{Hash, Suite};
use std::future::Future;

/// Where a stored blob is and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// The backend's address of the blob: an IPFS CID (v1) for kubo and cluster,
    /// `sha256-<hex>`/`sm3-<hex>` for the local store.
    pub cid: String,
    /// The suite's hash of the stored bytes; the ledger records it and reads check it.
    pub hash: Hash,
    pub size: u64,
}

/// A store of immutable, already-encrypted blobs.
pub trait BlobStore: Send + Sync {
    /// The suite whose hash names and checks blobs.
    fn suite(&self) -> Suite;

    /// Stores `bytes` (pinned, for IPFS backends) and returns their address and hash.
    fn put(&self, bytes: Vec<u8>) -> impl Future<Output = Result<BlobRef>> + Send;

    /// Fetches a blob and checks it against `expected_hash` (the ledger's); a blob that does
    /// not match is refused with [`BlobError::Tampered`], never returned.
    fn get(&self, cid: &str, expected_hash: &Hash) -> impl Future<Output = Result<Vec<u8>>> + Send;

    /// Checks that the backend answers.
    fn health(&self) -> impl Future<Output = Result<()>> + Send;
}

/// Checks fetched bytes against the expected content hash.
pub fn verify(suite: Suite, cid: &str, bytes: &[u8], expected: &Hash) -> Result<()> {
    let actual = suite.hash(bytes);
    if &actual == expected {
        Ok(())
    } else {
        Err(BlobError::Tampered {
            cid: cid.to_string(),
            expected: hex::encode(expected),
            actual: hex::encode(actual),
        })
    }
}

/// Any of the backends, chosen at run time from a [`BlobConfig`].
#[derive(Debug, Clone)]
pub enum BlobBackend {
    Local(local::LocalStore),
    Kubo(kubo::KuboStore),
    Cluster(cluster::ClusterStore),
}

impl BlobStore for BlobBackend {
    fn suite(&self) -> Suite {
        match self {
            BlobBackend::Local(s) => s.suite(),
            BlobBackend::Kubo(s) => s.suite(),
            BlobBackend::Cluster(s) => s.suite(),
        }
    }

    async fn put(&self, bytes: Vec<u8>) -> Result<BlobRef> {
        match self {
            BlobBackend::Local(s) => s.put(bytes).await,
            BlobBackend::Kubo(s) => s.put(bytes).await,
            BlobBackend::Cluster(s) => s.put(bytes).await,
        }
    }

    async fn get(&self, cid: &str, expected_hash: &Hash) -> Result<Vec<u8>> {
        match self {
            BlobBackend::Local(s) => s.get(cid, expected_hash).await,
            BlobBackend::Kubo(s) => s.get(cid, expected_hash).await,
            BlobBackend::Cluster(s) => s.get(cid, expected_hash).await,
        }
    }

    async fn health(&self) -> Result<()> {
        match self {
            BlobBackend::Local(s) => s.health().await,
            BlobBackend::Kubo(s) => s.health().await,
            BlobBackend::Cluster(s) => s.health().await,
        }
    }
}
