//! Governance on real nodes: a hospital outside the genesis is admitted by vote and its node
//! becomes a Raft voter; a member is removed by vote and its node leaves the voters, and the
//! consortium keeps committing throughout.

mod common;

use common::*;
use medledger::cli::emr_client::Emr;
use medledger::local::LocalConsortium;
use medledger_api::keys::SigningKey;
use medledger_api::pb::propose_membership::Action;
use medledger_api::pb::{ApproveProposal, ProposeMembership, tx_body::Op};
use std::time::{Duration, Instant};

async fn wait_validators(c: &LocalConsortium, n: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let leader = c.wait_leader(WAIT).await.unwrap();
        if let Ok(s) = c.status(leader).await
            && s.validators == n
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Raft membership never reached {n} voters"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn approve(id: &str) -> Op {
    Op::ApproveProposal(ApproveProposal {
        proposal_id: id.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_are_admitted_and_removed_by_vote_and_raft_follows() {
    let mut c = consortium(3, default_opts()).await;
    let (d, d_admin, [node_key, endpoint, admin_key]) = c.prepare_joiner("hospital-d").unwrap();
    // The newcomer runs from the first moment, outside the consortium, waiting to be let in.
    c.start(d).unwrap();
    let mut a = Emr::connect(&c.nodes[0].api_url()).await.unwrap();
    a.submit(
        &c.admin_keys[0],
        Op::ProposeMembership(ProposeMembership {
            proposal_id: "admit-d".into(),
            action: Action::AddMember as i32,
            name: "hospital-d".into(),
            node_key,
            endpoint,
            admin_key,
        }),
    )
    .await
    .unwrap();
    // One approval of the majority of 3 is not enough.
    let deadline = Instant::now() + WAIT;
    let s = loop {
        match c.status(d).await {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("{e:#}\n{}", c.log(d)),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(s.height, 0, "an unadmitted node receives nothing");
    a.submit(&c.admin_keys[1], approve("admit-d"))
        .await
        .unwrap();
    wait_validators(&c, 4).await;

    // The new member's node holds the chain, and its administrator acts through it.
    let mut dn = Emr::connect(&c.nodes[d].api_url()).await.unwrap();
    let clinician = SigningKey::generate(c.genesis.suite);
    dn.register_participant(&d_admin, clinician.public(), "clinician", "neurology")
        .await
        .unwrap();
    let members = dn.members().await.unwrap();
    assert_eq!(members.iter().filter(|m| m.active).count(), 4);

    // Remove hospital-c: a majority of the 4 current members (3) must approve.
    a.submit(
        &c.admin_keys[0],
        Op::ProposeMembership(ProposeMembership {
            proposal_id: "remove-c".into(),
            action: Action::RemoveMember as i32,
            name: "hospital-c".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    a.submit(&c.admin_keys[1], approve("remove-c"))
        .await
        .unwrap();
    let p = a
        .emr
        .get_proposal(medledger_api::pb::GetProposalRequest {
            proposal_id: "remove-c".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        p.state, "pending",
        "2 of the 3 approvals needed so far: {p:?}"
    );
    a.submit(&d_admin, approve("remove-c")).await.unwrap();
    wait_validators(&c, 3).await;

    // hospital-c's node is out: with it stopped, A, B and D still commit.
    c.kill(2).unwrap();
    let client = SigningKey::generate(c.genesis.suite);
    dn.register_participant(&d_admin, client.public(), "client", "")
        .await
        .unwrap();
    let r = try_submit(&c.nodes[d].api_url(), put_tx(&c, &client, 1, "after"))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.reason);
    // hospital-c's administrator key no longer signs for a member.
    let err = a
        .submit(
            &c.admin_keys[2],
            Op::RegisterParticipant(medledger_api::pb::RegisterParticipant {
                public_key: SigningKey::generate(c.genesis.suite).public(),
                role: "client".into(),
                department: String::new(),
            }),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UNKNOWN_SIGNER"), "{err}");
    assert_converged(&c, &[r.tx_id]).await;
}
