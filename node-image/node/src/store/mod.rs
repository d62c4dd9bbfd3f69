//! The node's embedded transactional store (redb): one file holding the Raft log, blocks,
//! state and the current snapshot, so a block and the state it produced commit atomically.

mod deferred;
pub mod log;
mod pending;
pub mod state_machine;

use crate::ledger::execute::{MEMBER_ROLE, StateRead};
use crate::raft::{Node, NodeId};
use deferred::{Run, Runs};
use medledger_api::crypto::{Hash, Suite};
use medledger_api::pb::Block;
use openraft::{LogId, StoredMembership};
use pending::{Layer, Layers, Pending};
use prost::Message;
use redb::{
    Database, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
pub(crate) const BLOCK_HASHES: TableDefinition<u64, &[u8]> = TableDefinition::new("block_hashes");
pub(crate) const TX_INDEX: TableDefinition<&[u8], (u64, u32)> = TableDefinition::new("tx_index");
pub(crate) const NONCES: TableDefinition<&[u8], u64> = TableDefinition::new("nonces");
pub(crate) const PARTICIPANTS: TableDefinition<&[u8], &str> = TableDefinition::new("participants");
pub(crate) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Contract state (records, access, proposals, members, audit trail), keyed `kind/id...`.
pub(crate) const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");

pub(crate) const META_HEAD: &str = "head";
pub(crate) const META_APPLIED: &str = "sm_applied";
pub(crate) const META_MEMBERSHIP: &str = "sm_membership";
/// The height up to which the file's transaction index and records cover every block it
/// holds (`deferred.rs`).
pub(crate) const META_INDEXED: &str = "tx_indexed_upto";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Db(Box<redb::Error>),
    #[error("stored data cannot be decoded ({0}); the data directory is damaged")]
    Codec(String),
    #[error(
        "the Raft log could not be written ({0}); check the data volume, then restart the node"
    )]
    LogWrite(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Db(Box::new(e.into())) }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("in-memory values serialize")
}

pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, StoreError> {
    bincode::deserialize(b).map_err(|e| StoreError::Codec(e.to_string()))
}

/// Where the chain stands. Blocks `1..=contiguous` and `anchor_height+1..=height` are stored;
/// a gap between them exists only after installing a snapshot, until back-fill closes it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Head {
    pub height: u64,
    pub hash: Hash,
    pub contiguous: u64,
    pub anchor_height: u64,
    pub anchor_hash: Hash,
}

impl Head {
    pub fn genesis(genesis_hash: Hash) -> Head {
        Head {
            height: 0,
            hash: genesis_hash,
            contiguous: 0,
            anchor_height: 0,
            anchor_hash: genesis_hash,
        }
    }
    pub fn complete(&self) -> bool {
        self.contiguous >= self.anchor_height
    }
}

/// Two redb files: the Raft log (vote, entries) and the ledger (blocks, state, snapshot).
/// Each has a single writer, so keeping them apart lets log appends and block applies
/// fsync in parallel instead of queueing behind each other. Applied blocks not yet written
/// to the ledger file wait in `pending` (see `pending.rs`).
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Arc<Database>,
    pub(crate) log_db: Arc<Database>,
    genesis_hash: Hash,
    pending: Arc<Mutex<Pending>>,
    /// Held by whoever writes the ledger file, so that writes land in order.
    writer: Arc<Mutex<()>>,
    /// Wakes the node's background writer when pending layers are due (`node::flush_applied`).
    flush_wanted: Arc<tokio::sync::Notify>,
}

/// Pending layers are written in the background once there are this many...
const FLUSH_LAYERS: usize = 64;
/// ...or once the oldest is this old...
const FLUSH_AGE: std::time::Duration = std::time::Duration::from_millis(500);
/// ...and by the applying task itself once this many wait, so that a writer falling behind
/// slows applying down instead of letting memory grow.
pub(crate) const FLUSH_LAYERS_MAX: usize = 4 * FLUSH_LAYERS;

/// The transaction index and the records are written to the file only once the waiting
/// runs cover this many transactions (`deferred.rs`)...
const DEFERRED_TXS: usize = 1 << 17;
/// ...or hold this many bytes of records (large values would otherwise fill memory long
/// before the count is reached)...
const DEFERRED_BYTES: usize = 64 << 20;
/// ...or once the oldest run is this old, which also bounds how many blocks a restart must
/// read again (`Store::open`).
const DEFERRED_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// What applying a block should do about the pending layers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FlushState {
    NotDue,
    /// Wake the background writer.
    Due,
    /// Write them now, on the applying task.
    Overdue,
}

