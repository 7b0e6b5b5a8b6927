//! Loading, attaching, pinning, re-adopting and detaching the XDP program.
//!
//! Fail-static: the program is attached through a bpf link pinned at
//! `/sys/fs/bpf/rsplb/<iface>/link`, and every map is pinned beside it, so the dataplane keeps
//! forwarding with its last tables whatever happens to the process that attached it. Attaching
//! again finds the pins and re-adopts them instead of reloading, so no flow is dropped.

use std::{ffi::CString, fs, io::ErrorKind, os::unix::fs::MetadataExt as _, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};
use aya::{
    EbpfLoader,
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
    },
};
use rsplb_common::{MAX_FLOW_TIMEOUT_S, PROGRAM_NAME, maps};

use crate::{
    maglev,
    maps::{LINK_PIN, Maps, PIN_ROOT, pin_dir},
    state::{AttachOptions, State, StateError, StateLock, state_dir},
};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
/// Upper bound on the Maglev map (u32 entries): 1 GiB.
const MAX_MAGLEV_ENTRIES: u64 = 1 << 28;

/// Enters the network namespace `/run/netns/NAME` (network namespace only: the mount namespace,
/// and so bpffs pins, stay the host's).
pub fn enter_netns(name: &str) -> Result<()> {
    let path = Path::new("/run/netns").join(name);
    let f = fs::File::open(&path)
        .with_context(|| format!("opening network namespace {}", path.display()))?;
    use std::os::fd::AsRawFd as _;
    // SAFETY: setns on a valid namespace fd we own.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("entering network namespace {name}"));
    }
    Ok(())
}

/// Inode of the current network namespace.
pub fn netns_inode() -> Result<u64> {
    Ok(fs::metadata("/proc/thread-self/ns/net")
        .or_else(|_| fs::metadata("/proc/self/ns/net"))
        .context("reading /proc/self/ns/net")?
        .ino())
}

pub fn ifindex(iface: &str) -> Result<u32> {
    let c = CString::new(iface).map_err(|_| anyhow!("interface name `{iface}` contains NUL"))?;
    // SAFETY: valid C string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("no such interface `{iface}` in this network namespace");
    }
    Ok(idx)
}

pub fn require_root(what: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root (CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN)");
    }
    Ok(())
}

/// Mounts bpffs at /sys/fs/bpf when nothing of type bpf is mounted there.
pub fn ensure_bpffs() -> Result<()> {
    let dir = c"/sys/fs/bpf";
    // SAFETY: statfs into a zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(dir.as_ptr(), &mut st) };
    if rc == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    fs::create_dir_all("/sys/fs/bpf").context("creating /sys/fs/bpf")?;
    // SAFETY: mount with static C strings.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            dir.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("mounting bpffs at /sys/fs/bpf");
    }
    Ok(())
}

pub fn validate(opts: &AttachOptions) -> Result<()> {
    maglev::check_size(opts.maglev_size)?;
    if opts.max_vips == 0 || opts.max_elements == 0 || opts.flow_capacity == 0 {
        bail!("--max-vips, --max-elements and --flow-capacity must be at least 1");
    }
    // Flow entries name their VIP in 16 bits (`FlowValue::vip_slot`).
    if opts.max_vips > u32::from(u16::MAX) {
        bail!("--max-vips is at most {}", u16::MAX);
    }
    if opts.max_elements > rsplb_common::MAX_ELEMENT_SLOTS {
        bail!(
            "--max-elements is at most {} (Maglev entries are 16 bits)",
            rsplb_common::MAX_ELEMENT_SLOTS
        );
    }
    let entries = 2 * opts.max_vips as u64 * opts.maglev_size as u64;
    if entries > MAX_MAGLEV_ENTRIES {
        bail!(
            "the Maglev map would hold {entries} entries (2 x {} VIPs x {}), more than {MAX_MAGLEV_ENTRIES}: lower --max-vips or --maglev-size",
            opts.max_vips,
            opts.maglev_size
        );
    }
    if opts.nat_port_min == 0 || opts.nat_port_min > opts.nat_port_max {
        bail!("--nat-ports must be MIN-MAX with 1 <= MIN <= MAX");
    }
    for (flag, t) in [
        ("--dsr-tcp-timeout", opts.dsr_tcp_timeout_s),
        ("--dsr-udp-timeout", opts.dsr_udp_timeout_s),
        ("--nat-tcp-timeout", opts.nat_tcp_timeout_s),
        ("--nat-udp-timeout", opts.nat_udp_timeout_s),
    ] {
        check_timeout(flag, t)?;
    }
    Ok(())
}

