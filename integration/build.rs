//! Builds the lab's own XDP programs (`ebpf-tools/`: live-frames sender, counting sink, XDP_PASS)
//! for bpfel-unknown-none with aya-build, like userspace/build.rs builds rsplb's program.
//! `AYA_BUILD_SKIP=1` skips it (for `cargo check` on a machine without the eBPF toolchain).
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let tools = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "rsplb-integration-ebpf")
        .ok_or_else(|| anyhow!("rsplb-integration-ebpf is not in the workspace"))?;
    let root_dir = tools
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("rsplb-integration-ebpf manifest has no parent"))?;
    aya_build::build_ebpf(
        [Package {
            name: tools.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
    .context("building the lab's XDP programs (run `cargo xtask setup` if bpf-linker or nightly rust-src is missing)")
}
