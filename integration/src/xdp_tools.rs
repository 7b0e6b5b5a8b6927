//! The lab's own XDP programs ([`crate::LAB_XDP_OBJECT`], built from `ebpf-tools/`): attach one to
//! an interface inside a namespace, read the sink's counters, and transmit frames with
//! BPF_PROG_TEST_RUN live frames (a packet generator with no extra tools).

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    Ebpf,
    maps::{Array, DevMap, PerCpuArray},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
};

use crate::netns::{in_netns, in_netns_scoped};

/// Bytes of the sender's frame header template (Ethernet + IPv4 + UDP, rounded up to 8).
pub const TX_HDR: usize = 48;

/// Number of per-destination slots of the sink (the last one counts everything else).
pub const SINK_SLOTS: u32 = 257;

/// One of the lab programs, loaded (and attached, unless it is the sender). Detached on drop.
pub struct LabXdp {
    ebpf: Ebpf,
    program: &'static str,
}

impl std::fmt::Debug for LabXdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabXdp")
            .field("program", &self.program)
            .finish()
    }
}

fn load(program: &'static str) -> Result<Ebpf> {
    let mut ebpf = Ebpf::load(crate::LAB_XDP_OBJECT).context("loading the lab's XDP object")?;
    let prog: &mut Xdp = ebpf
        .program_mut(program)
        .ok_or_else(|| anyhow!("no program {program} in the lab object"))?
        .try_into()
        .context("not an XDP program")?;
    prog.load()
        .with_context(|| format!("loading {program} into the kernel"))?;
    Ok(ebpf)
}

impl LabXdp {
    /// Attaches `program` (`lab_pass`, `lab_sink`, `lab_tx`) to `iface` in namespace `ns`, in
    /// native (driver) mode.
    pub fn attach(ns: &str, iface: &str, program: &'static str) -> Result<Self> {
        let iface = iface.to_string();
        in_netns(ns, move || {
            let mut ebpf = load(program)?;
            let prog: &mut Xdp = ebpf
                .program_mut(program)
                .ok_or_else(|| anyhow!("no program {program}"))?
                .try_into()?;
            prog.attach(&iface, XdpMode::Driver)
                .with_context(|| format!("attaching {program} to {iface} (native mode)"))?;
            Ok(Self { ebpf, program })
        })
    }

    /// Attaches `lab_redirect` to `iface` in namespace `ns` (native mode): every frame goes out
    /// of `to_ifindex` (an interface of the same namespace) with XDP_REDIRECT, untouched.
    pub fn attach_redirect(ns: &str, iface: &str, to_ifindex: u32) -> Result<Self> {
        let iface = iface.to_string();
        in_netns(ns, move || {
            let program = "lab_redirect";
            let mut ebpf = load(program)?;
            let mut map = DevMap::try_from(
                ebpf.map_mut("LAB_REDIRECT")
                    .context("no LAB_REDIRECT map")?,
            )?;
            map.set(0, to_ifindex, None, 0)
                .context("setting the redirect target")?;
            let prog: &mut Xdp = ebpf
                .program_mut(program)
                .ok_or_else(|| anyhow!("no program {program}"))?
                .try_into()?;
            prog.attach(&iface, XdpMode::Driver)
                .with_context(|| format!("attaching {program} to {iface} (native mode)"))?;
            Ok(Self { ebpf, program })
        })
    }

    /// Loads the sender (`lab_gen`) without attaching it. Every frame it sends starts with the
    /// first [`TX_HDR`] bytes of `frame` (rewritten on every run: live-frames pages are recycled
    /// without being re-initialised, so whatever the receivers wrote into a frame would
    /// otherwise be sent again), with the UDP source port (bytes 34..36, IPv4 without options)
    /// cycling through `sport_base .. sport_base + flows`. The frame must carry no UDP checksum.
    pub fn sender(frame: &[u8], flows: u16, sport_base: u16) -> Result<Self> {
        if frame.len() < TX_HDR {
            bail!(
                "a sender frame needs at least {TX_HDR} bytes, got {}",
                frame.len()
            );
        }
        let mut ebpf = load("lab_gen")?;
        let mut template = [0u8; TX_HDR + 8];
        template[..TX_HDR].copy_from_slice(&frame[..TX_HDR]);
        template[TX_HDR..TX_HDR + 2].copy_from_slice(&flows.to_ne_bytes());
        template[TX_HDR + 2..TX_HDR + 4].copy_from_slice(&sport_base.to_ne_bytes());
        let mut map: Array<_, [u8; TX_HDR + 8]> = Array::try_from(
            ebpf.map_mut("LAB_TX_TEMPLATE")
                .context("no LAB_TX_TEMPLATE map")?,
        )?;
        map.set(0, template, 0)
            .context("writing the sender template")?;
        Ok(Self {
            ebpf,
            program: "lab_gen",
        })
    }

    /// Frames the sender has sent (run through `lab_gen`), summed over CPUs.
    pub fn sent(&self) -> Result<u64> {
        let map = self.ebpf.map("LAB_TX_SEQ").context("no LAB_TX_SEQ map")?;
        let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        Ok(arr.get(&0, 0)?.iter().sum())
    }

    /// Sink counters, summed over CPUs: index = low byte of the IPv4 destination, 256 = other.
    pub fn sink_counts(&self) -> Result<Vec<u64>> {
        let map = self
            .ebpf
            .map("LAB_SINK_COUNTS")
            .context("no LAB_SINK_COUNTS map")?;
        let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map)?;
        (0..SINK_SLOTS)
            .map(|i| {
                arr.get(&i, 0)
                    .map(|v| v.iter().sum())
                    .map_err(anyhow::Error::from)
            })
            .collect()
    }

    /// Transmits `frame` `repeat` times out of interface `ifindex` of namespace `ns` with
    /// BPF_PROG_TEST_RUN live frames (the program returns XDP_TX). Returns the time the kernel
    /// reports for the run.
    pub fn transmit(
        &self,
        ns: &str,
        ifindex: u32,
        frame: Vec<u8>,
        repeat: u32,
    ) -> Result<std::time::Duration> {
        let prog: &Xdp = self
            .ebpf
            .program(self.program)
            .ok_or_else(|| anyhow!("no program {}", self.program))?
            .try_into()?;
        in_netns_scoped(ns, || {
            // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
            // egress_ifindex. The ingress interface is looked up in the caller's namespace.
            let mut ctx = [0u8; 24];
            ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
            ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
            let res = prog
                .test_run(TestRunOptions {
                    data_in: Some(&frame),
                    ctx_in: Some(&ctx),
                    repeat,
                    attrs: TestRunAttrs::new().xdp_live_frames(64),
                    ..TestRunOptions::new()
                })
                .context("BPF_PROG_TEST_RUN with live frames")?;
            Ok(res.duration)
        })
    }
}

/// Index of `iface` in namespace `ns`.
pub fn ifindex(ns: &str, iface: &str) -> Result<u32> {
    let out = crate::cmd::ip_in(ns, &["-o", "link", "show", "dev", iface])?;
    out.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no ifindex in {out:?}"))
}
