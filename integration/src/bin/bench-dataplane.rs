//! `cargo xtask bench dataplane`: dataplane figures, printed as `key=value` lines.
//!
//! The `xdp_*` figures time the rsplb XDP program alone through BPF_PROG_TEST_RUN (no NIC, no
//! stack), in ns per packet, as medians over several rounds, on one DSR VIP with 100 elements
//! and a flow table of 64 Ki flows:
//! - `xdp_syn_ns`: a TCP SYN of a new flow (flow table miss, Maglev pick, flow pinned), in the
//!   steady state of a full flow table (every new flow replaces an older one);
//! - `xdp_est_ns`: a packet of an established flow (flow table hit);
//! - `xdp_pass_ns`: a TCP packet to an address that is not a VIP (passed to the stack);
//! - `xdp_empty_ns`: a program that only returns XDP_PASS (the lab's `lab_pass`), timed like
//!   `xdp_pass_ns`: the floor of BPF_PROG_TEST_RUN in this same run, for ratios;
//! - `xdp_syn_driver_ns`: what the SYN driver (below) adds per run, subtracted from `xdp_syn_ns`;
//! - `xdp_syn_cold_ns`, `xdp_harness_ns`: a SYN timed alone (below);
//! - `xdp_syn_default_table_ns`: `xdp_syn_ns` with the flow table at its default size (1 Mi
//!   flows, 64 MiB) instead of 64 Ki flows (4 MiB).
//!
//! The program rewrites its input in place, so a `repeat` batch sees its own output from the
//! second run on. That is harmless for the established and pass packets (the DSR rewrite is
//! idempotent and a passed packet is untouched), so they are timed with large `repeat` batches.
//! A SYN must be a new flow every time. `xdp_syn_ns` restores the input for every run: the
//! lab's `lab_syn` writes the frame afresh from a template with a 5-tuple of its own (a
//! sequence number in the source port and address) and tail-calls rsplb, in batches of
//! `BATCH` runs like the other figures. The driver's own cost (`lab_syn` tail-calling
//! `lab_tx`, minus `lab_tx` alone) is measured in the same round and subtracted. Each batch
//! must count exactly `BATCH` new flows in the VIP's counters and end in XDP_TX. The table is
//! filled first, so every timed SYN also pays the replacement of an older flow.
//!
//! `xdp_syn_cold_ns` is the latency of a SYN arriving alone: the median of `repeat = 1` runs
//! of new-flow SYNs minus the fixed per-call cost of the test harness (`xdp_harness_ns`: a
//! `repeat = 1` run minus a batched run of the same established packet, measured in the same
//! round). It keeps the cold caches of an isolated call, and as a median it leaves out the rare
//! slow calls, so it is a latency figure, not a throughput cost.
//! `RSPLB_BENCH_DEBUG=1` prints each round's parts.
//!
//! Each figure is one function; `main` prints them in order (other figures add their own).
use anyhow::{Context as _, Result, bail, ensure};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray},
    programs::{TestRun, TestRunOptions, Xdp},
};
use rsplb_common::{
    Config, Counters, ELEM_ACTIVE, Element, FAMILY_V4, MODE_DSR, PROGRAM_NAME, PROTO_TCP, VipInfo,
    VipKey, maps,
};

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const ELEMENTS: u32 = 100;
const MAGLEV_SIZE: u32 = 65537;
const ROUNDS: usize = 9;
const BATCH: u32 = 200_000;
/// Flows the flow table holds.
const FLOW_CAPACITY: u32 = 1 << 16;
const SYNS_PER_ROUND: u16 = 2_000;

const VIP: [u8; 4] = [198, 18, 0, 10];
const CLIENT: [u8; 4] = [198, 18, 5, 1];

/// The program loaded with one DSR VIP over `ELEMENTS` elements.
struct XdpBench {
    ebpf: Ebpf,
    /// Source port of the next new flow.
    next_port: u16,
    /// Capacity of the flow table.
    flows: u32,
}

fn words(a: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(a), 0, 0, 0]
}

/// Ethernet + IPv4 + TCP (checksums are irrelevant to a DSR rewrite).
fn tcp_frame(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, PROTO_TCP, 0, 0]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    f.extend_from_slice(&[0u8; 20]);
    f
}

