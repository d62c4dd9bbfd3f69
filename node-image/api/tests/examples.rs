//! The examples a user starts from must stay valid.

use medledger_api::config::NodeConfig;
use medledger_api::genesis::{Genesis, GenesisSpec};

fn example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn example_genesis_spec_is_valid() {
    let spec = GenesisSpec::from_yaml(&example("genesis.yaml")).unwrap();
    let g = Genesis::from_spec(&spec).unwrap();
    assert_eq!(g.members.len(), 2);
}

#[test]
fn example_node_config_parses() {
    let cfg = NodeConfig::from_yaml(&example("node.yaml")).unwrap();
    assert_eq!(cfg.listen.peer, "0.0.0.0:7051");
    assert!(cfg.peer_addresses.contains_key("hospital-b"));
}
