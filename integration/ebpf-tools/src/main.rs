//! The lab's own XDP programs (not rsplb's dataplane):
//! - `lab_tx`: XDP_TX, run with BPF_PROG_TEST_RUN live frames as the benchmark's packet generator.
//! - `lab_pass`: XDP_PASS, gives a veth NAPI so its peer's XDP_TX/XDP_REDIRECT frames are taken.
//! - `lab_sink`: counts IPv4 packets per low byte of the destination address, then drops them: a
//!   sink that costs less than the forwarding it measures.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        bindings::xdp_action,
        macros::{map, xdp},
        maps::PerCpuArray,
        programs::XdpContext,
    };

    /// Packets per low byte of the IPv4 destination (slot 256: anything else).
    #[map(name = "LAB_SINK_COUNTS")]
    static SINK_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(257, 0);

    #[xdp]
    pub fn lab_tx(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_TX
    }

    #[xdp]
    pub fn lab_pass(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
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
