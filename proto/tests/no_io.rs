//! The protocol crate does no I/O because it cannot: its dependency graph holds no async runtime,
//! socket or file-format crate (as quinn-proto's has none). Adding one fails here, not in review.

use std::process::Command;

#[test]
fn the_protocol_crate_depends_on_no_runtime_socket_or_file_format() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "rserpool-proto",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tree.contains("rserpool-proto"), "{tree}");
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for forbidden in [
        "tokio",
        "mio",
        "socket2",
        "async-std",
        "smol",
        "toml",
        "serde_json",
        "nix",
    ] {
        assert!(
            !crates.contains(&forbidden),
            "rserpool-proto depends on {forbidden}: I/O belongs in rsplb-registrar\n{tree}"
        );
    }
}
