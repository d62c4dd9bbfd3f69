//! Client helpers: connecting, nonces, submitting with retries.

use anyhow::{Context, Result, bail};
use medledger_api::keys::SigningKey;
use medledger_api::pb::{
    QueryRequest, SubmitTxRequest, SubmitTxResponse, ledger_client::LedgerClient,
    query_request::Query,
};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

pub async fn connect(url: &str) -> Result<LedgerClient<Channel>> {
    Ok(LedgerClient::new(channel(url).await?).max_decoding_message_size(64 << 20))
}

/// A gRPC channel to a node's client API, with an error that says what to check.
pub async fn channel(url: &str) -> Result<Channel> {
    Endpoint::from_shared(url.to_string())
        .with_context(|| format!("{url:?} is not a URL; use e.g. http://127.0.0.1:7050"))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| {
            format!("cannot reach a medledger node at {url}; is it running, and is --api right?")
        })
}

/// The signer's next nonce, read linearizably so it reflects every acknowledged commit.
/// Retries while leadership is changing (bounded, about 10 s).
pub async fn next_nonce(client: &mut LedgerClient<Channel>, key: &SigningKey) -> Result<u64> {
    let mut tries = 0;
    loop {
        let r = client
            .query(QueryRequest {
                query: Some(Query::SignerNonce(key.public())),
                linearizable: true,
            })
            .await;
        match r {
            Ok(r) => return Ok(r.into_inner().nonce + 1),
            Err(s) if s.code() == tonic::Code::Unavailable && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => bail!("cannot read the signer's nonce: {}", s.message()),
        }
    }
}

/// Submits, retrying while the cluster has no leader. Resubmitting is safe: the node answers
/// a transaction already on chain with where it committed.
pub async fn submit(
    client: &mut LedgerClient<Channel>,
    tx: Vec<u8>,
    attempts: u32,
) -> Result<SubmitTxResponse> {
    let mut last = None;
    for _ in 0..attempts.max(1) {
        match client.submit_tx(SubmitTxRequest { tx: tx.clone() }).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                ) =>
            {
                last = Some(s);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => bail!("submit failed: {}", s.message()),
        }
    }
    bail!(
        "submit failed after retries: {}",
        last.map(|s| s.message().to_string()).unwrap_or_default()
    )
}
