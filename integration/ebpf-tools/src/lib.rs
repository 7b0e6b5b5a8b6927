#![no_std]
// The programs live in main.rs (a bin target built for bpfel-unknown-none by
// integration/build.rs). This empty library lets the integration crate name this crate as a
// build-dependency, so cargo rebuilds it when the programs change.
