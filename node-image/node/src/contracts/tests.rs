//! Every contract rule, run through `execute_batch` exactly as a node applies blocks, on
//! both crypto suites, with the negative cases next to the positive ones.

use super::access::{self, AccessState};
use super::state::{Changes, StateRead};
use crate::ledger::execute::execute_batch;
use crate::ledger::{Batch, ChainCtx};
use medledger_api::crypto::Suite;
use medledger_api::emr::{pseudonym, record_claim};
use medledger_api::genesis::{BlockLimits, Genesis, GenesisSpec, MemberSpec, Policies};
use medledger_api::keys::SigningKey;
use medledger_api::pb::propose_membership::Action;
use medledger_api::pb::*;
use medledger_api::pb::{ResultCode as C, tx_body::Op};
use prost::Message;
use std::collections::HashMap;

const HOUR: i64 = 3600 * 1000;

#[derive(Default)]
struct Mem {
    nonces: HashMap<Vec<u8>, u64>,
    roles: HashMap<Vec<u8>, String>,
    objects: std::collections::BTreeMap<String, Vec<u8>>,
}

impl StateRead for Mem {
    fn nonce(&self, s: &[u8]) -> u64 {
        self.nonces.get(s).copied().unwrap_or(0)
    }
    fn participant_role(&self, k: &[u8]) -> Option<String> {
        self.roles.get(k).cloned()
    }
    fn object(&self, k: &str) -> Option<Vec<u8>> {
        self.objects.get(k).cloned()
    }
}

impl Mem {
    fn merge(&mut self, c: Changes) {
        self.nonces.extend(c.nonces);
        self.roles.extend(c.participants);
        self.objects.extend(c.objects);
    }
}

struct Hospital {
    name: String,
    node: SigningKey,
    admin: SigningKey,
}

struct Chain {
    ctx: ChainCtx,
    hospitals: Vec<Hospital>,
    state: Mem,
    nonces: HashMap<Vec<u8>, u64>,
    height: u64,
    now_ms: i64,
}

impl Chain {
    fn new(suite: Suite, n: usize, policies: Policies) -> Chain {
        let hospitals: Vec<Hospital> = (0..n)
            .map(|i| Hospital {
                name: format!("hospital-{}", (b'a' + i as u8) as char),
                node: SigningKey::generate(Suite::Ed25519),
                admin: SigningKey::generate(suite),
            })
            .collect();
        let spec = GenesisSpec {
            chain_id: "emr-unit".into(),
            suite,
            block_limits: BlockLimits::default(),
            members: hospitals
                .iter()
                .map(|h| MemberSpec {
                    name: h.name.clone(),
                    node_key: hex::encode(h.node.public()),
                    endpoint: format!("{}:7051", h.name),
                    admin_key: hex::encode(h.admin.public()),
                })
                .collect(),
            policies,
        };
        Chain {
            ctx: ChainCtx::new(Genesis::from_spec(&spec).unwrap()),
            hospitals,
            state: Mem::default(),
            nonces: HashMap::new(),
            height: 0,
            now_ms: 1_800_000_000_000,
        }
    }

    fn tx(&mut self, key: &SigningKey, op: Op) -> Vec<u8> {
        let n = self.nonces.entry(key.public()).or_default();
        *n += 1;
        medledger_api::tx::build(key, &self.ctx.chain_id, *n, op)
    }

    /// Commits one block with the given transactions and returns their results.
    fn block(&mut self, txs: Vec<Vec<u8>>) -> Vec<TxResult> {
        self.height += 1;
        self.now_ms += 1000;
        let node = self.hospitals[0].node.as_ed25519().unwrap().clone();
        let id = self.ctx.genesis.members[0].node_id;
        let batch = Batch::sign(&self.ctx, id, &node, txs, self.now_ms);
        let e = execute_batch(
            &self.ctx,
            &self.state,
            &batch,
            self.height,
            &[0; 32],
            1,
            self.height,
        );
        self.state.merge(e.changes);
        e.block.results
    }

