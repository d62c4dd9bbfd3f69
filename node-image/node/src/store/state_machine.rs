//! The replicated state machine: applies committed batches as blocks, builds and installs
//! snapshots. Applied blocks wait in memory and are written a few at a time (`pending.rs`);
//! blocks, their index entries, the state they changed and the applied log id always reach
//! the file together, in one fsynced transaction.

use super::pending::Layer;
use super::{
    FlushState, Head, KV, META, META_APPLIED, META_INDEXED, META_MEMBERSHIP, NONCES, OBJECTS,
    PARTICIPANTS, Store, StoreError, decode, encode, get_meta, put_head, read_head,
};
use crate::ledger::execute::execute_batch;
use crate::ledger::{BatchOutcome, ChainCtx};
use crate::metrics::{Metrics, code_name};
use crate::raft::{Node, NodeId, TypeConfig};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, StorageError, StorageIOError, StoredMembership,
};
use redb::{Durability, ReadableTable};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::Arc;
use tokio::sync::watch;

const META_SNAPSHOT: &str = "sm_snapshot";

/// The state carried in a snapshot. Blocks are not: a node that installs a snapshot fetches
/// the blocks it lacks from its peers and checks them against the snapshot's head hash.
#[derive(Serialize, Deserialize)]
struct SnapshotState {
    head: Head,
    nonces: Vec<(Vec<u8>, u64)>,
    participants: Vec<(Vec<u8>, String)>,
    kv: Vec<(String, Vec<u8>)>,
    objects: Vec<(String, Vec<u8>)>,
}

#[derive(Clone)]
pub struct StateMachine {
    store: Store,
    ctx: Arc<ChainCtx>,
    /// Publishes the head after every apply (for block streams, metrics, back-fill).
    head_tx: watch::Sender<Head>,
    metrics: Arc<Metrics>,
}

type SResult<T> = Result<T, StorageError<NodeId>>;

fn sm_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&e).into()
}

impl StateMachine {
    pub fn new(
        store: Store,
        ctx: Arc<ChainCtx>,
        metrics: Arc<Metrics>,
    ) -> Result<(StateMachine, watch::Receiver<Head>), StoreError> {
        let head = store.head()?;
        let (head_tx, rx) = watch::channel(head);
        Ok((
            StateMachine {
                store,
                ctx,
                head_tx,
                metrics,
            },
            rx,
        ))
    }

    pub fn head_sender(&self) -> watch::Sender<Head> {
        self.head_tx.clone()
    }

    /// Executes the entries on top of the store and the blocks still in memory, and keeps
    /// the resulting blocks in memory; writes them out when enough have gathered. Applying
    /// needs no fsync of its own: every applied entry is already durable in the Raft log of a
    /// majority, and after a crash openraft re-applies every entry after the applied log id
    /// the file holds. The log is compacted only up to a snapshot, and building a snapshot
    /// writes everything out first, so the entries such a replay needs always exist.
    fn apply_sync(
        &self,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Result<(Vec<BatchOutcome>, Head), StoreError> {
        let mut outcomes = Vec::with_capacity(entries.len());
        for entry in entries {
            let log_id = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {
                    self.store.pending().applied = log_id;
                    outcomes.push(BatchOutcome::default());
                }
                EntryPayload::Membership(m) => {
                    let mut p = self.store.pending();
                    p.applied = log_id;
                    p.membership = StoredMembership::new(log_id, m);
                    outcomes.push(BatchOutcome::default());
                }
                EntryPayload::Normal(batch) => {
                    let view = self.store.read()?;
                    let base = view.head()?;
                    let height = base.height + 1;
                    let ex = execute_batch(
                        &self.ctx,
                        &view,
                        &batch,
                        height,
                        &base.hash,
                        entry.log_id.leader_id.term,
                        entry.log_id.index,
                    );
                    drop(view);
                    outcomes.push(BatchOutcome {
                        height,
                        results: ex
                            .block
                            .results
                            .iter()
                            .map(|r| (r.code, r.reason.clone()))
                            .collect(),
                        tx_ids: ex.tx_ids,
                    });
                    let mut p = self.store.pending();
                    // Back-fill may have moved `contiguous` meanwhile; height and hash are
                    // only ever moved here (and by snapshot installs, on this same task).
                    let mut head = p.head;
                    if head.contiguous == head.height {
                        head.contiguous = height;
                    }
                    head.height = height;
                    head.hash = ex.hash;
                    p.head = head;
                    p.applied = log_id;
                    p.push(Layer::new(ex.block, ex.hash, ex.changes));
                }
            }
        }
        match self.store.flush_state() {
            FlushState::NotDue => {}
            // Written off this task, so that applying (and answering clients) goes on
            // during the write and its fsync.
            FlushState::Due => self.store.flush_wanted().notify_one(),
            FlushState::Overdue => self.store.flush()?,
        }
        Ok((outcomes, self.store.pending().head))
    }