impl Store {
    pub fn open(dir: &Path, genesis_hash: Hash, suite: Suite) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(Box::new(redb::Error::Io(e))))?;
        let log_db = Database::builder()
            .set_cache_size(32 << 20)
            .create(dir.join("raft-log.redb"))?;
        let txn = log_db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.commit()?;
        let db = Database::builder()
            .set_cache_size(64 << 20)
            .create(dir.join("ledger.redb"))?;
        let txn = db.begin_write()?;
        {
            // Create every table up front so readers never see "table does not exist".
            txn.open_table(BLOCKS)?;
            txn.open_table(BLOCK_HASHES)?;
            txn.open_table(TX_INDEX)?;
            txn.open_table(NONCES)?;
            txn.open_table(PARTICIPANTS)?;
            txn.open_table(KV)?;
            txn.open_table(OBJECTS)?;
            let mut meta = txn.open_table(META)?;
            if meta.get(META_HEAD)?.is_none() {
                meta.insert(META_HEAD, encode(&Head::genesis(genesis_hash)).as_slice())?;
            }
            if meta.get(META_INDEXED)?.is_none() {
                // A new file, or one written before the index and records were deferred,
                // which has both for every block it holds.
                let head: Head = get_meta(&meta, META_HEAD)?
                    .ok_or_else(|| StoreError::Codec("missing head".into()))?;
                meta.insert(META_INDEXED, encode(&head.height).as_slice())?;
            }
        }
        txn.commit()?;
        let pending = {
            let r = db.begin_read()?;
            let meta = r.open_table(META)?;
            let head: Head = get_meta(&meta, META_HEAD)?
                .ok_or_else(|| StoreError::Codec("missing head".into()))?;
            // Written by the transaction above when missing.
            let indexed: u64 = get_meta(&meta, META_INDEXED)?
                .ok_or_else(|| StoreError::Codec("missing index marker".into()))?;
            let unwritten = Run::of_stored_blocks(&r, suite, indexed)?;
            Pending {
                layers: Arc::default(),
                head,
                applied: get_meta::<Option<LogId<NodeId>>>(&meta, META_APPLIED)?.flatten(),
                membership: get_meta(&meta, META_MEMBERSHIP)?.unwrap_or_default(),
                since: None,
                runs_since: (!unwritten.is_empty()).then(Instant::now),
                runs: Arc::new(if unwritten.is_empty() {
                    vec![]
                } else {
                    vec![Arc::new(unwritten)]
                }),
            }
        };
        Ok(Store {
            db: Arc::new(db),
            log_db: Arc::new(log_db),
            genesis_hash,
            pending: Arc::new(Mutex::new(pending)),
            writer: Arc::default(),
            flush_wanted: Arc::default(),
        })
    }

    pub(crate) fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().expect("pending blocks lock")
    }

    /// Serializes writers of the ledger file.
    pub(crate) fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().expect("ledger writer lock")
    }

    /// Raft's last applied log id and membership, including blocks not yet written.
    pub(crate) fn applied(&self) -> (Option<LogId<NodeId>>, StoredMembership<NodeId, Node>) {
        let p = self.pending();
        (p.applied, p.membership.clone())
    }

    /// Whether the pending blocks are due to be written.
    pub(crate) fn flush_due(&self) -> bool {
        self.flush_state() != FlushState::NotDue
    }

    pub(crate) fn flush_state(&self) -> FlushState {
        let p = self.pending();
        let n = p.layers.len();
        if n >= FLUSH_LAYERS_MAX {
            FlushState::Overdue
        } else if n >= FLUSH_LAYERS || p.since.is_some_and(|t| t.elapsed() >= FLUSH_AGE) {
            FlushState::Due
        } else {
            FlushState::NotDue
        }
    }

    /// Signalled when pending layers are due; the node's background writer waits on it.
    pub(crate) fn flush_wanted(&self) -> &tokio::sync::Notify {
        &self.flush_wanted
    }

    pub fn genesis_hash(&self) -> Hash {
        self.genesis_hash
    }

    pub fn read(&self) -> Result<ReadView, StoreError> {
        // Layers first, the file after: a layer is dropped only once the file holds it.
        let (layers, runs, head) = {
            let p = self.pending();
            (Layers(p.layers.clone()), p.runs.clone(), p.head)
        };
        Ok(ReadView {
            txn: self.db.begin_read()?,
            layers,
            runs,
            head,
        })
    }

    pub fn head(&self) -> Result<Head, StoreError> {
        Ok(self.pending().head)
    }

    /// Writes every applied block still in memory to the ledger file, durably. Their
    /// transaction-index entries and records join the file when enough have gathered; until
    /// then they are kept in memory and, after a restart, rebuilt from the stored blocks.
    pub fn flush(&self) -> Result<(), StoreError> {
        let _w = self.writer();
        self.write_locked(false)
    }

    /// `flush`, and the whole transaction index and records too: for a clean stop and
    /// before a snapshot is read from the file.
    pub fn flush_all(&self) -> Result<(), StoreError> {
        let _w = self.writer();
        self.write_locked(true)
    }

    /// Writes the applied blocks, and the waiting index entries and records too if `all` or
    /// they are due. For a caller that holds the writer lock.
    pub(crate) fn write_locked(&self, all: bool) -> Result<(), StoreError> {
        let (layers, head, applied, membership, runs, runs_since) = {
            let p = self.pending();
            (
                p.layers.clone(),
                p.head,
                p.applied,
                p.membership.clone(),
                p.runs.clone(),
                p.runs_since,
            )
        };
        let run = Run::of_layers(&layers);
        let waiting = run.len() + runs.iter().map(|r| r.len()).sum::<usize>();
        let waiting_bytes = run.kv_bytes + runs.iter().map(|r| r.kv_bytes).sum::<usize>();
        let nothing_waiting = run.is_empty() && runs.iter().all(|r| r.is_empty());
        let write_runs = !nothing_waiting
            && (all
                || waiting >= DEFERRED_TXS
                || waiting_bytes >= DEFERRED_BYTES
                || runs_since.is_some_and(|t| t.elapsed() >= DEFERRED_AGE));
        let mut w = self.db.begin_write()?;
        w.set_durability(redb::Durability::Immediate);
        write_layers(&w, &layers)?;
        put_head(&w, &head)?;
        if write_runs {
            let all_runs: Vec<&Run> = runs.iter().map(|r| r.as_ref()).chain([&run]).collect();
            deferred::write_runs(&w, &all_runs)?;
        }
        {
            let mut meta = w.open_table(META)?;
            meta.insert(META_APPLIED, encode(&applied).as_slice())?;
            meta.insert(META_MEMBERSHIP, encode(&membership).as_slice())?;
            // With nothing waiting, the file's index and records cover every stored block
            // (back-fill indexes the blocks it writes, and the snapshot below them holds
            // their records), so a restart need not read any of them again.
            if write_runs || nothing_waiting {
                meta.insert(META_INDEXED, encode(&head.height).as_slice())?;
            }
        }
        w.commit()?;
        // Layers and runs change together, so a reader always finds every entry.
        let mut p = self.pending();
        p.drop_written(layers.len());
        let kept = Arc::make_mut(&mut p.runs);
        if write_runs {
            kept.drain(..runs.len());
            p.runs_since = None;
        } else if !run.is_empty() {
            kept.push(Arc::new(run));
            p.runs_since.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    /// Overwrites a stored block's bytes without any check. Exists for the tamper tests and
    /// for forensics tooling; a node never calls it.
    #[doc(hidden)]
    pub fn raw_put_block(&self, height: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.flush()?;
        let _w = self.writer();
        let w = self.db.begin_write()?;
        w.open_table(BLOCKS)?.insert(height, bytes)?;
        w.commit()?;
        Ok(())
    }
}

pub(crate) fn get_meta<T: DeserializeOwned>(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match t.get(key)? {
        Some(v) => Ok(Some(decode(v.value())?)),
        None => Ok(None),
    }
}

/// A consistent read-only view of the store: the ledger file with the applied blocks not yet
/// written over it.
pub struct ReadView {
    txn: ReadTransaction,
    layers: Layers,
    runs: Runs,
    head: Head,
}

impl ReadView {
    pub fn head(&self) -> Result<Head, StoreError> {
        Ok(self.head)
    }

    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        if let Some(l) = self.layers.block(height) {
            return Ok(Some(l.block.clone()));
        }
        let t = self.txn.open_table(BLOCKS)?;
        match t.get(height)? {
            Some(v) => Block::decode(v.value())
                .map(Some)
                .map_err(|e| StoreError::Codec(e.to_string())),
            None => Ok(None),
        }
    }

    pub fn block_hash(&self, height: u64) -> Result<Option<Hash>, StoreError> {
        if let Some(l) = self.layers.block(height) {
            return Ok(Some(l.hash));
        }
        let t = self.txn.open_table(BLOCK_HASHES)?;
        Ok(t.get(height)?.and_then(|v| v.value().try_into().ok()))
    }

    /// Where a transaction is indexed: its first accepted copy, else its first copy.
    pub fn tx_location(&self, id: &[u8]) -> Result<Option<(u64, u32)>, StoreError> {
        let t = self.txn.open_table(TX_INDEX)?;
        let stored = t.get(id)?.map(|v| v.value());
        let Ok(id) = <Hash>::try_from(id) else {
            return Ok(stored);
        };
        // Newer than the file's index: the waiting runs, then the layers, oldest first.
        let waiting = self.runs.iter().filter_map(|r| r.index.get(&id).copied());
        let mut newer = waiting.chain(self.layers.tx_locations(&id)).peekable();
        if newer.peek().is_none() {
            return Ok(stored);
        }
        let mut best = match stored {
            Some((height, index)) => {
                let ok = self.block(height)?.is_some_and(|b| is_ok(&b, index));
                Some(IndexEntry { height, index, ok })
            }
            None => None,
        };
        for e in newer {
            match best {
                Some(b) if b.ok || !e.ok => {}
                _ => best = Some(e),
            }
        }
        Ok(best.map(|e| (e.height, e.index)))
    }

    pub fn kv(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.layers.kv(key) {
            return Ok(Some(v));
        }
        if let Some(v) = self.runs.iter().rev().find_map(|r| r.kv.get(key)) {
            return Ok(Some(v.clone()));
        }
        let t = self.txn.open_table(KV)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    pub fn try_nonce(&self, signer: &[u8]) -> Result<u64, StoreError> {
        if let Some(n) = self.layers.nonce(signer) {
            return Ok(n);
        }
        let t = self.txn.open_table(NONCES)?;
        Ok(t.get(signer)?.map(|v| v.value()).unwrap_or(0))
    }

    pub fn try_role(&self, key: &[u8]) -> Result<Option<String>, StoreError> {
        if let Some(r) = self.layers.role(key) {
            return Ok(Some(r));
        }
        let t = self.txn.open_table(PARTICIPANTS)?;
        Ok(t.get(key)?.map(|v| v.value().to_string()))
    }

    pub fn object(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.layers.object(key) {
            return Ok(Some(v));
        }
        let t = self.txn.open_table(OBJECTS)?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Objects whose key starts with `prefix`, in key order (at most `limit`).
    pub fn objects_with_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let t = self.txn.open_table(OBJECTS)?;
        let mut out = std::collections::BTreeMap::new();
        for item in t.range(prefix..)? {
            let (k, v) = item?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.insert(k.value().to_string(), v.value().to_vec());
        }
        // The first `limit` keys of the union are among the first `limit` stored keys and
        // the layers' keys.
        out.extend(self.layers.objects_with_prefix(prefix));
        Ok(out.into_iter().take(limit).collect())
    }

    pub fn block_count(&self) -> Result<u64, StoreError> {
        Ok(self.txn.open_table(BLOCKS)?.len()?)
    }
}

/// Execution reads committed state; a read error here means the store itself is failing,
/// and a node must not guess, so it stops rather than diverge.
impl StateRead for ReadView {
    fn nonce(&self, signer: &[u8]) -> u64 {
        self.try_nonce(signer).expect("state store read failed")
    }
    fn participant_role(&self, key: &[u8]) -> Option<String> {
        self.try_role(key).expect("state store read failed")
    }
    fn object(&self, key: &str) -> Option<Vec<u8>> {
        ReadView::object(self, key).expect("state store read failed")
    }
}

/// Writes applied layers in one transaction: the blocks in height order, then each table's
/// changes merged over all the layers (the newest value of a key wins) in key order. A key
/// that many blocks changed (a busy signer's nonce) is written once, and each B-tree page is
/// visited in one pass instead of once per block.
pub(crate) fn write_layers(
    txn: &WriteTransaction,
    layers: &[Arc<Layer>],
) -> Result<(), StoreError> {
    {
        let mut blocks = txn.open_table(BLOCKS)?;
        let mut hashes = txn.open_table(BLOCK_HASHES)?;
        for l in layers {
            blocks.insert(l.height, l.block.encode_to_vec().as_slice())?;
            hashes.insert(l.height, l.hash.as_slice())?;
        }
    }
    let mut nonces = txn.open_table(NONCES)?;
    for (k, v) in merged::<[u8], u64>(layers.iter().map(|l| &l.changes.nonces)) {
        nonces.insert(k, *v)?;
    }
    let mut parts = txn.open_table(PARTICIPANTS)?;
    for (k, v) in merged::<[u8], String>(layers.iter().map(|l| &l.changes.participants)) {
        parts.insert(k, v.as_str())?;
    }
    let mut objects = txn.open_table(OBJECTS)?;
    for (k, v) in merged::<str, Vec<u8>>(layers.iter().map(|l| &l.changes.objects)) {
        objects.insert(k, v.as_slice())?;
    }
    Ok(())
}

/// Adds the transactions of a stored block at `height` to `index`.
pub(crate) fn index_block(
    suite: Suite,
    block: &Block,
    height: u64,
    index: &mut BTreeMap<Hash, IndexEntry>,
) {
    for (i, raw) in block.txs.iter().enumerate() {
        let id = medledger_api::tx::id_of_raw(suite, raw);
        let at = i as u32;
        let e = IndexEntry {
            height,
            index: at,
            ok: is_ok(block, at),
        };
        IndexEntry::keep_first_accepted(index, id, e);
    }
}

/// Whether the transaction at `index` of `block` was accepted.
pub(crate) fn is_ok(block: &Block, index: u32) -> bool {
    block
        .results
        .get(index as usize)
        .is_some_and(|r| r.code == 0)
}

/// Where a transaction id is indexed, and whether that copy was accepted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexEntry {
    pub height: u64,
    pub index: u32,
    pub ok: bool,
}

