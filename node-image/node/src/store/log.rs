//! The Raft log on redb, written by one thread that commits everything queued since its last
//! commit in one fsynced transaction (group commit).
//!
//! openraft is told an append is flushed only after that fsync, so an entry a node has
//! acknowledged survives a crash; but `append` itself returns as soon as the entries are
//! queued and readable, so the Raft core keeps replicating and answering while the disk
//! works, and one fsync covers every append that arrived meanwhile. Votes, truncations and
//! purges go through the same queue, so all writes reach the disk in the order Raft made them.

// openraft's StorageError is large by design and these closures must return it.
#![allow(clippy::result_large_err)]

use super::{LOG, META, Store, StoreError, decode, encode, get_meta};
use crate::raft::{NodeId, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use redb::{Durability, ReadableTable};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

const META_VOTE: &str = "raft_vote";
const META_COMMITTED: &str = "raft_committed";
const META_PURGED: &str = "raft_last_purged";

/// Recent entries kept in memory after they are written, so replicating them to followers
/// does not read them back from the store.
const RECENT: usize = 512;

enum Op {
    Append(Vec<Entry<TypeConfig>>, LogFlushed<TypeConfig>),
    Meta(
        &'static str,
        Vec<u8>,
        oneshot::Sender<Result<(), StoreError>>,
    ),
    /// Deletes entries at and after the index.
    Truncate(u64, oneshot::Sender<Result<(), StoreError>>),
    /// Deletes entries up to and including the log id, and records it as purged.
    Purge(LogId<NodeId>, oneshot::Sender<Result<(), StoreError>>),
}

/// Entries appended but possibly not yet written, plus the most recent written ones.
#[derive(Default)]
struct Cache {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    /// Entries at or below this index that are in the cache are also in the store.
    written_upto: u64,
}

#[derive(Clone)]
pub struct LogStore {
    store: Store,
    cache: Arc<Mutex<Cache>>,
    queue: mpsc::Sender<Op>,
}

impl LogStore {
    pub fn new(store: Store) -> Self {
        let cache = Arc::new(Mutex::new(Cache::default()));
        let (queue, rx) = mpsc::channel();
        let writer = Writer {
            store: store.clone(),
            cache: cache.clone(),
        };
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer.run(rx))
            .expect("spawn the Raft log writer thread");
        LogStore {
            store,
            cache,
            queue,
        }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let r = self.store.log_db.begin_read()?;
        let t = r.open_table(META)?;
        get_meta(&t, key)
    }

    /// Queues a write and waits until it is on disk (with every write queued before it).
    async fn write_and_wait(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<(), StoreError>>) -> Op,
    ) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.queue.send(op(tx)).map_err(|_| writer_gone())?;
        rx.await.map_err(|_| writer_gone())?
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().expect("Raft log cache lock")
    }
}

fn writer_gone() -> StoreError {
    StoreError::LogWrite("the log writer stopped after an earlier error".into())
}

struct Writer {
    store: Store,
    cache: Arc<Mutex<Cache>>,
}

impl Writer {
    fn run(self, rx: mpsc::Receiver<Op>) {
        while let Ok(first) = rx.recv() {
            let mut ops = vec![first];
            ops.extend(rx.try_iter());
            let result = self.write(&ops);
            if result.is_ok() {
                self.note_written(&ops);
            }
            let failure = result.err().map(|e| e.to_string());
            for op in ops {
                let res = match &failure {
                    None => Ok(()),
                    Some(e) => Err(e.clone()),
                };
                match op {
                    Op::Append(_, cb) => {
                        cb.log_io_completed(res.map_err(std::io::Error::other));
                    }
                    Op::Meta(_, _, done) | Op::Truncate(_, done) | Op::Purge(_, done) => {
                        let _ = done.send(res.map_err(StoreError::LogWrite));
                    }
                }
            }
            if failure.is_some() {
                // Later writes must not land after a lost one: stop, and every caller that
                // queues from now on is told the writer is gone.
                return;
            }
        }
    }

    fn write(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut w = self.store.log_db.begin_write()?;
        w.set_durability(Durability::Immediate);
        {
            let mut log = w.open_table(LOG)?;
            let mut meta = w.open_table(META)?;
            for op in ops {
                match op {
                    Op::Append(entries, _) => {
                        for e in entries {
                            log.insert(e.log_id.index, encode(e).as_slice())?;
                        }
                    }
                    Op::Meta(key, value, _) => {
                        meta.insert(*key, value.as_slice())?;
                    }
                    Op::Truncate(index, _) => {
                        log.retain_in(*index.., |_, _| false)?;
                    }
                    Op::Purge(log_id, _) => {
                        meta.insert(META_PURGED, encode(log_id).as_slice())?;
                        log.retain_in(..=log_id.index, |_, _| false)?;
                    }
                }
            }
        }
        w.commit()?;
        Ok(())
    }

