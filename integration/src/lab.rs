//! The "one L2 segment" lab: namespaces `client`, `lb` (the balancer), `s1..sN` (servers) and `sw`
//! (a switch: a Linux bridge). Every host has one veth whose peer is a port of the bridge.
//!
//! - The client routes the VIP prefixes via the balancer's address on the segment.
//! - Servers hold the lab's DSR VIPs on their loopback (ARP for them is never answered:
//!   `arp_ignore=1`, `arp_announce=2`), so they answer the client directly over the bridge.
//!   In NAT mode they need nothing: replies go to the balancer's own address (its SNAT address).
//! - `rp_filter` is off everywhere; checksum offload is off on the hosts' veths (a frame that XDP
//!   forwards must carry a complete checksum, as from a real NIC).
//! - XDP_TX on the balancer's veth needs the peer (the bridge port in `sw`) to take XDP frames:
//!   the lab attaches a trivial XDP_PASS program to that peer. GRO on the peer
//!   (`ethtool -K <peer> gro on`) is not enough on this kernel (6.18): the veth then counts the
//!   frames as transmitted but they never reach the peer (tests/xdp_tx_napi.rs shows both).
//!
//! Addresses: segment 198.18.K.0/24 and fd00:K::/64 (balancer .1/::1, client .2/::2, server i at
//! .(10+i)/::(10+i)), VIPs 198.19.K.(100+j) and fd00:1:K::(100+j), where K is unique per lab.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    cli::{Rsplb, rsplb_bin, sibling_bin},
    netns::{ChildGuard, LabId, Netns},
    server::{CONTROL_PORT, ServerConfig, ServerHandle},
    xdp_tools::LabXdp,
};

/// How the lab makes the balancer's veth peer take XDP_TX'd frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PeerNapi {
    /// A trivial XDP_PASS program on the peer (the default: the only way that works here).
    #[default]
    XdpPass,
    /// `ethtool -K <peer> gro on`: frames count as transmitted but are lost on this kernel.
    Gro,
    /// Nothing: the veth drops XDP_TX'd frames as errors.
    None,
}

/// What to build.
#[derive(Clone, Debug)]
pub struct LabConfig {
    /// Number of servers (s1..sN).
    pub servers: usize,
    /// Ports every server listens on, with TCP and UDP.
    pub ports: Vec<u16>,
    /// Ports every server answers HTTP on.
    pub http_ports: Vec<u16>,
    /// How many DSR VIP addresses (per family) the servers hold on their loopback.
    pub vips: u8,
    pub peer_napi: PeerNapi,
    /// The test server binary (default: found next to the running executable).
    pub server_bin: Option<PathBuf>,
    /// The rsplb binary (default: [`rsplb_bin`]).
    pub rsplb_bin: Option<PathBuf>,
    /// Print progress lines ("creating namespaces...") on stdout.
    pub verbose: bool,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self {
            servers: 3,
            ports: vec![80],
            http_ports: Vec::new(),
            vips: 2,
            peer_napi: PeerNapi::XdpPass,
            server_bin: None,
            rsplb_bin: None,
            verbose: false,
        }
    }
}

/// A host of the lab.
#[derive(Debug)]
pub struct Host {
    pub netns: Netns,
    /// Its interface on the segment.
    pub iface: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    pub mac: String,
}

/// The lab. Dropping it stops the servers, detaches rsplb (if attached) and removes every
/// namespace, also when a test panics.
#[derive(Debug)]
pub struct Lab {
    pub id: LabId,
    /// Running servers, in the order s1..sN (see [`Lab::restart_server`]).
    pub servers: Vec<ServerHandle>,
    server_bin: PathBuf,
    server_configs: Vec<ServerConfig>,
    daemons: Vec<ChildGuard>,
    attached: bool,
    _peer_xdp: Option<LabXdp>,
    pub rsplb: Rsplb,
    pub client: Host,
    pub lb: Host,
    pub server_hosts: Vec<Host>,
    pub sw: Netns,
    pub ports: Vec<u16>,
    pub vips: u8,
    /// Further balancers on the segment ([`Lab::add_balancer`]).
    pub balancers: Vec<Balancer>,
    rsplb_path: PathBuf,
}

