//! Everything a node knows about its chain from the genesis.

use medledger_api::crypto::{Hash, Suite};
use medledger_api::genesis::Genesis;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct ChainCtx {
    pub genesis: Genesis,
    pub genesis_hash: Hash,
    pub suite: Suite,
    pub chain_id: String,
    pub max_tx_bytes: usize,
    pub max_block_txs: usize,
    /// Member admin keys (suite encoding) -> member name.
    pub admins: HashMap<Vec<u8>, String>,
    /// Raft node id -> Ed25519 node key.
    pub node_keys: HashMap<u64, Vec<u8>>,
}

impl ChainCtx {
    pub fn new(genesis: Genesis) -> ChainCtx {
        let admins = genesis
            .members
            .iter()
            .map(|m| {
                (
                    hex::decode(&m.admin_key).expect("validated genesis"),
                    m.name.clone(),
                )
            })
            .collect();
        let node_keys = genesis
            .members
            .iter()
            .map(|m| {
                (
                    m.node_id,
                    hex::decode(&m.node_key).expect("validated genesis"),
                )
            })
            .collect();
        ChainCtx {
            genesis_hash: genesis.hash(),
            suite: genesis.suite,
            chain_id: genesis.chain_id.clone(),
            max_tx_bytes: genesis.max_tx_bytes as usize,
            max_block_txs: genesis.max_block_txs as usize,
            admins,
            node_keys,
            genesis,
        }
    }

    pub fn node_key(&self, node_id: u64) -> Option<Vec<u8>> {
        self.node_keys.get(&node_id).cloned()
    }
}
