//! Builds the XDP program (`ebpf/`) for bpfel-unknown-none with the nightly toolchain and
//! bpf-linker (installed by `cargo xtask setup`), and leaves the object in OUT_DIR.
//! `AYA_BUILD_SKIP=1` skips it (for `cargo check` on a machine without the eBPF toolchain).
use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "rsplb-ebpf")
        .ok_or_else(|| anyhow!("rsplb-ebpf is not in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("rsplb-ebpf manifest has no parent"))?;
    aya_build::build_ebpf(
        [Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
    .context("building the XDP program (run `cargo xtask setup` if bpf-linker or nightly rust-src is missing)")
}