impl XdpBench {
    /// The program with a flow table of `flows` flows.
    fn new(flows: u32) -> Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::VIPS, 4)
            .map_max_entries(maps::ELEMENTS, 128)
            .map_max_entries(maps::MAGLEV, 2 * rsplb_common::maglev_blocks(MAGLEV_SIZE))
            .map_max_entries(maps::FLOWS, rsplb_common::flow_sets(flows))
            .map_max_entries(maps::NAT_REVERSE, 1024)
            .map_max_entries(maps::ELEMENT_STATS, 128)
            .map_max_entries(maps::VIP_STATS, 4)
            .load(rsplb::XDP_OBJECT)
            .context("loading the XDP object (run as root)")?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .context("program not in the object")?
            .try_into()?;
        prog.load()
            .context("loading the XDP program into the kernel")?;

        let mut config: Array<&mut MapData, Config> =
            Array::try_from(ebpf.map_mut(maps::CONFIG).context("config map")?)?;
        config.set(
            0,
            Config {
                abi_version: rsplb_common::CONFIG_ABI_VERSION,
                maglev_size: MAGLEV_SIZE,
                nat_tcp_timeout_s: 300,
                nat_udp_timeout_s: 30,
                nat_port_min: 32768,
                nat_port_max: 60999,
                flow_sets: rsplb_common::flow_sets(flows),
                dsr_tcp_timeout_s: 300,
                dsr_udp_timeout_s: 30,
            },
            0,
        )?;
        let mut elements: Array<&mut MapData, Element> =
            Array::try_from(ebpf.map_mut(maps::ELEMENTS).context("elements map")?)?;
        for slot in 0..ELEMENTS {
            elements.set(
                slot,
                Element {
                    addr: words([198, 18, 1, slot as u8]),
                    port: 0,
                    family: FAMILY_V4,
                    flags: ELEM_ACTIVE,
                    generation: 1,
                    ifindex: 0,
                    dst_mac: [0x02, 0xee, 0, 0, 0, slot as u8],
                    src_mac: [0x02, 0, 0, 0, 0, 0x02],
                },
                0,
            )?;
        }
        // Table 0: the elements in turn (real tables come from the control plane's Maglev).
        let mut maglev: Array<&mut MapData, rsplb_common::MaglevBlock> =
            Array::try_from(ebpf.map_mut(maps::MAGLEV).context("maglev map")?)?;
        let entries: Vec<u32> = (0..MAGLEV_SIZE).map(|i| i % ELEMENTS).collect();
        for (i, chunk) in entries.chunks(rsplb_common::MAGLEV_BLOCK).enumerate() {
            maglev.set(i as u32, rsplb_common::MaglevBlock::from_entries(chunk), 0)?;
        }
        let mut vips: HashMap<&mut MapData, VipKey, VipInfo> =
            HashMap::try_from(ebpf.map_mut(maps::VIPS).context("vips map")?)?;
        let vip = VipKey {
            addr: words(VIP),
            port: 80u16.to_be(),
            proto: PROTO_TCP,
            family: FAMILY_V4,
        };
        let info = VipInfo {
            slot: 0,
            table: 0,
            mode: MODE_DSR,
            timeout_s: 300,
            ..VipInfo::default()
        };
        vips.insert(vip, info, 0)?;
        // The control plane's duty for every VIP: its filter bit's direct entry...
        let bit = vip.filter_bit();
        let mut direct: Array<&mut MapData, rsplb_common::VipDirect> =
            Array::try_from(ebpf.map_mut(maps::VIP_DIRECT).context("VIP direct map")?)?;
        direct.set(bit, rsplb_common::VipDirect::for_bit(bit, [(vip, info)]), 0)?;
        // ... and its pre-filter bit.
        let mut filter: Array<&mut MapData, u64> =
            Array::try_from(ebpf.map_mut(maps::VIP_FILTER).context("VIP filter map")?)?;
        let bit = vip.filter_bit();
        let word = filter.get(&(bit / 64), 0)? | 1u64 << (bit % 64);
        filter.set(bit / 64, word, 0)?;
        Ok(XdpBench {
            ebpf,
            next_port: 1024,
            flows,
        })
    }

    fn program(&self) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(PROGRAM_NAME)
            .context("program")?
            .try_into()?)
    }

    /// New flows counted for the VIP, all CPUs.
    fn vip_new_flows(&self) -> Result<u64> {
        let stats: PerCpuArray<&MapData, Counters> =
            PerCpuArray::try_from(self.ebpf.map(maps::VIP_STATS).context("VIP stats map")?)?;
        Ok(stats.get(&0, 0)?.iter().map(|c| c.new_flows).sum())
    }

    /// One BPF_PROG_TEST_RUN: (action, kernel-measured ns per run).
    fn run(&self, frame: &[u8], repeat: u32) -> Result<(u32, f64)> {
        let prog: &Xdp = self
            .ebpf
            .program(PROGRAM_NAME)
            .context("program")?
            .try_into()?;
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN")?;
        Ok((r.return_value, r.duration.as_nanos() as f64))
    }

    fn batch(&self, frame: &[u8], expect: u32) -> Result<f64> {
        let (action, ns) = self.run(frame, BATCH)?;
        ensure!(action == expect, "action {action}, expected {expect}");
        Ok(ns)
    }

    fn established_frame(&self) -> Result<Vec<u8>> {
        let frame = tcp_frame(CLIENT, VIP, 1000, 80, 0x10);
        let (action, _) = self.run(&frame, 1)?;
        ensure!(action == XDP_TX, "established flow setup: action {action}");
        Ok(frame)
    }

    /// Median of one round of new-flow SYNs, each its own `repeat = 1` run.
    fn syn_round(&mut self) -> Result<f64> {
        let mut samples = Vec::with_capacity(SYNS_PER_ROUND as usize);
        for _ in 0..SYNS_PER_ROUND {
            self.next_port = self.next_port.checked_add(1).unwrap_or(1024);
            let src = [
                CLIENT[0],
                CLIENT[1],
                6 + (self.next_port >> 15) as u8,
                CLIENT[3],
            ];
            let frame = tcp_frame(src, VIP, self.next_port, 80, 0x02);
            let (action, ns) = self.run(&frame, 1)?;
            if action != XDP_TX {
                bail!("SYN: action {action}, expected XDP_TX");
            }
            samples.push(ns);
        }
        Ok(median(samples))
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn xdp_est_ns(b: &mut XdpBench) -> Result<f64> {
    let frame = b.established_frame()?;
    let rounds = (0..ROUNDS)
        .map(|_| b.batch(&frame, XDP_TX))
        .collect::<Result<Vec<_>>>()?;
    Ok(median(rounds))
}

fn xdp_pass_ns(b: &mut XdpBench) -> Result<f64> {
    let frame = tcp_frame(CLIENT, [198, 18, 0, 99], 1000, 22, 0x10);
    let rounds = (0..ROUNDS)
        .map(|_| b.batch(&frame, XDP_PASS))
        .collect::<Result<Vec<_>>>()?;
    Ok(median(rounds))
}

/// Median of `SYNS_PER_ROUND` `repeat = 1` runs of the (already established) `frame`.
fn single_runs(b: &XdpBench, frame: &[u8]) -> Result<f64> {
    let mut single = Vec::with_capacity(SYNS_PER_ROUND as usize);
    for _ in 0..SYNS_PER_ROUND {
        let (action, ns) = b.run(frame, 1)?;
        ensure!(action == XDP_TX, "established: action {action}");
        single.push(ns);
    }
    Ok(median(single))
}

/// A SYN timed alone, and the fixed cost of one `repeat = 1` run that is not the program's (the
/// "harness": timer reads, cold caches of the test-run path) as a second figure.
///
/// Every round measures, close together in time, a batch of the established packet (its
/// program cost), `repeat = 1` runs of that same packet (program + harness), and `repeat = 1`
/// SYNs of new flows (program + harness); the round's SYN figure is
/// `syn_single - (est_single - est_batch)`. Taking the three in the same round keeps a load
/// change on this shared machine from landing between the harness and the SYNs.
fn xdp_syn_cold_ns(b: &mut XdpBench) -> Result<(f64, f64)> {
    let est = b.established_frame()?;
    let mut syn = Vec::with_capacity(ROUNDS);
    let mut harness = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let est_batch = b.batch(&est, XDP_TX)?;
        let est_single = single_runs(b, &est)?;
        let syn_single = b.syn_round()?;
        let h = (est_single - est_batch).max(0.0);
        if std::env::var_os("RSPLB_BENCH_DEBUG").is_some() {
            eprintln!(
                "round: est_batch={est_batch:.0} est_single={est_single:.0} syn_single={syn_single:.0}"
            );
        }
        harness.push(h);
        syn.push((syn_single - h).max(0.0));
    }
    Ok((median(syn), median(harness)))
}

