//! Small subcommands: keys, genesis, status, submit, tx and block lookups.

use super::client::{connect, next_nonce, submit};
use crate::metrics::code_name;
use anyhow::{Context, Result, bail};
use medledger_api::crypto::Suite;
use medledger_api::genesis::{Genesis, GenesisSpec};
use medledger_api::keys::{SigningKey, load, save_new};
use medledger_api::pb::{
    GetBlockRequest, GetTxRequest, Put, RegisterParticipant, StatusRequest, tx_body::Op,
};
use std::path::Path;

pub fn keygen(out: &Path, suite: Suite) -> Result<()> {
    let key = SigningKey::generate(suite);
    save_new(out, &key)?;
    println!("wrote a new {suite} key to {} (mode 0600)", out.display());
    println!("public key: {}", hex::encode(key.public()));
    Ok(())
}

pub fn genesis(spec_path: &Path, out: Option<&Path>) -> Result<()> {
    let text = std::fs::read_to_string(spec_path)
        .with_context(|| format!("cannot read {}", spec_path.display()))?;
    let spec =
        GenesisSpec::from_yaml(&text).with_context(|| format!("in {}", spec_path.display()))?;
    let g = Genesis::from_spec(&spec).with_context(|| format!("in {}", spec_path.display()))?;
    let bytes = g.to_bytes();
    match out {
        Some(p) => {
            std::fs::write(p, &bytes).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => println!("{}", String::from_utf8_lossy(&bytes)),
    }
    eprintln!("genesis hash: {}", hex::encode(g.hash()));
    eprintln!(
        "chain {} ({} suite), {} members",
        g.chain_id,
        g.suite,
        g.members.len()
    );
    Ok(())
}

pub async fn status(api: &str, json: bool) -> Result<()> {
    let s = connect(api)
        .await?
        .status(StatusRequest {})
        .await?
        .into_inner();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "chain_id": s.chain_id, "genesis_hash": hex::encode(&s.genesis_hash), "member": s.member,
                "node_id": s.node_id, "height": s.height, "head_hash": hex::encode(&s.head_hash),
                "role": s.role, "leader_id": s.leader_id, "term": s.term, "peers_connected": s.peers_connected,
                "validators": s.validators, "in_sync": s.in_sync, "suite": s.suite,
            })
        );
    } else {
        println!(
            "chain      {} ({} suite), genesis {}",
            s.chain_id,
            s.suite,
            hex::encode(&s.genesis_hash)
        );
        println!(
            "node       {} ({}), {} of term {}, leader {}",
            s.member, s.node_id, s.role, s.term, s.leader_id
        );
        println!("height     {} head {}", s.height, hex::encode(&s.head_hash));
        println!(
            "peers      {} of {} validators connected, in sync: {}",
            s.peers_connected,
            s.validators.saturating_sub(1),
            s.in_sync
        );
    }
    Ok(())
}

pub enum SubmitOp {
    Put { key: String, value: String },
    Register { public_key: String, role: String },
}

pub async fn submit_cmd(
    api: &str,
    key_file: &Path,
    op: SubmitOp,
    nonce: Option<u64>,
) -> Result<()> {
    let key = load(key_file)?;
    let mut client = connect(api).await?;
    let chain = client.status(StatusRequest {}).await?.into_inner().chain_id;
    let nonce = match nonce {
        Some(n) => n,
        None => next_nonce(&mut client, &key).await?,
    };
    let op = match op {
        SubmitOp::Put { key, value } => Op::Put(Put {
            key,
            value: value.into_bytes(),
        }),
        SubmitOp::Register { public_key, role } => Op::RegisterParticipant(RegisterParticipant {
            public_key: hex::decode(&public_key).context("--register takes a hex public key")?,
            role,
            department: String::new(),
        }),
    };
    let tx = medledger_api::tx::build(&key, &chain, nonce, op);
    let r = submit(&mut client, tx, 20).await?;
    let id = hex::encode(&r.tx_id);
    if r.code == 0 {
        println!(
            "committed tx {id} at height {} (index {})",
            r.height, r.index
        );
        Ok(())
    } else if r.height == 0 {
        bail!(
            "rejected before ordering: {} — {}",
            code_name(r.code),
            r.reason
        )
    } else {
        bail!(
            "rejected in block {}: {} — {} (tx {id})",
            r.height,
            code_name(r.code),
            r.reason
        )
    }
}

pub async fn tx_get(api: &str, id: &str) -> Result<()> {
    let id = hex::decode(id).context("the transaction id is hex")?;
    let r = connect(api)
        .await?
        .get_tx(GetTxRequest { tx_id: id })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let result = r.result.unwrap_or_default();
    let body =
        r.tx.as_ref()
            .and_then(|t| medledger_api::tx::decode(&prost::Message::encode_to_vec(t)).ok())
            .map(|(_, b)| b);
    println!(
        "height {} index {} block {}",
        r.height,
        r.index,
        hex::encode(&r.block_hash)
    );
    println!("result {} {}", code_name(result.code), result.reason);
    if let Some(b) = body {
        println!("signer {} nonce {}", hex::encode(&b.signer), b.nonce);
        println!("op     {:?}", b.op);
    }
    Ok(())
}

pub async fn block_get(api: &str, height: u64, json: bool) -> Result<()> {
    let r = connect(api)
        .await?
        .get_block(GetBlockRequest { height })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let b = r.block.unwrap_or_default();
    let h = b.header.unwrap_or_default();
    let ok = b.results.iter().filter(|r| r.code == 0).count();
    if json {
        println!(
            "{}",
            serde_json::json!({"height": h.height, "hash": hex::encode(&r.hash), "prev_hash": hex::encode(&h.prev_hash),
                "tx_root": hex::encode(&h.tx_root), "txs": b.txs.len(), "ok": ok, "proposer": h.proposer,
                "timestamp_ms": h.timestamp_ms, "raft_term": h.raft_term, "raft_index": h.raft_index})
        );
    } else {
        println!("block {} hash {}", h.height, hex::encode(&r.hash));
        println!("prev  {}", hex::encode(&h.prev_hash));
        println!(
            "txs   {} ({} ok, {} rejected), proposer {}, time {} ms",
            b.txs.len(),
            ok,
            b.txs.len() - ok,
            h.proposer,
            h.timestamp_ms
        );
        for (i, res) in b
            .results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.code != 0)
            .take(20)
        {
            println!("  tx {i}: {} {}", code_name(res.code), res.reason);
        }
    }
    Ok(())
}
