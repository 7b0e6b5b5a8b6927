//! What the command line prints: the `--json` shapes of cli-contract.md, the human tables, and
//! per-second rates between two counter snapshots. Pure functions, tested without a kernel.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rsplb_common::{Counters, stat};
use serde_json::{Value, json};

use crate::{
    addr::format_mac,
    control::Stats,
    state::{ElementState, ElementStateEntry, VipState},
};

pub fn state_name(s: ElementState) -> &'static str {
    match s {
        ElementState::Active => "active",
        ElementState::Draining => "draining",
    }
}

/// `digests`: each VIP's table digest (`Balancer::vip_digests`), by VIP.
pub fn vips_json(iface: &str, vips: &[VipState], digests: &BTreeMap<String, String>) -> Value {
    json!({
        "interface": iface,
        "vips": vips.iter().map(|v| json!({
            "vip": v.vip,
            "pool": v.pool,
            "mode": v.mode.to_string(),
            "snat": v.snat.map(|a| a.to_string()),
            "slot": v.slot,
            "table_digest": digests.get(&v.vip),
            "allow": v.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "hash": v.hash.to_string(),
        })).collect::<Vec<_>>(),
    })
}

fn element_mac(e: &ElementStateEntry) -> Option<String> {
    e.nexthop
        .as_ref()
        .filter(|h| h.resolved())
        .map(|h| format_mac(h.dst_mac))
}

pub fn elements_json(iface: &str, elements: &[ElementStateEntry]) -> Value {
    json!({
        "interface": iface,
        "elements": elements.iter().map(|e| json!({
            "pool": e.pool,
            "address": e.element_addr().to_string(),
            "weight": e.weight,
            "state": state_name(e.state),
            "slot": e.slot,
            "mac": element_mac(e),
            "ifindex": e.nexthop.as_ref().map(|h| h.ifindex),
            "owner": e.owner.name(),
            "health": e.health.name(),
        })).collect::<Vec<_>>(),
    })
}

pub fn vips_table(vips: &[VipState], digests: &BTreeMap<String, String>) -> String {
    let mut s = format!(
        "{:<28} {:<16} {:<5} {:<6} {:<24} {:>5} {:<16}\n",
        "VIP", "POOL", "MODE", "HASH", "SNAT", "SLOT", "TABLE DIGEST"
    );
    for v in vips {
        let snat = v.snat.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
        let d = digests.get(&v.vip).map_or("-", String::as_str);
        let _ = writeln!(
            s,
            "{:<28} {:<16} {:<5} {:<6} {:<24} {:>5} {:<16}",
            v.vip,
            v.pool,
            // (Display of Mode and VipHash writes plain text, which ignores the width.)
            v.mode.to_string(),
            v.hash.to_string(),
            snat,
            v.slot,
            d
        );
        if !v.allow.is_empty() {
            let list: Vec<String> = v.allow.iter().map(ToString::to_string).collect();
            let _ = writeln!(s, "  allow: {}", list.join(", "));
        }
    }
    s
}

pub fn elements_table(elements: &[ElementStateEntry]) -> String {
    let mut s = format!(
        "{:<16} {:<28} {:>6} {:<9} {:<15} {:>5} {:<18} {:>7}\n",
        "POOL", "ADDRESS", "WEIGHT", "STATE", "HEALTH", "SLOT", "NEXT HOP MAC", "IFINDEX"
    );
    for e in elements {
        let mac = element_mac(e).unwrap_or_else(|| "unresolved".into());
        let ifindex = e
            .nexthop
            .as_ref()
            .map(|h| h.ifindex.to_string())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "{:<16} {:<28} {:>6} {:<9} {:<15} {:>5} {:<18} {:>7}",
            e.pool,
            e.element_addr().to_string(),
            e.weight,
            state_name(e.state),
            e.health.name(),
            e.slot,
            mac,
            ifindex
        );
    }
    s
}

