//! The Prometheus metrics of `rsplb run` (`GET /metrics`), built with the `prometheus-client`
//! crate's registry and OpenMetrics text encoder from one snapshot per scrape.
//!
//! Families (every counter is exposed with the `_total` suffix):
//! - `rsplb_xdp_actions_total{interface,action}`: what the XDP program did with each packet
//!   (`aborted`, `drop`, `pass`, `tx`, `redirect`): they sum to every packet seen.
//! - `rsplb_passed_packets_total{interface,reason}` and `rsplb_dropped_packets_total{...}`: why
//!   a packet was passed to the stack or dropped (`not_vip`, `no_element`, ...): each sums to its
//!   action.
//! - `rsplb_nat_replies_total`, `rsplb_flows_reselected_total`, `rsplb_flows_evicted_total`,
//!   `rsplb_flow_table_full_syns_total`: events, counted apart from the actions.
//! - `rsplb_vip_{packets,bytes,new_flows,dropped_source_not_allowed}_total{interface,vip,pool,mode}` and
//!   `rsplb_vip_table_info{...,table_digest}` (1): each VIP and its Maglev table's digest.
//! - `rsplb_element_{packets,bytes,new_flows}_total{interface,pool,element}`,
//!   `rsplb_element_weight`, `rsplb_element_state{...,state}` (1 for the element's state, 0 for
//!   the other), `rsplb_element_info{...,owner}` (1) and `rsplb_element_health{...,health}` (1
//!   for what the balancer-side checks say, `up`, `down` or `slow_start`; 0 for the others).
//! - `rsplb_health_transitions_total{interface,to}`: elements the checks took `down` or brought
//!   back `up`.
//! - With an embedded registrar: `rsplb_registrar_{pools,elements,asap_peers}`,
//!   `rsplb_registrar_enrp_peers{state}` and one counter per registrar counter
//!   (`rsplb_registrar_registrations_total`, ...; ENRP's as `rsplb_registrar_enrp_..._total`).
//! - The daemon: `rsplb_daemon_start_time_seconds`, `rsplb_reconcile_passes_total`,
//!   `rsplb_reconcile_seconds_total`, `rsplb_reconcile_last_time_seconds`, and the histogram
//!   `rsplb_reconcile_latency_seconds`: from a handlespace change at the embedded registrar to
//!   the table flip that carries it (see [`crate::reconcile::LATENCY`]).

use std::collections::BTreeMap;

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet, text::encode},
    metrics::{MetricType, counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use rsplb_common::stat;
use rsplb_registrar::shell::{RegistrarsSnapshot, StatsSnapshot};

use crate::{
    control::Stats,
    reconcile::LatencySnapshot,
    state::{ElementState, ElementStateEntry, Health},
};

/// The `Content-Type` of [`encode_text`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything one scrape reports.
#[derive(Debug, Default)]
pub struct Snapshot<'a> {
    pub stats: Option<&'a Stats>,
    /// Table digest per VIP (`Balancer::vip_digests`).
    pub digests: Option<&'a BTreeMap<String, String>>,
    /// The elements as the state has them (for their owners).
    pub elements: &'a [ElementStateEntry],
    pub registrar: Option<(&'a StatsSnapshot, Option<&'a RegistrarsSnapshot>)>,
    pub daemon: Option<DaemonFigures>,
}

/// The daemon's own figures.
#[derive(Debug, Clone, Default)]
pub struct DaemonFigures {
    pub start_time_unix_s: f64,
    pub reconcile_passes: u64,
    pub reconcile_seconds: f64,
    /// `None` before the first pass.
    pub reconcile_last_unix_s: Option<f64>,
    /// `None` without a reconciler (no embedded registrar).
    pub reconcile_latency: Option<LatencySnapshot>,
}

/// A histogram whose counts were taken elsewhere (the reconciler's atomics), as
/// `prometheus-client` encodes one.
#[derive(Debug)]
struct FixedHistogram(LatencySnapshot);

