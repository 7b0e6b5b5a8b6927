//! `rsplb status`: one interface at a glance: its VIPs (pool, mode, table digest, counters),
//! its elements (state, weight, owner, next hop, counters) and the daemon serving it, if one
//! runs (from its status file: start time, endpoint, embedded registrar, last reconcile).
//! Pure functions of what the caller read, tested without a kernel.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::{Value, json};

use crate::{
    control::Stats,
    daemon::{configured::ReloadStatus, status::DaemonStatus},
    output::state_name,
    state::State,
};

/// What `rsplb status` reads.
pub struct StatusInput<'a> {
    pub state: &'a State,
    pub digests: &'a BTreeMap<String, String>,
    pub stats: &'a Stats,
    /// The daemon serving the interface, if one runs.
    pub daemon: Option<&'a DaemonStatus>,
    /// Its configuration file's last load (`rsplb run --config`), if it has one.
    pub config: Option<&'a ReloadStatus>,
    /// Now, Unix time in ms.
    pub now_unix_ms: u64,
}

fn daemon_json(d: Option<&DaemonStatus>, config: Option<&ReloadStatus>, now: u64) -> Value {
    let Some(d) = d else {
        return json!({ "running": false });
    };
    json!({
        "running": true,
        "pid": d.pid,
        "started_unix_ms": d.started_unix_ms,
        "uptime_s": now.saturating_sub(d.started_unix_ms) / 1000,
        "updated_unix_ms": d.updated_unix_ms,
        "http": d.http.map(|a| a.to_string()),
        "registrar": d.registrar,
        "reconcile": d.reconcile,
        "config": config.filter(|c| c.pid == d.pid).map(|c| json!({
            "file": c.file,
            "generation": c.generation,
            "applied": c.applied,
            "message": c.message,
            "time_unix_ms": c.time_unix_ms,
        })),
    })
}

/// `status --json`.
pub fn status_json(i: &StatusInput<'_>) -> Value {
    let st = i.state;
    let vips: Vec<Value> = st
        .vips
        .iter()
        .map(|v| {
            let c = i
                .stats
                .vips
                .iter()
                .find(|s| s.vip == v.vip)
                .map(|s| s.counters);
            // What the VIP's Maglev table holds: its pool's active, healthy elements, or its
            // backup pool's, or all of them when none is healthy and the rule is fail-static.
            let serving = crate::control_core::vip_elements(st, &v.pool);
            let in_service = serving.len();
            let backup = serving
                .first()
                .filter(|(e, _)| e.pool != v.pool)
                .map(|(e, _)| e.pool.clone());
            json!({
                "vip": v.vip,
                "pool": v.pool,
                "mode": v.mode.to_string(),
                "snat": v.snat.map(|a| a.to_string()),
                "table_digest": i.digests.get(&v.vip),
                "elements_in_service": in_service,
                "backup_pool_serving": backup,
                "packets": c.map(|c| c.packets),
                "bytes": c.map(|c| c.bytes),
                "new_flows": c.map(|c| c.new_flows),
                "allow": v.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "drop_source_not_allowed": c.map(|c| c.refused),
                "hash": v.hash.to_string(),
            })
        })
        .collect();
    let elements: Vec<Value> = st
        .elements
        .iter()
        .map(|e| {
            let address = e.element_addr().to_string();
            let c = i
                .stats
                .elements
                .iter()
                .find(|s| s.pool == e.pool && s.address == address)
                .map(|s| s.counters);
            json!({
                "pool": e.pool,
                "address": address,
                "state": state_name(e.state),
                "weight": e.weight,
                "owner": e.owner.name(),
                "health": e.health.name(),
                // The signal behind it: the balancer-side check when there is one; a
                // registered element is otherwise kept by the registrar's keep-alives and pool
                // users' unreachable reports (it leaves when they fail).
                "health_by": match (&e.checked, e.owner) {
                    (Some(_), _) => "check",
                    (None, crate::state::Owner::Registrar) => "registrar",
                    (None, _) => "none",
                },
                "check": e.checked.as_ref().map(|c| json!({
                    "check": c.check,
                    "reason": c.reason,
                    "since_unix_ms": c.since_unix_ms,
                })),
                "next_hop": match &e.nexthop {
                    Some(h) if h.resolved() => crate::addr::format_mac(h.dst_mac),
                    _ => "unresolved".to_string(),
                },
                "packets": c.map(|c| c.packets),
                "bytes": c.map(|c| c.bytes),
                "new_flows": c.map(|c| c.new_flows),
            })
        })
        .collect();
    let sum = |prefix: &str| -> u64 {
        rsplb_common::stat::NAMES
            .iter()
            .zip(i.stats.global.iter())
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    };
    json!({
        "interface": st.interface,
        "xdp_mode": if st.options.generic { "generic" } else { "native" },
        "daemon": daemon_json(i.daemon, i.config, i.now_unix_ms),
        "vips": vips,
        "elements": elements,
        "dropped_packets": sum("drop_"),
        "passed_packets": sum("pass_"),
    })
}

fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// The human `status`.
pub fn status_text(i: &StatusInput<'_>) -> String {
    let st = i.state;
    let v = status_json(i);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "interface {}: attached ({} XDP)",
        st.interface,
        if st.options.generic {
            "generic"
        } else {
            "native"
        }
    );
    match i.daemon {
        None => {
            let _ = writeln!(
                s,
                "daemon: none runs for {0} (`rsplb -i {0} run` starts one; the dataplane forwards without it)",
                st.interface
            );
        }
        Some(d) => {
            let _ = writeln!(
                s,
                "daemon: running (pid {}, up {}{})",
                d.pid,
                ago(i.now_unix_ms, d.started_unix_ms),
                d.http
                    .map(|a| format!(", metrics http://{a}/metrics"))
                    .unwrap_or_default()
            );
            if let Some(c) = i.config.filter(|c| c.pid == d.pid) {
                let _ = writeln!(
                    s,
                    "configuration: {}, generation {} ({}, {} ago)",
                    c.file,
                    c.generation,
                    if c.applied {
                        "applied"
                    } else {
                        "the last reload was refused: see `rsplb reload` or the log"
                    },
                    ago(i.now_unix_ms, c.time_unix_ms)
                );
            }
            if let Some(r) = &d.registrar {
                let asap: Vec<String> = r.asap.iter().map(|a| a.to_string()).collect();
                let _ = writeln!(
                    s,
                    "registrar: {} on {} ({}): {} pool(s), {} element(s), {} ASAP connection(s){}",
                    r.id,
                    asap.join(", "),
                    if r.answering {
                        "answering"
                    } else {
                        "NOT ANSWERING"
                    },
                    r.pools,
                    r.elements,
                    r.asap_connections,
                    r.sync_state
                        .as_deref()
                        .map(|x| format!(", ENRP {x}"))
                        .unwrap_or_default()
                );
                for p in &r.enrp_peers {
                    let _ = writeln!(
                        s,
                        "  ENRP peer {} at {}: {} (heard {} ms ago)",
                        p.id, p.endpoint, p.state, p.last_heard_ms
                    );
                }
            }
            if let Some(rc) = &d.reconcile {
                let _ = writeln!(
                    s,
                    "reconciler: {} pass(es){}",
                    rc.passes,
                    rc.last_unix_ms
                        .map(|t| format!(", last {} ago", ago(i.now_unix_ms, t)))
                        .unwrap_or_default()
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "\n{:<28} {:<16} {:<5} {:<6} {:<16} {:>8} {:>12} {:>10}",
        "VIP", "POOL", "MODE", "HASH", "TABLE DIGEST", "IN SERV.", "PACKETS", "NEW FLOWS"
    );
    let num = |x: &Value| x.as_u64().map_or("-".to_string(), |n| n.to_string());
    for x in v["vips"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "{:<28} {:<16} {:<5} {:<6} {:<16} {:>8} {:>12} {:>10}",
            x["vip"].as_str().unwrap_or(""),
            match x["backup_pool_serving"].as_str() {
                Some(b) => format!("{}>{b}", x["pool"].as_str().unwrap_or("")),
                None => x["pool"].as_str().unwrap_or("").to_string(),
            },
            x["mode"].as_str().unwrap_or(""),
            x["hash"].as_str().unwrap_or("-"),
            x["table_digest"].as_str().unwrap_or("-"),
            num(&x["elements_in_service"]),
            num(&x["packets"]),
            num(&x["new_flows"]),
        );
        let allow: Vec<&str> = x["allow"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !allow.is_empty() {
            let _ = writeln!(
                s,
                "  allow: {} ({} packets from other sources dropped)",
                allow.join(", "),
                num(&x["drop_source_not_allowed"])
            );
        }
    }
    let _ = writeln!(
        s,
        "\n{:<16} {:<28} {:<9} {:<22} {:>6} {:<9} {:<18} {:>12} {:>10}",
        "POOL", "ELEMENT", "STATE", "HEALTH", "WEIGHT", "OWNER", "NEXT HOP", "PACKETS", "NEW FLOWS"
    );
    for x in v["elements"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "{:<16} {:<28} {:<9} {:<22} {:>6} {:<9} {:<18} {:>12} {:>10}",
            x["pool"].as_str().unwrap_or(""),
            x["address"].as_str().unwrap_or(""),
            x["state"].as_str().unwrap_or(""),
            match x["health_by"].as_str() {
                Some(by @ ("check" | "registrar")) =>
                    format!("{} ({by})", x["health"].as_str().unwrap_or("")),
                _ => x["health"].as_str().unwrap_or("").to_string(),
            },
            num(&x["weight"]),
            x["owner"].as_str().unwrap_or(""),
            x["next_hop"].as_str().unwrap_or(""),
            num(&x["packets"]),
            num(&x["new_flows"]),
        );
    }
    // What changed the health of checked elements, and when.
    let now = i.now_unix_ms;
    let mut said = false;
    for x in v["elements"].as_array().into_iter().flatten() {
        let c = &x["check"];
        let Some(check) = c["check"].as_str() else {
            continue;
        };
        if !said {
            let _ = writeln!(s, "\nchecks:");
            said = true;
        }
        let why = match (c["reason"].as_str(), c["since_unix_ms"].as_u64()) {
            (Some(r), Some(t)) => format!(
                "{}: {r}, {} ago",
                x["health"].as_str().unwrap_or(""),
                ago(now, t)
            ),
            (Some(r), None) => format!("{}: {r}", x["health"].as_str().unwrap_or("")),
            _ => "no change of health since it is checked".to_string(),
        };
        let _ = writeln!(
            s,
            "  {} {}: {check}; {why}",
            x["pool"].as_str().unwrap_or(""),
            x["address"].as_str().unwrap_or("")
        );
    }
    let _ = writeln!(
        s,
        "\npackets dropped: {}, passed to the stack: {} (`rsplb stats` has the reasons)",
        v["dropped_packets"], v["passed_packets"]
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        addr::{Mode, VipHash},
        control::{ElementStats, VipStats},
        daemon::status::{ReconcileStatus, RegistrarStatus},
        state::{AttachOptions, ElementState, ElementStateEntry, Owner, VipState},
    };
    use rsplb_common::{Counters, stat};

    fn input_parts() -> (State, BTreeMap<String, String>, Stats) {
        let mut st = State::new("veth0", 1, 1, None, AttachOptions::default());
        st.vips.push(VipState {
            allow: vec!["198.18.0.0/15".parse().unwrap()],
            hash: VipHash::Client,
            ..VipState::test("198.19.0.100:80/tcp", "web")
        });
        st.elements.push(ElementStateEntry {
            weight: 3,
            state: ElementState::Draining,
            owner: Owner::Registrar,
            ..ElementStateEntry::test("web", [198, 18, 1, 11].into(), 0)
        });
        let digests = [("198.19.0.100:80/tcp".to_string(), "00ff".to_string())].into();
        let mut global = [0u64; stat::COUNT as usize];
        global[stat::DROP_NO_ELEMENT as usize] = 4;
        let c = Counters {
            packets: 9,
            bytes: 900,
            new_flows: 2,
            refused: 3,
        };
        let stats = Stats {
            interface: "veth0".into(),
            time_unix_ms: 0,
            vips: vec![VipStats {
                vip: "198.19.0.100:80/tcp".into(),
                pool: "web".into(),
                mode: Mode::Dsr,
                slot: 0,
                counters: c,
            }],
            elements: vec![ElementStats {
                pool: "web".into(),
                address: "198.18.1.11".into(),
                weight: 3,
                state: ElementState::Draining,
                slot: 0,
                counters: c,
            }],
            global,
        };
        (st, digests, stats)
    }

    /// The input of `rsplb status` without a daemon, at 100 s.
    fn no_daemon<'a>(
        state: &'a State,
        digests: &'a BTreeMap<String, String>,
        stats: &'a Stats,
    ) -> StatusInput<'a> {
        StatusInput {
            state,
            digests,
            stats,
            daemon: None,
            config: None,
            now_unix_ms: 100_000,
        }
    }

    #[test]
    fn status_names_the_signal_behind_health() {
        let (mut st, digests, stats) = input_parts();
        let mut checked = st.elements[0].clone();
        checked.addr = [198, 18, 1, 12].into();
        checked.owner = Owner::Config;
        checked.health = crate::state::Health::Down;
        checked.checked = Some(crate::state::CheckedBy {
            check: "tcp 198.18.1.12:80".into(),
            reason: Some("3 failures in a row (last: connection refused)".into()),
            since_unix_ms: Some(88_000),
        });
        let mut manual = st.elements[0].clone();
        manual.addr = [198, 18, 1, 13].into();
        manual.owner = Owner::Manual;
        st.elements.extend([checked, manual]);
        let i = no_daemon(&st, &digests, &stats);
        let v = status_json(&i);
        let by: Vec<&str> = (0..3)
            .map(|k| v["elements"][k]["health_by"].as_str().unwrap())
            .collect();
        assert_eq!(by, ["registrar", "check", "none"]);
        assert_eq!(v["elements"][1]["check"]["check"], "tcp 198.18.1.12:80");
        assert_eq!(v["elements"][0]["check"], Value::Null);
        let t = status_text(&i);
        assert!(t.contains("down (check)"), "{t}");
        assert!(t.contains("up (registrar)"), "{t}");
        assert!(
            t.contains("  web 198.18.1.12: tcp 198.18.1.12:80; down: 3 failures in a row (last: connection refused), 12 s ago"),
            "{t}"
        );
    }

    #[test]
    fn status_without_and_with_a_daemon() {
        let (st, digests, stats) = input_parts();
        let mut i = no_daemon(&st, &digests, &stats);
        let v = status_json(&i);
        assert_eq!(v["daemon"]["running"], false);
        assert_eq!(v["vips"][0]["table_digest"], "00ff");
        assert_eq!(v["vips"][0]["elements_in_service"], 0);
        assert_eq!(v["elements"][0]["state"], "draining");
        assert_eq!(v["elements"][0]["owner"], "registrar");
        assert_eq!(v["elements"][0]["packets"], 9);
        assert_eq!(v["dropped_packets"], 4);
        assert!(status_text(&i).contains("daemon: none runs for veth0"));
        assert_eq!(v["vips"][0]["allow"][0], "198.18.0.0/15");
        assert_eq!(v["vips"][0]["drop_source_not_allowed"], 3);
        assert_eq!(v["vips"][0]["hash"], "client");
        let t = status_text(&i);
        assert!(t.contains(" dsr   client "), "{t}");
        assert!(
            t.contains("  allow: 198.18.0.0/15 (3 packets from other sources dropped)"),
            "{t}"
        );

        let d = DaemonStatus {
            pid: 42,
            interface: "veth0".into(),
            started_unix_ms: 40_000,
            updated_unix_ms: 99_000,
            interval_ms: 5000,
            http: Some("127.0.0.1:9464".parse().unwrap()),
            registrar: Some(RegistrarStatus {
                id: "0000abcd".into(),
                asap: vec!["198.18.0.1:3863".parse().unwrap()],
                answering: true,
                pools: 1,
                elements: 1,
                asap_connections: 1,
                sync_state: None,
                enrp_peers: vec![],
            }),
            reconcile: Some(ReconcileStatus {
                passes: 3,
                last_unix_ms: Some(98_000),
                total_ms: 1.5,
            }),
        };
        i.daemon = Some(&d);
        let v = status_json(&i);
        assert_eq!(v["daemon"]["running"], true);
        assert_eq!(v["daemon"]["uptime_s"], 60);
        assert_eq!(v["daemon"]["registrar"]["answering"], true);
        assert_eq!(v["daemon"]["reconcile"]["passes"], 3);
        let t = status_text(&i);
        assert!(t.contains("daemon: running (pid 42, up 1 min 0 s"), "{t}");
        assert!(t.contains("registrar: 0000abcd"), "{t}");
        assert!(t.contains("last 2 s ago"), "{t}");
    }
}
