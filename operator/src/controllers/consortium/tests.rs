//! Tests of the Consortium controller.

use super::*;
use crate::controllers::testing::FakeApi;
use crate::crd::conditions::{DEGRADED, READY, find, is_true};
use crate::crd::{LedgerNodeStatus, MemberCard};
use crate::resources::fixtures::{consortium, key_hex, node};
use medledger_api::crypto::Suite as ApiSuite;

const NS: &str = "hospital-a";

/// 64 lower-case hex characters (so it passes the CEL rules) that are not a curve point.
fn not_a_point() -> String {
    (1u8..=255)
        .map(|b| [b; 32])
        .find(|k| ApiSuite::Ed25519.check_public_key(k).is_err())
        .map(hex::encode)
        .expect("some byte pattern is not a point")
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// node-a serving hospital-a with `node_key`, Ready or not.
fn local_node(node_key: &str, ready: bool) -> LedgerNode {
    let mut n = node();
    n.status = Some(LedgerNodeStatus {
        member_card: Some(MemberCard {
            name: "hospital-a".into(),
            node_key: node_key.into(),
            admin_key: String::new(),
            endpoint: String::new(),
        }),
        conditions: conditions::merge(
            &[],
            &conditions::triple(
                if ready {
                    Health::Ready
                } else {
                    Health::Progressing
                },
                "x",
                "x",
            ),
            None,
            t(0),
        ),
        ..Default::default()
    });
    n
}

#[test]
fn members_are_ready_not_ready_mismatched_or_remote() {
    let key = key_hex(ApiSuite::Ed25519);
    let c = consortium(&key, 3);
    let g = validate(&c).unwrap();
    let states = |nodes: &[LedgerNode]| {
        member_states(&c, &g, nodes)
            .into_iter()
            .map(|m| (m.name, m.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        states(&[local_node(&key, true)]),
        [
            ("hospital-a".into(), MemberState::Ready),
            ("hospital-b".into(), MemberState::Remote),
            ("hospital-c".into(), MemberState::Remote)
        ]
    );
    assert_eq!(
        states(&[local_node(&key, false)])[0].1,
        MemberState::NotReady
    );
    assert_eq!(
        states(&[local_node(&key_hex(ApiSuite::Ed25519), true)])[0].1,
        MemberState::KeyMismatch
    );
    assert_eq!(states(&[])[0].1, MemberState::Remote);
    let ids: Vec<String> = member_states(&c, &g, &[])
        .iter()
        .map(|m| m.node_id.clone())
        .collect();
    assert!(
        ids.iter()
            .all(|id| id.parse::<u64>().is_ok_and(|id| id != 0))
    );
}

#[test]
fn status_shows_the_genesis_and_local_readiness() {
    let key = key_hex(ApiSuite::Ed25519);
    let mut c = consortium(&key, 3);
    let verdict = validate(&c);
    let s = desired_status(&c, &verdict, &[local_node(&key, false)], t(0));
    assert_eq!(s.phase, Some(ConsortiumPhase::Pending));
    assert_eq!(
        s.genesis_hash,
        Some(hex::encode(verdict.as_ref().unwrap().hash()))
    );
    assert_eq!(s.genesis_config_map.as_deref(), Some("emr-genesis"));
    assert_eq!((s.member_count, s.ready_local_members), (Some(3), Some(0)));
    c.status = Some(s);
    let s = desired_status(&c, &verdict, &[local_node(&key, true)], t(10));
    assert_eq!(s.phase, Some(ConsortiumPhase::Ready));
    assert!(is_true(&s.conditions, READY));
    assert_eq!(
        find(&s.conditions, READY).unwrap().last_transition_time.0,
        t(10)
    );
    c.status = Some(s.clone());
    // Steady: recomputing later changes nothing, so nothing is written.
    assert_eq!(
        desired_status(&c, &verdict, &[local_node(&key, true)], t(999)),
        s
    );
    let s = desired_status(
        &c,
        &verdict,
        &[local_node(&key_hex(ApiSuite::Ed25519), true)],
        t(20),
    );
    assert_eq!(s.phase, Some(ConsortiumPhase::Degraded));
    assert_eq!(find(&s.conditions, DEGRADED).unwrap().reason, "KeyMismatch");
}

#[test]
fn an_invalid_consortium_says_what_is_wrong() {
    let mut c = consortium(&key_hex(ApiSuite::Ed25519), 2);
    // Passes the CEL rules (64 lower-case hex) but is not a point of the curve.
    c.spec.members[1].node_key = not_a_point();
    let verdict = validate(&c);
    assert!(verdict.is_err());
    let s = desired_status(&c, &verdict, &[], t(0));
    assert_eq!(s.phase, Some(ConsortiumPhase::Invalid));
    assert!(s.genesis_hash.is_none());
    let msg = &find(&s.conditions, DEGRADED).unwrap().message;
    assert!(
        msg.contains("nodeKey") && msg.contains("hospital-b"),
        "{msg}"
    );
}

#[test]
fn the_genesis_is_the_same_bytes_whatever_the_member_order() {
    let c = consortium(&key_hex(ApiSuite::Ed25519), 4);
    let mut reversed = c.clone();
    reversed.spec.members.reverse();
    let a = build(&c, &validate(&c).unwrap());
    let b = build(&reversed, &validate(&reversed).unwrap());
    assert_eq!(a.genesis.data, b.genesis.data);
}

#[tokio::test]
async fn reconcile_writes_genesis_pdb_and_status_then_stays_quiet() {
    let api = FakeApi::new();
    let ctx = api.context();
    let key = key_hex(ApiSuite::Ed25519);
    let c = consortium(&key, 3);
    let path = FakeApi::path("apis/medledger.io/v1alpha1", NS, "consortia", "emr");
    api.put(&path, serde_json::to_value(&c).unwrap());
    api.put(
        &FakeApi::path("apis/medledger.io/v1alpha1", NS, "ledgernodes", "node-a"),
        serde_json::to_value(local_node(&key, true)).unwrap(),
    );
    let stored = || -> Consortium { serde_json::from_value(api.get(&path).unwrap()).unwrap() };
    reconcile(Arc::new(DeserializeGuard(Ok(stored()))), ctx.clone())
        .await
        .unwrap();

    let cm = api
        .get(&FakeApi::path("api/v1", NS, "configmaps", "emr-genesis"))
        .unwrap();
    let bytes = cm["data"]["genesis.json"]
        .as_str()
        .unwrap()
        .as_bytes()
        .to_vec();
    let g = Genesis::from_bytes(&bytes).unwrap();
    let status = stored().status.unwrap();
    assert_eq!(status.genesis_hash, Some(hex::encode(g.hash())));
    assert_eq!(status.phase, Some(ConsortiumPhase::Ready));
    assert_eq!(status.members[0].state, MemberState::Ready);
    assert_eq!(status.members[0].ledger_node.as_deref(), Some("node-a"));
    assert!(
        api.get(&FakeApi::path(
            "apis/policy/v1",
            NS,
            "poddisruptionbudgets",
            "emr-ledger"
        ))
        .is_some()
    );
    assert!(ctx.metrics.render().contains(
        r#"medledger_consortium_ready_members{consortium="emr",namespace="hospital-a"} 1"#
    ));

    api.clear_requests();
    reconcile(Arc::new(DeserializeGuard(Ok(stored()))), ctx.clone())
        .await
        .unwrap();
    assert!(
        !api.writes()
            .iter()
            .any(|(_, p)| p.ends_with("/status") || p.contains("/events")),
        "{:?}",
        api.writes()
    );
}

#[tokio::test]
async fn an_invalid_consortium_gets_no_genesis_and_a_warning() {
    let api = FakeApi::new();
    let ctx = api.context();
    let mut c = consortium(&key_hex(ApiSuite::Ed25519), 2);
    c.spec.members[1].node_key = not_a_point();
    let path = FakeApi::path("apis/medledger.io/v1alpha1", NS, "consortia", "emr");
    api.put(&path, serde_json::to_value(&c).unwrap());
    let c: Consortium = serde_json::from_value(api.get(&path).unwrap()).unwrap();
    reconcile(Arc::new(DeserializeGuard(Ok(c))), ctx)
        .await
        .unwrap();
    assert!(
        api.get(&FakeApi::path("api/v1", NS, "configmaps", "emr-genesis"))
            .is_none()
    );
    let status: Consortium = serde_json::from_value(api.get(&path).unwrap()).unwrap();
    assert_eq!(status.status.unwrap().phase, Some(ConsortiumPhase::Invalid));
    assert!(
        api.events()
            .iter()
            .any(|(r, n)| r == "InvalidSpec" && n.contains("nodeKey")),
        "{:?}",
        api.events()
    );
}

#[test]
fn policies_are_validated_and_shown_resolved() {
    let key = key_hex(ApiSuite::Ed25519);
    let mut c = consortium(&key, 3);
    let s = desired_status(&c, &validate(&c), &[], t(0));
    let p = s.policies.unwrap();
    assert_eq!(p.member_admission, "OutOf(2, members)");
    assert_eq!(p.validator_change, "OutOf(2, members)");
    c.spec.policies.validator_change = Some(5);
    let verdict = validate(&c);
    let s = desired_status(&c, &verdict, &[], t(0));
    assert_eq!(s.phase, Some(ConsortiumPhase::Invalid));
    assert!(
        find(&s.conditions, DEGRADED)
            .unwrap()
            .message
            .contains("policies.validatorChange is 5")
    );
}
