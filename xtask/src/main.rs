//! `cargo xtask`: everything a developer or CI runs, from a fresh machine on.
//!
//! - `setup`: install every prerequisite, idempotently (Debian packages, nightly's rust-src,
//!   bpf-linker built against LLVM 22).
//! - `demo`: the README's first command: a lab of network namespaces with rsplb in front of three
//!   real servers.
//! - `test`: the README's second command: formatting, lints and every test.
//! - `bench dataplane|registrar`: benchmarks that print `key=value` lines.
//! - `interop`: rsplb against rsplib 3.4.4 over kernel SCTP in `../shared/interop`'s VM.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Set up, demonstrate, test and benchmark rsplb",
    long_about = "Set up, demonstrate, test and benchmark rsplb.\n\n\
        Every command that builds runs `setup` first, which installs what is missing and does \
        nothing when everything is there. Network tests and the demo create their own network \
        namespaces and veth pairs, and need root."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install every prerequisite (Debian packages, nightly rust-src, bpf-linker). Idempotent.
    Setup,
    /// Build everything and run the demonstration lab (client, balancer, three servers).
    Demo {
        /// Extra arguments for the demo binary (see `cargo xtask demo -- --help`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run formatting and lint checks and every test (unit, packet, integration, conformance, and
    /// the interop rows against rsplib in the lab VM unless --no-interop).
    Test {
        /// Skip `cargo fmt --check` and `cargo clippy`.
        #[arg(long)]
        no_lint: bool,
        /// Skip the interop rows against rsplib in the lab VM (`cargo xtask interop`).
        #[arg(long)]
        no_interop: bool,
        /// Extra arguments passed to `cargo test` (after the workspace selection), e.g. a filter.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Interoperability with rsplib 3.4.4 over kernel SCTP, in the interop lab's VM
    /// (`../shared/interop/lab.sh`; the lab is set up when needed, started, and always stopped).
    ///
    /// Prints `interop row N: PASS|FAIL reason` per row and fails when any row fails. Row 1:
    /// rsplib's rspserver and rspterminal at rsplb's rsp-registrar; row 2: rsplb's pool element
    /// and `rsplb resolve` at rsplib's rspregistrar; row 3: ENRP between rsp-registrar and
    /// rspregistrar (static and multicast peering, synchronisation both ways, equal checksums,
    /// takeover both ways, rsplib's hsdump of rsplb); row 4: `rsplb run` (XDP on the lab's tap,
    /// SCTP DSR VIP) in front of rsplib's rspservers, reached by a legacy SCTP client; row 5:
    /// the captures of rows 1-3 through
    /// Wireshark's ASAP/ENRP dissectors (`--strict`); bad-input: bad input over SCTP.
    Interop {
        /// Build and copy a debug build instead of a release build.
        #[arg(long)]
        debug: bool,
    },
    /// Run a benchmark and print its `key=value` figures.
    Bench {
        /// `dataplane`, `registrar`, `enrp`, `failover` (how long a failed element keeps getting
        /// new flows after a crash, a freeze or a failed check, and the reconcile latency with
        /// 1,000 elements in 100 pools; `-- --only failover|reconcile` runs one), or `interop` (rsplb's registrar against rsplib's in the interop lab's VM:
        /// `hres_*` and `reg_*` per second and their ratios).
        #[arg(value_parser = ["dataplane", "registrar", "enrp", "failover", "interop"])]
        which: String,
        /// Extra arguments for the benchmark binary.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cd {}", root.display()))?;
    match cli.cmd {
        Cmd::Setup => setup(),
        Cmd::Demo { args } => {
            setup()?;
            require_root("the demo creates network namespaces and attaches XDP")?;
            cargo(&[
                "build",
                "--release",
                "-p",
                "rsplb",
                "-p",
                "rsplb-integration",
            ])?;
            let release = target_dir(&root).join("release");
            run(Command::new(release.join("rsplb-demo"))
                .args(&args)
                .env("RSPLB_BIN", release.join("rsplb")))
        }
        Cmd::Test {
            no_lint,
            no_interop,
            args,
        } => {
            setup()?;
            require_root("tests load XDP programs and create network namespaces")?;
            let started = Instant::now();
            if !no_lint {
                step("cargo fmt --check");
                cargo(&["fmt", "--all", "--check"])?;
                step("cargo clippy -D warnings");
                cargo(&[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ])?;
            }
            step("cargo test (workspace)");
            // The rsplb binary is used by integration tests and by the registrar's sidecar tests.
            cargo(&["build", "-p", "rsplb", "-p", "rsplb-registrar"])?;
            let mut test_args = vec!["test", "--workspace", "--no-fail-fast"];
            test_args.extend(args.iter().map(String::as_str));
            // The network tests drive the rsplb binary as an operator would: exactly the one
            // just built, never a stale release build lying around.
            run(cargo_cmd()
                .args(&test_args)
                .env("RSPLB_BIN", target_dir(&root).join("debug/rsplb")))?;
            if !no_interop {
                step("cargo xtask interop (rsplib 3.4.4 over kernel SCTP in the lab VM)");
                interop(&root, false)?;
            }
            eprintln!(
                "xtask test: everything passed in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Cmd::Interop { debug } => {
            setup()?;
            interop(&root, debug)
        }
        Cmd::Bench { which, .. } if which == "interop" => {
            setup()?;
            interop_bench(&root)
        }
        Cmd::Bench { which, args } => {
            setup()?;
            require_root("benchmarks load XDP programs and create network namespaces")?;
            let bin = format!("bench-{which}");
            cargo(&[
                "build",
                "--release",
                "-p",
                "rsplb",
                "-p",
                "rsplb-integration",
            ])?;
            let release = target_dir(&root).join("release");
            run(Command::new(release.join(&bin))
                .args(&args)
                .env("RSPLB_BIN", release.join("rsplb")))
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn step(what: &str) {
    eprintln!("\n==> {what}");
}

fn require_root(why: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions. (Avoids a libc dependency for one call.)
    unsafe extern "C" {
        fn geteuid() -> u32;
    }
    if unsafe { geteuid() } != 0 {
        bail!("this needs root: {why}. Run it as root (for example with sudo -E).");
    }
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status: ExitStatus = cmd
        .status()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn cargo_cmd() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn cargo(args: &[&str]) -> Result<()> {
    run(cargo_cmd().args(args))
}

/// Where cargo puts its builds: `CARGO_TARGET_DIR` when set, else `target/` in the workspace.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Debian packages the build, the tests, the demo and the benchmarks use.
const DEBIAN_PACKAGES: &[&str] = &[
    // bpf-linker links against LLVM 22 (the LLVM of the nightly rustc that builds the program).
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    // Network namespaces, veth, neighbours; the kernel-stack baseline of the benchmark.
    "iproute2",
    "nftables",
    "ethtool",
    // Wire conformance oracle (Wireshark's ASAP/ENRP dissectors) and captures.
    "tshark",
    "tcpdump",
    "python3",
];

/// `cargo xtask bench interop`: release builds, then `xtask/interop/run.sh bench`: the SCTP load
/// generator `asap-load` against rspregistrar and rsp-registrar in the lab's guest.
fn interop_bench(root: &Path) -> Result<()> {
    require_root("the interop lab runs a VM behind a tap device in a network namespace")?;
    lab_qemu()?;
    cargo(&[
        "build",
        "--release",
        "-p",
        "rsplb",
        "-p",
        "rsplb-registrar",
        "-p",
        "rsplb-integration",
        "--bin",
        "rsplb",
        "--bin",
        "rsp-registrar",
        "--bin",
        "asap-load",
    ])?;
    let bins = target_dir(root).join("release");
    let shared =
        std::env::var_os("RSPLB_SHARED").map_or_else(|| root.join("../shared"), PathBuf::from);
    run(Command::new("bash")
        .arg(root.join("xtask/interop/run.sh"))
        .arg("bench")
        .env("RSPLB_BIN", bins.join("rsplb"))
        .env("RSP_REGISTRAR_BIN", bins.join("rsp-registrar"))
        .env("ASAP_LOAD_BIN", bins.join("asap-load"))
        .env("LAB", shared.join("interop/lab.sh"))
        .env("ORACLE", shared.join("oracle")))
}

/// `cargo xtask interop`: build, then `xtask/interop/run.sh` against `../shared/interop`.
fn interop(root: &Path, debug: bool) -> Result<()> {
    require_root("the interop lab runs a VM behind a tap device in a network namespace")?;
    let started = Instant::now();
    lab_qemu()?;
    let mut build = vec!["build", "-p", "rsplb", "-p", "rsplb-registrar"];
    if !debug {
        build.push("--release");
    }
    cargo(&build)?;
    let bins = target_dir(root).join(if debug { "debug" } else { "release" });
    let shared =
        std::env::var_os("RSPLB_SHARED").map_or_else(|| root.join("../shared"), PathBuf::from);
    let result = run(Command::new("bash")
        .arg(root.join("xtask/interop/run.sh"))
        .env("RSPLB_BIN", bins.join("rsplb"))
        .env("RSP_REGISTRAR_BIN", bins.join("rsp-registrar"))
        .env("LAB", shared.join("interop/lab.sh"))
        .env("ORACLE", shared.join("oracle")));
    eprintln!(
        "xtask interop: {} in {:.0} s",
        if result.is_ok() {
            "every row passed"
        } else {
            "FAILED"
        },
        started.elapsed().as_secs_f64()
    );
    result
}

/// The interop lab's QEMU (`lab.sh setup` installs it too, but cannot where a newer
/// `qemu-utils` from backports is installed: apt keeps that one and refuses bookworm's
/// `qemu-system-x86`). Installs `qemu-system-x86` with the `qemu-utils` of the same version.
fn lab_qemu() -> Result<()> {
    let installed = |p: &str| {
        Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", p])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
    };
    if installed("qemu-system-x86") {
        return Ok(());
    }
    let policy = Command::new("apt-cache")
        .args(["policy", "qemu-system-x86"])
        .output()
        .context("apt-cache policy qemu-system-x86")?;
    let text = String::from_utf8_lossy(&policy.stdout);
    let Some(version) = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| *v != "(none)")
    else {
        bail!("no installable qemu-system-x86 in the host's apt sources (run apt-get update?)");
    };
    step(&format!(
        "installing qemu-system-x86 {version} for the interop lab"
    ));
    run(Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "--allow-downgrades",
            "qemu-system-x86",
            &format!("qemu-utils={version}"),
            "debootstrap",
            "e2fsprogs",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn setup() -> Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if !missing.is_empty() {
        step(&format!(
            "installing Debian packages: {}",
            missing.join(" ")
        ));
        require_root("installing Debian packages")?;
        run(Command::new("apt-get").args(["update", "-q"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }

    let rust_src_installed = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("rust-src"));
    if !rust_src_installed {
        if !succeeds("rustup", &["run", "nightly", "rustc", "--version"]) {
            step("installing the nightly toolchain");
            run(Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
            ]))?;
        }
        step("adding rust-src to the nightly toolchain (the XDP program builds core from source)");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }

    if !succeeds("bpf-linker", &["--version"]) {
        step("building bpf-linker against LLVM 22 (about three minutes)");
        run(
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "install",
                    "bpf-linker@0.13.0",
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                ])
                // bpf-linker's build script finds LLVM through LLVM_PREFIX, llvm-sys through
                // LLVM_SYS_221_PREFIX; without them it links against a missing /usr/lib64/libLLVM.
                .env("LLVM_PREFIX", "/usr/lib/llvm-22")
                .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22"),
        )?;
    }
    Ok(())
}
