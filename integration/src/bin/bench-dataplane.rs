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
//!   flows, 64 MiB) instead of 64 Ki flows (4 MiB);
//! - `xdp_est_allow_ns`: `xdp_est_ns` once the VIP has a source allow list of
//!   `ALLOW_PREFIXES` prefixes (`VIP_F_ALLOW_LIST`: one LPM trie lookup more per packet);
//! - `xdp_refused_ns`: a packet of a source outside that list (dropped);
//! - `xdp_syn_client_ns`: `xdp_syn_ns` once the VIP places by the client's address
//!   (`VIP_F_CLIENT_HASH`, `rsplb vip add --hash client`) instead of the 5-tuple.
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
    Config, Counters, ELEM_ACTIVE, Element, FAMILY_V4, MODE_DSR, MODE_NAT, PROGRAM_NAME, PROTO_TCP,
    VipInfo, VipKey, maps,
};

const XDP_DROP: u32 = 1;
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

/// The bench's element of slot `slot`: 198.18.1.`slot` on the ingress segment.
fn element(slot: u32) -> Element {
    Element {
        addr: words([198, 18, 1, slot as u8]),
        port: 0,
        family: FAMILY_V4,
        flags: ELEM_ACTIVE,
        generation: 1,
        ifindex: 0,
        dst_mac: [0x02, 0xee, 0, 0, 0, slot as u8],
        src_mac: [0x02, 0, 0, 0, 0, 0x02],
    }
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
        Self::with_nat_capacity(flows, 1024)
    }

    /// The program with a flow table of `flows` flows and a NAT table of `nat` translations.
    fn with_nat_capacity(flows: u32, nat: u32) -> Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::VIPS, 4)
            .map_max_entries(maps::ELEMENTS, 128)
            .map_max_entries(maps::MAGLEV, 4 * rsplb_common::maglev_blocks(MAGLEV_SIZE))
            .map_max_entries(maps::FLOWS, rsplb_common::flow_sets(flows))
            .map_max_entries(maps::NAT_REVERSE, nat)
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
            elements.set(slot, element(slot), 0)?;
        }
        let mut b = XdpBench {
            ebpf,
            next_port: 1024,
            flows,
        };
        b.fill_table(0, ELEMENTS)?;
        b.add_vip(
            VIP,
            VipInfo {
                slot: 0,
                table: 0,
                mode: MODE_DSR,
                timeout_s: 300,
                ..VipInfo::default()
            },
        )?;
        Ok(b)
    }

    /// Table `table`: the first `elements` elements in turn (real tables come from the
    /// control plane's Maglev).
    fn fill_table(&mut self, table: u32, elements: u32) -> Result<()> {
        let mut maglev: Array<&mut MapData, rsplb_common::MaglevBlock> =
            Array::try_from(self.ebpf.map_mut(maps::MAGLEV).context("maglev map")?)?;
        let entries: Vec<u32> = (0..MAGLEV_SIZE).map(|i| i % elements).collect();
        let base = table * rsplb_common::maglev_blocks(MAGLEV_SIZE);
        for (i, chunk) in entries.chunks(rsplb_common::MAGLEV_BLOCK).enumerate() {
            maglev.set(
                base + i as u32,
                rsplb_common::MaglevBlock::from_entries(chunk),
                0,
            )?;
        }
        Ok(())
    }

    /// A VIP on TCP port 80 of `addr`, alone on its filter bit.
    fn add_vip(&mut self, addr: [u8; 4], info: VipInfo) -> Result<()> {
        let mut vips: HashMap<&mut MapData, VipKey, VipInfo> =
            HashMap::try_from(self.ebpf.map_mut(maps::VIPS).context("vips map")?)?;
        let vip = VipKey {
            addr: words(addr),
            port: 80u16.to_be(),
            proto: PROTO_TCP,
            family: FAMILY_V4,
        };
        vips.insert(vip, info, 0)?;
        // The control plane's duty for every VIP: its filter bit's direct entry...
        let bit = vip.filter_bit();
        let mut direct: Array<&mut MapData, rsplb_common::VipDirect> = Array::try_from(
            self.ebpf
                .map_mut(maps::VIP_DIRECT)
                .context("VIP direct map")?,
        )?;
        direct.set(bit, rsplb_common::VipDirect::for_bit(bit, [(vip, info)]), 0)?;
        // ... and its pre-filter bit.
        let mut filter: Array<&mut MapData, u64> = Array::try_from(
            self.ebpf
                .map_mut(maps::VIP_FILTER)
                .context("VIP filter map")?,
        )?;
        let word = filter.get(&(bit / 64), 0)? | 1u64 << (bit % 64);
        filter.set(bit / 64, word, 0)?;
        Ok(())
    }

    /// Element `slot` in service (address 198.18.1.`slot`, MAC ending in `slot`).
    fn set_element(&mut self, slot: u32) -> Result<()> {
        let mut elements: Array<&mut MapData, Element> =
            Array::try_from(self.ebpf.map_mut(maps::ELEMENTS).context("elements map")?)?;
        elements.set(slot, element(slot), 0)?;
        Ok(())
    }

    /// A global counter by name (`rsplb_common::stat::NAMES`; 0 if this build has no such
    /// counter), all CPUs.
    fn global(&self, name: &str) -> Result<u64> {
        let Some(i) = rsplb_common::stat::NAMES.iter().position(|n| *n == name) else {
            return Ok(0);
        };
        let stats: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.ebpf.map(maps::GLOBAL_STATS).context("global stats")?)?;
        Ok(stats.get(&(i as u32), 0)?.iter().sum())
    }

    /// One run of `frame`: the action and the frame as the program left it.
    fn run_out(&self, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
        let prog: &Xdp = self.program()?;
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN")?;
        out.truncate(r.data_size_out as usize);
        Ok((r.return_value, out))
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

/// Prefixes of the allow list of `xdp_est_allow_ns`: /24s of 10.0.0.0/8 and the client's /16.
const ALLOW_PREFIXES: u32 = 256;

/// `xdp_est_ns` and a refused packet once the VIP has an allow list (left on the VIP).
fn xdp_allow_list_ns(b: &mut XdpBench) -> Result<(f64, f64)> {
    use aya::maps::lpm_trie::{Key, LpmTrie};
    let mut allow: LpmTrie<&mut MapData, rsplb_common::AllowKey, u8> =
        LpmTrie::try_from(b.ebpf.map_mut(maps::ALLOW).context("allow map")?)?;
    let mut prefix = |addr: [u8; 4], len: u32| {
        let key = Key::new(
            rsplb_common::AllowKey::SLOT_BITS + len,
            rsplb_common::AllowKey {
                vip_slot: 0u32.to_be(),
                addr: words(addr),
            },
        );
        allow.insert(&key, 1, 0)
    };
    prefix([CLIENT[0], CLIENT[1], 0, 0], 16)?;
    for i in 0..ALLOW_PREFIXES - 1 {
        prefix([10, (i >> 8) as u8, i as u8, 0], 24)?;
    }
    b.add_vip(
        VIP,
        VipInfo {
            slot: 0,
            table: 0,
            mode: MODE_DSR,
            flags: rsplb_common::VIP_F_ALLOW_LIST,
            timeout_s: 300,
            ..VipInfo::default()
        },
    )?;
    let allowed = xdp_est_ns(b)?;
    let frame = tcp_frame([203, 0, 113, 1], VIP, 1000, 80, 0x10);
    let rounds = (0..ROUNDS)
        .map(|_| b.batch(&frame, XDP_DROP))
        .collect::<Result<Vec<_>>>()?;
    Ok((allowed, median(rounds)))
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
        Self::to(VIP)
    }

    /// A driver of SYNs to port 80 of `vip`.
    fn to(vip: [u8; 4]) -> Result<Self> {
        let mut lab = Ebpf::load(rsplb_integration::LAB_XDP_OBJECT).context("lab XDP object")?;
        for name in ["lab_syn", "lab_tx"] {
            let prog: &mut Xdp = lab
                .program_mut(name)
                .with_context(|| format!("{name} not in the lab object"))?
                .try_into()?;
            prog.load().with_context(|| format!("loading {name}"))?;
        }
        let frame = tcp_frame(CLIENT, vip, 1, 80, 0x02);
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

    /// `repeat` SYNs of new flows into rsplb, unchecked (a flood).
    fn flood(&mut self, b: &XdpBench, repeat: u32) -> Result<()> {
        let fd = b.program()?.fd()?.try_clone()?;
        self.target(&fd)?;
        self.run("lab_syn", repeat)?;
        Ok(())
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

const USAGE: &str = "usage: bench-dataplane [--only xdp|fwd|flood] [--flood-mpps RATE]";

fn main() -> Result<()> {
    let mut only = None;
    let mut flood_mpps = FLOOD_MPPS;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--only", Some(w)) if ["xdp", "fwd", "flood"].contains(&w.as_str()) => only = Some(w),
            ("--flood-mpps", Some(r)) => {
                flood_mpps = r.parse().ok().filter(|r: &f64| *r > 0.0).context(USAGE)?
            }
            _ => bail!("{USAGE}"),
        }
    }
    let only = only.as_deref();
    if only.is_none() || only == Some("xdp") {
        xdp_figures()?;
    }
    if only.is_none() || only == Some("flood") {
        syn_flood(flood_mpps)?;
    }
    if only.is_none() || only == Some("fwd") {
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
    let (allowed, refused) = xdp_allow_list_ns(&mut b)?;
    println!("xdp_allow_prefixes={ALLOW_PREFIXES}");
    println!("xdp_est_allow_ns={allowed:.0}");
    println!("xdp_refused_ns={refused:.0}");
    b.add_vip(
        VIP,
        VipInfo {
            slot: 0,
            table: 0,
            mode: MODE_DSR,
            flags: rsplb_common::VIP_F_CLIENT_HASH,
            timeout_s: 300,
            ..VipInfo::default()
        },
    )?;
    let (syn_client, _) = xdp_syn_ns(&b)?;
    println!("xdp_syn_client_ns={syn_client:.0}");
    // The same SYNs with the flow table at its default size: 64 MiB of sets, far beyond the
    // caches, so each new flow's set comes from memory.
    let big = XdpBench::new(rsplb_common::DEFAULT_FLOW_CAPACITY)?;
    let (syn_big, _) = xdp_syn_ns(&big)?;
    println!("xdp_syn_default_table_ns={syn_big:.0}");
    Ok(())
}

/// Flood rate (SYNs per second, in millions) by default: about what rsplb forwards on this
/// machine (`fwd_xdp_mpps`, 2.5 Mpps when measured).
const FLOOD_MPPS: f64 = 2.5;
const FLOOD_SECS: f64 = 10.0;
/// Established flows of each mode (DSR and NAT).
const FLOOD_ESTABLISHED: u32 = 10_000;
/// SYNs per flood batch (half to each VIP), between two chunks of established packets.
const FLOOD_BATCH: u32 = 20_000;
/// Established flows of each mode sending a packet after each flood batch.
const FLOOD_CHUNK: usize = 500;
const NAT_VIP: [u8; 4] = [198, 18, 0, 20];
const SNAT: [u8; 4] = [198, 18, 2, 254];

/// An established flow of the flood benchmark and where it must stay.
struct Established {
    client: [u8; 4],
    sport: u16,
    /// Element slot (the last byte of the MAC the program sent its packets to).
    element: u8,
    /// NAT: the SNAT port (0 for DSR).
    nat_port: u16,
    broken: bool,
}

/// Sends one packet of `f` (DSR when `nat` is false): its element (and SNAT port) must not
/// change, and for NAT an element's reply must reach the client. Returns false if it broke.
fn still_established(b: &XdpBench, f: &Established, nat: bool) -> Result<bool> {
    let vip = if nat { NAT_VIP } else { VIP };
    let (action, out) = b.run_out(&tcp_frame(f.client, vip, f.sport, 80, 0x10))?;
    if action != XDP_TX || out[5] != f.element {
        return Ok(false);
    }
    if !nat {
        return Ok(true);
    }
    let port = u16::from_be_bytes([out[34], out[35]]);
    if port != f.nat_port {
        return Ok(false);
    }
    let reply = tcp_frame([198, 18, 1, f.element], SNAT, 80, f.nat_port, 0x10);
    let (action, out) = b.run_out(&reply)?;
    Ok(action == XDP_TX && out[30..34] == f.client && out[36..38] == f.sport.to_be_bytes())
}

/// `syn_flood_established_broken`: established DSR and NAT flows (handshake completed through
/// the program, packets in both directions for NAT) while spoofed SYNs of new flows go to both
/// VIPs at `mpps` million per second for `FLOOD_SECS`. Everything is driven by
/// BPF_PROG_TEST_RUN on one CPU, not by real connections: the flood (the `lab_syn` driver, in
/// batches of `FLOOD_BATCH`), and between batches one packet of `FLOOD_CHUNK` established
/// flows of each mode, so each of them sends a packet every few hundred milliseconds. The flow
/// and NAT tables have their default sizes. Halfway, both pools get one element more (an
/// operator adding capacity under attack): an established flow placed again by Maglev after
/// that may move. A flow counts as broken once: its packet went to another element, got another
/// SNAT port or was not forwarded, or (NAT) its element's reply was not translated back.
fn syn_flood(mpps: f64) -> Result<()> {
    let flows = rsplb_common::DEFAULT_FLOW_CAPACITY;
    let nat_capacity = rsplb_common::DEFAULT_NAT_CAPACITY;
    let mut b = XdpBench::with_nat_capacity(flows, nat_capacity)?;
    b.fill_table(2, ELEMENTS)?;
    b.add_vip(
        NAT_VIP,
        VipInfo {
            slot: 1,
            table: 2,
            mode: MODE_NAT,
            timeout_s: 300,
            snat_addr: words(SNAT),
            ..VipInfo::default()
        },
    )?;
    let mut est: [Vec<Established>; 2] = [Vec::new(), Vec::new()];
    for (m, nat) in [false, true].into_iter().enumerate() {
        let vip = if nat { NAT_VIP } else { VIP };
        for i in 0..FLOOD_ESTABLISHED {
            let client = [10, 1 + m as u8, (i >> 8) as u8, i as u8];
            let sport = 10_000 + (i % 50_000) as u16;
            let (a1, _) = b.run_out(&tcp_frame(client, vip, sport, 80, 0x02))?;
            let (a2, out) = b.run_out(&tcp_frame(client, vip, sport, 80, 0x10))?;
            ensure!(
                a1 == XDP_TX && a2 == XDP_TX,
                "setting up established flows: actions {a1}, {a2}"
            );
            let f = Established {
                client,
                sport,
                element: out[5],
                nat_port: if nat {
                    u16::from_be_bytes([out[34], out[35]])
                } else {
                    0
                },
                broken: false,
            };
            ensure!(still_established(&b, &f, nat)?, "a flow broken at set-up");
            est[m].push(f);
        }
    }
    let mut drivers = [SynDriver::to(VIP)?, SynDriver::to(NAT_VIP)?];
    let rate = mpps * 1e6;
    let start = std::time::Instant::now();
    let mut sent = 0u64;
    let mut checked = 0u64;
    let mut next = [0usize; 2];
    let mut pool_changed = false;
    while start.elapsed().as_secs_f64() < FLOOD_SECS {
        let t0 = std::time::Instant::now();
        for d in &mut drivers {
            d.flood(&b, FLOOD_BATCH / 2)?;
        }
        sent += u64::from(FLOOD_BATCH);
        let t1 = std::time::Instant::now();
        for (m, flows) in est.iter_mut().enumerate() {
            for _ in 0..FLOOD_CHUNK {
                let n = flows.len();
                let f = &mut flows[next[m]];
                next[m] = (next[m] + 1) % n;
                if !f.broken && !still_established(&b, f, m == 1)? {
                    f.broken = true;
                }
                checked += 1;
            }
        }
        if std::env::var_os("RSPLB_BENCH_DEBUG").is_some() {
            eprintln!(
                "flood batch: SYNs {:?}, established packets {:?}",
                t1 - t0,
                t1.elapsed()
            );
        }
        if !pool_changed && start.elapsed().as_secs_f64() >= FLOOD_SECS / 2.0 {
            b.set_element(ELEMENTS)?;
            b.fill_table(0, ELEMENTS + 1)?;
            b.fill_table(2, ELEMENTS + 1)?;
            pool_changed = true;
        }
        // Pace: never ahead of the target rate.
        let due = std::time::Duration::from_secs_f64(sent as f64 / rate);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let broken = |m: usize| est[m].iter().filter(|f| f.broken).count();
    let per_flow = checked as f64 / (2 * FLOOD_ESTABLISHED) as f64;
    println!("syn_flood_established_broken={}", broken(0) + broken(1));
    println!("syn_flood_broken_dsr={}", broken(0));
    println!("syn_flood_broken_nat={}", broken(1));
    println!("syn_flood_established_flows={}", 2 * FLOOD_ESTABLISHED);
    println!("syn_flood_rate_mpps={:.2}", sent as f64 / secs / 1e6);
    println!("syn_flood_secs={secs:.1}");
    println!("syn_flood_flow_table_flows={flows}");
    println!("syn_flood_nat_table_translations={nat_capacity}");
    println!(
        "syn_flood_established_packet_interval_ms={:.0}",
        secs * 1e3 / per_flow
    );
    for name in [
        "flow_table_full_syn",
        "flow_evicted",
        "drop_nat_ports_exhausted",
    ] {
        println!("syn_flood_{name}={}", b.global(name)?);
    }
    Ok(())
}
