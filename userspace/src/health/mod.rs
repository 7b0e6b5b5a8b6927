//! Balancer-side health checks, run by the daemon (`rsplb run --config`) for every element of
//! the pools whose `[pool.NAME.check]` the file declares: TCP connect, UDP request and expected
//! reply, HTTP and HTTPS GET (expected status, optional body text), and exec.
//!
//! - [`machine`]: one element's rise/fall counting, check scheduling (a faster interval while
//!   it fails) and slow-start ramp, with no I/O (tested with a fake clock);
//! - [`probe`]: one check of one element (hyper for HTTP, rustls for HTTPS);
//! - [`runner`]: the task that probes when due and applies health changes through the
//!   control-plane core, like any other change.
//!
//! One health decision per element: the registrar's view (an element that deregisters or
//! misses its keep-alives is removed from the pool by the reconciler) and the active checks
//! (which take it out of the tables as its pool's `on_failure` says, and bring it back after
//! `rise` successes).

pub mod machine;
pub mod probe;
pub mod runner;
