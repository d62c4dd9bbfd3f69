//! The operator as a local process, authenticated as its chart's ServiceAccount, with the
//! arguments and environment of its chart's Deployment: what the chart grants is what is
//! tested.

use crate::cluster::Cluster;
use crate::{ChildGuard, free_port, wait_for};
use anyhow::Context as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Operator {
    child: Option<ChildGuard>,
    pub admin: SocketAddr,
    pub log: PathBuf,
    pub user: String,
    kubeconfig: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    bin: PathBuf,
}

impl Operator {
    /// Starts `bin` as the Deployment `deployment` of namespace `ns` would run it, and waits
    /// until its watches have synced (`/ready`).
    pub async fn start(
        cluster: &Cluster,
        bin: &Path,
        ns: &str,
        deployment: &str,
    ) -> anyhow::Result<Operator> {
        let client = cluster.client().await?;
        let d = Api::<Deployment>::namespaced(client.clone(), ns)
            .get(deployment)
            .await
            .with_context(|| format!("the chart's Deployment {ns}/{deployment}"))?;
        let pod = d.spec.template.spec.context("pod spec")?;
        let sa = pod
            .service_account_name
            .clone()
            .context("serviceAccountName")?;
        let container = pod.containers.first().context("a container")?;
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let args: Vec<String> = container
            .args
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                if a.starts_with("--admin-addr") {
                    format!("--admin-addr={admin}")
                } else {
                    a
                }
            })
            .collect();
        let pod_name = format!("{deployment}-e2e");
        let env: Vec<(String, String)> = container
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| {
                let v = match (e.value, e.value_from.and_then(|f| f.field_ref)) {
                    (Some(v), _) => v,
                    (None, Some(f)) if f.field_path == "metadata.name" => pod_name.clone(),
                    (None, Some(f)) if f.field_path == "metadata.namespace" => ns.to_string(),
                    _ => return None,
                };
                Some((e.name, v))
            })
            .collect();

        // A bound token of the chart's ServiceAccount (TokenRequest API), 2 hours.
        let req: TokenRequest = serde_json::from_value(serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 7200, "audiences": []},
        }))?;
        let token: TokenRequest = Api::<ServiceAccount>::namespaced(client, ns)
            .create_subresource("token", &sa, &PostParams::default(), &req)
            .await
            .with_context(|| format!("TokenRequest for ServiceAccount {ns}/{sa}"))?;
        let token = token.status.context("token status")?.token;
        let admin_kc: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&cluster.kubeconfig)?)?;
        let cluster_entry = &admin_kc["clusters"][0]["cluster"];
        let kubeconfig = cluster.dir.join(format!("operator-{ns}.kubeconfig"));
        let kc = serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "e2e", "cluster": {
                "server": cluster_entry["server"].as_str(),
                "certificate-authority-data": cluster_entry["certificate-authority-data"].as_str(),
            }}],
            "users": [{"name": sa, "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": sa}}],
            "current-context": "e2e",
        });
        write_private(&kubeconfig, &serde_yaml::to_string(&kc)?)?;
        let mut op = Operator {
            child: None,
            admin,
            log: cluster.dir.join("logs/operator.log"),
            user: format!("system:serviceaccount:{ns}:{sa}"),
            kubeconfig,
            args,
            env,
            bin: bin.to_path_buf(),
        };
        op.restart().await?;
        Ok(op)
    }

    /// Starts the process (again), appending to its log, and waits for `/ready`.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.child.take();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        self.child = Some(ChildGuard(child));
        let admin = self.admin;
        wait_for(
            "the operator's /ready",
            Duration::from_secs(60),
            || async move {
                match http_get(admin, "/ready") {
                    Ok((200, _)) => Ok(()),
                    Ok((code, body)) => Err(format!("{code} {body}")),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await
        .with_context(|| format!("operator log: {}", self.log.display()))
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        self.child.take();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid())
    }

    /// Resident memory of the process, in MiB (from /proc).
    pub fn rss_mb(&self) -> Option<f64> {
        proc_status_kb(self.pid()?, "VmRSS:").map(|kb| kb as f64 / 1024.0)
    }

    /// Peak resident memory of the process, in MiB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        proc_status_kb(self.pid()?, "VmHWM:").map(|kb| kb as f64 / 1024.0)
    }

    pub fn metrics(&self) -> anyhow::Result<String> {
        Ok(http_get(self.admin, "/metrics")?.1)
    }
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The token grants the operator's rights: the file is readable by its owner only.
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

/// A plain HTTP/1.0 GET on loopback: (status code, body).
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status line")?;
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    Ok((code, body.to_string()))
}