/// A further balancer host on the lab's segment (`lb2`, `lb3`, ...: host bytes 3, 4, ...), with
/// rsplb of its own (attach, daemons). Dropped (detached, its pins removed) with the lab.
#[derive(Debug)]
pub struct Balancer {
    pub host: Host,
    pub rsplb: Rsplb,
    daemons: Vec<ChildGuard>,
    attached: bool,
    _peer_xdp: LabXdp,
}

impl Balancer {
    /// `rsplb attach` (native mode) on this balancer's interface.
    pub fn attach(&mut self, extra: &[&str]) -> Result<()> {
        self.attached = true;
        self.rsplb.attach(extra)
    }

    /// Starts `rsplb run` for this balancer; stopped when the lab drops.
    pub fn start_daemon(&mut self, extra: &[&str]) -> Result<()> {
        self.daemons
            .push(ChildGuard::spawn(self.rsplb.daemon_command(extra))?);
        Ok(())
    }

    /// Fails if a daemon of this balancer has exited.
    pub fn check_daemons(&mut self) -> Result<()> {
        self.daemons
            .iter_mut()
            .try_for_each(ChildGuard::check_running)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.daemons.clear();
        if self.attached
            && let Err(e) = self.rsplb.detach()
        {
            eprintln!("warning: rsplb detach {}: {e:#}", self.host.iface);
        }
        for root in ["/sys/fs/bpf/rsplb", "/run/rsplb"] {
            let dir = PathBuf::from(root).join(&self.host.iface);
            if dir.exists() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
}

/// Sends a datagram from `ns` to each of `targets` (the discard port, where nobody listens):
/// the datagram only makes `ns` resolve the target's link-layer address.
fn poke(ns: &Netns, targets: &[IpAddr]) -> Result<()> {
    let t = targets.to_vec();
    ns.run(move || {
        for addr in t {
            let bind: SocketAddr = if addr.is_ipv4() {
                "0.0.0.0:0".parse()?
            } else {
                "[::]:0".parse()?
            };
            let s = std::net::UdpSocket::bind(bind)?;
            let _ = s.send_to(b"x", SocketAddr::new(addr, 9));
        }
        Ok(())
    })
}

/// Whether `ns` holds a link-layer address for each of `targets` on `iface`; also the neighbour
/// tables (IPv4, IPv6) for error messages.
fn resolved(ns: &Netns, iface: &str, targets: &[IpAddr]) -> Result<(bool, String)> {
    let all = format!(
        "{}\n{}",
        ns.ip(&["neigh", "show", "dev", iface])?,
        ns.ip(&["-6", "neigh", "show", "dev", iface])?
    );
    let ok = targets.iter().all(|a| {
        all.lines()
            .any(|l| l.split_whitespace().next() == Some(&a.to_string()) && l.contains("lladdr"))
    });
    Ok((ok, all))
}

/// Pokes `targets` from `ns` until `ns` has resolved every one on `iface`, for at most 10 s.
fn resolve_from(ns: &Netns, iface: &str, targets: &[IpAddr]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        poke(ns, targets)?;
        std::thread::sleep(Duration::from_millis(50));
        let (ok, all) = resolved(ns, iface, targets)?;
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not resolve every host of the segment within 10 s:\n{all}",
                ns.name()
            );
        }
    }
}