/// The lab's new-flow driver: `lab_syn` (frame restored from a template, 5-tuple of its own,
/// then a tail call into `LAB_SYN_TARGET[0]`) and `lab_tx` (returns XDP_TX: the target that
/// measures the driver alone).
struct SynDriver {
    lab: Ebpf,
    frame: Vec<u8>,
}

impl SynDriver {
    fn new() -> Result<Self> {
        let mut lab = Ebpf::load(rsplb_integration::LAB_XDP_OBJECT).context("lab XDP object")?;
        for name in ["lab_syn", "lab_tx"] {
            let prog: &mut Xdp = lab
                .program_mut(name)
                .with_context(|| format!("{name} not in the lab object"))?
                .try_into()?;
            prog.load().with_context(|| format!("loading {name}"))?;
        }
        let frame = tcp_frame(CLIENT, VIP, 1, 80, 0x02);
        let mut template = [0u64; 6];
        for (i, w) in template.iter_mut().enumerate() {
            *w = u64::from_ne_bytes(frame[i * 8..i * 8 + 8].try_into()?);
        }
        let mut t: Array<&mut MapData, [u64; 6]> = Array::try_from(
            lab.map_mut("LAB_SYN_TEMPLATE")
                .context("LAB_SYN_TEMPLATE")?,
        )?;
        t.set(0, template, 0)?;
        Ok(Self { lab, frame })
    }

