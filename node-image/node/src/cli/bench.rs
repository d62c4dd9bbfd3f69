//! `medledger bench`: a local 4-validator consortium under concurrent signed writes, checked
//! afterwards for lost transactions and diverging chains, optionally beside etcd.

use super::client::{connect, submit};
use super::etcd::{EtcdCluster, put};
use crate::local::{LocalConsortium, Options};
use anyhow::{Result, bail};
use medledger_api::crypto::Suite;
use medledger_api::keys::SigningKey;
use medledger_api::pb::{Put, RegisterParticipant, tx_body::Op};
use rand::RngCore;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub nodes: usize,
    pub txs: usize,
    pub clients: usize,
    pub tx_bytes: usize,
    pub connections: usize,
    pub vs_etcd: bool,
    pub suite: Suite,
}

struct Load {
    elapsed: Duration,
    latencies: Vec<Duration>,
    acked: Vec<Vec<u8>>,
    errors: usize,
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Signs every transaction up front so the timed part measures the ledger, not the client.
fn presign(
    chain: &str,
    keys: &[SigningKey],
    per_client: usize,
    tx_bytes: usize,
) -> Vec<Vec<Vec<u8>>> {
    let mut rng = rand::thread_rng();
    keys.iter()
        .enumerate()
        .map(|(c, key)| {
            (0..per_client)
                .map(|n| {
                    let k = format!("bench/{c}/{n}");
                    let probe = medledger_api::tx::build(
                        key,
                        chain,
                        n as u64 + 1,
                        Op::Put(Put {
                            key: k.clone(),
                            value: vec![],
                        }),
                    );
                    let mut value = vec![0u8; tx_bytes.saturating_sub(probe.len() + 3)];
                    rng.fill_bytes(&mut value);
                    medledger_api::tx::build(
                        key,
                        chain,
                        n as u64 + 1,
                        Op::Put(Put { key: k, value }),
                    )
                })
                .collect()
        })
        .collect()
}

async fn ledger_load(url: &str, connections: usize, work: Vec<Vec<Vec<u8>>>) -> Result<Load> {
    let mut clients = Vec::new();
    for _ in 0..connections.max(1) {
        clients.push(connect(url).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, txs) in work.into_iter().enumerate() {
        let mut client = clients[i % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(txs.len());
            let mut acked = Vec::with_capacity(txs.len());
            let mut errors = 0;
            for tx in txs {
                let t0 = Instant::now();
                match submit(&mut client, tx, 50).await {
                    Ok(r) if r.code == 0 => {
                        lat.push(t0.elapsed());
                        acked.push(r.tx_id);
                    }
                    _ => errors += 1,
                }
            }
            (lat, acked, errors)
        }));
    }
    let mut load = Load {
        elapsed: Duration::ZERO,
        latencies: vec![],
        acked: vec![],
        errors: 0,
    };
    for t in tasks {
        let (l, a, e) = t.await?;
        load.latencies.extend(l);
        load.acked.extend(a);
        load.errors += e;
    }
    load.elapsed = started.elapsed();
    load.latencies.sort();
    Ok(load)
}

