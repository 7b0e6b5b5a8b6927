//! An operation scope in memory: several registrar cores, an ENRP network between them that
//! can lose registrars and cut links, pool elements that answer keep-alives, and one fake clock.
//! Every message goes through the real encoder and decoder.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rserpool_proto::config::CoreConfig;
use rserpool_proto::core::{
    Action, EnrpDest, EnrpSource, Event, HandlespaceEvent, PeerId, PeerInfo, RegistrarCore,
};
use rserpool_proto::message::AsapMessage;
use rserpool_proto::types::{
    PeId, Policy, PoolElement, PoolHandle, RegistrarId, ServerInformation, TransportAddress,
    TransportUse,
};
use rserpool_proto::wire::{decode_asap, encode_asap};

pub const ENRP_PORT: u16 = 9901;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn ph(s: &str) -> PoolHandle {
    s.parse().unwrap()
}

/// Registrar `i`'s address (198.18.0.i+1).
pub fn reg_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, i as u8 + 1))
}

/// Registrar `i`'s authenticated identity on its connections (as TLS would report it).
pub fn reg_identity(i: usize) -> String {
    format!("pr{i}.scope.test")
}

pub fn endpoint(i: usize) -> TransportAddress {
    TransportAddress::Tcp {
        port: ENRP_PORT,
        transport_use: TransportUse::DataOnly,
        addr: reg_ip(i),
    }
}

/// A pool element of host `host` (198.18.1.host), identifier `id`.
pub fn element(host: u8, id: u32, policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: RegistrarId(0),
        registration_life_ms: 60_000,
        user_transport: TransportAddress::Tcp {
            port: 80,
            transport_use: TransportUse::DataOnly,
            addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, host)),
        },
        policy,
        asap_transport: None,
    }
}

pub struct Node {
    pub core: RegistrarCore,
    pub id: RegistrarId,
    /// Every handlespace event this registrar emitted.
    pub events: Vec<HandlespaceEvent>,
    /// ASAP answers to pool elements (peer id -> decoded messages).
    pub asap_out: BTreeMap<u64, Vec<AsapMessage>>,
    /// ENRP messages sent, by destination, as decoded (for assertions).
    pub enrp_out: Vec<(EnrpDest, Vec<u8>)>,
    /// ASAP associations the registrar asked the shell to open (`Action::Connect`).
    pub connects: Vec<TransportAddress>,
}

struct InFlight {
    from: usize,
    to: usize,
    source: EnrpSource,
    bytes: Vec<u8>,
}

pub struct Scope {
    pub nodes: Vec<Node>,
    pub now: Instant,
    pub t0: Instant,
    /// Registrars that are dead (nothing in, nothing out, no timers).
    pub down: HashSet<usize>,
    /// Links that drop everything (both directions).
    pub cut: HashSet<(usize, usize)>,
    queue: VecDeque<InFlight>,
    /// ASAP peers (pool elements) that answer keep-alives, by (registrar, peer id).
    pub acking: HashSet<(usize, u64)>,
    next_asap_peer: u64,
}

/// The configuration every registrar of a test scope gets: static peers are the others.
pub fn scope_config(n: usize, i: usize) -> CoreConfig {
    let mut c = CoreConfig {
        announce_interval: None,
        ..CoreConfig::default()
    };
    c.enrp.listen = vec![SocketAddr::new(reg_ip(i), ENRP_PORT)];
    c.enrp.peers = (0..n)
        .filter(|j| *j != i)
        .map(|j| SocketAddr::new(reg_ip(j), ENRP_PORT))
        .collect();
    c
}

impl Scope {
    /// `n` registrars with ids 100 + i, each configured by `config(i)`.
    pub fn new(n: usize, config: impl Fn(usize) -> CoreConfig) -> Self {
        let t0 = Instant::now();
        let nodes = (0..n).map(|i| Self::make_node(i, config(i), t0)).collect();
        Self {
            nodes,
            now: t0,
            t0,
            down: HashSet::new(),
            cut: HashSet::new(),
            queue: VecDeque::new(),
            acking: HashSet::new(),
            next_asap_peer: 1,
        }
    }

    fn make_node(i: usize, config: CoreConfig, now: Instant) -> Node {
        config.validate().unwrap();
        let id = RegistrarId(100 + i as u32);
        let enabled = config.enrp.enabled();
        let mut core = RegistrarCore::new(config, id, Vec::new(), now, 7 + i as u64);
        if enabled {
            core.enable_enrp(
                ServerInformation {
                    id,
                    transport: endpoint(i),
                },
                now,
            );
        }
        Node {
            core,
            id,
            events: Vec::new(),
            asap_out: BTreeMap::new(),
            enrp_out: Vec::new(),
            connects: Vec::new(),
        }
    }

