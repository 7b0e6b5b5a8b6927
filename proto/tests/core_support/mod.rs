//! A harness for the I/O-free registrar core: a fake clock, peers as numbers, decoded answers.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rserpool_proto::config::CoreConfig;
use rserpool_proto::core::{Action, Event, HandlespaceEvent, PeerId, PeerInfo, RegistrarCore};
use rserpool_proto::message::AsapMessage;
use rserpool_proto::types::{
    CauseCode, ErrorCause, PeId, Policy, PoolElement, PoolHandle, RegistrarId, TransportAddress,
    TransportUse,
};
use rserpool_proto::wire::{decode_asap, encode_asap};

pub const ID: RegistrarId = RegistrarId(0x0102_0304);

pub struct Harness {
    pub core: RegistrarCore,
    pub now: Instant,
    pub t0: Instant,
    /// Every action since the last `take`.
    pub actions: Vec<Action>,
}

pub fn quiet_config() -> CoreConfig {
    CoreConfig {
        announce_interval: None,
        ..CoreConfig::default()
    }
}

pub fn peer_ip(peer: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, (peer >> 8) as u8, peer as u8))
}

pub fn ph(s: &str) -> PoolHandle {
    s.parse().unwrap()
}

/// An element of `peer` (its own address) on port 80.
pub fn element(peer: u64, id: u32, policy: Policy) -> PoolElement {
    element_at(peer_ip(peer), id, policy)
}

pub fn element_at(addr: IpAddr, id: u32, policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: RegistrarId(0),
        registration_life_ms: 60_000,
        user_transport: TransportAddress::Tcp {
            port: 80,
            transport_use: TransportUse::DataOnly,
            addr,
        },
        policy,
        asap_transport: None,
    }
}

impl Harness {
    pub fn new(config: CoreConfig) -> Self {
        let t0 = Instant::now();
        config.validate().unwrap();
        Self {
            core: RegistrarCore::new(config, ID, Vec::new(), t0, 42),
            now: t0,
            t0,
            actions: Vec::new(),
        }
    }

    pub fn quiet() -> Self {
        Self::new(quiet_config())
    }

    fn collect(&mut self) {
        while let Some(a) = self.core.poll_action() {
            self.actions.push(a);
        }
    }

    pub fn connect(&mut self, peer: u64) {
        let info = PeerInfo::tcp(SocketAddr::new(peer_ip(peer), 40_000 + peer as u16));
        self.core.handle_event(
            self.now,
            Event::Connected {
                peer: PeerId(peer),
                info,
            },
        );
        self.collect();
    }

    pub fn disconnect(&mut self, peer: u64) {
        self.core
            .handle_event(self.now, Event::Disconnected { peer: PeerId(peer) });
        self.collect();
    }

    pub fn send_raw(&mut self, peer: u64, bytes: Vec<u8>) {
        self.core.handle_event(
            self.now,
            Event::Message {
                peer: PeerId(peer),
                bytes,
            },
        );
        self.collect();
    }

    pub fn send(&mut self, peer: u64, msg: &AsapMessage) {
        self.send_raw(peer, encode_asap(msg).unwrap());
    }