async fn etcd_load(
    etcd: &EtcdCluster,
    connections: usize,
    work: Vec<Vec<Vec<u8>>>,
) -> Result<Load> {
    let mut chans = Vec::new();
    for i in 0..connections.max(1) {
        // Like etcd's own client, spread connections over the members.
        chans.push(etcd.channel(i % etcd.client_urls.len()).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, txs) in work.into_iter().enumerate() {
        let mut ch = chans[c % chans.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(txs.len());
            let mut errors = 0;
            for (n, value) in txs.into_iter().enumerate() {
                let t0 = Instant::now();
                match put(&mut ch, format!("bench/{c}/{n}").into_bytes(), value).await {
                    Ok(()) => lat.push(t0.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut load = Load {
        elapsed: Duration::ZERO,
        latencies: vec![],
        acked: vec![],
        errors: 0,
    };
    for t in tasks {
        let (l, e) = t.await?;
        load.latencies.extend(l);
        load.errors += e;
    }
    load.elapsed = started.elapsed();
    load.latencies.sort();
    Ok(load)
}

pub async fn run(bin: &Path, args: &BenchArgs) -> Result<serde_json::Value> {
    if args.nodes == 0 || args.clients == 0 || args.txs == 0 {
        bail!("--nodes, --clients and --txs must be at least 1");
    }
    let opts = Options {
        suite: args.suite,
        snapshot_every: 20_000,
        ..Default::default()
    };
    let mut c = LocalConsortium::create(bin, args.nodes, &opts)?;
    c.start_all()?;
    let leader = c.wait_leader(Duration::from_secs(60)).await?;
    let url = c.nodes[leader].api_url();
    let mut admin_client = connect(&url).await?;
    let chain = c.genesis.chain_id.clone();

    eprintln!("bench: registering {} client keys", args.clients);
    let keys: Vec<SigningKey> = (0..args.clients)
        .map(|_| SigningKey::generate(args.suite))
        .collect();
    let admin = &c.admin_keys[0];
    for (i, k) in keys.iter().enumerate() {
        let op = Op::RegisterParticipant(RegisterParticipant {
            public_key: k.public(),
            role: "client".into(),
            department: String::new(),
        });
        let r = submit(
            &mut admin_client,
            medledger_api::tx::build(admin, &chain, i as u64 + 1, op),
            50,
        )
        .await?;
        if r.code != 0 {
            bail!("registering bench client {i} failed: {}", r.reason);
        }
    }
    let per_client = args.txs.div_ceil(args.clients);
    let work = presign(&chain, &keys, per_client, args.tx_bytes);
    let avg_tx_bytes = work.iter().flatten().map(Vec::len).sum::<usize>() as f64
        / (per_client * args.clients) as f64;
    let etcd_work = args.vs_etcd.then(|| work.clone());

    eprintln!(
        "bench: {} txs of ~{avg_tx_bytes:.0} bytes from {} clients to {} validators",
        per_client * args.clients,
        args.clients,
        args.nodes
    );
    let load = ledger_load(&url, args.connections, work).await?;
    let final_height = c.status(leader).await.map(|s| s.height).unwrap_or(0);
    if let Err(e) = c.wait_height(final_height, Duration::from_secs(120)).await {
        c.keep_dir();
        return Err(e.context("nodes did not converge after the load"));
    }
    let (hashes_agree, accepted, height) = c.verify_chains().await?;
    let lost = load
        .acked
        .iter()
        .filter(|id| !accepted.contains(*id))
        .count();
    let tps = load.acked.len() as f64 / load.elapsed.as_secs_f64();
    let mut out = serde_json::json!({
        "nodes": args.nodes,
        "suite": args.suite.as_str(),
        "clients": args.clients,
        "txs": per_client * args.clients,
        "tx_bytes": avg_tx_bytes.round(),
        "tps": tps.round(),
        "p50_ms": (percentile(&load.latencies, 0.50) * 100.0).round() / 100.0,
        "p99_ms": (percentile(&load.latencies, 0.99) * 100.0).round() / 100.0,
        "acked": load.acked.len(),
        "errors": load.errors,
        "lost": lost,
        "hashes_agree": hashes_agree,
        "blocks": height,
        "elapsed_s": (load.elapsed.as_secs_f64() * 100.0).round() / 100.0,
    });
    c.stop_all();

    if let Some(work) = etcd_work {
        eprintln!("bench: the same payloads into a 3-member etcd cluster");
        let etcd = EtcdCluster::start(3).await?;
        let e = etcd_load(&etcd, args.connections, work).await?;
        let etcd_tps = e.latencies.len() as f64 / e.elapsed.as_secs_f64();
        let obj = out.as_object_mut().expect("object");
        obj.insert("etcd_tps".into(), etcd_tps.round().into());
        obj.insert(
            "etcd_p50_ms".into(),
            ((percentile(&e.latencies, 0.50) * 100.0).round() / 100.0).into(),
        );
        obj.insert(
            "etcd_p99_ms".into(),
            ((percentile(&e.latencies, 0.99) * 100.0).round() / 100.0).into(),
        );
        obj.insert("etcd_errors".into(), e.errors.into());
        obj.insert(
            "ratio".into(),
            ((tps / etcd_tps.max(1.0)) * 100.0).round().into(),
        );
        let r = obj["ratio"].as_f64().unwrap_or(0.0) / 100.0;
        obj.insert("ratio".into(), r.into());
    }
    Ok(out)
}
