//! ConfigMaps: the node configuration of a LedgerNode and the genesis of a Consortium.

use super::{ANNOTATION_GENESIS_HASH, child_meta, names, node_labels};
use crate::crd::{Consortium, LedgerNode};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use medledger_api::config::{Listen, NodeConfig, RaftTuning};
use medledger_api::genesis::Genesis;
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const DATA_DIR: &str = "/var/lib/medledger";
pub const CONFIG_DIR: &str = "/etc/medledger/config";
pub const GENESIS_DIR: &str = "/etc/medledger/genesis";
pub const KEYS_DIR: &str = "/etc/medledger/keys";
pub const CONFIG_KEY: &str = "node.yaml";
pub const GENESIS_KEY: &str = "genesis.json";
pub const NODE_KEY: &str = "node.key";
pub const ADMIN_KEY: &str = "admin.key";

/// The node's configuration file, as `medledger node --config` reads it.
pub fn node_config(node: &LedgerNode, genesis_hash: &str) -> NodeConfig {
    NodeConfig {
        data_dir: PathBuf::from(DATA_DIR),
        genesis_file: PathBuf::from(format!("{GENESIS_DIR}/{GENESIS_KEY}")),
        genesis_hash: Some(genesis_hash.to_string()),
        node_key_file: PathBuf::from(format!("{KEYS_DIR}/{NODE_KEY}")),
        listen: Listen::default(),
        peer_addresses: node.spec.peer_addresses.clone(),
        raft: RaftTuning::default(),
        max_batch: None,
        fault_injection: false,
        join_as: None,
    }
}

/// `<node>-config`, holding `node.yaml`.
pub fn node_config_map(node: &LedgerNode, genesis_hash: &str) -> ConfigMap {
    let name = node.name_any();
    let labels = node_labels(
        &name,
        &node.spec.consortium_ref.name,
        &node.spec.member_name,
    );
    ConfigMap {
        metadata: child_meta(node, names::config_map(&name), labels),
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_string(),
            node_config(node, genesis_hash).to_yaml(),
        )])),
        ..Default::default()
    }
}

/// `<consortium>-genesis`, holding the canonical genesis bytes under `genesis.json`. The bytes
/// are compact JSON (UTF-8), so they are stored as text exactly as derived.
pub fn genesis_config_map(consortium: &Consortium, genesis: &Genesis) -> ConfigMap {
    let name = consortium.name_any();
    let hash = hex::encode(genesis.hash());
    let mut meta = child_meta(
        consortium,
        names::genesis_config_map(&name),
        BTreeMap::from([
            (super::LABEL_NAME.to_string(), "medledger".to_string()),
            (super::LABEL_COMPONENT.to_string(), "genesis".to_string()),
            (
                super::LABEL_MANAGED_BY.to_string(),
                super::FIELD_MANAGER.to_string(),
            ),
            (super::LABEL_CONSORTIUM.to_string(), name.clone()),
        ]),
    );
    meta.annotations = Some(BTreeMap::from([(
        ANNOTATION_GENESIS_HASH.to_string(),
        hash,
    )]));
    ConfigMap {
        metadata: meta,
        data: Some(BTreeMap::from([(
            GENESIS_KEY.to_string(),
            String::from_utf8(genesis.to_bytes()).expect("genesis JSON is UTF-8"),
        )])),
        // The genesis never changes for a chain: an immutable ConfigMap cannot be edited by
        // mistake and is cheaper for kubelets to watch.
        immutable: Some(true),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::fixtures::*;
    use medledger_api::crypto::Suite;

    #[test]
    fn node_config_points_at_the_mounted_files() {
        let node = node();
        let cm = node_config_map(&node, "ab12");
        assert_eq!(cm.metadata.name.as_deref(), Some("node-a-config"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("hospital-a"));
        assert_eq!(
            cm.metadata.owner_references.as_ref().unwrap()[0].kind,
            "LedgerNode"
        );
        let text = &cm.data.as_ref().unwrap()[CONFIG_KEY];
        let cfg = NodeConfig::from_yaml(text).unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/medledger"));
        assert_eq!(
            cfg.genesis_file,
            PathBuf::from("/etc/medledger/genesis/genesis.json")
        );
        assert_eq!(cfg.genesis_hash.as_deref(), Some("ab12"));
        assert_eq!(
            cfg.node_key_file,
            PathBuf::from("/etc/medledger/keys/node.key")
        );
        assert_eq!(cfg.listen.api, "0.0.0.0:7050");
        assert_eq!(cfg.listen.peer, "0.0.0.0:7051");
        assert_eq!(cfg.listen.admin, "0.0.0.0:9464");
        assert_eq!(cfg.peer_addresses["hospital-b"], "10.1.2.3:7051");
    }

    #[test]
    fn genesis_config_map_holds_the_canonical_bytes() {
        let c = consortium(&key_hex(Suite::Ed25519), 3);
        let g = Genesis::from_spec(&c.spec.genesis_spec()).unwrap();
        let cm = genesis_config_map(&c, &g);
        assert_eq!(cm.metadata.name.as_deref(), Some("emr-genesis"));
        assert_eq!(cm.immutable, Some(true));
        let bytes = cm.data.as_ref().unwrap()[GENESIS_KEY].as_bytes();
        assert_eq!(Genesis::from_bytes(bytes).unwrap(), g);
        assert_eq!(
            cm.metadata.annotations.as_ref().unwrap()[ANNOTATION_GENESIS_HASH],
            hex::encode(g.hash())
        );
    }
}
