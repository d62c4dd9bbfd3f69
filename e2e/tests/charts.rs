//! The charts without a cluster: `helm lint --strict` is clean, the schemas refuse bad values
//! with a message naming the field, and the operator chart ships the CRDs of `crds/`.

use medledger_e2e::{repo_root, run, tools};
use std::process::Command;

fn helm(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new(&tools()?.helm)
        .current_dir(repo_root())
        .args(args))
}

#[test]
fn charts_lint_clean() {
    for (chart, set) in [
        ("helm/medledger-operator", "replicaCount=2"),
        ("helm/medledger-hospital", "memberName=hospital-a"),
    ] {
        let out = helm(&["lint", "--strict", chart, "--set", set]).unwrap();
        assert!(out.contains("0 chart(s) failed"), "{out}");
        assert!(
            !out.contains("[WARNING]") && !out.contains("[INFO]"),
            "{out}"
        );
    }
}

#[test]
fn operator_chart_ships_the_generated_crds() {
    for entry in std::fs::read_dir(repo_root().join("crds")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        let shipped = repo_root().join("helm/medledger-operator/crds").join(name);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::fs::read_to_string(&shipped).unwrap_or_default(),
            "{} differs from crds/; copy it: cp crds/*.yaml helm/medledger-operator/crds/",
            shipped.display()
        );
    }
}

#[test]
fn operator_chart_renders_least_privilege_and_monitoring() {
    let out = helm(&[
        "template",
        "op",
        "helm/medledger-operator",
        "--api-versions",
        "monitoring.coreos.com/v1/PrometheusRule",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ])
    .unwrap();
    for kind in [
        "ClusterRole",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
    ] {
        assert!(out.contains(&format!("kind: {kind}\n")), "no {kind}");
    }
    assert!(
        !out.contains("kind: Role\n"),
        "no Lease Role with one replica"
    );
    assert!(
        !out.contains("\"*\"") && !out.contains("[*]"),
        "no wildcard rights"
    );
    // Every alert links a runbook that exists.
    let mut alerts = 0;
    for line in out.lines().filter(|l| l.contains("runbook_url:")) {
        let file = line.rsplit('/').next().unwrap().trim();
        assert!(
            repo_root().join("docs/operations").join(file).exists(),
            "missing runbook {file}"
        );
        alerts += 1;
    }
    assert!(alerts >= 5, "{alerts} alerts");
    // Scoped to one namespace: Roles only.
    let scoped = helm(&[
        "template",
        "op",
        "helm/medledger-operator",
        "--set",
        "watchNamespace=hospital-a",
    ])
    .unwrap();
    assert!(!scoped.contains("kind: ClusterRole"), "{scoped}");
    assert!(scoped.contains("WATCH_NAMESPACE"));
}

#[test]
fn schemas_refuse_bad_values_naming_the_field() {
    for (chart, sets, field) in [
        (
            "helm/medledger-operator",
            vec!["replicaCount=0"],
            "/replicaCount",
        ),
        (
            "helm/medledger-operator",
            vec!["logFormat=xml"],
            "/logFormat",
        ),
        (
            "helm/medledger-operator",
            vec!["prometheusRule.for.nodeDown=soon"],
            "/prometheusRule/for/nodeDown",
        ),
        (
            "helm/medledger-hospital",
            vec!["memberName=Hospital A"],
            "/memberName",
        ),
        (
            "helm/medledger-hospital",
            vec!["memberName=a", "ledgerNode.storage.size=lots"],
            "/ledgerNode/storage/size",
        ),
        (
            "helm/medledger-hospital",
            vec!["memberName=a", "consortium.suite=rsa"],
            "/consortium/suite",
        ),
        (
            "helm/medledger-hospital",
            vec!["memberName=a", "ledgerNode.p2p.serviceType=Ingress"],
            "/ledgerNode/p2p/serviceType",
        ),
    ] {
        let mut args = vec!["template", "x", chart];
        for s in &sets {
            args.extend(["--set", s]);
        }
        let err = helm(&args).unwrap_err().to_string();
        assert!(err.contains(field), "{sets:?}: {err}");
    }
    let err = helm(&["template", "x", "helm/medledger-hospital"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("memberName is required"), "{err}");
}
