//! Invalid objects the API server must refuse, each with a message that says what to fix.
//! Creations are server-side dry runs; updates go against real objects.

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn consortium(spec: Value) -> Value {
    let mut base = json!({"chainId": "emr-bad", "members": [
        {"name": "hospital-x", "nodeKey": K1, "adminKey": K2, "endpoint": "ledger-p2p.hospital-x.svc:7051"}]});
    merge(&mut base, spec);
    json!({"apiVersion": "medledger.io/v1alpha1", "kind": "Consortium", "metadata": {"name": "bad"}, "spec": base})
}

fn node(spec: Value) -> Value {
    let mut base = json!({"consortiumRef": {"name": "emr"}, "memberName": "hospital-x", "storage": {"size": "1Gi"}});
    merge(&mut base, spec);
    json!({"apiVersion": "medledger.io/v1alpha1", "kind": "LedgerNode", "metadata": {"name": "bad"}, "spec": base})
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(&k);
                } else {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (a, b) => *a = b,
    }
}

fn api(client: &kube::Client, ns: &str, obj: &Value) -> Api<DynamicObject> {
    let (group, version) = obj["apiVersion"].as_str().unwrap().split_once('/').unwrap();
    let kind = obj["kind"].as_str().unwrap();
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let plural = match kind {
        "Consortium" => "consortia".to_string(),
        k => format!("{}s", k.to_lowercase()),
    };
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, &plural),
    )
}