/// Idle timeouts are 1 s to `MAX_FLOW_TIMEOUT_S` (the flow table's clock wraps).
pub fn check_timeout(flag: &str, secs: u32) -> Result<()> {
    if secs == 0 || secs > MAX_FLOW_TIMEOUT_S {
        bail!("{flag} must be 1..={MAX_FLOW_TIMEOUT_S} seconds (20 days), not {secs}");
    }
    Ok(())
}

/// What `attach` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachOutcome {
    Loaded {
        prog_id: u32,
    },
    Readopted {
        prog_id: u32,
    },
    /// Re-adopted, with the state rebuilt from the pinned maps (`--recover-state`): these many
    /// VIPs and elements.
    Recovered {
        prog_id: u32,
        vips: usize,
        elements: usize,
    },
}

/// Program id attached to `ifindex` through the pinned link, if that link is alive.
pub fn pinned_link_prog_id(iface: &str) -> Option<u32> {
    let link = PinnedLink::from_pin(pin_dir(iface).join(LINK_PIN)).ok()?;
    let fd: FdLink = link.into();
    fd.info().ok().map(|i| i.program_id())
}

/// Program id attached in XDP to `ifindex` (read from the kernel through netlink).
pub fn attached_xdp_prog_id(ifindex: u32) -> Option<u32> {
    crate::nexthop::Netlink::new()
        .ok()?
        .xdp_prog_id(ifindex)
        .ok()?
}

fn remove_pins(iface: &str) -> Result<()> {
    let dir = pin_dir(iface);
    // The link first: removing its last reference detaches the program.
    for name in std::iter::once(LINK_PIN).chain(maps::ALL) {
        match fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("removing {}", dir.join(name).display()));
            }
        }
    }
    match fs::remove_dir(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", dir.display())),
    }
}

fn describe_netns(name: &Option<String>, inode: u64) -> String {
    match name {
        Some(n) => format!("network namespace `{n}` (inode {inode})"),
        None => format!("network namespace inode {inode}"),
    }
}

/// How `attach` treats an attachment whose state file is unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateRecovery {
    /// Refuse, naming the file and `--recover-state` (the dataplane is left as it is).
    #[default]
    Refuse,
    /// Rebuild the state from the pinned maps (`crate::recover`).
    FromMaps,
}