    /// Marks the appended entries as written and lets old ones leave the cache.
    fn note_written(&self, ops: &[Op]) {
        let Some(last) = ops
            .iter()
            .filter_map(|op| match op {
                Op::Append(entries, _) => entries.last().map(|e| e.log_id.index),
                _ => None,
            })
            .next_back()
        else {
            return;
        };
        let mut cache = self.cache.lock().expect("Raft log cache lock");
        // A truncation queued after these appends lowered `written_upto` already and removed
        // the entries; never raise it past what the cache still holds.
        let held = cache.entries.keys().next_back().copied().unwrap_or(0);
        cache.written_upto = cache.written_upto.max(last.min(held));
        while cache.entries.len() > RECENT {
            match cache.entries.first_key_value() {
                Some((&i, _)) if i <= cache.written_upto => {
                    cache.entries.remove(&i);
                }
                _ => break,
            }
        }
    }
}

type SResult<T> = Result<T, StorageError<NodeId>>;

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> SResult<Vec<Entry<TypeConfig>>> {
        // The cache first, then the store: an entry leaves the cache only once it is in the
        // store, so whatever the cache no longer holds, the store read below sees.
        let cached: BTreeMap<u64, Entry<TypeConfig>> = self
            .cache()
            .entries
            .range(range.clone())
            .map(|(i, e)| (*i, e.clone()))
            .collect();
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        // Entries are contiguous: when the cache covers the start, it covers the rest.
        if cached.keys().next() == Some(&start) {
            return Ok(cached.into_values().collect());
        }
        let mut out = tokio::task::block_in_place(|| -> Result<_, StoreError> {
            let r = self.store.log_db.begin_read()?;
            let t = r.open_table(LOG)?;
            let mut out = BTreeMap::new();
            for item in t.range(range)? {
                let (k, v) = item?;
                out.insert(k.value(), decode::<Entry<TypeConfig>>(v.value())?);
            }
            Ok(out)
        })
        .map_err(|e| StorageIOError::read_logs(&e))?;
        out.extend(cached);
        Ok(out.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> SResult<LogState<TypeConfig>> {
        let cached_last = self.cache().entries.last_key_value().map(|(_, e)| e.log_id);
        tokio::task::block_in_place(|| -> Result<_, StoreError> {
            let purged: Option<LogId<NodeId>> = self.read_meta(META_PURGED)?;
            let r = self.store.log_db.begin_read()?;
            let t = r.open_table(LOG)?;
            let stored_last = match t.last()? {
                Some((_, v)) => Some(decode::<Entry<TypeConfig>>(v.value())?.log_id),
                None => None,
            };
            Ok(LogState {
                last_purged_log_id: purged,
                last_log_id: cached_last.max(stored_last).or(purged),
            })
        })
        .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> SResult<()> {
        let bytes = encode(vote);
        self.write_and_wait(|done| Op::Meta(META_VOTE, bytes, done))
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> SResult<Option<Vote<NodeId>>> {
        tokio::task::block_in_place(|| self.read_meta(META_VOTE))
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> SResult<()> {
        // Queued without waiting, and made durable by the next group commit: the committed
        // index is a hint that lets a restarted node apply its log before it hears from the
        // leader, and losing the latest one in a crash only means waiting to hear it again.
        let (done, _) = oneshot::channel();
        self.queue
            .send(Op::Meta(META_COMMITTED, encode(&committed), done))
            .map_err(|_| StorageIOError::write(&writer_gone()).into())
    }

    async fn read_committed(&mut self) -> SResult<Option<LogId<NodeId>>> {
        tokio::task::block_in_place(|| self.read_meta::<Option<LogId<NodeId>>>(META_COMMITTED))
            .map(|v| v.flatten())
            .map_err(|e| StorageIOError::read(&e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> SResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        {
            let mut cache = self.cache();
            for e in &entries {
                cache.entries.insert(e.log_id.index, e.clone());
            }
        }
        self.queue
            .send(Op::Append(entries, callback))
            .map_err(|_| StorageIOError::write_logs(&writer_gone()).into())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> SResult<()> {
        {
            let mut cache = self.cache();
            cache.entries.retain(|i, _| *i < log_id.index);
            cache.written_upto = cache.written_upto.min(log_id.index.saturating_sub(1));
        }
        self.write_and_wait(|done| Op::Truncate(log_id.index, done))
            .await
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> SResult<()> {
        self.write_and_wait(|done| Op::Purge(log_id, done))
            .await
            .map_err(|e| StorageError::from(StorageIOError::<NodeId>::write_logs(&e)))?;
        self.cache().entries.retain(|i, _| *i > log_id.index);
        Ok(())
    }
}
