//! Types shared by the rsplb XDP program (`ebpf/`) and userspace (`userspace/`).
//!
//! Every map key and value is `#[repr(C)]`, has explicit padding fields (so both sides agree
//! byte for byte and the verifier never sees uninitialised stack), and is named the same on both
//! sides. Addresses and ports are kept in network byte order exactly as they appear in packets:
//! an IPv4 address is word 0 of a `[u32; 4]` with words 1..3 zero, an IPv6 address fills all four.
//! The kernel program never decides policy: userspace computes Maglev tables, chooses element
//! slots and resolves next hops; the kernel hashes, looks up, rewrites and counts.
#![no_std]

/// Map names: identical in the XDP program (`#[map(name = ...)]`) and in the loader.
pub mod maps {
    pub const VIPS: &str = "RSPLB_VIPS";
    pub const ELEMENTS: &str = "RSPLB_ELEMENTS";
    pub const MAGLEV: &str = "RSPLB_MAGLEV";
    pub const FLOWS: &str = "RSPLB_FLOWS";
    pub const NAT_REVERSE: &str = "RSPLB_NAT_REVERSE";
    pub const TX_PORTS: &str = "RSPLB_TX_PORTS";
    pub const ELEMENT_STATS: &str = "RSPLB_ELEMENT_STATS";
    pub const VIP_STATS: &str = "RSPLB_VIP_STATS";
    pub const GLOBAL_STATS: &str = "RSPLB_GLOBAL_STATS";
    pub const CONFIG: &str = "RSPLB_CONFIG";
    /// Array<u64> of `VIP_FILTER_WORDS` words: the VIP pre-filter (see `VipKey::filter_bit`).
    pub const VIP_FILTER: &str = "RSPLB_VIP_FILTER";
    /// Array<VipDirect> of `VIP_FILTER_WORDS * 64` entries: VIPs by filter bit (see
    /// `VipDirect`).
    pub const VIP_DIRECT: &str = "RSPLB_VIP_DIRECT";
    /// LruHashMap<NatKey, NatValue>: NAT translations of flows that have sent only their SYN.
    pub const NAT_EMBRYONIC: &str = "RSPLB_NAT_EMBRYONIC";
    /// LpmTrie<AllowKey, u8>: the source prefixes of VIPs with an allow list (see `AllowKey`).
    pub const ALLOW: &str = "RSPLB_ALLOW";
    /// Array<LogControl> of one entry: the level and rate limit of the program's event log,
    /// written by the control plane (see `LogControl`).
    pub const LOG: &str = "RSPLB_LOG";
    /// PerCpuArray<LogLimit> of `event::COUNT` entries: the program's rate limiter state, one
    /// per CPU and event kind.
    pub const LOG_LIMITS: &str = "RSPLB_LOG_LIMITS";
    /// RingBuf of `XdpEvent` records: the events the program logs, read by the daemon.
    pub const EVENTS: &str = "RSPLB_EVENTS";
    /// Every map, in the order they are pinned under `/sys/fs/bpf/rsplb/<iface>/`.
    pub const ALL: [&str; 17] = [
        VIPS,
        ELEMENTS,
        MAGLEV,
        FLOWS,
        NAT_REVERSE,
        TX_PORTS,
        ELEMENT_STATS,
        VIP_STATS,
        GLOBAL_STATS,
        CONFIG,
        VIP_FILTER,
        VIP_DIRECT,
        ALLOW,
        NAT_EMBRYONIC,
        LOG,
        LOG_LIMITS,
        EVENTS,
    ];
}

/// Name of the XDP program inside the object file.
pub const PROGRAM_NAME: &str = "rsplb_xdp";

/// Default number of VIP slots. Each VIP owns two Maglev tables (active and standby) of
/// `maglev_blocks(maglev_size)` 64-byte blocks: 64 VIPs at 65537 = 16.8 MB.
pub const DEFAULT_MAX_VIPS: u32 = 64;
/// Default number of element slots (all pools together).
pub const DEFAULT_MAX_ELEMENTS: u32 = 4096;
/// Default Maglev table size: a prime, so every element permutation visits every slot.
pub const DEFAULT_MAGLEV_SIZE: u32 = 65537;
/// Default capacity of the flow table: established flows that keep their element (64 bytes
/// each, 64 MiB in all).
pub const DEFAULT_FLOW_CAPACITY: u32 = 1 << 20;
/// Default capacity of the NAT reverse table (LRU).
pub const DEFAULT_NAT_CAPACITY: u32 = 1 << 18;
/// Size of the devmap used for XDP_REDIRECT to other interfaces.
pub const MAX_TX_PORTS: u32 = 64;

/// Maglev table entry meaning "no element": the pool is empty.
pub const NO_ELEMENT: u32 = u32::MAX;

/// Maglev entries per element of `RSPLB_MAGLEV`.
pub const MAGLEV_BLOCK: usize = 32;
/// An empty entry of a [`MaglevBlock`] (`NO_ELEMENT`, in 16 bits).
pub const MAGLEV_EMPTY: u16 = u16::MAX;

/// `MAGLEV_BLOCK` consecutive entries of a Maglev table (element slots in 16 bits): one
/// element of `RSPLB_MAGLEV`, one cache line. A table of `size` entries takes
/// [`maglev_blocks`]`(size)` blocks, the last one padded with `MAGLEV_EMPTY`; table `t` starts
/// at block `t * maglev_blocks(size)`. (A BPF array gives every element at least 8 bytes, so a
/// u32 per element would take 8 bytes per entry: blocks take 2.)
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevBlock {
    pub slots: [u16; MAGLEV_BLOCK],
}

impl Default for MaglevBlock {
    fn default() -> Self {
        Self {
            slots: [MAGLEV_EMPTY; MAGLEV_BLOCK],
        }
    }
}

impl MaglevBlock {
    /// The block of up to `MAGLEV_BLOCK` table entries (element slots, `NO_ELEMENT` for none;
    /// slots that do not fit 16 bits are refused by the loader and read as empty here).
    pub fn from_entries(entries: &[u32]) -> Self {
        let mut b = Self::default();
        for (s, &e) in b.slots.iter_mut().zip(entries) {
            *s = if e < MAGLEV_EMPTY as u32 {
                e as u16
            } else {
                MAGLEV_EMPTY
            };
        }
        b
    }
}

/// Blocks of a Maglev table of `size` entries.
pub const fn maglev_blocks(size: u32) -> u32 {
    size.div_ceil(MAGLEV_BLOCK as u32)
}

