//! Applied blocks not yet written to the store.
//!
//! Writing each block in its own store transaction cost more than executing it: every commit
//! rewrites the B-tree pages it touches, and most transactions touch pages of their own (the
//! transaction index is keyed by hash). So the state machine keeps the blocks it applies as
//! in-memory layers over the store and writes them together, a few times a second, in one
//! transaction. Readers see store and layers as one: they take the layers first and open the
//! store after, and a layer leaves memory only once the store holds it.
//!
//! Nothing acknowledged is at risk: a block is applied only after its Raft entry is durable
//! on a majority, and after a crash openraft re-applies every entry after the applied log id
//! the store holds, which is written in the same transaction as the blocks it covers.

use super::deferred::Runs;
use super::{Head, IndexEntry, is_ok};
use crate::ledger::execute::Changes;
use crate::raft::{Node, NodeId};
use medledger_api::crypto::Hash;
use medledger_api::pb::Block;
use openraft::{LogId, StoredMembership};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// One applied block and the state it wrote.
pub(crate) struct Layer {
    pub height: u64,
    pub hash: Hash,
    pub block: Block,
    pub changes: Changes,
    /// Where each transaction id of this block is indexed (the same rule as the store's
    /// index: the first accepted copy, else the first copy).
    pub tx_index: BTreeMap<Hash, IndexEntry>,
}

impl Layer {
    pub fn new(block: Block, hash: Hash, changes: Changes) -> Layer {
        let height = block.header.as_ref().map(|h| h.height).unwrap_or(0);
        let mut tx_index = BTreeMap::new();
        for &(id, index) in &changes.tx_index {
            let ok = is_ok(&block, index);
            IndexEntry::keep_first_accepted(&mut tx_index, id, IndexEntry { height, index, ok });
        }
        Layer {
            height,
            hash,
            block,
            changes,
            tx_index,
        }
    }
}

/// What the state machine has applied beyond the store, and where it stands.
pub(crate) struct Pending {
    /// Oldest first; heights are consecutive.
    pub layers: Arc<Vec<Arc<Layer>>>,
    /// The head including the layers.
    pub head: Head,
    /// Raft's last applied log id and membership, including the layers.
    pub applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Node>,
    /// When the oldest layer was added.
    pub since: Option<Instant>,
    /// When the oldest run was added.
    pub runs_since: Option<Instant>,
    /// Index entries and records of blocks the file holds but its transaction index and
    /// record table do not yet (oldest first; see `deferred.rs`).
    pub runs: Runs,
}

impl Pending {
    pub fn push(&mut self, layer: Layer) {
        if self.layers.is_empty() {
            self.since = Some(Instant::now());
        }
        Arc::make_mut(&mut self.layers).push(Arc::new(layer));
    }

    /// Drops the oldest `n` layers, which the store now holds.
    pub fn drop_written(&mut self, n: usize) {
        let layers = Arc::make_mut(&mut self.layers);
        layers.drain(..n.min(layers.len()));
        if layers.is_empty() {
            self.since = None;
        }
    }
}

/// A reader's copy of the layers: cheap to take (two reference counts), fixed once taken.
#[derive(Clone)]
pub(crate) struct Layers(pub Arc<Vec<Arc<Layer>>>);

impl Layers {
    /// Newest first, as lookups want them.
    fn newest_first(&self) -> impl Iterator<Item = &Arc<Layer>> {
        self.0.iter().rev()
    }

    pub fn block(&self, height: u64) -> Option<&Layer> {
        let first = self.0.first()?.height;
        let i = height.checked_sub(first)? as usize;
        self.0.get(i).map(|l| l.as_ref())
    }

    pub fn nonce(&self, signer: &[u8]) -> Option<u64> {
        self.newest_first()
            .find_map(|l| l.changes.nonces.get(signer).copied())
    }

    pub fn role(&self, key: &[u8]) -> Option<String> {
        self.newest_first()
            .find_map(|l| l.changes.participants.get(key).cloned())
    }

    pub fn kv(&self, key: &str) -> Option<Vec<u8>> {
        self.newest_first()
            .find_map(|l| l.changes.kv.get(key).cloned())
    }

    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        self.newest_first()
            .find_map(|l| l.changes.objects.get(key).cloned())
    }

    /// Every indexed location of `id` in the layers, oldest first.
    pub fn tx_locations<'a>(&'a self, id: &'a Hash) -> impl Iterator<Item = IndexEntry> + 'a {
        self.0
            .iter()
            .filter_map(move |l| l.tx_index.get(id).copied())
    }

    /// Objects whose key starts with `prefix`, newest value per key.
    pub fn objects_with_prefix(&self, prefix: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
        let mut out = std::collections::BTreeMap::new();
        for l in self.0.iter() {
            for (k, v) in l.changes.objects.range(prefix.to_string()..) {
                if !k.starts_with(prefix) {
                    break;
                }
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }
}
