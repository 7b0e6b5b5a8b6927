//! The `rsplb pe register` sidecar: registers a service that knows nothing of RSerPool as a pool
//! element, checks it locally, deregisters it when it fails and registers it again when it
//! recovers.

pub mod health;
