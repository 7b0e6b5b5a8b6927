//! The XDP program's event log (`rsplb_common::event`): rare events such as an empty pool or
//! an unresolved next hop, which the program writes as `XdpEvent` records into its pinned ring
//! buffer `RSPLB_EVENTS`. The control plane sets the level and the rate limit (`RSPLB_LOG`);
//! the daemon reads the records and prints them through the `log` crate with target `xdp`.

use std::{fmt, str::FromStr, time::Duration};

use anyhow::{Context as _, Result, anyhow};
use aya::maps::{Array, Map, MapData, RingBuf};
use rsplb_common::{
    FAMILY_V4, LogControl, PROTO_SCTP, PROTO_TCP, PROTO_UDP, XdpEvent, event, log_level, maps,
};

use crate::{addr::words_addr, maps::pin_dir};

/// Events of one kind each CPU may log per [`INTERVAL`]: a flood of packets to an empty pool
/// gives a few lines a second, not one per packet.
pub const BURST: u32 = 3;
/// The rate limit's window.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The level of the program's event log: `off`, `error`, `warn`, `info`, `debug` or `trace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct XdpLogLevel(u32);

impl XdpLogLevel {
    pub const OFF: XdpLogLevel = XdpLogLevel(log_level::OFF);
    /// The daemon's default: what an operator must act on (empty pools, unresolved next hops,
    /// tables out of range), a few lines a second at most.
    pub const WARN: XdpLogLevel = XdpLogLevel(log_level::WARN);

    /// The map value that sets this level with the daemon's rate limit.
    pub fn control(self) -> LogControl {
        LogControl {
            level: self.0,
            burst: BURST,
            interval_ns: INTERVAL.as_nanos() as u64,
        }
    }
}

impl Default for XdpLogLevel {
    fn default() -> Self {
        XdpLogLevel::WARN
    }
}

impl fmt::Display for XdpLogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(log_level::NAMES[self.0 as usize])
    }
}

impl FromStr for XdpLogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        log_level::NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| XdpLogLevel(i as u32))
            .ok_or_else(|| {
                format!(
                    "`{s}` is not an XDP log level (one of {})",
                    log_level::NAMES.join(", ")
                )
            })
    }
}

impl<'de> serde::Deserialize<'de> for XdpLogLevel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Sets the event log of the program attached to `iface` (its pinned `RSPLB_LOG`).
pub fn set_level(iface: &str, level: XdpLogLevel) -> Result<()> {
    let path = pin_dir(iface).join(maps::LOG);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("opening pinned map {}", path.display()))?;
    let mut map: Array<MapData, LogControl> = Map::from_map_data(data)
        .context("RSPLB_LOG: unsupported map type")?
        .try_into()
        .context("RSPLB_LOG has an unexpected type")?;
    map.set(0, level.control(), 0).context("writing RSPLB_LOG")
}

/// The `log` level of an event kind.
fn level_of(kind: u32) -> log::Level {
    match event::LEVELS.get(kind as usize).copied() {
        Some(log_level::ERROR) => log::Level::Error,
        Some(log_level::INFO) => log::Level::Info,
        Some(log_level::DEBUG) => log::Level::Debug,
        Some(log_level::TRACE) => log::Level::Trace,
        _ => log::Level::Warn,
    }
}

/// An event in words: the VIP as `rsplb vip` writes it, what happened, and how many like it
/// the rate limit kept back.
pub fn describe(e: &XdpEvent) -> String {
    let addr = words_addr(e.vip.addr, e.vip.family);
    let proto = match e.vip.proto {
        PROTO_TCP => "tcp".to_string(),
        PROTO_UDP => "udp".to_string(),
        PROTO_SCTP => "sctp".to_string(),
        p => format!("proto-{p}"),
    };
    let port = u16::from_be(e.vip.port);
    let vip = if e.vip.family == FAMILY_V4 {
        format!("{addr}:{port}/{proto}")
    } else {
        format!("[{addr}]:{port}/{proto}")
    };
    let d = e.detail;
    let what = match e.kind {
        event::EMPTY_POOL => {
            "no element in its Maglev table entry (empty pool): dropped".to_string()
        }
        event::BAD_ELEMENT_SLOT => format!(
            "its Maglev table names element slot {d}, which is free or out of range: dropped"
        ),
        event::TABLE_OUT_OF_RANGE => {
            format!("its Maglev table {d} reads outside RSPLB_MAGLEV: dropped")
        }
        event::NO_NEXTHOP => format!("element slot {d} has no resolved next hop: dropped"),
        event::NO_TX_PORT => {
            format!("the interface of element slot {d} is not in RSPLB_TX_PORTS: dropped")
        }
        event::UNKNOWN_MODE => format!("unknown mode {d}: passed to the stack"),
        event::FAMILY_MISMATCH => {
            format!("NAT to element slot {d} of the other address family: dropped")
        }
        event::NAT_PORTS_EXHAUSTED => {
            format!("no free SNAT port toward element slot {d}: new flow dropped")
        }
        event::SCTP_NAT => "SCTP to a NAT VIP: passed to the stack".to_string(),
        event::FLOW_TABLE_FULL => {
            "a SYN found its flow table set full of established flows: dropped".to_string()
        }
        k => format!("event {k} (detail {d})"),
    };
    let mut s = format!("VIP {vip}: {what}");
    if e.suppressed > 0 {
        s.push_str(&format!(
            " ({} more like it on this CPU not logged)",
            e.suppressed
        ));
    }
    s
}