/// Element slots fit the 16 bits of a Maglev entry, `MAGLEV_EMPTY` excluded.
pub const MAX_ELEMENT_SLOTS: u32 = MAGLEV_EMPTY as u32;

/// Address families as stored in keys (same values as `AF_INET`/`AF_INET6`).
pub const FAMILY_V4: u8 = 2;
pub const FAMILY_V6: u8 = 10;

/// IP protocol numbers handled by the dataplane.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_SCTP: u8 = 132;

/// Forwarding modes of a VIP.
pub const MODE_DSR: u8 = 1;
pub const MODE_NAT: u8 = 2;

/// Element flags.
/// The element is in service: flows pinned to it keep going to it.
pub const ELEM_ACTIVE: u8 = 1;
/// The element takes no new flows (it is not in any Maglev table) but keeps its existing ones.
pub const ELEM_DRAINING: u8 = 2;

/// Key of the VIP map: destination address, port and protocol of a virtual service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// Network order words; IPv4 in word 0.
    pub addr: [u32; 4],
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

/// log2 of the number of bits of the VIP pre-filter `RSPLB_VIP_FILTER` (65536 bits, 8 KiB).
pub const VIP_FILTER_BITS_LOG2: u32 = 16;
/// Size of the VIP pre-filter in u64 words. Fixed: the loader must not resize that map (the
/// program treats a word it cannot read as "maybe a VIP", so a wrong size costs speed only).
pub const VIP_FILTER_WORDS: u32 = 1 << (VIP_FILTER_BITS_LOG2 - 6);

impl VipKey {
    /// The VIP pre-filter bit of this key, in `0..VIP_FILTER_WORDS * 64`: word `bit / 64`, bit
    /// `bit % 64` of `RSPLB_VIP_FILTER`.
    ///
    /// The pre-filter lets the program skip the VIP hash lookup for most packets that are not
    /// for a VIP (the commonest case on a balancer's interface). Contract: userspace sets the bit
    /// of every key it inserts into `RSPLB_VIPS` (after the insert), and clears a bit only when
    /// no remaining key has it (after the removal). A clear bit means "not a VIP"; a set bit only
    /// means "look it up". Both sides compute the bit with this function on the key's in-memory
    /// words (network order values), so they agree on the host.
    #[inline(always)]
    pub fn filter_bit(&self) -> u32 {
        let a = self.addr[0]
            ^ self.addr[1].rotate_left(8)
            ^ self.addr[2].rotate_left(16)
            ^ self.addr[3].rotate_left(24);
        let p = self.port as u32 | (self.proto as u32) << 16 | (self.family as u32) << 24;
        // Two multiplicative rounds; the top 16 bits depend on every input bit.
        (a.wrapping_mul(0x9e37_79b1) ^ p).wrapping_mul(0x85eb_ca6b) >> (32 - VIP_FILTER_BITS_LOG2)
    }
}

/// Value of the VIP map. Replaced as a whole (one map update) to switch Maglev tables atomically.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipInfo {
    /// VIP slot: index into `RSPLB_VIP_STATS`.
    pub slot: u32,
    /// Index of the active Maglev table: entries `table * maglev_size .. (table + 1) * maglev_size`
    /// of `RSPLB_MAGLEV`. Userspace fills the standby table, then flips this field.
    pub table: u32,
    /// `MODE_DSR` or `MODE_NAT`.
    pub mode: u8,
    /// `VIP_F_*` bits.
    pub flags: u8,
    pub _pad: [u8; 2],
    /// Idle timeout of this VIP's flows, seconds, resolved by userspace (the VIP's own
    /// `--nat-timeout`, else the attach default for its mode and protocol): a flow entry (DSR and
    /// NAT) or NAT translation idle this long is gone, and the flow's next packet is placed as
    /// new. The program has no default of its own: userspace always writes at least 1.
    pub timeout_s: u32,
    /// NAT: source address the balancer uses toward the elements (same family as the elements).
    pub snat_addr: [u32; 4],
}

/// `VipInfo::flags`: the VIP has a source allow list (`RSPLB_ALLOW`): a packet whose source
/// is in none of the VIP's prefixes is dropped (`stat::DROP_SOURCE_NOT_ALLOWED`). A VIP without
/// the bit pays nothing more than testing it. Userspace writes a list's prefixes before it sets
/// the bit and clears the bit before it deletes them.
pub const VIP_F_ALLOW_LIST: u8 = 1;

/// `VipInfo::flags`: client affinity. New flows are placed by [`client_hash`] (the client's
/// address, without the ports) instead of [`flow_hash`] (the 5-tuple), as IPVS's source
/// hashing and Katran's `F_HASH_NO_SRC_PORT`: every connection of one client goes to the same
/// element while the VIP's table is unchanged, and Maglev still spreads clients. Only the
/// placement changes: the flow table keeps the 5-tuple as its key (each connection is its own
/// flow, pinned as before), and NAT picks SNAT ports from the 5-tuple's `flow_hash`, so two
/// connections of one client never start from the same port.
pub const VIP_F_CLIENT_HASH: u8 = 2;

/// Source prefixes in `RSPLB_ALLOW` (all VIPs together). Each takes about 60 bytes of kernel
/// memory, allocated only when used (an LPM trie is never preallocated).
pub const ALLOW_CAPACITY: u32 = 16384;

/// Data of an `RSPLB_ALLOW` key (an LPM trie key is a prefix length in bits followed by this):
/// the VIP slot in network byte order, so that the first 32 bits of every prefix select the VIP,
/// then the source address as in packets (IPv4 in word 0). A prefix `a/n` of VIP slot `s` is
/// stored with length `32 + n`; a packet is looked up with length `32 + 128` (IPv6) or `32 + 32`
/// (IPv4): a VIP sees sources of its own family only, so the families never meet in one slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AllowKey {
    /// VIP slot, network byte order (`u32::to_be`).
    pub vip_slot: u32,
    /// Network order words; IPv4 in word 0.
    pub addr: [u32; 4],
}

impl AllowKey {
    /// Bits of the key before the address: the VIP slot.
    pub const SLOT_BITS: u32 = 32;
}

/// An entry of `RSPLB_VIP_DIRECT`, indexed by `VipKey::filter_bit`: the VIP owning that bit
/// alone, found with one array read and a key comparison instead of a hash lookup in
/// `RSPLB_VIPS` (measured: 35 ns less per packet of a VIP). `RSPLB_VIPS` stays the authority:
/// - `VIP_DIRECT_NONE`: no VIP has the bit;
/// - `VIP_DIRECT_ONE`: `key` is the only VIP with the bit, `info` its value;
/// - `VIP_DIRECT_SHARED`: several VIPs have the bit, or the entry is being rewritten: look
///   in `RSPLB_VIPS`.
///
/// An array update is a plain copy that a packet may read half-done, so userspace changes an
/// entry's `key` or `info` only while it is `VIP_DIRECT_SHARED` (the one exception: flipping
/// `info.table` between 0 and 1, the Maglev table switch, which a byte-wise copy cannot tear).
/// See [`VipDirect::for_bit`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipDirect {
    pub key: VipKey,
    pub state: u32,
    pub info: VipInfo,
}