impl IndexEntry {
    /// Adds a later copy of `id` to `index` under the index's rule: the first accepted copy
    /// of a transaction wins, else its first copy.
    pub fn keep_first_accepted(index: &mut BTreeMap<Hash, IndexEntry>, id: Hash, e: IndexEntry) {
        match index.get(&id) {
            Some(old) if old.ok || !e.ok => {}
            _ => {
                index.insert(id, e);
            }
        }
    }
}

/// Each key's newest value over `maps` (oldest first), in key order.
fn merged<'a, K, V>(
    maps: impl Iterator<Item = &'a BTreeMap<<K as ToOwned>::Owned, V>>,
) -> BTreeMap<&'a K, &'a V>
where
    K: Ord + ToOwned + ?Sized + 'a,
    <K as ToOwned>::Owned: std::borrow::Borrow<K> + Ord,
    V: 'a,
{
    let mut out = BTreeMap::new();
    for m in maps {
        for (k, v) in m {
            out.insert(std::borrow::Borrow::borrow(k), v);
        }
    }
    out
}

/// Indexes transactions by id, in id order. The first accepted copy of a transaction wins,
/// so a later replay (rejected) never hides where the transaction really committed.
pub(crate) fn write_tx_index(
    txn: &WriteTransaction,
    entries: &BTreeMap<Hash, IndexEntry>,
) -> Result<(), StoreError> {
    let mut index = txn.open_table(TX_INDEX)?;
    for (id, e) in entries {
        // One tree walk in the common case (a new id): insert, and put the old location
        // back in the rare case of a replay.
        let existing = index
            .insert(id.as_slice(), (e.height, e.index))?
            .map(|v| v.value());
        if let Some((h, j)) = existing {
            let blocks = txn.open_table(BLOCKS)?;
            let prev_ok = blocks
                .get(h)?
                .and_then(|b| Block::decode(b.value()).ok())
                .is_some_and(|b| is_ok(&b, j));
            if prev_ok || !e.ok {
                index.insert(id.as_slice(), (h, j))?;
            }
        }
    }
    Ok(())
}

pub(crate) fn put_head(txn: &WriteTransaction, head: &Head) -> Result<(), StoreError> {
    txn.open_table(META)?
        .insert(META_HEAD, encode(head).as_slice())?;
    Ok(())
}

pub(crate) fn read_head(txn: &WriteTransaction) -> Result<Head, StoreError> {
    let meta = txn.open_table(META)?;
    get_meta(&meta, META_HEAD)?.ok_or_else(|| StoreError::Codec("missing head".into()))
}

/// Role reported for a key: "member:<name>" for administrators, else the registered role.
pub fn role_of(
    ctx: &crate::ledger::ChainCtx,
    view: &ReadView,
    key: &[u8],
) -> Result<Option<String>, StoreError> {
    if let Some(name) = ctx.admins.get(key) {
        return Ok(Some(format!("{MEMBER_ROLE}:{name}")));
    }
    view.try_role(key)
}