/// A host on the segment: namespace `role`, a veth `iface` whose peer `p-<role>` is a port of
/// the bridge, addresses 198.18.K.<host_byte> and fd00:K::<host_byte>.
fn make_host(id: &LabId, sw: &Netns, role: &str, iface: &str, host_byte: u8) -> Result<Host> {
    let k = id.subnet();
    let netns = Netns::create(&id.netns(role))?;
    let port = format!("p-{role}");
    sw.ip(&[
        "link",
        "add",
        &port,
        "type",
        "veth",
        "peer",
        "name",
        iface,
        "netns",
        netns.name(),
    ])
    .with_context(|| format!("creating the veth pair of {role}"))?;
    sw.ip(&["link", "set", &port, "master", "br0", "up"])?;
    let mac = format!("02:72:{k:02x}:00:00:{host_byte:02x}");
    let v4 = Ipv4Addr::new(198, 18, k, host_byte);
    let v6 = Ipv6Addr::new(0xfd00, k as u16, 0, 0, 0, 0, 0, host_byte as u16);
    netns.ip(&["link", "set", iface, "address", &mac])?;
    for key in ["all", "default", "lo"] {
        netns.sysctl(&format!("net.ipv4.conf.{key}.rp_filter"), "0")?;
    }
    netns.ip(&["addr", "add", &format!("{v4}/24"), "dev", iface])?;
    netns.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{v6}/64"),
        "dev",
        iface,
        "nodad",
    ])?;
    netns.ip(&["link", "set", iface, "up"])?;
    // A veth hands its peer packets whose checksums are still to be computed
    // (CHECKSUM_PARTIAL); a frame that XDP forwards loses that mark and the receiver then
    // drops it for a bad checksum. Real NICs fill checksums in: make the veths do it too.
    netns
        .exec("ethtool", &["-K", iface, "tx", "off"])
        .with_context(|| format!("turning checksum offload off on {iface} in {role}"))?;
    Ok(Host {
        netns,
        iface: iface.to_string(),
        v4,
        v6,
        mac,
    })
}

impl Lab {
    /// Builds the lab with `cfg` and starts its servers. Everything created so far is removed if a
    /// step fails.
    pub fn build(cfg: LabConfig) -> Result<Self> {
        static CLEANUP: std::sync::Once = std::sync::Once::new();
        CLEANUP.call_once(|| {
            let n = crate::netns::cleanup_leftovers();
            if n > 0 {
                eprintln!("removed {n} leftovers of earlier crashed runs");
            }
        });
        let id = LabId::next();
        let k = id.subnet();
        let say = |m: &str| {
            if cfg.verbose {
                println!("==> {m}");
            }
        };
        // A lab without rsplb (tooling tests) is fine: commands then fail with a clear error.
        let rsplb_path = match &cfg.rsplb_bin {
            Some(p) => p.clone(),
            None => rsplb_bin().unwrap_or_else(|_| PathBuf::from("rsplb")),
        };
        let server_bin = match &cfg.server_bin {
            Some(p) => p.clone(),
            None => sibling_bin("rsplb-testserver")?,
        };

        say(&format!(
            "creating namespaces {}{{client,lb,sw,s1..s{}}}...",
            id.netns(""),
            cfg.servers
        ));
        let sw = Netns::create(&id.netns("sw"))?;
        sw.ip(&["link", "add", "br0", "type", "bridge"])?;
        // No STP, no multicast snooping: ports forward at once and NDP floods like ARP.
        sw.ip(&[
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "mcast_snooping",
            "0",
        ])?;
        sw.ip(&["link", "set", "br0", "up"])?;

        let lb_iface = id.iface("");
        let make_host =
            |role: &str, iface: &str, host_byte: u8| make_host(&id, &sw, role, iface, host_byte);

        say("creating veth pairs and the bridge...");
        let lb = make_host("lb", &lb_iface, 1)?;
        let client = make_host("client", "eth0", 2)?;
        let mut server_hosts = Vec::new();
        for i in 1..=cfg.servers {
            server_hosts.push(make_host(&format!("s{i}"), "eth0", 10 + i as u8)?);
        }

        // The client reaches the VIPs through the balancer.
        client.netns.ip(&[
            "route",
            "add",
            &format!("198.19.{k}.0/24"),
            "via",
            &lb.v4.to_string(),
        ])?;
        client.netns.ip(&[
            "-6",
            "route",
            "add",
            &format!("fd00:1:{k:x}::/64"),
            "via",
            &lb.v6.to_string(),
        ])?;
        let mut peer_xdp = None;
        match cfg.peer_napi {
            PeerNapi::XdpPass => {
                peer_xdp = Some(
                    LabXdp::attach(sw.name(), "p-lb", "lab_pass")
                        .context("attaching XDP_PASS to the balancer's veth peer")?,
                );
            }
            PeerNapi::Gro => {
                sw.exec("ethtool", &["-K", "p-lb", "gro", "on"])
                    .context("turning GRO on for the balancer's veth peer")?;
            }
            PeerNapi::None => {}
        }

        // DSR: servers hold the VIPs on loopback and never answer ARP/NDP for them.
        for h in &server_hosts {
            h.netns.sysctl("net.ipv4.conf.all.arp_ignore", "1")?;
            h.netns.sysctl("net.ipv4.conf.all.arp_announce", "2")?;
            for j in 0..cfg.vips {
                h.netns
                    .ip(&["addr", "add", &format!("{}/32", vip4(k, j)), "dev", "lo"])?;
                h.netns.ip(&[
                    "-6",
                    "addr",
                    "add",
                    &format!("{}/128", vip6(k, j)),
                    "dev",
                    "lo",
                    "nodad",
                ])?;
            }
        }

        say("starting test servers...");
        let mut servers = Vec::new();
        let mut server_configs = Vec::new();
        for (i, h) in server_hosts.iter().enumerate() {
            let mut udp = Vec::new();
            for &port in &cfg.ports {
                udp.push(SocketAddr::new(h.v4.into(), port));
                udp.push(SocketAddr::new(h.v6.into(), port));
                for j in 0..cfg.vips {
                    udp.push(SocketAddr::new(vip4(k, j).into(), port));
                    udp.push(SocketAddr::new(vip6(k, j).into(), port));
                }
            }
            let scfg = ServerConfig {
                name: format!("s{}", i + 1),
                tcp_ports: cfg.ports.clone(),
                udp,
                http_ports: cfg.http_ports.clone(),
                control_port: CONTROL_PORT,
            };
            servers.push(ServerHandle::start(
                &h.netns,
                &server_bin.to_string_lossy(),
                &scfg,
            )?);
            server_configs.push(scfg);
        }

        let rsplb = Rsplb::new(rsplb_path.clone(), lb.netns.name(), &lb.iface);
        let lab = Self {
            id,
            servers,
            server_bin,
            server_configs,
            daemons: Vec::new(),
            attached: false,
            _peer_xdp: peer_xdp,
            rsplb,
            client,
            lb,
            server_hosts,
            sw,
            ports: cfg.ports,
            vips: cfg.vips,
            balancers: Vec::new(),
            rsplb_path,
        };
        say("resolving neighbours on the segment...");
        lab.warm_neighbours()?;
        Ok(lab)
    }