pub const VIP_DIRECT_NONE: u32 = 0;
pub const VIP_DIRECT_ONE: u32 = 1;
pub const VIP_DIRECT_SHARED: u32 = 2;

impl VipDirect {
    /// Entries in `RSPLB_VIP_DIRECT`: one per filter bit.
    pub const ENTRIES: u32 = VIP_FILTER_WORDS * 64;

    /// The entry of filter bit `bit` for the VIPs `vips` (all of them; those of other bits are
    /// skipped).
    pub fn for_bit(bit: u32, vips: impl IntoIterator<Item = (VipKey, VipInfo)>) -> VipDirect {
        let mut found = vips.into_iter().filter(|(k, _)| k.filter_bit() == bit);
        match (found.next(), found.next()) {
            (None, _) => VipDirect::default(),
            (Some((key, info)), None) => VipDirect {
                key,
                state: VIP_DIRECT_ONE,
                info,
            },
            (Some(_), Some(_)) => VipDirect {
                state: VIP_DIRECT_SHARED,
                ..VipDirect::default()
            },
        }
    }

    /// The same entry marked shared (readers go to `RSPLB_VIPS`).
    pub fn shared(self) -> VipDirect {
        VipDirect {
            state: VIP_DIRECT_SHARED,
            ..self
        }
    }

    /// The writes that take an entry from `self` to `to` without a reader ever taking a
    /// half-written `key` or `info` for a VIP: at most three whole-entry writes.
    pub fn transition(self, to: VipDirect) -> impl Iterator<Item = VipDirect> {
        let table_flip_only = self.state == VIP_DIRECT_ONE
            && to.state == VIP_DIRECT_ONE
            && self.key == to.key
            && self.info.table <= 1
            && to.info.table <= 1
            && VipInfo {
                table: to.info.table,
                ..self.info
            } == to.info;
        let steps: [Option<VipDirect>; 3] = if self == to {
            [None, None, None]
        } else if table_flip_only || self.state != VIP_DIRECT_ONE && to.state != VIP_DIRECT_ONE {
            // One write: only `info.table` changes, or no reader uses `key`/`info` before or
            // after.
            [Some(to), None, None]
        } else {
            [
                (self.state == VIP_DIRECT_ONE).then_some(self.shared()),
                (to.state == VIP_DIRECT_ONE).then_some(to.shared()),
                Some(to),
            ]
        };
        steps.into_iter().flatten()
    }
}

/// One pool element as the dataplane sees it (value of `RSPLB_ELEMENTS`, indexed by element slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Element {
    /// Network order words; IPv4 in word 0.
    pub addr: [u32; 4],
    /// Network byte order; NAT rewrites the destination port to it (0 keeps the VIP's port).
    pub port: u16,
    pub family: u8,
    /// `ELEM_ACTIVE`, `ELEM_DRAINING`; 0 = slot free (flows pinned here are re-selected).
    pub flags: u8,
    /// Bumped by userspace whenever the slot is given to another element, so a flow pinned to
    /// the slot's previous owner is re-selected instead of following the slot.
    pub generation: u32,
    /// Interface the frame leaves by (XDP_TX when it is the ingress interface, else XDP_REDIRECT
    /// through `RSPLB_TX_PORTS`).
    pub ifindex: u32,
    /// Next hop MAC (the element itself on one L2 segment). All zero = unresolved.
    pub dst_mac: [u8; 6],
    /// MAC of `ifindex`, used as the source of the rewritten frame.
    pub src_mac: [u8; 6],
}

/// Key of the flow table: the 5-tuple as received from the client.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// Network byte order.
    pub sport: u16,
    /// Network byte order.
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    /// Not part of the key (the program's key comparison ignores it; keys built for lookups
    /// leave it 0): the state of the flow table entry holding this key, in the key's spare byte
    /// because the 64 bytes of an entry are all used. `FLOW_SYN_ONLY` or 0 (established).
    pub state: u8,
    pub _pad: u8,
}

/// `FlowKey::state` of an entry placed by a TCP SYN that has not seen another packet of its
/// flow yet (an embryonic connection, possibly a spoofed SYN). Another SYN may take its way.
/// 0 (every other entry, including those of a program built before this state existed) is an
/// established flow: its client sent a packet after its SYN (for TCP, the ACK that completes
/// the handshake, which a spoofing sender cannot produce), or it was placed by a packet that
/// is not a SYN. New SYNs never take an established flow's way.
pub const FLOW_SYN_ONLY: u8 = 1;

/// Where a flow is pinned: the value half of a [`FlowEntry`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowValue {
    /// Element slot the flow is pinned to.
    pub element: u32,
    /// `Element::generation` when the flow was pinned.
    pub generation: u32,
    /// VIP slot of the flow (VIP slots fit 16 bits: the loader refuses more VIPs).
    pub vip_slot: u16,
    /// NAT: the balancer's source port for this flow (network byte order), 0 in DSR mode.
    pub nat_port: u16,
    /// When the flow last had a packet: `bpf_ktime_get_ns() >> FLOW_TIME_SHIFT` (about 1 ms
    /// units, wrapping after 49 days), written at most once per unit so the hot path stays
    /// read-only. Both the replacement within the set (least recently seen) and the idle
    /// timeout (`VipInfo::timeout_s`) read it.
    pub seen: u32,
    /// NAT: when the reverse translation was last refreshed (same units as `seen`, written at
    /// most once a second). 0 in DSR mode.
    pub nat_seen: u32,
    /// 0: the way is empty. Otherwise [`flow_check`] of the entry: a reader accepts an entry
    /// only if this matches its key and value, so an entry half-written by another CPU (the
    /// table is shared and written without locks) reads as a miss, never as a wrong element.
    pub check: u32,
}

/// Ways per set of the flow table.
pub const FLOW_WAYS: usize = 4;

/// Units of `FlowValue::seen` and `FlowValue::nat_seen`: 2^20 ns (about 1 ms).
pub const FLOW_TIME_SHIFT: u32 = 20;