    fn one(&mut self, key: &SigningKey, op: Op) -> TxResult {
        let tx = self.tx(key, op);
        self.block(vec![tx]).remove(0)
    }

    fn ok(&mut self, key: &SigningKey, op: Op) {
        let r = self.one(key, op);
        assert_eq!(r.code, 0, "{}", r.reason);
    }

    fn admin(&self, i: usize) -> SigningKey {
        self.hospitals[i].admin.clone()
    }

    fn node(&self, i: usize) -> SigningKey {
        self.hospitals[i].node.clone()
    }

    fn register(&mut self, hospital: usize, role: &str) -> SigningKey {
        let k = SigningKey::generate(self.ctx.suite);
        let admin = self.admin(hospital);
        self.ok(
            &admin,
            Op::RegisterParticipant(RegisterParticipant {
                public_key: k.public(),
                role: role.into(),
                department: if role == "clinician" {
                    "cardiology".into()
                } else {
                    String::new()
                },
            }),
        );
        k
    }

    fn record_op(&self, custodian: usize, patient: &SigningKey, id: &str, level: u32) -> Op {
        let mut r = RegisterRecord {
            record_id: id.into(),
            patient: pseudonym(self.ctx.suite, &patient.public()),
            cid: format!("bafy-{id}"),
            content_hash: self.ctx.suite.hash(id.as_bytes()).to_vec(),
            sensitivity: level,
            category: "cardiology".into(),
            size: 4096,
            custody_key: vec![1; 80],
            patient_signature: vec![],
        };
        let claim = record_claim(&self.ctx.chain_id, &self.hospitals[custodian].name, &r);
        r.patient_signature = patient.sign(&claim);
        Op::RegisterRecord(r)
    }

    fn request(&self, id: &str, record: &str, purpose: &str, hours: i64) -> Op {
        Op::RequestAccess(RequestAccess {
            request_id: id.into(),
            record_id: record.into(),
            purpose: purpose.into(),
            expires_at_ms: self.now_ms + hours * HOUR,
            ..Default::default()
        })
    }

    fn release(&self, request: &str, record: &str, requester: &SigningKey) -> Op {
        Op::KeyReleased(KeyReleased {
            request_id: request.into(),
            record_id: record.into(),
            requester: requester.public(),
        })
    }

    fn access(&self, id: &str) -> access::AccessRec {
        let ov = super::Overlay::new(&self.state);
        access::get(&ov, id).unwrap()
    }

    fn audit_kinds(&self, patient: &SigningKey) -> Vec<String> {
        let prefix = super::audit::prefix(&pseudonym(self.ctx.suite, &patient.public()));
        self.state
            .objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| AuditEvent::decode(v.as_slice()).unwrap().kind)
            .collect()
    }
}

fn approve(id: &str) -> Op {
    Op::ApproveAccess(ApproveAccess {
        request_id: id.into(),
    })
}

fn code(r: &TxResult) -> C {
    C::try_from(r.code).unwrap()
}

/// Hospital A holds a patient's record; a clinician at B asks; patient and A approve; A's
/// node releases; a revocation stops the next release; the audit shows all of it.
#[test]
fn the_whole_story_on_both_suites() {
    for suite in [Suite::Ed25519, Suite::Sm] {
        let mut c = Chain::new(suite, 3, Policies::default());
        let patient = c.register(0, "patient");
        let doctor = c.register(1, "clinician");
        let (a_admin, a_node) = (c.admin(0), c.node(0));
        c.ok(&a_admin, c.record_op(0, &patient, "rec-1", 2));
        c.ok(&doctor, c.request("req-1", "rec-1", "treatment", 24));
        let r = c.one(&a_node, c.release("req-1", "rec-1", &doctor));
        assert_eq!(code(&r), C::Unauthorized, "unapproved: {}", r.reason);
        c.ok(&patient, approve("req-1"));
        assert_eq!(c.access("req-1").state, AccessState::Pending);
        let r = c.one(&a_node, c.release("req-1", "rec-1", &doctor));
        assert_eq!(code(&r), C::Unauthorized, "half approved: {}", r.reason);
        c.ok(&a_admin, approve("req-1"));
        assert_eq!(c.access("req-1").state, AccessState::Granted);
        c.ok(&a_node, c.release("req-1", "rec-1", &doctor));
        c.ok(
            &patient,
            Op::RevokeAccess(RevokeAccess {
                request_id: "req-1".into(),
                reason: "second opinion done".into(),
            }),
        );
        let r = c.one(&a_node, c.release("req-1", "rec-1", &doctor));
        assert_eq!(code(&r), C::Unauthorized, "revoked: {}", r.reason);
        assert!(r.reason.contains("revoked"), "{}", r.reason);
        assert_eq!(
            c.audit_kinds(&patient),
            [
                "patient-registered",
                "record-registered",
                "access-requested",
                "access-approved",
                "access-approved",
                "access-granted",
                "key-released",
                "access-revoked"
            ],
            "{suite}"
        );
    }
}

