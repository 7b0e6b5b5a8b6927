//! RSerPool for rsplb: the ASAP (RFC 5352) and ENRP (RFC 5353) wire protocol with the parameters
//! of RFC 5354, the handlespace with the pool policies of RFC 5356, a registrar whose protocol
//! core does no I/O, the tokio shell that moves its bytes, and the PE and PU client side.
//!
//! Layers, bottom up:
//! - [`types`]: domain values (pool handle, identifiers, transport addresses, policies, pool
//!   elements) shared by every layer.
//! - [`message`]: typed ASAP and ENRP messages.
//! - [`wire`]: bytes <-> [`message`] (encode, decode, unknown-parameter handling, error causes).
//! - `handlespace`: pools, elements, policies, checksums.
//! - `core`: registrar state machines (messages + clock in, messages + timers out).
//! - `shell`, `client`: tokio transports, PE and PU sides.

pub mod client;
pub mod config;
pub mod core;
pub mod handlespace;
pub mod message;
pub mod policy;
pub mod shell;
pub mod sidecar;
pub mod types;
pub mod wire;
