//! `medledger bench emr`: end-to-end latency of the record flows on a local 3-hospital
//! consortium — put (encrypt, store, register on chain) and get (grant check and audited key
//! release by the custodian node, unwrap, fetch, hash check, decrypt) — for 4 KiB and 1 MiB
//! records, plus cipher throughput beside `openssl speed` in the same run.

use super::bench::percentile;
use super::emr_client::Emr;
use crate::blob::BlobConfig;
use crate::local::{LocalConsortium, Options};
use anyhow::Result;
use medledger_api::crypto::Suite;
use medledger_api::keys::SigningKey;
use rand::RngCore;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

pub struct EmrBenchArgs {
    pub suite: Suite,
    /// Operations per record size.
    pub ops: usize,
}

fn summary(mut lat: Vec<Duration>) -> Value {
    lat.sort();
    json!({
        "n": lat.len(),
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
    })
}

pub async fn run(bin: &Path, args: &EmrBenchArgs) -> Result<Value> {
    let opts = Options {
        suite: args.suite,
        ..Default::default()
    };
    let mut c = LocalConsortium::create(bin, 3, &opts)?;
    c.start_all()?;
    c.wait_leader(Duration::from_secs(60)).await?;
    let out = measure(&c, args).await;
    c.stop_all();
    let mut out = out?;
    // The cipher beside openssl, after the nodes stopped so they do not compete for CPU.
    let cipher = tokio::task::spawn_blocking(|| super::bench_cipher::aes_gcm_throughput(2)).await?;
    out["cipher"] = serde_json::to_value(cipher)?;
    Ok(out)
}

async fn measure(c: &LocalConsortium, args: &EmrBenchArgs) -> Result<Value> {
    let suite = args.suite;
    let mut a = Emr::connect(&c.nodes[0].api_url()).await?;
    let mut b = Emr::connect(&c.nodes[1].api_url()).await?;
    let patient = SigningKey::generate(suite);
    let doctor = SigningKey::generate(suite);
    a.register_participant(&c.admin_keys[0], patient.public(), "patient", "")
        .await?;
    b.register_participant(&c.admin_keys[1], doctor.public(), "clinician", "radiology")
        .await?;
    let store = BlobConfig::Local {
        dir: c.dir.join("blobs-a"),
    }
    .open(suite)?;
    let expires = crate::service::submit::now_ms() + 24 * 3_600_000;
    let mut sizes = serde_json::Map::new();
    for (label, size) in [("4KiB", 4096usize), ("1MiB", 1 << 20)] {
        let mut data = vec![0u8; size];
        rand::thread_rng().fill_bytes(&mut data);
        let mut puts = Vec::new();
        let mut ids = Vec::new();
        for i in 0..args.ops {
            let id = format!("bench-{label}-{i}");
            let t = Instant::now();
            a.put_record(&store, &c.admin_keys[0], &patient, &id, &data, 1, "imaging")
                .await?;
            puts.push(t.elapsed());
            ids.push(id);
        }
        // One patient-wide grant covers every record of the run.
        let req = format!("bench-grant-{label}");
        b.request_access(
            &doctor,
            &req,
            "",
            &a_pseudonym(&patient, suite),
            &a.member.clone(),
            "treatment",
            expires,
        )
        .await?;
        a.approve(&patient, &req).await?;
        a.approve(&c.admin_keys[0], &req).await?;
        let mut gets = Vec::new();
        for id in &ids {
            let t = Instant::now();
            let (plain, _) = a.get_record(&store, &doctor, &req, id).await?;
            gets.push(t.elapsed());
            anyhow::ensure!(plain == data, "record {id} decrypted to other bytes");
        }
        sizes.insert(
            label.into(),
            json!({"put": summary(puts), "get": summary(gets)}),
        );
    }
    Ok(json!({
        "suite": suite.as_str(),
        "nodes": 3,
        "ops_per_size": args.ops,
        "records": Value::Object(sizes),
    }))
}

fn a_pseudonym(patient: &SigningKey, suite: Suite) -> String {
    medledger_api::emr::pseudonym(suite, &patient.public())
}
