//! `medledger`: ledger node, client and tools.
#![forbid(unsafe_code)]

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use medledger::cli::{bench, bench_emr, commands, demo, emr_cmd};
use medledger_api::crypto::Suite;
use std::path::PathBuf;

/// jemalloc: the node allocates and frees many small buffers per transaction (gRPC frames,
/// decoded transactions, store pages) from several threads, where glibc's allocator spent a
/// tenth of the CPU under load.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "medledger",
    version,
    about = "Consortium ledger for sharing medical records"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate a key file (never overwrites an existing one).
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// ed25519 (node keys always) or sm (SM2, for admin/participant keys on an sm chain).
        #[arg(long, default_value = "ed25519")]
        suite: Suite,
    },
    /// Build the canonical genesis document from a YAML member list and print its hash.
    Genesis {
        #[arg(long)]
        spec: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run a ledger node.
    Node {
        #[arg(long)]
        config: PathBuf,
    },
    /// Show a node's status.
    Status {
        #[arg(long, env = "MEDLEDGER_API", default_value = "http://127.0.0.1:7050")]
        api: String,
        #[arg(long)]
        json: bool,
    },
    /// Sign and submit a transaction; waits for commit.
    Submit {
        #[arg(long, env = "MEDLEDGER_API", default_value = "http://127.0.0.1:7050")]
        api: String,
        /// Signer key file.
        #[arg(long)]
        key: PathBuf,
        /// Store KEY=VALUE in the signer's key space.
        #[arg(long, conflicts_with = "register")]
        put: Option<String>,
        /// Register a participant key (hex); needs a member admin key.
        #[arg(long, requires = "role")]
        register: Option<String>,
        /// patient, clinician, researcher, auditor or client.
        #[arg(long)]
        role: Option<String>,
        /// Nonce to use (default: the signer's next).
        #[arg(long)]
        nonce: Option<u64>,
    },
    /// Transaction lookups.
    Tx {
        #[command(subcommand)]
        cmd: TxCmd,
    },
    /// Block lookups.
    Block {
        #[command(subcommand)]
        cmd: BlockCmd,
    },
    /// Benchmark a local consortium and print JSON figures: `ledger` (signed writes,
    /// optionally beside etcd) or `emr` (record put/get latency, cipher beside openssl).
    Bench {
        #[arg(value_parser = ["ledger", "emr"], default_value = "ledger")]
        what: String,
        /// emr: operations per record size.
        #[arg(long, default_value_t = 30)]
        ops: usize,
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        #[arg(long, default_value_t = 50_000)]
        txs: usize,
        #[arg(long, default_value_t = 256)]
        clients: usize,
        #[arg(long, default_value_t = 300)]
        tx_bytes: usize,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value = "ed25519")]
        suite: Suite,
        #[arg(long)]
        vs_etcd: bool,
        /// Print only the JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Run a 3-hospital consortium on loopback: commit, kill -9, restart, compare chains.
    Demo,
    /// Register patients, clinicians, researchers, auditors and ethics boards.
    Participant {
        #[command(subcommand)]
        cmd: emr_cmd::ParticipantCmd,
    },
    /// Put an encrypted record, or get one under a grant.
    Record {
        #[command(subcommand)]
        cmd: emr_cmd::RecordCmd,
    },
    /// Request, approve, revoke and break-glass access to records.
    Access {
        #[command(subcommand)]
        cmd: emr_cmd::AccessCmd,
    },
    /// Every access to a patient's records: who, when, purpose, grant.
    Audit {
        #[command(flatten)]
        api: emr_cmd::Api,
        /// The patient's pseudonym (p-...).
        #[arg(long)]
        patient: String,
        #[arg(long)]
        json: bool,
    },
    /// Consortium membership: list, propose to add or remove a hospital, approve.
    Member {
        #[command(subcommand)]
        cmd: emr_cmd::MemberCmd,
    },
}

#[derive(Subcommand)]
enum TxCmd {
    Get {
        id: String,
        #[arg(long, env = "MEDLEDGER_API", default_value = "http://127.0.0.1:7050")]
        api: String,
    },
}

#[derive(Subcommand)]
enum BlockCmd {
    Get {
        /// Height; 0 or omitted for the latest block.
        #[arg(default_value_t = 0)]
        height: u64,
        #[arg(long, env = "MEDLEDGER_API", default_value = "http://127.0.0.1:7050")]
        api: String,
        #[arg(long)]
        json: bool,
    },
}

fn init_tracing(format: &str, default: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run(cli: Cli) -> Result<()> {
    let exe = || std::env::current_exe().context("cannot find the medledger binary");
    match cli.cmd {
        Cmd::Keygen { out, suite } => commands::keygen(&out, suite),
        Cmd::Genesis { spec, out } => commands::genesis(&spec, out.as_deref()),
        Cmd::Node { config } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("cannot read node config {}", config.display()))?;
            let cfg = medledger_api::config::NodeConfig::from_yaml(&text)
                .map_err(|e| anyhow::anyhow!("node config {} is invalid: {e}", config.display()))?;
            medledger::node::run(cfg, shutdown_signal()).await?;
            Ok(())
        }
        Cmd::Status { api, json } => commands::status(&api, json).await,
        Cmd::Submit {
            api,
            key,
            put,
            register,
            role,
            nonce,
        } => {
            let op = match (put, register) {
                (Some(kv), None) => {
                    let (k, v) = kv.split_once('=').context("--put takes KEY=VALUE")?;
                    commands::SubmitOp::Put {
                        key: k.into(),
                        value: v.into(),
                    }
                }
                (None, Some(pk)) => commands::SubmitOp::Register {
                    public_key: pk,
                    role: role.unwrap_or_default(),
                },
                _ => anyhow::bail!(
                    "say what to submit: --put KEY=VALUE or --register PUBKEY --role ROLE"
                ),
            };
            commands::submit_cmd(&api, &key, op, nonce).await
        }
        Cmd::Tx {
            cmd: TxCmd::Get { id, api },
        } => commands::tx_get(&api, &id).await,
        Cmd::Block {
            cmd: BlockCmd::Get { height, api, json },
        } => commands::block_get(&api, height, json).await,
        Cmd::Bench {
            what,
            ops,
            nodes,
            txs,
            clients,
            tx_bytes,
            connections,
            suite,
            vs_etcd,
            json,
        } => {
            let args = bench::BenchArgs {
                nodes,
                txs,
                clients,
                tx_bytes,
                connections,
                vs_etcd,
                suite,
            };
            let out = if what == "emr" {
                let emr = bench_emr::EmrBenchArgs { suite, ops };
                bench_emr::run(&exe()?, &emr).await?
            } else {
                bench::run(&exe()?, &args).await?
            };
            if json {
                println!("{out}");
            } else {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(())
        }
        Cmd::Demo => demo::run(&exe()?).await,
        Cmd::Participant { cmd } => emr_cmd::participant(cmd).await,
        Cmd::Record { cmd } => emr_cmd::record(cmd).await,
        Cmd::Access { cmd } => emr_cmd::access(cmd).await,
        Cmd::Audit { api, patient, json } => emr_cmd::audit(&api.api, &patient, json).await,
        Cmd::Member { cmd } => emr_cmd::member(cmd).await,
    }
}

fn main() {
    let cli = Cli::parse();
    let is_node = matches!(cli.cmd, Cmd::Node { .. });
    // openraft logs every election and snapshot at info; its warnings are what operators need.
    init_tracing(
        &cli.log_format,
        if is_node {
            "info,openraft=warn"
        } else {
            "warn"
        },
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
