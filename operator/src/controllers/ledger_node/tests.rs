//! Tests of the LedgerNode controller: pure steps on fixtures, and reconciles against the
//! in-memory API server.

use super::*;
use crate::controllers::testing::FakeApi;
use crate::crd::conditions::{DEGRADED, PROGRESSING, READY, find, is_true};
use crate::crd::{LedgerNodeStatus, LedgerView, NodePhase};
use crate::keys::PublicKeys;
use crate::resources::fixtures::{consortium, key_hex, node};
use crate::resources::network_policy::OperatorPeer;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::apps::v1::StatefulSetStatus;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use medledger_api::crypto::Suite as ApiSuite;
use medledger_api::genesis::Genesis;
use medledger_api::keys::SigningKey;
use serde_json::{Value, json};

fn keys_for(node_key: &str, admin_key: &str) -> PublicKeys {
    PublicKeys {
        node_key: node_key.into(),
        admin_key: admin_key.into(),
        node_secret: "node-a-keys".into(),
        admin_secret: "node-a-keys".into(),
        generated: false,
    }
}

/// A consortium listing node-a (as hospital-a) with `keys`, plus other members.
fn admitted(keys: &PublicKeys, members: usize) -> Consortium {
    let mut c = consortium(&keys.node_key, members);
    c.spec.members[0].admin_key = keys.admin_key.clone();
    c
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn ready_sts() -> StatefulSet {
    let mut s = StatefulSet::default();
    s.metadata.generation = Some(1);
    s.status = Some(StatefulSetStatus {
        observed_generation: Some(1),
        ready_replicas: Some(1),
        current_revision: Some("r1".into()),
        update_revision: Some("r1".into()),
        replicas: 1,
        ..Default::default()
    });
    s
}

#[test]
fn validation_explains_every_way_a_node_is_not_deployable() {
    let n = node();
    let keys = keys_for(&key_hex(ApiSuite::Ed25519), &key_hex(ApiSuite::Ed25519));
    let verdict = validate(&n, None, &keys);
    assert!(
        matches!(&verdict, Verdict::Wait { phase: NodePhase::Pending, reason: "ConsortiumNotFound", message } if message.contains("apply it"))
    );

    let stranger = consortium(&key_hex(ApiSuite::Ed25519), 2);
    let mut not_listed = stranger.clone();
    not_listed.spec.members.remove(0);
    assert!(matches!(
        validate(&n, Some(&not_listed), &keys),
        Verdict::Wait {
            phase: NodePhase::AwaitingGenesis,
            reason: "AwaitingMembership",
            ..
        }
    ));

    match validate(&n, Some(&stranger), &keys) {
        Verdict::Broken {
            reason: "NodeKeyMismatch",
            message,
        } => assert!(message.contains("status.memberCard"), "{message}"),
        other => panic!("{other:?}"),
    }
    let mut wrong_admin = admitted(&keys, 2);
    wrong_admin.spec.members[0].admin_key = key_hex(ApiSuite::Ed25519);
    assert!(matches!(
        validate(&n, Some(&wrong_admin), &keys),
        Verdict::Broken {
            reason: "AdminKeyMismatch",
            ..
        }
    ));

    let mut sm = admitted(&keys, 2);
    sm.spec.suite = crate::crd::Suite::Sm;
    match validate(&n, Some(&sm), &keys) {
        Verdict::Broken {
            reason: "SuiteMismatch",
            message,
        } => assert!(message.contains("suite sm")),
        other => panic!("{other:?}"),
    }

    let mut bad = admitted(&keys, 2);
    bad.spec.members[1].endpoint = "nohost".into();
    assert!(matches!(
        validate(&n, Some(&bad), &keys),
        Verdict::Broken {
            reason: "InvalidConsortium",
            ..
        }
    ));

    let good = admitted(&keys, 3);
    let hash = hex::encode(
        Genesis::from_spec(&good.spec.genesis_spec())
            .unwrap()
            .hash(),
    );
    assert_eq!(
        validate(&n, Some(&good), &keys),
        Verdict::Deploy { genesis_hash: hash }
    );
}

#[test]
fn before_admission_only_the_network_objects_exist() {
    let keys = keys_for("aa", "bb");
    let wait = Verdict::Wait {
        phase: NodePhase::AwaitingGenesis,
        reason: "AwaitingMembership",
        message: String::new(),
    };
    let c = build(
        &node(),
        &wait,
        &keys,
        &Seen::default(),
        &OperatorPeer::default(),
    );
    assert!(c.workload.is_none());
    assert_eq!(c.p2p.metadata.name.as_deref(), Some("node-a-p2p"));
}

#[test]
fn admitted_nodes_get_a_workload_and_a_service_monitor_only_where_the_crd_exists() {
    let keys = keys_for("aa", "bb");
    let deploy = Verdict::Deploy {
        genesis_hash: "ab".repeat(32),
    };
    let c = build(
        &node(),
        &deploy,
        &keys,
        &Seen::default(),
        &OperatorPeer::default(),
    );
    let w = c.workload.unwrap();
    assert!(w.service_monitor.is_none());
    assert!(w.pvc_expansion.is_none());
    assert!(w.config_map.data.unwrap()["node.yaml"].contains(&"ab".repeat(32)));
    let seen = Seen {
        existing_statefulset: None,
        service_monitor_available: true,
    };
    assert!(
        build(&node(), &deploy, &keys, &seen, &OperatorPeer::default())
            .workload
            .unwrap()
            .service_monitor
            .is_some()
    );
    let mut off = node();
    off.spec.monitoring.service_monitor = false;
    assert!(
        build(&off, &deploy, &keys, &seen, &OperatorPeer::default())
            .workload
            .unwrap()
            .service_monitor
            .is_none()
    );
}

#[test]
fn a_grown_volume_expands_the_pvc_and_keeps_the_claim_templates() {
    let keys = keys_for("aa", "bb");
    let deploy = Verdict::Deploy {
        genesis_hash: "ab".into(),
    };
    let first = build(
        &node(),
        &deploy,
        &keys,
        &Seen::default(),
        &OperatorPeer::default(),
    )
    .workload
    .unwrap()
    .statefulset;
    let mut grown = node();
    grown.spec.storage.size = "20Gi".into();
    let seen = Seen {
        existing_statefulset: Some(first.clone()),
        service_monitor_available: false,
    };
    let w = build(&grown, &deploy, &keys, &seen, &OperatorPeer::default())
        .workload
        .unwrap();
    assert_eq!(
        w.statefulset.spec.volume_claim_templates,
        first.spec.volume_claim_templates
    );
    let pvc = w.pvc_expansion.unwrap();
    assert_eq!(pvc.metadata.name.as_deref(), Some("data-node-a-0"));
    assert_eq!(
        pvc.spec.unwrap().resources.unwrap().requests.unwrap()["storage"],
        Quantity("20Gi".into())
    );
    // Same size: nothing to expand.
    let seen = Seen {
        existing_statefulset: Some(first),
        service_monitor_available: false,
    };
    assert!(
        build(&node(), &deploy, &keys, &seen, &OperatorPeer::default())
            .workload
            .unwrap()
            .pvc_expansion
            .is_none()
    );
}

#[test]
fn quantities() {
    assert_eq!(quantity_bytes("10Gi"), Some(10.0 * 1024f64.powi(3)));
    assert_eq!(quantity_bytes("500M"), Some(5e8));
    assert_eq!(quantity_bytes("1.5Ti"), Some(1.5 * 1024f64.powi(4)));
    assert_eq!(quantity_bytes("12"), Some(12.0));
    assert!(quantity_bytes("10 gigs").is_none());
    assert!(quantity_bytes("10000Mi").unwrap() < quantity_bytes("10Gi").unwrap());
}

#[test]
fn status_follows_the_workload_and_the_ledger() {
    let keys = keys_for(&key_hex(ApiSuite::Ed25519), &key_hex(ApiSuite::Ed25519));
    let deploy = Verdict::Deploy {
        genesis_hash: "ab".into(),
    };
    let mut n = node();

    let s = desired_status(&n, &keys, &deploy, None, None, t(0));
    assert_eq!(s.phase, Some(NodePhase::Deploying));
    assert!(is_true(&s.conditions, PROGRESSING));
    assert_eq!(s.genesis_hash.as_deref(), Some("ab"));
    assert_eq!(s.observed_generation, Some(3));
    let card = s.member_card.clone().unwrap();
    assert_eq!(
        (card.name.as_str(), card.node_key.as_str()),
        ("hospital-a", keys.node_key.as_str())
    );
    assert_eq!(card.endpoint, "node.hospital-a.example.org:7051");

    n.status = Some(s);
    let s = desired_status(&n, &keys, &deploy, None, Some(&ready_sts()), t(10));
    assert_eq!(s.phase, Some(NodePhase::Running));
    assert!(is_true(&s.conditions, READY));
    assert_eq!(
        find(&s.conditions, READY).unwrap().last_transition_time.0,
        t(10)
    );
    assert_eq!(
        find(&s.conditions, DEGRADED)
            .unwrap()
            .last_transition_time
            .0,
        t(0)
    );

    n.status = Some(LedgerNodeStatus {
        ledger: Some(LedgerView {
            role: "follower".into(),
            peers: 0,
            in_sync: false,
        }),
        ..s.clone()
    });
    let s2 = desired_status(&n, &keys, &deploy, None, Some(&ready_sts()), t(20));
    assert_eq!(find(&s2.conditions, READY).unwrap().reason, "CatchingUp");
    assert!(!is_true(&s2.conditions, READY));

    n.status = Some(LedgerNodeStatus {
        ledger: Some(crate::controllers::poller::unreachable()),
        ..s
    });
    let s3 = desired_status(&n, &keys, &deploy, None, Some(&ready_sts()), t(30));
    assert_eq!(s3.phase, Some(NodePhase::Degraded));
    assert!(is_true(&s3.conditions, DEGRADED));

    let broken = Verdict::Broken {
        reason: "NodeKeyMismatch",
        message: "fix it".into(),
    };
    let s4 = desired_status(&n, &keys, &broken, None, None, t(40));
    assert_eq!(find(&s4.conditions, DEGRADED).unwrap().message, "fix it");
    // The status never carries a secret.
    let text = serde_json::to_string(&s4).unwrap();
    assert!(!text.contains("secret_key") && !text.contains("secretKey"));
}

#[test]
fn a_steady_node_needs_no_status_write() {
    let keys = keys_for(&key_hex(ApiSuite::Ed25519), &key_hex(ApiSuite::Ed25519));
    let deploy = Verdict::Deploy {
        genesis_hash: "ab".into(),
    };
    let mut n = node();
    let s = desired_status(&n, &keys, &deploy, None, Some(&ready_sts()), t(0));
    assert!(status_changed(&n, &s));
    n.status = Some(LedgerNodeStatus {
        ledger: Some(LedgerView {
            role: "leader".into(),
            peers: 3,
            in_sync: true,
        }),
        ..s
    });
    let again = desired_status(&n, &keys, &deploy, None, Some(&ready_sts()), t(3600));
    assert!(
        !status_changed(&n, &again),
        "an hour later nothing changed, so nothing is written"
    );
}

// ---- against the mocked API server ----

const NS: &str = "hospital-a";

fn node_path() -> String {
    FakeApi::path("apis/medledger.io/v1alpha1", NS, "ledgernodes", "node-a")
}
fn secret_path() -> String {
    FakeApi::path("api/v1", NS, "secrets", "node-a-keys")
}

fn seed_node(api: &FakeApi) -> LedgerNode {
    api.put(&node_path(), serde_json::to_value(node()).unwrap());
    serde_json::from_value(api.get(&node_path()).unwrap()).unwrap()
}

fn stored_node(api: &FakeApi) -> LedgerNode {
    serde_json::from_value(api.get(&node_path()).unwrap()).unwrap()
}

async fn run(_api: &FakeApi, ctx: &Arc<Context>, n: LedgerNode) -> Result<Action, Error> {
    reconcile(Arc::new(DeserializeGuard(Ok(n))), ctx.clone()).await
}

#[tokio::test]
async fn a_new_node_generates_its_keys_once_and_publishes_its_card() {
    let api = FakeApi::new();
    let ctx = api.context();
    let n = seed_node(&api);
    run(&api, &ctx, n).await.unwrap();

    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(api.get(&secret_path()).unwrap()).unwrap();
    assert_eq!(secret.immutable, Some(true));
    let node_pub = keys::public_key(&secret, "node.key", crate::crd::Suite::Ed25519).unwrap();
    let status = stored_node(&api).status.unwrap();
    assert_eq!(status.phase, Some(NodePhase::Pending));
    assert_eq!(status.member_card.as_ref().unwrap().node_key, node_pub);
    assert_eq!(status.key_secret.as_deref(), Some("node-a-keys"));
    // Network objects exist already; the workload waits for the genesis.
    assert!(
        api.get(&FakeApi::path("api/v1", NS, "services", "node-a-p2p"))
            .is_some()
    );
    assert!(
        api.get(&FakeApi::path(
            "apis/networking.k8s.io/v1",
            NS,
            "networkpolicies",
            "node-a"
        ))
        .is_some()
    );
    assert!(
        api.get(&FakeApi::path("apis/apps/v1", NS, "statefulsets", "node-a"))
            .is_none()
    );

    // The secret halves appear nowhere but in the Secret.
    let secret_hex: Vec<String> = ["node.key", "admin.key"]
        .iter()
        .map(|k| serde_json::from_slice::<Value>(&secret.data.as_ref().unwrap()[*k].0).unwrap()["secret_key"].as_str().unwrap().to_string())
        .collect();
    let events = api.events();
    assert!(
        events
            .iter()
            .any(|(r, note)| r == "KeysGenerated" && note.contains(&node_pub)),
        "{events:?}"
    );
    let everything_else: String = {
        let s = api.0.lock().unwrap();
        s.objects
            .iter()
            .filter(|(p, _)| **p != secret_path())
            .map(|(_, v)| v.to_string())
            .collect()
    };
    for h in &secret_hex {
        assert!(
            !everything_else.contains(h.as_str()),
            "a secret key leaked outside its Secret"
        );
    }

    // Again: the key is read, never written; the status is unchanged so not written.
    api.clear_requests();
    run(&api, &ctx, stored_node(&api)).await.unwrap();
    let writes = api.writes();
    assert!(
        !writes.iter().any(|(_, p)| p.contains("/secrets")),
        "{writes:?}"
    );
    assert!(
        !writes.iter().any(|(_, p)| p.ends_with("/status")),
        "{writes:?}"
    );
    let again: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(api.get(&secret_path()).unwrap()).unwrap();
    assert_eq!(again.data, secret.data);
}

#[tokio::test]
async fn an_existing_key_secret_is_used_and_never_overwritten() {
    let api = FakeApi::new();
    let ctx = api.context();
    let n = seed_node(&api);
    let nk = SigningKey::generate(ApiSuite::Ed25519);
    let ak = SigningKey::generate(ApiSuite::Ed25519);
    api.put(
        &secret_path(),
        serde_json::to_value(keys::generated_key_secret(&n, Some(&nk), Some(&ak))).unwrap(),
    );
    run(&api, &ctx, n).await.unwrap();
    let card = stored_node(&api).status.unwrap().member_card.unwrap();
    assert_eq!(card.node_key, hex::encode(nk.public()));
    assert_eq!(card.admin_key, hex::encode(ak.public()));
    assert!(!api.writes().iter().any(|(_, p)| p.contains("/secrets")));
    assert!(api.events().iter().all(|(r, _)| r != "KeysGenerated"));
}

#[tokio::test]
async fn an_admitted_node_is_deployed_with_the_consortium_genesis() {
    let api = FakeApi::new();
    api.0.lock().unwrap().service_monitor_crd = true;
    let ctx = api.context();
    let n = seed_node(&api);
    let nk = SigningKey::generate(ApiSuite::Ed25519);
    let ak = SigningKey::generate(ApiSuite::Ed25519);
    api.put(
        &secret_path(),
        serde_json::to_value(keys::generated_key_secret(&n, Some(&nk), Some(&ak))).unwrap(),
    );
    let c = admitted(
        &keys_for(&hex::encode(nk.public()), &hex::encode(ak.public())),
        3,
    );
    api.put(
        &FakeApi::path("apis/medledger.io/v1alpha1", NS, "consortia", "emr"),
        serde_json::to_value(&c).unwrap(),
    );
    run(&api, &ctx, n).await.unwrap();

    let hash = hex::encode(Genesis::from_spec(&c.spec.genesis_spec()).unwrap().hash());
    let cm = api
        .get(&FakeApi::path("api/v1", NS, "configmaps", "node-a-config"))
        .unwrap();
    assert!(cm["data"]["node.yaml"].as_str().unwrap().contains(&hash));
    let sts = api
        .get(&FakeApi::path("apis/apps/v1", NS, "statefulsets", "node-a"))
        .unwrap();
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["node", "--config", "/etc/medledger/config/node.yaml"])
    );
    assert!(
        api.get(&FakeApi::path(
            "apis/monitoring.coreos.com/v1",
            NS,
            "servicemonitors",
            "node-a"
        ))
        .is_some()
    );
    let status = stored_node(&api).status.unwrap();
    assert_eq!(status.phase, Some(NodePhase::Deploying));
    assert_eq!(status.genesis_hash, Some(hash));
    // Every child write was a server-side apply under the operator's field manager.
    assert!(
        api.writes()
            .iter()
            .filter(|(_, p)| !p.contains("events"))
            .all(|(m, _)| m == http::Method::PATCH)
    );
}