/// Longest idle timeout userspace may set (`VipInfo::timeout_s`): flow times wrap after 2^32
/// units (49 days), so ages up to half of that are told apart from the future.
pub const MAX_FLOW_TIMEOUT_S: u32 = 20 * 24 * 3600;

/// One way of the flow table: a client 5-tuple and where it is pinned (64 bytes: one cache
/// line when the set is aligned).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEntry {
    pub key: FlowKey,
    pub value: FlowValue,
}

/// One set of the flow table (`RSPLB_FLOWS`, an array of sets): a flow lives in the set its
/// hash selects ([`flow_set_index`]), in any of the [`FLOW_WAYS`] ways. A new flow takes an
/// empty way, else the least recently refreshed one (LRU within the set, as in a CPU cache).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSet {
    pub ways: [FlowEntry; FLOW_WAYS],
}

/// Number of sets for a flow table of `capacity` flows (at least one).
pub const fn flow_sets(capacity: u32) -> u32 {
    let sets = capacity.div_ceil(FLOW_WAYS as u32);
    if sets == 0 { 1 } else { sets }
}

/// The set of a flow: its table hash ([`table_hash`]) mapped onto
/// `0..sets` by multiply-shift (of the hash rotated by 16 bits, which mixes its two halves into
/// the bits that choose the set).
#[inline(always)]
pub const fn flow_set_index(hash: u32, sets: u32) -> u32 {
    ((hash.rotate_left(16) as u64 * sets as u64) >> 32) as u32
}

/// Validation word of a flow entry (never 0): the flow's hash mixed with the value fields
/// that decide where it goes.
#[inline(always)]
pub const fn flow_check(hash: u32, v: &FlowValue) -> u32 {
    let mut h = hash ^ v.element.wrapping_mul(0x9e37_79b9);
    h ^= v.generation.wrapping_mul(0x85eb_ca6b);
    h ^= (v.vip_slot as u32 | (v.nat_port as u32) << 16).wrapping_mul(0xc2b2_ae35);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^= h >> 12;
    h | 1
}

/// MurmurHash3's 32-bit finalizer.
#[inline(always)]
pub const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
const fn murmur_mix(h: u32, k: u32) -> u32 {
    let k = k
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// The flow's Maglev hash: MurmurHash3 (x86_32) rounds over the 5-tuple. Only used to index
/// Maglev tables and SNAT ports, so a fixed seed is enough; every balancer must compute the same
/// value for Maglev to be consistent (and `rsplb flow get` computes it too). Protocol and family
/// go into the seed and an IPv4 flow hashes only its three meaningful words (addresses and
/// ports): the rounds form one serial dependency chain, and the six zero words of an IPv4 key
/// were a third of a new flow's cost.
#[inline(always)]
pub fn flow_hash(key: &FlowKey) -> u32 {
    let (h, len) = address_rounds(key);
    finish(h, len, ports(key))
}

/// The Maglev hash of a flow of a VIP with client affinity (`VIP_F_CLIENT_HASH`): [`flow_hash`]
/// with both ports 0, so it depends on the client's address, the VIP's address, the protocol
/// and the family only. The source port is what tells a client's connections apart; the
/// destination port is the VIP's own, the same for all its flows, so leaving it out changes
/// nothing within a VIP, and it lets the VIPs of one address on one pool (`:80` and `:443`,
/// both with client affinity) send a client to the same element.
#[inline(always)]
pub fn client_hash(key: &FlowKey) -> u32 {
    let (h, len) = address_rounds(key);
    finish(h, len, 0)
}

/// The hash that places a new flow of a VIP with flags `vip_flags` in its Maglev table:
/// [`client_hash`] with `VIP_F_CLIENT_HASH`, else [`flow_hash`]. Without a branch (the ports
/// are masked), so the program holds one copy of the rounds.
#[inline(always)]
pub fn placement_hash(key: &FlowKey, vip_flags: u8) -> u32 {
    let (h, len) = address_rounds(key);
    let hashed_ports = ((vip_flags & VIP_F_CLIENT_HASH == 0) as u32).wrapping_neg();
    finish(h, len, ports(key) & hashed_ports)
}

/// [`flow_hash`] and [`placement_hash`] together, the addresses hashed once: NAT needs both,
/// the placement, and the 5-tuple's hash for the flow's SNAT port.
#[inline(always)]
pub fn flow_and_placement_hashes(key: &FlowKey, vip_flags: u8) -> (u32, u32) {
    let (h, len) = address_rounds(key);
    let flow = finish(h, len, ports(key));
    if vip_flags & VIP_F_CLIENT_HASH != 0 {
        (flow, finish(h, len, 0))
    } else {
        (flow, flow)
    }
}

/// A flow's ports as its hashes take them: the source port in the high half.
#[inline(always)]
const fn ports(key: &FlowKey) -> u32 {
    (key.sport as u32) << 16 | key.dport as u32
}

/// MurmurHash3 rounds over a flow's seed (protocol and family) and addresses: the state and the
/// length in bytes that [`finish`] completes with the ports.
#[inline(always)]
fn address_rounds(key: &FlowKey) -> (u32, u32) {
    let mut h = 0x5253_504c ^ (key.proto as u32) << 8 ^ key.family as u32; // "RSPL"
    h = murmur_mix(h, key.src[0]);
    h = murmur_mix(h, key.dst[0]);
    let mut len = 12;
    if key.family != FAMILY_V4 {
        let mut i = 1;
        while i < 4 {
            h = murmur_mix(h, key.src[i]);
            h = murmur_mix(h, key.dst[i]);
            i += 1;
        }
        len = 36;
    }
    (h, len)
}

/// The last round (the ports) and MurmurHash3's finalizer.
#[inline(always)]
const fn finish(h: u32, len: u32, ports: u32) -> u32 {
    fmix32(murmur_mix(h, ports) ^ len)
}

/// The flow's hash in the flow table (its set, [`flow_set_index`], and its entries' check): a
/// cheaper hash than [`flow_hash`] (two 64-bit multiplies instead of a chain of fourteen 32-bit
/// ones), computed for every packet of a VIP, while `flow_hash`, which every balancer must
/// compute alike for Maglev, is needed only when a flow is placed.
#[inline(always)]
pub fn table_hash(key: &FlowKey) -> u32 {
    let ports = (key.sport as u64) << 16 | key.dport as u64;
    let mut x = (key.src[0] as u64) << 32 | key.dst[0] as u64;
    x ^= (ports << 8 | key.proto as u64).rotate_left(40);
    if key.family != FAMILY_V4 {
        x ^= ((key.src[1] as u64) << 32 | key.dst[1] as u64).rotate_left(17);
        x ^= ((key.src[2] as u64) << 32 | key.dst[2] as u64).rotate_left(29);
        x ^= ((key.src[3] as u64) << 32 | key.dst[3] as u64).rotate_left(47);
    }
    x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (x >> 32) as u32
}

/// The entry of a Maglev table of `size` entries that a flow of hash `hash` ([`flow_hash`])
/// reads: `hash` mapped onto `0..size` by multiply and shift (Lemire's "fastrange"), as uniform
/// as `hash % size` for sizes far below 2^32, without a division (measured 15-35 ns less per
/// new flow).
#[inline(always)]
pub const fn maglev_entry(hash: u32, size: u32) -> u32 {
    ((hash as u64 * size as u64) >> 32) as u32
}

/// Key of the NAT reverse table: a reply as it arrives from an element.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatKey {
    /// The element's address (reply source).
    pub element_addr: [u32; 4],
    /// The balancer's SNAT address (reply destination).
    pub snat_addr: [u32; 4],
    /// Network byte order.
    pub element_port: u16,
    /// Network byte order.
    pub nat_port: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Value of the NAT reverse table: how to restore a reply for the client.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatValue {
    pub client_addr: [u32; 4],
    pub vip_addr: [u32; 4],
    /// Network byte order.
    pub client_port: u16,
    /// Network byte order.
    pub vip_port: u16,
    pub vip_slot: u32,
    pub element: u32,
    pub _pad: u32,
    pub last_seen_ns: u64,
    /// Ethernet destination of translated replies: the source MAC of the client's packet that
    /// created the translation (the client itself or its router).
    pub reply_dst_mac: [u8; 6],
    /// Ethernet source of translated replies: the destination MAC of that packet (the balancer).
    pub reply_src_mac: [u8; 6],
    /// Interface the client's packet came in by: replies leave through it (XDP_TX when the reply
    /// arrives there too, else XDP_REDIRECT through `RSPLB_TX_PORTS`).
    pub reply_ifindex: u32,
    /// Translation timeout in seconds, fixed when the translation was created (the VIP's
    /// `VipInfo::timeout_s`): `last_seen_ns` older than this means the entry is free.
    pub timeout_s: u32,
    pub _pad2: u32,
}

/// Per-element and per-VIP counters (values of the per-CPU stats arrays; userspace sums CPUs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// Per VIP: packets dropped because their source is not in the VIP's allow list (also in
    /// the global `drop_source_not_allowed`). Always 0 for elements.
    pub refused: u64,
}

