#![no_std]
// The program lives in main.rs (a bin target built for bpfel-unknown-none). This empty library
// exists so that userspace can name the crate as a build-dependency and be rebuilt when it changes.