#[test]
fn expired_grants_release_nothing() {
    let mut c = Chain::new(Suite::Ed25519, 2, Policies::default());
    let patient = c.register(0, "patient");
    let doctor = c.register(1, "clinician");
    let (a_admin, a_node) = (c.admin(0), c.node(0));
    c.ok(&a_admin, c.record_op(0, &patient, "rec-1", 1));
    c.ok(&doctor, c.request("req-1", "rec-1", "treatment", 1));
    c.ok(&patient, approve("req-1"));
    c.ok(&a_admin, approve("req-1"));
    c.now_ms += 2 * HOUR;
    let r = c.one(&a_node, c.release("req-1", "rec-1", &doctor));
    assert_eq!(code(&r), C::Unauthorized);
    assert!(r.reason.contains("expired"), "{}", r.reason);
    // A request whose expiry is past, or too far ahead, is refused outright.
    let r = c.one(&doctor, c.request("req-2", "rec-1", "treatment", -1));
    assert_eq!(code(&r), C::Invalid, "{}", r.reason);
    let r = c.one(&doctor, c.request("req-3", "rec-1", "treatment", 24 * 91));
    assert_eq!(code(&r), C::Invalid, "{}", r.reason);
}

#[test]
fn wrong_roles_are_refused() {
    let mut c = Chain::new(Suite::Ed25519, 2, Policies::default());
    let patient = c.register(0, "patient");
    let doctor = c.register(1, "clinician");
    let researcher = c.register(1, "researcher");
    let auditor = c.register(1, "auditor");
    let (a_admin, b_admin, b_node) = (c.admin(0), c.admin(1), c.node(1));
    // Only the custodian hospital (admin or clinician) registers a record, with the patient's
    // signature over exactly this record at this custodian.
    let r = c.one(&researcher, c.record_op(1, &patient, "rec-x", 1));
    assert_eq!(code(&r), C::Unauthorized, "{}", r.reason);
    let r = c.one(&b_admin, c.record_op(0, &patient, "rec-x", 1));
    assert_eq!(code(&r), C::Unauthorized, "signed for another custodian");
    let stranger = SigningKey::generate(Suite::Ed25519);
    let r = c.one(&a_admin, c.record_op(0, &stranger, "rec-x", 1));
    assert_eq!(code(&r), C::Invalid, "unregistered patient: {}", r.reason);
    c.ok(&a_admin, c.record_op(0, &patient, "rec-1", 1));
    let r = c.one(&a_admin, c.record_op(0, &patient, "rec-1", 1));
    assert_eq!(code(&r), C::Invalid, "records are immutable");

    for (who, purpose) in [
        (&researcher, "treatment"),
        (&auditor, "research"),
        (&doctor, "audit"),
        (&patient, "treatment"),
    ] {
        let r = c.one(who, c.request("req-x", "rec-1", purpose, 1));
        assert_eq!(code(&r), C::Unauthorized, "{purpose}: {}", r.reason);
    }
    let r = c.one(&a_admin, c.request("req-x", "rec-1", "treatment", 1));
    assert_eq!(code(&r), C::Unauthorized, "a member admin is no requester");
    let r = c.one(&doctor, c.request("req-x", "rec-1", "gossip", 1));
    assert_eq!(code(&r), C::Invalid);

    c.ok(&doctor, c.request("req-1", "rec-1", "treatment", 1));
    // B's admin is neither patient nor custodian of rec-1.
    let r = c.one(&b_admin, approve("req-1"));
    assert_eq!(code(&r), C::Unauthorized, "{}", r.reason);
    // The requester cannot approve its own request.
    let r = c.one(&doctor, approve("req-1"));
    assert_eq!(code(&r), C::Unauthorized);
    c.ok(&patient, approve("req-1"));
    c.ok(&a_admin, approve("req-1"));
    // Only the custodian's node writes the release record.
    let r = c.one(&b_node, c.release("req-1", "rec-1", &doctor));
    assert_eq!(code(&r), C::Unauthorized, "{}", r.reason);
    // And only for the requester of the grant.
    let r = c.one(&c.node(0), c.release("req-1", "rec-1", &researcher));
    assert_eq!(code(&r), C::Unauthorized, "{}", r.reason);
    // A stranger may not revoke.
    let r = c.one(
        &researcher,
        Op::RevokeAccess(RevokeAccess {
            request_id: "req-1".into(),
            reason: "x".into(),
        }),
    );
    assert_eq!(code(&r), C::Unauthorized);
}