    /// Add registrar `i` = nodes.len() (a late joiner) configured by `config`.
    pub fn add(&mut self, config: CoreConfig) -> usize {
        let i = self.nodes.len();
        self.nodes.push(Self::make_node(i, config, self.now));
        i
    }

    /// Replace registrar `i` with a fresh one (a restart) configured by `config`.
    pub fn restart(&mut self, i: usize, config: CoreConfig) {
        self.nodes[i] = Self::make_node(i, config, self.now);
        self.down.remove(&i);
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        !self.down.contains(&a)
            && !self.down.contains(&b)
            && !self.cut.contains(&(a, b))
            && !self.cut.contains(&(b, a))
    }

    /// Collect the actions of registrar `i`: ENRP goes into flight, the rest is recorded.
    fn collect(&mut self, i: usize) {
        while let Some(a) = self.nodes[i].core.poll_action() {
            match a {
                Action::SendEnrp { to, bytes } => {
                    self.nodes[i].enrp_out.push((to.clone(), bytes.clone()));
                    match to {
                        EnrpDest::Endpoint(t) => {
                            if let Some(j) = (0..self.nodes.len()).find(|j| endpoint(*j) == t) {
                                self.queue.push_back(InFlight {
                                    from: i,
                                    to: j,
                                    source: EnrpSource::Connection {
                                        conn: PeerId(((i as u64) << 16) | j as u64),
                                        remote: SocketAddr::new(reg_ip(i), 50_000),
                                        identity: Some(reg_identity(i)),
                                    },
                                    bytes,
                                });
                            }
                        }
                        EnrpDest::Connection(PeerId(c)) => {
                            // The connection (a -> b) as the receiver b named it; answers go to a.
                            let a = (c >> 16) as usize;
                            self.queue.push_back(InFlight {
                                from: i,
                                to: a,
                                source: EnrpSource::Connection {
                                    conn: PeerId(((i as u64) << 16) | a as u64),
                                    remote: SocketAddr::new(reg_ip(i), ENRP_PORT),
                                    identity: Some(reg_identity(i)),
                                },
                                bytes,
                            });
                        }
                        EnrpDest::Multicast => {
                            for j in 0..self.nodes.len() {
                                if j != i {
                                    self.queue.push_back(InFlight {
                                        from: i,
                                        to: j,
                                        source: EnrpSource::Datagram {
                                            from: SocketAddr::new(reg_ip(i), ENRP_PORT),
                                        },
                                        bytes: bytes.clone(),
                                    });
                                }
                            }
                        }
                    }
                }
                Action::Send { peer, bytes } => {
                    let m = decode_asap(&bytes).unwrap().message;
                    self.nodes[i].asap_out.entry(peer.0).or_default().push(m);
                }
                Action::Notify(ev) => self.nodes[i].events.push(ev),
                Action::Connect { transport } => self.nodes[i].connects.push(transport),
                Action::Close { .. } | Action::Announce { .. } => {}
            }
        }
    }

    /// Deliver what is in flight (and what that causes) until the network is quiet.
    pub fn settle(&mut self) {
        for _ in 0..1_000_000 {
            let Some(m) = self.queue.pop_front() else {
                self.answer_keepalives();
                if self.queue.is_empty() {
                    return;
                }
                continue;
            };
            if !self.linked(m.from, m.to) {
                continue;
            }
            self.nodes[m.to].core.handle_event(
                self.now,
                Event::Enrp {
                    source: m.source,
                    bytes: m.bytes,
                },
            );
            self.collect(m.to);
        }
        panic!("the scope never settles");
    }

    /// Pool elements answer keep-alives they were sent (only those in `acking`).
    fn answer_keepalives(&mut self) {
        for i in 0..self.nodes.len() {
            if self.down.contains(&i) {
                continue;
            }
            let peers: Vec<u64> = self.nodes[i].asap_out.keys().copied().collect();
            for p in peers {
                if !self.acking.contains(&(i, p)) {
                    continue;
                }
                let msgs = std::mem::take(self.nodes[i].asap_out.get_mut(&p).unwrap());
                for m in msgs {
                    if let AsapMessage::EndpointKeepAlive {
                        pool_handle, id, ..
                    } = m
                    {
                        let ack = AsapMessage::EndpointKeepAliveAck { pool_handle, id };
                        self.nodes[i].core.handle_event(
                            self.now,
                            Event::Message {
                                peer: PeerId(p),
                                bytes: encode_asap(&ack).unwrap(),
                            },
                        );
                        self.collect(i);
                    }
                }
            }
        }
    }

