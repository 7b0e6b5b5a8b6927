//! The admin endpoint: a read-only HTTP/1.1 server for operators' tools (`rsplb handlespace`),
//! on [`super::http`] (hyper).
//!
//! - `GET /handlespace`: [`HandlespaceSnapshot`] as JSON.
//! - `GET /stats`: [`StatsSnapshot`] as JSON.
//! - `GET /registrars`: [`RegistrarsSnapshot`] as JSON: this registrar's place in its operation
//!   scope and the ENRP peers it knows.
//!
//! No authentication: bind it to loopback (the default, 127.0.0.1:3870), a management network, or
//! a Unix socket (`admin_unix = "/run/rsplb/admin.sock"`, mode 0600: file permissions decide who
//! may read).
//!
//! The registrar's loop only copies the handlespace's entries (a few milliseconds at 20,000
//! elements); building the JSON happens on a blocking thread, so a large `/handlespace` never
//! holds up keep-alives. A client that does not read its answer within the admin timeout is
//! dropped.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::http;

use crate::core::{CoreStats, EnrpStats, PeerState, RegistrarCore, SyncState};
use crate::handlespace::{ElementEntry, RegistratorId};
use crate::types::PoolHandle;
use crate::types::{Policy, TransportAddress, TransportUse};

/// The whole handlespace as the admin endpoint serves it. Keys are stable; numbers are numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HandlespaceSnapshot {
    /// This registrar's identifier (decimal; `registrar_id_hex` for humans).
    pub registrar_id: u32,
    pub registrar_id_hex: String,
    pub time_unix_ms: u64,
    pub pool_count: usize,
    pub element_count: usize,
    pub pools: Vec<PoolSnapshot>,
    /// The PE checksum (RFC 5353) of each home registrar's elements as this registrar holds
    /// them: equal lists on two registrars mean equal handlespaces.
    #[serde(default)]
    pub checksums: Vec<OwnerChecksum>,
}

/// One home registrar's elements in a handlespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OwnerChecksum {
    pub registrar_id: u32,
    pub registrar_id_hex: String,
    pub elements: usize,
    pub checksum: u16,
}

/// A registrar's place in its operation scope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegistrarsSnapshot {
    pub registrar_id: u32,
    pub registrar_id_hex: String,
    /// `null` without ENRP (the registrar is alone), else `hunting`, `downloading` or `ready`.
    pub sync_state: Option<SyncState>,
    /// The PE checksum of this registrar's own elements (what its Presence carries).
    pub checksum: u16,
    pub own_elements: usize,
    pub peers: Vec<PeerSnapshot>,
    pub enrp: EnrpStats,
}

/// One ENRP peer as a registrar sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerSnapshot {
    pub registrar_id: u32,
    pub registrar_id_hex: String,
    /// Where it is reached, e.g. `tcp:198.18.0.2:9901`.
    pub endpoint: String,
    /// `alive`, `probing` (asked for a Presence), `taking_over`, `auditing`.
    pub state: PeerState,
    pub last_heard_ms: u64,
    /// The checksum in its last Presence, and the checksum of what this registrar holds for it.
    pub checksum: Option<u16>,
    pub local_checksum: u16,
    pub owned_elements: usize,
    pub mentor: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolSnapshot {
    /// The pool handle (printable text as is, other bytes as `0x` + hex).
    pub handle: String,
    /// Policy name (`round_robin`, `least_used`...) and type code.
    pub policy: String,
    pub policy_type: u32,
    pub elements: Vec<ElementSnapshot>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ElementSnapshot {
    /// PE identifier (decimal; `id_hex` as rsplib prints it).
    pub id: u32,
    pub id_hex: String,
    /// `tcp`, `udp`, `sctp`, `udplite`, `dccp`.
    pub protocol: String,
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    /// `data_only` or `data_plus_control`.
    pub transport_use: String,
    /// First address and port, e.g. `198.18.1.2:80` or `[fd00::2]:80`.
    pub address: String,
    pub policy: PolicySnapshot,
    pub home_registrar: u32,
    pub registration_life_ms: i32,
    /// Since the first registration.
    pub age_ms: u64,
    /// Since the last (re-)registration.
    pub last_update_ms: u64,
    /// Until the registration expires (`null`: never).
    pub expires_in_ms: Option<u64>,
    pub unreachable_reports: u32,
    /// `asap:<connection>` or `registrar:<id>`.
    pub registrator: String,
}

/// A policy with its values; absent values are omitted. Load, degradation and DPF values are
/// fractions of 2^32-1; `load_percent` repeats the load in percent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicySnapshot {
    pub name: String,
    pub policy_type: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub weight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub priority: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub load: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub load_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub load_degradation: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub load_dpf: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub weight_dpf: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub distance: Option<u32>,
}

