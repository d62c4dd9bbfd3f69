//! Wiring of one ledger node: store, Raft, servers and background tasks.

use crate::ledger::ChainCtx;
use crate::ledger::verify::{ChainError, verify_chain};
use crate::metrics::Metrics;
use crate::raft::network::Network;
use crate::raft::{Node, Raft};
use crate::service::emr_api::EmrService;
use crate::service::{ledger_api::LedgerService, peer_api::PeerService, submit::Submitter};
use crate::store::log::LogStore;
use crate::store::state_machine::StateMachine;
use crate::store::{Head, Store, StoreError};
use crate::transport::peers::{PeerInfo, Peers};
use crate::transport::tls::{AllowedKeys, server_config};
use medledger_api::config::NodeConfig;
use medledger_api::genesis::Genesis;
use medledger_api::pb::{
    emr_server::EmrServer, ledger_server::LedgerServer, peer_server::PeerServer,
};
use openraft::ServerState;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Everything the services share.
pub struct Shared {
    pub me: u64,
    pub member: String,
    pub ctx: Arc<ChainCtx>,
    pub raft: Raft,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub peers: Arc<Peers>,
    pub submitter: Submitter,
    pub head_rx: watch::Receiver<Head>,
    pub fault_injection: bool,
    /// This node's Ed25519 key: opens custody-wrapped data keys and signs release records.
    pub node_key: ed25519_dalek::SigningKey,
    /// Last nonce this node used for its own transactions.
    pub own_nonce: tokio::sync::Mutex<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot read {what} {path}: {source}; check the path in the node config")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("genesis file {path} is invalid: {source}")]
    Genesis {
        path: String,
        source: medledger_api::genesis::GenesisError,
    },
    #[error(
        "genesis hash is {actual} but the config expects {expected}: this node was given another consortium's genesis"
    )]
    GenesisHash { expected: String, actual: String },
    #[error("node key: {0}")]
    Key(#[from] medledger_api::keys::KeyError),
    #[error("the node key must be an Ed25519 key (medledger keygen --suite ed25519)")]
    KeySuite,
    #[error(
        "node key {0} is not the key of any validator in the genesis; use the key listed for this member, or set joinAs to the member name a governance proposal admits"
    )]
    NotAValidator(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::transport::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("Raft: {0}")]
    Raft(String),
}

