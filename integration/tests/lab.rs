//! The lab tooling itself, without rsplb: namespaces, the bridge, real servers and the client
//! work, and everything is gone afterwards.

use std::net::SocketAddr;

use rsplb_integration::{Lab, LabConfig, client, cmd::ip};

fn lab() -> Lab {
    Lab::build(LabConfig {
        server_bin: Some(env!("CARGO_BIN_EXE_rsplb-testserver").into()),
        ..LabConfig::default()
    })
    .expect("building the lab")
}

#[test]
fn servers_answer_over_the_bridge_and_count_what_they_saw() {
    let lab = lab();
    let ns = lab.client.netns.name().to_string();
    for (i, h) in lab.server_hosts.iter().enumerate() {
        let name = format!("s{}", i + 1);
        let t = client::tcp_burst(&ns, SocketAddr::new(h.v4.into(), 80), 3).unwrap();
        assert_eq!(t.get(&name), 3, "{t}");
        let t = client::tcp_burst(&ns, SocketAddr::new(h.v6.into(), 80), 2).unwrap();
        assert_eq!(t.get(&name), 2, "{t}");
        let t = client::udp_burst(
            &ns,
            lab.client.v4.into(),
            SocketAddr::new(h.v4.into(), 80),
            20000..20005,
        )
        .unwrap();
        assert_eq!(t.get(&name), 5, "{t}");
        let st = lab.servers[i].stats().unwrap();
        assert_eq!(st.name, name);
        assert_eq!(st.port(80).tcp_connections, 5);
        assert_eq!(st.port(80).udp_flows, 5);
    }
}

#[test]
fn dropping_the_lab_removes_every_namespace() {
    let lab = lab();
    let names: Vec<String> = ["client", "lb", "sw", "s1", "s2", "s3"]
        .iter()
        .map(|r| lab.id.netns(r))
        .collect();
    let listed = ip(["netns", "list"]).unwrap();
    for n in &names {
        assert!(listed.contains(n.as_str()), "{n} missing in {listed}");
    }
    drop(lab);
    let listed = ip(["netns", "list"]).unwrap();
    for n in &names {
        assert!(!listed.contains(n.as_str()), "{n} left behind");
    }
}
