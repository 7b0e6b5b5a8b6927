//! `rsplb flow get`: which element a flow goes to, and why (Katran's `getRealForFlow`),
//! computed the way the XDP program computes it: the flow table's set from
//! [`rsplb_common::table_hash`], an entry that is valid only when its check matches and its
//! element still holds its slot (same generation) for the same VIP within the idle timeout;
//! otherwise Maglev's entry [`rsplb_common::maglev_entry`] of the VIP's placement hash
//! ([`rsplb_common::placement_hash`]: the 5-tuple's, or the client address's with `--hash
//! client`) in the VIP's active table. Pure: the caller reads the set, the table and the clock.

use std::net::SocketAddr;

use anyhow::{Result, bail};
use rsplb_common::{
    FLOW_TIME_SHIFT, FlowKey, FlowSet, NO_ELEMENT, flow_check, flow_set_index, maglev_entry,
    placement_hash, table_hash,
};
use serde::Serialize;

use crate::{
    addr::{Mode, Vip, addr_words, family},
    state::{ElementStateEntry, State, VipState},
};

/// The flow table key of a client's flow to a VIP (as the program builds it from a packet).
pub fn flow_key(client: SocketAddr, vip: &Vip) -> Result<FlowKey> {
    if client.is_ipv4() != vip.addr.is_ipv4() {
        bail!("the client {client} and the VIP {vip} are of different address families");
    }
    Ok(FlowKey {
        src: addr_words(client.ip()),
        dst: addr_words(vip.addr),
        sport: client.port().to_be(),
        dport: vip.port.to_be(),
        proto: vip.proto.number(),
        family: family(vip.addr),
        state: 0,
        _pad: 0,
    })
}

/// What the flow table holds for the flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PinnedEntry {
    pub way: usize,
    pub slot: u32,
    pub generation: u32,
    /// The element holding that slot with that generation (`null`: it left the pool).
    pub element: Option<String>,
    pub idle_ms: u64,
    pub timeout_s: u32,
    /// NAT: the balancer's source port toward the element.
    pub nat_port: Option<u16>,
    /// Placed by a TCP SYN, no other packet of the flow seen yet (`FLOW_SYN_ONLY`): another
    /// SYN may take its way; a NAT flow's translation waits in `RSPLB_NAT_EMBRYONIC`.
    pub embryonic: bool,
    /// Whether the program follows this entry for the flow's next packet (not a SYN).
    pub valid: bool,
    /// Why it does not, when it does not.
    pub invalid_because: Option<String>,
}

/// Maglev's choice for the flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaglevChoice {
    /// What the hash covers: `flow` (the 5-tuple) or `client` (the client's address: every
    /// connection of the client is placed alike).
    pub hash_of: String,
    /// The hash Maglev's entry is taken from.
    pub hash: u32,
    pub entry: u32,
    pub table: u32,
    pub slot: Option<u32>,
    pub element: Option<String>,
}

/// Where a flow goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowAnswer {
    pub client: String,
    pub vip: String,
    pub pool: String,
    pub mode: String,
    pub table_hash: u32,
    pub flow_set: u32,
    pub pinned: Option<PinnedEntry>,
    pub maglev: MaglevChoice,
    /// The element the flow's next packet goes to (a TCP SYN always goes to Maglev's choice:
    /// `new_connection`), `null` when the pool has no element in service.
    pub element: Option<String>,
    /// `flow_table` (pinned) or `maglev` (placed as new).
    pub decided_by: &'static str,
    pub new_connection: Option<String>,
}

fn element_at(st: &State, slot: u32) -> Option<&ElementStateEntry> {
    st.elements.iter().find(|e| e.slot == slot)
}