    /// Makes the balancer resolve every host's MAC (ARP and NDP), as any traffic would: the
    /// control plane takes next-hop MACs from the neighbour table.
    pub fn warm_neighbours(&self) -> Result<()> {
        let mut targets: Vec<IpAddr> = vec![self.client.v4.into(), self.client.v6.into()];
        for h in &self.server_hosts {
            targets.push(h.v4.into());
            targets.push(h.v6.into());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            poke(&self.lb.netns, &targets)?;
            std::thread::sleep(Duration::from_millis(50));
            let (ok, all) = resolved(&self.lb.netns, &self.lb.iface, &targets)?;
            if ok && self.servers_know_the_client()? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the balancer did not resolve every host of the segment within 10 s:\n{all}");
            }
        }
    }

    /// In DSR the servers answer the client directly: they resolve its addresses too, as on a
    /// network that has carried traffic before (an IPv6 neighbour solicitation racing a test's
    /// first SYN-ACK under load was seen to lose a first connection).
    fn servers_know_the_client(&self) -> Result<bool> {
        let client: Vec<IpAddr> = vec![self.client.v4.into(), self.client.v6.into()];
        let mut all_known = true;
        for h in &self.server_hosts {
            poke(&h.netns, &client)?;
            all_known &= resolved(&h.netns, &h.iface, &client)?.0;
        }
        Ok(all_known)
    }

    /// Adds a balancer host to the segment (`lb2` first, host byte 3), with an XDP_PASS program
    /// on its veth peer and its neighbours resolved; not attached. Returns its index in
    /// [`Lab::balancers`].
    pub fn add_balancer(&mut self) -> Result<usize> {
        let n = self.balancers.len() + 2;
        let role = format!("lb{n}");
        let iface = self.id.iface(&n.to_string());
        let host = make_host(&self.id, &self.sw, &role, &iface, n as u8 + 1)?;
        let peer_xdp = LabXdp::attach(self.sw.name(), &format!("p-{role}"), "lab_pass")
            .with_context(|| format!("attaching XDP_PASS to {role}'s veth peer"))?;
        let mut targets: Vec<IpAddr> = vec![self.client.v4.into(), self.client.v6.into()];
        for h in &self.server_hosts {
            targets.push(h.v4.into());
            targets.push(h.v6.into());
        }
        resolve_from(&host.netns, &host.iface, &targets)?;
        let rsplb = Rsplb::new(self.rsplb_path.clone(), host.netns.name(), &host.iface);
        self.balancers.push(Balancer {
            host,
            rsplb,
            daemons: Vec::new(),
            attached: false,
            _peer_xdp: peer_xdp,
        });
        Ok(self.balancers.len() - 1)
    }

    /// The lab's `j`-th IPv4 VIP address.
    pub fn vip4(&self, j: u8) -> Ipv4Addr {
        vip4(self.id.subnet(), j)
    }

    /// The lab's `j`-th IPv6 VIP address.
    pub fn vip6(&self, j: u8) -> Ipv6Addr {
        vip6(self.id.subnet(), j)
    }

    /// Stops the server of host `i` (0-based; its service stops answering, its host stays).
    pub fn stop_server(&mut self, i: usize) -> Result<()> {
        let name = format!("s{}", i + 1);
        let at = self
            .servers
            .iter()
            .position(|s| s.name == name)
            .with_context(|| format!("{name} is not running"))?;
        drop(self.servers.remove(at));
        Ok(())
    }

    /// Starts the server of host `i` (0-based) again, as the lab first started it.
    pub fn restart_server(&mut self, i: usize) -> Result<()> {
        let cfg = self
            .server_configs
            .get(i)
            .with_context(|| format!("the lab has no server {}", i + 1))?
            .clone();
        if self.servers.iter().any(|s| s.name == cfg.name) {
            bail!("{} is running", cfg.name);
        }
        let h = &self.server_hosts[i];
        let handle = ServerHandle::start(&h.netns, &self.server_bin.to_string_lossy(), &cfg)?;
        let at = self
            .servers
            .iter()
            .position(|s| (s.name.len(), &s.name) > (cfg.name.len(), &cfg.name))
            .unwrap_or(self.servers.len());
        self.servers.insert(at, handle);
        Ok(())
    }

    pub fn server(&self, name: &str) -> Option<&Host> {
        let i: usize = name.strip_prefix('s')?.parse().ok()?;
        self.server_hosts.get(i.checked_sub(1)?)
    }

    /// `rsplb attach <lb iface>` (native mode), remembered so the lab detaches on drop.
    pub fn attach(&mut self, extra: &[&str]) -> Result<()> {
        self.attached = true;
        self.rsplb.attach(extra)
    }

    /// `rsplb detach <lb iface>`.
    pub fn detach(&mut self) -> Result<()> {
        self.rsplb.detach()?;
        self.attached = false;
        Ok(())
    }

    /// Starts `rsplb run` (the daemon) for the balancer interface; stopped when the lab drops.
    pub fn start_daemon(&mut self, extra: &[&str]) -> Result<()> {
        self.daemons
            .push(ChildGuard::spawn(self.rsplb.daemon_command(extra))?);
        Ok(())
    }

    /// As [`Lab::start_daemon`], with the daemon's stderr (its log) written to `log`.
    pub fn start_daemon_logged(&mut self, extra: &[&str], log: &std::path::Path) -> Result<()> {
        let cmd = self.rsplb.daemon_command(extra);
        let file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        self.daemons
            .push(ChildGuard::spawn_with_stderr(cmd, file.into())?);
        Ok(())
    }

    /// Fails if a daemon started by [`Lab::start_daemon`] has exited.
    pub fn check_daemons(&mut self) -> Result<()> {
        self.daemons
            .iter_mut()
            .try_for_each(ChildGuard::check_running)
    }

    /// Stops the daemons started by [`Lab::start_daemon`] (SIGTERM; the dataplane stays).
    pub fn stop_daemons(&mut self) {
        self.daemons.clear();
    }

    /// Is an XDP program attached to the balancer's interface?
    pub fn xdp_attached(&self) -> Result<bool> {
        let out = self
            .lb
            .netns
            .ip(&["-d", "link", "show", "dev", &self.lb.iface])?;
        Ok(out.contains("prog/xdp") || out.contains(" xdp"))
    }

    /// rsplb's pin directory for the balancer interface.
    pub fn pin_dir(&self) -> PathBuf {
        PathBuf::from("/sys/fs/bpf/rsplb").join(&self.lb.iface)
    }

    /// rsplb's state directory for the balancer interface.
    pub fn state_dir(&self) -> PathBuf {
        PathBuf::from("/run/rsplb").join(&self.lb.iface)
    }

    /// Counts, with nftables in each server's namespace, the TCP and UDP packets arriving for
    /// `port` and those sent from it: what each element saw, to compare with rsplb's counters.
    /// Call it once per port.
    pub fn count_packets_at_servers(&self, port: u16) -> Result<()> {
        for h in &self.server_hosts {
            let script = format!(
                "add table inet rsplbcount\n\
                 add counter inet rsplbcount p{port}\n\
                 add chain inet rsplbcount input {{ type filter hook prerouting priority -300; policy accept; }}\n\
                 add rule inet rsplbcount input meta l4proto {{ tcp, udp }} th dport {port} counter name p{port}\n\
                 add counter inet rsplbcount o{port}\n\
                 add chain inet rsplbcount output {{ type filter hook output priority -300; policy accept; }}\n\
                 add rule inet rsplbcount output meta l4proto {{ tcp, udp }} th sport {port} counter name o{port}\n"
            );
            let path = std::env::temp_dir().join(format!("{}-nft-{port}", h.netns.name()));
            std::fs::write(&path, script)?;
            let res = h.netns.exec("nft", &["-f", &path.to_string_lossy()]);
            let _ = std::fs::remove_file(&path);
            res.with_context(|| format!("installing an nft counter in {}", h.netns.name()))?;
        }
        Ok(())
    }

    /// Packets counted by [`Lab::count_packets_at_servers`] at server `i` (0-based) for `port`.
    pub fn packets_at_server(&self, i: usize, port: u16) -> Result<ServerPackets> {
        let h = self.server_hosts.get(i).context("no such server")?;
        let read = |name: String| -> Result<u64> {
            let out = h
                .netns
                .exec("nft", &["list", "counter", "inet", "rsplbcount", &name])?;
            out.split_whitespace()
                .skip_while(|w| *w != "packets")
                .nth(1)
                .and_then(|n| n.parse().ok())
                .with_context(|| format!("no packet count in {out:?}"))
        };
        Ok(ServerPackets {
            received: read(format!("p{port}"))?,
            sent: read(format!("o{port}"))?,
        })
    }
}

/// TCP and UDP packets a server received on a port and sent from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerPackets {
    pub received: u64,
    pub sent: u64,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.balancers.clear();
        self.daemons.clear();
        self.servers.clear();
        if self.attached
            && let Err(e) = self.rsplb.detach()
        {
            eprintln!("warning: rsplb detach {}: {e:#}", self.lb.iface);
        }
        // Whatever rsplb left for this lab's interface (its name is unique to this lab).
        for dir in [self.pin_dir(), self.state_dir()] {
            if dir.exists() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        // Namespaces (fields) drop after this: servers, then the switch.
    }
}

/// IPv4 VIP `j` of the lab with subnet byte `k`.
pub fn vip4(k: u8, j: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, k, 100 + j)
}

/// IPv6 VIP `j` of the lab with subnet byte `k`.
pub fn vip6(k: u8, j: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 1, k as u16, 0, 0, 0, 0, 0x100 + j as u16)
}
