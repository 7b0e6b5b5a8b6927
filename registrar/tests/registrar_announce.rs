//! Server announces over real multicast: a registrar and a listener inside a network namespace
//! created for this test (a veth pair, 198.18.213.0/24), the registrar sending on the interface
//! it was told to use. The namespace is removed on every exit path (guard, also on panic).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use rsplb_registrar::config::RegistrarConfig;
use rsplb_registrar::message::AsapMessage;
use rsplb_registrar::shell::Registrar;
use rsplb_registrar::types::{RegistrarId, TransportAddress, TransportUse};
use rsplb_registrar::wire::decode_asap;

mod netns_support;
use netns_support::Netns;

#[test]
fn announces_go_to_the_multicast_group_on_the_chosen_interface() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root: it builds network namespaces"
    );
    let ns = Netns::new("r3ann");
    ns.ip(&[
        "link", "add", "r3a0", "type", "veth", "peer", "name", "r3a1",
    ]);
    ns.ip(&["addr", "add", "198.18.213.1/24", "dev", "r3a0"]);
    ns.ip(&["link", "set", "r3a0", "up"]);
    ns.ip(&["link", "set", "r3a1", "up"]);
    let iface = Ipv4Addr::new(198, 18, 213, 1);
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 0, 0, 50), 3863);
    let ns_ref = &ns;
    std::thread::scope(|s| {
        s.spawn(move || {
            ns_ref.enter();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                // A listener as PEs and PUs run it: bound to the group's port, joined on the
                // interface.
                let sock = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::DGRAM,
                    Some(socket2::Protocol::UDP),
                )
                .unwrap();
                sock.set_reuse_address(true).unwrap();
                sock.bind(&SocketAddr::from(([0, 0, 0, 0], group.port())).into())
                    .unwrap();
                sock.join_multicast_v4(group.ip(), &iface).unwrap();
                sock.set_nonblocking(true).unwrap();
                let listener = tokio::net::UdpSocket::from_std(sock.into()).unwrap();

                let mut c = RegistrarConfig {
                    registrar_id: Some(0x5150),
                    asap_listen: vec![SocketAddr::from((iface, 0))],
                    admin: None,
                    ..RegistrarConfig::default()
                };
                c.announce.interface = Some(iface);
                c.announce.ttl = 1;
                c.announce.interval_ms = 100;
                let r = Registrar::bind(c).await.unwrap();
                let asap = r.asap_addrs()[0];
                let task = tokio::spawn(r.run(std::future::pending()));
                let mut got = 0;
                let mut buf = [0u8; 1500];
                while got < 3 {
                    let (n, from) =
                        tokio::time::timeout(Duration::from_secs(5), listener.recv_from(&mut buf))
                            .await
                            .expect("an announce within 5 s")
                            .unwrap();
                    assert_eq!(from.ip(), iface, "sent from the chosen interface");
                    let m = decode_asap(&buf[..n]).unwrap().message;
                    assert_eq!(
                        m,
                        AsapMessage::ServerAnnounce {
                            server_id: RegistrarId(0x5150),
                            transports: vec![TransportAddress::Tcp {
                                port: asap.port(),
                                transport_use: TransportUse::DataOnly,
                                addr: iface.into(),
                            }],
                        }
                    );
                    got += 1;
                }
                task.abort();
            });
        });
    });
}
