//! A consortium of real `medledger node` processes on loopback, for the demo, the benchmark
//! and the tests. Each node is a child process with its own data directory and log file.

use crate::loopback::free_port;
use anyhow::{Context, Result, bail};
use medledger_api::config::{Listen, NodeConfig, RaftTuning};
use medledger_api::crypto::Suite;
use medledger_api::genesis::{BlockLimits, Genesis, GenesisSpec, MemberSpec};
use medledger_api::keys::{SigningKey, save_new};
use medledger_api::pb::{
    StatusRequest, StatusResponse, StreamBlocksRequest, ledger_client::LedgerClient,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

#[derive(Debug, Clone)]
pub struct Options {
    pub suite: Suite,
    pub snapshot_every: u64,
    pub keep_after_snapshot: u64,
    pub fault_injection: bool,
    pub max_batch: Option<u32>,
    pub max_block_txs: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            suite: Suite::Ed25519,
            snapshot_every: RaftTuning::default().snapshot_every,
            keep_after_snapshot: RaftTuning::default().keep_after_snapshot,
            fault_injection: false,
            max_batch: None,
            max_block_txs: BlockLimits::default().max_block_txs,
        }
    }
}

pub struct LocalNode {
    pub name: String,
    pub node_id: u64,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub api: String,
    pub admin: String,
    pub log_path: PathBuf,
    child: Option<Child>,
}

impl LocalNode {
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

pub struct LocalConsortium {
    pub dir: PathBuf,
    pub nodes: Vec<LocalNode>,
    /// Each member's administrator key (signs registrations).
    pub admin_keys: Vec<SigningKey>,
    pub genesis: Genesis,
    bin: PathBuf,
    opts: Options,
    _tmp: Option<tempfile::TempDir>,
}

/// Writes one node's key and config under `dir/name`.
fn write_node(
    dir: &Path,
    genesis: &Genesis,
    opts: &Options,
    name: &str,
    key: &SigningKey,
    (api, peer, admin): (u16, u16, u16),
    join_as: Option<String>,
) -> Result<LocalNode> {
    let ndir = dir.join(name);
    std::fs::create_dir_all(&ndir)?;
    let key_file = ndir.join("node.key");
    save_new(&key_file, key)?;
    let cfg = NodeConfig {
        data_dir: ndir.join("data"),
        genesis_file: dir.join("genesis.json"),
        genesis_hash: Some(hex::encode(genesis.hash())),
        node_key_file: key_file,
        listen: Listen {
            api: format!("127.0.0.1:{api}"),
            peer: format!("127.0.0.1:{peer}"),
            admin: format!("127.0.0.1:{admin}"),
        },
        peer_addresses: Default::default(),
        raft: RaftTuning {
            snapshot_every: opts.snapshot_every,
            keep_after_snapshot: opts.keep_after_snapshot,
            ..Default::default()
        },
        max_batch: opts.max_batch,
        fault_injection: opts.fault_injection,
        join_as,
    };
    let config_path = ndir.join("node.yaml");
    std::fs::write(&config_path, cfg.to_yaml())?;
    Ok(LocalNode {
        name: name.to_string(),
        node_id: medledger_api::genesis::node_id(genesis.suite, &key.public()),
        config_path,
        data_dir: cfg.data_dir,
        api: cfg.listen.api,
        admin: cfg.listen.admin,
        log_path: ndir.join("node.log"),
        child: None,
    })
}

impl LocalConsortium {
    /// Creates keys, genesis and configs for `n` hospitals under a fresh temporary directory.
    pub fn create(bin: &Path, n: usize, opts: &Options) -> Result<LocalConsortium> {
        let tmp = tempfile::Builder::new()
            .prefix("medledger-local-")
            .tempdir()?;
        let mut c = Self::create_in(bin, tmp.path(), n, opts)?;
        c._tmp = Some(tmp);
        Ok(c)
    }