impl EncodeMetric for FixedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The encoder writes `+Inf` for `f64::MAX`.
        let buckets: Vec<(f64, u64)> = self
            .0
            .buckets
            .iter()
            .map(|&(b, n)| (if b.is_finite() { b } else { f64::MAX }, n))
            .collect();
        encoder.encode_histogram::<NoLabelSet>(self.0.sum_s, self.0.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Iface {
    interface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Action {
    interface: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    interface: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VipLabels {
    interface: String,
    vip: String,
    pool: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VipTable {
    interface: String,
    vip: String,
    pool: String,
    mode: String,
    table_digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ElementLabels {
    interface: String,
    pool: String,
    element: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ElementStateLabels {
    interface: String,
    pool: String,
    element: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ElementHealthLabels {
    interface: String,
    pool: String,
    element: String,
    health: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Transition {
    interface: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ElementInfo {
    interface: String,
    pool: String,
    element: String,
    owner: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistrarLabels {
    registrar: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerState {
    registrar: String,
    state: String,
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauge_f64(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    g.set(value);
    registry.register(name, help, g);
}

fn counter_family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Counter>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, Counter>::default();
    registry.register(name, help, f.clone());
    f
}

fn gauge_family<L>(registry: &mut Registry, name: &str, help: &str) -> Family<L, Gauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, Gauge>::default();
    registry.register(name, help, f.clone());
    f
}

/// Where a global counter of the XDP program goes: (family, label value). Every class of
/// `stat::NAMES` has one (a test checks it).
fn global_family(name: &str) -> Option<(&'static str, &str)> {
    if let Some(a) = name.strip_prefix("action_") {
        return Some(("rsplb_xdp_actions", a));
    }
    if let Some(r) = name.strip_prefix("pass_") {
        return Some(("rsplb_passed_packets", r));
    }
    if let Some(r) = name.strip_prefix("drop_") {
        return Some(("rsplb_dropped_packets", r));
    }
    match name {
        "nat_reply" => Some(("rsplb_nat_replies", "")),
        "flow_reselected" => Some(("rsplb_flows_reselected", "")),
        "flow_evicted" => Some(("rsplb_flows_evicted", "")),
        "flow_table_full_syn" => Some(("rsplb_flow_table_full_syns", "")),
        "log_suppressed" => Some(("rsplb_xdp_events_suppressed", "")),
        _ => None,
    }
}

fn register_dataplane(registry: &mut Registry, s: &Stats, snap: &Snapshot<'_>) {
    let iface = s.interface.clone();
    let actions = counter_family::<Action>(
        registry,
        "rsplb_xdp_actions",
        "Packets by the XDP action taken (they sum to every packet the program saw)",
    );
    let passed = counter_family::<Reason>(
        registry,
        "rsplb_passed_packets",
        "Packets passed to the kernel stack, by reason (they sum to the pass action)",
    );
    let dropped = counter_family::<Reason>(
        registry,
        "rsplb_dropped_packets",
        "Packets dropped, by reason (they sum to the drop action)",
    );
    let events: BTreeMap<&str, Family<Iface, Counter>> = [
        (
            "rsplb_nat_replies",
            "NAT replies translated back to their clients",
        ),
        (
            "rsplb_flows_reselected",
            "Flows pinned to an element that left the pool, placed again",
        ),
        (
            "rsplb_flows_evicted",
            "Live flows pushed out of a full flow table set (rising: the table is too small)",
        ),
        (
            "rsplb_flow_table_full_syns",
            "SYNs that found their flow table set full of established flows, which a SYN never evicts (DSR: forwarded unpinned; NAT: dropped as flow_table_full)",
        ),
        (
            "rsplb_xdp_events_suppressed",
            "Events of the XDP program (empty pool, unresolved next hop, ...) not logged because of the per-CPU rate limit",
        ),
    ]
    .into_iter()
    .map(|(name, help)| (name, counter_family::<Iface>(registry, name, help)))
    .collect();
    for (i, name) in stat::NAMES.iter().enumerate() {
        let v = s.global[i];
        match global_family(name) {
            Some(("rsplb_xdp_actions", a)) => {
                actions
                    .get_or_create(&Action {
                        interface: iface.clone(),
                        action: a.into(),
                    })
                    .inc_by(v);
            }
            Some((family @ ("rsplb_passed_packets" | "rsplb_dropped_packets"), r)) => {
                let f = if family == "rsplb_passed_packets" {
                    &passed
                } else {
                    &dropped
                };
                f.get_or_create(&Reason {
                    interface: iface.clone(),
                    reason: r.into(),
                })
                .inc_by(v);
            }
            Some((family, _)) => {
                if let Some(f) = events.get(family) {
                    f.get_or_create(&Iface {
                        interface: iface.clone(),
                    })
                    .inc_by(v);
                }
            }
            None => log::debug!("global counter {name} has no metric family"),
        }
    }

    let vip_fams = [
        ("rsplb_vip_packets", "Packets steered, per VIP"),
        ("rsplb_vip_bytes", "Bytes steered, per VIP"),
        ("rsplb_vip_new_flows", "New flows placed, per VIP"),
        (
            "rsplb_vip_dropped_source_not_allowed",
            "Packets dropped because their source is in none of the VIP's allow list prefixes, per VIP",
        ),
    ]
    .map(|(n, h)| counter_family::<VipLabels>(registry, n, h));
    let vip_table = gauge_family::<VipTable>(
        registry,
        "rsplb_vip_table_info",
        "Each VIP with its pool, mode and the digest of its Maglev table (1)",
    );
    for v in &s.vips {
        let l = VipLabels {
            interface: iface.clone(),
            vip: v.vip.clone(),
            pool: v.pool.clone(),
            mode: v.mode.to_string(),
        };
        vip_fams[0].get_or_create(&l).inc_by(v.counters.packets);
        vip_fams[1].get_or_create(&l).inc_by(v.counters.bytes);
        vip_fams[2].get_or_create(&l).inc_by(v.counters.new_flows);
        vip_fams[3].get_or_create(&l).inc_by(v.counters.refused);
        let digest = snap
            .digests
            .and_then(|d| d.get(&v.vip))
            .cloned()
            .unwrap_or_default();
        vip_table
            .get_or_create(&VipTable {
                interface: l.interface,
                vip: l.vip,
                pool: l.pool,
                mode: l.mode,
                table_digest: digest,
            })
            .set(1);
    }

    let el_fams = [
        ("rsplb_element_packets", "Packets steered, per pool element"),
        ("rsplb_element_bytes", "Bytes steered, per pool element"),
        (
            "rsplb_element_new_flows",
            "New flows placed, per pool element",
        ),
    ]
    .map(|(n, h)| counter_family::<ElementLabels>(registry, n, h));
    let weight = gauge_family::<ElementLabels>(
        registry,
        "rsplb_element_weight",
        "Weight of each pool element",
    );
    let state = gauge_family::<ElementStateLabels>(
        registry,
        "rsplb_element_state",
        "State of each pool element: 1 for its state, 0 for the others",
    );
    let info = gauge_family::<ElementInfo>(
        registry,
        "rsplb_element_info",
        "Each pool element with its owner: the registrar or a hand-added element (1)",
    );
    let health = gauge_family::<ElementHealthLabels>(
        registry,
        "rsplb_element_health",
        "Health of each pool element as the balancer-side checks see it: 1 for its health (up, down, slow_start), 0 for the others",
    );
    let transitions = counter_family::<Transition>(
        registry,
        "rsplb_health_transitions",
        "Elements the balancer-side checks took down or brought back up",
    );
    for (to, n) in crate::health::runner::transitions() {
        transitions
            .get_or_create(&Transition {
                interface: iface.clone(),
                to: to.into(),
            })
            .inc_by(n);
    }
    for e in &s.elements {
        let l = ElementLabels {
            interface: iface.clone(),
            pool: e.pool.clone(),
            element: e.address.clone(),
        };
        el_fams[0].get_or_create(&l).inc_by(e.counters.packets);
        el_fams[1].get_or_create(&l).inc_by(e.counters.bytes);
        el_fams[2].get_or_create(&l).inc_by(e.counters.new_flows);
        weight.get_or_create(&l).set(i64::from(e.weight));
        for st in [ElementState::Active, ElementState::Draining] {
            state
                .get_or_create(&ElementStateLabels {
                    interface: iface.clone(),
                    pool: e.pool.clone(),
                    element: e.address.clone(),
                    state: crate::output::state_name(st).into(),
                })
                .set(i64::from(st == e.state));
        }
        let entry = snap
            .elements
            .iter()
            .find(|x| x.pool == e.pool && x.element_addr().to_string() == e.address);
        let now = entry.map(|x| x.health).unwrap_or_default();
        for h in ["up", "down", "slow_start"] {
            let is = match now {
                Health::Up => "up",
                Health::Down => "down",
                Health::SlowStart(_) => "slow_start",
            };
            health
                .get_or_create(&ElementHealthLabels {
                    interface: iface.clone(),
                    pool: e.pool.clone(),
                    element: e.address.clone(),
                    health: h.into(),
                })
                .set(i64::from(h == is));
        }
        let owner = entry.map_or("unknown", |x| x.owner.name());
        info.get_or_create(&ElementInfo {
            interface: l.interface,
            pool: l.pool,
            element: l.element,
            owner: owner.into(),
        })
        .set(1);
    }
}

fn register_registrar(
    registry: &mut Registry,
    stats: &StatsSnapshot,
    scope: Option<&RegistrarsSnapshot>,
) {
    let id = RegistrarLabels {
        registrar: format!("{:08x}", stats.registrar_id),
    };
    for (name, help, v) in [
        (
            "rsplb_registrar_pools",
            "Pools in the embedded registrar's handlespace",
            stats.pools,
        ),
        (
            "rsplb_registrar_elements",
            "Pool elements in the embedded registrar's handlespace",
            stats.elements,
        ),
        (
            "rsplb_registrar_asap_peers",
            "ASAP connections of the embedded registrar",
            stats.peers,
        ),
    ] {
        gauge_family::<RegistrarLabels>(registry, name, help)
            .get_or_create(&id)
            .set(i64::try_from(v).unwrap_or(i64::MAX));
    }
    if let Some(scope) = scope {
        let peers = gauge_family::<PeerState>(
            registry,
            "rsplb_registrar_enrp_peers",
            "ENRP peers of the embedded registrar, by state",
        );
        for p in &scope.peers {
            let state = serde_json::to_value(p.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{:?}", p.state));
            peers
                .get_or_create(&PeerState {
                    registrar: id.registrar.clone(),
                    state,
                })
                .inc();
        }
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(scope.enrp) {
            for (field, v) in fields {
                let Some(v) = v.as_u64() else { continue };
                let name = format!("rsplb_registrar_enrp_{field}");
                let help = format!(
                    "The embedded registrar's ENRP {} count",
                    field.replace('_', " ")
                );
                counter_family::<RegistrarLabels>(registry, &name, &help)
                    .get_or_create(&id)
                    .inc_by(v);
            }
        }
    }
    // Every counter of the registrar core, one family each, named as in its /stats.
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(stats.counters) {
        for (field, v) in fields {
            let Some(v) = v.as_u64() else { continue };
            let name = format!("rsplb_registrar_{field}");
            let help = format!("The embedded registrar's {} count", field.replace('_', " "));
            counter_family::<RegistrarLabels>(registry, &name, &help)
                .get_or_create(&id)
                .inc_by(v);
        }
    }
}

/// The registry of one scrape.
pub fn registry(snap: &Snapshot<'_>) -> Registry {
    let mut registry = Registry::default();
    if let Some(s) = snap.stats {
        register_dataplane(&mut registry, s, snap);
    }
    if let Some((stats, scope)) = snap.registrar {
        register_registrar(&mut registry, stats, scope);
    }
    if let Some(d) = &snap.daemon {
        gauge_f64(
            &mut registry,
            "rsplb_daemon_start_time_seconds",
            "When this rsplb run started, Unix time",
            d.start_time_unix_s,
        );
        counter(
            &mut registry,
            "rsplb_reconcile_passes",
            "Passes of the registrar reconciler (handlespace to dataplane)",
            d.reconcile_passes,
        );
        let secs = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        secs.inc_by(d.reconcile_seconds);
        registry.register(
            "rsplb_reconcile_seconds",
            "Time spent in reconciler passes",
            secs,
        );
        if let Some(t) = d.reconcile_last_unix_s {
            gauge_f64(
                &mut registry,
                "rsplb_reconcile_last_time_seconds",
                "When the reconciler last finished a pass, Unix time",
                t,
            );
        }
        if let Some(l) = &d.reconcile_latency {
            registry.register(
                "rsplb_reconcile_latency_seconds",
                "From a handlespace change at the embedded registrar to the table flip that carries it",
                FixedHistogram(l.clone()),
            );
        }
    }
    registry
}

/// The OpenMetrics text of one scrape.
pub fn encode_text(snap: &Snapshot<'_>) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry(snap));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        addr::Mode,
        control::{ElementStats, VipStats},
    };
    use rsplb_common::Counters;
    use std::collections::BTreeSet;

    fn sample() -> Stats {
        let mut global = [0u64; stat::COUNT as usize];
        global[stat::ACTION_TX as usize] = 5;
        global[stat::ACTION_PASS as usize] = 3;
        global[stat::PASS_NOT_VIP as usize] = 2;
        global[stat::PASS_NOT_IP as usize] = 1;
        global[stat::ACTION_DROP as usize] = 7;
        global[stat::DROP_SOURCE_NOT_ALLOWED as usize] = 7;
        Stats {
            interface: "veth0".into(),
            time_unix_ms: 1,
            vips: vec![VipStats {
                vip: "198.18.0.100:80/tcp".into(),
                pool: "web".into(),
                mode: Mode::Dsr,
                slot: 0,
                counters: Counters {
                    packets: 5,
                    bytes: 500,
                    new_flows: 1,
                    refused: 7,
                },
            }],
            elements: vec![ElementStats {
                pool: "web".into(),
                address: "198.18.1.2:80".into(),
                weight: 3,
                state: ElementState::Active,
                slot: 4,
                counters: Counters {
                    packets: 4,
                    bytes: 400,
                    new_flows: 1,
                    refused: 0,
                },
            }],
            global,
        }
    }

    #[test]
    fn every_global_counter_has_a_family() {
        for name in stat::NAMES {
            assert!(global_family(name).is_some(), "{name} has no metric family");
        }
    }

    #[test]
    fn actions_and_reasons_are_separate_families_that_sum_right() {
        let s = sample();
        let digests: BTreeMap<String, String> =
            [("198.18.0.100:80/tcp".to_string(), "00aa".to_string())].into();
        let t = encode_text(&Snapshot {
            stats: Some(&s),
            digests: Some(&digests),
            ..Snapshot::default()
        });
        assert!(t.contains("rsplb_xdp_actions_total{interface=\"veth0\",action=\"tx\"} 5"));
        assert!(t.contains("rsplb_xdp_actions_total{interface=\"veth0\",action=\"pass\"} 3"));
        assert!(t.contains("rsplb_passed_packets_total{interface=\"veth0\",reason=\"not_vip\"} 2"));
        assert!(t.contains(
            "rsplb_vip_packets_total{interface=\"veth0\",vip=\"198.18.0.100:80/tcp\",pool=\"web\",mode=\"dsr\"} 5"
        ));
        assert!(t.contains("table_digest=\"00aa\"} 1"));
        assert!(t.contains(
            "rsplb_vip_dropped_source_not_allowed_total{interface=\"veth0\",vip=\"198.18.0.100:80/tcp\",pool=\"web\",mode=\"dsr\"} 7"
        ));
        assert!(t.contains(
            "rsplb_element_bytes_total{interface=\"veth0\",pool=\"web\",element=\"198.18.1.2:80\"} 400"
        ));
        assert!(t.contains("state=\"draining\"} 0"));
        assert!(t.contains(
            "rsplb_element_health{interface=\"veth0\",pool=\"web\",element=\"198.18.1.2:80\",health=\"up\"} 1"
        ));
        assert!(t.contains("rsplb_health_transitions_total{interface=\"veth0\",to=\"down\"}"));
        // Pass reasons sum to the pass action; no family mixes actions and reasons.
        let sum = |prefix: &str| -> u64 {
            t.lines()
                .filter(|l| l.starts_with(prefix))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                .sum()
        };
        assert_eq!(sum("rsplb_passed_packets_total{"), 3);
        assert_eq!(sum("rsplb_xdp_actions_total{"), 15);
        assert_eq!(sum("rsplb_dropped_packets_total{"), 7);
        assert!(t.contains(
            "rsplb_dropped_packets_total{interface=\"veth0\",reason=\"source_not_allowed\"} 7"
        ));
        assert!(t.ends_with("# EOF\n"));
    }

    #[test]
    fn the_reconcile_latency_is_a_histogram_with_fine_buckets() {
        let latency = LatencySnapshot {
            sum_s: 0.0031,
            count: 3,
            buckets: crate::reconcile::LATENCY_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .enumerate()
                .map(|(i, b)| (b, u64::from(i == 1) * 2 + u64::from(i == 7)))
                .collect(),
        };
        let t = encode_text(&Snapshot {
            daemon: Some(DaemonFigures {
                reconcile_latency: Some(latency),
                ..DaemonFigures::default()
            }),
            ..Snapshot::default()
        });
        assert!(
            t.contains("# TYPE rsplb_reconcile_latency_seconds histogram"),
            "{t}"
        );
        assert!(t.contains("rsplb_reconcile_latency_seconds_count 3"), "{t}");
        // Cumulative: 2 at or below 100 µs, all 3 at or below 1.5 ms and beyond.
        assert!(
            t.contains("rsplb_reconcile_latency_seconds_bucket{le=\"0.0001\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("rsplb_reconcile_latency_seconds_bucket{le=\"0.0015\"} 3"),
            "{t}"
        );
        assert!(
            t.contains("rsplb_reconcile_latency_seconds_bucket{le=\"+Inf\"} 3"),
            "{t}"
        );
    }

    /// Every series name a daemon with a dataplane, an embedded registrar and a reconciler
    /// exports (`_total` on counters), from the TYPE lines of a scrape.
    fn exported_names() -> BTreeSet<String> {
        let s = sample();
        let stats = StatsSnapshot {
            registrar_id: 1,
            peers: 0,
            pools: 0,
            elements: 0,
            counters: Default::default(),
            sctp: None,
        };
        let scope = RegistrarsSnapshot {
            registrar_id: 1,
            registrar_id_hex: "00000001".into(),
            sync_state: None,
            checksum: 0,
            own_elements: 0,
            peers: vec![],
            enrp: Default::default(),
        };
        let text = encode_text(&Snapshot {
            stats: Some(&s),
            registrar: Some((&stats, Some(&scope))),
            daemon: Some(DaemonFigures {
                reconcile_last_unix_s: Some(1.0),
                reconcile_latency: Some(crate::reconcile::LATENCY.snapshot()),
                ..DaemonFigures::default()
            }),
            ..Snapshot::default()
        });
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .flat_map(|l| match l.split_once(' ') {
                Some((name, "counter")) => vec![format!("{name}_total")],
                Some((name, "histogram")) => ["_bucket", "_sum", "_count"]
                    .iter()
                    .map(|s| format!("{name}{s}"))
                    .collect(),
                Some((name, _)) => vec![name.to_string()],
                None => vec![l.to_string()],
            })
            .collect()
    }

    /// The metric names in a PromQL expression.
    fn metric_names(expr: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = expr;
        while let Some(i) = rest.find("rsplb_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            out.push(tail[..end].to_string());
            rest = &tail[end..];
        }
        out
    }

    fn expressions(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("expr" | "definition" | "query", serde_json::Value::String(e)) => {
                            out.push(e.clone())
                        }
                        _ => expressions(x, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| expressions(x, out)),
            _ => {}
        }
    }

    #[test]
    fn the_grafana_dashboard_uses_only_exported_metrics() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../deploy/grafana/rsplb.json")).unwrap();
        let exported = exported_names();
        let mut exprs = Vec::new();
        expressions(&dashboard, &mut exprs);
        let names: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
        assert!(names.len() >= 20, "only {names:?} in the dashboard");
        for n in &names {
            assert!(
                exported.contains(n),
                "the dashboard uses {n}, which the exporter does not produce (it has {exported:?})"
            );
        }
    }
}