/// The layout of the pinned maps (keys, values, which maps exist) that this build of the
/// program and userspace share, written into `Config::abi_version`. Bump it with every change
/// to a shared map's layout: a binary that finds pins of another layout then says so instead of
/// misreading them.
pub const CONFIG_ABI_VERSION: u32 = 3;

/// Program-wide configuration (`RSPLB_CONFIG`, one entry), written by the loader before attach.
/// The timeouts are the attach defaults, kept here for the control plane (a state rebuilt from
/// the maps): the program reads each VIP's resolved `VipInfo::timeout_s`, never these.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// [`CONFIG_ABI_VERSION`] of the build that created the maps; first in every layout, so
    /// any build can read it.
    pub abi_version: u32,
    /// Entries per Maglev table (a prime).
    pub maglev_size: u32,
    /// Default NAT idle timeout for TCP, seconds.
    pub nat_tcp_timeout_s: u32,
    /// Default NAT idle timeout for UDP, seconds.
    pub nat_udp_timeout_s: u32,
    /// First and last SNAT source port (host order), inclusive.
    pub nat_port_min: u16,
    pub nat_port_max: u16,
    /// Sets in `RSPLB_FLOWS` ([`flow_sets`] of the flow capacity). 0: no flow table, every
    /// packet is placed by Maglev alone.
    pub flow_sets: u32,
    /// Default DSR idle timeout for TCP and SCTP, seconds.
    pub dsr_tcp_timeout_s: u32,
    /// Default DSR idle timeout for UDP, seconds.
    pub dsr_udp_timeout_s: u32,
}

/// Levels of the program's event log (`LogControl::level`): an event of level `l` is logged
/// when `l <= level` (the order of the `log` crate's levels), 0 is off.
pub mod log_level {
    pub const OFF: u32 = 0;
    pub const ERROR: u32 = 1;
    pub const WARN: u32 = 2;
    pub const INFO: u32 = 3;
    pub const DEBUG: u32 = 4;
    pub const TRACE: u32 = 5;
    /// Names for the command line and configuration, indexed like the levels.
    pub const NAMES: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
}

/// The program's event log settings (`RSPLB_LOG`, one entry), written by the control plane.
/// All zero (as the map is created) is off: the program then reads this entry on its rare
/// paths only, and logs nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogControl {
    /// `log_level::*`: events of a higher level are not logged.
    pub level: u32,
    /// Events of one kind a CPU may log per `interval_ns`; the rest are counted
    /// (`stat::LOG_SUPPRESSED`, and in the next event of the kind logged by that CPU).
    pub burst: u32,
    pub interval_ns: u64,
}

/// One event the program logs (a record of `RSPLB_EVENTS`): what happened (`event::*`), to a
/// packet for which VIP, and the detail of its kind. The daemon words it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpEvent {
    /// `event::*`.
    pub kind: u32,
    /// The element slot involved, or the kind's own value (a Maglev table index, a mode).
    pub detail: u32,
    /// Events of this kind this CPU did not log (rate limit) since the last one it logged.
    pub suppressed: u32,
    /// The VIP as the packet addressed it.
    pub vip: VipKey,
}

/// Bytes of `RSPLB_EVENTS` (a power of two, whole pages): 2048 events, far more than the rate
/// limit lets through between two reads of the daemon.
pub const EVENTS_BYTES: u32 = 1 << 16;

/// Per CPU and event kind (`RSPLB_LOG_LIMITS`): the rate limiter's window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogLimit {
    /// `bpf_ktime_get_ns` when the current window began.
    pub window_ns: u64,
    /// Events logged in the current window.
    pub logged: u32,
    /// Events not logged since the last one that was.
    pub suppressed: u32,
}

