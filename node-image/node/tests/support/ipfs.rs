//! A private IPFS network for tests: one kubo daemon (swarm.key, loopback only, no
//! bootstrap, no MDNS, no routing, no telemetry) and one ipfs-cluster-service beside it
//! (CRDT consensus, generated secret, REST API on loopback, IPFS connector on the kubo
//! RPC). The binaries come from node-image/scripts/ipfs-tools.sh, which builds them once
//! from their Go modules and caches them. Processes are killed and the directory removed
//! when the [`IpfsNet`] is dropped, also when a test fails.
#![allow(dead_code)]

use rand::RngCore;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a daemon may take to become ready.
const READY: Duration = Duration::from_secs(90);

/// Builds (first run) or finds (later runs) the IPFS tools; returns their directory.
pub fn tools() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ipfs-tools.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    match out.status.code() {
        Some(0) => {}
        Some(2) => panic!(
            "the IPFS tests need Go to build kubo and ipfs-cluster once: install Go >= 1.24 and rerun"
        ),
        _ => panic!(
            "{} failed ({}); its messages are above",
            script.display(),
            out.status
        ),
    }
    let stdout = String::from_utf8(out.stdout).expect("script prints a path");
    PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("script prints the bin dir")
            .trim(),
    )
}

/// A child process killed (and reaped) on drop.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Daemon {
        let file = std::fs::File::create(&log).unwrap();
        cmd.stdout(file.try_clone().unwrap()).stderr(file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon { name, child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready()` holds, failing fast with the log if the process exits.
    fn wait_until(&mut self, what: &str, mut ready: impl FnMut(&Daemon) -> bool) {
        let start = Instant::now();
        while !ready(self) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before {what}; its log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < READY,
                "{} not {what} within {READY:?}; its log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a setup command to completion, panicking with its output if it fails.
fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// kubo's API multiaddr `/ip4/127.0.0.1/tcp/PORT` as a URL.
fn multiaddr_to_url(addr: &str) -> String {
    let parts: Vec<&str> = addr.trim().split('/').collect();
    match parts.as_slice() {
        ["", "ip4", ip, "tcp", port] => format!("http://{ip}:{port}"),
        _ => panic!("unexpected kubo API address {addr:?}"),
    }
}

pub struct IpfsNet {
    // Field order is drop order: the cluster goes before the kubo it talks to, and the
    // directory goes last.
    cluster: Daemon,
    kubo: Daemon,
    pub kubo_url: String,
    pub cluster_url: String,
    dir: tempfile::TempDir,
}

impl IpfsNet {
    pub fn start() -> IpfsNet {
        let bin = tools();
        let dir = tempfile::tempdir().unwrap();
        let (kubo, kubo_api) = start_kubo(&bin, dir.path());
        let (cluster, cluster_url) = start_cluster(&bin, dir.path(), &kubo_api);
        IpfsNet {
            cluster,
            kubo,
            kubo_url: multiaddr_to_url(&kubo_api),
            cluster_url,
            dir,
        }
    }

    pub fn kubo_log(&self) -> String {
        self.kubo.log_text()
    }

    pub fn cluster_log(&self) -> String {
        self.cluster.log_text()
    }
}

fn kubo_cmd(bin: &Path, repo: &Path) -> Command {
    let mut cmd = Command::new(bin.join("ipfs"));
    cmd.env("IPFS_PATH", repo)
        // Private network only: refuse to start without the swarm key.
        .env("LIBP2P_FORCE_PNET", "1")
        // Nothing leaves this machine.
        .env("IPFS_TELEMETRY", "off")
        .stdin(Stdio::null());
    cmd
}

/// Returns the daemon and its RPC API multiaddr.
fn start_kubo(bin: &Path, dir: &Path) -> (Daemon, String) {
    let repo = dir.join("kubo");
    // The `test` profile: loopback addresses on port 0, no bootstrap peers, no MDNS,
    // AutoConf off.
    let mut init = kubo_cmd(bin, &repo);
    init.args(["init", "--profile=test"]);
    run(init, "ipfs init");
    for args in [
        &["config", "Routing.Type", "none"][..],
        // Shared TCP/WebSocket listeners are not supported under a private network.
        &[
            "config",
            "--json",
            "Swarm.Transports.Network.Websocket",
            "false",
        ],
    ] {
        let mut cmd = kubo_cmd(bin, &repo);
        cmd.args(args);
        run(cmd, &format!("ipfs {}", args.join(" ")));
    }
    std::fs::write(
        repo.join("swarm.key"),
        format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", random_hex()),
    )
    .unwrap();
    let mut daemon = kubo_cmd(bin, &repo);
    daemon.arg("daemon");
    let mut kubo = Daemon::spawn("kubo", daemon, dir.join("kubo.log"));
    // The `api` file appears once the RPC listener is bound; "Daemon is ready" once all is.
    kubo.wait_until("ready", |d| d.log_text().contains("Daemon is ready"));
    assert!(
        kubo.log_text()
            .contains("Swarm is limited to private network"),
        "kubo is not on a private network:\n{}",
        kubo.log_text()
    );
    let api = std::fs::read_to_string(repo.join("api")).expect("kubo wrote its api file");
    (kubo, api.trim().to_string())
}

/// Returns the daemon and its REST API URL.
fn start_cluster(bin: &Path, dir: &Path, kubo_api: &str) -> (Daemon, String) {
    let repo = dir.join("cluster");
    let mut init = Command::new(bin.join("ipfs-cluster-service"));
    init.env("IPFS_CLUSTER_PATH", &repo)
        .env("CLUSTER_SECRET", random_hex())
        .args(["init", "--consensus", "crdt"]);
    run(init, "ipfs-cluster-service init");

    let path = repo.join("service.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let [swarm, rest, proxy, pinsvc] =
        [(); 4].map(|_| medledger::loopback::free_port().expect("a free loopback port"));
    let tcp = |port: u16| format!("/ip4/127.0.0.1/tcp/{port}");
    cfg["cluster"]["peername"] = "medledger-test".into();
    cfg["cluster"]["listen_multiaddress"] = serde_json::json!([tcp(swarm)]);
    cfg["cluster"]["mdns_interval"] = "0s".into();
    cfg["cluster"]["enable_relay_hop"] = false.into();
    cfg["api"]["restapi"]["http_listen_multiaddress"] = tcp(rest).into();
    cfg["api"]["ipfsproxy"]["listen_multiaddress"] = tcp(proxy).into();
    cfg["api"]["ipfsproxy"]["node_multiaddress"] = kubo_api.into();
    cfg["api"]["pinsvcapi"]["http_listen_multiaddress"] = tcp(pinsvc).into();
    cfg["ipfs_connector"]["ipfshttp"]["node_multiaddress"] = kubo_api.into();
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();

    let mut daemon = Command::new(bin.join("ipfs-cluster-service"));
    daemon
        .env("IPFS_CLUSTER_PATH", &repo)
        .arg("daemon")
        .stdin(Stdio::null());
    let mut cluster = Daemon::spawn("ipfs-cluster-service", daemon, dir.join("cluster.log"));
    cluster.wait_until("ready", |d| d.log_text().contains("IPFS Cluster is READY"));
    (cluster, format!("http://127.0.0.1:{rest}"))
}