/// Where the flow `key` of `vip` goes, given its flow table set (`None`: the table is off),
/// the VIP's active Maglev table and the dataplane clock `now` (flow table units).
pub fn explain(
    st: &State,
    vip: &VipState,
    client: SocketAddr,
    key: &FlowKey,
    set: Option<&FlowSet>,
    table: &[u32],
    now: u32,
) -> FlowAnswer {
    let th = table_hash(key);
    let flow_sets = st.options.config().flow_sets;
    let timeout_s = st.options.vip_timeout_s(vip);
    let pinned = set.and_then(|set| {
        set.ways.iter().enumerate().find_map(|(way, e)| {
            // The entry's state byte is not part of the key (the program ignores it).
            let same = FlowKey { state: 0, ..e.key } == *key;
            (e.value.check != 0 && same).then(|| {
                let v = &e.value;
                let holder = element_at(st, v.element).filter(|x| x.generation == v.generation);
                let seen = if vip.mode == Mode::Nat {
                    v.nat_seen
                } else {
                    v.seen
                };
                let idle_ns = u64::from(now.wrapping_sub(seen)) << FLOW_TIME_SHIFT;
                let invalid_because = if v.check != flow_check(th, v) {
                    Some("its entry is torn (being rewritten): a miss".to_string())
                } else if holder.is_none() {
                    Some(format!(
                        "its element (slot {} generation {}) left the pool: re-selected",
                        v.element, v.generation
                    ))
                } else if u32::from(v.vip_slot) != vip.slot {
                    Some("it was pinned for another VIP".to_string())
                } else if vip.mode == Mode::Nat && v.nat_port == 0 {
                    Some("it has no NAT translation".to_string())
                } else if idle_ns > u64::from(timeout_s) * 1_000_000_000 {
                    Some(format!(
                        "idle past the {timeout_s} s timeout: placed as new"
                    ))
                } else {
                    None
                };
                PinnedEntry {
                    way,
                    slot: v.element,
                    generation: v.generation,
                    element: holder.map(|x| x.element_addr().to_string()),
                    idle_ms: idle_ns / 1_000_000,
                    timeout_s,
                    nat_port: (v.nat_port != 0).then(|| u16::from_be(v.nat_port)),
                    embryonic: e.key.state == rsplb_common::FLOW_SYN_ONLY,
                    valid: invalid_because.is_none(),
                    invalid_because,
                }
            })
        })
    });
    let fh = placement_hash(key, vip.hash.flags());
    let size = st.options.maglev_size;
    let entry = maglev_entry(fh, size);
    let slot = table
        .get(entry as usize)
        .copied()
        .filter(|&s| s != NO_ELEMENT);
    let maglev = MaglevChoice {
        hash_of: vip.hash.to_string(),
        hash: fh,
        entry,
        table: vip.table,
        slot,
        element: slot
            .and_then(|s| element_at(st, s))
            .map(|e| e.element_addr().to_string()),
    };
    let (element, decided_by) = match &pinned {
        Some(p) if p.valid => (p.element.clone(), "flow_table"),
        _ => (maglev.element.clone(), "maglev"),
    };
    let new_connection = (vip.parsed().proto == crate::addr::Protocol::Tcp)
        .then(|| maglev.element.clone())
        .flatten();
    FlowAnswer {
        client: client.to_string(),
        vip: vip.vip.clone(),
        pool: vip.pool.clone(),
        mode: vip.mode.to_string(),
        table_hash: th,
        flow_set: flow_set_index(th, flow_sets),
        pinned,
        maglev,
        element,
        decided_by,
        new_connection,
    }
}

