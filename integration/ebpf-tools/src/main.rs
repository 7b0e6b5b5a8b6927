//! The lab's own XDP programs (not rsplb's dataplane):
//! - `lab_tx`: XDP_TX, nothing else (a reflector).
//! - `lab_gen`: XDP_TX, run with BPF_PROG_TEST_RUN live frames as the benchmark's packet
//!   generator. It rewrites the frame's headers from `LAB_TX_TEMPLATE` on every run: live frames live in a
//!   page_pool whose pages are recycled *without* being re-initialised, so a frame that came back
//!   from the receivers (after the kernel stack rewrote its MACs, TTL and, with DNAT, its
//!   destination in place) would otherwise be sent again as it was last seen. The UDP source port
//!   cycles through `flows` ports (the UDP checksum is 0, so nothing else changes).
//! - `lab_pass`: XDP_PASS, gives a veth NAPI so its peer's XDP_TX/XDP_REDIRECT frames are taken.
//! - `lab_redirect`: XDP_REDIRECT through the devmap `LAB_REDIRECT` (slot 0), nothing else: the
//!   forwarding benchmark's floor (the cost of the harness around a balancer).
//! - `lab_sink`: counts IPv4 packets per low byte of the destination address, then drops them: a
//!   sink that costs less than the forwarding it measures.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::xdp_action,
        macros::{map, xdp},
        maps::{Array, DevMap, PerCpuArray, ProgramArray},
        programs::XdpContext,
    };

    /// Packets per low byte of the IPv4 destination (slot 256: anything else).
    #[map(name = "LAB_SINK_COUNTS")]
    static SINK_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(257, 0);

    /// Length of the header template (Ethernet 14 + IPv4 20 + UDP 8 = 42, rounded up to 8).
    const TX_HDR: usize = 48;

    /// Sender template, as 7 native-endian words: bytes 0..48 the frame's first 48 bytes,
    /// 48..50 the number of flows (0 = 1), 50..52 the first UDP source port.
    #[map(name = "LAB_TX_TEMPLATE")]
    static TX_TEMPLATE: Array<[u64; 7]> = Array::with_max_entries(1, 0);

    /// Frames sent, per CPU (also picks the source port).
    #[map(name = "LAB_TX_SEQ")]
    static TX_SEQ: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

    #[xdp]
    pub fn lab_tx(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_TX
    }

    #[xdp]
    pub fn lab_gen(ctx: XdpContext) -> u32 {
        let start = ctx.data();
        if start + TX_HDR > ctx.data_end() {
            return xdp_action::XDP_DROP;
        }
        let Some(t) = TX_TEMPLATE.get(0) else {
            return xdp_action::XDP_DROP;
        };
        let seq = match TX_SEQ.get_ptr_mut(0) {
            // SAFETY: per-CPU slot of this CPU; nothing else writes it concurrently.
            Some(c) => unsafe {
                let v = *c;
                *c = v + 1;
                v
            },
            None => 0,
        };
        let [f0, f1, s0, s1, ..] = t[6].to_ne_bytes();
        let flows = u16::from_ne_bytes([f0, f1]).max(1);
        let sport = u16::from_ne_bytes([s0, s1]).wrapping_add((seq % u64::from(flows)) as u16);
        // Word stores: the verifier cannot check a packet pointer's alignment (no bitwise
        // operations on pointers) and needs none on this machine (x86: no strict alignment; the
        // JIT emits plain 8-byte moves, which x86 takes at any address). Byte-wise unaligned
        // writes would cost ~100 instructions per frame of the sender shared by every variant.
        let p = start as *mut u64;
        // SAFETY: 6 words = TX_HDR bytes, within data_end (checked above).
        unsafe {
            *p = t[0];
            *p.add(1) = t[1];
            *p.add(2) = t[2];
            *p.add(3) = t[3];
            *p.add(4) = t[4];
            *p.add(5) = t[5];
        }
        // UDP source port at 14 + 20.
        // SAFETY: 34 + 2 <= TX_HDR, checked above.
        unsafe { core::ptr::write_unaligned((start + 34) as *mut [u8; 2], sport.to_be_bytes()) };
        xdp_action::XDP_TX
    }

    /// Slot 0: the program `lab_syn` hands every frame to (tail call).
    #[map(name = "LAB_SYN_TARGET")]
    static SYN_TARGET: ProgramArray = ProgramArray::with_max_entries(1, 0);

    /// `lab_syn`'s frame: its first 48 bytes, as 6 native-endian words.
    #[map(name = "LAB_SYN_TEMPLATE")]
    static SYN_TEMPLATE: Array<[u64; 6]> = Array::with_max_entries(1, 0);

    /// Frames `lab_syn` has made (also the new flow's number). One counter for all CPUs, not a
    /// per-CPU one: a benchmark thread that moves to another CPU between batches must not
    /// replay flows it has already made. (A single benchmark thread runs it at a time.)
    #[map(name = "LAB_SYN_SEQ")]
    static SYN_SEQ: Array<u64> = Array::with_max_entries(1, 0);

    /// A new-flow driver for BPF_PROG_TEST_RUN with `repeat`: restores the frame from
    /// `LAB_SYN_TEMPLATE` (an Ethernet/IPv4/TCP frame), gives it a 5-tuple of its own (the
    /// sequence number in the TCP source port and the low 16 bits of the IPv4 source address),
    /// then tail-calls `LAB_SYN_TARGET[0]`. XDP_ABORTED if the tail call fails.
    #[xdp]
    pub fn lab_syn(ctx: XdpContext) -> u32 {
        let start = ctx.data();
        if start + TX_HDR > ctx.data_end() {
            return xdp_action::XDP_ABORTED;
        }
        let Some(t) = SYN_TEMPLATE.get(0) else {
            return xdp_action::XDP_ABORTED;
        };
        let Some(c) = SYN_SEQ.get_ptr_mut(0) else {
            return xdp_action::XDP_ABORTED;
        };
        // SAFETY: a map value; one benchmark thread uses the driver at a time.
        let seq = unsafe {
            let v = *c;
            *c = v + 1;
            v
        };
        let p = start as *mut u64;
        // SAFETY: 6 words = TX_HDR bytes, within data_end (checked above); word stores as in
        // `lab_gen`.
        unsafe {
            *p = t[0];
            *p.add(1) = t[1];
            *p.add(2) = t[2];
            *p.add(3) = t[3];
            *p.add(4) = t[4];
            *p.add(5) = t[5];
        }
        let n = seq as u32;
        // SAFETY: IPv4 source address bytes 28..30 and TCP source port 34..36 < TX_HDR.
        unsafe {
            core::ptr::write_unaligned(
                (start + 28) as *mut [u8; 2],
                ((n >> 16) as u16).to_be_bytes(),
            );
            core::ptr::write_unaligned((start + 34) as *mut [u8; 2], (n as u16).to_be_bytes());
        }
        // SAFETY: a tail call into an XDP program of the same type, with this context.
        unsafe { SYN_TARGET.tail_call(&ctx, 0) };
        xdp_action::XDP_ABORTED
    }

    #[xdp]
    pub fn lab_pass(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    /// Slot 0: where `lab_redirect` sends every frame.
    #[map(name = "LAB_REDIRECT")]
    static REDIRECT: DevMap = DevMap::with_max_entries(1, 0);

    #[xdp]
    pub fn lab_redirect(_ctx: XdpContext) -> u32 {
        REDIRECT.redirect(0, 0).unwrap_or(xdp_action::XDP_DROP)
    }

    #[xdp]
    pub fn lab_sink(ctx: XdpContext) -> u32 {
        let start = ctx.data();
        let end = ctx.data_end();
        // Ethernet (14) + IPv4 header up to the destination address (20).
        let slot = if start + 34 <= end {
            // SAFETY: bounds checked just above against data_end.
            let ethertype = unsafe { *((start + 12) as *const [u8; 2]) };
            if ethertype == [0x08, 0x00] {
                // SAFETY: 14 + 19 < 34, checked above.
                u32::from(unsafe { *((start + 14 + 19) as *const u8) })
            } else {
                256
            }
        } else {
            256
        };
        if let Some(c) = SINK_COUNTS.get_ptr_mut(slot) {
            // SAFETY: per-CPU slot of this CPU; nothing else writes it concurrently.
            unsafe { *c += 1 };
        }
        xdp_action::XDP_DROP
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