    /// Keeps the data directory (logs, stores) after the consortium is dropped, so a failure
    /// can be investigated; the path is printed in the error that asks for it.
    pub fn keep_dir(&mut self) {
        if let Some(tmp) = self._tmp.take() {
            let _ = tmp.keep();
        }
    }

    pub fn create_in(bin: &Path, dir: &Path, n: usize, opts: &Options) -> Result<LocalConsortium> {
        let mut members = Vec::new();
        let mut admin_keys = Vec::new();
        let mut node_keys = Vec::new();
        let mut ports = Vec::new();
        for i in 0..n {
            let name = format!("hospital-{}", (b'a' + i as u8) as char);
            let node_key = SigningKey::generate(Suite::Ed25519);
            let admin = SigningKey::generate(opts.suite);
            let (api, peer, admin_port) = (free_port()?, free_port()?, free_port()?);
            members.push(MemberSpec {
                name: name.clone(),
                node_key: hex::encode(node_key.public()),
                endpoint: format!("127.0.0.1:{peer}"),
                admin_key: hex::encode(admin.public()),
            });
            node_keys.push((name, node_key));
            admin_keys.push(admin);
            ports.push((api, peer, admin_port));
        }
        let spec = GenesisSpec {
            chain_id: "medledger-local".into(),
            suite: opts.suite,
            block_limits: BlockLimits {
                max_block_txs: opts.max_block_txs,
                ..Default::default()
            },
            members,
            policies: Default::default(),
        };
        let genesis = Genesis::from_spec(&spec)?;
        std::fs::create_dir_all(dir)?;
        let genesis_file = dir.join("genesis.json");
        std::fs::write(&genesis_file, genesis.to_bytes())?;
        std::fs::write(dir.join("genesis.yaml"), serde_yaml::to_string(&spec)?)?;
        let mut nodes = Vec::new();
        for ((name, key), ports) in node_keys.into_iter().zip(ports) {
            nodes.push(write_node(dir, &genesis, opts, &name, &key, ports, None)?);
        }
        Ok(LocalConsortium {
            dir: dir.to_path_buf(),
            nodes,
            admin_keys,
            genesis,
            bin: bin.to_path_buf(),
            opts: opts.clone(),
            _tmp: None,
        })
    }

    /// Prepares (does not start) a node for a hospital that is not in the genesis and will
    /// join by governance vote. Returns its index, its administrator key and its member card
    /// (node key, endpoint, admin key) for the proposal.
    pub fn prepare_joiner(&mut self, name: &str) -> Result<(usize, SigningKey, [String; 3])> {
        let node_key = SigningKey::generate(Suite::Ed25519);
        let admin = SigningKey::generate(self.opts.suite);
        let ports = (free_port()?, free_port()?, free_port()?);
        let node = write_node(
            &self.dir,
            &self.genesis,
            &self.opts,
            name,
            &node_key,
            ports,
            Some(name.to_string()),
        )?;
        self.nodes.push(node);
        self.admin_keys.push(admin.clone());
        let card = [
            hex::encode(node_key.public()),
            format!("127.0.0.1:{}", ports.1),
            hex::encode(admin.public()),
        ];
        Ok((self.nodes.len() - 1, admin, card))
    }

    pub fn start_all(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start(i)?;
        }
        Ok(())
    }