#[test]
fn forged_and_replayed_approvals_are_refused() {
    let mut c = Chain::new(Suite::Ed25519, 2, Policies::default());
    let patient = c.register(0, "patient");
    let doctor = c.register(1, "clinician");
    let a_admin = c.admin(0);
    c.ok(&a_admin, c.record_op(0, &patient, "rec-1", 1));
    c.ok(&doctor, c.request("req-1", "rec-1", "treatment", 24));
    // The doctor signs an approval claiming to be the patient.
    let body = TxBody {
        chain_id: c.ctx.chain_id.clone(),
        signer: patient.public(),
        nonce: 99,
        op: Some(approve("req-1")),
    }
    .encode_to_vec();
    let forged = Transaction {
        signature: doctor.sign(&body),
        body,
    }
    .encode_to_vec();
    let r = c.block(vec![forged]).remove(0);
    assert_eq!(code(&r), C::BadSignature);
    assert!(c.access("req-1").approvals.is_empty());
    // The patient's real approval, then the same bytes again.
    let tx = c.tx(&patient, approve("req-1"));
    assert_eq!(c.block(vec![tx.clone()])[0].code, 0);
    let r = c.block(vec![tx]).remove(0);
    assert_eq!(code(&r), C::ReplayedNonce);
    // A fresh approval by the same principal adds nothing.
    let r = c.one(&patient, approve("req-1"));
    assert_eq!(code(&r), C::Invalid);
    assert!(r.reason.contains("already approved"));
    assert_eq!(c.access("req-1").state, AccessState::Pending);
}

#[test]
fn break_glass_is_immediate_flagged_and_bounded() {
    let mut c = Chain::new(Suite::Ed25519, 2, Policies::default());
    let patient = c.register(0, "patient");
    let doctor = c.register(1, "clinician");
    let researcher = c.register(1, "researcher");
    let (a_admin, a_node) = (c.admin(0), c.node(0));
    c.ok(&a_admin, c.record_op(0, &patient, "rec-1", 2));
    c.ok(&a_admin, c.record_op(0, &patient, "rec-hiv", 3));
    let bg = |id: &str, rec: &str, reason: &str| {
        Op::BreakGlass(BreakGlass {
            request_id: id.into(),
            record_id: rec.into(),
            reason: reason.into(),
            ..Default::default()
        })
    };
    let r = c.one(
        &researcher,
        bg("bg-0", "rec-1", "unconscious patient in the ER"),
    );
    assert_eq!(code(&r), C::Unauthorized);
    let r = c.one(&doctor, bg("bg-0", "rec-1", "urgent"));
    assert_eq!(code(&r), C::Invalid, "{}", r.reason);
    let r = c.one(
        &doctor,
        bg("bg-0", "rec-hiv", "unconscious patient in the ER"),
    );
    assert_eq!(code(&r), C::Unauthorized, "{}", r.reason);
    c.ok(
        &doctor,
        bg("bg-1", "rec-1", "unconscious patient in the ER"),
    );
    let a = c.access("bg-1");
    assert!(a.break_glass && a.state == AccessState::Granted);
    c.ok(&a_node, c.release("bg-1", "rec-1", &doctor));
    c.now_ms += 25 * HOUR;
    let r = c.one(&a_node, c.release("bg-1", "rec-1", &doctor));
    assert_eq!(code(&r), C::Unauthorized, "break-glass lasts 24 h");
    let kinds = c.audit_kinds(&patient);
    assert!(kinds.contains(&"break-glass".to_string()), "{kinds:?}");
}