/// Kinds of rare events the program logs (indexes of `RSPLB_LOG_LIMITS`), each with its level
/// (`event::LEVELS`). Each names the VIP as the packet addressed it (address:port/proto), and the
/// element slot when one is involved (`rsplb status --json` lists elements with their slots).
pub mod event {
    use super::log_level::{ERROR, INFO, WARN};
    /// The VIP's Maglev table has no element at the flow's entry (an empty pool): warn.
    pub const EMPTY_POOL: u32 = 0;
    /// The Maglev table names an element slot that is out of range or free (userspace lagging
    /// behind or a bug): error.
    pub const BAD_ELEMENT_SLOT: u32 = 1;
    /// The VIP's Maglev table index (or the Maglev size) reads outside `RSPLB_MAGLEV`: error.
    pub const TABLE_OUT_OF_RANGE: u32 = 2;
    /// The chosen element's next hop (MAC) is unresolved: warn.
    pub const NO_NEXTHOP: u32 = 3;
    /// The chosen element's interface is not in `RSPLB_TX_PORTS`: warn.
    pub const NO_TX_PORT: u32 = 4;
    /// The VIP has a mode this program does not know: error.
    pub const UNKNOWN_MODE: u32 = 5;
    /// NAT: the chosen element is not in the VIP's address family: warn.
    pub const FAMILY_MISMATCH: u32 = 6;
    /// NAT: no free SNAT port for a new flow: warn.
    pub const NAT_PORTS_EXHAUSTED: u32 = 7;
    /// SCTP to a NAT-mode VIP: warn.
    pub const SCTP_NAT: u32 = 8;
    /// NAT: a SYN found its flow table set full of established flows and was dropped: info.
    pub const FLOW_TABLE_FULL: u32 = 9;
    pub const COUNT: u32 = 10;
    /// The level of each kind.
    pub const LEVELS: [u32; COUNT as usize] = [
        WARN, ERROR, ERROR, WARN, WARN, ERROR, WARN, WARN, WARN, INFO,
    ];
}

/// Indexes of `RSPLB_GLOBAL_STATS` (per-CPU u64 array): one per XDP action taken and one per
/// reason a packet was passed to the stack or dropped. The documented rule for each class lives
/// next to its constant; the README repeats it for operators.
pub mod stat {
    pub const ACTION_ABORTED: u32 = 0;
    pub const ACTION_DROP: u32 = 1;
    pub const ACTION_PASS: u32 = 2;
    pub const ACTION_TX: u32 = 3;
    pub const ACTION_REDIRECT: u32 = 4;
    /// Not IPv4/IPv6 (ARP, LLDP, ...): pass.
    pub const PASS_NOT_IP: u32 = 5;
    /// IP, but not addressed to a VIP (address, port and protocol): pass.
    pub const PASS_NOT_VIP: u32 = 6;
    /// IP protocol other than TCP, UDP, SCTP (ICMP, ...): pass.
    pub const PASS_OTHER_PROTO: u32 = 7;
    /// IPv4 fragment (first or later): pass; ports are not in every fragment, so no consistent steering.
    pub const PASS_FRAGMENT: u32 = 8;
    /// IPv4 header with options: pass.
    pub const PASS_IPV4_OPTIONS: u32 = 9;
    /// IPv6 with an extension header before the transport header: pass.
    pub const PASS_IPV6_EXT: u32 = 10;
    /// Ethernet, IP or transport header cut short, or IP length fields inconsistent: drop.
    pub const DROP_TRUNCATED: u32 = 11;
    /// VIP whose pool has no element in service: drop.
    pub const DROP_NO_ELEMENT: u32 = 12;
    /// Element's next hop unresolved (MAC unknown): drop (userspace resolves it through netlink).
    pub const DROP_NO_NEXTHOP: u32 = 13;
    /// NAT: no free SNAT port for a new flow: drop.
    pub const DROP_NAT_PORTS_EXHAUSTED: u32 = 14;
    /// NAT: a reply translated back to its client.
    pub const NAT_REPLY: u32 = 15;
    /// A flow pinned to an element that left the pool was re-selected.
    pub const FLOW_RESELECTED: u32 = 16;
    /// IPv4 packet with TTL (or IPv6 hop limit) too small to forward: pass (the stack answers).
    pub const PASS_TTL: u32 = 17;
    /// SCTP to a NAT-mode VIP: pass. SCTP's CRC32c covers the ports and cannot be updated
    /// incrementally, so SCTP VIPs are DSR only (userspace should refuse NAT for them).
    pub const PASS_SCTP_NAT: u32 = 18;
    /// A new flow took the way of another, live flow (its set was full). That flow is placed by
    /// Maglev again at its next packet; a count that keeps rising means the flow table is too
    /// small for the number of concurrent flows.
    pub const FLOW_EVICTED: u32 = 19;
    /// A VIP whose mode this program does not know (a newer control plane): pass.
    pub const PASS_UNKNOWN_MODE: u32 = 20;
    /// NAT: the element chosen for a new flow is not in the VIP's address family (no NAT46/64;
    /// the control plane refuses such pools): drop.
    pub const DROP_FAMILY_MISMATCH: u32 = 21;
    /// A packet for a VIP with an allow list whose source is in none of its prefixes: drop.
    pub const DROP_SOURCE_NOT_ALLOWED: u32 = 22;
    /// A TCP SYN of a new flow found no way it may take in its flow table set: every way held
    /// an established flow, which a SYN never evicts (a spoofed-SYN flood must not break them).
    /// Counted in both modes, apart from the action. DSR: the SYN is forwarded to Maglev's
    /// choice without being pinned (its next packets find the same element while the pool is
    /// unchanged). NAT: dropped, also as `DROP_FLOW_TABLE_FULL`. A count that keeps rising
    /// without a flood means the flow table is too small.
    pub const FLOW_TABLE_FULL_SYN: u32 = 23;
    /// NAT: a SYN with no flow table way (`FLOW_TABLE_FULL_SYN`): a translation needs a flow
    /// entry, so it is dropped (the client retransmits its SYN).
    pub const DROP_FLOW_TABLE_FULL: u32 = 24;
    /// Events the program did not log because of its rate limit (`LogControl::burst`).
    pub const LOG_SUPPRESSED: u32 = 25;
    pub const COUNT: u32 = 26;

