//! Forwarding benchmark: packets per second delivered to the elements through a balancer
//! namespace, with rsplb (XDP, DSR) and with the kernel stack balancing by nftables DNAT
//! (`numgen inc mod N`), measured in the same run on the same topology with the same sender.
//!
//! Topology, with no bridge in the path (a bridge would be the bottleneck):
//! `client eth0 <-> lb <in>`, `lb <out> <-> sink eth0`. The sink holds every element address and
//! runs `lab_sink` (an XDP program that counts per destination and drops: cheaper than what it
//! measures). The sender is `lab_gen` run with BPF_PROG_TEST_RUN live frames in the client
//! namespace (ingress = the client's veth): 64-byte UDP frames to the VIP, the source port
//! cycling through `flows` ports frame by frame.
//! - rsplb: attached natively to `<in>`, DSR, forwards with XDP_REDIRECT to `<out>`.
//! - nft: no rsplb; XDP_PASS on `<in>` (so the veth takes XDP_TX'd frames), ip_forward on, nft
//!   DNAT to the element addresses.
//!
//! - floor: `lab_redirect` on `<in>`, a bare XDP_REDIRECT to `<out>`: the harness alone.
//!
//! The figure is the sink's count over fixed wall-clock windows while the sender runs, the
//! median of all windows; the variants alternate (`cycles`) so load changes on the shared machine
//! hit all of them.
//!
//! CPUs (`FwdOptions::pin`, on by default when the machine has two CPUs or more): the sender
//! runs on CPU 0 and the balancer on CPU 1, as on separate hosts. A veth's NAPI runs where the
//! frame was sent, so without this the sender would share the balancer's CPU and the rates
//! would be closed-loop (offered = delivered). `<in>` therefore gets threaded NAPI
//! (`/sys/class/net/<in>/threaded`) with its kernel threads pinned to CPU 1 at real-time
//! priority (SCHED_FIFO, so other tasks of the shared machine do not cut into a window):
//! rsplb, or the stack with nftables, runs there, and so does the sink's NAPI, which the
//! balancer's CPU schedules (the elements' receive cost is on the balancer's CPU, the same for every
//! variant). The sender offers more than the balancer forwards (`fwd_*_offered_mpps`), and the
//! surplus is dropped at `<in>`'s ring. (Pinning the sink's NAPI to CPU 0 instead was tried and
//! rejected: nftables then fell from about 0.53 to 0.41 Mpps while its own work did not change,
//! most likely because the stack's per-packet transmit wakes the remote NAPI thread far more
//! often than rsplb's batched redirects do; that would have made the stack look slower than it
//! is.) With `pin` off everything runs on the sender's CPU.
//!
//! The floor (a bare XDP_REDIRECT) is the harness's own cost per packet; `fwd_*_cost_ns` (per
//! packet, over the floor) and `fwd_cost_ratio` compare the balancers' own work. The floor
//! does not read the frame, so a balancer's cost includes bringing the frame's headers into
//! its cache. The sink never answers ARP, so the balancer gets permanent neighbour entries for
//! the elements.
//!
//! Pitfall (why an earlier baseline measured ~64 packets/s): live frames come from a page_pool
//! whose pages are recycled without being re-initialised. A frame the stack forwarded was
//! rewritten in place (MACs, TTL, DNAT'd destination) and, once the sink dropped it, came back to
//! the sender's pool as it was; sent again, its destination MAC was the sink's, so the balancer's
//! `ip_rcv` dropped it as PACKET_OTHERHOST (only freshly allocated pages, about one batch per
//! test run, got through). `lab_gen` therefore rewrites the headers from a template on every frame.

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cli::{Rsplb, rsplb_bin},
    netns::{LabId, Netns},
    xdp_tools::{LabXdp, ifindex},
};

/// Options of the benchmark.
#[derive(Clone, Debug)]
pub struct FwdOptions {
    /// Number of elements behind the VIP.
    pub elements: u8,
    /// The variants are measured in turn (rsplb, nft, rsplb, nft...) `cycles` times, so that a
    /// change of the machine's load hits both.
    pub cycles: usize,
    /// Measuring windows per variant and cycle (the median over all windows is reported).
    pub windows: usize,
    pub window: Duration,
    /// Frames per BPF_PROG_TEST_RUN call of the sender.
    pub batch: u32,
    /// Distinct flows (UDP source ports) the sender cycles through, frame by frame.
    pub flows: u16,
    /// Sender on CPU 0, balancer (threaded NAPI of `<in>`) on CPU 1 (see the module
    /// documentation). Needs two CPUs.
    pub pin: bool,
}

