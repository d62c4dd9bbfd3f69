//! The kubo and ipfs-cluster blob backends against real daemons on a private IPFS network
//! (see tests/support/ipfs.rs): sealed records round-trip, a blob that does not match the
//! ledger's hash is refused, the cluster reports the pin, and failures are typed.

#[path = "support/ipfs.rs"]
mod ipfs;

use medledger::blob::cluster::{ClusterStore, Replication};
use medledger::blob::kubo::KuboStore;
use medledger::blob::{BlobConfig, BlobError, BlobStore};
use medledger::envelope::{self, DataKey};
use medledger_api::crypto::Suite;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);

fn record(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 % 253) as u8).collect()
}

/// Seal, store, fetch (hash-checked), open: the path a record takes.
async fn round_trip(store: &impl BlobStore, size: usize) -> String {
    let suite = store.suite();
    let key = DataKey::generate();
    let plain = record(size);
    let sealed = envelope::seal(suite, &key, &plain, b"rec-1").unwrap();
    let stored = store.put(sealed.clone()).await.unwrap();
    assert_eq!(stored.hash, envelope::content_hash(suite, &sealed));
    assert_eq!(stored.size, sealed.len() as u64);
    let fetched = store.get(&stored.cid, &stored.hash).await.unwrap();
    assert_eq!(
        envelope::open(suite, &key, &fetched, b"rec-1").unwrap(),
        plain
    );
    stored.cid
}

async fn kubo_backend(net: &ipfs::IpfsNet, suite: Suite) {
    let config = BlobConfig::Kubo {
        url: net.kubo_url.clone(),
        timeout_secs: TIMEOUT.as_secs(),
    };
    let store = config.open(suite).unwrap();
    store.health().await.unwrap();
    round_trip(&store, 4096).await;
    round_trip(&store, 1 << 20).await;

    // The ledger's hash is the judge: bytes that do not match it are refused, whether the
    // copy was altered or the CID points at other content.
    let a = store.put(b"sealed record A".to_vec()).await.unwrap();
    let b = store.put(b"sealed record B".to_vec()).await.unwrap();
    let err = store.get(&b.cid, &a.hash).await.unwrap_err();
    assert!(matches!(err, BlobError::Tampered { .. }), "{err}");
    let err = store.get(&a.cid, &[0; 32]).await.unwrap_err();
    assert!(matches!(err, BlobError::Tampered { .. }), "{err}");

    let err = store.get("not-a-cid", &a.hash).await.unwrap_err();
    assert!(matches!(err, BlobError::Api { status: 500, .. }), "{err}");
}

async fn cluster_backend(net: &ipfs::IpfsNet) {
    let kubo = KuboStore::new(&net.kubo_url, Suite::Ed25519, TIMEOUT).unwrap();
    let store = ClusterStore::new(
        &net.cluster_url,
        kubo.clone(),
        Replication::new(1, 1).unwrap(),
        TIMEOUT,
    )
    .unwrap();
    store.health().await.unwrap();
    let small = round_trip(&store, 4096).await;
    round_trip(&store, 1 << 20).await;

    // One address whichever backend stored it (CIDv1, raw leaves, same chunking).
    let same = kubo.put(b"shared bytes".to_vec()).await.unwrap();
    assert_eq!(store.put(b"shared bytes".to_vec()).await.unwrap(), same);

    // The cluster reports the pin on its one peer.
    let start = Instant::now();
    loop {
        let status = store.pin_status(&small).await.unwrap();
        assert_eq!(status.cid, small);
        if status.pinned_count() == 1 {
            break;
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "not pinned: {status:?}\n{}",
            net.cluster_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A replication factor the cluster cannot meet is refused with the cluster's reason.
    let greedy = ClusterStore::new(
        &net.cluster_url,
        kubo,
        Replication::new(2, 2).unwrap(),
        TIMEOUT,
    )
    .unwrap();
    let err = greedy.put(b"needs two peers".to_vec()).await.unwrap_err();
    assert!(matches!(err, BlobError::Api { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_and_cluster_store_check_and_pin_sealed_records() {
    let net = tokio::task::spawn_blocking(ipfs::IpfsNet::start)
        .await
        .unwrap();
    for suite in [Suite::Ed25519, Suite::Sm] {
        kubo_backend(&net, suite).await;
    }
    cluster_backend(&net).await;

    // A blob no peer holds: kubo keeps looking, so the bounded request times out.
    let impatient = KuboStore::new(&net.kubo_url, Suite::Ed25519, Duration::from_secs(2)).unwrap();
    let absent = "bafkreiaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let err = impatient.get(absent, &[0; 32]).await.unwrap_err();
    assert!(
        matches!(err, BlobError::Timeout { .. } | BlobError::Api { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_daemon_is_reported_as_such() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = KuboStore::new(
        &format!("http://127.0.0.1:{port}"),
        Suite::Ed25519,
        Duration::from_secs(5),
    )
    .unwrap();
    let err = store.health().await.unwrap_err();
    assert!(matches!(err, BlobError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("check that it runs"), "{err}");
}
