//! The EMR part of `medledger demo`: a patient's record at hospital A, a clinician at
//! hospital B asks for it, the patient and A approve, B reads and decrypts it, the patient
//! revokes and B's next read is refused, and the audit trail shows all of it.

use super::emr_client::Emr;
use super::emr_cmd::format_event;
use crate::blob::BlobConfig;
use crate::local::LocalConsortium;
use anyhow::{Result, bail};
use medledger_api::keys::SigningKey;

/// Runs the story against a running consortium; hospital A is node 0, B is node 1.
pub async fn story(c: &LocalConsortium) -> Result<()> {
    let suite = c.genesis.suite;
    let (a_name, b_name) = (c.nodes[0].name.clone(), c.nodes[1].name.clone());
    let mut a = Emr::connect(&c.nodes[0].api_url()).await?;
    let mut b = Emr::connect(&c.nodes[1].api_url()).await?;
    // Each party's key is generated where it is used; only public keys go on chain.
    let patient = SigningKey::generate(suite);
    let doctor_b = SigningKey::generate(suite);
    let pseudonym = a
        .register_participant(&c.admin_keys[0], patient.public(), "patient", "")
        .await?;
    b.register_participant(
        &c.admin_keys[1],
        doctor_b.public(),
        "clinician",
        "cardiology",
    )
    .await?;
    println!("{a_name} registered patient {pseudonym}; {b_name} registered a cardiologist");

    // Each hospital's blobs stay in its own store; only ciphertext is ever written there.
    let store_a = BlobConfig::Local {
        dir: c.dir.join("blobs-a"),
    }
    .open(suite)?;
    let record = b"Discharge summary: NSTEMI, two stents (LAD), start ticagrelor 90 mg bid.";
    let put = a
        .put_record(
            &store_a,
            &c.admin_keys[0],
            &patient,
            "emr-0001",
            record,
            2,
            "cardiology",
        )
        .await?;
    println!(
        "{a_name} stored record emr-0001 encrypted as {} and registered it at height {} (signed by the patient)",
        put.cid, put.height
    );

    let expires = crate::service::submit::now_ms() + 24 * 3_600_000;
    b.request_access(
        &doctor_b,
        "req-0001",
        "emr-0001",
        "",
        "",
        "treatment",
        expires,
    )
    .await?;
    let policy = b.access("req-0001").await?.policy;
    println!("{b_name}'s clinician requested emr-0001 for treatment; policy {policy}");
    a.approve(&patient, "req-0001").await?;
    a.approve(&c.admin_keys[0], "req-0001").await?;
    println!(
        "the patient and {a_name} approved: access {}",
        a.access("req-0001").await?.state
    );

    // B asks A's node for the key; A commits the retrieval record, then releases the key
    // wrapped to the clinician's key. B decrypts locally.
    let mut b_at_a = Emr::connect(&c.nodes[0].api_url()).await?;
    let (plain, _) = b_at_a
        .get_record(&store_a, &doctor_b, "req-0001", "emr-0001")
        .await?;
    if plain != record {
        bail!("decrypted record differs from what was stored");
    }
    println!(
        "{b_name}'s clinician read and decrypted emr-0001: {:?}",
        String::from_utf8_lossy(&plain[..40])
    );

    a.revoke(&patient, "req-0001", "treatment finished").await?;
    match b_at_a
        .get_record(&store_a, &doctor_b, "req-0001", "emr-0001")
        .await
    {
        Ok(_) => bail!("a revoked grant still released the key"),
        Err(e) => println!("after the patient revoked, the next read is refused: {e}"),
    }

    let events = a.audit(&pseudonym).await?;
    println!("medledger audit --patient {pseudonym}:");
    for e in &events {
        println!("{}", format_event(e));
    }
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    for k in ["access-granted", "key-released", "access-revoked"] {
        if !kinds.contains(&k) {
            bail!("the audit trail lacks {k}: {kinds:?}");
        }
    }
    Ok(())
}
