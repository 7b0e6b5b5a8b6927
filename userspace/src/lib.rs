//! rsplb userspace. The folders follow the flow of a change:
//!
//! - [`cli`]: the command line (`src/cli/main.rs` is the `rsplb` binary) and its output.
//! - [`control`]: the control plane. [`control::core`] decides without I/O (commands in,
//!   ordered map writes out); [`control::Balancer`] runs it for one interface (load the state,
//!   feed the core, execute its writes, save the state); [`control::reconcile`] turns the
//!   registrar's handlespace into commands; [`control::maglev`] computes tables;
//!   [`control::state`] is what the control plane knows of an interface.
//! - [`dataplane`]: only executes: loads, attaches and pins the XDP program
//!   ([`dataplane::loader`]), opens and writes the pinned maps ([`dataplane::maps`],
//!   [`dataplane::executor`]), rebuilds a state from them ([`dataplane::recover`]), sets and
//!   reads the program's event log ([`dataplane::events`]).
//! - [`host`]: the host around the dataplane: next hops over rtnetlink ([`host::nexthop`]),
//!   resolved in the background by the daemon ([`host::resolver`]), veth checks.
//! - [`daemon`]: `rsplb run` (next-hop refresh, NAT expiry, Prometheus metrics, and with
//!   `--registrar` an embedded RSerPool registrar).
//!
//! The short paths (`rsplb::maps`, `rsplb::loader`, `rsplb::reconcile`, ...) stay as
//! re-exports for the tools and tests that use them.

pub mod cli {
    pub mod output;
    pub mod status;
}
pub mod config;
pub mod control;
pub mod daemon;
pub mod health;
pub mod dataplane {
    pub mod events;
    pub mod executor;
    pub mod flows;
    pub mod loader;
    pub mod maps;
    pub mod recover;
}
pub mod host {
    pub mod nexthop;
    pub mod resolver;
    pub mod veth;
}

pub use cli::output;
pub use control::{addr, allow, core as control_core, maglev, reconcile, state};
pub use dataplane::{executor, loader, maps, recover};
pub use host::{nexthop, resolver, veth};

/// The compiled XDP program (ELF, BTF), built by build.rs.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rsplb-xdp"));
