//! A kubo (go-ipfs) daemon through its RPC API: `POST /api/v0/add` (CIDv1, pinned) and
//! `POST /api/v0/cat`. Every RPC call is a POST; kubo answers a GET with 405.

use super::http::{self, base_url};
use super::{BlobRef, BlobStore, Result, verify};
use medledger_api::crypto::{Hash, Suite};
use std::time::Duration;

const BACKEND: &str = "kubo";

#[derive(Debug, Clone)]
pub struct KuboStore {
    url: String,
    suite: Suite,
    timeout: Duration,
    client: reqwest::Client,
}

/// What `/api/v0/add` answers for one file.
#[derive(serde::Deserialize)]
struct Added {
    #[serde(rename = "Hash")]
    hash: String,
}

impl KuboStore {
    /// `url` is the RPC API's base, e.g. `http://127.0.0.1:5001`.
    pub fn new(url: &str, suite: Suite, timeout: Duration) -> Result<Self> {
        Ok(KuboStore {
            url: base_url(BACKEND, url)?,
            suite,
            timeout,
            client: http::client(timeout)?,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    async fn call(&self, what: &str, request: reqwest::RequestBuilder) -> Result<Vec<u8>> {
        let response = http::send(BACKEND, &self.url, what, self.timeout, request).await?;
        http::body(BACKEND, &self.url, what, self.timeout, response).await
    }

    /// Reads a blob's bytes without the hash check; [`BlobStore::get`] is the checked read.
    pub(super) async fn cat(&self, cid: &str) -> Result<Vec<u8>> {
        let request = self
            .client
            .post(format!("{}/api/v0/cat", self.url))
            .query(&[("arg", cid)]);
        self.call(&format!("cat {cid}"), request).await
    }
}

impl BlobStore for KuboStore {
    fn suite(&self) -> Suite {
        self.suite
    }

    async fn put(&self, bytes: Vec<u8>) -> Result<BlobRef> {
        let hash = self.suite.hash(&bytes);
        let size = bytes.len() as u64;
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("blob"),
        );
        // CIDv1 with raw leaves (kubo's default for v1); `pin` so the blob survives GC.
        let request = self
            .client
            .post(format!("{}/api/v0/add", self.url))
            .query(&[("cid-version", "1"), ("pin", "true"), ("quieter", "true")])
            .multipart(form);
        let body = self.call("add", request).await?;
        let added: Added =
            serde_json::from_slice(&body).map_err(|e| http::protocol(BACKEND, "add", e))?;
        Ok(BlobRef {
            cid: added.hash,
            hash,
            size,
        })
    }

    async fn get(&self, cid: &str, expected_hash: &Hash) -> Result<Vec<u8>> {
        let bytes = self.cat(cid).await?;
        verify(self.suite, cid, &bytes, expected_hash)?;
        Ok(bytes)
    }

    async fn health(&self) -> Result<()> {
        let request = self.client.post(format!("{}/api/v0/id", self.url));
        self.call("id", request).await.map(drop)
    }
}
