//! One control plane started by `e2e/cluster up`, stopped by `down` when dropped.

use crate::{repo_root, run, tools};
use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Cluster {
    pub name: String,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    /// Starts a control plane with `nodes` kwok nodes and `volumes` PersistentVolumes in
    /// `target/e2e/<name>`. Blocking (tens of seconds).
    pub fn up(name: &str, nodes: u32, volumes: u32) -> anyhow::Result<Cluster> {
        tools()?;
        let dir = crate::target_dir().join("e2e").join(name);
        // A run that was killed may have left its state; its watchdog stopped the processes.
        let _ = Command::new(repo_root().join("e2e/cluster"))
            .args(["down", "--dir"])
            .arg(&dir)
            .output();
        let out = run(Command::new(repo_root().join("e2e/cluster"))
            .args(["up", "--dir"])
            .arg(&dir)
            .args(["--nodes", &nodes.to_string()])
            .args(["--volumes", &volumes.to_string()])
            .args(["--watch-pid", &std::process::id().to_string()])
            .stderr(std::process::Stdio::inherit()))
        .with_context(|| {
            format!(
                "cluster {name} did not start (logs in {}/logs)",
                dir.display()
            )
        })?;
        let kubeconfig = PathBuf::from(out.trim());
        Ok(Cluster {
            name: name.to_string(),
            dir,
            kubeconfig,
        })
    }

    /// Starts several clusters at once (their start-up is mostly waiting).
    pub fn up_many(names: &[&str], nodes: u32, volumes: u32) -> anyhow::Result<Vec<Cluster>> {
        tools()?;
        std::thread::scope(|s| {
            let handles: Vec<_> = names
                .iter()
                .map(|n| s.spawn(move || Cluster::up(n, nodes, volumes)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("cluster start-up thread"))
                .collect()
        })
    }

    /// A cluster-admin client.
    pub async fn client(&self) -> anyhow::Result<Client> {
        client_from(&self.kubeconfig).await
    }

    pub fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new(&tools()?.helm)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args))
    }

    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new(&tools()?.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args))
    }

    /// Ensures at least `n` PersistentVolumes exist (kwok provisions none).
    pub fn ensure_volumes(&self, n: u32) -> anyhow::Result<()> {
        run(Command::new(repo_root().join("e2e/cluster"))
            .args(["volumes", &n.to_string(), "--dir"])
            .arg(&self.dir))
        .map(|_| ())
    }

    /// Creates (or updates) a namespace whose pods must meet Pod Security "restricted".
    pub async fn restricted_namespace(&self, name: &str) -> anyhow::Result<()> {
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }},
        }))?;
        Api::<Namespace>::all(self.client().await?)
            .patch(
                name,
                &PatchParams::apply("medledger-e2e").force(),
                &Patch::Apply(&ns),
            )
            .await
            .with_context(|| format!("cannot create namespace {name}"))?;
        Ok(())
    }

    /// The API writes (create, update, patch, delete) made by `user` so far, from the audit
    /// log: `(verb, resource, namespace/name)`.
    pub fn writes_by(&self, user: &str) -> anyhow::Result<Vec<(String, String, String)>> {
        let log = std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        let mut writes = Vec::new();
        for line in log.lines() {
            let Ok(ev) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if ev["stage"] != "ResponseComplete" || ev["user"]["username"] != user {
                continue;
            }
            let r = &ev["objectRef"];
            let sub = r["subresource"]
                .as_str()
                .map(|s| format!("/{s}"))
                .unwrap_or_default();
            writes.push((
                ev["verb"].as_str().unwrap_or_default().to_string(),
                format!("{}{sub}", r["resource"].as_str().unwrap_or_default()),
                format!(
                    "{}/{}",
                    r["namespace"].as_str().unwrap_or_default(),
                    r["name"].as_str().unwrap_or_default()
                ),
            ));
        }
        Ok(writes)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::env::var_os("MEDLEDGER_E2E_KEEP").is_some() {
            eprintln!(
                "e2e: keeping cluster {} (KUBECONFIG={}); stop it with e2e/cluster down --dir {}",
                self.name,
                self.kubeconfig.display(),
                self.dir.display()
            );
            return;
        }
        let _ = Command::new(repo_root().join("e2e/cluster"))
            .args(["down", "--keep-logs", "--dir"])
            .arg(&self.dir)
            .output();
        if std::thread::panicking() {
            eprintln!(
                "e2e: logs of cluster {} are in {}/logs",
                self.name,
                self.dir.display()
            );
        }
    }
}

pub async fn client_from(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Minimal stand-ins for the Prometheus Operator CRDs (ServiceMonitor, PrometheusRule), so the
/// chart's monitoring objects and the operator's ServiceMonitors go through real admission
/// and RBAC. Their schemas accept anything: the real CRDs validate more.
pub fn monitoring_crds() -> String {
    ["ServiceMonitor", "PrometheusRule"]
        .iter()
        .map(|kind| {
            let plural = format!("{}s", kind.to_lowercase());
            format!(
                "---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {{kind: {kind}, plural: {plural}, singular: {singular}, listKind: {kind}List}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
",
                singular = kind.to_lowercase()
            )
        })
        .collect()
}