impl Default for FwdOptions {
    fn default() -> Self {
        Self {
            elements: 4,
            cycles: 5,
            windows: 2,
            window: Duration::from_millis(1000),
            batch: 1 << 20,
            flows: 64,
            pin: online_cpus() >= 2,
        }
    }
}

/// One measuring window: packets per second delivered to the elements, and offered by the
/// sender, in millions.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub delivered_mpps: f64,
    pub offered_mpps: f64,
}

/// Results, in million packets per second delivered to the elements.
#[derive(Clone, Debug)]
pub struct FwdFigures {
    pub xdp_mpps: f64,
    pub nft_mpps: f64,
    /// The harness alone: `lab_redirect` (a bare XDP_REDIRECT) in place of the balancer.
    pub floor_mpps: f64,
    pub xdp_rounds: Vec<Window>,
    pub nft_rounds: Vec<Window>,
    pub floor_rounds: Vec<Window>,
    pub flows: u16,
    pub elements: u8,
    pub pinned: bool,
}

impl FwdFigures {
    /// rsplb's rate over the nftables rate (NaN when nftables delivered nothing).
    pub fn ratio(&self) -> f64 {
        if self.nft_mpps > 0.0 {
            self.xdp_mpps / self.nft_mpps
        } else {
            f64::NAN
        }
    }

    /// Nanoseconds per packet a variant adds over the floor: the sender, the veths and the sink
    /// run on the same CPU as the balancer (the veth's NAPI runs where the frame was sent), so
    /// the delivered rate includes their cost; this removes it. NaN when not above the floor.
    pub fn cost_ns(&self, mpps: f64) -> f64 {
        let ns = 1e3 / mpps - 1e3 / self.floor_mpps;
        if ns.is_finite() && ns > 0.0 {
            ns
        } else {
            f64::NAN
        }
    }

    /// The stack's per-packet cost over rsplb's, both over the floor.
    pub fn cost_ratio(&self) -> f64 {
        self.cost_ns(self.nft_mpps) / self.cost_ns(self.xdp_mpps)
    }