/// Per-second rates of one row between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub packets_per_s: f64,
    pub bytes_per_s: f64,
    pub new_flows_per_s: f64,
}

/// Rates from `prev` to `cur` over `elapsed_ms`. A counter that went backwards (slot reused, map
/// reloaded) counts from zero rather than producing a huge bogus rate.
pub fn rates(prev: &Counters, cur: &Counters, elapsed_ms: u64) -> Rates {
    let secs = (elapsed_ms.max(1)) as f64 / 1000.0;
    let d = |a: u64, b: u64| if b >= a { b - a } else { b } as f64 / secs;
    Rates {
        packets_per_s: d(prev.packets, cur.packets),
        bytes_per_s: d(prev.bytes, cur.bytes),
        new_flows_per_s: d(prev.new_flows, cur.new_flows),
    }
}

fn rates_json(r: &Rates) -> Value {
    json!({
        "packets_per_s": r.packets_per_s,
        "bytes_per_s": r.bytes_per_s,
        "new_flows_per_s": r.new_flows_per_s,
    })
}

fn find_prev_vip<'a>(prev: &'a Stats, vip: &str) -> Option<&'a Counters> {
    prev.vips.iter().find(|v| v.vip == vip).map(|v| &v.counters)
}

fn find_prev_element<'a>(prev: &'a Stats, pool: &str, address: &str) -> Option<&'a Counters> {
    prev.elements
        .iter()
        .find(|e| e.pool == pool && e.address == address)
        .map(|e| &e.counters)
}

/// `stats --json`; with `prev`, every row also gets `"rates"`.
pub fn stats_json(s: &Stats, prev: Option<&Stats>) -> Value {
    let elapsed = prev.map(|p| s.time_unix_ms.saturating_sub(p.time_unix_ms));
    let zero = Counters::default();
    let vips: Vec<Value> = s
        .vips
        .iter()
        .map(|v| {
            let mut o = json!({
                "vip": v.vip, "pool": v.pool, "mode": v.mode.to_string(),
                "packets": v.counters.packets, "bytes": v.counters.bytes,
                "new_flows": v.counters.new_flows,
                "drop_source_not_allowed": v.counters.refused,
            });
            if let (Some(p), Some(el)) = (prev, elapsed) {
                let pc = find_prev_vip(p, &v.vip).unwrap_or(&zero);
                o["rates"] = rates_json(&rates(pc, &v.counters, el));
            }
            o
        })
        .collect();
    let elements: Vec<Value> = s
        .elements
        .iter()
        .map(|e| {
            let mut o = json!({
                "pool": e.pool, "address": e.address, "weight": e.weight,
                "state": state_name(e.state),
                "packets": e.counters.packets, "bytes": e.counters.bytes,
                "new_flows": e.counters.new_flows,
            });
            if let (Some(p), Some(el)) = (prev, elapsed) {
                let pc = find_prev_element(p, &e.pool, &e.address).unwrap_or(&zero);
                o["rates"] = rates_json(&rates(pc, &e.counters, el));
            }
            o
        })
        .collect();
    let mut global = serde_json::Map::new();
    for (i, name) in stat::NAMES.iter().enumerate() {
        global.insert((*name).to_string(), json!(s.global[i]));
    }
    json!({
        "interface": s.interface,
        "time_unix_ms": s.time_unix_ms,
        "vips": vips,
        "elements": elements,
        "global": Value::Object(global),
    })
}

