//! `medledger participant | record | access | audit | member`: the EMR flows on the command
//! line. Each command prints what happened and where it committed; errors carry the
//! ledger's reason.

use super::emr_client::Emr;
use crate::blob::{BlobBackend, BlobConfig};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use medledger_api::keys::load;
use medledger_api::pb::propose_membership::Action;
use medledger_api::pb::{ApproveProposal, GetProposalRequest, ProposeMembership, tx_body::Op};
use std::path::PathBuf;

#[derive(Args, Clone)]
pub struct Api {
    /// A node's client API.
    #[arg(long, env = "MEDLEDGER_API", default_value = "http://127.0.0.1:7050")]
    pub api: String,
}

#[derive(Args, Clone)]
pub struct Blob {
    /// Where encrypted blobs live: `dir:PATH` (embedded store), `kubo:URL` (kubo RPC, e.g.
    /// http://127.0.0.1:5001) or `cluster:URL,KUBO_URL` (ipfs-cluster REST API and its kubo).
    #[arg(long, env = "MEDLEDGER_BLOB", default_value = "dir:./medledger-blobs")]
    pub blob: String,
}

impl Blob {
    pub fn open(&self, suite: medledger_api::crypto::Suite) -> Result<BlobBackend> {
        parse_blob(&self.blob)?.open(suite).map_err(Into::into)
    }
}

/// Parses the `--blob` shorthand into a backend configuration.
pub fn parse_blob(s: &str) -> Result<BlobConfig> {
    let (kind, rest) = s
        .split_once(':')
        .context("--blob takes dir:PATH, kubo:URL or cluster:URL,KUBO_URL")?;
    let json = match kind {
        "dir" => serde_json::json!({"backend": "local", "dir": rest}),
        "kubo" => serde_json::json!({"backend": "kubo", "url": rest}),
        "cluster" => {
            let (url, kubo) = rest
                .split_once(',')
                .context("cluster:URL,KUBO_URL needs both addresses")?;
            serde_json::json!({"backend": "cluster", "url": url, "kuboUrl": kubo})
        }
        other => bail!("unknown blob store {other:?}: use dir:, kubo: or cluster:"),
    };
    serde_json::from_value(json).context("invalid --blob")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_shorthands_parse_into_backend_configs() {
        assert!(matches!(
            parse_blob("dir:/tmp/b").unwrap(),
            BlobConfig::Local { .. }
        ));
        assert!(matches!(
            parse_blob("kubo:http://127.0.0.1:5001").unwrap(),
            BlobConfig::Kubo { .. }
        ));
        assert!(matches!(
            parse_blob("cluster:http://127.0.0.1:9094,http://127.0.0.1:5001").unwrap(),
            BlobConfig::Cluster { .. }
        ));
        for bad in ["nowhere", "s3:bucket", "cluster:http://only-one"] {
            assert!(parse_blob(bad).is_err(), "{bad}");
        }
    }
}

#[derive(Subcommand)]
pub enum ParticipantCmd {
    /// Register a participant's public key (signed by a member administrator).
    Register {
        #[command(flatten)]
        api: Api,
        /// The member administrator's key file.
        #[arg(long)]
        admin: PathBuf,
        /// The participant's key file (only its public key is read) ...
        #[arg(long, conflicts_with = "public_key")]
        key: Option<PathBuf>,
        /// ... or its hex public key.
        #[arg(long)]
        public_key: Option<String>,
        /// patient, clinician, researcher, auditor, ethics or client.
        #[arg(long)]
        role: String,
        /// Clinicians only.
        #[arg(long, default_value = "")]
        department: String,
    },
}