    /// `key=value` lines.
    pub fn lines(&self) -> Vec<String> {
        let list = |w: &[Window], f: fn(&Window) -> f64| {
            w.iter()
                .map(|w| format!("{:.3}", f(w)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let offered = |w: &[Window]| median(&w.iter().map(|w| w.offered_mpps).collect::<Vec<_>>());
        vec![
            format!("fwd_xdp_mpps={:.3}", self.xdp_mpps),
            format!("fwd_nft_mpps={:.3}", self.nft_mpps),
            format!("fwd_ratio={:.2}", self.ratio()),
            format!("fwd_floor_mpps={:.3}", self.floor_mpps),
            format!("fwd_xdp_cost_ns={:.0}", self.cost_ns(self.xdp_mpps)),
            format!("fwd_nft_cost_ns={:.0}", self.cost_ns(self.nft_mpps)),
            format!("fwd_cost_ratio={:.2}", self.cost_ratio()),
            format!("fwd_xdp_offered_mpps={:.3}", offered(&self.xdp_rounds)),
            format!("fwd_nft_offered_mpps={:.3}", offered(&self.nft_rounds)),
            format!(
                "fwd_xdp_rounds_mpps={}",
                list(&self.xdp_rounds, |w| w.delivered_mpps)
            ),
            format!(
                "fwd_nft_rounds_mpps={}",
                list(&self.nft_rounds, |w| w.delivered_mpps)
            ),
            format!(
                "fwd_floor_rounds_mpps={}",
                list(&self.floor_rounds, |w| w.delivered_mpps)
            ),
            format!("fwd_flows={}", self.flows),
            format!("fwd_elements={}", self.elements),
            format!(
                "fwd_cpus={}",
                if self.pinned {
                    "sender:0,balancer:1"
                } else {
                    "shared"
                }
            ),
        ]
    }
}

const VIP_PORT: u16 = 9000;
/// First UDP source port of the sender's flows.
const SPORT_BASE: u16 = 10000;

struct Topology {
    id: LabId,
    client: Netns,
    lb: Netns,
    sink: Netns,
    lb_in: String,
    lb_out: String,
    lb_in_mac: [u8; 6],
    client_mac: [u8; 6],
    client_ip: Ipv4Addr,
    vip: Ipv4Addr,
    elements: Vec<Ipv4Addr>,
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Topology {
    fn build(n: u8) -> Result<Self> {
        let id = LabId::next();
        let k = id.subnet();
        let client = Netns::create(&id.netns("fclient"))?;
        let lb = Netns::create(&id.netns("flb"))?;
        let sink = Netns::create(&id.netns("fsink"))?;
        let lb_in = id.iface("i");
        let lb_out = id.iface("o");
        let client_mac = [0x02, 0x72, k, 0, 1, 2];
        let lb_in_mac = [0x02, 0x72, k, 0, 1, 1];
        let lb_out_mac = [0x02, 0x72, k, 0, 2, 1];
        let sink_mac = [0x02, 0x72, k, 0, 2, 2];
        lb.ip(&[
            "link",
            "add",
            &lb_in,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            client.name(),
        ])?;
        lb.ip(&[
            "link",
            "add",
            &lb_out,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            sink.name(),
        ])?;
        lb.ip(&["link", "set", &lb_in, "address", &mac_str(lb_in_mac)])?;
        lb.ip(&["link", "set", &lb_out, "address", &mac_str(lb_out_mac)])?;
        client.ip(&["link", "set", "eth0", "address", &mac_str(client_mac)])?;
        sink.ip(&["link", "set", "eth0", "address", &mac_str(sink_mac)])?;
        let client_ip = Ipv4Addr::new(198, 18, k, 2);
        client.ip(&["addr", "add", &format!("{client_ip}/24"), "dev", "eth0"])?;
        lb.ip(&["addr", "add", &format!("198.18.{k}.1/24"), "dev", &lb_in])?;
        lb.ip(&["addr", "add", &format!("198.19.{k}.1/24"), "dev", &lb_out])?;
        let elements: Vec<Ipv4Addr> = (0..n).map(|i| Ipv4Addr::new(198, 19, k, 11 + i)).collect();
        for e in &elements {
            sink.ip(&["addr", "add", &format!("{e}/24"), "dev", "eth0"])?;
            // The sink drops ARP too: tell the balancer where the elements are.
            lb.ip(&[
                "neigh",
                "replace",
                &e.to_string(),
                "lladdr",
                &mac_str(sink_mac),
                "dev",
                &lb_out,
                "nud",
                "permanent",
            ])?;
        }
        for ns in [&client, &lb, &sink] {
            for key in ["all", "default"] {
                ns.sysctl(&format!("net.ipv4.conf.{key}.rp_filter"), "0")?;
            }
        }
        client.ip(&["link", "set", "eth0", "up"])?;
        sink.ip(&["link", "set", "eth0", "up"])?;
        lb.ip(&["link", "set", &lb_in, "up"])?;
        lb.ip(&["link", "set", &lb_out, "up"])?;
        Ok(Self {
            id,
            client,
            lb,
            sink,
            lb_in,
            lb_out,
            lb_in_mac,
            client_mac,
            client_ip,
            vip: Ipv4Addr::new(198, 18, k, 200),
            elements,
        })
    }

    /// An Ethernet/IPv4/UDP frame of 64 bytes (without FCS) from the client to the VIP.
    fn frame(&self, sport: u16) -> Vec<u8> {
        let mut f = Vec::with_capacity(64);
        f.extend_from_slice(&self.lb_in_mac);
        f.extend_from_slice(&self.client_mac);
        f.extend_from_slice(&[0x08, 0x00]);
        let total_len: u16 = 50;
        let mut ip = [
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        ip[2..4].copy_from_slice(&total_len.to_be_bytes());
        ip[12..16].copy_from_slice(&self.client_ip.octets());
        ip[16..20].copy_from_slice(&self.vip.octets());
        let csum = ipv4_checksum(&ip);
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&VIP_PORT.to_be_bytes());
        f.extend_from_slice(&(total_len - 20).to_be_bytes());
        f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed in IPv4)
        f.resize(64, 0);
        f
    }
}

fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Runs the sender until `stop`.
fn send_until(
    topo: &Topology,
    sender: &LabXdp,
    client_ifindex: u32,
    opts: &FwdOptions,
    stop: &AtomicBool,
) -> Result<()> {
    let frame = topo.frame(SPORT_BASE);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() > deadline {
            bail!("the sender ran past its 300 s bound");
        }
        sender.transmit(
            topo.client.name(),
            client_ifindex,
            frame.clone(),
            opts.batch,
        )?;
    }
    Ok(())
}

/// Measures packets per second delivered at the sink (and offered by the sender) while the
/// sender runs, over `opts.windows` windows.
fn measure(topo: &Topology, sink: &LabXdp, opts: &FwdOptions) -> Result<Vec<Window>> {
    if opts.pin {
        // Attaching a program re-creates the veth's NAPI (and its threads): pin every time.
        balancer_on_cpu(topo, BALANCER_CPU).context("moving the balancer's NAPI to its CPU")?;
    }
    let sender = LabXdp::sender(&topo.frame(SPORT_BASE), opts.flows, SPORT_BASE)?;
    let client_ifindex = ifindex(topo.client.name(), "eth0")?;
    // DSR keeps the VIP as destination, DNAT writes the element's: count both.
    let slots: Vec<usize> = topo
        .elements
        .iter()
        .chain([&topo.vip])
        .map(|e| usize::from(e.octets()[3]))
        .collect();
    let delivered = || -> Result<u64> {
        let c = sink.sink_counts()?;
        Ok(slots.iter().map(|&s| c[s]).sum())
    };
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| -> Result<Vec<Window>> {
        let sending = scope.spawn(|| {
            let r = (|| {
                if opts.pin {
                    // The sender's per-call threads (`LabXdp::transmit`) inherit this affinity.
                    set_affinity(0, SENDER_CPU)?;
                }
                send_until(topo, &sender, client_ifindex, opts, &stop)
            })();
            stop.store(true, Ordering::Relaxed);
            r
        });
        let result = (|| {
            std::thread::sleep(Duration::from_millis(300)); // warm-up
            let mut rounds = Vec::new();
            for _ in 0..opts.windows {
                let (t0, c0, s0) = (Instant::now(), delivered()?, sender.sent()?);
                std::thread::sleep(opts.window);
                let (t1, c1, s1) = (Instant::now(), delivered()?, sender.sent()?);
                if stop.load(Ordering::Relaxed) {
                    bail!("the sender stopped early");
                }
                let secs = (t1 - t0).as_secs_f64();
                rounds.push(Window {
                    delivered_mpps: c1.saturating_sub(c0) as f64 / secs / 1e6,
                    offered_mpps: s1.saturating_sub(s0) as f64 / secs / 1e6,
                });
            }
            Ok(rounds)
        })();
        stop.store(true, Ordering::Relaxed);
        let sent = sending
            .join()
            .map_err(|_| anyhow::anyhow!("the sender thread panicked"))?;
        let rounds = result?;
        sent.context("sending")?;
        Ok(rounds)
    })
}

const SENDER_CPU: usize = 0;
const BALANCER_CPU: usize = 1;

fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pins task `pid` (0: the calling thread) to `cpu`.
fn set_affinity(pid: libc::pid_t, cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays within it (cpu < 1024).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("sched_setaffinity({pid}, CPU {cpu})"));
    }
    Ok(())
}