    fn build_snapshot_sync(&self) -> Result<Snapshot<TypeConfig>, StoreError> {
        // The snapshot is read from the file, so everything applied goes there first, the
        // waiting records included; holding the writer lock until the read begins keeps
        // the file's head and its state in step.
        let r = {
            let _writer = self.store.writer();
            self.store.write_locked(true)?;
            self.store.db.begin_read()?
        };
        let meta_t = r.open_table(META)?;
        let applied: Option<LogId<NodeId>> =
            get_meta::<Option<LogId<NodeId>>>(&meta_t, META_APPLIED)?.flatten();
        let membership: StoredMembership<NodeId, Node> =
            get_meta(&meta_t, META_MEMBERSHIP)?.unwrap_or_default();
        let head: Head = get_meta(&meta_t, super::META_HEAD)?
            .ok_or_else(|| StoreError::Codec("missing head".into()))?;
        let mut state = SnapshotState {
            head,
            nonces: vec![],
            participants: vec![],
            kv: vec![],
            objects: vec![],
        };
        for item in r.open_table(NONCES)?.iter()? {
            let (k, v) = item?;
            state.nonces.push((k.value().to_vec(), v.value()));
        }
        for item in r.open_table(PARTICIPANTS)?.iter()? {
            let (k, v) = item?;
            state
                .participants
                .push((k.value().to_vec(), v.value().to_string()));
        }
        for item in r.open_table(KV)?.iter()? {
            let (k, v) = item?;
            state.kv.push((k.value().to_string(), v.value().to_vec()));
        }
        for item in r.open_table(OBJECTS)?.iter()? {
            let (k, v) = item?;
            state
                .objects
                .push((k.value().to_string(), v.value().to_vec()));
        }
        let data = encode(&state);
        let snapshot_id = match applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, head.height),
            None => format!("empty-{}", head.height),
        };
        let meta = SnapshotMeta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id,
        };
        let _writer = self.store.writer();
        let mut w = self.store.db.begin_write()?;
        w.set_durability(Durability::Immediate);
        w.open_table(META)?.insert(
            META_SNAPSHOT,
            encode(&(meta.clone(), data.clone())).as_slice(),
        )?;
        w.commit()?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }

    fn install_snapshot_sync(
        &self,
        meta: &SnapshotMeta<NodeId, Node>,
        data: Vec<u8>,
    ) -> Result<Head, StoreError> {
        let state: SnapshotState = decode(&data)?;
        let _writer = self.store.writer();
        // Blocks applied before the snapshot arrived are kept (written out first, with the
        // whole index, so the index marker moves to the anchor and the blocks back-filled
        // below it are never read again at start).
        self.store.write_locked(true)?;
        let mut w = self.store.db.begin_write()?;
        w.set_durability(Durability::Immediate);
        let own = read_head(&w)?;
        {
            let mut t = w.open_table(NONCES)?;
            t.retain(|_, _| false)?;
            for (k, v) in &state.nonces {
                t.insert(k.as_slice(), *v)?;
            }
            let mut t = w.open_table(PARTICIPANTS)?;
            t.retain(|_, _| false)?;
            for (k, v) in &state.participants {
                t.insert(k.as_slice(), v.as_str())?;
            }
            let mut t = w.open_table(KV)?;
            t.retain(|_, _| false)?;
            for (k, v) in &state.kv {
                t.insert(k.as_str(), v.as_slice())?;
            }
            let mut t = w.open_table(OBJECTS)?;
            t.retain(|_, _| false)?;
            for (k, v) in &state.objects {
                t.insert(k.as_str(), v.as_slice())?;
            }
        }
        // Our own blocks below the snapshot stay; the gap above them is back-filled.
        let head = Head {
            height: state.head.height,
            hash: state.head.hash,
            contiguous: own.contiguous.min(state.head.height),
            anchor_height: state.head.height,
            anchor_hash: state.head.hash,
        };
        put_head(&w, &head)?;
        {
            let mut m = w.open_table(META)?;
            m.insert(META_APPLIED, encode(&meta.last_log_id).as_slice())?;
            m.insert(META_MEMBERSHIP, encode(&meta.last_membership).as_slice())?;
            m.insert(META_SNAPSHOT, encode(&(meta.clone(), data)).as_slice())?;
            // Nothing waits to be indexed (written above); the blocks up to the anchor that
            // are missing will be indexed by back-fill as it writes them.
            m.insert(META_INDEXED, encode(&head.height).as_slice())?;
        }
        w.commit()?;
        let mut p = self.store.pending();
        p.head = head;
        p.applied = meta.last_log_id;
        p.membership = meta.last_membership.clone();
        Ok(head)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> SResult<Snapshot<TypeConfig>> {
        tokio::task::block_in_place(|| self.build_snapshot_sync())
            .map_err(|e| StorageIOError::write_snapshot(None, &e).into())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> SResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>)> {
        Ok(self.store.applied())
    }

    async fn apply<I>(&mut self, entries: I) -> SResult<Vec<BatchOutcome>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let (outcomes, head) =
            tokio::task::block_in_place(|| self.apply_sync(entries)).map_err(sm_err)?;
        self.head_tx.send_replace(head);
        for o in &outcomes {
            for (code, _) in &o.results {
                self.metrics
                    .transactions
                    .with_label_values(&[code_name(*code)])
                    .inc();
            }
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> SResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> SResult<()> {
        let head =
            tokio::task::block_in_place(|| self.install_snapshot_sync(meta, snapshot.into_inner()))
                .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.head_tx.send_replace(head);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> SResult<Option<Snapshot<TypeConfig>>> {
        tokio::task::block_in_place(|| -> Result<_, StoreError> {
            let r = self.store.db.begin_read()?;
            let t = r.open_table(META)?;
            let snap: Option<(SnapshotMeta<NodeId, Node>, Vec<u8>)> = get_meta(&t, META_SNAPSHOT)?;
            Ok(snap.map(|(meta, data)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            }))
        })
        .map_err(|e| StorageIOError::read_snapshot(None, &e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Batch;
    use medledger_api::crypto::Suite;
    use medledger_api::keys::SigningKey;
    use medledger_api::pb::{Put, tx_body::Op};
    use openraft::CommittedLeaderId;

    struct Fixture {
        dir: tempfile::TempDir,
        ctx: Arc<ChainCtx>,
        node: ed25519_dalek::SigningKey,
        admin: SigningKey,
    }

    fn fixture() -> Fixture {
        let c = crate::ledger::test_chain::TestChain::new(Suite::Ed25519, Default::default());
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            ctx: Arc::new(c.ctx),
            node: c.node,
            admin: c.admin,
        }
    }

    impl Fixture {
        fn open(&self) -> (Store, StateMachine) {
            let store =
                Store::open(self.dir.path(), self.ctx.genesis_hash, self.ctx.suite).unwrap();
            let (sm, _) =
                StateMachine::new(store.clone(), self.ctx.clone(), Arc::new(Metrics::new()))
                    .unwrap();
            (store, sm)
        }

        /// The Raft entry at `index` holding one Put per nonce.
        fn entry(&self, index: u64, nonces: std::ops::RangeInclusive<u64>) -> Entry<TypeConfig> {
            let puts = nonces
                .map(|n| (n, format!("k{n}"), vec![n as u8]))
                .collect();
            self.entry_of(index, puts)
        }

        /// The Raft entry at `index` holding these Puts: (nonce, key, value).
        fn entry_of(&self, index: u64, puts: Vec<(u64, String, Vec<u8>)>) -> Entry<TypeConfig> {
            let txs = puts
                .into_iter()
                .map(|(n, key, value)| {
                    let op = Op::Put(Put { key, value });
                    medledger_api::tx::build(&self.admin, &self.ctx.chain_id, n, op)
                })
                .collect();
            let proposer = *self.ctx.node_keys.keys().next().unwrap();
            Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, proposer), index),
                payload: EntryPayload::Normal(Batch::sign(&self.ctx, proposer, &self.node, txs, 5)),
            }
        }
    }

    fn kv(f: &Fixture, view: &super::super::ReadView, n: u64) -> Option<Vec<u8>> {
        view.kv(&crate::contracts::identity::kv_key(
            &f.admin.public(),
            &format!("k{n}"),
        ))
        .unwrap()
    }

    /// Rows of a table in the file, read past the layers and runs in memory.
    fn rows_in_file<K: redb::Key + 'static, V: redb::Value + 'static>(
        store: &Store,
        table: redb::TableDefinition<K, V>,
    ) -> u64 {
        use redb::ReadableTableMetadata;
        let r = store.db.begin_read().unwrap();
        r.open_table(table).unwrap().len().unwrap()
    }

    #[test]
    fn applied_blocks_are_readable_before_and_after_they_are_written() {
        let f = fixture();
        let (store, sm) = f.open();
        let (out, head) = sm
            .apply_sync(vec![f.entry(1, 1..=3), f.entry(2, 3..=4)])
            .unwrap();
        assert_eq!(head.height, 2);
        assert_eq!(
            out[1].results[0].0,
            medledger_api::pb::ResultCode::ReplayedNonce as i32
        );
        let replayed = out[1].tx_ids[0];
        assert_eq!(replayed, out[0].tx_ids[2], "the same transaction twice");

        let check = |store: &Store| {
            let view = store.read().unwrap();
            assert_eq!(view.head().unwrap().height, 2);
            assert_eq!(kv(&f, &view, 4), Some(vec![4]));
            assert_eq!(view.try_nonce(&f.admin.public()).unwrap(), 4);
            assert!(view.block(2).unwrap().is_some());
            // The accepted copy is indexed, not the later rejected replay.
            assert_eq!(view.tx_location(&replayed).unwrap(), Some((1, 2)));
            assert_eq!(view.tx_location(&out[1].tx_ids[1]).unwrap(), Some((2, 1)));
        };
        assert!(!store.pending().layers.is_empty(), "not written yet");
        check(&store);
        store.flush().unwrap();
        assert!(store.pending().layers.is_empty());
        check(&store);
        assert_eq!(store.applied().0.map(|l| l.index), Some(2));

        // Written blocks survive a restart, with the applied log id that covers them.
        drop((store, sm));
        let (store, _) = f.open();
        check(&store);
        assert_eq!(store.applied().0.map(|l| l.index), Some(2));
    }

    fn indexed_in_file(store: &Store) -> u64 {
        rows_in_file(store, super::super::TX_INDEX)
    }

    #[test]
    fn the_transaction_index_is_written_in_batches_and_rebuilt_after_a_crash() {
        let f = fixture();
        let (store, sm) = f.open();
        let (out, _) = sm
            .apply_sync(vec![f.entry(1, 1..=3), f.entry(2, 3..=4)])
            .unwrap();
        let replayed = out[1].tx_ids[0];
        let check = |store: &Store| {
            let view = store.read().unwrap();
            assert_eq!(view.tx_location(&replayed).unwrap(), Some((1, 2)));
            assert_eq!(view.tx_location(&out[0].tx_ids[0]).unwrap(), Some((1, 0)));
            assert_eq!(view.tx_location(&out[1].tx_ids[1]).unwrap(), Some((2, 1)));
            assert_eq!(view.tx_location(&[7u8; 32]).unwrap(), None);
        };
        // Blocks are written; their index entries wait in memory.
        store.flush().unwrap();
        assert!(store.pending().layers.is_empty());
        assert_eq!(indexed_in_file(&store), 0);
        check(&store);

        // A crash here loses no entry: the stored blocks are indexed again at start.
        drop((store, sm));
        let (store, sm) = f.open();
        check(&store);
        assert_eq!(indexed_in_file(&store), 0);

        // A clean stop writes the index; a later replay of the accepted transaction, applied
        // on top, still does not hide where it committed.
        let (later, _) = sm.apply_sync(vec![f.entry(3, 1..=1)]).unwrap();
        assert_eq!(later[0].tx_ids[0], out[0].tx_ids[0]);
        store.flush_all().unwrap();
        assert_eq!(indexed_in_file(&store), 4, "four distinct transactions");
        assert!(store.pending().runs.is_empty());
        check(&store);
        drop((store, sm));
        let (store, _) = f.open();
        assert!(store.pending().runs.is_empty(), "nothing to index again");
        check(&store);
    }

    fn records_in_file(store: &Store) -> u64 {
        rows_in_file(store, KV)
    }

    #[test]
    fn records_wait_in_memory_and_are_derived_again_from_the_blocks_after_a_crash() {
        let f = fixture();
        let (store, sm) = f.open();
        let put =
            |index, nonce, value: u8| f.entry_of(index, vec![(nonce, "same".into(), vec![value])]);
        let key = crate::contracts::identity::kv_key(&f.admin.public(), "same");
        let value = |store: &Store| store.read().unwrap().kv(&key).unwrap();

        // Two blocks put the same key; both are written, the record waits in memory.
        sm.apply_sync(vec![put(1, 1, 1), put(2, 2, 2)]).unwrap();
        store.flush().unwrap();
        assert!(store.pending().layers.is_empty());
        assert_eq!(records_in_file(&store), 0);
        assert_eq!(value(&store), Some(vec![2]));
        // A replayed nonce is rejected and writes nothing, now or when derived again.
        let (out, _) = sm.apply_sync(vec![put(3, 2, 9)]).unwrap();
        assert_ne!(out[0].results[0].0, 0);
        store.flush().unwrap();
        assert_eq!(value(&store), Some(vec![2]));

        // A crash loses nothing: the record is derived again from the stored blocks.
        drop((store, sm));
        let (store, sm) = f.open();
        assert_eq!(value(&store), Some(vec![2]));
        assert_eq!(records_in_file(&store), 0);

        // A newer value in memory wins over the derived one; a clean stop writes it.
        sm.apply_sync(vec![put(4, 3, 3)]).unwrap();
        assert_eq!(value(&store), Some(vec![3]));
        store.flush_all().unwrap();
        assert_eq!(records_in_file(&store), 1);
        assert!(store.pending().runs.is_empty());
        drop((store, sm));
        let (store, _) = f.open();
        assert!(store.pending().runs.is_empty(), "nothing to derive again");
        assert_eq!(value(&store), Some(vec![3]));
    }

    fn indexed_upto(store: &Store) -> u64 {
        let r = store.db.begin_read().unwrap();
        get_meta(&r.open_table(META).unwrap(), META_INDEXED)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_snapshot_carries_the_waiting_records_and_installing_one_moves_the_marker_to_its_anchor() {
        let f = fixture();
        let (store, sm) = f.open();
        sm.apply_sync(vec![f.entry(1, 1..=2), f.entry(2, 3..=3)])
            .unwrap();
        store.flush().unwrap();
        assert_eq!(records_in_file(&store), 0, "the records wait in memory");
        // Building a snapshot writes them first, so the snapshot holds them.
        let snap = sm.build_snapshot_sync().unwrap();
        let data = snap.snapshot.into_inner();
        let state: SnapshotState = decode(&data).unwrap();
        assert_eq!(state.head.height, 2);
        assert_eq!(state.kv.len(), 3);
        assert!(store.pending().runs.is_empty());

        // Another node holding a block of its own, its records waiting, installs it.
        let other = Fixture {
            dir: tempfile::tempdir().unwrap(),
            ctx: f.ctx.clone(),
            node: f.node.clone(),
            admin: f.admin.clone(),
        };
        let (store2, sm2) = other.open();
        sm2.apply_sync(vec![f.entry(1, 1..=2)]).unwrap();
        store2.flush().unwrap();
        assert_eq!(indexed_upto(&store2), 0);
        let head = sm2.install_snapshot_sync(&snap.meta, data).unwrap();
        assert_eq!((head.anchor_height, head.height), (2, 2));
        assert_eq!(indexed_upto(&store2), 2, "the marker moves to the anchor");
        assert!(store2.pending().runs.is_empty());
        assert_eq!(records_in_file(&store2), 3);
        // After a restart nothing is derived again: block 2 is not held yet (back-fill
        // fetches it), and block 1's records are in the snapshot's state.
        drop((store2, sm2));
        let (store2, _) = other.open();
        assert!(store2.pending().runs.is_empty());
        let view = store2.read().unwrap();
        assert_eq!(kv(&f, &view, 3), Some(vec![3]));
    }

    #[test]
    fn applying_writes_the_blocks_itself_when_the_background_writer_falls_behind() {
        let f = fixture();
        let (store, sm) = f.open();
        // Nobody runs the background writer here: applying must not let layers pile up.
        let max = super::super::FLUSH_LAYERS_MAX;
        for i in 1..=max as u64 + 3 {
            sm.apply_sync(vec![f.entry(i, i..=i)]).unwrap();
            assert!(store.pending().layers.len() < max);
        }
        let view = store.read().unwrap();
        assert_eq!(view.try_nonce(&f.admin.public()).unwrap(), max as u64 + 3);
        assert_eq!(
            view.block_count().unwrap(),
            max as u64,
            "the first FLUSH_LAYERS_MAX blocks are in the file"
        );
    }

    #[test]
    fn a_crash_before_writing_rolls_back_to_the_last_written_block_and_replays() {
        let f = fixture();
        let (store, sm) = f.open();
        sm.apply_sync(vec![f.entry(1, 1..=2)]).unwrap();
        store.flush().unwrap();
        let (_, before) = sm.apply_sync(vec![f.entry(2, 3..=3)]).unwrap();
        // No flush: as if the process died here.
        drop((store, sm));
        let (store, sm) = f.open();
        assert_eq!(store.head().unwrap().height, 1);
        assert_eq!(store.applied().0.map(|l| l.index), Some(1));
        // openraft re-applies the entries after the applied log id: the same block again.
        let (_, after) = sm.apply_sync(vec![f.entry(2, 3..=3)]).unwrap();
        assert_eq!(after, before);
    }
}
