//! Three hospitals in one real control plane (kwok nodes): the charts' RBAC, Pod Security
//! "restricted", CEL admission, the StatefulSet controller and garbage collection are all the
//! real ones. See docs/operations/e2e.md for what kwok can and cannot prove.

mod invalid;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use medledger_e2e::hospital::{self, CONSORTIUM, Hospital, NODE, consortium_values};
use medledger_e2e::{Cluster, binaries, wait_for};
use medledger_operator::crd::{LedgerNode, MemberCard};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(120);

fn step(t: Instant, what: &str) {
    eprintln!("e2e [{:>6.1}s] {what}", t.elapsed().as_secs_f64());
}

/// The secret halves of every key Secret in `ns`, to check they appear nowhere else.
async fn secret_halves(client: &kube::Client, ns: &str) -> Vec<String> {
    let secrets = Api::<Secret>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    secrets
        .items
        .into_iter()
        .flat_map(|s| s.data.unwrap_or_default().into_values())
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b.0).ok())
        .filter_map(|v| {
            v["secretKey"]
                .as_str()
                .or(v["secret_key"].as_str())
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hospitals_in_one_cluster() {
    let t = Instant::now();
    let bins = binaries(false).expect("binaries under test");
    let cluster = tokio::task::spawn_blocking(|| Cluster::up("single", 3, 20))
        .await
        .unwrap()
        .expect("control plane");
    step(t, "control plane up");
    let client = cluster.client().await.unwrap();
    let mut operator = hospital::install_operator(&cluster, &bins.operator)
        .await
        .expect("operator chart and process");
    step(
        t,
        "operator chart installed; operator running with its ServiceAccount token",
    );

    // 1. Each hospital installs its chart: keys, member card, no Consortium yet.
    let hospitals: Vec<Hospital> = ["hospital-a", "hospital-b", "hospital-c"]
        .iter()
        .map(|m| Hospital::new(m))
        .collect();
    let mut cards: Vec<MemberCard> = Vec::new();
    for h in &hospitals {
        h.helm_install(&cluster, None).await.unwrap();
    }
    for h in &hospitals {
        let card = h.member_card(&client).await.unwrap();
        assert_eq!(card.name, h.member);
        assert_eq!(
            card.endpoint,
            format!("{NODE}-p2p.{}.svc:7051", h.namespace)
        );
        cards.push(card);
    }
    step(t, "member cards published");

    // 2. The cards are collected into the shared values; every hospital upgrades with them.
    let shared = consortium_values("emr-e2e", &cards);
    for h in &hospitals {
        h.helm_install(&cluster, Some(&shared)).await.unwrap();
    }
    let mut hashes = BTreeMap::new();
    for h in &hospitals {
        hashes.insert(
            h.member.clone(),
            h.wait_ready(&client, READY).await.unwrap(),
        );
    }
    step(t, "Consortium and LedgerNodes Ready in every namespace");
    let genesis = hashes.values().next().unwrap().clone();
    assert!(hashes.values().all(|h| *h == genesis), "{hashes:?}");
    for h in &hospitals {
        let node = Api::<LedgerNode>::namespaced(client.clone(), &h.namespace)
            .get(NODE)
            .await
            .unwrap();
        assert_eq!(
            node.status.unwrap().genesis_hash.as_deref(),
            Some(genesis.as_str())
        );
        let cm = Api::<ConfigMap>::namespaced(client.clone(), &h.namespace)
            .get(&format!("{CONSORTIUM}-genesis"))
            .await
            .unwrap();
        assert_eq!(
            cm.metadata
                .annotations
                .unwrap()
                .values()
                .next()
                .map(String::as_str),
            Some(genesis.as_str())
        );
        let config = Api::<ConfigMap>::namespaced(client.clone(), &h.namespace)
            .get(&format!("{NODE}-config"))
            .await
            .unwrap();
        assert!(config.data.unwrap()["node.yaml"].contains(&genesis));
        // The pod passed Pod Security "restricted" admission and runs on a kwok node.
        let pod = Api::<Pod>::namespaced(client.clone(), &h.namespace)
            .get(&format!("{NODE}-0"))
            .await
            .unwrap();
        let st = pod.status.unwrap();
        assert_eq!(st.phase.as_deref(), Some("Running"));
        assert!(
            pod.spec
                .unwrap()
                .node_name
                .unwrap()
                .starts_with("kwok-node-")
        );
    }
    step(
        t,
        "same genesis hash everywhere; pods Running on kwok nodes",
    );

    // 3. Steady state: the operator writes nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cluster.writes_by(&operator.user).unwrap().len();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let writes = cluster.writes_by(&operator.user).unwrap();
    assert_eq!(
        writes.len(),
        before,
        "writes at steady state: {:?}",
        &writes[before..]
    );
    step(t, "no API writes by the operator in 10 s of steady state");

    // 4. A deleted child comes back.
    let a = &hospitals[0];
    let services: Api<Service> = Api::namespaced(client.clone(), &a.namespace);
    let old = services.get(NODE).await.unwrap().metadata.uid;
    services
        .delete(NODE, &DeleteParams::default())
        .await
        .unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &a.namespace);
    sts.delete(NODE, &DeleteParams::foreground()).await.unwrap();
    wait_for(
        "the deleted Service and StatefulSet to come back",
        READY,
        || {
            let (services, sts, old) = (services.clone(), sts.clone(), old.clone());
            async move {
                let s = services.get(NODE).await.map_err(|e| e.to_string())?;
                if s.metadata.uid == old {
                    return Err("old Service".into());
                }
                let st = sts.get(NODE).await.map_err(|e| e.to_string())?;
                match st.status.and_then(|s| s.ready_replicas) {
                    Some(1) => Ok(()),
                    r => Err(format!("StatefulSet ready replicas {r:?}")),
                }
            }
        },
    )
    .await
    .unwrap();
    a.wait_ready(&client, READY).await.unwrap();
    step(t, "deleted Service and StatefulSet re-created");

    // 5. Kill the operator mid-reconcile, restart it: it converges and no key changes.
    let keys_before: Vec<Option<String>> = futures::future::join_all(hospitals.iter().map(|h| {
        let api = Api::<Secret>::namespaced(client.clone(), &h.namespace);
        async move { api.get(&format!("{NODE}-keys")).await.unwrap().metadata.uid }
    }))
    .await;
    let d = Hospital::new("hospital-d");
    d.helm_install(&cluster, None).await.unwrap();
    let secrets_d: Api<Secret> = Api::namespaced(client.clone(), &d.namespace);
    wait_for("hospital-d's key Secret", READY, || {
        let s = secrets_d.clone();
        async move {
            s.get_opt(&format!("{NODE}-keys"))
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "not yet".to_string())
        }
    })
    .await
    .unwrap();
    services
        .delete(NODE, &DeleteParams::default())
        .await
        .unwrap();
    operator.kill();
    step(
        t,
        "operator killed (SIGKILL) while generating hospital-d's keys and repairing hospital-a",
    );
    let d_secret = secrets_d.get(&format!("{NODE}-keys")).await.unwrap();
    operator.restart().await.unwrap();
    let card_d = d.member_card(&client).await.unwrap();
    a.wait_ready(&client, READY).await.unwrap();
    services
        .get(NODE)
        .await
        .expect("Service re-created after the restart");
    let d_after = secrets_d.get(&format!("{NODE}-keys")).await.unwrap();
    assert_eq!(
        d_after.metadata.uid, d_secret.metadata.uid,
        "the key Secret was not replaced"
    );
    assert_eq!(d_after.data, d_secret.data, "the keys did not change");
    let kf: serde_json::Value =
        serde_json::from_slice(&d_after.data.unwrap()["node.key"].0).unwrap();
    assert_eq!(
        kf["publicKey"].as_str().or(kf["public_key"].as_str()),
        Some(card_d.node_key.as_str())
    );
    for (h, before) in hospitals.iter().zip(&keys_before) {
        let api = Api::<Secret>::namespaced(client.clone(), &h.namespace);
        assert_eq!(
            &api.get(&format!("{NODE}-keys")).await.unwrap().metadata.uid,
            before
        );
        h.wait_ready(&client, READY).await.unwrap();
    }
    step(t, "operator restarted: converged, no key changed");

    // 6. Delete a LedgerNode: its children are garbage-collected; the key Secret and the PVC
    //    stay (docs/operator.md), and re-creating the node picks both up again.
    let c = &hospitals[2];
    let nodes: Api<LedgerNode> = Api::namespaced(client.clone(), &c.namespace);
    let node = nodes.get(NODE).await.unwrap();
    let card_c = node.status.clone().unwrap().member_card.unwrap();
    nodes
        .delete(NODE, &DeleteParams::foreground())
        .await
        .unwrap();
    let ns = c.namespace.clone();
    let cl = client.clone();
    wait_for("garbage collection of hospital-c's children", READY, || {
        let (cl, ns) = (cl.clone(), ns.clone());
        async move {
            let left = [
                Api::<StatefulSet>::namespaced(cl.clone(), &ns)
                    .get_opt(NODE)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some(),
                Api::<Service>::namespaced(cl.clone(), &ns)
                    .get_opt(NODE)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some(),
                Api::<Service>::namespaced(cl.clone(), &ns)
                    .get_opt(&format!("{NODE}-p2p"))
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some(),
                Api::<ConfigMap>::namespaced(cl.clone(), &ns)
                    .get_opt(&format!("{NODE}-config"))
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some(),
                Api::<NetworkPolicy>::namespaced(cl.clone(), &ns)
                    .get_opt(NODE)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some(),
                Api::<LedgerNode>::namespaced(cl.clone(), &ns)
                    .get_opt(NODE)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some(),
            ];
            if left.iter().any(|l| *l) {
                Err(format!("still there: {left:?}"))
            } else {
                Ok(())
            }
        }
    })
    .await
    .unwrap();
    assert!(
        Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt(&format!("{NODE}-keys"))
            .await
            .unwrap()
            .is_some(),
        "key Secret kept"
    );
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pvc = pvcs.get(&format!("data-{NODE}-0")).await.expect("PVC kept");
    let mut again = node.clone();
    again.metadata = kube::api::ObjectMeta {
        name: node.metadata.name.clone(),
        labels: node.metadata.labels.clone(),
        annotations: node.metadata.annotations.clone(),
        ..Default::default()
    };
    again.status = None;
    nodes.create(&PostParams::default(), &again).await.unwrap();
    c.wait_ready(&client, READY).await.unwrap();
    let back = nodes
        .get(NODE)
        .await
        .unwrap()
        .status
        .unwrap()
        .member_card
        .unwrap();
    assert_eq!(back, card_c, "the re-created node has the same identity");
    assert_eq!(
        pvcs.get(&format!("data-{NODE}-0"))
            .await
            .unwrap()
            .metadata
            .uid,
        pvc.metadata.uid,
        "same volume"
    );
    step(
        t,
        "deleted LedgerNode: children collected, key Secret and PVC kept and reused",
    );

    // 7. At least 20 invalid objects, each refused with a message that says what to fix.
    let refused = invalid::check_all(&client, "hospital-a").await;
    assert!(refused >= 20, "{refused}");
    step(
        t,
        &format!("{refused} invalid objects refused with a helpful message"),
    );

    // 8. Nothing the operator wrote carries a secret half: statuses, events, its log.
    let mut halves = Vec::new();
    for h in hospitals.iter().chain([&d]) {
        halves.extend(secret_halves(&client, &h.namespace).await);
    }
    assert!(halves.len() >= 8, "found the key files ({})", halves.len());
    let mut written = cluster
        .kubectl(&[
            "get",
            "ledgernodes,consortia,events,configmaps",
            "-A",
            "-o",
            "json",
        ])
        .unwrap();
    written.push_str(&std::fs::read_to_string(&operator.log).unwrap());
    for half in &halves {
        assert!(
            !written.contains(half.as_str()),
            "a secret key half leaked (not printed)"
        );
    }
    step(
        t,
        "no secret key material in statuses, events, ConfigMaps or the operator's log",
    );
}
