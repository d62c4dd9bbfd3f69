//! Real `medledger node` processes started from what the operator wrote for each LedgerNode:
//! its `node.yaml` ConfigMap, the Consortium's genesis ConfigMap and the key Secret. Only the
//! file paths and addresses are mapped to this machine (loopback ports, a temporary data
//! directory); the genesis, its pinned hash and the keys are the operator's.

use crate::hospital::{CONSORTIUM, NODE};
use crate::{ChildGuard, free_port, run, wait_for};
use anyhow::Context as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::Api;
use medledger_api::config::{Listen, NodeConfig};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// What the operator rendered for one node. Key files stay in memory and on disk with mode
/// 0600; they are never printed.
pub struct Rendered {
    pub member: String,
    pub config: NodeConfig,
    pub genesis: String,
    node_key: Vec<u8>,
    admin_key: Vec<u8>,
}

/// Reads the rendered ConfigMaps and the key Secret of `namespace`'s LedgerNode.
pub async fn rendered(client: &Client, namespace: &str, member: &str) -> anyhow::Result<Rendered> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let data = |cm: ConfigMap, key: &str| {
        cm.data
            .and_then(|d| d.get(key).cloned())
            .with_context(|| format!("{key} in ConfigMap"))
    };
    let node_yaml = data(cms.get(&format!("{NODE}-config")).await?, "node.yaml")?;
    let genesis = data(
        cms.get(&format!("{CONSORTIUM}-genesis")).await?,
        "genesis.json",
    )?;
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(&format!("{NODE}-keys"))
        .await?;
    let mut keys = secret.data.unwrap_or_default();
    let mut take = |k: &str| {
        keys.remove(k)
            .map(|b| b.0)
            .with_context(|| format!("{k} in Secret {NODE}-keys"))
    };
    Ok(Rendered {
        member: member.to_string(),
        config: serde_yaml::from_str(&node_yaml).context("node.yaml is a NodeConfig")?,
        genesis,
        node_key: take("node.key")?,
        admin_key: take("admin.key")?,
    })
}

pub struct LocalNode {
    pub member: String,
    pub api: String,
    pub admin_key: PathBuf,
    node_key: PathBuf,
    _child: ChildGuard,
}

/// The key files are copies of a hospital's secrets: they do not outlive the test (the logs
/// and the store stay for diagnosis).
impl Drop for LocalNode {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.admin_key);
        let _ = std::fs::remove_file(&self.node_key);
    }
}

/// Starts one `medledger node` per rendered config, all on loopback, peers mapped to each
/// other's loopback ports.
pub fn start(bin: &Path, dir: &Path, nodes: &[Rendered]) -> anyhow::Result<Vec<LocalNode>> {
    let ports: Vec<(u16, u16, u16)> = nodes
        .iter()
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let peers: BTreeMap<String, String> = nodes
        .iter()
        .zip(&ports)
        .map(|(n, p)| (n.member.clone(), format!("127.0.0.1:{}", p.1)))
        .collect();
    let mut started = Vec::new();
    for (n, (api, peer, admin)) in nodes.iter().zip(&ports) {
        let d = dir.join(&n.member);
        std::fs::create_dir_all(d.join("data"))?;
        let mut config = n.config.clone();
        config.data_dir = d.join("data");
        config.genesis_file = d.join("genesis.json");
        config.node_key_file = d.join("node.key");
        config.listen = Listen {
            api: format!("127.0.0.1:{api}"),
            peer: format!("127.0.0.1:{peer}"),
            admin: format!("127.0.0.1:{admin}"),
        };
        config.peer_addresses = peers
            .iter()
            .filter(|(m, _)| **m != n.member)
            .map(|(m, a)| (m.clone(), a.clone()))
            .collect();
        std::fs::write(&config.genesis_file, &n.genesis)?;
        write_private(&config.node_key_file, &n.node_key)?;
        let admin_key = d.join("admin.key");
        write_private(&admin_key, &n.admin_key)?;
        let config_file = d.join("node.yaml");
        std::fs::write(&config_file, serde_yaml::to_string(&config)?)?;
        let log = std::fs::File::create(d.join("node.log"))?;
        let child = Command::new(bin)
            .arg("node")
            .arg("--config")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start medledger node")?;
        started.push(LocalNode {
            member: n.member.clone(),
            api: format!("http://127.0.0.1:{api}"),
            admin_key,
            node_key: config.node_key_file.clone(),
            _child: ChildGuard(child),
        });
    }
    Ok(started)
}

/// `medledger status --json` of a node.
pub fn status(bin: &Path, api: &str) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&run(
        Command::new(bin).args(["status", "--json", "--api", api])
    )?)?)
}

/// Waits until every node reports the same leader and in-sync state.
pub async fn wait_for_leader(bin: &Path, nodes: &[LocalNode]) -> anyhow::Result<()> {
    wait_for(
        "a leader among the real nodes",
        Duration::from_secs(60),
        || async {
            let mut leaders = Vec::new();
            for n in nodes {
                let s = status(bin, &n.api).map_err(|e| format!("{}: {e}", n.member))?;
                leaders.push(s["leader_id"].as_u64().unwrap_or(0));
            }
            if leaders.iter().all(|l| *l != 0 && *l == leaders[0]) {
                Ok(())
            } else {
                Err(format!("leaders seen: {leaders:?}"))
            }
        },
    )
    .await
}

/// Signs and submits `key=value` with the node's member admin key; waits for the commit.
pub fn submit(bin: &Path, node: &LocalNode, kv: &str) -> anyhow::Result<String> {
    run(Command::new(bin)
        .args(["submit", "--api", &node.api, "--key"])
        .arg(&node.admin_key)
        .args(["--put", kv]))
}

fn write_private(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(content)?;
    Ok(())
}
