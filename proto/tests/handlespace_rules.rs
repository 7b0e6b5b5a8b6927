//! Registration rules (consistency causes, identifier uniqueness, updates), limits, expiry,
//! Endpoint Unreachable bookkeeping, ownership (take-over, removal) and handle table chunks.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rserpool_proto::handlespace::{
    Handlespace, Limits, RegisterOutcome, RegistratorId, UnreachableReport,
};
use rserpool_proto::types::{
    CauseCode, PeId, Policy, PoolElement, PoolHandle, RegistrarId, TransportAddress, TransportUse,
    policy_type,
};

const ME: RegistrarId = RegistrarId(0xaaaa_0001);
const PEER: RegistrarId = RegistrarId(0xbbbb_0002);

fn ph(s: &str) -> PoolHandle {
    s.parse().unwrap()
}

fn tcp(id: u32, policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: RegistrarId(0),
        registration_life_ms: 10_000,
        user_transport: TransportAddress::Tcp {
            port: 80,
            transport_use: TransportUse::DataOnly,
            addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)),
        },
        policy,
        asap_transport: None,
    }
}

fn asap(c: u64) -> RegistratorId {
    RegistratorId::Asap(c)
}

#[test]
fn inconsistent_transport_type_is_cause_7() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    hs.register(&ph("p"), tcp(1, Policy::RoundRobin), ME, asap(1), now)
        .unwrap();
    let mut udp = tcp(2, Policy::RoundRobin);
    udp.user_transport = TransportAddress::Udp {
        port: 53,
        addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2)),
    };
    let err = hs.register(&ph("p"), udp, ME, asap(2), now).unwrap_err();
    assert_eq!(err, CauseCode::InconsistentTransportType);
    assert_eq!(err.code(), 0x7);
    assert_eq!(hs.len(), 1);
}

#[test]
fn inconsistent_data_control_configuration_is_cause_8() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    hs.register(&ph("p"), tcp(1, Policy::RoundRobin), ME, asap(1), now)
        .unwrap();
    let mut ctl = tcp(2, Policy::RoundRobin);
    ctl.user_transport = TransportAddress::Tcp {
        port: 80,
        transport_use: TransportUse::DataPlusControl,
        addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 2)),
    };
    let err = hs.register(&ph("p"), ctl, ME, asap(2), now).unwrap_err();
    assert_eq!(err, CauseCode::InconsistentDataControlConfiguration);
    assert_eq!(err.code(), 0x8);
}

#[test]
fn inconsistent_pooling_policy_is_cause_5() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    hs.register(&ph("p"), tcp(1, Policy::RoundRobin), ME, asap(1), now)
        .unwrap();
    let err = hs
        .register(
            &ph("p"),
            tcp(2, Policy::LeastUsed { load: 0 }),
            ME,
            asap(2),
            now,
        )
        .unwrap_err();
    assert_eq!(err, CauseCode::InconsistentPoolingPolicy);
    assert_eq!(err.code(), 0x5);
}

#[test]
fn policy_type_change_on_reregistration() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    let p = ph("p");
    // Sole element: the pool follows it.
    hs.register(&p, tcp(1, Policy::RoundRobin), ME, asap(1), now)
        .unwrap();
    assert_eq!(
        hs.register(
            &p,
            tcp(1, Policy::WeightedRandom { weight: 5 }),
            ME,
            asap(1),
            now
        ),
        Ok(RegisterOutcome::Updated)
    );
    assert_eq!(
        hs.pool(&p).unwrap().policy_type(),
        policy_type::WEIGHTED_RANDOM
    );
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(hs.select(&p, 3, 0, &mut rng).unwrap().elements.len(), 1);
    // With another element: inconsistent, and nothing changes.
    hs.register(
        &p,
        tcp(2, Policy::WeightedRandom { weight: 1 }),
        ME,
        asap(2),
        now,
    )
    .unwrap();
    assert_eq!(
        hs.register(&p, tcp(1, Policy::RoundRobin), ME, asap(1), now),
        Err(CauseCode::InconsistentPoolingPolicy)
    );
    assert_eq!(
        hs.element(&p, PeId(1)).unwrap().element().policy,
        Policy::WeightedRandom { weight: 5 }
    );
    assert_eq!(hs.select(&p, 3, 0, &mut rng).unwrap().elements.len(), 2);
}