    fn target(&mut self, fd: &aya::programs::ProgramFd) -> Result<()> {
        let mut targets = ProgramArray::try_from(
            self.lab
                .map_mut("LAB_SYN_TARGET")
                .context("LAB_SYN_TARGET")?,
        )?;
        targets.set(0, fd, 0)?;
        Ok(())
    }

    fn run(&self, program: &str, repeat: u32) -> Result<(u32, f64)> {
        let prog: &Xdp = self.lab.program(program).context("program")?.try_into()?;
        let mut out = vec![0u8; self.frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(&self.frame),
                data_out: Some(&mut out),
                repeat,
                ..TestRunOptions::default()
            })
            .with_context(|| format!("BPF_PROG_TEST_RUN of {program}"))?;
        Ok((r.return_value, r.duration.as_nanos() as f64))
    }

    /// ns per SYN of one batch of `repeat` new flows through rsplb, checked: every run counted
    /// as a new flow of the VIP, and the last action XDP_TX.
    fn rsplb_batch(&mut self, b: &XdpBench, repeat: u32) -> Result<f64> {
        let fd = b.program()?.fd()?.try_clone()?;
        self.target(&fd)?;
        let before = b.vip_new_flows()?;
        let (action, ns) = self.run("lab_syn", repeat)?;
        ensure!(
            action == XDP_TX,
            "SYN batch: action {action}, expected XDP_TX"
        );
        let new = b.vip_new_flows()? - before;
        ensure!(
            new == u64::from(repeat),
            "SYN batch: {new} new flows for {repeat} SYNs"
        );
        Ok(ns)
    }

    /// ns per run of the driver alone: `lab_syn` into `lab_tx`, minus `lab_tx` alone.
    fn driver_ns(&mut self) -> Result<f64> {
        let fd = {
            let prog: &Xdp = self.lab.program("lab_tx").context("lab_tx")?.try_into()?;
            prog.fd()?.try_clone()?
        };
        self.target(&fd)?;
        let (a1, chained) = self.run("lab_syn", BATCH)?;
        let (a2, alone) = self.run("lab_tx", BATCH)?;
        ensure!(
            a1 == XDP_TX && a2 == XDP_TX,
            "driver: actions {a1} and {a2}"
        );
        Ok((chained - alone).max(0.0))
    }
}

