//! RSerPool for rsplb with I/O: the registrar's tokio shell (transports, announces, admin
//! endpoint), the PE and PU client side, the health-checking sidecar, the TOML configuration and
//! `rsp-registrar`. The protocol itself (wire codec, handlespace, policies, the registrar's state
//! machines) is `rserpool_proto`, which does no I/O; its modules are re-exported here so that
//! one path names each type.
//!
//! - `shell`: binds the transports and moves bytes and time between them and the core.
//! - `client`: the PE and PU sides (registration, keep-alive answers, handle resolution, hunt).
//! - `sidecar`: registers a server that knows nothing of RSerPool and health-checks it.
//! - `config`: the registrar's file and flags.
//! - `tls`: TLS with mutual authentication for ASAP and ENRP (RFC 5355).

pub mod client;
pub mod config;
pub mod sctp;
pub mod shell;
pub mod sidecar;
pub mod tls;

pub use rserpool_proto::{core, handlespace, message, policy, types, wire};