    /// Names for the command line and metrics, indexed like the constants.
    pub const NAMES: [&str; COUNT as usize] = [
        "action_aborted",
        "action_drop",
        "action_pass",
        "action_tx",
        "action_redirect",
        "pass_not_ip",
        "pass_not_vip",
        "pass_other_proto",
        "pass_fragment",
        "pass_ipv4_options",
        "pass_ipv6_ext",
        "drop_truncated",
        "drop_no_element",
        "drop_no_nexthop",
        "drop_nat_ports_exhausted",
        "nat_reply",
        "flow_reselected",
        "pass_ttl",
        "pass_sctp_nat",
        "flow_evicted",
        "pass_unknown_mode",
        "drop_family_mismatch",
        "drop_source_not_allowed",
        "flow_table_full_syn",
        "drop_flow_table_full",
        "log_suppressed",
    ];
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are #[repr(C)], made only of integers and byte arrays, with explicit
    // padding fields, so every bit pattern is valid and there are no implicit holes.
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for VipInfo {}
    unsafe impl aya::Pod for VipDirect {}
    unsafe impl aya::Pod for MaglevBlock {}
    unsafe impl aya::Pod for Element {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowValue {}
    unsafe impl aya::Pod for FlowEntry {}
    unsafe impl aya::Pod for FlowSet {}
    unsafe impl aya::Pod for NatKey {}
    unsafe impl aya::Pod for NatValue {}
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for AllowKey {}
    unsafe impl aya::Pod for LogControl {}
    unsafe impl aya::Pod for LogLimit {}
    unsafe impl aya::Pod for XdpEvent {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::size_of;
    use std::{vec, vec::Vec};

