//! The daemon's neighbour resolution, asynchronous from the point of view of table changes.
//!
//! Resolving a next hop may wait for ARP/ND (up to [`crate::control::RESOLVE_WAIT`]). The
//! daemon never does that inside a change: an element the registrar adds enters the control
//! plane at once with its next hop awaited ([`crate::control_core::Hop::Pending`], out of the
//! Maglev tables), its resolution is queued here, and the result is applied as a change of its
//! own when it comes. Removals and other elements' changes go through meanwhile. One thread
//! resolves, in order of request; a target already queued is not queued twice.

use std::{
    collections::VecDeque,
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use crate::{control_core::NeighbourTarget, state::NextHop};

/// A queued resolution: the element, and how long to wait for its neighbour.
type Request = (NeighbourTarget, Duration);

#[derive(Default)]
struct Queue {
    requests: VecDeque<Request>,
    closed: bool,
}

/// A handle to the resolver thread. Cloning it shares the thread; dropping the last handle
/// stops it (after the resolution in progress).
#[derive(Clone)]
pub struct Resolver {
    shared: Arc<Shared>,
}

/// A lookup in the kernel's neighbour cache that never waits (`None`: not there).
type CacheLookup = Box<dyn Fn(&NeighbourTarget) -> Option<NextHop> + Send + Sync>;

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    cached: Option<CacheLookup>,
}

impl Resolver {
    /// Starts the resolver thread. `resolve` resolves one next hop (`None`: failed) and may
    /// block; `apply` receives each result and applies it to the control plane.
    pub fn spawn(
        resolve: impl FnMut(&NeighbourTarget, Duration) -> Option<NextHop> + Send + 'static,
        apply: impl FnMut(NeighbourTarget, Option<NextHop>) + Send + 'static,
    ) -> std::io::Result<Resolver> {
        Resolver::spawn_with_cache(resolve, apply, None)
    }

