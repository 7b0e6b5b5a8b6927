//! Test-host tooling for rsplb's multi-host tests: network namespaces and veth pairs that a test
//! creates with unique names and addresses and always removes (also on panic), real TCP/UDP
//! servers and clients inside them, and a driver for the `rsplb` command line.
//!
//! - [`netns`]: namespaces, processes in them, unique names, cleanup of crashed runs' leftovers.
//! - [`lab`]: the "one L2 segment" topology (client, balancer, servers, a bridge).
//! - [`server`] / [`client`]: real servers answering with their name, and a client tallying them.
//! - [`cli`]: `rsplb --netns <lb> ...` as an operator runs it.
//! - [`rserpool`]: servers registering through `rsplb pe register` sidecars at the balancer's
//!   registrar, and bounded waits on the dataplane's element list.
//! - [`stats`]: statistical tolerances for distribution checks.

pub mod cli;
pub mod client;
pub mod cmd;
pub mod fwd_bench;
pub mod lab;
pub mod netns;
pub mod rserpool;
pub mod server;
pub mod stats;
pub mod xdp_tools;

pub use cli::Rsplb;
pub use client::{Tally, TcpConn, tcp_burst, tcp_burst_from, udp_burst, udp_flows};
pub use lab::{Lab, LabConfig, PeerNapi};
pub use netns::{LabId, Netns, cleanup_leftovers, in_netns};

/// The lab's own XDP programs (`ebpf-tools/`): `lab_tx`, `lab_gen`, `lab_pass`, `lab_redirect`,
/// `lab_sink` and their maps (see [`xdp_tools`]).
pub const LAB_XDP_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rsplb-lab-xdp"));
