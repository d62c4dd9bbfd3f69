//! The Raft log on redb. Appends are fsynced before openraft is told they are flushed:
//! an entry a node has acknowledged survives a crash.

// openraft's StorageError is large by design and these closures must return it.
#![allow(clippy::result_large_err)]

use super::{LOG, META, Store, decode, encode, get_meta};
use crate::raft::{NodeId, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use redb::{Durability, ReadableTable};
use std::fmt::Debug;
use std::ops::RangeBounds;

const META_VOTE: &str = "raft_vote";
const META_COMMITTED: &str = "raft_committed";
const META_PURGED: &str = "raft_last_purged";

#[derive(Clone)]
pub struct LogStore {
    store: Store,
}

impl LogStore {
    pub fn new(store: Store) -> Self {
        LogStore { store }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, super::StoreError> {
        let r = self.store.log_db.begin_read()?;
        let t = r.open_table(META)?;
        get_meta(&t, key)
    }

    fn write_meta<T: serde::Serialize>(&self, key: &str, v: &T) -> Result<(), super::StoreError> {
        let mut w = self.store.log_db.begin_write()?;
        w.set_durability(Durability::Immediate);
        w.open_table(META)?.insert(key, encode(v).as_slice())?;
        w.commit()?;
        Ok(())
    }
}

type SResult<T> = Result<T, StorageError<NodeId>>;

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> SResult<Vec<Entry<TypeConfig>>> {
        tokio::task::block_in_place(|| {
            let r = self
                .store
                .log_db
                .begin_read()
                .map_err(|e| StorageIOError::read_logs(&e))?;
            let t = r
                .open_table(LOG)
                .map_err(|e| StorageIOError::read_logs(&e))?;
            let mut out = Vec::new();
            for item in t.range(range).map_err(|e| StorageIOError::read_logs(&e))? {
                let (_, v) = item.map_err(|e| StorageIOError::read_logs(&e))?;
                out.push(decode(v.value()).map_err(|e| StorageIOError::read_logs(&e))?);
            }
            Ok(out)
        })
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> SResult<LogState<TypeConfig>> {
        tokio::task::block_in_place(|| {
            let purged: Option<LogId<NodeId>> = self
                .read_meta(META_PURGED)
                .map_err(|e| StorageIOError::read_logs(&e))?;
            let r = self
                .store
                .log_db
                .begin_read()
                .map_err(|e| StorageIOError::read_logs(&e))?;
            let t = r
                .open_table(LOG)
                .map_err(|e| StorageIOError::read_logs(&e))?;
            let last = match t.last().map_err(|e| StorageIOError::read_logs(&e))? {
                Some((_, v)) => {
                    let e: Entry<TypeConfig> =
                        decode(v.value()).map_err(|e| StorageIOError::read_logs(&e))?;
                    Some(e.log_id)
                }
                None => purged,
            };
            Ok(LogState {
                last_purged_log_id: purged,
                last_log_id: last,
            })
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> SResult<()> {
        tokio::task::block_in_place(|| self.write_meta(META_VOTE, vote))
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> SResult<Option<Vote<NodeId>>> {
        tokio::task::block_in_place(|| self.read_meta(META_VOTE))
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> SResult<()> {
        tokio::task::block_in_place(|| self.write_meta(META_COMMITTED, &committed))
            .map_err(|e| StorageIOError::write(&e).into())
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
        let res = tokio::task::block_in_place(|| -> Result<(), super::StoreError> {
            let mut w = self.store.log_db.begin_write()?;
            w.set_durability(Durability::Immediate);
            {
                let mut t = w.open_table(LOG)?;
                for e in entries {
                    t.insert(e.log_id.index, encode(&e).as_slice())?;
                }
            }
            w.commit()?;
            Ok(())
        });
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> SResult<()> {
        tokio::task::block_in_place(|| -> Result<(), super::StoreError> {
            let mut w = self.store.log_db.begin_write()?;
            w.set_durability(Durability::Immediate);
            w.open_table(LOG)?.retain_in(log_id.index.., |_, _| false)?;
            w.commit()?;
            Ok(())
        })
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> SResult<()> {
        tokio::task::block_in_place(|| -> Result<(), super::StoreError> {
            let mut w = self.store.log_db.begin_write()?;
            w.set_durability(Durability::Immediate);
            w.open_table(META)?
                .insert(META_PURGED, encode(&log_id).as_slice())?;
            w.open_table(LOG)?
                .retain_in(..=log_id.index, |_, _| false)?;
            w.commit()?;
            Ok(())
        })
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