    fn spawn_with_cache(
        mut resolve: impl FnMut(&NeighbourTarget, Duration) -> Option<NextHop> + Send + 'static,
        mut apply: impl FnMut(NeighbourTarget, Option<NextHop>) + Send + 'static,
        cached: Option<CacheLookup>,
    ) -> std::io::Result<Resolver> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            cached,
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("rsplb-resolve".into())
            .spawn(move || {
                loop {
                    let Some(shared) = weak.upgrade() else { return };
                    let next = {
                        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
                        loop {
                            if q.closed {
                                return;
                            }
                            if let Some(r) = q.requests.pop_front() {
                                break r;
                            }
                            // Wake now and then to notice that every handle is gone.
                            let (g, _) = shared
                                .wake
                                .wait_timeout(q, Duration::from_millis(500))
                                .unwrap_or_else(|e| e.into_inner());
                            q = g;
                            if Arc::strong_count(&shared) == 1 {
                                return;
                            }
                        }
                    };
                    drop(shared);
                    let (target, wait) = next;
                    let hop = resolve(&target, wait);
                    apply(target, hop);
                }
            })?;
        Ok(Resolver { shared })
    }

    /// The resolver the daemon uses: rtnetlink in this network namespace.
    pub fn netlink(
        apply: impl FnMut(NeighbourTarget, Option<NextHop>) + Send + 'static,
    ) -> std::io::Result<Resolver> {
        let mut nl: Option<crate::nexthop::Netlink> = None;
        let cached: CacheLookup = Box::new(|t: &NeighbourTarget| {
            let h = crate::nexthop::Netlink::new()
                .ok()?
                .resolve(t.addr.addr, Duration::ZERO)
                .ok()?;
            h.resolved().then_some(h)
        });
        Resolver::spawn_with_cache(
            move |t, wait| {
                if nl.is_none() {
                    match crate::nexthop::Netlink::new() {
                        Ok(n) => nl = Some(n),
                        Err(e) => {
                            log::warn!("resolving the next hop of {}: {e}", t.addr);
                            return None;
                        }
                    }
                }
                let n = nl.as_mut()?;
                match n.resolve(t.addr.addr, wait) {
                    Ok(h) => Some(h),
                    Err(e) => {
                        log::warn!("resolving the next hop of {}: {e}", t.addr);
                        None
                    }
                }
            },
            apply,
            Some(cached),
        )
    }

    /// The next hop of `target` if the kernel already knows its neighbour: a lookup that never
    /// waits (a missing neighbour is prodded, and left to [`Self::request`]).
    pub fn cached(&self, target: &NeighbourTarget) -> Option<NextHop> {
        self.shared.cached.as_ref()?(target)
    }

    /// Queues resolutions (a target already queued keeps its place).
    pub fn request(&self, targets: impl IntoIterator<Item = NeighbourTarget>, wait: Duration) {
        let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        for t in targets {
            if !q.requests.iter().any(|(r, _)| *r == t) {
                q.requests.push_back((t, wait));
            }
        }
        drop(q);
        self.shared.wake.notify_one();
    }

    /// Stops the thread after the resolution in progress; queued requests are dropped.
    pub fn close(&self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.shared.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::mpsc,
        time::{Duration, Instant},
    };

    use super::*;
    use crate::{
        addr::{ElementAddr, Mode, PoolHandle},
        reconcile::{Change, DaemonPlane, Dataplane as _, Desired},
    };

    const SIZE: u32 = 251;
    /// A bound on waits for the other threads, never a sleep: the tests end as soon as what
    /// they wait for happens.
    const BOUND: Duration = Duration::from_secs(20);

    fn hop(mac: u8) -> NextHop {
        NextHop {
            ifindex: 1,
            dst_mac: [2, 0, 0, 0, 0, mac],
            src_mac: [2, 0, 0, 0, 0, 0xfe],
            gateway: None,
        }
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(start.elapsed() < BOUND, "{what}: not within {BOUND:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_removal_is_applied_while_another_elements_neighbour_is_being_resolved() {
        let (balancer, dp, dir) = crate::control::test_balancer("resolver", SIZE);
        let balancer = Arc::new(Mutex::new(balancer));
        let pool: PoolHandle = "web".parse().unwrap();
        let vip: crate::addr::Vip = "198.18.0.1:80/tcp".parse().unwrap();
        balancer
            .lock()
            .unwrap()
            .add_vip(
                vip,
                &pool,
                Mode::Dsr,
                None,
                None,
                &[],
                crate::addr::VipHash::Flow,
            )
            .unwrap();
        let slow: ElementAddr = "198.18.1.3".parse().unwrap();
        let gone: ElementAddr = "198.18.1.2".parse().unwrap();

        // The neighbour of `slow` answers only when the test lets it.
        let (started_tx, started) = mpsc::channel::<()>();
        let (answer, gate) = mpsc::channel::<()>();
        let b = balancer.clone();
        let resolver = Resolver::spawn(
            move |t, _| {
                if t.addr == slow {
                    started_tx.send(()).unwrap();
                    gate.recv_timeout(BOUND).ok()?;
                    Some(hop(3))
                } else {
                    Some(hop(2))
                }
            },
            move |t, h| {
                b.lock().unwrap().apply_neighbours(vec![(t, h)]).unwrap();
            },
        )
        .unwrap();
        let set = |addr| {
            Change::Set(
                pool.clone(),
                addr,
                Desired {
                    weight: 1,
                    active: true,
                },
            )
        };
        let in_table = |slot: u32| {
            dp.active_table(&vip.key())
                .is_some_and(|t| t.contains(&slot))
        };
        let slot_of = |addr: ElementAddr| {
            balancer
                .lock()
                .unwrap()
                .list_elements(None)
                .unwrap()
                .into_iter()
                .find(|e| e.element_addr() == addr)
                .map(|e| e.slot)
        };

        let apply = |changes: Vec<Change>| {
            let mut b = balancer.lock().unwrap();
            let mut plane = DaemonPlane::new(&mut b, &resolver);
            plane.apply(&changes).unwrap()
        };
        apply(vec![set(gone)]);
        let gone_slot = slot_of(gone).unwrap();
        wait_until("the first element enters the table", || in_table(gone_slot));

        apply(vec![set(slow)]);
        started
            .recv_timeout(BOUND)
            .expect("resolution of the second element starts");
        let slow_slot = slot_of(slow).unwrap();
        assert!(
            !in_table(slow_slot),
            "no table names an element without a next hop"
        );

        // The removal goes through while the resolution is still waiting on its neighbour.
        let (done_tx, done) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let r = apply(vec![Change::Remove(pool.clone(), gone)]);
                done_tx.send(r).unwrap();
            });
            let r = done
                .recv_timeout(BOUND)
                .expect("the removal is not held up by the pending resolution");
            assert!(matches!(r[..], [Ok(true)]));
        });
        assert!(!in_table(gone_slot));
        assert_eq!(
            dp.element(gone_slot).unwrap().flags,
            0,
            "its slot is cleared"
        );
        assert!(slot_of(gone).is_none());

        // Then the neighbour answers: the element is written with its MAC, then enters the
        // table.
        answer.send(()).unwrap();
        wait_until("the resolved element enters the table", || {
            in_table(slow_slot)
        });
        assert_eq!(dp.element(slow_slot).unwrap().dst_mac, hop(3).dst_mac);
        assert_eq!(dp.violations(), Vec::<String>::new());
        resolver.close();
        // Best effort: the resolver thread may still be saving the state as it winds down.
        let _ = std::fs::remove_dir_all(&dir);
    }
}