/// Counters of the registrar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub registrar_id: u32,
    pub peers: usize,
    pub pools: usize,
    pub elements: usize,
    /// The core's counters, at the top level of the JSON object.
    #[serde(flatten)]
    pub counters: CoreStats,
    /// What the ASAP-over-SCTP listeners counted (wrong PPIDs, other streams, restarts, ...);
    /// absent when the registrar serves no SCTP.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sctp: Option<super::sctp::SctpStats>,
}

/// The policy's name as rsplb prints it.
pub fn policy_name(policy_type: u32) -> String {
    use crate::types::policy_type::*;
    match policy_type {
        ROUND_ROBIN => "round_robin",
        WEIGHTED_ROUND_ROBIN => "weighted_round_robin",
        RANDOM => "random",
        WEIGHTED_RANDOM => "weighted_random",
        PRIORITY => "priority",
        LEAST_USED => "least_used",
        LEAST_USED_DEGRADATION => "least_used_degradation",
        PRIORITY_LEAST_USED => "priority_least_used",
        RANDOMIZED_LEAST_USED => "randomized_least_used",
        RANDOMIZED_PRIORITY_LEAST_USED => "randomized_priority_least_used",
        RANDOMIZED_LEAST_USED_DEGRADATION => "randomized_least_used_degradation",
        PRIORITY_LEAST_USED_DEGRADATION => "priority_least_used_degradation",
        RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION => "randomized_priority_least_used_degradation",
        WEIGHTED_RANDOM_DPF => "weighted_random_dpf",
        LEAST_USED_DPF => "least_used_dpf",
        LEAST_USED_DEGRADATION_DPF => "least_used_degradation_dpf",
        other => return format!("0x{other:08x}"),
    }
    .to_string()
}

fn policy_snapshot(p: &Policy) -> PolicySnapshot {
    let mut s = PolicySnapshot {
        name: policy_name(p.type_code()),
        policy_type: p.type_code(),
        ..PolicySnapshot::default()
    };
    for (name, value) in p.named_values() {
        let field = match name {
            "weight" => &mut s.weight,
            "priority" => &mut s.priority,
            "load" => &mut s.load,
            "load_degradation" => &mut s.load_degradation,
            "weight_dpf" => &mut s.weight_dpf,
            "load_dpf" => &mut s.load_dpf,
            "distance" => &mut s.distance,
            // An unknown policy's raw values have no field of their own.
            _ => continue,
        };
        *field = Some(value);
    }
    s.load_percent = s
        .load
        .map(|l| (f64::from(l) / f64::from(u32::MAX) * 10_000.0).round() / 100.0);
    s
}

