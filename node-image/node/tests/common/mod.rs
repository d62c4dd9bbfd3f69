//! Helpers shared by the process-level tests: real `medledger node` processes on loopback.
#![allow(dead_code)]

use medledger::cli::client::{connect, submit};
use medledger::local::{LocalConsortium, Options};
use medledger_api::crypto::Suite;
use medledger_api::keys::SigningKey;
use medledger_api::pb::{Put, RegisterParticipant, SubmitTxRequest, SubmitTxResponse, tx_body::Op};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(90);

pub fn bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_medledger").into()
}

pub async fn consortium(n: usize, opts: Options) -> LocalConsortium {
    let mut c = LocalConsortium::create(&bin(), n, &opts).expect("create consortium");
    c.start_all().expect("start nodes");
    c.wait_leader(WAIT).await.expect("leader");
    // Every node answers before a test talks to it (a leader needs only a majority up).
    let deadline = std::time::Instant::now() + WAIT;
    for i in 0..n {
        while c.status(i).await.is_err() {
            if std::time::Instant::now() >= deadline {
                let log = c.log(i);
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "node {i} never answered; the end of its log:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    c
}

/// Registers `n` fresh participant keys through member 0's administrator.
pub async fn register_clients(c: &LocalConsortium, n: usize) -> Vec<SigningKey> {
    let leader = c.wait_leader(WAIT).await.unwrap();
    let mut client = c.client(leader).await.unwrap();
    let admin = &c.admin_keys[0];
    let mut keys = Vec::new();
    for i in 0..n {
        let k = SigningKey::generate(c.genesis.suite);
        let op = Op::RegisterParticipant(RegisterParticipant {
            public_key: k.public(),
            role: "client".into(),
            department: String::new(),
        });
        let r = submit(
            &mut client,
            medledger_api::tx::build(admin, &c.genesis.chain_id, i as u64 + 1, op),
            100,
        )
        .await
        .unwrap();
        assert_eq!(r.code, 0, "registration failed: {}", r.reason);
        keys.push(k);
    }
    keys
}

pub fn put_tx(c: &LocalConsortium, key: &SigningKey, nonce: u64, tag: &str) -> Vec<u8> {
    let op = Op::Put(Put {
        key: format!("{tag}/{nonce}"),
        value: vec![7u8; 200],
    });
    medledger_api::tx::build(key, &c.genesis.chain_id, nonce, op)
}

/// One submission with a bounded wait, to whichever URL is given.
pub async fn try_submit(url: &str, tx: Vec<u8>) -> Result<SubmitTxResponse, String> {
    let mut client = connect(url).await.map_err(|e| e.to_string())?;
    let mut req = tonic::Request::new(SubmitTxRequest { tx });
    req.set_timeout(Duration::from_secs(15));
    client
        .submit_tx(req)
        .await
        .map(|r| r.into_inner())
        .map_err(|s| s.message().to_string())
}

/// Background writers: each key submits sequential nonces round-robin over the node URLs
/// until `stop`; returns the ids of acknowledged (committed, OK) transactions.
pub fn start_load(
    c: &LocalConsortium,
    keys: Vec<SigningKey>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Vec<u8>>>> {
    let urls: Vec<String> = c.nodes.iter().map(|n| n.api_url()).collect();
    let chain = c.genesis.chain_id.clone();
    keys.into_iter()
        .enumerate()
        .map(|(k, key)| {
            let urls = urls.clone();
            let stop = stop.clone();
            let chain = chain.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut nonce = 0u64;
                let mut turn = k;
                while !stop.load(Ordering::Relaxed) {
                    nonce += 1;
                    let op = Op::Put(Put {
                        key: format!("load/{nonce}"),
                        value: vec![1u8; 200],
                    });
                    let tx = medledger_api::tx::build(&key, &chain, nonce, op);
                    turn += 1;
                    match try_submit(&urls[turn % urls.len()], tx).await {
                        Ok(r) if r.code == 0 && r.height > 0 => acked.push(r.tx_id),
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                acked
            })
        })
        .collect()
}

pub async fn collect(tasks: Vec<tokio::task::JoinHandle<Vec<Vec<u8>>>>) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// Waits until all running nodes hold the leader's height, then checks that every chain is
/// identical and that every acknowledged transaction is on it.
pub async fn assert_converged(c: &LocalConsortium, acked: &[Vec<u8>]) -> u64 {
    let leader = c.wait_leader(WAIT).await.unwrap();
    let h = c.status(leader).await.unwrap().height;
    c.wait_height(h, WAIT).await.unwrap();
    let (agree, accepted, height) = c.verify_chains().await.unwrap();
    assert!(
        agree,
        "nodes hold different chains; logs under {}",
        c.dir.display()
    );
    let lost: Vec<_> = acked.iter().filter(|id| !accepted.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged transactions are missing from the chain",
        lost.len()
    );
    height
}

pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub fn default_opts() -> Options {
    Options {
        suite: Suite::Ed25519,
        ..Default::default()
    }
}
