//! 100,000 elements in one pool and 100,000 over 1,000 pools: functional smoke test (no timing
//! assertions) and the heap cost per element, measured exactly with a counting global allocator
//! (this test binary has one test, so nothing else allocates meanwhile). Run with `--nocapture`
//! to see `bytes_per_element=...`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rserpool_proto::handlespace::{Handlespace, Limits, RegistratorId};
use rserpool_proto::types::{
    PeId, Policy, PoolElement, PoolHandle, RegistrarId, TransportAddress, TransportUse,
};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const N: u32 = 100_000;
const ME: RegistrarId = RegistrarId(1);

fn tcp_element(id: u32, policy: Policy) -> PoolElement {
    PoolElement {
        id: PeId(id),
        home_registrar: RegistrarId(0),
        registration_life_ms: 30_000,
        user_transport: TransportAddress::Tcp {
            port: 80,
            transport_use: TransportUse::DataOnly,
            addr: IpAddr::V4(Ipv4Addr::from(0xc612_0000 | id)),
        },
        policy,
        asap_transport: None,
    }
}

/// A multi-homed SCTP element as ENRP delivers it (two addresses, with an ASAP transport).
fn sctp_element(id: u32, policy: Policy) -> PoolElement {
    let addrs = vec![
        IpAddr::V4(Ipv4Addr::from(0xc612_0000 | id)),
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0,
            0,
            0,
            0,
            0,
            (id >> 16) as u16,
            id as u16,
        )),
    ];
    PoolElement {
        asap_transport: Some(TransportAddress::Sctp {
            port: 3863,
            transport_use: TransportUse::DataOnly,
            addrs: addrs.clone(),
        }),
        user_transport: TransportAddress::Sctp {
            port: 80,
            transport_use: TransportUse::DataOnly,
            addrs,
        },
        ..tcp_element(id, policy)
    }
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[test]
fn hundred_thousand_elements() {
    let limits = Limits::default();
    assert!(limits.max_elements_per_pool >= N as usize);
    let mut rng = StdRng::seed_from_u64(42);
    let t0 = Instant::now();

    // One pool, least used, 100,000 TCP elements.
    let before = live();
    let mut hs = Handlespace::new(limits);
    let ph: PoolHandle = "BigPool".parse().unwrap();
    for id in 1..=N {
        // Element loads spread; element 77,777 is the least loaded.
        let load = if id == 77_777 { 0 } else { 1000 + id };
        hs.register(
            &ph,
            tcp_element(id, Policy::LeastUsed { load }),
            ME,
            RegistratorId::Asap(u64::from(id % 1000)),
            t0,
        )
        .unwrap();
    }
    let tcp_bytes = (live() - before) as f64 / f64::from(N);
    println!(
        "pool=one policy=LeastUsed transport=tcp elements={N} bytes_per_element={tcp_bytes:.0}"
    );
    assert_eq!(hs.len(), N as usize);
    assert!(
        tcp_bytes < 1024.0,
        "{tcp_bytes:.0} bytes per element (budget 1 KiB)"
    );

    let sel = hs.select(&ph, 3, 0, &mut rng).unwrap();
    assert_eq!(sel.elements[0].id, PeId(77_777));
    assert_eq!(sel.elements[1].id, PeId(1));
    // Many resolutions, each distinct.
    for _ in 0..10_000 {
        let s = hs.select(&ph, 5, 0, &mut rng).unwrap();
        let ids: HashSet<PeId> = s.elements.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), 5);
    }
    // Updates, deregistrations and a connection loss.
    for id in (2..=N).step_by(2) {
        hs.register(
            &ph,
            tcp_element(id, Policy::LeastUsed { load: 5 }),
            ME,
            RegistratorId::Asap(u64::from(id % 1000)),
            t0 + Duration::from_secs(1),
        )
        .unwrap();
    }
    for id in (3..=N).step_by(10) {
        assert!(hs.deregister(&ph, PeId(id)).is_some());
    }
    let gone = hs.remove_by_registrator(RegistratorId::Asap(500));
    assert_eq!(gone.len(), 100);
    let remaining = hs.len();
    assert_eq!(hs.checksum(ME), hs.checksum_from_scratch(ME));
    // The first half expires 30 s after t0, the updated half 30 s after t0 + 1 s.
    let expired = hs.expire(t0 + Duration::from_secs(30));
    assert!(expired.iter().all(|(_, pe)| pe.id.0 % 2 == 1));
    assert_eq!(hs.len() + expired.len(), remaining);
    assert_eq!(hs.next_expiry(), Some(t0 + Duration::from_secs(31)));
    let rest = hs.expire(t0 + Duration::from_secs(31));
    assert_eq!(hs.len(), 0);
    assert!(!rest.is_empty());
    drop(hs);

    // Weighted random over 100,000 SCTP elements in 1,000 pools.
    let before = live();
    let mut hs = Handlespace::new(limits);
    let handles: Vec<PoolHandle> = (0..1000)
        .map(|i| format!("pool-{i:04}").parse().unwrap())
        .collect();
    for id in 1..=N {
        let ph = &handles[(id % 1000) as usize];
        hs.register(
            ph,
            sctp_element(id, Policy::WeightedRandom { weight: id % 7 + 1 }),
            RegistrarId(id % 5),
            RegistratorId::Peer(RegistrarId(id % 5)),
            t0,
        )
        .unwrap();
    }
    let sctp_bytes = (live() - before) as f64 / f64::from(N);
    println!(
        "pools=1000 policy=WeightedRandom transport=sctp2 elements={N} bytes_per_element={sctp_bytes:.0}"
    );
    assert!(
        sctp_bytes < 1024.0,
        "{sctp_bytes:.0} bytes per element (budget 1 KiB)"
    );
    assert_eq!(hs.pool_count(), 1000);
    for ph in &handles {
        let s = hs.select(ph, 10, 0, &mut rng).unwrap();
        assert_eq!(s.elements.len(), 10);
    }
    let moved = hs.take_over(RegistrarId(3), RegistrarId(4));
    assert_eq!(moved.len(), (N / 5) as usize);
    assert_eq!(hs.owned_count(RegistrarId(4)), 2 * (N / 5) as usize);
    assert_eq!(
        hs.checksum(RegistrarId(4)),
        hs.checksum_from_scratch(RegistrarId(4))
    );
    // A full handle table walk in 128-element chunks.
    let mut cursor = None;
    let mut total = 0;
    loop {
        let chunk = hs.handle_table(cursor.as_ref(), 128, None);
        total += chunk.pools.iter().map(|(_, v)| v.len()).sum::<usize>();
        match chunk.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(total, N as usize);
}