    /// Move the clock to `now + d`, firing every timer on the way at its own time.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        while let Some(t) = self.core.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.core.handle_timeout(self.now);
            self.collect();
        }
        self.now = target;
    }

    /// Like `advance`, but after each timer answer every keep-alive sent to `peer` right away.
    pub fn advance_acking(&mut self, d: Duration, peer: u64) {
        let target = self.now + d;
        while let Some(t) = self.core.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.core.handle_timeout(self.now);
            self.collect();
            for m in self.take_sent(peer) {
                if let AsapMessage::EndpointKeepAlive {
                    pool_handle, id, ..
                } = m
                {
                    self.send(peer, &AsapMessage::EndpointKeepAliveAck { pool_handle, id });
                }
            }
        }
        self.now = target;
    }

    pub fn take(&mut self) -> Vec<Action> {
        self.collect();
        std::mem::take(&mut self.actions)
    }

    /// Messages sent to `peer` since the last take (other actions are dropped).
    pub fn take_sent(&mut self, peer: u64) -> Vec<AsapMessage> {
        self.collect();
        let mut out = Vec::new();
        self.actions.retain(|a| match a {
            Action::Send { peer: p, bytes } if *p == PeerId(peer) => {
                out.push(
                    decode_asap(bytes)
                        .expect("the core sends valid ASAP")
                        .message,
                );
                false
            }
            _ => true,
        });
        out
    }

    pub fn take_events(&mut self) -> Vec<HandlespaceEvent> {
        self.collect();
        let mut out = Vec::new();
        self.actions.retain(|a| match a {
            Action::Notify(e) => {
                out.push(e.clone());
                false
            }
            _ => true,
        });
        out
    }

    pub fn closed(&mut self) -> Vec<PeerId> {
        self.collect();
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Close { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect()
    }

    /// Register and return the response (asserting it is the only message sent).
    pub fn register(&mut self, peer: u64, pool: &str, e: PoolElement) -> AsapMessage {
        self.send(
            peer,
            &AsapMessage::Registration {
                pool_handle: ph(pool),
                element: e,
            },
        );
        let mut sent = self.take_sent(peer);
        assert_eq!(sent.len(), 1, "one answer: {sent:?}");
        sent.remove(0)
    }

    pub fn register_ok(&mut self, peer: u64, pool: &str, e: PoolElement) {
        let id = e.id;
        match self.register(peer, pool, e) {
            AsapMessage::RegistrationResponse {
                reject: false,
                id: got,
                error: None,
                ..
            } => assert_eq!(got, id),
            other => panic!("registration refused: {other:?}"),
        }
    }

    pub fn resolve(&mut self, peer: u64, pool: &str, items: Option<u32>) -> AsapMessage {
        self.send(
            peer,
            &AsapMessage::HandleResolution {
                pool_handle: ph(pool),
                items,
            },
        );
        let mut sent = self.take_sent(peer);
        assert_eq!(sent.len(), 1, "one answer: {sent:?}");
        sent.remove(0)
    }

    /// Ids of the elements in a pool, sorted.
    pub fn ids(&self, pool: &str) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .core
            .handlespace()
            .pool(&ph(pool))
            .map(|p| p.elements().map(|e| e.id().0).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// The rejection cause of a registration response (None = accepted).
pub fn reg_cause(m: &AsapMessage) -> Option<CauseCode> {
    match m {
        AsapMessage::RegistrationResponse {
            reject: false,
            error: None,
            ..
        } => None,
        AsapMessage::RegistrationResponse {
            reject: true,
            error: Some(causes),
            ..
        } => Some(causes[0].code),
        other => panic!("not a clean registration response: {other:?}"),
    }
}

pub fn error_causes(m: &AsapMessage) -> Vec<ErrorCause> {
    match m {
        AsapMessage::Error { causes } => causes.clone(),
        other => panic!("not an ERROR: {other:?}"),
    }
}

pub fn hr_cause(m: &AsapMessage) -> Option<CauseCode> {
    match m {
        AsapMessage::HandleResolutionResponse {
            error: Some(c),
            elements,
            ..
        } => {
            assert!(elements.is_empty());
            Some(c[0].code)
        }
        AsapMessage::HandleResolutionResponse { error: None, .. } => None,
        other => panic!("not a handle resolution response: {other:?}"),
    }
}

pub fn hr_ids(m: &AsapMessage) -> Vec<u32> {
    match m {
        AsapMessage::HandleResolutionResponse {
            elements,
            error: None,
            ..
        } => elements.iter().map(|e| e.id.0).collect(),
        other => panic!("resolution failed: {other:?}"),
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
