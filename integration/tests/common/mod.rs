//! Helpers shared by the integration tests: a lab with rsplb attached and a pool of servers.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

use rsplb_integration::{Lab, LabConfig, Tally};

/// A lab whose servers listen on 80 and 8080, with rsplb attached to the balancer's veth in
/// native mode.
pub fn attached_lab() -> Lab {
    let mut lab = Lab::build(LabConfig {
        ports: vec![80, 8080],
        server_bin: Some(env!("CARGO_BIN_EXE_rsplb-testserver").into()),
        ..LabConfig::default()
    })
    .expect("building the lab");
    lab.attach(&[]).expect("rsplb attach");
    lab
}

/// `ADDR:PORT/PROTO` as rsplb writes a VIP.
pub fn vip_str(addr: IpAddr, port: u16, proto: &str) -> String {
    format!("{}/{proto}", SocketAddr::new(addr, port))
}

/// `ADDR:PORT` of server `i` (0-based) in the family of `like`.
pub fn element(lab: &Lab, i: usize, like: IpAddr, port: u16) -> String {
    let h = &lab.server_hosts[i];
    let a: IpAddr = if like.is_ipv4() {
        h.v4.into()
    } else {
        h.v6.into()
    };
    SocketAddr::new(a, port).to_string()
}

/// Adds servers s1..sN to `pool` with `weights`, for VIP addresses of `like`'s family.
pub fn add_pool(lab: &Lab, pool: &str, like: IpAddr, port: u16, weights: &[u32]) {
    for (i, &w) in weights.iter().enumerate() {
        lab.rsplb
            .element_add(pool, &element(lab, i, like, port), w)
            .expect("element add");
    }
}

/// Counts per server s1..sN in a tally, in order.
pub fn counts(t: &Tally, n: usize) -> Vec<u64> {
    (1..=n).map(|i| t.get(&format!("s{i}"))).collect()
}

/// The client's own address in `like`'s family.
pub fn client_addr(lab: &Lab, like: IpAddr) -> IpAddr {
    if like.is_ipv4() {
        lab.client.v4.into()
    } else {
        lab.client.v6.into()
    }
}

/// The balancer's own address in `like`'s family: its SNAT address in NAT mode.
pub fn snat_addr(lab: &Lab, like: IpAddr) -> String {
    if like.is_ipv4() {
        lab.lb.v4.to_string()
    } else {
        lab.lb.v6.to_string()
    }
}

/// Adds a TCP and a UDP VIP `addr:port` on `pool` in `mode` (`dsr` or `nat`, SNAT = the balancer's
/// address).
pub fn add_vips(lab: &Lab, addr: IpAddr, port: u16, pool: &str, mode: &str) {
    let snat = snat_addr(lab, addr);
    let snat = (mode == "nat").then_some(snat.as_str());
    for proto in ["tcp", "udp"] {
        lab.rsplb
            .vip_add(&vip_str(addr, port, proto), pool, mode, snat)
            .expect("vip add");
    }
}

/// A file removed when this guard drops (a test's configuration file), however the test ends.
pub struct RemoveOnDrop(pub std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