#[test]
fn research_needs_the_ethics_board_and_never_touches_restricted_records() {
    let mut c = Chain::new(Suite::Ed25519, 2, Policies::default());
    let patient = c.register(0, "patient");
    let researcher = c.register(1, "researcher");
    let ethics_a = c.register(0, "ethics");
    let ethics_b = c.register(1, "ethics");
    let (a_admin, a_node) = (c.admin(0), c.node(0));
    c.ok(&a_admin, c.record_op(0, &patient, "rec-1", 2));
    c.ok(&a_admin, c.record_op(0, &patient, "rec-4", 4));
    let r = c.one(&researcher, c.request("study-0", "rec-4", "research", 24));
    assert_eq!(code(&r), C::Unauthorized, "{}", r.reason);
    c.ok(&researcher, c.request("study-1", "rec-1", "research", 24));
    c.ok(&patient, approve("study-1"));
    c.ok(&a_admin, approve("study-1"));
    assert_eq!(c.access("study-1").state, AccessState::Pending);
    // Another hospital's ethics board is not the custodian's.
    let r = c.one(&ethics_b, approve("study-1"));
    assert_eq!(code(&r), C::Unauthorized);
    c.ok(&ethics_a, approve("study-1"));
    assert_eq!(c.access("study-1").state, AccessState::Granted);
    c.ok(&a_node, c.release("study-1", "rec-1", &researcher));
}

#[test]
fn a_patient_wide_grant_covers_that_custodians_records_only() {
    let mut c = Chain::new(Suite::Ed25519, 2, Policies::default());
    let patient = c.register(0, "patient");
    let doctor = c.register(1, "clinician");
    let (a_admin, b_admin) = (c.admin(0), c.admin(1));
    c.ok(&a_admin, c.record_op(0, &patient, "rec-a", 1));
    c.ok(&b_admin, c.record_op(1, &patient, "rec-b", 1));
    let now = c.now_ms;
    c.ok(
        &doctor,
        Op::RequestAccess(RequestAccess {
            request_id: "all-a".into(),
            patient: pseudonym(c.ctx.suite, &patient.public()),
            custodian: "hospital-a".into(),
            purpose: "treatment".into(),
            expires_at_ms: now + HOUR,
            ..Default::default()
        }),
    );
    c.ok(&patient, approve("all-a"));
    c.ok(&a_admin, approve("all-a"));
    c.ok(&c.node(0), c.release("all-a", "rec-a", &doctor));
    let r = c.one(&c.node(1), c.release("all-a", "rec-b", &doctor));
    assert_eq!(code(&r), C::Unauthorized, "{}", r.reason);
}

#[test]
fn custom_policies_from_the_genesis_apply() {
    let policies = Policies {
        record_access: Some("OR(patient, custodian)".into()),
        ..Default::default()
    };
    let mut c = Chain::new(Suite::Ed25519, 2, policies);
    let patient = c.register(0, "patient");
    let doctor = c.register(1, "clinician");
    let a_admin = c.admin(0);
    c.ok(&a_admin, c.record_op(0, &patient, "rec-1", 1));
    c.ok(&doctor, c.request("req-1", "rec-1", "treatment", 24));
    assert_eq!(c.access("req-1").policy, "OutOf(1, patient, custodian)");
    c.ok(&patient, approve("req-1"));
    assert_eq!(c.access("req-1").state, AccessState::Granted);
}