#[test]
fn duplicate_identifier_from_another_connection_is_cause_4() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    hs.register(&ph("p"), tcp(7, Policy::RoundRobin), ME, asap(1), now)
        .unwrap();
    let err = hs
        .register(&ph("p"), tcp(7, Policy::RoundRobin), ME, asap(2), now)
        .unwrap_err();
    assert_eq!(err, CauseCode::NonUniquePeIdentifier);
    assert_eq!(err.code(), 0x4);
    // The same identifier in another pool is fine.
    assert!(
        hs.register(&ph("q"), tcp(7, Policy::RoundRobin), ME, asap(2), now)
            .is_ok()
    );
}

#[test]
fn reregistration_updates_in_place() {
    let mut hs = Handlespace::default();
    let t0 = Instant::now();
    let p = ph("p");
    hs.register(&p, tcp(1, Policy::LeastUsed { load: 10 }), ME, asap(1), t0)
        .unwrap();
    hs.report_unreachable(&p, PeId(1));
    let t1 = t0 + Duration::from_secs(2);
    let mut upd = tcp(1, Policy::LeastUsed { load: 99 });
    upd.user_transport = TransportAddress::Tcp {
        port: 81,
        transport_use: TransportUse::DataOnly,
        addr: IpAddr::V4(Ipv4Addr::new(198, 18, 1, 9)),
    };
    upd.registration_life_ms = 60_000;
    assert_eq!(
        hs.register(&p, upd.clone(), ME, asap(1), t1),
        Ok(RegisterOutcome::Updated)
    );
    let e = hs.element(&p, PeId(1)).unwrap();
    assert_eq!(e.element().user_transport, upd.user_transport);
    assert_eq!(e.element().policy, Policy::LeastUsed { load: 99 });
    assert_eq!(e.element().home_registrar, ME);
    assert_eq!(e.registered_at(), t0);
    assert_eq!(e.updated_at(), t1);
    assert_eq!(e.expires_at(), Some(t1 + Duration::from_secs(60)));
    assert_eq!(e.unreachable_reports(), 0);
    assert_eq!(hs.len(), 1);
    assert_eq!(hs.next_expiry(), Some(t1 + Duration::from_secs(60)));
}

#[test]
fn element_learned_by_enrp_can_move_home() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    let p = ph("p");
    hs.register(
        &p,
        tcp(1, Policy::RoundRobin),
        PEER,
        RegistratorId::Peer(PEER),
        now,
    )
    .unwrap();
    // The element re-registers here after its home failed: this registrar becomes its home.
    assert_eq!(
        hs.register(&p, tcp(1, Policy::RoundRobin), ME, asap(5), now),
        Ok(RegisterOutcome::Updated)
    );
    assert_eq!(hs.element(&p, PeId(1)).unwrap().owner(), ME);
    assert_eq!(hs.owned_count(PEER), 0);
    assert_eq!(hs.owned_count(ME), 1);
    // Now the peer's index no longer holds it: removing the peer's elements leaves it alone.
    assert!(
        hs.remove_by_registrator(RegistratorId::Peer(PEER))
            .is_empty()
    );
    assert_eq!(hs.remove_by_registrator(asap(5)).len(), 1);
}

#[test]
fn invalid_values_are_cause_3() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    let unknown = tcp(
        1,
        Policy::Unknown {
            policy_type: 0x1234,
            values: vec![1],
        },
    );
    let zero_id = tcp(0, Policy::RoundRobin);
    let mut zero_life = tcp(1, Policy::RoundRobin);
    zero_life.registration_life_ms = 0;
    let mut zero_port = tcp(1, Policy::RoundRobin);
    zero_port.user_transport = TransportAddress::Tcp {
        port: 0,
        transport_use: TransportUse::DataOnly,
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let mut no_addr = tcp(1, Policy::RoundRobin);
    no_addr.user_transport = TransportAddress::Sctp {
        port: 80,
        transport_use: TransportUse::DataOnly,
        addrs: vec![],
    };
    for pe in [unknown, zero_id, zero_life, zero_port, no_addr] {
        assert_eq!(
            hs.register(&ph("p"), pe.clone(), ME, asap(1), now),
            Err(CauseCode::InvalidValues),
            "{pe:?}"
        );
    }
    assert!(hs.is_empty());
    assert_eq!(hs.pool_count(), 0);
}