/// Threaded NAPI on `<in>`, its kernel threads (`napi/<in>-<id>`) pinned to `cpu` with
/// real-time priority.
fn balancer_on_cpu(topo: &Topology, cpu: usize) -> Result<()> {
    // sysfs shows the devices of the namespace that mounted it: `ip netns exec` mounts the
    // balancer's.
    topo.lb.exec(
        "sh",
        &[
            "-c",
            &format!("echo 1 > /sys/class/net/{}/threaded", topo.lb_in),
        ],
    )?;
    // Thread names are cut at 15 characters: the prefix is shorter for our interface names.
    let prefix = format!("napi/{}-", topo.lb_in);
    let mut pinned = 0;
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.starts_with(&prefix) {
            set_affinity(pid, cpu)?;
            // Real-time priority: no other task of this shared machine runs on the balancer's
            // CPU in the middle of a window (measured: without it, one window in three or four
            // fell 20-45 %, for every variant; the kernel still keeps 5 % of the CPU for
            // others).
            let param = libc::sched_param { sched_priority: 50 };
            // SAFETY: a plain syscall with a valid parameter.
            if unsafe { libc::sched_setscheduler(pid, libc::SCHED_FIFO, &param) } != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("SCHED_FIFO for NAPI thread {pid}"));
            }
            pinned += 1;
        }
    }
    if pinned == 0 {
        bail!("no NAPI thread named {prefix}* after enabling threaded NAPI");
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// Detaches rsplb from the benchmark's interface on drop.
struct Attached<'a>(&'a Rsplb);

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.detach() {
            eprintln!("warning: rsplb detach {}: {e:#}", self.0.iface);
        }
    }
}

/// The floor: `lab_redirect` on `<in>`, a bare XDP_REDIRECT to `<out>` (no lookup, no rewrite).
fn measure_floor(topo: &Topology, sink: &LabXdp, opts: &FwdOptions) -> Result<Vec<Window>> {
    let out = ifindex(topo.lb.name(), &topo.lb_out)?;
    let _redirect = LabXdp::attach_redirect(topo.lb.name(), &topo.lb_in, out)?;
    measure(topo, sink, opts)
}

