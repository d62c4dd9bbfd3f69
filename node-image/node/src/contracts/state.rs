//! The contracts' view of state: committed state underneath, this block's writes on top.
//!
//! Contract objects live in one ordered key space (`kind/id...`) and are bincode-encoded
//! serde structs; the hot per-transaction data (nonces, participant roles) keeps its own
//! tables.

use medledger_api::crypto::Hash;
use serde::{Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;

/// Read access to committed state, as of the block before the one being executed.
pub trait StateRead {
    fn nonce(&self, signer: &[u8]) -> u64;
    fn participant_role(&self, key: &[u8]) -> Option<String>;
    fn object(&self, key: &str) -> Option<Vec<u8>>;
}

/// State writes produced by one block.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Changes {
    pub nonces: BTreeMap<Vec<u8>, u64>,
    pub participants: BTreeMap<Vec<u8>, String>,
    pub kv: BTreeMap<String, Vec<u8>>,
    pub objects: BTreeMap<String, Vec<u8>>,
    /// (tx id, index in block)
    pub tx_index: Vec<(Hash, u32)>,
    /// A governance decision changed the member set in this block.
    pub membership_changed: bool,
}

pub struct Overlay<'a> {
    pub state: &'a dyn StateRead,
    pub changes: Changes,
}

impl<'a> Overlay<'a> {
    pub fn new(state: &'a dyn StateRead) -> Overlay<'a> {
        Overlay {
            state,
            changes: Changes::default(),
        }
    }

    pub fn nonce(&self, signer: &[u8]) -> u64 {
        self.changes
            .nonces
            .get(signer)
            .copied()
            .unwrap_or_else(|| self.state.nonce(signer))
    }

    pub fn role(&self, key: &[u8]) -> Option<String> {
        self.changes
            .participants
            .get(key)
            .cloned()
            .or_else(|| self.state.participant_role(key))
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let bytes = match self.changes.objects.get(key) {
            Some(b) => b.clone(),
            None => self.state.object(key)?,
        };
        // Objects are written only by these contracts; one that does not decode means the
        // store is damaged, and guessing would make this node diverge.
        Some(bincode::deserialize(&bytes).expect("contract state decodes"))
    }

    pub fn put<T: Serialize>(&mut self, key: String, value: &T) {
        let bytes = bincode::serialize(value).expect("contract state encodes");
        self.changes.objects.insert(key, bytes);
    }
}

/// Reads of committed objects outside execution (queries), with the same encoding.
pub fn decode_object<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    bincode::deserialize(bytes).ok()
}