#[tokio::test]
async fn a_missing_referenced_key_secret_is_an_error_that_says_what_to_do() {
    let api = FakeApi::new();
    let ctx = api.context();
    let mut n = node();
    n.spec.node_key_secret = Some(crate::crd::LocalRef::new("my-node-key"));
    api.put(&node_path(), serde_json::to_value(&n).unwrap());
    let err = run(&api, &ctx, stored_node(&api)).await.unwrap_err();
    assert_eq!(err.metric_label(), "KeySecretMissing");
    assert!(err.needs_user());
    assert!(
        err.to_string()
            .contains("Secret my-node-key named by spec.nodeKeySecret does not exist: create it"),
        "{err}"
    );
    assert!(api.events().iter().any(|(r, _)| r == "KeySecretMissing"));
    let action = error_policy(
        Arc::new(DeserializeGuard(Ok(stored_node(&api)))),
        &err,
        ctx.clone(),
    );
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)));
    assert!(ctx.metrics.render().contains(r#"error="KeySecretMissing""#));
}

#[tokio::test]
async fn a_malformed_object_is_reported_and_skipped() {
    let api = FakeApi::new();
    let ctx = api.context();
    let raw = json!({"apiVersion": "medledger.io/v1alpha1", "kind": "LedgerNode",
        "metadata": {"name": "broken", "namespace": NS, "uid": "u1"}, "spec": {"memberName": 7}});
    let guard: DeserializeGuard<LedgerNode> = serde_json::from_value(raw).unwrap();
    assert!(guard.0.is_err());
    let action = reconcile(Arc::new(guard), ctx.clone()).await.unwrap();
    assert_eq!(action, Action::await_change());
    assert!(api.events().iter().any(|(r, _)| r == "InvalidObject"));
    assert!(api.writes().iter().all(|(_, p)| p.contains("/events")));
}

#[tokio::test]
async fn a_node_goes_from_awaiting_genesis_to_running_with_events_on_each_step() {
    let api = FakeApi::new();
    let ctx = api.context();
    let n = seed_node(&api);
    run(&api, &ctx, n).await.unwrap();
    assert_eq!(
        stored_node(&api).status.unwrap().phase,
        Some(NodePhase::Pending)
    );

    // The platform team lists the card in a Consortium that leaves this member out first...
    let card = stored_node(&api).status.unwrap().member_card.unwrap();
    let keys = keys_for(&card.node_key, &card.admin_key);
    let mut c = admitted(&keys, 3);
    let listed = c.spec.members.remove(0);
    let cpath = FakeApi::path("apis/medledger.io/v1alpha1", NS, "consortia", "emr");
    api.put(&cpath, serde_json::to_value(&c).unwrap());
    run(&api, &ctx, stored_node(&api)).await.unwrap();
    let status = stored_node(&api).status.unwrap();
    assert_eq!(status.phase, Some(NodePhase::AwaitingGenesis));
    assert_eq!(
        find(&status.conditions, PROGRESSING).unwrap().reason,
        "AwaitingMembership"
    );

    // ...then with it: the node is deployed.
    c.spec.members.insert(0, listed);
    api.put(&cpath, serde_json::to_value(&c).unwrap());
    run(&api, &ctx, stored_node(&api)).await.unwrap();
    assert_eq!(
        stored_node(&api).status.unwrap().phase,
        Some(NodePhase::Deploying)
    );

    // The StatefulSet controller reports the pod ready.
    let sts_path = FakeApi::path("apis/apps/v1", NS, "statefulsets", "node-a");
    let mut sts = api.get(&sts_path).unwrap();
    sts["metadata"]["generation"] = json!(1);
    sts["status"] = json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "currentRevision": "r1", "updateRevision": "r1"});
    api.put(&sts_path, sts);
    run(&api, &ctx, stored_node(&api)).await.unwrap();
    let status = stored_node(&api).status.unwrap();
    assert_eq!(status.phase, Some(NodePhase::Running));
    assert!(is_true(&status.conditions, READY));

    // The poller records what the node says; the next reconcile keeps it and writes nothing.
    let ledger = json!({"status": {"ledger": {"role": "leader", "peers": 2, "inSync": true}}});
    let node_path = node_path();
    let mut stored = api.get(&node_path).unwrap();
    stored["status"]["ledger"] = ledger["status"]["ledger"].clone();
    api.put(&node_path, stored);
    api.clear_requests();
    run(&api, &ctx, stored_node(&api)).await.unwrap();
    assert!(!api.writes().iter().any(|(_, p)| p.ends_with("/status")));
    assert_eq!(
        stored_node(&api).status.unwrap().ledger.unwrap().role,
        "leader"
    );

    let reasons: Vec<String> = api.events().into_iter().map(|(r, _)| r).collect();
    for expected in [
        "KeysGenerated",
        "ConsortiumNotFound",
        "AwaitingMembership",
        "Deploying",
        "Running",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "no {expected} event in {reasons:?}"
        );
    }
}
