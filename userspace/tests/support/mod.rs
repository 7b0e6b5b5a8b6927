//! Test harness for the XDP program: loads `rsplb::XDP_OBJECT` with small maps, fills the maps
//! directly with the shared types (no control plane involved) and runs frames through
//! BPF_PROG_TEST_RUN.
#![allow(dead_code)]

pub mod packet;

use std::net::{IpAddr, SocketAddr};

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, DevMapHash, HashMap, MapData, PerCpuArray,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{TestRun, TestRunOptions, Xdp},
};
use rsplb_common::{
    AllowKey, Config, Counters, ELEM_ACTIVE, Element, FAMILY_V4, FAMILY_V6, FlowEntry, FlowKey,
    FlowSet, FlowValue, MODE_DSR, NatKey, NatValue, PROGRAM_NAME, VipDirect, VipInfo, VipKey, maps,
};

pub const MAGLEV_SIZE: u32 = 13;
pub const MAX_VIPS: u32 = 4;
pub const MAX_ELEMENTS: u32 = 16;
pub const NAT_PORT_MIN: u16 = 40000;
pub const NAT_PORT_MAX: u16 = 40099;
/// Idle timeout of the test VIPs' flows (what userspace writes by default for TCP).
pub const FLOW_TIMEOUT_S: u32 = 300;
/// Flows the test program's flow table holds.
pub const FLOW_CAPACITY: u32 = 1024;

/// Network-order address words as the maps store them.
pub fn addr_words(ip: IpAddr) -> [u32; 4] {
    match ip {
        IpAddr::V4(a) => [u32::from_ne_bytes(a.octets()), 0, 0, 0],
        IpAddr::V6(a) => {
            let o = a.octets();
            core::array::from_fn(|i| u32::from_ne_bytes(o[i * 4..i * 4 + 4].try_into().unwrap()))
        }
    }
}

pub fn family(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 }
}

pub fn vip_key(addr: &str, proto: u8) -> VipKey {
    let sa: SocketAddr = addr.parse().expect("test VIP");
    VipKey {
        addr: addr_words(sa.ip()),
        port: sa.port().to_be(),
        proto,
        family: family(sa.ip()),
    }
}

pub fn flow_key(src: &str, dst: &str, proto: u8) -> FlowKey {
    let s: SocketAddr = src.parse().unwrap();
    let d: SocketAddr = dst.parse().unwrap();
    FlowKey {
        src: addr_words(s.ip()),
        dst: addr_words(d.ip()),
        sport: s.port().to_be(),
        dport: d.port().to_be(),
        proto,
        family: family(s.ip()),
        state: 0,
        _pad: 0,
    }
}

/// An element on the ingress segment (XDP_TX), with a MAC derived from its slot.
pub fn element(slot: u32, addr: &str) -> Element {
    let ip: IpAddr = addr.parse().expect("test element address");
    Element {
        addr: addr_words(ip),
        port: 0,
        family: family(ip),
        flags: ELEM_ACTIVE,
        generation: 1,
        ifindex: 0,
        dst_mac: element_mac(slot),
        src_mac: packet::LB_MAC,
    }
}

pub fn element_mac(slot: u32) -> [u8; 6] {
    [0x02, 0xee, 0, 0, 0, slot as u8]
}

/// The `RSPLB_ALLOW` key of `prefix` (`ADDR/LEN`) for VIP slot `slot`, built here by hand
/// (not with the control plane's code) to pin the layout both sides must agree on.
pub fn allow_key(slot: u32, prefix: &str) -> Key<AllowKey> {
    let (a, len) = prefix.split_once('/').expect("ADDR/LEN");
    let len: u32 = len.parse().unwrap();
    Key::new(
        32 + len,
        AllowKey {
            vip_slot: slot.to_be(),
            addr: addr_words(a.parse().unwrap()),
        },
    )
}

/// Keys equal as the program compares them: `FlowKey::state` is the entry's, not the key's.
pub fn same_key(a: &FlowKey, b: &FlowKey) -> bool {
    FlowKey { state: 0, ..*a } == FlowKey { state: 0, ..*b }
}

pub struct Lb {
    pub ebpf: Ebpf,
}