/// rsplb attached natively to `<in>`, DSR, XDP_REDIRECT to `<out>`.
fn measure_rsplb(topo: &Topology, sink: &LabXdp, opts: &FwdOptions) -> Result<Vec<Window>> {
    let rsplb = Rsplb::new(rsplb_bin()?, topo.lb.name(), &topo.lb_in);
    rsplb.attach(&[])?;
    let _attached = Attached(&rsplb);
    rsplb.on(&[
        "vip",
        "add",
        &format!("{}:{VIP_PORT}/udp", topo.vip),
        "--pool",
        "bench",
        "--mode",
        "dsr",
    ])?;
    for e in &topo.elements {
        rsplb.element_add("bench", &format!("{e}:{VIP_PORT}"), 1)?;
    }
    measure(topo, sink, opts)
}

/// Removes the benchmark's nftables table on drop.
struct NftTable<'a>(&'a Netns);

impl Drop for NftTable<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.exec("nft", &["delete", "table", "ip", "fwdbench"]) {
            eprintln!("warning: removing the nftables table: {e:#}");
        }
    }
}

/// The kernel stack: XDP_PASS on `<in>` (gives the veth NAPI, so it takes the sender's XDP_TX
/// frames), ip_forward on, nftables DNAT (`numgen inc mod N`, conntrack keeps each flow on its
/// element). GRO stays as the kernel sets it (on: it merges no forwarded UDP here, since
/// rx-udp-gro-forwarding is off; turning it off measured the same).
///
/// (An nftables flowtable, the stack's software fast path, would be a stronger baseline still;
/// this kernel is built without it: CONFIG_NF_FLOW_TABLE is not set.)
fn measure_nft(topo: &Topology, sink: &LabXdp, opts: &FwdOptions) -> Result<Vec<Window>> {
    let _pass = LabXdp::attach(topo.lb.name(), &topo.lb_in, "lab_pass")?;
    topo.lb.sysctl("net.ipv4.ip_forward", "1")?;
    let map: Vec<String> = topo
        .elements
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{i} : {e}"))
        .collect();
    let script = format!(
        "add table ip fwdbench\n\
         add chain ip fwdbench pre {{ type nat hook prerouting priority -100; }}\n\
         add rule ip fwdbench pre ip daddr {} udp dport {VIP_PORT} dnat to numgen inc mod {} map {{ {} }}\n",
        topo.vip,
        topo.elements.len(),
        map.join(", ")
    );
    let path = std::env::temp_dir().join(format!("{}-fwdbench.nft", topo.id.netns("")));
    std::fs::write(&path, script)?;
    let r = topo.lb.exec("nft", &["-f", &path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    r.context("installing the nftables DNAT rule")?;
    let _table = NftTable(&topo.lb);
    let rounds = measure(topo, sink, opts);
    topo.lb.sysctl("net.ipv4.ip_forward", "0")?;
    rounds
}

/// Runs the floor and both variants in turn, `opts.cycles` times, and returns their figures.
pub fn run(opts: &FwdOptions) -> Result<FwdFigures> {
    crate::netns::cleanup_leftovers();
    let topo = Topology::build(opts.elements).context("building the forwarding topology")?;
    let sink = LabXdp::attach(topo.sink.name(), "eth0", "lab_sink")?;
    let (mut xdp_rounds, mut nft_rounds, mut floor_rounds) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..opts.cycles {
        floor_rounds.extend(measure_floor(&topo, &sink, opts).context("measuring the floor")?);
        xdp_rounds.extend(measure_rsplb(&topo, &sink, opts).context("measuring rsplb")?);
        nft_rounds.extend(measure_nft(&topo, &sink, opts).context("measuring nftables")?);
    }
    let delivered = |w: &[Window]| median(&w.iter().map(|w| w.delivered_mpps).collect::<Vec<_>>());
    Ok(FwdFigures {
        xdp_mpps: delivered(&xdp_rounds),
        nft_mpps: delivered(&nft_rounds),
        floor_mpps: delivered(&floor_rounds),
        xdp_rounds,
        nft_rounds,
        floor_rounds,
        flows: opts.flows,
        elements: opts.elements,
        pinned: opts.pin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_checksum_matches_a_known_header() {
        // Example header from RFC 1071 discussions (checksum field zeroed): 0xb861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&h), 0xb861);
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[]), 0.0);
    }
}