#[test]
fn limits_are_lack_of_resources() {
    let now = Instant::now();
    let limits = Limits {
        max_pools: 2,
        max_elements_per_pool: 3,
        max_elements: 5,
        ..Limits::default()
    };
    let mut hs = Handlespace::new(limits);
    for id in 1..=3 {
        hs.register(&ph("a"), tcp(id, Policy::RoundRobin), ME, asap(1), now)
            .unwrap();
    }
    assert_eq!(
        hs.register(&ph("a"), tcp(4, Policy::RoundRobin), ME, asap(1), now),
        Err(CauseCode::LackOfResources)
    );
    // Updating an element in a full pool is fine.
    assert!(
        hs.register(&ph("a"), tcp(3, Policy::RoundRobin), ME, asap(1), now)
            .is_ok()
    );
    hs.register(&ph("b"), tcp(1, Policy::RoundRobin), ME, asap(1), now)
        .unwrap();
    assert_eq!(
        hs.register(&ph("c"), tcp(1, Policy::RoundRobin), ME, asap(1), now),
        Err(CauseCode::LackOfResources),
        "third pool"
    );
    hs.register(&ph("b"), tcp(2, Policy::RoundRobin), ME, asap(1), now)
        .unwrap();
    assert_eq!(
        hs.register(&ph("b"), tcp(3, Policy::RoundRobin), ME, asap(1), now),
        Err(CauseCode::LackOfResources),
        "sixth element"
    );
    assert_eq!(CauseCode::LackOfResources.code(), 0x6);
    assert_eq!(hs.len(), 5);
    // Room again after a deregistration.
    hs.deregister(&ph("a"), PeId(1)).unwrap();
    assert!(
        hs.register(&ph("b"), tcp(3, Policy::RoundRobin), ME, asap(1), now)
            .is_ok()
    );
}

#[test]
fn expiry_removes_in_time_order() {
    let mut hs = Handlespace::default();
    let t0 = Instant::now();
    for (id, life) in [(1u32, 3000), (2, 1000), (3, 2000), (4, 5000)] {
        let mut pe = tcp(id, Policy::RoundRobin);
        pe.registration_life_ms = life;
        hs.register(&ph("p"), pe, PEER, RegistratorId::Peer(PEER), t0)
            .unwrap();
    }
    assert_eq!(hs.next_expiry(), Some(t0 + Duration::from_millis(1000)));
    assert!(hs.expire(t0 + Duration::from_millis(999)).is_empty());
    let gone: Vec<u32> = hs
        .expire(t0 + Duration::from_millis(3000))
        .iter()
        .map(|(_, pe)| pe.id.0)
        .collect();
    assert_eq!(gone, [2, 3, 1]);
    assert_eq!(hs.next_expiry(), Some(t0 + Duration::from_millis(5000)));
    // An element without expiry stays.
    assert!(hs.set_expiry(&ph("p"), PeId(4), None));
    assert_eq!(hs.next_expiry(), None);
    assert!(hs.expire(t0 + Duration::from_secs(3600)).is_empty());
    assert_eq!(hs.len(), 1);
}

#[test]
fn endpoint_unreachable_threshold() {
    let mut hs = Handlespace::new(Limits {
        max_bad_pe_reports: 3,
        ..Limits::default()
    });
    let now = Instant::now();
    hs.register(&ph("p"), tcp(1, Policy::RoundRobin), ME, asap(1), now)
        .unwrap();
    let r: Vec<UnreachableReport> = (0..3)
        .map(|_| hs.report_unreachable(&ph("p"), PeId(1)).unwrap())
        .collect();
    assert_eq!(
        r.iter().map(|r| r.threshold_reached).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert_eq!(r[2].reports, 3);
    assert_eq!(hs.report_unreachable(&ph("p"), PeId(2)), None);
    assert_eq!(hs.report_unreachable(&ph("nope"), PeId(1)), None);
}

#[test]
fn remove_by_registrator_takes_only_its_elements() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    for id in 1..=4 {
        hs.register(
            &ph("p"),
            tcp(id, Policy::RoundRobin),
            ME,
            asap(u64::from(id % 2)),
            now,
        )
        .unwrap();
    }
    hs.register(&ph("q"), tcp(9, Policy::RoundRobin), ME, asap(1), now)
        .unwrap();
    let mut gone: Vec<u32> = hs
        .remove_by_registrator(asap(1))
        .iter()
        .map(|(_, pe)| pe.id.0)
        .collect();
    gone.sort();
    assert_eq!(gone, [1, 3, 9]);
    assert_eq!(hs.len(), 2);
    assert!(hs.pool(&ph("q")).is_none());
    assert!(hs.element(&ph("p"), PeId(2)).is_some());
}

