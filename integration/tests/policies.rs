//! Each RFC 5356 policy's documented weight mapping (`rsplb run --help`), checked against the
//! split of real new flows: three servers register through their sidecars with a policy, each
//! with its own value (weight, priority, load), at the registrar `rsplb run --registrar` embeds;
//! then 2,400 UDP datagrams from new source ports (each a new flow placed by Maglev) go to the
//! pool's VIP and the servers' answers say where each landed.
//!
//! Mapping: round robin and random: weight 1 each; weighted round robin and weighted random: the
//! element's weight; priority: weight 1 for the highest priority of the pool, the others
//! drained (no new flow); least used: from 100 (idle) down to 1 (fully loaded).

mod common;

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use common::*;
use rsplb_integration::{
    netns::ChildGuard,
    rserpool::{Sidecar, pool_elements, start_registrar_daemon, wait_for_elements},
    udp_flows,
};

const FLOWS: u16 = 2_400;
/// How far a share may be from its expectation (percentage points): 2,400 Maglev placements of
/// hashed source ports (one standard deviation is about 1 point).
const TOLERANCE: f64 = 4.0;

struct Case {
    name: &'static str,
    /// The policy of s1, s2, s3.
    specs: [&'static str; 3],
    /// The dataplane weight each gets (0: drained).
    weights: [u32; 3],
}

const CASES: &[Case] = &[
    Case {
        name: "round robin",
        specs: ["round-robin"; 3],
        weights: [1, 1, 1],
    },
    Case {
        name: "random",
        specs: ["random"; 3],
        weights: [1, 1, 1],
    },
    Case {
        name: "weighted round robin",
        specs: [
            "weighted-round-robin:1",
            "weighted-round-robin:2",
            "weighted-round-robin:3",
        ],
        weights: [1, 2, 3],
    },
    Case {
        name: "weighted random",
        specs: [
            "weighted-random:1",
            "weighted-random:1",
            "weighted-random:2",
        ],
        weights: [1, 1, 2],
    },
    Case {
        name: "priority",
        specs: ["priority:1", "priority:5", "priority:5"],
        weights: [0, 1, 1],
    },
    Case {
        name: "least used",
        specs: ["least-used:0", "least-used:50", "least-used:100"],
        weights: [100, 50, 1],
    },
];

#[test]
fn each_policy_splits_new_flows_as_documented() {
    let mut lab = attached_lab();
    let vip_ip: IpAddr = lab.vip4(0).into();
    let vip = SocketAddr::new(vip_ip, 80);
    let vip_s = vip_str(vip_ip, 80, "udp");
    start_registrar_daemon(&mut lab).expect("rsplb run --registrar");
    let client: IpAddr = lab.client.v4.into();
    let client_ns = lab.client.netns.name().to_string();
    let mut report = Vec::new();
    for (k, case) in CASES.iter().enumerate() {
        // One pool per case: the elements of one pool share its policy.
        let pool = format!("policy{k}");
        if k > 0 {
            lab.rsplb.on(&["vip", "del", &vip_s]).expect("vip del");
        }
        lab.rsplb
            .on(&["vip", "add", &vip_s, "--pool", &pool])
            .expect("vip add");
        let sidecars: Vec<ChildGuard> = (0..3)
            .map(|i| {
                Sidecar {
                    pool: &pool,
                    port: 80,
                    policy: Some(case.specs[i].to_string()),
                }
                .start(&lab, i)
                .expect("sidecar")
            })
            .collect();
        let expected: Vec<(String, u32)> = (0..3)
            .map(|i| (element(&lab, i, vip_ip, 80), case.weights[i]))
            .collect();
        // The documented weights, in the dataplane (a drained element: its state says so).
        wait_for_elements(
            &lab.rsplb,
            &pool,
            Duration::from_secs(20),
            &format!("{}: three elements with their weights", case.name),
            |l| {
                Ok(expected.iter().all(|(a, w)| {
                    l.iter().any(|e| {
                        &e.address == a
                            && if *w == 0 {
                                e.state != "active"
                            } else {
                                e.weight == *w && e.state == "active"
                            }
                    })
                }))
            },
        )
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e:#}; elements: {:?}",
                case.name,
                pool_elements(&lab.rsplb, &pool)
            )
        });

        let first = 20_000 + k as u16 * FLOWS;
        let answers = udp_flows(&client_ns, client, vip, first..first + FLOWS).expect("udp flows");
        let lost = answers.iter().filter(|(_, a)| a.is_none()).count();
        assert!(
            lost <= 2,
            "{}: {lost} of {FLOWS} flows unanswered",
            case.name
        );
        let total: u32 = case.weights.iter().sum();
        let mut shares = Vec::new();
        for (i, w) in case.weights.iter().enumerate() {
            let name = format!("s{}", i + 1);
            let got = answers
                .iter()
                .filter(|(_, a)| a.as_deref() == Some(name.as_str()))
                .count();
            let share = 100.0 * got as f64 / answers.len() as f64;
            let want = 100.0 * f64::from(*w) / f64::from(total);
            if *w == 0 {
                assert_eq!(got, 0, "{}: drained {name} got {got} new flows", case.name);
            } else {
                assert!(
                    (share - want).abs() <= TOLERANCE,
                    "{}: {name} got {share:.1} % of new flows, documented {want:.1} % (weights {:?})",
                    case.name,
                    case.weights
                );
            }
            shares.push(format!("{name} {share:.1}% (want {want:.1}%)"));
        }
        report.push(format!("{}: {}", case.name, shares.join(", ")));
        // The sidecars deregister as they stop; the next case uses a pool of its own.
        drop(sidecars);
    }
    for line in report {
        println!("{line}");
    }
}