/// New-flow SYNs in batches through the `lab_syn` driver (see the module documentation), and
/// the driver's cost that was subtracted.
fn xdp_syn_ns(b: &XdpBench) -> Result<(f64, f64)> {
    let mut d = SynDriver::new()?;
    // Fill the table: from here on every new flow replaces an older one.
    d.rsplb_batch(b, 2 * b.flows)?;
    let mut syn = Vec::with_capacity(ROUNDS);
    let mut driver = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let dr = d.driver_ns()?;
        let total = d.rsplb_batch(b, BATCH)?;
        if std::env::var_os("RSPLB_BENCH_DEBUG").is_some() {
            eprintln!("SYN round: driver+rsplb={total:.0} driver={dr:.0}");
        }
        driver.push(dr);
        syn.push((total - dr).max(0.0));
    }
    Ok((median(syn), median(driver)))
}

/// The same measurement as `xdp_pass_ns` for a program that only returns XDP_PASS: the floor
/// of BPF_PROG_TEST_RUN on this machine, for ratios taken in the same run.
fn xdp_empty_ns() -> Result<f64> {
    let mut ebpf = Ebpf::load(rsplb_integration::LAB_XDP_OBJECT).context("lab XDP object")?;
    let prog: &mut Xdp = ebpf
        .program_mut("lab_pass")
        .context("lab_pass not in the lab object")?
        .try_into()?;
    prog.load().context("loading lab_pass")?;
    let frame = tcp_frame(CLIENT, [198, 18, 0, 99], 1000, 22, 0x10);
    let mut out = vec![0u8; frame.len() + 256];
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                data_out: Some(&mut out),
                repeat: BATCH,
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN of lab_pass")?;
        ensure!(
            r.return_value == XDP_PASS,
            "lab_pass: action {}",
            r.return_value
        );
        rounds.push(r.duration.as_nanos() as f64);
    }
    Ok(median(rounds))
}

const USAGE: &str = "usage: bench-dataplane [--only xdp|fwd]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = match args.as_slice() {
        [] => None,
        [flag, which] if flag == "--only" && (which == "xdp" || which == "fwd") => {
            Some(which.as_str())
        }
        _ => bail!("{USAGE}"),
    };
    if only != Some("fwd") {
        xdp_figures()?;
    }
    if only != Some("xdp") {
        // Forwarding through a balancer namespace: rsplb vs nftables DNAT
        // (integration/src/fwd_bench.rs).
        let fwd = rsplb_integration::fwd_bench::run(&Default::default())
            .context("forwarding benchmark")?;
        for line in fwd.lines() {
            println!("{line}");
        }
    }
    Ok(())
}

/// The `xdp_*` figures (BPF_PROG_TEST_RUN).
fn xdp_figures() -> Result<()> {
    let mut b = XdpBench::new(FLOW_CAPACITY)?;
    let (syn, driver) = xdp_syn_ns(&b)?;
    println!("xdp_syn_ns={syn:.0}");
    println!("xdp_est_ns={:.0}", xdp_est_ns(&mut b)?);
    println!("xdp_pass_ns={:.0}", xdp_pass_ns(&mut b)?);
    println!("xdp_empty_ns={:.0}", xdp_empty_ns()?);
    println!("xdp_syn_driver_ns={driver:.0}");
    let (cold, harness) = xdp_syn_cold_ns(&mut b)?;
    println!("xdp_syn_cold_ns={cold:.0}");
    println!("xdp_harness_ns={harness:.0}");
    // The same SYNs with the flow table at its default size: 64 MiB of sets, far beyond the
    // caches, so each new flow's set comes from memory.
    let big = XdpBench::new(rsplb_common::DEFAULT_FLOW_CAPACITY)?;
    let (syn_big, _) = xdp_syn_ns(&big)?;
    println!("xdp_syn_default_table_ns={syn_big:.0}");
    Ok(())
}
