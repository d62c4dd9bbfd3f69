//! Crashes, partitions and snapshot catch-up with real node processes.

mod common;

use common::*;
use medledger::local::Options;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Four validators under load; the leader and followers are killed with SIGKILL and
/// restarted, again and again. Nothing acknowledged may be lost and all chains must agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_nine_leader_and_followers_under_load_loses_nothing() {
    let opts = Options {
        snapshot_every: 300,
        keep_after_snapshot: 50,
        ..default_opts()
    };
    let mut c = consortium(4, opts).await;
    let keys = register_clients(&c, 6).await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&c, keys, stop.clone());
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let leader = c.wait_leader(WAIT).await.unwrap();
        let victim = if round % 2 == 0 {
            leader
        } else {
            (leader + 1 + round % 3) % 4
        };
        c.kill(victim).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        c.start(victim).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = collect(load).await;
    assert!(
        acked.len() > 20,
        "the load should have committed transactions, got {}",
        acked.len()
    );
    let height = assert_converged(&c, &acked).await;
    assert!(height > 0);
}

/// A follower cut off from the majority commits nothing, then catches up after healing;
/// a leader cut off cannot commit either, and the majority moves on without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_nodes_commit_nothing_and_catch_up() {
    let opts = Options {
        fault_injection: true,
        ..default_opts()
    };
    let c = consortium(4, opts).await;
    let keys = register_clients(&c, 1).await;
    let key = &keys[0];
    let leader = c.wait_leader(WAIT).await.unwrap();
    let follower = (leader + 1) % 4;
    // Everything committed so far is applied everywhere first: a follower may still apply
    // entries whose commit it learned before the cut, which is not committing anything new.
    let settled = c.status(leader).await.unwrap().height;
    c.wait_height(settled, WAIT).await.unwrap();
    assert!(
        c.admin_http(follower, "POST", "/fault/isolate")
            .await
            .unwrap()
            .contains("isolated")
    );
    let cut_height = c.status(follower).await.unwrap().height;

    let mut acked = Vec::new();
    let mut nonce = 0;
    for _ in 0..20 {
        nonce += 1;
        let r = try_submit(&c.nodes[leader].api_url(), put_tx(&c, key, nonce, "p"))
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{}", r.reason);
        acked.push(r.tx_id);
    }
    nonce += 1;
    let via_isolated = try_submit(&c.nodes[follower].api_url(), put_tx(&c, key, nonce, "p")).await;
    assert!(
        via_isolated.is_err() || via_isolated.as_ref().unwrap().height == 0,
        "an isolated node must not commit: {via_isolated:?}"
    );
    assert_eq!(
        c.status(follower).await.unwrap().height,
        cut_height,
        "the isolated follower applied blocks"
    );
    c.admin_http(follower, "POST", "/fault/heal").await.unwrap();
    assert_converged(&c, &acked).await;

    // Now cut off the leader itself.
    let old = c.wait_leader(WAIT).await.unwrap();
    c.admin_http(old, "POST", "/fault/isolate").await.unwrap();
    let old_height = c.status(old).await.unwrap().height;
    nonce += 1;
    let stranded = try_submit(&c.nodes[old].api_url(), put_tx(&c, key, nonce, "stranded")).await;
    assert!(
        stranded.is_err(),
        "a leader without quorum must not acknowledge: {stranded:?}"
    );
    assert_eq!(
        c.status(old).await.unwrap().height,
        old_height,
        "the isolated leader applied blocks"
    );
    // The majority elects another leader and keeps committing.
    let new = loop {
        let mut found = None;
        for i in (0..4).filter(|i| *i != old) {
            if let Ok(s) = c.status(i).await
                && s.role == "leader"
            {
                found = Some(i);
            }
        }
        if let Some(i) = found {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for _ in 0..10 {
        nonce += 1;
        let r = try_submit(&c.nodes[new].api_url(), put_tx(&c, key, nonce, "p"))
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{}", r.reason);
        acked.push(r.tx_id);
    }
    c.admin_http(old, "POST", "/fault/heal").await.unwrap();
    assert_converged(&c, &acked).await;
}

/// A node that was down while the others compacted their logs catches up from a snapshot
/// and back-fills the blocks below it from its peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_node_catches_up_from_a_snapshot() {
    let opts = Options {
        snapshot_every: 20,
        keep_after_snapshot: 5,
        ..default_opts()
    };
    let mut c = consortium(3, opts).await;
    let keys = register_clients(&c, 1).await;
    let leader = c.wait_leader(WAIT).await.unwrap();
    let down = (leader + 1) % 3;
    c.kill(down).unwrap();
    let mut acked = Vec::new();
    for nonce in 1..=80 {
        let r = try_submit(&c.nodes[leader].api_url(), put_tx(&c, &keys[0], nonce, "s"))
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{}", r.reason);
        acked.push(r.tx_id);
    }
    // Openraft compacts the log once no replication still reads it; wait for that, so the
    // restarted node can only catch up through a snapshot.
    let deadline = std::time::Instant::now() + WAIT;
    while c.status(leader).await.unwrap().purged_index < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader never compacted its log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.start(down).unwrap();
    assert_converged(&c, &acked).await;
    let metrics = c.admin_http(down, "GET", "/metrics").await.unwrap();
    assert!(
        metric(&metrics, "medledger_blocks_backfilled_total") > 0.0,
        "the restarted node should have installed a snapshot and back-filled blocks"
    );
}
