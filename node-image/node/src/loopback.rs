//! Ports on 127.0.0.1 for processes this program starts itself: local consortia (`demo`,
//! `bench`), the etcd reference cluster, and the process-level tests.

use std::collections::BTreeSet;
use std::sync::Mutex;

/// Ports already handed out by this process. A port is only checked free, then closed and
/// bound later by a child; without this set two consortia created at the same moment (tests
/// run in parallel threads) could both be handed the same free port, and one node would then
/// fail with "Address already in use".
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port on 127.0.0.1 that is free now and that this process has not handed out before.
///
/// Chosen below the kernel's ephemeral range (32768 and up by default): a port the kernel
/// handed out for `:0` is free now, but the next outgoing connection of any process may take
/// it before the child binds it. Ports here are never used for outgoing connections; a random
/// start keeps separate processes apart.
pub fn free_port() -> std::io::Result<u16> {
    use rand::Rng;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20_000..32_000);
        if !handed_out.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    handed_out.insert(port);
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_never_handed_out_twice() {
        let ports: Vec<u16> = (0..500).map(|_| free_port().unwrap()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}
