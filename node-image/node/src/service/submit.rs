//! The leader's proposals. Client transactions queue here; a proposal takes whatever has
//! queued (up to the batch limit) as soon as the previous one has committed, so a quiet chain
//! proposes at once and a busy one packs large blocks.

use crate::ledger::{Batch, BatchOutcome, ChainCtx};
use crate::raft::Raft;
use medledger_api::crypto::Hash;
use openraft::error::{ClientWriteError, RaftError};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Proposals in flight at once. One: each block costs a round of fsyncs, messages and a
/// store commit on every node whatever its size, so under load fewer, larger blocks carry
/// more transactions per second (measured 4,160 tx/s with one against 3,886 with six, and
/// no worse latency; docs/benchmarks.md).
const PIPELINE: usize = 1;

pub struct Committed {
    pub height: u64,
    pub index: u32,
    pub code: i32,
    pub reason: String,
    pub tx_id: Hash,
}

/// Why a queued transaction got no result.
#[derive(Debug)]
pub enum NotCommitted {
    /// This node lost the leadership before the proposal committed: ask the new leader.
    NotLeader,
    /// Anything else, in words for the client.
    Failed(String),
}

pub type Reply = Result<Committed, NotCommitted>;

struct Pending {
    raw: Vec<u8>,
    reply: oneshot::Sender<Reply>,
}

#[derive(Clone)]
pub struct Submitter {
    queue: mpsc::Sender<Pending>,
}

impl Submitter {
    pub fn start(
        raft: Raft,
        ctx: Arc<ChainCtx>,
        me: u64,
        key: ed25519_dalek::SigningKey,
        max_batch: usize,
    ) -> Submitter {
        let (tx, rx) = mpsc::channel(max_batch * PIPELINE * 2);
        tokio::spawn(run(raft, ctx, me, key, max_batch, rx));
        Submitter { queue: tx }
    }

    /// Queues a transaction and waits until it is committed and applied.
    pub async fn submit(&self, raw: Vec<u8>) -> Reply {
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Pending { raw, reply })
            .await
            .map_err(|_| NotCommitted::Failed("node is shutting down".into()))?;
        rx.await
            .map_err(|_| NotCommitted::Failed("proposal was dropped; retry".into()))?
    }
}

async fn run(
    raft: Raft,
    ctx: Arc<ChainCtx>,
    me: u64,
    key: ed25519_dalek::SigningKey,
    max_batch: usize,
    mut rx: mpsc::Receiver<Pending>,
) {
    let slots = Arc::new(Semaphore::new(PIPELINE));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else { return };
        let mut items = vec![first];
        while items.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => items.push(p),
                Err(_) => break,
            }
        }
        let (raws, replies): (Vec<_>, Vec<_>) = items.into_iter().map(|p| (p.raw, p.reply)).unzip();
        let batch = Batch::sign(&ctx, me, &key, raws, now_ms());
        let raft = raft.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match raft.client_write(batch).await {
                Ok(resp) => deliver(resp.data, replies),
                Err(e) => {
                    let lost_leadership =
                        matches!(e, RaftError::APIError(ClientWriteError::ForwardToLeader(_)));
                    for r in replies {
                        let _ = r.send(Err(if lost_leadership {
                            NotCommitted::NotLeader
                        } else {
                            NotCommitted::Failed(format!(
                                "not committed: {e}; retry (the same transaction is safe to resubmit)"
                            ))
                        }));
                    }
                }
            }
        });
    }
}

fn deliver(out: BatchOutcome, replies: Vec<oneshot::Sender<Reply>>) {
    for (i, (r, ((code, reason), tx_id))) in replies
        .into_iter()
        .zip(out.results.into_iter().zip(out.tx_ids))
        .enumerate()
    {
        let _ = r.send(Ok(Committed {
            height: out.height,
            index: i as u32,
            code,
            reason,
            tx_id,
        }));
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