impl Lb {
    /// Loads the program with small maps and the test configuration.
    pub fn new() -> Lb {
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::VIPS, MAX_VIPS)
            .map_max_entries(maps::ELEMENTS, MAX_ELEMENTS)
            .map_max_entries(
                maps::MAGLEV,
                2 * MAX_VIPS * rsplb_common::maglev_blocks(MAGLEV_SIZE),
            )
            .map_max_entries(maps::FLOWS, rsplb_common::flow_sets(FLOW_CAPACITY))
            .map_max_entries(maps::NAT_REVERSE, 1024)
            .map_max_entries(maps::ELEMENT_STATS, MAX_ELEMENTS)
            .map_max_entries(maps::VIP_STATS, MAX_VIPS)
            .load(rsplb::XDP_OBJECT)
            .expect("loading the XDP object (tests must run as root)");
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .expect("program in object")
            .try_into()
            .expect("an XDP program");
        prog.load().expect("verifier accepts the program");
        let mut lb = Lb { ebpf };
        lb.set_config(Config {
            abi_version: rsplb_common::CONFIG_ABI_VERSION,
            maglev_size: MAGLEV_SIZE,
            nat_tcp_timeout_s: 300,
            nat_udp_timeout_s: 30,
            nat_port_min: NAT_PORT_MIN,
            nat_port_max: NAT_PORT_MAX,
            flow_sets: rsplb_common::flow_sets(FLOW_CAPACITY),
            dsr_tcp_timeout_s: 300,
            dsr_udp_timeout_s: 30,
        });
        lb
    }

    fn map(&mut self, name: &str) -> &mut aya::maps::Map {
        self.ebpf.map_mut(name).expect("map in object")
    }

    /// Keeps this thread on the CPU it runs on, so that per-CPU state (the event log's rate
    /// limit) is one CPU's.
    pub fn stay_on_this_cpu() {
        // SAFETY: plain syscalls on a zeroed cpu set this function owns.
        unsafe {
            let cpu = libc::sched_getcpu().max(0) as usize;
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            assert_eq!(
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                0
            );
        }
    }

    /// Sets the event log's level and rate limit (`RSPLB_LOG`).
    pub fn set_log(&mut self, c: rsplb_common::LogControl) {
        let mut m: Array<&mut MapData, rsplb_common::LogControl> =
            Array::try_from(self.map(maps::LOG)).unwrap();
        m.set(0, c, 0).unwrap();
    }

    /// The events waiting in `RSPLB_EVENTS` (read and so removed).
    pub fn events(&mut self) -> Vec<rsplb_common::XdpEvent> {
        let mut ring = aya::maps::RingBuf::try_from(self.map(maps::EVENTS)).unwrap();
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            assert_eq!(item.len(), std::mem::size_of::<rsplb_common::XdpEvent>());
            // SAFETY: a whole record, and any bytes are a valid one.
            out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
        }
        out
    }

    pub fn set_config(&mut self, cfg: Config) {
        let mut m: Array<&mut MapData, Config> = Array::try_from(self.map(maps::CONFIG)).unwrap();
        m.set(0, cfg, 0).unwrap();
    }

    /// Inserts a VIP and, as the control plane must, sets its pre-filter bit and its bit's
    /// `RSPLB_VIP_DIRECT` entry.
    pub fn set_vip(&mut self, key: VipKey, info: VipInfo) {
        let mut m: HashMap<&mut MapData, VipKey, VipInfo> =
            HashMap::try_from(self.map(maps::VIPS)).unwrap();
        m.insert(key, info, 0).unwrap();
        let all: Vec<(VipKey, VipInfo)> = m.iter().map(|r| r.unwrap()).collect();
        let bit = key.filter_bit();
        self.set_direct(bit, VipDirect::for_bit(bit, all));
        self.set_filter_bit(&key);
    }

    pub fn direct(&mut self, bit: u32) -> VipDirect {
        let m: Array<&mut MapData, VipDirect> =
            Array::try_from(self.map(maps::VIP_DIRECT)).unwrap();
        m.get(&bit, 0).unwrap()
    }

    pub fn set_direct(&mut self, bit: u32, d: VipDirect) {
        let mut m: Array<&mut MapData, VipDirect> =
            Array::try_from(self.map(maps::VIP_DIRECT)).unwrap();
        m.set(bit, d, 0).unwrap();
    }

    /// Sets the pre-filter bit of `key` (`RSPLB_VIP_FILTER`).
    pub fn set_filter_bit(&mut self, key: &VipKey) {
        let bit = key.filter_bit();
        let word = self.filter_word(bit / 64) | 1u64 << (bit % 64);
        self.set_filter_word(bit / 64, word);
    }

    pub fn filter_word(&mut self, index: u32) -> u64 {
        let m: Array<&mut MapData, u64> = Array::try_from(self.map(maps::VIP_FILTER)).unwrap();
        m.get(&index, 0).unwrap()
    }

    pub fn set_filter_word(&mut self, index: u32, word: u64) {
        let mut m: Array<&mut MapData, u64> = Array::try_from(self.map(maps::VIP_FILTER)).unwrap();
        m.set(index, word, 0).unwrap();
    }

    /// Every pre-filter word set to `word` (0: no VIP passes the filter; !0: every packet is
    /// looked up in `RSPLB_VIPS`, as without a filter).
    pub fn fill_filter(&mut self, word: u64) {
        for i in 0..rsplb_common::VIP_FILTER_WORDS {
            self.set_filter_word(i, word);
        }
    }

    /// Allows `prefix` (`ADDR/LEN`) for VIP slot `slot` in `RSPLB_ALLOW` (the VIP needs
    /// `VIP_F_ALLOW_LIST` for the program to read it).
    pub fn allow(&mut self, slot: u32, prefix: &str) {
        let mut m: LpmTrie<&mut MapData, AllowKey, u8> =
            LpmTrie::try_from(self.map(maps::ALLOW)).unwrap();
        m.insert(&allow_key(slot, prefix), 1, 0).unwrap();
    }

    /// Removes `prefix` of VIP slot `slot` from `RSPLB_ALLOW`.
    pub fn disallow(&mut self, slot: u32, prefix: &str) {
        let mut m: LpmTrie<&mut MapData, AllowKey, u8> =
            LpmTrie::try_from(self.map(maps::ALLOW)).unwrap();
        m.remove(&allow_key(slot, prefix)).unwrap();
    }

    /// A DSR VIP in slot `slot` whose active table is `slot * 2`.
    pub fn dsr_vip(&mut self, addr: &str, proto: u8, slot: u32) -> VipKey {
        let key = vip_key(addr, proto);
        self.set_vip(
            key,
            VipInfo {
                slot,
                table: slot * 2,
                mode: MODE_DSR,
                timeout_s: FLOW_TIMEOUT_S,
                ..VipInfo::default()
            },
        );
        key
    }

    pub fn set_element(&mut self, slot: u32, e: Element) {
        let mut m: Array<&mut MapData, Element> =
            Array::try_from(self.map(maps::ELEMENTS)).unwrap();
        m.set(slot, e, 0).unwrap();
    }

    pub fn get_element(&mut self, slot: u32) -> Element {
        let m: Array<&mut MapData, Element> = Array::try_from(self.map(maps::ELEMENTS)).unwrap();
        m.get(&slot, 0).unwrap()
    }

    /// Fills Maglev table `table` with `slots` repeated (userspace would compute real Maglev).
    pub fn fill_table(&mut self, table: u32, slots: &[u32]) {
        let entries: Vec<u32> = (0..MAGLEV_SIZE as usize)
            .map(|i| slots[i % slots.len()])
            .collect();
        let blocks = rsplb_common::maglev_blocks(MAGLEV_SIZE);
        let mut m: Array<&mut MapData, rsplb_common::MaglevBlock> =
            Array::try_from(self.map(maps::MAGLEV)).unwrap();
        for (i, chunk) in entries.chunks(rsplb_common::MAGLEV_BLOCK).enumerate() {
            let block = rsplb_common::MaglevBlock::from_entries(chunk);
            m.set(table * blocks + i as u32, block, 0).unwrap();
        }
    }

    pub fn add_tx_port(&mut self, ifindex: u32) {
        let mut m: DevMapHash<&mut MapData> =
            DevMapHash::try_from(self.map(maps::TX_PORTS)).unwrap();
        m.insert(ifindex, ifindex, None, 0).unwrap();
    }

    /// Runs one frame; returns the XDP action and the output frame.
    pub fn run(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        let prog: &Xdp = self.ebpf.program(PROGRAM_NAME).unwrap().try_into().unwrap();
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    }

    pub fn global(&mut self, index: u32) -> u64 {
        let m: PerCpuArray<&mut MapData, u64> =
            PerCpuArray::try_from(self.map(maps::GLOBAL_STATS)).unwrap();
        m.get(&index, 0).unwrap().iter().sum()
    }

    /// Every non-zero global counter, by name (for precise "this and nothing else" checks).
    pub fn globals(&mut self) -> Vec<(&'static str, u64)> {
        (0..rsplb_common::stat::COUNT)
            .map(|i| (rsplb_common::stat::NAMES[i as usize], self.global(i)))
            .filter(|(_, v)| *v != 0)
            .collect()
    }

    fn stats(&mut self, map: &str, slot: u32) -> Counters {
        let m: PerCpuArray<&mut MapData, Counters> = PerCpuArray::try_from(self.map(map)).unwrap();
        m.get(&slot, 0)
            .unwrap()
            .iter()
            .fold(Counters::default(), |a, c| Counters {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
                new_flows: a.new_flows + c.new_flows,
                refused: a.refused + c.refused,
            })
    }

    pub fn element_stats(&mut self, slot: u32) -> Counters {
        self.stats(maps::ELEMENT_STATS, slot)
    }

    pub fn vip_stats(&mut self, slot: u32) -> Counters {
        self.stats(maps::VIP_STATS, slot)
    }

    /// The flow table's entry for `key`. Panics if the key is in the table twice: a flow has
    /// one way, also after being re-pinned.
    pub fn flow(&mut self, key: &FlowKey) -> Option<FlowValue> {
        let found = self
            .flows()
            .into_iter()
            .filter(|e| same_key(&e.key, key))
            .collect::<Vec<_>>();
        assert!(found.len() <= 1, "flow in {} ways: {found:?}", found.len());
        found.first().map(|e| e.value)
    }

    /// Every valid entry of the flow table.
    pub fn flows(&mut self) -> Vec<FlowEntry> {
        let m: Array<&mut MapData, FlowSet> = Array::try_from(self.map(maps::FLOWS)).unwrap();
        m.iter()
            .map(|s| s.unwrap())
            .flat_map(|s| s.ways)
            .filter(|e| e.value.check != 0)
            .collect()
    }

    /// Overwrites the flow table's entry for `key` with `f` applied to it.
    pub fn edit_flow(&mut self, key: &FlowKey, f: impl Fn(&mut FlowValue)) {
        let mut m: Array<&mut MapData, FlowSet> = Array::try_from(self.map(maps::FLOWS)).unwrap();
        for i in 0..m.len() {
            let mut set = m.get(&i, 0).unwrap();
            if let Some(way) = set
                .ways
                .iter_mut()
                .find(|w| same_key(&w.key, key) && w.value.check != 0)
            {
                f(&mut way.value);
                m.set(i, set, 0).unwrap();
                return;
            }
        }
        panic!("flow {key:?} not in the table");
    }

    /// Every NAT translation: of established flows (`RSPLB_NAT_REVERSE`), then of flows that
    /// have sent only their SYN (`RSPLB_NAT_EMBRYONIC`).
    pub fn nat_entries(&mut self) -> Vec<(NatKey, NatValue)> {
        let mut all = self.nat_table(maps::NAT_REVERSE);
        all.extend(self.nat_table(maps::NAT_EMBRYONIC));
        all
    }

    pub fn nat_table(&mut self, name: &str) -> Vec<(NatKey, NatValue)> {
        let m: HashMap<&mut MapData, NatKey, NatValue> = HashMap::try_from(self.map(name)).unwrap();
        m.iter().map(|r| r.unwrap()).collect()
    }

    pub fn set_nat_entry(&mut self, key: NatKey, value: NatValue) {
        let mut m: HashMap<&mut MapData, NatKey, NatValue> =
            HashMap::try_from(self.map(maps::NAT_REVERSE)).unwrap();
        m.insert(key, value, 0).unwrap();
    }
}
