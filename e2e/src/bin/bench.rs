//! `e2e/bench`: N hospitals in one real control plane (kwok nodes), one release-built operator
//! run with its chart's ServiceAccount. Prints one JSON object:
//! `hospitals`, `converge_s` (from the first LedgerNode to every LedgerNode and Consortium
//! Ready), `operator_rss_mb` (after converging), `writes_steady_5min` (API writes by the
//! operator in the steady window), and the figures behind them: `cards_s` (every member card
//! published), `consortia_created_s` (every Consortium accepted by the API server; admission
//! of an N-member Consortium is the API server's work, not the operator's). Measures, never
//! asserts.

use anyhow::Context as _;
use futures::StreamExt;
use kube::api::{Api, ListParams, PostParams};
use medledger_e2e::hospital::{CONSORTIUM, NODE, install_operator};
use medledger_e2e::{Cluster, binaries, wait_for};
use medledger_operator::crd::{Consortium, ConsortiumPhase, LedgerNode, MemberCard, NodePhase};
use std::time::{Duration, Instant};

struct Args {
    hospitals: usize,
    steady_secs: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        hospitals: 100,
        steady_secs: 300,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().context("a value after the flag");
        match flag.as_str() {
            "--hospitals" => a.hospitals = value()?.parse()?,
            "--steady-secs" => a.steady_secs = value()?.parse()?,
            other => anyhow::bail!(
                "unknown argument {other}; usage: e2e/bench [--hospitals N] [--steady-secs S]"
            ),
        }
    }
    anyhow::ensure!(a.hospitals >= 1, "--hospitals must be at least 1");
    Ok(a)
}

fn namespace(i: usize) -> String {
    format!("hospital-{i:03}")
}

fn log(t: Instant, what: &str) {
    eprintln!("bench [{:>6.1}s] {what}", t.elapsed().as_secs_f64());
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let t = Instant::now();
    let bins = binaries(true)?;
    let n = a.hospitals;
    let cluster = tokio::task::spawn_blocking(move || {
        Cluster::up("bench", (n as u32).div_ceil(200) + 1, n as u32)
    })
    .await??;
    let client = cluster.client().await?;
    let operator = install_operator(&cluster, &bins.operator).await?;
    log(t, "control plane, operator chart and release operator up");
    for i in 0..n {
        cluster.restricted_namespace(&namespace(i)).await?;
    }

    // What the hospital chart renders, created directly: helm itself is not measured.
    let start = Instant::now();
    for i in 0..n {
        let ns = namespace(i);
        let node: LedgerNode = serde_json::from_value(serde_json::json!({
            "apiVersion": "medledger.io/v1alpha1", "kind": "LedgerNode",
            "metadata": {"name": NODE, "namespace": ns},
            "spec": {"consortiumRef": {"name": CONSORTIUM}, "memberName": ns, "storage": {"size": "1Gi"}},
        }))?;
        Api::<LedgerNode>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &node)
            .await?;
    }
    let all_nodes: Api<LedgerNode> = Api::all(client.clone());
    let cards: Vec<MemberCard> = wait_for("every member card", Duration::from_secs(300), || {
        let api = all_nodes.clone();
        async move {
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let mut cards: Vec<MemberCard> = list
                .items
                .into_iter()
                .filter_map(|n| n.status.and_then(|s| s.member_card))
                .collect();
            if cards.len() < n {
                return Err(format!("{} of {n} cards", cards.len()));
            }
            cards.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(cards)
        }
    })
    .await?;
    let cards_s = start.elapsed().as_secs_f64();
    log(t, &format!("{n} member cards in {cards_s:.1} s"));
    // Every hospital applies the same Consortium at about the same time.
    let consortium = serde_json::json!({"chainId": "emr-bench", "members": cards});
    futures::stream::iter(0..n)
        .map(|i| {
            let (client, spec) = (client.clone(), consortium.clone());
            async move {
                let ns = namespace(i);
                let c: Consortium = serde_json::from_value(serde_json::json!({
                    "apiVersion": "medledger.io/v1alpha1", "kind": "Consortium",
                    "metadata": {"name": CONSORTIUM, "namespace": ns}, "spec": spec,
                }))?;
                Api::<Consortium>::namespaced(client, &ns)
                    .create(&PostParams::default(), &c)
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    let consortia_created_s = start.elapsed().as_secs_f64();
    log(
        t,
        &format!("{n} Consortia of {n} members created at {consortia_created_s:.1} s"),
    );
    let all_consortia: Api<Consortium> = Api::all(client.clone());
    wait_for(
        "every LedgerNode and Consortium Ready",
        Duration::from_secs(600),
        || {
            let (nodes, consortia) = (all_nodes.clone(), all_consortia.clone());
            async move {
                let ready_nodes = nodes
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .items
                    .iter()
                    .filter(|n| {
                        n.status.as_ref().is_some_and(|s| {
                            s.phase == Some(NodePhase::Running)
                                && medledger_operator::crd::conditions::find(&s.conditions, "Ready")
                                    .is_some_and(|c| c.status == "True")
                        })
                    })
                    .count();
                let ready_consortia = consortia
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .items
                    .iter()
                    .filter(|c| {
                        c.status.as_ref().and_then(|s| s.phase) == Some(ConsortiumPhase::Ready)
                    })
                    .count();
                if ready_nodes == n && ready_consortia == n {
                    Ok(())
                } else {
                    Err(format!(
                        "{ready_nodes} nodes and {ready_consortia} consortia of {n} Ready"
                    ))
                }
            }
        },
    )
    .await?;
    let converge_s = start.elapsed().as_secs_f64();
    let rss = operator.rss_mb().unwrap_or(f64::NAN);
    let peak = operator.peak_rss_mb().unwrap_or(f64::NAN);
    let writes_converge = cluster.writes_by(&operator.user)?.len();
    log(
        t,
        &format!(
            "converged in {converge_s:.1} s; steady window of {} s",
            a.steady_secs
        ),
    );

    // Let the last events and debounced reconciles settle, then count writes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = cluster.writes_by(&operator.user)?;
    tokio::time::sleep(Duration::from_secs(a.steady_secs)).await;
    let after = cluster.writes_by(&operator.user)?;
    let steady: Vec<_> = after[before.len()..].to_vec();
    if !steady.is_empty() {
        eprintln!("bench: writes at steady state: {steady:?}");
    }
    let out = serde_json::json!({
        "hospitals": n,
        "converge_s": (converge_s * 10.0).round() / 10.0,
        "cards_s": (cards_s * 10.0).round() / 10.0,
        "consortia_created_s": (consortia_created_s * 10.0).round() / 10.0,
        "operator_rss_mb": (rss * 10.0).round() / 10.0,
        "operator_peak_rss_mb": (peak * 10.0).round() / 10.0,
        "writes_steady_5min": if a.steady_secs == 300 { serde_json::json!(steady.len()) } else { serde_json::Value::Null },
        "writes_steady": steady.len(),
        "steady_window_s": a.steady_secs,
        "writes_to_converge": writes_converge,
        "operator_rss_mb_after_steady": operator.rss_mb().map(|r| (r * 10.0).round() / 10.0),
    });
    println!("{out}");
    Ok(())
}
