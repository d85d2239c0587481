//! Loopback ports for the processes the harness starts, picked before they
//! bind them (and bound again after every restart).

use std::collections::HashSet;
use std::sync::Mutex;

use rand::Rng;

/// Ports handed out by this process: never handed out twice.
static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Below Linux's default ephemeral range (32768-60999), where the kernel
/// puts `bind(0)` and every outbound connection: a port picked there can be
/// taken by a Kafka or HTTP client's connection before the role binds it,
/// or while a killed role is being restarted (seen: "Address already in
/// use" from ingest's `http_listen` in a `meter-bench` run).
const RANGE: std::ops::Range<u16> = 20_000..32_000;

/// A free loopback port that this process has not handed out before,
/// outside the ephemeral range when the system's range allows it.
pub fn free_port() -> anyhow::Result<u16> {
    let mut given = GIVEN.lock().expect("ports lock");
    let given = given.get_or_insert_with(HashSet::new);
    if ephemeral_low().is_some_and(|low| low >= RANGE.end) {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let port = rng.random_range(RANGE);
            if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.insert(port);
                return Ok(port);
            }
        }
    }
    // Whatever the kernel gives (inside the ephemeral range).
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if given.insert(port) {
            return Ok(port);
        }
    }
}

/// The low end of the system's ephemeral port range, if it can be read.
fn ephemeral_low() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable_distinct_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().expect("a port")).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        if ephemeral_low().is_some_and(|low| low >= RANGE.end) {
            assert!(ports.iter().all(|p| RANGE.contains(p)), "{ports:?}");
        }
        for p in ports {
            std::net::TcpListener::bind(("127.0.0.1", p)).expect("still free");
        }
    }
}