/// The human answer.
pub fn text(a: &FlowAnswer) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "flow {} -> {} (pool {}, {})",
        a.client, a.vip, a.pool, a.mode
    );
    match (&a.element, a.decided_by) {
        (Some(e), "flow_table") => {
            let _ = writeln!(s, "goes to {e}: pinned in the flow table");
        }
        (Some(e), _) => {
            let _ = writeln!(s, "goes to {e}: placed by Maglev (not pinned)");
        }
        (None, _) => {
            let _ = writeln!(s, "is dropped: the pool has no element in service");
        }
    }
    match &a.pinned {
        Some(p) => {
            let _ = writeln!(
                s,
                "  flow table: set {} way {}: slot {} generation {} ({}), idle {} ms of {} s{}{}{}",
                a.flow_set,
                p.way,
                p.slot,
                p.generation,
                p.element.as_deref().unwrap_or("element gone"),
                p.idle_ms,
                p.timeout_s,
                p.nat_port
                    .map(|n| format!(", NAT port {n}"))
                    .unwrap_or_default(),
                if p.embryonic {
                    ", embryonic (only its SYN seen)"
                } else {
                    ""
                },
                p.invalid_because
                    .as_deref()
                    .map(|w| format!("; not followed: {w}"))
                    .unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(s, "  flow table: set {}: not pinned", a.flow_set);
        }
    }
    let _ = writeln!(
        s,
        "  maglev: {} hash {:08x}, entry {} of table {}: {}",
        a.maglev.hash_of,
        a.maglev.hash,
        a.maglev.entry,
        a.maglev.table,
        a.maglev.element.as_deref().unwrap_or("no element")
    );
    if a.maglev.hash_of == "client" {
        let _ = writeln!(
            s,
            "  the VIP places by client address (hash client): new flows from the client's other ports go where this one is placed"
        );
    }
    if let Some(n) = &a.new_connection
        && a.element.as_deref() != Some(n.as_str())
    {
        let _ = writeln!(
            s,
            "  a new connection (SYN) from this tuple goes to {n} (a SYN is always placed by Maglev)"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::VipHash;
    use crate::state::AttachOptions;
    use rsplb_common::{FlowEntry, FlowValue};
    use std::collections::BTreeSet;

    fn setup() -> (State, VipState) {
        let mut st = State::new(
            "veth0",
            1,
            1,
            None,
            AttachOptions {
                maglev_size: 7,
                flow_capacity: 64,
                ..AttachOptions::default()
            },
        );
        for (slot, host) in [(3u32, 11u8), (4, 12)] {
            st.elements.push(ElementStateEntry {
                generation: 2,
                ..ElementStateEntry::test("web", [198, 18, 1, host].into(), slot)
            });
        }
        let vip = VipState {
            table: 1,
            ..VipState::test("198.19.0.100:80/tcp", "web")
        };
        st.vips.push(vip.clone());
        (st, vip)
    }

    #[test]
    fn a_flow_is_pinned_only_while_its_entry_and_element_are_valid() {
        let (st, vip) = setup();
        let client: SocketAddr = "198.18.0.2:40000".parse().unwrap();
        let key = flow_key(client, &vip.parsed()).unwrap();
        // Maglev sends everything to slot 4; the flow is pinned to slot 3.
        let table = [4u32; 7];
        let a = explain(&st, &vip, client, &key, None, &table, 100);
        assert_eq!(
            (a.element.as_deref(), a.decided_by),
            (Some("198.18.1.12"), "maglev")
        );
        assert!(a.pinned.is_none());

        let th = table_hash(&key);
        let mut value = FlowValue {
            element: 3,
            generation: 2,
            vip_slot: 0,
            seen: 90,
            ..FlowValue::default()
        };
        value.check = flow_check(th, &value);
        let mut set = FlowSet::default();
        set.ways[2] = FlowEntry { key, value };
        let a = explain(&st, &vip, client, &key, Some(&set), &table, 100);
        assert_eq!(
            (a.element.as_deref(), a.decided_by),
            (Some("198.18.1.11"), "flow_table")
        );
        assert_eq!(a.pinned.as_ref().unwrap().way, 2);
        assert_eq!(a.new_connection.as_deref(), Some("198.18.1.12"));
        assert!(text(&a).contains("pinned in the flow table"));
        assert!(!a.pinned.as_ref().unwrap().embryonic);
        // Placed by a SYN and not confirmed yet: the same entry, shown as embryonic.
        set.ways[2].key.state = rsplb_common::FLOW_SYN_ONLY;
        let a = explain(&st, &vip, client, &key, Some(&set), &table, 100);
        assert_eq!(a.decided_by, "flow_table");
        assert!(a.pinned.as_ref().unwrap().embryonic);
        assert!(
            text(&a).contains("embryonic (only its SYN seen)"),
            "{}",
            text(&a)
        );
        set.ways[2].key.state = 0;

        // Idle past the timeout (300 s for DSR TCP): placed as new.
        let later = 90 + ((301u64 * 1_000_000_000) >> FLOW_TIME_SHIFT) as u32;
        let a = explain(&st, &vip, client, &key, Some(&set), &table, later);
        assert_eq!(a.decided_by, "maglev");
        assert!(
            a.pinned
                .unwrap()
                .invalid_because
                .unwrap()
                .contains("timeout")
        );

        // Its slot now holds another generation: the element left.
        let mut moved = st.clone();
        moved.elements[0].generation = 3;
        let a = explain(&moved, &vip, client, &key, Some(&set), &table, 100);
        assert_eq!(a.decided_by, "maglev");
        assert!(a.pinned.unwrap().element.is_none());

        // A torn entry is a miss.
        set.ways[2].value.element = 4;
        let a = explain(&st, &vip, client, &key, Some(&set), &table, 100);
        assert_eq!(a.decided_by, "maglev");
    }

    #[test]
    fn client_hashing_places_every_port_of_a_client_alike() {
        let (st, mut vip) = setup();
        let table = [3u32, 4, 3, 4, 3, 4, 3];
        let place = |vip: &VipState, client: &str| {
            let client: SocketAddr = client.parse().unwrap();
            let key = flow_key(client, &vip.parsed()).unwrap();
            explain(&st, vip, client, &key, None, &table, 100)
        };
        // flow: the source port is hashed, so a client's ports spread over the table.
        let flow: Vec<FlowAnswer> = (0..32)
            .map(|p| place(&vip, &format!("198.18.0.2:{}", 40000 + p)))
            .collect();
        assert!(flow.iter().all(|a| a.maglev.hash_of == "flow"));
        let elements: BTreeSet<_> = flow.iter().map(|a| a.element.clone()).collect();
        assert_eq!(elements.len(), 2, "{elements:?}");

        // client: every port of one client reads one entry; other clients still spread.
        vip.hash = VipHash::Client;
        let first = place(&vip, "198.18.0.2:40000");
        assert_eq!(first.maglev.hash_of, "client");
        assert!(text(&first).contains("hash client"), "{}", text(&first));
        for p in 1..32 {
            let a = place(&vip, &format!("198.18.0.2:{}", 40000 + p));
            assert_eq!(
                (a.maglev.hash, a.maglev.entry, &a.element),
                (first.maglev.hash, first.maglev.entry, &first.element)
            );
        }
        let clients: BTreeSet<_> = (0..32)
            .map(|h| place(&vip, &format!("198.18.7.{h}:40000")).element)
            .collect();
        assert_eq!(clients.len(), 2, "{clients:?}");
        // It is the hash the XDP program computes for such a VIP.
        let key = flow_key("198.18.0.2:40000".parse().unwrap(), &vip.parsed()).unwrap();
        assert_eq!(first.maglev.hash, rsplb_common::client_hash(&key));
    }

    #[test]
    fn families_must_match() {
        let vip: Vip = "198.19.0.100:80/tcp".parse().unwrap();
        assert!(flow_key("[fd00::2]:1".parse().unwrap(), &vip).is_err());
    }
}