#[derive(Subcommand)]
pub enum RecordCmd {
    /// Encrypt a file, store the ciphertext and register the record at this node's hospital.
    Put {
        #[command(flatten)]
        api: Api,
        #[command(flatten)]
        blob: Blob,
        /// Custodian administrator or clinician key file.
        #[arg(long)]
        key: PathBuf,
        /// The patient's key file: the patient signs the record registration.
        #[arg(long)]
        patient_key: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        file: PathBuf,
        /// 1 normal, 2 sensitive, 3 highly sensitive (no break-glass), 4 restricted.
        #[arg(long, default_value_t = 2)]
        sensitivity: u32,
        #[arg(long, default_value = "general")]
        category: String,
    },
    /// Fetch and decrypt a record under a grant (ask the custodian hospital's node).
    Get {
        #[command(flatten)]
        api: Api,
        #[command(flatten)]
        blob: Blob,
        /// Requester key file.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        id: String,
        /// The granted access request.
        #[arg(long)]
        request: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum AccessCmd {
    /// Ask for access to a record, or to every record of a patient at one hospital.
    Request {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long, default_value = "")]
        record: String,
        #[arg(long, default_value = "")]
        patient: String,
        #[arg(long, default_value = "")]
        custodian: String,
        /// treatment, research or audit.
        #[arg(long, default_value = "treatment")]
        purpose: String,
        /// Hours until the grant expires (at most 2160).
        #[arg(long, default_value_t = 24)]
        hours: i64,
    },
    /// Approve a request as every principal the key embodies (patient, custodian, ethics).
    Approve {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        id: String,
    },
    /// End a grant (patient, custodian or requester).
    Revoke {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Emergency access for 24 hours, flagged and shown to the patient.
    BreakGlass {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        record: String,
        #[arg(long)]
        reason: String,
    },
    /// Show a request: policy, approvals, state, expiry.
    Show {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
pub enum MemberCmd {
    /// List the consortium's members as the chain knows them.
    List {
        #[command(flatten)]
        api: Api,
    },
    /// Propose admitting a hospital (its member card: name, node key, endpoint, admin key).
    ProposeAdd {
        #[command(flatten)]
        api: Api,
        /// Your member administrator key file.
        #[arg(long)]
        admin: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        node_key: String,
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        admin_key: String,
    },
    /// Propose removing a member and its validator.
    ProposeRemove {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        admin: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
    },
    /// Approve a membership proposal.
    Approve {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        admin: PathBuf,
        #[arg(long)]
        id: String,
    },
}

fn committed(what: &str, r: &medledger_api::pb::SubmitTxResponse) {
    println!(
        "{what}: committed at height {} (tx {})",
        r.height,
        hex::encode(&r.tx_id)
    );
}

pub async fn participant(cmd: ParticipantCmd) -> Result<()> {
    let ParticipantCmd::Register {
        api,
        admin,
        key,
        public_key,
        role,
        department,
    } = cmd;
    let public = match (key, public_key) {
        (Some(path), _) => load(&path)?.public(),
        (None, Some(hex_key)) => hex::decode(hex_key).context("--public-key is hex")?,
        (None, None) => bail!("give the participant's --key FILE or --public-key HEX"),
    };
    let mut c = Emr::connect(&api.api).await?;
    let pseudonym = c
        .register_participant(&load(&admin)?, public.clone(), &role, &department)
        .await?;
    println!("registered {role} {}", hex::encode(&public));
    if !pseudonym.is_empty() {
        println!("patient pseudonym: {pseudonym}");
    }
    Ok(())
}

pub async fn record(cmd: RecordCmd) -> Result<()> {
    match cmd {
        RecordCmd::Put {
            api,
            blob,
            key,
            patient_key,
            id,
            file,
            sensitivity,
            category,
        } => {
            let mut c = Emr::connect(&api.api).await?;
            let store = blob.open(c.suite)?;
            let data =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let r = c
                .put_record(
                    &store,
                    &load(&key)?,
                    &load(&patient_key)?,
                    &id,
                    &data,
                    sensitivity,
                    &category,
                )
                .await?;
            println!(
                "record {id}: {} bytes encrypted, stored as {}, registered at height {} (custodian {})",
                r.size, r.cid, r.height, c.member
            );
            Ok(())
        }
        RecordCmd::Get {
            api,
            blob,
            key,
            id,
            request,
            out,
        } => {
            let mut c = Emr::connect(&api.api).await?;
            let store = blob.open(c.suite)?;
            let (plain, info) = c.get_record(&store, &load(&key)?, &request, &id).await?;
            std::fs::write(&out, &plain)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "record {id} ({} bytes, custodian {}) decrypted to {}; the release is on the audit trail",
                plain.len(),
                info.custodian,
                out.display()
            );
            Ok(())
        }
    }
}

pub async fn access(cmd: AccessCmd) -> Result<()> {
    match cmd {
        AccessCmd::Request {
            api,
            key,
            id,
            record,
            patient,
            custodian,
            purpose,
            hours,
        } => {
            let mut c = Emr::connect(&api.api).await?;
            let expires = crate::service::submit::now_ms() + hours * 3_600_000;
            let r = c
                .request_access(
                    &load(&key)?,
                    &id,
                    &record,
                    &patient,
                    &custodian,
                    &purpose,
                    expires,
                )
                .await?;
            committed(&format!("access request {id}"), &r);
            let a = c.access(&id).await?;
            println!("needs {} (patient {})", a.policy, a.patient);
            Ok(())
        }
        AccessCmd::Approve { api, key, id } => {
            let mut c = Emr::connect(&api.api).await?;
            let r = c.approve(&load(&key)?, &id).await?;
            committed(&format!("approval of {id}"), &r);
            let a = c.access(&id).await?;
            println!(
                "{id} is {} (approved by {})",
                a.state,
                a.approvals.join(", ")
            );
            Ok(())
        }
        AccessCmd::Revoke {
            api,
            key,
            id,
            reason,
        } => {
            let mut c = Emr::connect(&api.api).await?;
            let r = c.revoke(&load(&key)?, &id, &reason).await?;
            committed(&format!("revocation of {id}"), &r);
            Ok(())
        }
        AccessCmd::BreakGlass {
            api,
            key,
            id,
            record,
            reason,
        } => {
            let mut c = Emr::connect(&api.api).await?;
            let r = c.break_glass(&load(&key)?, &id, &record, &reason).await?;
            committed(&format!("break-glass {id}"), &r);
            println!("granted for 24 hours; the patient sees this on their audit trail");
            Ok(())
        }
        AccessCmd::Show { api, id } => {
            let mut c = Emr::connect(&api.api).await?;
            let a = c.access(&id).await?;
            println!(
                "{}",
                serde_json::json!({
                    "request_id": a.request_id, "requester": hex::encode(&a.requester),
                    "requester_role": a.requester_role, "record_id": a.record_id,
                    "patient": a.patient, "custodian": a.custodian, "purpose": a.purpose,
                    "expires_at_ms": a.expires_at_ms, "policy": a.policy,
                    "approvals": a.approvals, "state": a.state, "break_glass": a.break_glass,
                    "reason": a.reason,
                })
            );
            Ok(())
        }
    }
}

pub async fn audit(api: &str, patient: &str, json: bool) -> Result<()> {
    let mut c = Emr::connect(api).await?;
    let events = c.audit(patient).await?;
    if json {
        let rows: Vec<_> = events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "height": e.height, "at_ms": e.at_ms, "kind": e.kind,
                    "actor": hex::encode(&e.actor), "actor_role": e.actor_role,
                    "record_id": e.record_id, "request_id": e.request_id,
                    "purpose": e.purpose, "break_glass": e.break_glass, "detail": e.detail,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    println!("audit trail of {patient}: {} events", events.len());
    for e in &events {
        println!("{}", format_event(e));
    }
    Ok(())
}

/// One line of the audit trail: when, what, who, which record, why.
pub fn format_event(e: &medledger_api::pb::AuditEvent) -> String {
    let who = hex::encode(&e.actor);
    format!(
        "  #{:<5} {:<19} {:<10} {}…  record={} request={} purpose={}{}{}",
        e.height,
        e.kind,
        e.actor_role,
        &who[..who.len().min(12)],
        if e.record_id.is_empty() {
            "*"
        } else {
            &e.record_id
        },
        if e.request_id.is_empty() {
            "-"
        } else {
            &e.request_id
        },
        if e.purpose.is_empty() {
            "-"
        } else {
            &e.purpose
        },
        if e.break_glass { " BREAK-GLASS" } else { "" },
        if e.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", e.detail)
        },
    )
}

pub async fn member(cmd: MemberCmd) -> Result<()> {
    match cmd {
        MemberCmd::List { api } => {
            let mut c = Emr::connect(&api.api).await?;
            for m in c.members().await? {
                println!(
                    "{:<20} {:<8} node {} endpoint {} admin {}",
                    m.name,
                    if m.active { "active" } else { "removed" },
                    m.node_key,
                    m.endpoint,
                    m.admin_key
                );
            }
            Ok(())
        }
        MemberCmd::ProposeAdd {
            api,
            admin,
            id,
            name,
            node_key,
            endpoint,
            admin_key,
        } => {
            propose(
                &api.api,
                &admin,
                ProposeMembership {
                    proposal_id: id,
                    action: Action::AddMember as i32,
                    name,
                    node_key,
                    endpoint,
                    admin_key,
                },
            )
            .await
        }
        MemberCmd::ProposeRemove {
            api,
            admin,
            id,
            name,
        } => {
            propose(
                &api.api,
                &admin,
                ProposeMembership {
                    proposal_id: id,
                    action: Action::RemoveMember as i32,
                    name,
                    ..Default::default()
                },
            )
            .await
        }
        MemberCmd::Approve { api, admin, id } => {
            let mut c = Emr::connect(&api.api).await?;
            let r = c
                .submit(
                    &load(&admin)?,
                    Op::ApproveProposal(ApproveProposal {
                        proposal_id: id.clone(),
                    }),
                )
                .await?;
            committed(&format!("approval of proposal {id}"), &r);
            show_proposal(&mut c, &id).await
        }
    }
}

async fn propose(api: &str, admin: &std::path::Path, p: ProposeMembership) -> Result<()> {
    let id = p.proposal_id.clone();
    let mut c = Emr::connect(api).await?;
    let r = c.submit(&load(admin)?, Op::ProposeMembership(p)).await?;
    committed(&format!("proposal {id}"), &r);
    show_proposal(&mut c, &id).await
}

async fn show_proposal(c: &mut Emr, id: &str) -> Result<()> {
    let p = c
        .emr
        .get_proposal(GetProposalRequest {
            proposal_id: id.into(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    println!(
        "proposal {id} ({} {}): {}, needs {}, approved by {}",
        p.action,
        p.name,
        p.state,
        p.policy,
        p.approvals.join(", ")
    );
    Ok(())
}
