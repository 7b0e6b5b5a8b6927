//! Documents (and checks) what the lab relies on: a frame that an XDP program sends back out of a
//! veth with XDP_TX reaches the peer only when the peer runs NAPI, i.e. when GRO is on for the
//! peer (`ethtool -K <peer> gro on`) or an XDP program (even XDP_PASS) is attached to it.
//! Without either, the veth drops the frame and counts it as an XDP_TX error.

use std::net::{SocketAddr, UdpSocket};

use rsplb_integration::{LabId, Netns, xdp_tools::LabXdp};

/// Sum of the `ethtool -S` statistics of `iface` whose name contains `key`.
fn ethtool_stat(ns: &Netns, iface: &str, key: &str) -> u64 {
    let out = ns.exec("ethtool", &["-S", iface]).expect("ethtool -S");
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().ends_with(key))
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// Reflects `count` datagrams off `a0` (XDP_TX) and returns (frames `a0` transmitted to its peer
/// `b0`, XDP_TX errors counted at `a0`).
fn reflect(peer_setup: &str, count: u16) -> (u64, u64) {
    let id = LabId::next();
    let k = id.subnet();
    let a = Netns::create(&id.netns("a")).unwrap();
    let b = Netns::create(&id.netns("b")).unwrap();
    a.ip(&[
        "link",
        "add",
        "a0",
        "type",
        "veth",
        "peer",
        "name",
        "b0",
        "netns",
        b.name(),
    ])
    .unwrap();
    a.ip(&["link", "set", "a0", "address", "02:72:00:00:00:01"])
        .unwrap();
    a.ip(&["addr", "add", &format!("198.18.{k}.1/24"), "dev", "a0"])
        .unwrap();
    b.ip(&["addr", "add", &format!("198.18.{k}.2/24"), "dev", "b0"])
        .unwrap();
    a.ip(&["link", "set", "a0", "up"]).unwrap();
    b.ip(&["link", "set", "b0", "up"]).unwrap();
    // a0 reflects everything, ARP included: give b0 a static neighbour entry.
    b.ip(&[
        "neigh",
        "replace",
        &format!("198.18.{k}.1"),
        "lladdr",
        "02:72:00:00:00:01",
        "dev",
        "b0",
        "nud",
        "permanent",
    ])
    .unwrap();
    let _tx = LabXdp::attach(a.name(), "a0", "lab_tx").unwrap();
    let _peer_prog = match peer_setup {
        "gro" => {
            b.exec("ethtool", &["-K", "b0", "gro", "on"]).unwrap();
            None
        }
        "xdp_pass" => Some(LabXdp::attach(b.name(), "b0", "lab_pass").unwrap()),
        _ => {
            b.exec("ethtool", &["-K", "b0", "gro", "off"]).unwrap();
            None
        }
    };
    let dst: SocketAddr = format!("198.18.{k}.1:9").parse().unwrap();
    rsplb_integration::in_netns(b.name(), move || {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        for _ in 0..count {
            s.send_to(b"reflect me", dst)?;
        }
        Ok(())
    })
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let sent = ethtool_stat(&a, "a0", "_xdp_tx");
    let errors = ethtool_stat(&a, "a0", "_xdp_tx_errors");
    (sent, errors)
}

#[test]
fn xdp_tx_on_a_veth_needs_napi_on_its_peer() {
    let (rx, err) = reflect("none", 100);
    assert_eq!(
        rx, 0,
        "without NAPI on the peer nothing should be transmitted"
    );
    assert!(
        err >= 100,
        "without NAPI on the peer XDP_TX fails: {err} errors"
    );

    let (rx, err) = reflect("gro", 100);
    assert!(rx >= 100, "GRO on the peer: {rx} frames transmitted");
    assert_eq!(err, 0);

    let (rx, err) = reflect("xdp_pass", 100);
    assert!(rx >= 100, "XDP_PASS on the peer: {rx} frames transmitted");
    assert_eq!(err, 0);
}
