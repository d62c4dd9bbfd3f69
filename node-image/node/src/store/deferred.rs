//! Tables written in large, rare batches: the transaction index and the key-value records.
//!
//! Both are keyed so that new entries land on pages all over their B-trees (transaction ids
//! are hashes; record keys are whatever clients choose). Written with every store write, a
//! few thousand entries rewrite a few thousand 4 KiB pages: measured 2.8 KB written per
//! transaction, and ~17 % of the throughput of a 4-validator chain (docs/benchmarks.md).
//! Gathered over ~100,000 transactions, each page takes many entries at once.
//!
//! Nothing applied depends on them (execution never reads either table) and both follow from
//! the stored blocks alone: a transaction's index entry from its position and result, a
//! record from an accepted `Put`. So the entries wait in memory, in runs, until enough have
//! gathered; readers consult the runs between the layers and the file; and after a crash
//! `Store::open` derives them again from the blocks above the marker `META_INDEXED`, which
//! records how far the file's copies are complete.

use super::pending::Layer;
use super::{BLOCKS, IndexEntry, KV, StoreError, index_block, is_ok, write_tx_index};
use crate::contracts::identity::kv_key;
use medledger_api::crypto::{Hash, Suite};
use medledger_api::pb::{Block, tx_body::Op};
use prost::Message;
use redb::{ReadTransaction, WriteTransaction};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Entries of some consecutive blocks, not yet in the file.
#[derive(Default)]
pub(crate) struct Run {
    pub index: BTreeMap<Hash, IndexEntry>,
    /// Each key's newest value within the run.
    pub kv: BTreeMap<String, Vec<u8>>,
    /// Bytes of `kv` (keys and values), the other measure of when runs are due.
    pub kv_bytes: usize,
}

/// Waiting runs, oldest first. Readers take a copy (reference counts) with the layers.
pub(crate) type Runs = Arc<Vec<Arc<Run>>>;

impl Run {
    /// How many transactions the run covers (each has one index entry), the measure of
    /// when runs are due to be written.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty() && self.kv.is_empty()
    }

    /// The entries of layers about to be written (oldest first).
    pub fn of_layers(layers: &[Arc<Layer>]) -> Run {
        let mut run = Run::default();
        for l in layers {
            for (id, e) in &l.tx_index {
                IndexEntry::keep_first_accepted(&mut run.index, *id, *e);
            }
            for (k, v) in &l.changes.kv {
                run.put(k.clone(), v.clone());
            }
        }
        run
    }

    fn put(&mut self, key: String, value: Vec<u8>) {
        let key_len = key.len();
        self.kv_bytes += key_len + value.len();
        if let Some(old) = self.kv.insert(key, value) {
            self.kv_bytes -= key_len + old.len();
        }
    }

    /// The entries of the stored blocks above `upto`: those the file holds but whose
    /// entries it does not (written since the runs were last written, before a crash).
    pub fn of_stored_blocks(
        r: &ReadTransaction,
        suite: Suite,
        upto: u64,
    ) -> Result<Run, StoreError> {
        let mut run = Run::default();
        for item in r.open_table(BLOCKS)?.range(upto + 1..)? {
            let (height, bytes) = item?;
            let block =
                Block::decode(bytes.value()).map_err(|e| StoreError::Codec(e.to_string()))?;
            index_block(suite, &block, height.value(), &mut run.index);
            records_of_block(&block, &mut run);
        }
        Ok(run)
    }
}

/// The records the accepted `Put`s of an applied block wrote, as execution wrote them
/// (`contracts::identity::put`): the later of two puts of a key wins.
fn records_of_block(block: &Block, run: &mut Run) {
    for (i, raw) in block.txs.iter().enumerate() {
        if !is_ok(block, i as u32) {
            continue;
        }
        if let Ok((_, body)) = medledger_api::tx::decode(raw)
            && let Some(Op::Put(p)) = body.op
        {
            run.put(kv_key(&body.signer, &p.key), p.value);
        }
    }
}

/// Writes `runs` (oldest first) into the file's index and records.
pub(crate) fn write_runs(w: &WriteTransaction, runs: &[&Run]) -> Result<(), StoreError> {
    // Oldest run first, so the first accepted copy of a transaction keeps winning and the
    // newest value of a record does too.
    let mut index = BTreeMap::new();
    let mut kv: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for r in runs {
        for (id, e) in &r.index {
            IndexEntry::keep_first_accepted(&mut index, *id, *e);
        }
        for (k, v) in &r.kv {
            kv.insert(k, v);
        }
    }
    write_tx_index(w, &index)?;
    let mut t = w.open_table(KV)?;
    for (k, v) in kv {
        t.insert(k, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Run;

    #[test]
    fn a_run_counts_the_bytes_of_its_newest_records() {
        let mut run = Run::default();
        run.put("a/k".into(), vec![0; 100]);
        run.put("a/k".into(), vec![0; 10]);
        run.put("b/k".into(), vec![0; 5]);
        assert_eq!(run.kv_bytes, 3 + 10 + 3 + 5);
        assert_eq!(run.kv["a/k"].len(), 10);
        assert!(!run.is_empty());
        assert_eq!(run.len(), 0, "no transactions indexed");
    }
}