async fn refused(
    client: &kube::Client,
    ns: &str,
    what: &str,
    obj: Value,
    update_of: Option<Value>,
    expect: &str,
) {
    let api = api(client, ns, &obj);
    let result = match update_of {
        None => {
            let o: DynamicObject = serde_json::from_value(obj).unwrap();
            api.create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &o,
            )
            .await
            .map(|_| ())
        }
        Some(original) => {
            let name = original["metadata"]["name"].as_str().unwrap().to_string();
            let live = api.get(&name).await.unwrap();
            let mut o: DynamicObject = serde_json::from_value(obj).unwrap();
            o.metadata = live.metadata;
            api.replace(
                &name,
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &o,
            )
            .await
            .map(|_| ())
        }
    };
    match result {
        Err(kube::Error::Api(e)) => assert!(
            e.message.contains(expect),
            "{what}: the message should say {expect:?}, it says: {}",
            e.message
        ),
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

/// Runs every case; returns how many were refused as expected.
pub async fn check_all(client: &kube::Client, ns: &str) -> usize {
    let sm = "02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let creates: Vec<(&str, Value, &str)> = vec![
        (
            "chain id with capitals",
            consortium(json!({"chainId": "EMR_chain"})),
            "chainId must be 1-63 lower-case letters",
        ),
        (
            "no members",
            consortium(json!({"members": []})),
            "should have at least 1 items",
        ),
        (
            "member name not a DNS label",
            consortium(
                json!({"members": [{"name": "Hospital X", "nodeKey": K1, "adminKey": K2, "endpoint": "a.b:7051"}]}),
            ),
            "member name must be a DNS label",
        ),
        (
            "short node key",
            consortium(
                json!({"members": [{"name": "h", "nodeKey": "abc", "adminKey": K2, "endpoint": "a.b:7051"}]}),
            ),
            "nodeKey must be 64 lower-case hex characters",
        ),
        (
            "admin key not ed25519",
            consortium(
                json!({"members": [{"name": "h", "nodeKey": K1, "adminKey": sm, "endpoint": "a.b:7051"}]}),
            ),
            "adminKey must match spec.suite",
        ),
        (
            "ed25519 admin key under sm",
            consortium(json!({"suite": "sm"})),
            "adminKey must match spec.suite",
        ),
        (
            "policy above the member count",
            consortium(json!({"policies": {"memberAdmission": 2}})),
            "a policy asks for more approvals than there are founding members",
        ),
        (
            "two members, one node key",
            consortium(json!({"members": [
            {"name": "h1", "nodeKey": K1, "adminKey": K2, "endpoint": "a.b:7051"},
            {"name": "h2", "nodeKey": K1, "adminKey": K2, "endpoint": "c.d:7051"}]})),
            "two members list the same nodeKey",
        ),
        (
            "duplicate member names",
            consortium(json!({"members": [
            {"name": "h1", "nodeKey": K1, "adminKey": K2, "endpoint": "a.b:7051"},
            {"name": "h1", "nodeKey": K2, "adminKey": K2, "endpoint": "c.d:7051"}]})),
            "Duplicate value",
        ),
        (
            "endpoint without port",
            consortium(
                json!({"members": [{"name": "h", "nodeKey": K1, "adminKey": K2, "endpoint": "ledger.example.org"}]}),
            ),
            "endpoint must be host:port",
        ),
        (
            "zero block size",
            consortium(json!({"blockLimits": {"maxBlockTxs": 0}})),
            "should be greater than or equal to 1",
        ),
        (
            "unknown suite",
            consortium(json!({"suite": "rsa"})),
            "supported values: \"ed25519\", \"sm\"",
        ),
        (
            "member name of a node",
            node(json!({"memberName": "Bad!"})),
            "memberName must be a DNS label",
        ),
        (
            "storage size not a quantity",
            node(json!({"storage": {"size": "lots"}})),
            "size must be a Kubernetes quantity",
        ),
        (
            "nodePort on a ClusterIP",
            node(json!({"p2p": {"serviceType": "ClusterIP", "nodePort": 30001}})),
            "p2p.nodePort needs serviceType NodePort or LoadBalancer",
        ),
        (
            "source ranges without a load balancer",
            node(json!({"p2p": {"loadBalancerSourceRanges": ["203.0.113.0/24"]}})),
            "p2p.loadBalancerSourceRanges needs serviceType LoadBalancer",
        ),
        (
            "external address without port",
            node(json!({"p2p": {"externalAddress": "ledger"}})),
            "p2p.externalAddress must be host:port",
        ),
        (
            "bad peer CIDR",
            node(json!({"p2p": {"peerCIDRs": ["198.51.100.7/40"]}})),
            "p2p.peerCIDRs must be CIDRs",
        ),
        (
            "bad peer address",
            node(json!({"peerAddresses": {"hospital-b": "nowhere"}})),
            "peerAddresses maps a member name to host:port",
        ),
        (
            "unknown pull policy",
            node(json!({"imagePullPolicy": "Sometimes"})),
            "supported values: \"Always\", \"IfNotPresent\", \"Never\"",
        ),
        (
            "no storage",
            node(json!({"storage": null})),
            "spec.storage: Required value",
        ),
        (
            "IPFS replication min above max",
            json!({"apiVersion": "medledger.io/v1alpha1", "kind": "IpfsCluster", "metadata": {"name": "bad"},
            "spec": {"consortiumRef": {"name": "emr"}, "storage": {"size": "1Gi"}, "replicationFactorMin": 3, "replicationFactorMax": 2}}),
            "replicationFactorMin must not exceed replicationFactorMax",
        ),
        (
            "trainer without data",
            json!({"apiVersion": "medledger.io/v1alpha1", "kind": "FederatedWorker", "metadata": {"name": "bad"},
            "spec": {"role": "Trainer", "ipfsClusterRef": {"name": "ipfs"}, "ledgerNodeRef": {"name": "ledger"}}}),
            "a Trainer needs spec.dataset",
        ),
    ];
    let mut n = 0;
    for (what, obj, expect) in creates {
        refused(client, ns, what, obj, None, expect).await;
        n += 1;
    }

    // Updates of fields fixed at creation, against the live objects of this namespace.
    let live_c = consortium(json!({}));
    let live = serde_json::to_value(api(client, ns, &live_c).get("emr").await.unwrap()).unwrap();
    let original_c = json!({"metadata": {"name": "emr"}});
    let with = |patch: Value| {
        let mut v = live.clone();
        merge(&mut v, patch);
        v
    };
    let live_n = serde_json::to_value(
        api(client, ns, &node(json!({})))
            .get("ledger")
            .await
            .unwrap(),
    )
    .unwrap();
    let original_n = json!({"metadata": {"name": "ledger"}});
    let with_n = |patch: Value| {
        let mut v = live_n.clone();
        merge(&mut v, patch);
        v
    };
    let mut members = live["spec"]["members"].clone();
    members.as_array_mut().unwrap().pop();
    let updates: Vec<(&str, Value, Value, &str)> = vec![
        (
            "chain id changed",
            with(json!({"spec": {"chainId": "another-chain"}})),
            original_c.clone(),
            "chainId cannot change after creation",
        ),
        (
            "suite changed",
            with(json!({"spec": {"suite": "sm"}})),
            original_c.clone(),
            "suite cannot change after creation",
        ),
        (
            "a founding member removed",
            with(json!({"spec": {"members": members}})),
            original_c.clone(),
            "members cannot change after creation",
        ),
        (
            "storage shrunk",
            with_n(json!({"spec": {"storage": {"size": "500Mi"}}})),
            original_n.clone(),
            "storage size cannot shrink",
        ),
        (
            "member name changed",
            with_n(json!({"spec": {"memberName": "hospital-z"}})),
            original_n.clone(),
            "memberName cannot change after creation",
        ),
        (
            "consortium changed",
            with_n(json!({"spec": {"consortiumRef": {"name": "other"}}})),
            original_n.clone(),
            "consortiumRef cannot change after creation",
        ),
        (
            "node key Secret added",
            with_n(json!({"spec": {"nodeKeySecret": {"name": "mine"}}})),
            original_n.clone(),
            "nodeKeySecret cannot be added, removed or changed",
        ),
    ];
    for (what, obj, original, expect) in updates {
        refused(client, ns, what, obj, Some(original), expect).await;
        n += 1;
    }
    n
}