    /// Run the clock forward by `d` in 5 ms steps, firing timers and delivering everything.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        self.settle();
        while self.now < end {
            self.now = (self.now + ms(5)).min(end);
            for i in 0..self.nodes.len() {
                if self.down.contains(&i) {
                    continue;
                }
                if self.nodes[i]
                    .core
                    .poll_timeout()
                    .is_some_and(|t| t <= self.now)
                {
                    self.nodes[i].core.handle_timeout(self.now);
                    self.collect(i);
                }
            }
            self.settle();
        }
    }

    /// Run until `cond` holds, at most `limit`; returns the time it took.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Scope) -> bool) -> Duration {
        let start = self.now;
        while !cond(self) {
            assert!(
                self.now - start < limit,
                "condition not reached within {limit:?}"
            );
            self.run(ms(5));
        }
        self.now - start
    }

    /// A pool element connects to registrar `i` (and answers its keep-alives); returns its
    /// ASAP peer id.
    pub fn pe_connect(&mut self, i: usize, host: u8) -> u64 {
        let peer = self.next_asap_peer;
        let info = PeerInfo::tcp(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(198, 18, 1, host)),
            40_000 + peer as u16,
        ));
        self.asap_peer(i, info)
    }

    /// An ASAP peer of registrar `i` over SCTP from `addrs` (several: multi-homed) and `port`.
    pub fn pe_connect_sctp(&mut self, i: usize, addrs: &[IpAddr], port: u16) -> u64 {
        let info = PeerInfo {
            protocol: rserpool_proto::types::TransportProtocol::Sctp,
            remote_addrs: addrs.to_vec(),
            remote_port: port,
            identity: None,
        };
        self.asap_peer(i, info)
    }

    /// The next ASAP peer connects to registrar `i` as `info` says (and answers its keep-alives).
    fn asap_peer(&mut self, i: usize, info: PeerInfo) -> u64 {
        let peer = self.next_asap_peer;
        self.next_asap_peer += 1;
        self.nodes[i].core.handle_event(
            self.now,
            Event::Connected {
                peer: PeerId(peer),
                info,
            },
        );
        self.collect(i);
        self.acking.insert((i, peer));
        peer
    }

    /// Register `element` in `pool` at registrar `i` over ASAP peer `peer`; returns the answer.
    pub fn register(
        &mut self,
        i: usize,
        peer: u64,
        pool: &str,
        element: PoolElement,
    ) -> AsapMessage {
        let msg = AsapMessage::Registration {
            pool_handle: ph(pool),
            element,
        };
        self.nodes[i].core.handle_event(
            self.now,
            Event::Message {
                peer: PeerId(peer),
                bytes: encode_asap(&msg).unwrap(),
            },
        );
        self.collect(i);
        let answer = self.nodes[i]
            .asap_out
            .get_mut(&peer)
            .and_then(|v| {
                let pos = v
                    .iter()
                    .position(|m| matches!(m, AsapMessage::RegistrationResponse { .. }))?;
                Some(v.remove(pos))
            })
            .expect("a registration response");
        self.settle();
        answer
    }

    pub fn deregister(&mut self, i: usize, peer: u64, pool: &str, id: u32) {
        let msg = AsapMessage::Deregistration {
            pool_handle: ph(pool),
            id: PeId(id),
        };
        self.nodes[i].core.handle_event(
            self.now,
            Event::Message {
                peer: PeerId(peer),
                bytes: encode_asap(&msg).unwrap(),
            },
        );
        self.collect(i);
        self.settle();
    }

    /// Feed raw ENRP bytes to registrar `to` as if sent over a connection from `from_ip`.
    pub fn inject(&mut self, to: usize, conn: u64, bytes: Vec<u8>) {
        let source = EnrpSource::Connection {
            conn: PeerId(conn),
            remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 50_000),
            identity: None,
        };
        self.nodes[to]
            .core
            .handle_event(self.now, Event::Enrp { source, bytes });
        self.collect(to);
    }

    /// Every element of registrar `i`'s handlespace: (pool, id, owner).
    pub fn view(&self, i: usize) -> Vec<(String, u32, u32)> {
        let hs = self.nodes[i].core.handlespace();
        let mut v: Vec<(String, u32, u32)> = hs
            .pools()
            .flat_map(|(h, p)| {
                p.elements()
                    .map(move |e| (h.to_string(), e.id().0, e.owner().0))
            })
            .collect();
        v.sort();
        v
    }

    /// The PE checksums registrar `i` holds for every registrar of the scope.
    pub fn checksums(&self, i: usize) -> Vec<u16> {
        let hs = self.nodes[i].core.handlespace();
        self.nodes.iter().map(|n| hs.checksum(n.id)).collect()
    }

    pub fn serving_all(&self) -> bool {
        (0..self.nodes.len())
            .filter(|i| !self.down.contains(i))
            .all(|i| self.nodes[i].core.serving())
    }

    /// Removals any registrar emitted since the start.
    pub fn removals(&self, i: usize) -> usize {
        self.nodes[i]
            .events
            .iter()
            .filter(|e| matches!(e, HandlespaceEvent::ElementRemoved { .. }))
            .count()
    }
}