#[test]
fn governance_admits_and_removes_members_by_policy() {
    let mut c = Chain::new(Suite::Ed25519, 3, Policies::default());
    let (a, b, cc) = (c.admin(0), c.admin(1), c.admin(2));
    let d_admin = SigningKey::generate(Suite::Ed25519);
    let d_node = SigningKey::generate(Suite::Ed25519);
    let add = Op::ProposeMembership(ProposeMembership {
        proposal_id: "add-d".into(),
        action: Action::AddMember as i32,
        name: "hospital-d".into(),
        node_key: hex::encode(d_node.public()),
        endpoint: "hospital-d:7051".into(),
        admin_key: hex::encode(d_admin.public()),
    });
    // A non-member cannot propose; a participant cannot either.
    let r = c.one(&d_admin, add.clone());
    assert_eq!(code(&r), C::UnknownSigner);
    c.ok(&a, add);
    let r = c.one(
        &d_admin,
        Op::Put(Put {
            key: "k".into(),
            value: vec![],
        }),
    );
    assert_eq!(
        code(&r),
        C::UnknownSigner,
        "not admitted yet: 1 of 2 approvals"
    );
    let r = c.one(
        &a,
        Op::ApproveProposal(ApproveProposal {
            proposal_id: "add-d".into(),
        }),
    );
    assert_eq!(code(&r), C::Invalid, "no double vote");
    c.ok(
        &b,
        Op::ApproveProposal(ApproveProposal {
            proposal_id: "add-d".into(),
        }),
    );
    // Admitted: its administrator now registers participants.
    c.hospitals.push(Hospital {
        name: "hospital-d".into(),
        node: d_node.clone(),
        admin: d_admin.clone(),
    });
    c.register(3, "clinician");
    let r = c.one(
        &cc,
        Op::ApproveProposal(ApproveProposal {
            proposal_id: "add-d".into(),
        }),
    );
    assert_eq!(code(&r), C::Invalid, "already decided");

    // Removing C needs a majority of the 4 current members: 3.
    let remove = |id: &str| {
        Op::ProposeMembership(ProposeMembership {
            proposal_id: id.into(),
            action: Action::RemoveMember as i32,
            name: "hospital-c".into(),
            ..Default::default()
        })
    };
    c.ok(&a, remove("rm-c"));
    c.ok(
        &b,
        Op::ApproveProposal(ApproveProposal {
            proposal_id: "rm-c".into(),
        }),
    );
    c.ok(
        &cc,
        Op::Put(Put {
            key: "still".into(),
            value: vec![],
        }),
    );
    c.ok(
        &d_admin,
        Op::ApproveProposal(ApproveProposal {
            proposal_id: "rm-c".into(),
        }),
    );
    let r = c.one(
        &cc,
        Op::Put(Put {
            key: "gone".into(),
            value: vec![],
        }),
    );
    assert_eq!(code(&r), C::UnknownSigner, "a removed member's key is void");
}

#[test]
fn governance_refuses_bad_proposals() {
    let mut c = Chain::new(Suite::Ed25519, 2, Policies::default());
    let a = c.admin(0);
    let node_b = hex::encode(c.node(1).public());
    for (name, node_key, endpoint) in [
        ("Bad Name", hex::encode([9u8; 32]), "x:1"),
        (
            "hospital-b",
            hex::encode(SigningKey::generate(Suite::Ed25519).public()),
            "x:1",
        ),
        ("new", "zz".to_string(), "x:1"),
        ("new", node_b, "x:1"),
        (
            "new",
            hex::encode(SigningKey::generate(Suite::Ed25519).public()),
            "no-port",
        ),
    ] {
        let r = c.one(
            &a,
            Op::ProposeMembership(ProposeMembership {
                proposal_id: "p".into(),
                action: Action::AddMember as i32,
                name: name.into(),
                node_key,
                endpoint: endpoint.into(),
                admin_key: hex::encode(SigningKey::generate(Suite::Ed25519).public()),
            }),
        );
        assert_eq!(code(&r), C::Invalid, "{name}: {}", r.reason);
    }
}