    // The kernel and userspace both compile these structs; the sizes pin the layout so that a
    // field added on one side without padding care shows up here rather than as garbage in a map.
    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<VipKey>(), 20);
        assert_eq!(size_of::<VipInfo>(), 32);
        assert_eq!(size_of::<VipDirect>(), 56);
        assert_eq!(size_of::<MaglevBlock>(), 64);
        assert_eq!(size_of::<Element>(), 40);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<FlowValue>(), 24);
        assert_eq!(size_of::<FlowEntry>(), 64);
        assert_eq!(size_of::<FlowSet>(), 64 * FLOW_WAYS);
        assert_eq!(size_of::<NatKey>(), 40);
        assert_eq!(size_of::<NatValue>(), 80);
        assert_eq!(size_of::<Counters>(), 32);
        assert_eq!(size_of::<AllowKey>(), 20);
        assert_eq!(size_of::<Config>(), 32);
        assert_eq!(size_of::<LogControl>(), 16);
        assert_eq!(size_of::<LogLimit>(), 16);
        assert_eq!(size_of::<XdpEvent>(), 32);
    }

    #[test]
    fn vip_filter_bits_fit_the_filter_and_spread() {
        let mut seen = [0u64; VIP_FILTER_WORDS as usize];
        let mut set = 0;
        // 256 IPv4 VIPs in one /24 on two ports, and the same port on IPv6 neighbours.
        for host in 0..=255u8 {
            for port in [80u16, 443] {
                for family in [FAMILY_V4, FAMILY_V6] {
                    let mut addr = [u32::from_ne_bytes([198, 18, 0, host]), 0, 0, 0];
                    if family == FAMILY_V6 {
                        addr = [0xfd, 0, 0, u32::from_ne_bytes([0, 0, 0, host])];
                    }
                    let key = VipKey {
                        addr,
                        port: port.to_be(),
                        proto: PROTO_TCP,
                        family,
                    };
                    let bit = key.filter_bit();
                    assert!(bit < VIP_FILTER_WORDS * 64);
                    let (w, m) = ((bit / 64) as usize, 1u64 << (bit % 64));
                    if seen[w] & m == 0 {
                        set += 1;
                    }
                    seen[w] |= m;
                }
            }
        }
        // 1024 keys into 65536 bits: a decent hash leaves only a handful of shared bits.
        assert!(set > 1000, "only {set} distinct bits for 1024 keys");
    }

    #[test]
    fn flow_sets_cover_the_capacity_and_the_index_stays_in_range() {
        assert_eq!(flow_sets(0), 1);
        assert_eq!(flow_sets(1), 1);
        assert_eq!(flow_sets(1 << 20), 1 << 18);
        assert_eq!(flow_sets(5), 2);
        for sets in [1, 7, 1 << 18] {
            for hash in [0, 1, 0x8000_0000, u32::MAX, 0x1234_5678] {
                assert!(flow_set_index(hash, sets) < sets);
            }
        }
    }

    #[test]
    fn flow_sets_spread_consecutive_hashes_evenly() {
        // Sets are chosen by multiply-shift of a rotated hash: a well-mixed hash fills them
        // evenly (here the murmur finalizer of consecutive numbers, as flow hashes are).
        let sets = 1024u32;
        let mut count = [0u32; 1024];
        for i in 0..(sets * 64) {
            let mut h = i;
            h ^= h >> 16;
            h = h.wrapping_mul(0x85eb_ca6b);
            h ^= h >> 13;
            h = h.wrapping_mul(0xc2b2_ae35);
            h ^= h >> 16;
            count[flow_set_index(h, sets) as usize] += 1;
        }
        let (min, max) = (count.iter().min().unwrap(), count.iter().max().unwrap());
        assert!(
            *min > 32 && *max < 100,
            "set loads from {min} to {max}, expected about 64"
        );
    }

    #[test]
    fn flow_check_is_never_zero_and_depends_on_every_placement_field() {
        let v = FlowValue {
            element: 3,
            generation: 7,
            vip_slot: 1,
            nat_port: 0,
            ..FlowValue::default()
        };
        let c = flow_check(0xdead_beef, &v);
        assert_ne!(c, 0);
        assert_ne!(flow_check(0, &FlowValue::default()), 0);
        assert_ne!(c, flow_check(0xdead_beee, &v));
        for other in [
            FlowValue { element: 4, ..v },
            FlowValue { generation: 8, ..v },
            FlowValue { vip_slot: 2, ..v },
            FlowValue { nat_port: 80, ..v },
        ] {
            assert_ne!(c, flow_check(0xdead_beef, &other));
        }
        // Recency fields are not covered: they are refreshed without rewriting the entry.
        assert_eq!(
            c,
            flow_check(
                0xdead_beef,
                &FlowValue {
                    seen: 9,
                    nat_seen: 9,
                    ..v
                }
            )
        );
    }

    fn vip(host: u8, port: u16) -> VipKey {
        VipKey {
            addr: [u32::from_ne_bytes([198, 18, 0, host]), 0, 0, 0],
            port: port.to_be(),
            proto: PROTO_TCP,
            family: FAMILY_V4,
        }
    }

    /// Two different VIPs with the same filter bit.
    fn colliding_vips() -> (VipKey, VipKey) {
        let a = vip(10, 80);
        for host in 0..=255u8 {
            for port in 1..2000u16 {
                let b = vip(host, port);
                if b != a && b.filter_bit() == a.filter_bit() {
                    return (a, b);
                }
            }
        }
        panic!("no collision found");
    }

    fn dsr_info() -> VipInfo {
        VipInfo {
            slot: 3,
            mode: MODE_DSR,
            ..VipInfo::default()
        }
    }

    #[test]
    fn vip_direct_entry_follows_the_vips_of_its_bit() {
        let (a, b) = colliding_vips();
        let bit = a.filter_bit();
        let info = dsr_info();
        assert_eq!(VipDirect::for_bit(bit, []).state, VIP_DIRECT_NONE);
        let one = VipDirect::for_bit(bit, [(a, info), (vip(1, 1), info)]);
        assert_eq!((one.state, one.key, one.info), (VIP_DIRECT_ONE, a, info));
        let two = VipDirect::for_bit(bit, [(a, info), (b, info)]);
        assert_eq!(two, VipDirect::default().shared());
    }

    #[test]
    fn vip_direct_transitions_never_expose_a_half_written_vip() {
        let (a, b) = colliding_vips();
        let bit = a.filter_bit();
        let info = dsr_info();
        let none = VipDirect::default();
        let one = VipDirect::for_bit(bit, [(a, info)]);
        let flipped = VipDirect::for_bit(bit, [(a, VipInfo { table: 1, ..info })]);
        let nat = VipDirect::for_bit(
            bit,
            [(
                a,
                VipInfo {
                    mode: MODE_NAT,
                    ..info
                },
            )],
        );
        let other = VipDirect::for_bit(bit, [(b, info)]);
        let shared = VipDirect::for_bit(bit, [(a, info), (b, info)]);
        let steps = |from: VipDirect, to: VipDirect| from.transition(to).collect::<Vec<_>>();
        assert!(steps(one, one).is_empty());
        // The Maglev table switch is one write.
        assert_eq!(steps(one, flipped), vec![flipped]);
        // New VIP: written while shared, then published.
        assert_eq!(steps(none, one), vec![one.shared(), one]);
        // Removed or changed VIP: first shared (with the old, intact content).
        assert_eq!(steps(one, none), vec![one.shared(), none]);
        assert_eq!(steps(one, nat), vec![one.shared(), nat.shared(), nat]);
        assert_eq!(steps(one, other), vec![one.shared(), other.shared(), other]);
        assert_eq!(steps(one, shared), vec![one.shared(), shared]);
        assert_eq!(steps(shared, one), vec![one.shared(), one]);
        assert_eq!(steps(shared, none), vec![none]);
        // Every write changes key/info only while the entry before and after it is shared or
        // empty, or is the table flip.
        for (from, to) in [
            (none, one),
            (one, none),
            (one, nat),
            (one, other),
            (shared, one),
        ] {
            let mut cur = from;
            for next in from.transition(to) {
                let content_changes = cur.key != next.key || cur.info != next.info;
                assert!(
                    !content_changes || cur.state != VIP_DIRECT_ONE && next.state != VIP_DIRECT_ONE,
                    "{cur:?} -> {next:?}"
                );
                cur = next;
            }
            assert_eq!(cur, to);
        }
    }

    #[test]
    fn maglev_blocks_pack_a_table_and_pad_it_empty() {
        assert_eq!(maglev_blocks(65537), 2049);
        assert_eq!(maglev_blocks(32), 1);
        assert_eq!(maglev_blocks(13), 1);
        let b = MaglevBlock::from_entries(&[0, 7, NO_ELEMENT, 65534, 65535, 70000]);
        assert_eq!(
            &b.slots[..6],
            &[0, 7, MAGLEV_EMPTY, 65534, MAGLEV_EMPTY, MAGLEV_EMPTY]
        );
        assert!(b.slots[6..].iter().all(|&s| s == MAGLEV_EMPTY));
    }

    #[test]
    fn flow_hashes_are_pinned() {
        // The XDP program and `rsplb flow get` compute these; a change of either hash moves
        // flows, so it must be deliberate (and the values below updated with it).
        let key = FlowKey {
            src: [u32::from_ne_bytes([198, 18, 0, 2]), 0, 0, 0],
            dst: [u32::from_ne_bytes([198, 19, 0, 100]), 0, 0, 0],
            sport: 40000u16.to_be(),
            dport: 80u16.to_be(),
            proto: PROTO_TCP,
            family: FAMILY_V4,
            state: 0,
            _pad: 0,
        };
        let (f, t) = (flow_hash(&key), table_hash(&key));
        let embryonic = FlowKey {
            state: FLOW_SYN_ONLY,
            ..key
        };
        assert_eq!(
            (flow_hash(&embryonic), table_hash(&embryonic)),
            (f, t),
            "an entry's state is not part of its flow's key"
        );
        assert_eq!((f, t), (4_028_000_726, 745_072_191));
        assert_ne!(
            f,
            flow_hash(&FlowKey {
                sport: 40001u16.to_be(),
                ..key
            })
        );
        assert_ne!(
            t,
            table_hash(&FlowKey {
                sport: 40001u16.to_be(),
                ..key
            })
        );
        // Client affinity leaves the ports out: every connection of the client (and its flows
        // to the VIP address's other ports) is placed alike, another client is not.
        let c = client_hash(&key);
        assert_eq!(c, 3_253_408_937);
        assert_eq!(
            c,
            client_hash(&FlowKey {
                sport: 40001u16.to_be(),
                dport: 443u16.to_be(),
                ..key
            })
        );
        assert_ne!(
            c,
            client_hash(&FlowKey {
                src: [u32::from_ne_bytes([198, 18, 0, 3]), 0, 0, 0],
                ..key
            })
        );
        assert_eq!(placement_hash(&key, VIP_F_ALLOW_LIST), f);
        assert_eq!(
            placement_hash(&key, VIP_F_CLIENT_HASH | VIP_F_ALLOW_LIST),
            c
        );
        assert_eq!(flow_and_placement_hashes(&key, 0), (f, f));
        assert_eq!(flow_and_placement_hashes(&key, VIP_F_CLIENT_HASH), (f, c));
        let v6 = FlowKey {
            src: [0xfd00, 0, 0, 2u32.to_be()],
            dst: [0xfd00, 1, 0, 100u32.to_be()],
            family: FAMILY_V6,
            ..key
        };
        assert_eq!(
            flow_and_placement_hashes(&v6, VIP_F_CLIENT_HASH),
            (flow_hash(&v6), client_hash(&v6))
        );
        assert_eq!(placement_hash(&v6, 0), flow_hash(&v6));
        assert_ne!(flow_hash(&v6), client_hash(&v6));
        assert!(maglev_entry(u32::MAX, 65537) < 65537);
        assert_eq!(maglev_entry(0, 65537), 0);
    }

    #[test]
    fn stat_names_cover_every_index() {
        assert_eq!(stat::NAMES.len(), stat::COUNT as usize);
        assert!(stat::NAMES.iter().all(|n| !n.is_empty()));
    }
}
