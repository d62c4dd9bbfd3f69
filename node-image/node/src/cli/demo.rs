//! `medledger demo`: three hospitals on loopback, real nodes over real gRPC and mutual TLS.
//! Records EMR retrieval events, kills a node with SIGKILL, keeps going, restarts it and
//! shows that every node holds the same chain.

use super::client::{connect, submit};
use crate::local::{LocalConsortium, Options};
use crate::metrics::code_name;
use anyhow::{Result, bail};
use medledger_api::crypto::Suite;
use medledger_api::keys::SigningKey;
use medledger_api::pb::{GetBlockRequest, Put, RegisterParticipant, tx_body::Op};
use std::path::Path;
use std::time::Duration;

fn short(h: &[u8]) -> String {
    hex::encode(&h[..h.len().min(8)])
}

async fn record_retrievals(
    c: &LocalConsortium,
    via: usize,
    clinicians: &[(SigningKey, u64)],
    from: u64,
    n: u64,
) -> Result<Vec<(SigningKey, u64)>> {
    let mut client = connect(&c.nodes[via].api_url()).await?;
    let mut out = Vec::new();
    for (key, nonce) in clinicians {
        let mut nonce = *nonce;
        for i in from..from + n {
            nonce += 1;
            let event = serde_json::json!({"event": "retrieval", "record": format!("emr-{i:04}"), "purpose": "treatment"});
            let op = Op::Put(Put {
                key: format!("audit/retrieval/{i:04}"),
                value: event.to_string().into_bytes(),
            });
            let r = submit(
                &mut client,
                medledger_api::tx::build(key, &c.genesis.chain_id, nonce, op),
                100,
            )
            .await?;
            if r.code != 0 {
                bail!("retrieval record rejected: {}", r.reason);
            }
        }
        out.push((key.clone(), nonce));
    }
    Ok(out)
}

async fn show(c: &LocalConsortium) -> Result<()> {
    for (i, n) in c.nodes.iter().enumerate() {
        if !n.is_running() {
            println!("  {:<11} (stopped)", n.name);
            continue;
        }
        let s = c.status(i).await?;
        println!(
            "  {:<11} {:<9} height {:>3}  head {}",
            n.name,
            s.role,
            s.height,
            short(&s.head_hash)
        );
    }
    Ok(())
}

pub async fn run(bin: &Path) -> Result<()> {
    println!("== medledger demo: a 3-hospital consortium on loopback ==");
    let mut c = LocalConsortium::create(bin, 3, &Options::default())?;
    println!(
        "genesis {} for {}",
        hex::encode(c.genesis.hash()),
        c.nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    c.start_all()?;
    let leader = c.wait_leader(Duration::from_secs(60)).await?;
    println!("leader elected: {}", c.nodes[leader].name);

    // Each hospital's administrator registers one clinician (a pseudonymous key, no names).
    let mut clinicians = Vec::new();
    for (i, admin) in c.admin_keys.clone().iter().enumerate() {
        let key = SigningKey::generate(Suite::Ed25519);
        let op = Op::RegisterParticipant(RegisterParticipant {
            public_key: key.public(),
            role: "clinician".into(),
            department: "cardiology".into(),
        });
        let mut client = connect(&c.nodes[i].api_url()).await?;
        let r = submit(
            &mut client,
            medledger_api::tx::build(admin, &c.genesis.chain_id, 1, op),
            100,
        )
        .await?;
        println!(
            "{} registered clinician {} at height {}",
            c.nodes[i].name,
            short(&key.public()),
            r.height
        );
        clinicians.push((key, 0u64));
    }

    let clinicians = record_retrievals(&c, leader, &clinicians, 0, 10).await?;
    println!("recorded 30 EMR retrieval events");
    show(&c).await?;

    println!("-- kill -9 {} (the leader) --", c.nodes[leader].name);
    c.kill(leader)?;
    let survivor = (leader + 1) % 3;
    let new_leader = c.wait_leader(Duration::from_secs(60)).await?;
    println!("new leader: {}", c.nodes[new_leader].name);
    let clinicians = record_retrievals(&c, survivor, &clinicians, 10, 10).await?;
    println!("recorded 30 more while {} was down", c.nodes[leader].name);
    show(&c).await?;

    // A replayed transaction is refused with a reason, and nothing breaks.
    let (key, nonce) = &clinicians[0];
    let op = Op::Put(Put {
        key: "audit/retrieval/replay".into(),
        value: b"{}".to_vec(),
    });
    let mut client = connect(&c.nodes[survivor].api_url()).await?;
    let r = submit(
        &mut client,
        medledger_api::tx::build(key, &c.genesis.chain_id, *nonce, op),
        100,
    )
    .await?;
    println!(
        "replayed nonce {nonce}: {} — {}",
        code_name(r.code),
        r.reason
    );

    println!("-- restart {} --", c.nodes[leader].name);
    c.start(leader)?;
    let target = c.status(new_leader).await?.height;
    c.wait_height(target, Duration::from_secs(60)).await?;
    show(&c).await?;

    let mut agree = true;
    for h in 1..=target {
        let mut hashes = Vec::new();
        for i in 0..3 {
            let b = c
                .client(i)
                .await?
                .get_block(GetBlockRequest { height: h })
                .await?
                .into_inner();
            hashes.push(b.hash);
        }
        agree &= hashes.iter().all(|x| *x == hashes[0]);
    }
    if !agree {
        bail!(
            "block hashes differ between nodes; logs are under {}",
            c.dir.display()
        );
    }
    println!("all 3 nodes hold identical block hashes at every height 1..={target}");

    println!("-- sharing a medical record --");
    super::demo_emr::story(&c).await?;
    c.stop_all();
    Ok(())
}
