//! Three hospitals, three control planes: an operator in each, the hospital chart in each.
//! The member cards read from each cluster assemble the shared Consortium spec; every cluster
//! derives the same genesis hash; then the ConfigMaps and Secrets the operators wrote boot
//! real `medledger node` processes (addresses mapped to loopback) that commit transactions.

use kube::api::Api;
use medledger_e2e::hospital::{self, CONSORTIUM, Hospital, consortium_values};
use medledger_e2e::{Cluster, binaries, ledger, wait_for};
use medledger_operator::crd::Consortium;
use std::time::{Duration, Instant};

fn step(t: Instant, what: &str) {
    eprintln!("e2e [{:>6.1}s] {what}", t.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_consortium_across_three_clusters_boots_real_nodes() {
    let t = Instant::now();
    let bins = binaries(false).expect("binaries under test");
    let members = ["hospital-a", "hospital-b", "hospital-c"];
    let clusters = tokio::task::spawn_blocking(move || {
        Cluster::up_many(&["cross-a", "cross-b", "cross-c"], 1, 2)
    })
    .await
    .unwrap()
    .expect("three control planes");
    step(t, "three control planes up");

    let mut operators = Vec::new();
    let mut clients = Vec::new();
    let mut hospitals = Vec::new();
    for (cluster, member) in clusters.iter().zip(members) {
        operators.push(
            hospital::install_operator(cluster, &bins.operator)
                .await
                .unwrap(),
        );
        clients.push(cluster.client().await.unwrap());
        // Members in other clusters are reached at a public address.
        let mut h = Hospital::new(member);
        h.extra = serde_json::json!({"ledgerNode": {"p2p": {
            "serviceType": "LoadBalancer",
            "externalAddress": format!("ledger.{member}.example.org:7051"),
        }}});
        h.helm_install(cluster, None).await.unwrap();
        hospitals.push(h);
    }
    step(t, "operator and hospital chart installed in each cluster");

    let mut cards = Vec::new();
    for (h, client) in hospitals.iter().zip(&clients) {
        let card = h.member_card(client).await.unwrap();
        assert_eq!(
            card.endpoint,
            format!("ledger.{}.example.org:7051", h.member)
        );
        cards.push(card);
    }
    let shared = consortium_values("emr-cross", &cards);
    for (h, cluster) in hospitals.iter().zip(&clusters) {
        h.helm_install(cluster, Some(&shared)).await.unwrap();
    }
    let mut hashes = Vec::new();
    for (h, client) in hospitals.iter().zip(&clients) {
        hashes.push(
            h.wait_ready(client, Duration::from_secs(120))
                .await
                .unwrap(),
        );
        let c = Api::<Consortium>::namespaced(client.clone(), &h.namespace)
            .get(CONSORTIUM)
            .await
            .unwrap();
        // Same fields, same order: the spec is exactly the cards.
        let listed = serde_json::to_value(&c.spec.members).unwrap();
        let from_cards = serde_json::to_value(&cards).unwrap();
        assert_eq!(
            listed, from_cards,
            "{}: the Consortium is the assembled cards",
            h.member
        );
    }
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
    step(
        t,
        &format!("every cluster derived genesis {}", &hashes[0][..16]),
    );

    // The rendered configuration boots real nodes.
    let mut rendered = Vec::new();
    for (h, client) in hospitals.iter().zip(&clients) {
        let r = ledger::rendered(client, &h.namespace, &h.member)
            .await
            .unwrap();
        assert_eq!(r.config.genesis_hash.as_deref(), Some(hashes[0].as_str()));
        rendered.push(r);
    }
    let dir = medledger_e2e::target_dir().join("e2e/cross-nodes");
    let _ = std::fs::remove_dir_all(&dir);
    let nodes = ledger::start(&bins.medledger, &dir, &rendered).unwrap();
    ledger::wait_for_leader(&bins.medledger, &nodes)
        .await
        .unwrap_or_else(|e| panic!("{e:#} (node logs in {})", dir.display()));
    step(
        t,
        "real nodes started from the rendered ConfigMaps and Secrets elected a leader",
    );
    for (i, n) in nodes.iter().enumerate() {
        let out = ledger::submit(&bins.medledger, n, &format!("retrieval-{i}=record-{i}"))
            .unwrap_or_else(|e| panic!("{e:#} (node logs in {})", dir.display()));
        assert!(out.contains("committed"), "{out}");
    }
    let bin = bins.medledger.clone();
    let genesis = hashes[0].clone();
    let heights = wait_for(
        "every node at the same height",
        Duration::from_secs(30),
        || {
            let (bin, nodes, genesis) = (bin.clone(), &nodes, &genesis);
            async move {
                let mut seen = Vec::new();
                for n in nodes {
                    let s = ledger::status(&bin, &n.api).map_err(|e| e.to_string())?;
                    assert_eq!(s["genesis_hash"].as_str(), Some(genesis.as_str()));
                    seen.push((
                        s["height"].as_u64().unwrap_or(0),
                        s["head_hash"].as_str().unwrap_or("").to_string(),
                    ));
                }
                if seen[0].0 >= 3 && seen.iter().all(|s| *s == seen[0]) {
                    Ok(seen[0].0)
                } else {
                    Err(format!("{seen:?}"))
                }
            }
        },
    )
    .await
    .unwrap();
    step(
        t,
        &format!("3 transactions committed; all nodes at height {heights} with the same head"),
    );
    drop(nodes);
    drop(operators);
}