pub fn role_name(s: &ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, NodeError> {
    std::fs::read(path).map_err(|source| NodeError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

async fn bind(addr: &str) -> Result<tokio::net::TcpListener, NodeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Listen {
            addr: addr.to_string(),
            source,
        })
}

/// Sets TCP_NODELAY on accepted connections (tonic ignores its own setting for an incoming
/// stream). Without it a small reply waits for the client's delayed ACK, and a submission
/// answered in a millisecond reached the client tens of milliseconds later.
fn no_delay(
    incoming: impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>>,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    incoming.map(|conn| {
        conn.inspect(|tcp| {
            let _ = tcp.set_nodelay(true);
        })
    })
}

/// Runs a node until `shutdown` resolves.
pub async fn run(
    cfg: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let genesis_bytes = read("genesis file", &cfg.genesis_file)?;
    let genesis = Genesis::from_bytes(&genesis_bytes).map_err(|source| NodeError::Genesis {
        path: cfg.genesis_file.display().to_string(),
        source,
    })?;
    let actual = hex::encode(genesis.hash());
    if let Some(expected) = &cfg.genesis_hash
        && expected.to_lowercase() != actual
    {
        return Err(NodeError::GenesisHash {
            expected: expected.clone(),
            actual,
        });
    }
    let key = medledger_api::keys::load(&cfg.node_key_file)?;
    let key = key.as_ed25519().ok_or(NodeError::KeySuite)?.clone();
    let public = hex::encode(key.verifying_key().to_bytes());
    // A founding validator is in the genesis; a hospital admitted later starts with
    // `joinAs` and waits until the members' vote and the leader bring it in.
    let (me, member_name, joining) = match genesis.members.iter().find(|m| m.node_key == public) {
        Some(m) => (m.node_id, m.name.clone(), false),
        None => match &cfg.join_as {
            Some(name) => (
                medledger_api::genesis::node_id(genesis.suite, &key.verifying_key().to_bytes()),
                name.clone(),
                true,
            ),
            None => return Err(NodeError::NotAValidator(public)),
        },
    };
    let ctx = Arc::new(ChainCtx::new(genesis.clone()));

    let store =
        tokio::task::block_in_place(|| Store::open(&cfg.data_dir, ctx.genesis_hash, ctx.suite))?;
    let head = store.head()?;
    tokio::task::block_in_place(|| {
        let view = store.read().map_err(|e| ChainError::Read(e.to_string()))?;
        let members = crate::membership::current_members(&ctx, &store);
        let proposer_key = |id| crate::membership::node_key_in(&ctx, &members, id);
        verify_chain(&ctx, &head, proposer_key, |h| {
            let b = view.block(h).map_err(|e| e.to_string())?;
            let hash = view.block_hash(h).map_err(|e| e.to_string())?;
            Ok(b.map(|b| (b, hash)))
        })
    })?;
    tracing::info!(height = head.height, member = %member_name, node_id = me, joining, "stored chain verified");

    let metrics = Arc::new(Metrics::new());
    let (sm, head_rx) = StateMachine::new(store.clone(), ctx.clone(), metrics.clone())?;
    let head_tx = sm.head_sender();
    let isolated = Arc::new(AtomicBool::new(false));
    // The peer table comes from the member list on chain (the genesis until a decision
    // changes it), so a restarted node knows every member admitted since.
    let infos: HashMap<u64, PeerInfo> = crate::membership::peer_infos(
        &crate::membership::current_members(&ctx, &store),
        &cfg.peer_addresses,
    );
    let allowed: AllowedKeys = Arc::new(RwLock::new(
        infos.values().map(|p| p.key).collect::<HashSet<_>>(),
    ));
    let peers = Arc::new(Peers::new(me, key.clone(), infos.clone(), isolated.clone()));

    let raft_config = Arc::new(
        crate::raft::config(&cfg.raft)
            .validate()
            .map_err(|e| NodeError::Raft(e.to_string()))?,
    );
    let raft = Raft::new(
        me,
        raft_config,
        Network {
            peers: peers.clone(),
        },
        LogStore::new(store.clone()),
        sm,
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;
    if !raft
        .is_initialized()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?
        && !joining
    {
        // Every validator initializes with the same genesis membership; Raft makes that safe.
        let members: BTreeMap<u64, Node> = infos
            .iter()
            .map(|(id, p)| {
                (
                    *id,
                    Node {
                        addr: p.addr.clone(),
                    },
                )
            })
            .collect();
        if let Err(e) = raft.initialize(members).await {
            tracing::debug!(error = %e, "initialize skipped");
        }
    }

    let max_batch = cfg
        .max_batch
        .map(|b| b as usize)
        .unwrap_or(ctx.max_block_txs)
        .min(ctx.max_block_txs)
        .max(1);
    let submitter = Submitter::start(raft.clone(), ctx.clone(), me, key.clone(), max_batch);
    let shared = Arc::new(Shared {
        me,
        member: member_name.clone(),
        ctx: ctx.clone(),
        raft: raft.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        peers: peers.clone(),
        submitter,
        head_rx: head_rx.clone(),
        fault_injection: cfg.fault_injection,
        node_key: key.clone(),
        own_nonce: tokio::sync::Mutex::new(0),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    // Client API: plain gRPC; transactions carry their own signatures.
    let api_listener = bind(&cfg.listen.api).await?;
    let api = tonic::transport::Server::builder()
        .add_service(
            LedgerServer::new(LedgerService {
                node: shared.clone(),
            })
            .max_decoding_message_size(8 << 20),
        )
        .add_service(EmrServer::new(EmrService {
            node: shared.clone(),
        }))
        .serve_with_incoming_shutdown(
            no_delay(tokio_stream::wrappers::TcpListenerStream::new(api_listener)),
            stopped(stop_rx.clone()),
        );

    // Peer API: mutual TLS pinned to the validators' node keys.
    let peer_listener = bind(&cfg.listen.peer).await?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(&key, allowed.clone())?));
    let (conn_tx, conn_rx) = tokio::sync::mpsc::channel(64);
    let accept_stop = stop_rx.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                r = peer_listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                _ = stopped(accept_stop.clone()) => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let conn_tx = conn_tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = conn_tx.send(Ok::<_, std::io::Error>(tls)).await;
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "peer TLS handshake refused"),
                    Err(_) => tracing::warn!("peer TLS handshake timed out"),
                }
            });
        }
    });
    let peer = tonic::transport::Server::builder()
        .add_service(
            PeerServer::new(PeerService {
                node: shared.clone(),
            })
            .max_decoding_message_size(64 << 20),
        )
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::ReceiverStream::new(conn_rx),
            stopped(stop_rx.clone()),
        );

    let admin_listener = bind(&cfg.listen.admin).await?;
    let admin = crate::admin::serve(admin_listener, shared.clone(), stopped(stop_rx.clone()));

    tokio::spawn(crate::backfill::run(
        shared.clone(),
        head_tx,
        stop_rx.clone(),
    ));
    tokio::spawn(update_gauges(shared.clone(), stop_rx.clone()));
    tokio::spawn(flush_applied(store.clone(), stop_rx.clone()));
    tokio::spawn(crate::membership::follow(
        shared.clone(),
        allowed.clone(),
        cfg.peer_addresses.clone(),
        stop_rx.clone(),
    ));
    tracing::info!(api = %cfg.listen.api, peer = %cfg.listen.peer, admin = %cfg.listen.admin, "node started");

    let servers = tokio::spawn(async move {
        let (a, p, d) = tokio::join!(api, peer, admin);
        if let Err(e) = a {
            tracing::error!(error = %e, "client API server failed");
        }
        if let Err(e) = p {
            tracing::error!(error = %e, "peer server failed");
        }
        if let Err(e) = d {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = raft.shutdown().await;
    if let Err(e) = tokio::task::block_in_place(|| store.flush_all()) {
        tracing::error!(error = %e, "could not flush the store; the log will be replayed at start");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), servers).await;
    Ok(())
}

/// Writes applied blocks out in the background: when applying says enough have gathered,
/// and on a timer so that a quiet chain's last blocks are written too.
async fn flush_applied(store: Store, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = store.flush_wanted().notified() => {}
            _ = stop.changed() => return,
        }
        if !store.flush_due() {
            continue;
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not write applied blocks; retrying"),
            Err(e) => tracing::error!(error = %e, "the block writer task failed; retrying"),
        }
    }
}

/// Keeps the gauges current from Raft's metrics and the chain head.
async fn update_gauges(node: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let s = node.status();
        let m = &node.metrics;
        m.height.set(s.height as i64);
        m.raft_term.set(s.term as i64);
        m.set_role(&s.role);
        m.raft_leader.set(s.leader_id as i64);
        m.peers_connected.set(s.peers_connected as i64);
        m.validators.set(s.validators as i64);
        m.in_sync.set(i64::from(s.in_sync));
    }
}