/// Loads and attaches, or re-adopts an existing attachment. `netns_name` is only recorded.
///
/// The pinned maps are the truth of a live attachment: a state file that is missing, empty,
/// corrupt or unreadable never makes `attach` reload it (which would empty every table). Without
/// `recovery` it refuses; with [`StateRecovery::FromMaps`] it rebuilds the state from the maps.
pub fn attach(
    iface: &str,
    opts: &AttachOptions,
    force: bool,
    netns_name: Option<String>,
    recovery: StateRecovery,
) -> Result<AttachOutcome> {
    require_root("attaching XDP")?;
    validate(opts)?;
    let ifindex = ifindex(iface)?;
    let inode = netns_inode()?;
    ensure_bpffs()?;
    let sdir = state_dir(iface);
    let _lock = StateLock::acquire(&sdir)?;
    let state_path = sdir.join("state.json");
    let pdir = pin_dir(iface);
    let loaded = State::load(&state_path);
    let link_prog = pinned_link_prog_id(iface);
    let live = link_prog.is_some() && link_prog == attached_xdp_prog_id(ifindex);
    let previous = match loaded {
        Ok(st) => Some(st),
        Err(StateError::Io { source, .. }) if source.kind() == ErrorKind::NotFound && !live => None,
        Err(e) if live && recovery == StateRecovery::FromMaps => {
            let generic = crate::nexthop::Netlink::new()
                .and_then(|mut nl| nl.xdp_generic(ifindex))
                .unwrap_or(opts.generic);
            let st =
                crate::recover::state_from_maps(&pdir, iface, ifindex, inode, netns_name, generic)
                    .with_context(|| {
                        format!("rebuilding {} from the pinned maps", state_path.display())
                    })?;
            st.save(&state_path)?;
            log::warn!(
                "{iface}: {} was unreadable ({e}); rebuilt it from the pinned maps",
                state_path.display()
            );
            return Ok(AttachOutcome::Recovered {
                prog_id: link_prog.unwrap_or(0),
                vips: st.vips.len(),
                elements: st.elements.len(),
            });
        }
        Err(e) if live => bail!(
            "{e}. `{iface}` is attached and forwarding with its pinned maps (left untouched): \
             `rsplb attach {iface} --recover-state` rebuilds {} from them (VIPs, modes, elements, \
             weights; pool names become recovered-N), or restore the file from a backup",
            state_path.display()
        ),
        Err(e) if pdir.join(LINK_PIN).exists() => {
            // Pins of a program that is no longer attached: nothing live to lose.
            log::warn!("{iface}: ignoring {e}: the pinned program is not attached any more");
            None
        }
        Err(StateError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => None,
        Err(e) => {
            log::warn!("{iface}: ignoring {e}: nothing is attached");
            None
        }
    };

    if pdir.join(LINK_PIN).exists() {
        if let Some(prev) = &previous
            && prev.netns_inode != inode
            && !force
        {
            {
                bail!(
                    "interface `{iface}` is already attached by rsplb from {}, and this is {}: interface names share one pin directory ({}); detach it there first, or use --force",
                    describe_netns(&prev.netns_name, prev.netns_inode),
                    describe_netns(&netns_name, inode),
                    pdir.display()
                );
            }
        }
        let live = live
            && previous
                .as_ref()
                .is_some_and(|p| p.ifindex == ifindex && p.netns_inode == inode);
        if let (true, false, Some(prev)) = (live, force, &previous) {
            Maps::open(&pdir).context("re-adopting the pinned maps")?;
            if prev.options != *opts {
                log::warn!(
                    "{iface}: re-adopted with the options it was loaded with ({:?}); use --force to reload with new ones",
                    prev.options
                );
            }
            return Ok(AttachOutcome::Readopted {
                prog_id: link_prog.unwrap_or(0),
            });
        }
        // Stale (interface gone and recreated, program detached) or --force: reload.
        remove_pins(iface)?;
    } else if pdir.exists() {
        remove_pins(iface)?;
    }

    let prog_id = load_and_attach(iface, ifindex, opts)
        .with_context(|| format!("attaching rsplb to {iface}"))?;

    // Keep the configuration (VIPs, elements) across a forced reload when it still fits.
    let mut state = State::new(iface, ifindex, inode, netns_name, opts.clone());
    if let Some(prev) = previous {
        if prev.vip_slots.next_fresh <= opts.max_vips
            && prev.element_slots.next_fresh <= opts.max_elements
        {
            state.vips = prev.vips;
            state.elements = prev.elements;
            state.pools = prev.pools;
            state.vip_slots = prev.vip_slots;
            state.vip_slots.max = opts.max_vips;
            state.element_slots = prev.element_slots;
            state.element_slots.max = opts.max_elements;
        } else {
            log::warn!(
                "{iface}: the previous configuration does not fit the new limits; starting empty"
            );
        }
    }
    state.save(&state_path)?;
    drop(_lock);
    if !state.vips.is_empty() || !state.elements.is_empty() {
        let mut b = crate::control::Balancer::open(iface)?;
        b.resync()?;
    }
    Ok(AttachOutcome::Loaded { prog_id })
}

fn load_and_attach(iface: &str, ifindex: u32, opts: &AttachOptions) -> Result<u32> {
    let maglev_entries = u32::try_from(
        2 * opts.max_vips as u64 * rsplb_common::maglev_blocks(opts.maglev_size) as u64,
    )?;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(maps::VIPS, opts.max_vips)
        .map_max_entries(maps::ELEMENTS, opts.max_elements)
        .map_max_entries(maps::ELEMENT_STATS, opts.max_elements)
        .map_max_entries(maps::VIP_STATS, opts.max_vips)
        .map_max_entries(maps::MAGLEV, maglev_entries)
        .map_max_entries(maps::FLOWS, rsplb_common::flow_sets(opts.flow_capacity))
        .map_max_entries(maps::NAT_REVERSE, opts.nat_capacity)
        .map_max_entries(maps::NAT_EMBRYONIC, (opts.nat_capacity / 4).max(1))
        .load(crate::XDP_OBJECT)
        .context("loading the XDP object (maps and BTF)")?;
    let pdir = pin_dir(iface);
    fs::create_dir_all(&pdir).with_context(|| format!("creating {}", pdir.display()))?;
    let result = (|| -> Result<u32> {
        for name in maps::ALL {
            let map = ebpf
                .map(name)
                .ok_or_else(|| anyhow!("the XDP object has no map {name}"))?;
            map.pin(pdir.join(name))
                .with_context(|| format!("pinning {name} at {}", pdir.display()))?;
        }
        let mut m = Maps::open_new(&pdir)?;
        m.write_config(&opts.config())?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| anyhow!("the XDP object has no program {PROGRAM_NAME}"))?
            .try_into()
            .context("program type")?;
        prog.load()
            .context("the kernel verifier rejected the XDP program")?;
        let mode = if opts.generic {
            XdpMode::Skb
        } else {
            XdpMode::Driver
        };
        let link_id = prog.attach_to_if_index(ifindex, mode).map_err(|e| {
            let busy = matches!(&e, ProgramError::SyscallError(s)
                if matches!(s.io_error.raw_os_error(), Some(libc::EBUSY) | Some(libc::EEXIST)));
            if busy {
                anyhow!(
                    "interface `{iface}` already has an XDP program attached (not by rsplb): {e}"
                )
            } else {
                anyhow::Error::new(e).context(format!(
                    "attaching in {} mode",
                    if opts.generic {
                        "generic (SKB)"
                    } else {
                        "native (driver)"
                    }
                ))
            }
        })?;
        let link = prog.take_link(link_id)?;
        let fd_link = FdLink::try_from(link).context(
            "the kernel attached XDP without a bpf link (needs Linux 5.9+); cannot pin it",
        )?;
        let prog_id = fd_link.info().map(|i| i.program_id()).unwrap_or(0);
        fd_link
            .pin(pdir.join(LINK_PIN))
            .context("pinning the XDP link")?;
        Ok(prog_id)
    })();
    if result.is_err() {
        let _ = remove_pins(iface);
    }
    result
}

/// Removes the program (by unpinning its link), the maps and the state.
pub fn detach(iface: &str) -> Result<()> {
    require_root("detaching XDP")?;
    let pdir = pin_dir(iface);
    let sdir = state_dir(iface);
    if !pdir.exists() && !sdir.exists() {
        bail!(
            "`{iface}` is not attached by rsplb (nothing under {})",
            pdir.display()
        );
    }
    {
        let _lock = StateLock::acquire(&sdir)?;
        remove_pins(iface)?;
        for f in ["state.json"] {
            match fs::remove_file(sdir.join(f)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", sdir.display())),
            }
        }
    }
    let _ = fs::remove_file(sdir.join("lock"));
    match fs::remove_dir_all(&sdir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", sdir.display())),
    }
}

/// Interfaces with a pin directory (attached by rsplb).
pub fn attached_interfaces() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(PIN_ROOT)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join(LINK_PIN).exists())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
