//! Back-fill: after installing a snapshot a node holds the state but not the blocks below
//! the snapshot. It fetches them from peers, checks every block's roots, proposer signature
//! and link to its predecessor, and requires the last one to hash to the snapshot's anchor.

use crate::node::Shared;
use crate::store::{
    BLOCK_HASHES, BLOCKS, Head, StoreError, index_block, put_head, read_head, write_tx_index,
};
use medledger_api::block::verify_block;
use medledger_api::crypto::Hash;
use prost::Message;
use redb::Durability;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_stream::StreamExt;

const CHUNK: usize = 256;

pub async fn run(node: Arc<Shared>, head_tx: watch::Sender<Head>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
        let Ok(head) = node.store.head() else {
            continue;
        };
        if head.complete() {
            continue;
        }
        for peer in node.peers.ids() {
            match fill_from(&node, &head_tx, peer).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(peer, error = %e, "back-fill from peer failed"),
            }
        }
    }
}

/// Fetches the gap from one peer. Returns true when the gap is closed.
async fn fill_from(
    node: &Arc<Shared>,
    head_tx: &watch::Sender<Head>,
    peer: u64,
) -> Result<bool, String> {
    let head = node.store.head().map_err(|e| e.to_string())?;
    let (from, to) = (head.contiguous + 1, head.anchor_height);
    let mut prev: Hash = if head.contiguous == 0 {
        node.ctx.genesis_hash
    } else {
        node.store
            .read()
            .and_then(|v| v.block_hash(head.contiguous))
            .map_err(|e| e.to_string())?
            .ok_or("missing hash")?
    };
    let mut client = node.peers.client(peer).map_err(|e| e.to_string())?;
    let mut stream = client
        .fetch_blocks(medledger_api::pb::FetchBlocksRequest {
            from_height: from,
            to_height: to,
        })
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    // Blocks may be proposed by validators admitted after the genesis.
    let members = crate::membership::current_members(&node.ctx, &node.store);
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut expected = from;
    while let Some(item) = stream.next().await {
        let block = item
            .map_err(|e| e.to_string())?
            .block
            .ok_or("empty block")?;
        let hash = verify_block(
            node.ctx.suite,
            &node.ctx.chain_id,
            &block,
            expected,
            &prev,
            |id| crate::membership::node_key_in(&node.ctx, &members, id),
        )
        .map_err(|e| format!("peer sent a bad block {expected}: {e}"))?;
        if expected == to && hash != head.anchor_hash {
            return Err(format!(
                "peer's block {to} does not match the snapshot anchor"
            ));
        }
        chunk.push((block, hash));
        prev = hash;
        expected += 1;
        if chunk.len() == CHUNK || expected > to {
            let n = chunk.len() as u64;
            let new_head =
                tokio::task::block_in_place(|| write_chunk(node, std::mem::take(&mut chunk)))
                    .map_err(|e| e.to_string())?;
            node.metrics.blocks_backfilled.inc_by(n);
            head_tx.send_replace(new_head);
        }
        if expected > to {
            return Ok(true);
        }
    }
    Ok(false)
}

fn write_chunk(
    node: &Shared,
    chunk: Vec<(medledger_api::pb::Block, Hash)>,
) -> Result<Head, StoreError> {
    let _writer = node.store.writer();
    let mut w = node.store.db.begin_write()?;
    w.set_durability(Durability::Immediate);
    let mut last = 0;
    for (block, hash) in &chunk {
        let height = block.header.as_ref().map(|h| h.height).unwrap_or(0);
        w.open_table(BLOCKS)?
            .insert(height, block.encode_to_vec().as_slice())?;
        w.open_table(BLOCK_HASHES)?
            .insert(height, hash.as_slice())?;
        let mut ids = BTreeMap::new();
        index_block(node.ctx.suite, block, height, &mut ids);
        write_tx_index(&w, &ids)?;
        last = height;
    }
    // The file's head and the head including blocks still in memory both move. A newer
    // snapshot may have been installed while this chunk was fetched, moving the anchor past
    // `anchor`: the gap closes only when the blocks reach the current anchor.
    let close = |h: &mut Head| {
        h.contiguous = if last >= h.anchor_height {
            h.height
        } else {
            h.contiguous.max(last)
        };
    };
    let mut stored = read_head(&w)?;
    close(&mut stored);
    put_head(&w, &stored)?;
    w.commit()?;
    let mut p = node.store.pending();
    close(&mut p.head);
    Ok(p.head)
}
