//! rsplb userspace: loader, control plane and command line.

/// The compiled XDP program (ELF, BTF), built by build.rs.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rsplb-xdp"));
