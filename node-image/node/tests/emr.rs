//! The EMR flows on real node processes: record put, access approval, key release by the
//! custodian node (audited on chain first), revocation, and every refusal on the way.

mod common;

use common::*;
use medledger::blob::{BlobBackend, BlobConfig};
use medledger::cli::emr_client::Emr;
use medledger::local::{LocalConsortium, Options};
use medledger_api::crypto::Suite;
use medledger_api::emr::key_request_claim;
use medledger_api::keys::SigningKey;
use medledger_api::pb::ReleaseKeyRequest;

fn store(c: &LocalConsortium, name: &str) -> BlobBackend {
    BlobConfig::Local {
        dir: c.dir.join(name),
    }
    .open(c.genesis.suite)
    .unwrap()
}

/// Asks for rec-1's key under req-1: the claim signed by `signer`, for `requester`.
async fn release(
    emr: &mut Emr,
    signer: &SigningKey,
    requester: &SigningKey,
    at_ms: i64,
) -> Result<medledger_api::pb::ReleaseKeyResponse, tonic::Status> {
    let claim = key_request_claim(&emr.chain_id, "req-1", "rec-1", at_ms);
    emr.emr
        .release_key(ReleaseKeyRequest {
            signature: signer.sign(&claim),
            claim,
            requester: requester.public(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn story_on(suite: Suite) {
    let c = consortium(
        3,
        Options {
            suite,
            ..Default::default()
        },
    )
    .await;
    medledger::cli::demo_emr::story(&c)
        .await
        .unwrap_or_else(|e| panic!("{suite}: {e:#}"));
    assert_converged(&c, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_record_sharing_story_runs_on_real_nodes_ed25519() {
    story_on(Suite::Ed25519).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_record_sharing_story_runs_on_real_nodes_sm() {
    story_on(Suite::Sm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_are_released_only_under_a_committed_grant() {
    let c = consortium(3, default_opts()).await;
    let suite = c.genesis.suite;
    let mut a = Emr::connect(&c.nodes[0].api_url()).await.unwrap();
    let mut b = Emr::connect(&c.nodes[1].api_url()).await.unwrap();
    let patient = SigningKey::generate(suite);
    let doctor = SigningKey::generate(suite);
    let other_doctor = SigningKey::generate(suite);
    let p = a
        .register_participant(&c.admin_keys[0], patient.public(), "patient", "")
        .await
        .unwrap();
    for k in [&doctor, &other_doctor] {
        b.register_participant(&c.admin_keys[1], k.public(), "clinician", "oncology")
            .await
            .unwrap();
    }
    let blobs = store(&c, "blobs-a");
    let put = a
        .put_record(
            &blobs,
            &c.admin_keys[0],
            &patient,
            "rec-1",
            &[42u8; 4096],
            2,
            "oncology",
        )
        .await
        .unwrap();
    let exp = medledger::service::submit::now_ms() + 3_600_000;
    b.request_access(&doctor, "req-1", "rec-1", "", "", "treatment", exp)
        .await
        .unwrap();

    let refused = |r: anyhow::Result<(Vec<u8>, medledger_api::pb::RecordInfo)>, what: &str| {
        let e = r.err().unwrap_or_else(|| panic!("{what}: released"));
        e.to_string()
    };
    // Not yet approved.
    let e = refused(
        a.get_record(&blobs, &doctor, "req-1", "rec-1").await,
        "unapproved",
    );
    assert!(e.contains("pending"), "{e}");
    a.approve(&patient, "req-1").await.unwrap();
    a.approve(&c.admin_keys[0], "req-1").await.unwrap();
    // Another clinician cannot use this grant.
    let e = refused(
        a.get_record(&blobs, &other_doctor, "req-1", "rec-1").await,
        "wrong requester",
    );
    assert!(e.contains("another requester"), "{e}");
    // Only the custodian's node holds the key.
    let e = refused(
        b.get_record(&blobs, &doctor, "req-1", "rec-1").await,
        "wrong node",
    );
    assert!(
        e.contains("held by") || e.contains("custodian's node"),
        "{e}"
    );
    // A stale or forged key request is refused before anything is written.
    let now = medledger::service::submit::now_ms();
    let e = release(&mut a, &doctor, &doctor, 1_000).await.unwrap_err();
    assert!(e.message().contains("5 minutes"), "{}", e.message());
    let e = release(&mut a, &other_doctor, &doctor, now)
        .await
        .unwrap_err();
    assert!(e.message().contains("signature"), "{}", e.message());

    // Granted: the right clinician reads and decrypts.
    let (plain, info) = a
        .get_record(&blobs, &doctor, "req-1", "rec-1")
        .await
        .unwrap();
    assert_eq!(plain, vec![42u8; 4096]);
    assert_eq!(
        (info.cid.as_str(), info.custodian.as_str()),
        (put.cid.as_str(), "hospital-a")
    );

    // A wrapped key is bound to its requester: another key cannot open it.
    let r = release(
        &mut a,
        &doctor,
        &doctor,
        medledger::service::submit::now_ms(),
    )
    .await
    .unwrap();
    let ctx = medledger::envelope::wrap_context("rec-1", "req-1");
    assert!(medledger::envelope::unwrap_with(&other_doctor, &r.wrapped_key, &ctx).is_err());
    assert!(medledger::envelope::unwrap_with(&doctor, &r.wrapped_key, &ctx).is_ok());

    // A tampered blob is refused on read.
    let path = std::fs::read_dir(c.dir.join("blobs-a"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.is_file())
        .expect("the blob file");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let e = refused(
        a.get_record(&blobs, &doctor, "req-1", "rec-1").await,
        "tampered",
    );
    assert!(
        e.to_lowercase().contains("tamper") || e.contains("hash"),
        "{e}"
    );

    // Every release is on the audit trail, written by the custodian's node.
    let audit = a.audit(&p).await.unwrap();
    let releases = audit.iter().filter(|e| e.kind == "key-released").count();
    assert_eq!(releases, 3, "{audit:?}");
    let metrics = c.admin_http(0, "GET", "/metrics").await.unwrap();
    assert_eq!(metric(&metrics, "medledger_keys_released_total"), 3.0);
}
