//! RSerPool without I/O: the ASAP (RFC 5352) and ENRP (RFC 5353) wire protocol with the parameters
//! of RFC 5354, the handlespace with the pool policies of RFC 5356, and the registrar's protocol
//! procedures as state machines fed with events and a clock (in the manner of quinn-proto).
//!
//! This crate has no tokio, socket or file-format dependency: the transports, announces, admin
//! endpoint, PE/PU clients and configuration files live in `rsplb-registrar`, which drives it.
//!
//! Layers, bottom up:
//! - [`types`]: domain values (pool handle, identifiers, transport addresses, policies, pool
//!   elements) shared by every layer, and by the load balancer's control plane.
//! - [`message`]: typed ASAP and ENRP messages.
//! - [`wire`]: bytes <-> [`message`] (encode, decode, unknown-parameter handling, error causes).
//! - [`handlespace`]: pools, elements, policies, checksums.
//! - [`config`]: the core's configuration values and their defaults.
//! - [`core`]: registrar state machines (messages + clock in, messages + timers out).

pub mod config;
pub mod core;
pub mod handlespace;
pub mod message;
pub mod policy;
pub mod types;
pub mod wire;
