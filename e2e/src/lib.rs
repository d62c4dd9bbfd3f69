//! Harness of the end-to-end tests and the scale benchmark: a real control plane
//! (`e2e/cluster`), Helm, the operator run as a local process with its chart's
//! ServiceAccount token, and real `medledger node` processes started from what the operator
//! rendered. Every process started here is stopped by a Drop guard, and every cluster also
//! has a watchdog that takes it down when the test process dies.

pub mod cluster;
pub mod hospital;
pub mod ledger;
pub mod operator;
pub mod wait;

use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub use cluster::Cluster;
pub use operator::Operator;
pub use wait::wait_for;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ is inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory (where the binaries under test are built).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Paths of the pinned tools, as `e2e/tools.sh` prints them.
#[derive(Debug, Clone)]
pub struct Tools {
    pub kubectl: PathBuf,
    pub helm: PathBuf,
}

/// Builds the tools once per process (a no-op when cached); fails with what to do.
pub fn tools() -> anyhow::Result<&'static Tools> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    TOOLS
        .get_or_init(|| load_tools().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn load_tools() -> anyhow::Result<Tools> {
    let script = repo_root().join("e2e/tools.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed (see its messages above): the e2e tests need Go, the Go module proxy and crates.io to build the pinned control plane once",
            script.display()
        );
    }
    let vars: BTreeMap<String, PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
        .collect();
    let get = |k: &str| {
        vars.get(k)
            .cloned()
            .with_context(|| format!("{} printed no {k}", script.display()))
    };
    Ok(Tools {
        kubectl: get("KUBECTL")?,
        helm: get("HELM")?,
    })
}

/// Paths of the workspace binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub operator: PathBuf,
    pub medledger: PathBuf,
}

/// Builds `medledger-operator` and `medledger` (`cargo build --workspace --bins`, the same
/// selection every time so cargo's cache is reused); with `release`, only the operator, for
/// the benchmark.
pub fn binaries(release: bool) -> anyhow::Result<Binaries> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root()).arg("build");
    if release {
        // The benchmark measures the operator only.
        cmd.args([
            "--release",
            "-p",
            "medledger-operator",
            "--bin",
            "medledger-operator",
        ]);
    } else {
        cmd.args(["--workspace", "--bins"]);
    }
    let status = cmd.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build of the binaries under test failed");
    }
    let dir = target_dir().join(if release { "release" } else { "debug" });
    Ok(Binaries {
        operator: dir.join("medledger-operator"),
        medledger: dir.join("medledger"),
    })
}

/// Runs a command, returning stdout; the error carries stderr (commands here never print
/// secrets: helm and kubectl are not asked for Secret contents).
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{:?} failed: {}{}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A free TCP port on 127.0.0.1 that no other test of this process was given (the listener is
/// closed before the port is used; see `medledger::loopback`).
pub fn free_port() -> u16 {
    medledger::loopback::free_port().expect("loopback has free ports")
}

/// Kills a child process on drop (SIGKILL), so a failed test leaves nothing running.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
