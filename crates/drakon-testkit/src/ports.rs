//! Free ports of 127.0.0.1 for the servers tests start. A port is free when we could bind it a moment ago; the
//! server under test binds it a moment later, so callers that can retry on another port do.

use std::net::TcpListener;

/// A port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local address").port()
}

/// A port that is free together with `port + offset`: a Redis Cluster node also binds its data port + 10,000 for
/// the cluster bus, and fails to start when that one is taken.
pub(crate) fn free_port_with(offset: u16) -> u16 {
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().expect("local address").port();
        let Some(other) = port.checked_add(offset) else { continue };
        if TcpListener::bind(("127.0.0.1", other)).is_ok() {
            return port;
        }
    }
    panic!("found no free port p with p + {offset} free too")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_port_comes_with_its_bus_port_free() {
        for _ in 0..20 {
            let port = free_port_with(10_000);
            assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
            assert!(TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok());
        }
    }
}
