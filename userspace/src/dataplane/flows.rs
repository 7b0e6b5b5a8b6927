//! Reading the pinned flow table (`RSPLB_FLOWS`) and the dataplane's clock, for `rsplb flow
//! get`. Read-only: the table belongs to the XDP program.

use std::path::Path;

use anyhow::{Context as _, Result};
use aya::maps::{Array, Map, MapData};
use rsplb_common::{FLOW_TIME_SHIFT, FlowSet, maps};

/// Set `index` of the flow table pinned in `dir` (`None` past the table's end).
pub fn read_set(dir: &Path, index: u32) -> Result<Option<FlowSet>> {
    let path = dir.join(maps::FLOWS);
    let data = MapData::from_pin(&path)
        .with_context(|| format!("opening pinned map {}", path.display()))?;
    let flows: Array<MapData, FlowSet> = Map::from_map_data(data)
        .context("RSPLB_FLOWS: unsupported map type")?
        .try_into()
        .context("RSPLB_FLOWS has an unexpected type")?;
    if index >= flows.len() {
        return Ok(None);
    }
    flows
        .get(&index, 0)
        .map(Some)
        .with_context(|| format!("reading RSPLB_FLOWS[{index}]"))
}

/// The program's clock now (`bpf_ktime_get_coarse_ns`, CLOCK_MONOTONIC_COARSE) in flow table
/// units (`FlowValue::seen`).
pub fn flow_time_now() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    let ns = (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64);
    (ns >> FLOW_TIME_SHIFT) as u32
}