/// The human `stats` table; with `prev`, rates per second instead of totals.
pub fn stats_table(s: &Stats, prev: Option<&Stats>) -> String {
    let elapsed = prev.map(|p| s.time_unix_ms.saturating_sub(p.time_unix_ms));
    let zero = Counters::default();
    let mut out = String::new();
    let (pk, by, nf) = if prev.is_some() {
        ("PKTS/S", "BYTES/S", "FLOWS/S")
    } else {
        ("PACKETS", "BYTES", "NEW FLOWS")
    };
    let fmt_row = |c: &Counters, p: Option<&Counters>| -> (String, String, String) {
        match (p, elapsed) {
            (Some(p), Some(el)) => {
                let r = rates(p, c, el);
                (
                    format!("{:.1}", r.packets_per_s),
                    format!("{:.1}", r.bytes_per_s),
                    format!("{:.1}", r.new_flows_per_s),
                )
            }
            _ => (
                c.packets.to_string(),
                c.bytes.to_string(),
                c.new_flows.to_string(),
            ),
        }
    };
    let _ = writeln!(
        out,
        "{:<28} {:<16} {:<5} {:>12} {:>14} {:>10}",
        "VIP", "POOL", "MODE", pk, by, nf
    );
    for v in &s.vips {
        let p = prev.map(|p| find_prev_vip(p, &v.vip).unwrap_or(&zero));
        let (a, b, c) = fmt_row(&v.counters, p);
        let _ = writeln!(
            out,
            "{:<28} {:<16} {:<5} {a:>12} {b:>14} {c:>10}",
            v.vip,
            v.pool,
            v.mode.to_string()
        );
        if v.counters.refused != 0 {
            let _ = writeln!(out, "  drop_source_not_allowed {}", v.counters.refused);
        }
    }
    let _ = writeln!(
        out,
        "\n{:<16} {:<28} {:>6} {:<9} {:>12} {:>14} {:>10}",
        "POOL", "ELEMENT", "WEIGHT", "STATE", pk, by, nf
    );
    for e in &s.elements {
        let p = prev.map(|p| find_prev_element(p, &e.pool, &e.address).unwrap_or(&zero));
        let (a, b, c) = fmt_row(&e.counters, p);
        let _ = writeln!(
            out,
            "{:<16} {:<28} {:>6} {:<9} {a:>12} {b:>14} {c:>10}",
            e.pool,
            e.address,
            e.weight,
            state_name(e.state)
        );
    }
    let nonzero: Vec<(usize, &&str)> = stat::NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| s.global[*i] != 0)
        .collect();
    if !nonzero.is_empty() {
        let _ = writeln!(out, "\nGLOBAL");
        for (i, name) in nonzero {
            let _ = writeln!(out, "  {name:<26} {:>14}", s.global[i]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        addr::{Mode, VipHash},
        control::{ElementStats, VipStats},
        state::NextHop,
    };

    fn c(p: u64, b: u64, n: u64) -> Counters {
        Counters {
            packets: p,
            bytes: b,
            new_flows: n,
            refused: 0,
        }
    }

    fn snapshot(t: u64, vp: u64, ep: u64) -> Stats {
        let mut global = [0u64; stat::COUNT as usize];
        global[stat::ACTION_TX as usize] = vp;
        Stats {
            interface: "veth0".into(),
            time_unix_ms: t,
            vips: vec![VipStats {
                vip: "198.18.0.100:80/tcp".into(),
                pool: "web".into(),
                mode: Mode::Dsr,
                slot: 0,
                counters: c(vp, vp * 100, vp / 10),
            }],
            elements: vec![ElementStats {
                pool: "web".into(),
                address: "198.18.1.2:80".into(),
                weight: 3,
                state: ElementState::Active,
                slot: 4,
                counters: c(ep, ep * 100, ep / 10),
            }],
            global,
        }
    }

    #[test]
    fn rates_are_per_second_and_survive_counter_resets() {
        let r = rates(&c(100, 1000, 10), &c(300, 5000, 30), 2000);
        assert_eq!(r.packets_per_s, 100.0);
        assert_eq!(r.bytes_per_s, 2000.0);
        assert_eq!(r.new_flows_per_s, 10.0);
        // Counter went backwards (slot reused): count from zero.
        let r = rates(&c(1000, 0, 0), &c(50, 0, 0), 1000);
        assert_eq!(r.packets_per_s, 50.0);
        // Zero elapsed time does not divide by zero.
        assert!(rates(&c(0, 0, 0), &c(5, 0, 0), 0).packets_per_s.is_finite());
    }

    #[test]
    fn stats_json_has_the_contract_shape() {
        let s = snapshot(1_000, 500, 400);
        let v = stats_json(&s, None);
        assert_eq!(v["interface"], "veth0");
        assert_eq!(v["time_unix_ms"], 1000);
        assert_eq!(v["vips"][0]["vip"], "198.18.0.100:80/tcp");
        assert_eq!(v["vips"][0]["mode"], "dsr");
        assert_eq!(v["vips"][0]["packets"], 500);
        assert_eq!(v["vips"][0]["bytes"], 50000);
        assert_eq!(v["vips"][0]["new_flows"], 50);
        assert_eq!(v["elements"][0]["address"], "198.18.1.2:80");
        assert_eq!(v["elements"][0]["state"], "active");
        assert_eq!(v["elements"][0]["weight"], 3);
        assert!(v["vips"][0].get("rates").is_none());
        let g = v["global"].as_object().unwrap();
        assert_eq!(g.len(), stat::NAMES.len());
        assert_eq!(g["action_tx"], 500);
        assert_eq!(g["drop_no_nexthop"], 0);

        let later = snapshot(3_000, 700, 1_400);
        let v = stats_json(&later, Some(&s));
        assert_eq!(v["vips"][0]["rates"]["packets_per_s"], 100.0);
        assert_eq!(v["elements"][0]["rates"]["packets_per_s"], 500.0);
        assert_eq!(v["elements"][0]["rates"]["bytes_per_s"], 50000.0);
    }

    #[test]
    fn list_json_shapes() {
        let vips = vec![VipState {
            table: 1,
            hash: VipHash::Client,
            ..VipState::test("198.18.0.100:80/tcp", "web")
        }];
        let digests: BTreeMap<String, String> = [(
            "198.18.0.100:80/tcp".to_string(),
            "00112233aabbccdd".to_string(),
        )]
        .into();
        let v = vips_json("veth0", &vips, &digests);
        assert_eq!(
            v,
            json!({"interface":"veth0","vips":[{"vip":"198.18.0.100:80/tcp","pool":"web",
                "mode":"dsr","snat":null,"slot":0,"table_digest":"00112233aabbccdd","allow":[],
                "hash":"client"}]})
        );
        let t = vips_table(&vips, &digests);
        assert!(t.lines().next().unwrap().contains(" HASH "), "{t}");
        assert!(t.contains(" dsr   client "), "{t}");
        let mut e = ElementStateEntry {
            port: Some(80),
            weight: 3,
            state: ElementState::Draining,
            ..ElementStateEntry::test("web", "198.18.1.2".parse().unwrap(), 4)
        };
        let v = elements_json("veth0", std::slice::from_ref(&e));
        assert_eq!(
            v,
            json!({"interface":"veth0","elements":[{"pool":"web","address":"198.18.1.2:80",
                "weight":3,"state":"draining","slot":4,"mac":null,"ifindex":null,
                "owner":"manual","health":"up"}]})
        );
        e.nexthop = Some(NextHop {
            ifindex: 7,
            dst_mac: [2, 0, 0, 0, 0, 0xab],
            src_mac: [2, 0, 0, 0, 0, 1],
            gateway: None,
        });
        let v = elements_json("veth0", &[e]);
        assert_eq!(v["elements"][0]["mac"], "02:00:00:00:00:ab");
        assert_eq!(v["elements"][0]["ifindex"], 7);
    }

    #[test]
    fn stats_table_shows_only_nonzero_global_counters() {
        let s = snapshot(1, 5, 4);
        let table = stats_table(&s, None);
        assert!(table.contains("action_tx"));
        assert!(!table.contains("drop_truncated"));
    }
}
