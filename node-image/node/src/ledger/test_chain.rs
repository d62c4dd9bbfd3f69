//! A one-member chain for unit tests: its context, node key and administrator key.

use super::ChainCtx;
use medledger_api::crypto::Suite;
use medledger_api::genesis::{BlockLimits, Genesis, GenesisSpec, MemberSpec};
use medledger_api::keys::SigningKey;

pub(crate) struct TestChain {
    pub ctx: ChainCtx,
    pub node: ed25519_dalek::SigningKey,
    pub admin: SigningKey,
}

impl TestChain {
    pub fn new(suite: Suite, limits: BlockLimits) -> TestChain {
        let node = SigningKey::generate(Suite::Ed25519);
        let admin = SigningKey::generate(suite);
        let spec = GenesisSpec {
            chain_id: "unit".into(),
            suite,
            block_limits: limits,
            members: vec![MemberSpec {
                name: "hospital-a".into(),
                node_key: hex::encode(node.public()),
                endpoint: "a:1".into(),
                admin_key: hex::encode(admin.public()),
            }],
            policies: Default::default(),
        };
        TestChain {
            ctx: ChainCtx::new(Genesis::from_spec(&spec).expect("valid test genesis")),
            node: node.as_ed25519().expect("an Ed25519 node key").clone(),
            admin,
        }
    }

    /// The member's node id (the proposer of every test block).
    pub fn proposer(&self) -> u64 {
        *self.ctx.node_keys.keys().next().expect("one member")
    }
}
