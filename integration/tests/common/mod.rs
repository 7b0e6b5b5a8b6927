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

/// The server (0-based) whose address `element` (ADDR or ADDR:PORT) is.
pub fn server_of(lab: &Lab, element: &str) -> usize {
    let ip: IpAddr = element
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| element.parse())
        .unwrap_or_else(|_| panic!("not an element address: {element}"));
    lab.server_hosts
        .iter()
        .position(|h| IpAddr::from(h.v4) == ip || IpAddr::from(h.v6) == ip)
        .unwrap_or_else(|| panic!("{element} is no server"))
}

/// `rsplb flow get CLIENT VIP --json`.
pub fn flow_get(lab: &Lab, client: SocketAddr, vip: &str) -> serde_json::Value {
    let out = lab
        .rsplb
        .on(&["flow", "get", &client.to_string(), vip, "--json"])
        .expect("rsplb flow get");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("flow get --json: {e}: {out}"))
}

/// A file removed when this guard drops (a test's configuration file), however the test ends.
pub struct RemoveOnDrop(pub std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An attached lab whose three servers registered themselves (their `rsplb pe register`
/// sidecars, TCP-checked) into `pool` at the registrar `rsplb run --registrar` embeds, behind the
/// DSR VIP `vip`/tcp on port 80. The sidecars are declared first, so they stop (and deregister)
/// before the lab goes; a test that takes the fields apart binds `lab` before `sidecars` for
/// the same order (locals drop in reverse).
pub struct RegisteredLab {
    pub sidecars: Vec<rsplb_integration::netns::ChildGuard>,
    pub lab: Lab,
    pub vip: SocketAddr,
    /// `ADDR:PORT` of s1..s3's elements.
    pub elements: Vec<String>,
    /// From the sidecars' start until all three were in the dataplane.
    pub took: std::time::Duration,
}

pub fn registered_lab(pool: &str) -> RegisteredLab {
    use rsplb_integration::rserpool::{
        Sidecar, contains_all, start_registrar_daemon, wait_for_elements,
    };
    let mut lab = attached_lab();
    let vip_ip: IpAddr = lab.vip4(0).into();
    lab.rsplb
        .on(&["vip", "add", &vip_str(vip_ip, 80, "tcp"), "--pool", pool])
        .expect("vip add");
    start_registrar_daemon(&mut lab).expect("rsplb run --registrar");
    let sidecar = Sidecar {
        pool,
        port: 80,
        policy: None,
    };
    let sidecars = (0..3)
        .map(|i| sidecar.start(&lab, i).expect("starting a sidecar"))
        .collect();
    let elements: Vec<String> = (0..3).map(|i| element(&lab, i, vip_ip, 80)).collect();
    let took = wait_for_elements(
        &lab.rsplb,
        pool,
        std::time::Duration::from_secs(20),
        "three servers registered",
        |l| Ok(contains_all(l, &elements)),
    )
    .unwrap();
    RegisteredLab {
        sidecars,
        lab,
        vip: SocketAddr::new(vip_ip, 80),
        elements,
        took,
    }
}
