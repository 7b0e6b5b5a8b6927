//! rsplb userspace: loader, control plane and command line.
//!
//! - [`loader`]: load, attach, pin, re-adopt and detach the XDP program.
//! - [`control_core`]: the control-plane core without I/O: commands in, ordered map writes out.
//! - [`control::Balancer`]: the control plane of one interface (load the state, feed the core,
//!   execute its writes, save the state) that the command line, the daemon and the registrar
//!   reconciler drive.
//! - [`executor`]: carries out the core's writes on the pinned maps.
//! - [`maglev`]: weighted Maglev table computation.
//! - [`daemon`]: `rsplb run` (next-hop refresh, NAT expiry, Prometheus metrics, and with
//!   `--registrar` an embedded RSerPool registrar).
//! - [`reconcile`]: registrar handlespace -> dataplane elements.

pub mod addr;
pub mod control;
pub mod control_core;
pub mod daemon;
pub mod executor;
pub mod loader;
pub mod maglev;
pub mod maps;
pub mod nexthop;
pub mod output;
pub mod reconcile;
pub mod recover;
pub mod resolver;
pub mod state;
pub mod veth;

/// The compiled XDP program (ELF, BTF), built by build.rs.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rsplb-xdp"));