    pub fn start(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        if node.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)?;
        let child = Command::new(&self.bin)
            .arg("node")
            .arg("--config")
            .arg(&node.config_path)
            .env(
                "RUST_LOG",
                std::env::var("MEDLEDGER_NODE_LOG").unwrap_or_else(|_| "info,openraft=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        node.child = Some(child);
        Ok(())
    }

    /// Kills a node with SIGKILL: no shutdown path runs.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Stops a node with SIGTERM (its graceful shutdown path), SIGKILL after 10 s.
    pub fn stop(&mut self, i: usize) -> Result<()> {
        let Some(mut c) = self.nodes[i].child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if c.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        c.kill()?;
        c.wait()?;
        Ok(())
    }

    /// Waits for the process to exit by itself (e.g. refusing to start) and returns its status.
    pub fn wait_exit(
        &mut self,
        i: usize,
        timeout: Duration,
    ) -> Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(c) = self.nodes[i].child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    self.nodes[i].child = None;
                    return Ok(Some(st));
                }
            } else {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(None)
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log_path).unwrap_or_default()
    }

    pub async fn client(&self, i: usize) -> Result<LedgerClient<Channel>> {
        crate::cli::client::connect(&self.nodes[i].api_url()).await
    }

    pub async fn status(&self, i: usize) -> Result<StatusResponse> {
        Ok(self
            .client(i)
            .await?
            .status(StatusRequest {})
            .await?
            .into_inner())
    }

    /// Index of the node that a running majority agrees is leader.
    pub async fn wait_leader(&self, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            for (i, n) in self.nodes.iter().enumerate() {
                if !n.is_running() {
                    continue;
                }
                if let Ok(s) = self.status(i).await
                    && s.role == "leader"
                    && s.node_id == n.node_id
                {
                    return Ok(i);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "no leader elected within {timeout:?}; see the node logs under {}",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every running node reports `height >= h`, holds all blocks and is in sync.
    pub async fn wait_height(&self, h: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = true;
            for (i, n) in self.nodes.iter().enumerate() {
                if !n.is_running() {
                    continue;
                }
                match self.status(i).await {
                    Ok(s) if s.height >= h && s.in_sync => {}
                    _ => all = false,
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "nodes did not reach height {h} within {timeout:?}; see logs under {}",
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads every block from every running node. Returns whether all chains are identical,
    /// the ids of the transactions accepted on chain, and the chain length.
    pub async fn verify_chains(&self) -> Result<(bool, HashSet<Vec<u8>>, u64)> {
        let suite = self.genesis.suite;
        let mut chains = Vec::new();
        let mut accepted = HashSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !n.is_running() {
                continue;
            }
            // A node that just installed a snapshot answers "retry" for blocks it is still
            // back-filling; give it a bounded while to close the gap.
            let mut tries = 0;
            let blocks = loop {
                match self.read_chain(i).await {
                    Ok(b) => break b,
                    Err(s) if s.code() == tonic::Code::Unavailable && tries < 100 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(s) => bail!("{}: cannot read its chain: {}", n.name, s.message()),
                }
            };
            let mut hashes = Vec::new();
            for b in blocks {
                if chains.is_empty() {
                    let block = b.block.clone().unwrap_or_default();
                    for (raw, r) in block.txs.iter().zip(&block.results) {
                        if r.code == 0
                            && let Ok((tx, _)) = medledger_api::tx::decode(raw)
                        {
                            accepted.insert(suite.hash(&tx.body).to_vec());
                        }
                    }
                }
                hashes.push(b.hash);
            }
            chains.push(hashes);
        }
        let height = chains.first().map_or(0, |c| c.len() as u64);
        Ok((chains.iter().all(|h| *h == chains[0]), accepted, height))
    }

    async fn read_chain(
        &self,
        i: usize,
    ) -> Result<Vec<medledger_api::pb::GetBlockResponse>, tonic::Status> {
        let mut client = self
            .client(i)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut stream = client
            .stream_blocks(StreamBlocksRequest {
                from_height: 1,
                follow: false,
            })
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(b) = stream.next().await {
            out.push(b?);
        }
        Ok(out)
    }

    /// POSTs to a node's admin port (fault injection) or GETs a path; returns the body.
    pub async fn admin_http(&self, i: usize, method: &str, path: &str) -> Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&self.nodes[i].admin).await?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    }

    pub fn index_of(&self, node_id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.node_id == node_id)
    }

    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.kill(i);
        }
    }
}

impl Drop for LocalConsortium {
    fn drop(&mut self) {
        self.stop_all();
    }
}