#[test]
fn take_over_moves_ownership_and_checksums() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    for id in 1..=3 {
        hs.register(
            &ph("p"),
            tcp(id, Policy::RoundRobin),
            PEER,
            RegistratorId::Peer(PEER),
            now,
        )
        .unwrap();
    }
    hs.register(&ph("p"), tcp(10, Policy::RoundRobin), ME, asap(1), now)
        .unwrap();
    let peer_sum = hs.checksum(PEER);
    let mut moved: Vec<u32> = hs.take_over(PEER, ME).iter().map(|(_, id)| id.0).collect();
    moved.sort();
    assert_eq!(moved, [1, 2, 3]);
    assert_eq!(hs.owned_count(ME), 4);
    assert_eq!(hs.owned_count(PEER), 0);
    assert_eq!(hs.checksum(PEER), 0xffff);
    assert_ne!(peer_sum, 0xffff);
    assert_eq!(hs.checksum(ME), hs.checksum_from_scratch(ME));
    assert!(hs.owned_by(ME).all(|(_, e)| e.owner() == ME));
    assert_eq!(hs.remove_owned_by(ME).len(), 4);
    assert!(hs.is_empty());
}

#[test]
fn handle_table_chunks_cover_everything_once() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    let mut expect_all = HashSet::new();
    let mut expect_mine = HashSet::new();
    for pool in ["alpha", "beta", "gamma", "delta"] {
        for id in 1..=7u32 {
            let owner = if id % 3 == 0 { ME } else { PEER };
            hs.register(&ph(pool), tcp(id, Policy::RoundRobin), owner, asap(1), now)
                .unwrap();
            expect_all.insert((pool.to_string(), id));
            if owner == ME {
                expect_mine.insert((pool.to_string(), id));
            }
        }
    }
    for (owner, expect) in [(None, &expect_all), (Some(ME), &expect_mine)] {
        let mut seen = HashSet::new();
        let mut cursor = None;
        let mut chunks = 0;
        loop {
            let chunk = hs.handle_table(cursor.as_ref(), 5, owner);
            let n: usize = chunk.pools.iter().map(|(_, v)| v.len()).sum();
            assert!(n <= 5);
            for (h, pes) in &chunk.pools {
                for pe in pes {
                    assert!(seen.insert((h.to_string(), pe.id.0)), "{h} {} twice", pe.id);
                    if let Some(o) = owner {
                        assert_eq!(pe.home_registrar, o);
                    }
                }
            }
            chunks += 1;
            assert!(chunks < 100);
            match chunk.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(&seen, expect);
    }
    // Full walk is in handle order.
    let first = hs.handle_table(None, 100, None);
    let handles: Vec<String> = first.pools.iter().map(|(h, _)| h.to_string()).collect();
    assert_eq!(handles, ["alpha", "beta", "delta", "gamma"]);
    assert!(first.next.is_none());
}

#[test]
fn handle_table_cursor_survives_removals() {
    let mut hs = Handlespace::default();
    let now = Instant::now();
    for id in 1..=10 {
        hs.register(&ph("p"), tcp(id, Policy::RoundRobin), ME, asap(1), now)
            .unwrap();
    }
    let c1 = hs.handle_table(None, 4, None);
    // The element the cursor points at disappears; the walk goes on after it.
    hs.deregister(&ph("p"), PeId(4)).unwrap();
    let c2 = hs.handle_table(c1.next.as_ref(), 100, None);
    let ids: Vec<u32> = c2.pools[0].1.iter().map(|pe| pe.id.0).collect();
    assert_eq!(ids, [5, 6, 7, 8, 9, 10]);
}