/// Reads the program's events until the runtime stops, printing each through the `log` crate
/// (target `xdp`). The ring buffer is pinned with the other maps, so a daemon started after
/// `rsplb attach` reads it too.
pub async fn read(iface: String) -> Result<()> {
    let path = pin_dir(&iface).join(maps::EVENTS);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("opening pinned map {}", path.display()))?;
    let ring: RingBuf<MapData> = Map::from_map_data(data)
        .context("RSPLB_EVENTS: unsupported map type")?
        .try_into()
        .context("RSPLB_EVENTS has an unexpected type")?;
    // SAFETY: the ring buffer owns its descriptor, open (and the same) until the `AsyncFd`
    // that owns the ring buffer is dropped.
    let mut fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE)
    }
    .map_err(|e| anyhow!("polling {}: {e}", path.display()))?;
    loop {
        let mut guard = fd
            .readable_mut()
            .await
            .with_context(|| format!("polling {}", path.display()))?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if item.len() < std::mem::size_of::<XdpEvent>() {
                continue;
            }
            // SAFETY: the record is at least an `XdpEvent` long, and any bytes are a valid one.
            let e: XdpEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            log::log!(target: "xdp", level_of(e.kind), "{iface}: {}", describe(&e));
        }
        guard.clear_ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_by_name_and_others_are_refused_with_the_names() {
        assert_eq!("off".parse(), Ok(XdpLogLevel::OFF));
        assert_eq!("Warn".parse(), Ok(XdpLogLevel::WARN));
        assert_eq!("trace".parse::<XdpLogLevel>().unwrap().to_string(), "trace");
        let e = "loud".parse::<XdpLogLevel>().unwrap_err();
        assert_eq!(
            e,
            "`loud` is not an XDP log level (one of off, error, warn, info, debug, trace)"
        );
        assert!("".parse::<XdpLogLevel>().is_err());
    }

    #[test]
    fn an_event_names_its_vip_as_the_command_line_writes_it() {
        let mut e = XdpEvent {
            kind: event::EMPTY_POOL,
            vip: rsplb_common::VipKey {
                addr: crate::addr::addr_words("198.18.0.100".parse().unwrap()),
                port: 80u16.to_be(),
                proto: PROTO_TCP,
                family: FAMILY_V4,
            },
            ..XdpEvent::default()
        };
        assert_eq!(
            describe(&e),
            "VIP 198.18.0.100:80/tcp: no element in its Maglev table entry (empty pool): dropped"
        );
        e.kind = event::NO_NEXTHOP;
        e.detail = 7;
        e.suppressed = 12;
        e.vip.addr = crate::addr::addr_words("fd00::100".parse().unwrap());
        e.vip.family = rsplb_common::FAMILY_V6;
        e.vip.proto = PROTO_UDP;
        assert_eq!(
            describe(&e),
            "VIP [fd00::100]:80/udp: element slot 7 has no resolved next hop: dropped (12 more like it on this CPU not logged)"
        );
        assert_eq!(level_of(event::NO_NEXTHOP), log::Level::Warn);
        assert_eq!(level_of(event::TABLE_OUT_OF_RANGE), log::Level::Error);
        assert_eq!(level_of(event::FLOW_TABLE_FULL), log::Level::Info);
    }

    #[test]
    fn the_control_value_carries_the_level_and_the_rate_limit() {
        let c = XdpLogLevel::WARN.control();
        assert_eq!(c.level, log_level::WARN);
        assert_eq!((c.burst, c.interval_ns), (BURST, 1_000_000_000));
        assert_eq!(XdpLogLevel::OFF.control().level, 0);
        assert_eq!(XdpLogLevel::default(), XdpLogLevel::WARN);
    }
}