fn protocol_name(t: &TransportAddress) -> &'static str {
    match t {
        TransportAddress::Sctp { .. } => "sctp",
        TransportAddress::Tcp { .. } => "tcp",
        TransportAddress::Udp { .. } => "udp",
        TransportAddress::UdpLite { .. } => "udplite",
        TransportAddress::Dccp { .. } => "dccp",
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Build a snapshot of the core's handlespace at `now`.
pub fn snapshot(core: &RegistrarCore, now: Instant) -> HandlespaceSnapshot {
    raw_snapshot(core, now).build()
}

/// The handlespace's entries as copied under the registrar's lock: the cheap part of a
/// snapshot. [`RawSnapshot::build`] does the rest, anywhere.
#[derive(Debug)]
pub struct RawSnapshot {
    registrar: crate::types::RegistrarId,
    now: Instant,
    pool_count: usize,
    element_count: usize,
    pools: Vec<(PoolHandle, u32, Vec<ElementEntry>)>,
    checksums: Vec<OwnerChecksum>,
}

/// Copy what a snapshot needs.
pub fn raw_snapshot(core: &RegistrarCore, now: Instant) -> RawSnapshot {
    let hs = core.handlespace();
    RawSnapshot {
        registrar: core.id(),
        now,
        pool_count: hs.pool_count(),
        element_count: hs.len(),
        pools: hs
            .pools()
            .map(|(h, p)| (h.clone(), p.policy_type(), p.elements().cloned().collect()))
            .collect(),
        checksums: owner_checksums(core),
    }
}

impl RawSnapshot {
    /// The snapshot, built on a blocking thread (it formats every element).
    pub async fn build_off_loop(self) -> Option<HandlespaceSnapshot> {
        tokio::task::spawn_blocking(move || self.build()).await.ok()
    }

    pub fn build(self) -> HandlespaceSnapshot {
        build_snapshot(self)
    }
}

fn build_snapshot(raw: RawSnapshot) -> HandlespaceSnapshot {
    let now = raw.now;
    let pools = raw
        .pools
        .into_iter()
        .map(|(handle, policy_type, elements)| PoolSnapshot {
            handle: handle.to_string(),
            policy: policy_name(policy_type),
            policy_type,
            elements: elements
                .iter()
                .map(|e| {
                    let pe = e.element();
                    let t = &pe.user_transport;
                    let first = t.addrs().first().copied();
                    ElementSnapshot {
                        id: pe.id.0,
                        id_hex: pe.id.to_string(),
                        protocol: protocol_name(t).into(),
                        addresses: t.addrs().to_vec(),
                        port: t.port(),
                        transport_use: match t.transport_use() {
                            TransportUse::DataOnly => "data_only",
                            TransportUse::DataPlusControl => "data_plus_control",
                        }
                        .into(),
                        address: first
                            .map(|ip| SocketAddr::new(ip, t.port()).to_string())
                            .unwrap_or_default(),
                        policy: policy_snapshot(&pe.policy),
                        home_registrar: pe.home_registrar.0,
                        registration_life_ms: pe.registration_life_ms,
                        age_ms: ms(now.saturating_duration_since(e.registered_at())),
                        last_update_ms: ms(now.saturating_duration_since(e.updated_at())),
                        expires_in_ms: e.expires_at().map(|t| ms(t.saturating_duration_since(now))),
                        unreachable_reports: e.unreachable_reports(),
                        registrator: match e.registrator() {
                            RegistratorId::Asap(c) => format!("asap:{c}"),
                            RegistratorId::Peer(r) => format!("registrar:{r}"),
                        },
                    }
                })
                .collect(),
        })
        .collect();
    HandlespaceSnapshot {
        registrar_id: raw.registrar.0,
        registrar_id_hex: raw.registrar.to_string(),
        time_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(ms)
            .unwrap_or(0),
        pool_count: raw.pool_count,
        element_count: raw.element_count,
        pools,
        checksums: raw.checksums,
    }
}

fn owner_checksums(core: &RegistrarCore) -> Vec<OwnerChecksum> {
    let hs = core.handlespace();
    let mut owners: Vec<_> = hs.owners().collect();
    owners.sort();
    owners
        .into_iter()
        .map(|o| OwnerChecksum {
            registrar_id: o.0,
            registrar_id_hex: o.to_string(),
            elements: hs.owned_count(o),
            checksum: hs.checksum(o),
        })
        .collect()
}

fn endpoint_text(t: &TransportAddress) -> String {
    let first = t.addrs().first().copied();
    match first {
        Some(ip) => format!("{}:{}", protocol_name(t), SocketAddr::new(ip, t.port())),
        None => protocol_name(t).to_string(),
    }
}

/// The registrar's scope: sync state and peers.
pub fn registrars(core: &RegistrarCore, now: Instant) -> RegistrarsSnapshot {
    let hs = core.handlespace();
    RegistrarsSnapshot {
        registrar_id: core.id().0,
        registrar_id_hex: core.id().to_string(),
        sync_state: core.sync_state(),
        checksum: hs.checksum(core.id()),
        own_elements: hs.owned_count(core.id()),
        peers: core
            .enrp_peers(now)
            .into_iter()
            .map(|p| PeerSnapshot {
                registrar_id: p.id.0,
                registrar_id_hex: p.id.to_string(),
                endpoint: endpoint_text(&p.endpoint),
                state: p.state,
                last_heard_ms: ms(p.last_heard),
                checksum: p.checksum,
                local_checksum: p.local_checksum,
                owned_elements: p.owned_elements,
                mentor: p.mentor,
            })
            .collect(),
        enrp: core.enrp_stats(),
    }
}

/// Counters of the core.
pub fn stats(core: &RegistrarCore) -> StatsSnapshot {
    StatsSnapshot {
        registrar_id: core.id().0,
        peers: core.peer_count(),
        pools: core.handlespace().pool_count(),
        elements: core.handlespace().len(),
        counters: core.stats(),
        sctp: None,
    }
}

/// A question the admin endpoint (or an embedding program) asks the driver.
#[derive(Debug)]
pub enum Query {
    /// The handlespace's entries; the asker builds the snapshot ([`RawSnapshot::build_off_loop`]).
    Handlespace(oneshot::Sender<RawSnapshot>),
    Stats(oneshot::Sender<StatsSnapshot>),
    Registrars(oneshot::Sender<RegistrarsSnapshot>),
}

/// Serve the admin endpoint until the task is dropped. Each request, from its first byte to the
/// last byte of its answer, must be done within `timeout` (a client that never reads its answer
/// is dropped then); see [`super::http`] for the other limits.
pub async fn serve(listener: http::Listener, queries: mpsc::Sender<Query>, timeout: Duration) {
    http::serve(listener, http::ServerLimits::within(timeout), move |req| {
        let queries = queries.clone();
        async move {
            if let Some(refused) = http::only_get(&req) {
                return refused;
            }
            answer(&queries, req.uri().path())
                .await
                .unwrap_or_else(|| http::not_found(PATHS))
        }
    })
    .await
}

/// The admin paths, for a 404's hint.
pub const PATHS: &str = "/handlespace, /stats or /registrars";

/// The answer to `GET path` if `path` is an admin path (`None` otherwise): the registrar's
/// answer as JSON, or `503 Service Unavailable` when the registrar does not answer.
pub async fn answer(queries: &mpsc::Sender<Query>, path: &str) -> Option<http::Response> {
    let unavailable = || http::json(StatusCode::SERVICE_UNAVAILABLE, "{}");
    let body = match path {
        "/handlespace" => {
            let (tx, rx) = oneshot::channel();
            let _ = queries.send(Query::Handlespace(tx)).await;
            match rx.await {
                // Formatting and serialising 20,000 elements takes a while: not on the loop.
                Ok(raw) => tokio::task::spawn_blocking(move || {
                    serde_json::to_vec(&raw.build()).unwrap_or_default()
                })
                .await
                .ok(),
                Err(_) => None,
            }
        }
        "/stats" => {
            let (tx, rx) = oneshot::channel();
            let _ = queries.send(Query::Stats(tx)).await;
            rx.await
                .ok()
                .map(|s| serde_json::to_vec(&s).unwrap_or_default())
        }
        "/registrars" => {
            let (tx, rx) = oneshot::channel();
            let _ = queries.send(Query::Registrars(tx)).await;
            rx.await
                .ok()
                .map(|s| serde_json::to_vec(&s).unwrap_or_default())
        }
        _ => return None,
    };
    Some(match body {
        Some(b) => http::json(StatusCode::OK, b),
        None => unavailable(),
    })
}
