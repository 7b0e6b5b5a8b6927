//! The daemon's configuration file: `rsplb run --config /etc/rsplb/rsplb.toml` declares the
//! interface, the VIPs, the pools (their elements, health check and health policy), the
//! embedded registrar and the metrics address; `rsplb config check FILE` validates it without
//! touching anything. `deploy/rsplb.toml` is a commented example.
//!
//! Reading is two steps, each of which names the file, line and column of every problem:
//! - [`toml`] and serde (`deny_unknown_fields` everywhere, so a misspelt key is an error, not a
//!   silently ignored default) check the syntax and each value's form (addresses, VIPs, modes);
//! - [`validate`] checks what the values mean together (a VIP naming an undeclared pool, a NAT
//!   VIP without an SNAT address, a family mismatch, a duplicate, a check without a port, ...),
//!   and each problem is located by its key path in the document (`toml_edit` keeps spans).
//!
//! [`apply`] turns a valid file into control-plane commands; the daemon applies them as one
//! change at start and on every reload, so a file is applied whole or not at all.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::{IpAddr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use rsplb_registrar::config::RegistrarConfig;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::{
    addr::{ElementAddr, Mode, PoolHandle, Protocol, Vip, VipHash, parse_port_range},
    allow::Prefix,
    state::{AttachOptions, NoneHealthy, OnFailure, PoolPolicy},
};

/// A key path: `path![("vip"), (i), ("pool")]`.
macro_rules! path {
    ($(($s:expr)),* $(,)?) => { vec![$(Seg::from($s)),*] };
}

pub mod apply;

pub use crate::dataplane::events::XdpLogLevel;

macro_rules! from_str_deserialize {
    ($($t:ty),*) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
from_str_deserialize!(Vip, ElementAddr, PoolHandle);

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub interface: InterfaceDecl,
    /// Serve Prometheus metrics at `http://ADDR:PORT/metrics`.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Seconds between next-hop refreshes and NAT expiry passes (and the registrar
    /// reconciler's repair pass).
    #[serde(default = "default_interval")]
    pub interval_s: f64,
    /// The level of the XDP program's event log (`off`, `error`, `warn`, `info`, `debug`,
    /// `trace`; default `warn`), printed by the daemon with target `xdp`. Applied by a reload.
    #[serde(default)]
    pub xdp_log: XdpLogLevel,
    #[serde(default, rename = "vip")]
    pub vips: Vec<VipDecl>,
    #[serde(default, rename = "pool")]
    pub pools: BTreeMap<String, PoolDecl>,
    /// The embedded RSerPool registrar (the format of `rsp-registrar --config`); absent: none.
    #[serde(default)]
    pub registrar: Option<RegistrarConfig>,
}

fn default_interval() -> f64 {
    5.0
}

/// The interface the daemon attaches and serves, and how.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceDecl {
    pub name: String,
    #[serde(default)]
    pub xdp_mode: XdpMode,
    pub maglev_size: Option<u32>,
    pub max_vips: Option<u32>,
    pub max_elements: Option<u32>,
    pub flow_capacity: Option<u32>,
    /// `MIN-MAX`.
    pub nat_ports: Option<String>,
    pub dsr_tcp_timeout_s: Option<u32>,
    pub dsr_udp_timeout_s: Option<u32>,
    pub nat_tcp_timeout_s: Option<u32>,
    pub nat_udp_timeout_s: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Driver mode.
    #[default]
    Native,
    /// SKB mode (any interface, slower).
    Generic,
}

impl InterfaceDecl {
    /// The attach options this declares (defaults for what it leaves out).
    pub fn attach_options(&self) -> Result<AttachOptions, String> {
        let d = AttachOptions::default();
        let (nat_port_min, nat_port_max) = match &self.nat_ports {
            Some(r) => parse_port_range(r)?,
            None => (d.nat_port_min, d.nat_port_max),
        };
        Ok(AttachOptions {
            maglev_size: self.maglev_size.unwrap_or(d.maglev_size),
            max_vips: self.max_vips.unwrap_or(d.max_vips),
            max_elements: self.max_elements.unwrap_or(d.max_elements),
            flow_capacity: self.flow_capacity.unwrap_or(d.flow_capacity),
            nat_port_min,
            nat_port_max,
            generic: self.xdp_mode == XdpMode::Generic,
            dsr_tcp_timeout_s: self.dsr_tcp_timeout_s.unwrap_or(d.dsr_tcp_timeout_s),
            dsr_udp_timeout_s: self.dsr_udp_timeout_s.unwrap_or(d.dsr_udp_timeout_s),
            nat_tcp_timeout_s: self.nat_tcp_timeout_s.unwrap_or(d.nat_tcp_timeout_s),
            nat_udp_timeout_s: self.nat_udp_timeout_s.unwrap_or(d.nat_udp_timeout_s),
            ..d
        })
    }
}

/// One virtual service (the flags of `rsplb vip add`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipDecl {
    /// `ADDR:PORT/PROTO`.
    pub address: Vip,
    pub pool: PoolHandle,
    #[serde(default)]
    pub mode: Mode,
    /// NAT: the balancer's source address toward the elements.
    pub snat: Option<IpAddr>,
    /// NAT: idle seconds before a translation expires (default: the interface's).
    pub nat_timeout_s: Option<u32>,
    /// Source prefixes that may reach the VIP (`"198.18.0.0/16"`, a bare address); absent or
    /// empty: everyone. Others are dropped in XDP (`drop_source_not_allowed`).
    #[serde(default)]
    pub allow: Vec<Prefix>,
    /// How new flows are placed: `flow` (the 5-tuple, the default) or `client` (the client's
    /// address: all of one client's connections go to one element while the pool is unchanged).
    #[serde(default)]
    pub hash: VipHash,
}

/// One pool: elements given by hand (the registrar adds the registered ones), its check and
/// its health policy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolDecl {
    /// `ADDR` or `ADDR:PORT`, weight 1.
    #[serde(default)]
    pub elements: Vec<ElementAddr>,
    /// `[[pool.NAME.element]]` tables: `address` and `weight`.
    #[serde(default, rename = "element")]
    pub weighted: Vec<ElementDecl>,
    /// When fewer than `min_healthy` elements are healthy, the VIPs use this pool's.
    pub backup: Option<PoolHandle>,
    #[serde(default = "one")]
    pub min_healthy: u32,
    /// Seconds over which an element that comes back ramps from 1 % to its full weight.
    #[serde(default)]
    pub slow_start_s: f64,
    #[serde(default)]
    pub on_failure: OnFailure,
    #[serde(default)]
    pub when_none_healthy: NoneHealthy,
    pub check: Option<CheckDecl>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElementDecl {
    pub address: ElementAddr,
    #[serde(default = "one_u16")]
    pub weight: u16,
}

fn one_u16() -> u16 {
    1
}

impl PoolDecl {
    /// Every element the pool declares, with its weight and its key path.
    pub fn all_elements(&self, pool: &str) -> Vec<(ElementAddr, u16, Vec<Seg>)> {
        let plain = self
            .elements
            .iter()
            .enumerate()
            .map(|(i, a)| (*a, 1, path![("pool"), (pool), ("elements"), (i)]));
        let weighted = self.weighted.iter().enumerate().map(|(i, e)| {
            (
                e.address,
                e.weight,
                path![("pool"), (pool), ("element"), (i), ("address")],
            )
        });
        plain.chain(weighted).collect()
    }

    /// The pool's health policy as the control plane keeps it.
    pub fn policy(&self) -> PoolPolicy {
        PoolPolicy {
            min_healthy: self.min_healthy,
            backup: self.backup.as_ref().map(|b| b.to_string()),
            on_failure: self.on_failure,
            when_none_healthy: self.when_none_healthy,
        }
    }

    pub fn slow_start(&self) -> Duration {
        Duration::from_secs_f64(self.slow_start_s.max(0.0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Tcp,
    Udp,
    Http,
    Https,
    Exec,
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckKind::Tcp => "tcp",
            CheckKind::Udp => "udp",
            CheckKind::Http => "http",
            CheckKind::Https => "https",
            CheckKind::Exec => "exec",
        })
    }
}

/// A pool's balancer-side health check, run by the daemon against every element of the pool
/// (its address, and the check's port, else the element's, else the VIP's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckDecl {
    #[serde(rename = "type")]
    pub kind: CheckKind,
    pub port: Option<u16>,
    #[serde(default = "default_check_interval")]
    pub interval_ms: u64,
    /// While an element is failing (down, or up with a failed check): default a quarter of
    /// `interval_ms`.
    pub fast_interval_ms: Option<u64>,
    #[serde(default = "default_check_timeout")]
    pub timeout_ms: u64,
    /// Successes in a row that bring a down element back.
    #[serde(default = "default_rise")]
    pub rise: u32,
    /// Failures in a row that take an up element out.
    #[serde(default = "default_fall")]
    pub fall: u32,
    /// udp: the datagram sent.
    pub send: Option<String>,
    /// udp: text the reply must contain (absent: any reply).
    pub expect: Option<String>,
    /// http, https: the path (default `/`).
    pub path: Option<String>,
    /// http, https: the Host header and TLS server name (default: the element's address).
    pub host: Option<String>,
    /// http, https: the status the answer must have (default 200).
    pub expect_status: Option<u16>,
    /// http, https: text the body must contain.
    pub body_contains: Option<String>,
    /// https: verify the element's certificate against this PEM CA bundle (absent: the
    /// certificate is not verified, as most balancers' checks do).
    pub ca: Option<PathBuf>,
    /// exec: the program and its arguments; it gets RSPLB_ELEMENT_ADDR, RSPLB_ELEMENT_PORT and
    /// RSPLB_POOL in its environment, and exit status 0 means healthy.
    pub command: Option<Vec<String>>,
}

fn default_check_interval() -> u64 {
    2000
}
fn default_check_timeout() -> u64 {
    1000
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

impl CheckDecl {
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
    pub fn fast_interval(&self) -> Duration {
        Duration::from_millis(
            self.fast_interval_ms
                .unwrap_or((self.interval_ms / 4).max(10)),
        )
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Seg {
        Seg::Key(s.to_string())
    }
}
impl From<&String> for Seg {
    fn from(s: &String) -> Seg {
        Seg::Key(s.clone())
    }
}
impl From<usize> for Seg {
    fn from(i: usize) -> Seg {
        Seg::Index(i)
    }
}

/// A problem found by [`validate`], at a key path; `first` names an earlier declaration (of a
/// duplicate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: Vec<Seg>,
    pub message: String,
    pub first: Option<Vec<Seg>>,
}

fn problem(path: Vec<Seg>, message: impl Into<String>) -> Problem {
    Problem {
        path,
        message: message.into(),
        first: None,
    }
}

/// One located problem: `FILE:LINE:COLUMN: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", show_problems(.0))]
    Invalid(Vec<Located>),
}

fn show_problems(p: &[Located]) -> String {
    let lines: Vec<String> = p.iter().map(|l| l.to_string()).collect();
    match p.len() {
        1 => lines[0].clone(),
        n => format!("{n} problems:\n{}", lines.join("\n")),
    }
}

impl ConfigError {
    /// The located problems (empty for a file that could not be read).
    pub fn problems(&self) -> &[Located] {
        match self {
            ConfigError::Invalid(p) => p,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// Line and column (1-based, in characters) of byte `offset` of `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, l)| l)
        .chars()
        .count()
        + 1;
    (line, column)
}

/// The span of the value at `path` in `doc`, or of its nearest ancestor that has one.
fn span_of(doc: &toml_edit::ImDocument<&str>, path: &[Seg]) -> Option<Range<usize>> {
    use toml_edit::{Item, Table, Value};
    enum Node<'a> {
        Item(&'a Item),
        Table(&'a Table),
        Value(&'a Value),
    }
    fn span(n: &Node<'_>) -> Option<Range<usize>> {
        match n {
            Node::Item(i) => i.span(),
            Node::Table(t) => t.span(),
            Node::Value(v) => v.span(),
        }
    }
    fn table<'a>(n: &Node<'a>) -> Option<&'a Table> {
        match *n {
            Node::Item(Item::Table(t)) | Node::Table(t) => Some(t),
            _ => None,
        }
    }
    fn value<'a>(n: &Node<'a>) -> Option<&'a Value> {
        match *n {
            Node::Item(Item::Value(v)) | Node::Value(v) => Some(v),
            _ => None,
        }
    }
    let mut node = Node::Item(doc.as_item());
    let mut best = None;
    for seg in path {
        let next = match seg {
            Seg::Key(k) => match (table(&node), value(&node)) {
                (Some(t), _) => t.get(k).map(Node::Item),
                (_, Some(v)) => v.as_inline_table().and_then(|t| t.get(k)).map(Node::Value),
                _ => None,
            },
            Seg::Index(i) => match (&node, value(&node)) {
                (Node::Item(Item::ArrayOfTables(a)), _) => a.get(*i).map(Node::Table),
                (_, Some(v)) => v.as_array().and_then(|a| a.get(*i)).map(Node::Value),
                _ => None,
            },
        };
        let Some(next) = next else { break };
        if let Some(s) = span(&next) {
            best = Some(s);
        } else if let (Some(t), Seg::Key(k)) = (table(&node), seg)
            && let Some(s) = t.key(k).and_then(|k| k.span())
        {
            best = Some(s);
        }
        node = next;
    }
    best
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates `text` (read from `file`, for the messages).
pub fn parse(text: &str, file: &str) -> Result<ConfigFile, ConfigError> {
    let at = |offset: Option<usize>, message: String| {
        let (line, column) = offset.map_or((1, 1), |o| line_column(text, o));
        Located {
            file: file.to_string(),
            line,
            column,
            message,
        }
    };
    let cfg: ConfigFile = toml::from_str(text).map_err(|e| {
        ConfigError::Invalid(vec![at(
            e.span().map(|s| s.start),
            e.message().trim_end().to_string(),
        )])
    })?;
    let problems = validate(&cfg);
    if problems.is_empty() {
        return Ok(cfg);
    }
    let doc = toml_edit::ImDocument::parse(text).ok();
    let locate = |p: &[Seg]| doc.as_ref().and_then(|d| span_of(d, p)).map(|s| s.start);
    let mut located: Vec<Located> = problems
        .into_iter()
        .map(|p| {
            let mut message = p.message;
            if let Some(first) = p.first.as_deref().and_then(&locate) {
                message.push_str(&format!(
                    " (first declared at line {})",
                    line_column(text, first).0
                ));
            }
            at(locate(&p.path), message)
        })
        .collect();
    located.sort_by_key(|l| (l.line, l.column));
    Err(ConfigError::Invalid(located))
}

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// The VIPs that may send flows to `pool`'s elements: its own, and those of the pools it backs.
pub fn vips_of<'a>(cfg: &'a ConfigFile, pool: &'a str) -> impl Iterator<Item = &'a VipDecl> + 'a {
    cfg.vips.iter().filter(move |v| {
        v.pool.as_str() == pool
            || cfg
                .pools
                .get(v.pool.as_str())
                .and_then(|p| p.backup.as_ref())
                .is_some_and(|b| b.as_str() == pool)
    })
}

/// Every problem of what the file means (its form was checked by serde).
pub fn validate(cfg: &ConfigFile) -> Vec<Problem> {
    let mut out = Vec::new();
    let i = &cfg.interface;
    if i.name.is_empty() || i.name.len() > 15 || i.name.contains(['/', ' ', '\t']) {
        out.push(problem(
            path![("interface"), ("name")],
            format!(
                "`{}` is not an interface name (1..=15 characters, no `/` or spaces)",
                i.name
            ),
        ));
    }
    let opts = match i.attach_options() {
        Ok(o) => Some(o),
        Err(e) => {
            out.push(problem(path![("interface"), ("nat_ports")], e));
            None
        }
    };
    for (key, t) in [
        ("dsr_tcp_timeout_s", i.dsr_tcp_timeout_s),
        ("dsr_udp_timeout_s", i.dsr_udp_timeout_s),
        ("nat_tcp_timeout_s", i.nat_tcp_timeout_s),
        ("nat_udp_timeout_s", i.nat_udp_timeout_s),
    ] {
        if let Some(t) = t
            && let Err(e) = crate::loader::check_timeout(key, t)
        {
            out.push(problem(path![("interface"), (key)], e.to_string()));
        }
    }
    if let Some(o) = &opts
        && out.is_empty()
        && let Err(e) = crate::loader::validate(o)
    {
        out.push(problem(path![("interface")], e.to_string()));
    }
    if !(cfg.interval_s.is_finite() && cfg.interval_s > 0.0 && cfg.interval_s <= 3600.0) {
        out.push(problem(
            path![("interval_s")],
            format!("{} is not 0 < seconds <= 3600", cfg.interval_s),
        ));
    }
    validate_vips(cfg, opts.as_ref(), &mut out);
    validate_pools(cfg, opts.as_ref(), &mut out);
    if let Some(r) = &cfg.registrar
        && let Err(e) = r.validate()
    {
        let (field, message) = match &e {
            rsplb_registrar::config::ConfigError::Invalid { field, problem } => {
                (field.to_string(), problem.clone())
            }
            other => (String::new(), other.to_string()),
        };
        let mut p = path![("registrar")];
        p.extend(field.split('.').filter(|s| !s.is_empty()).map(Seg::from));
        out.push(problem(p, format!("registrar.{field}: {message}")));
    }
    out
}

fn validate_vips(cfg: &ConfigFile, opts: Option<&AttachOptions>, out: &mut Vec<Problem>) {
    let mut seen: HashMap<Vip, usize> = HashMap::new();
    for (j, v) in cfg.vips.iter().enumerate() {
        let at = |key: &str| path![("vip"), (j), (key)];
        if let Some(&first) = seen.get(&v.address) {
            out.push(Problem {
                path: at("address"),
                message: format!("VIP {} is declared twice", v.address),
                first: Some(path![("vip"), (first), ("address")]),
            });
        } else {
            seen.insert(v.address, j);
        }
        if !cfg.pools.contains_key(v.pool.as_str()) {
            let declared: Vec<&str> = cfg.pools.keys().map(String::as_str).collect();
            out.push(problem(
                at("pool"),
                format!(
                    "VIP {} names pool `{}`, which this file does not declare (declared: {}); a pool that the registrar fills must be declared too, with an empty [pool.{}]",
                    v.address,
                    v.pool,
                    if declared.is_empty() { "none".to_string() } else { declared.join(", ") },
                    v.pool
                ),
            ));
        }
        match (v.mode, v.snat) {
            (Mode::Nat, None) => out.push(problem(
                at("mode"),
                format!(
                    "VIP {} is a NAT VIP: it needs `snat = \"ADDR\"`, the balancer's source address toward the elements",
                    v.address
                ),
            )),
            (Mode::Nat, Some(s)) if s.is_ipv4() != v.address.addr.is_ipv4() => {
                out.push(problem(
                    at("snat"),
                    format!(
                        "VIP {} is {} and its snat {s} is {}: NAT does not translate between IPv4 and IPv6",
                        v.address,
                        family(v.address.addr),
                        family(s)
                    ),
                ))
            }
            (Mode::Dsr, Some(_)) => out.push(problem(
                at("snat"),
                format!("VIP {} is DSR: `snat` is for NAT VIPs only", v.address),
            )),
            _ => {}
        }
        if let Err(e) = crate::allow::check(v.address.addr, &v.address.to_string(), &v.allow) {
            out.push(problem(at("allow"), format!("{e:#}")));
        }
        if v.mode == Mode::Nat && v.address.proto == Protocol::Sctp {
            out.push(problem(
                at("mode"),
                format!(
                    "VIP {}: SCTP is DSR only (its CRC32c checksum cannot be updated incrementally)",
                    v.address
                ),
            ));
        }
        if let Some(t) = v.nat_timeout_s {
            if v.mode == Mode::Dsr {
                out.push(problem(
                    at("nat_timeout_s"),
                    format!(
                        "VIP {} is DSR: `nat_timeout_s` is for NAT VIPs only (DSR flows age out after the interface's dsr_*_timeout_s)",
                        v.address
                    ),
                ));
            } else if let Err(e) = crate::loader::check_timeout("nat_timeout_s", t) {
                out.push(problem(at("nat_timeout_s"), e.to_string()));
            }
        }
    }
    if let Some(o) = opts
        && cfg.vips.len() as u64 > u64::from(o.max_vips)
    {
        out.push(problem(
            path![("vip"), (o.max_vips as usize)],
            format!(
                "{} VIPs are declared and the interface has {} VIP slots: raise interface.max_vips",
                cfg.vips.len(),
                o.max_vips
            ),
        ));
    }
}

fn validate_pools(cfg: &ConfigFile, opts: Option<&AttachOptions>, out: &mut Vec<Problem>) {
    let mut total = 0usize;
    for (name, p) in &cfg.pools {
        let at = |key: &str| path![("pool"), (name), (key)];
        if let Err(e) = name.parse::<PoolHandle>() {
            out.push(problem(path![("pool"), (name)], e.to_string()));
        }
        let elements = p.all_elements(name);
        total += elements.len();
        let dsr: Vec<&VipDecl> = vips_of(cfg, name).filter(|v| v.mode == Mode::Dsr).collect();
        let nat: Vec<&VipDecl> = vips_of(cfg, name).filter(|v| v.mode == Mode::Nat).collect();
        let mut seen: Vec<(ElementAddr, &Vec<Seg>)> = Vec::new();
        for (addr, weight, epath) in &elements {
            // In a pool a DSR VIP serves, an element is its address.
            let same = |a: &ElementAddr| *a == *addr || (!dsr.is_empty() && a.addr == addr.addr);
            if let Some((_, first)) = seen.iter().find(|(a, _)| same(a)) {
                out.push(Problem {
                    path: epath.clone(),
                    message: format!("element {addr} is declared twice in pool {name}"),
                    first: Some((*first).clone()),
                });
            } else {
                seen.push((*addr, epath));
            }
            if *weight == 0 {
                let mut wp = epath.clone();
                wp.pop();
                wp.push(Seg::from("weight"));
                out.push(problem(wp, "a weight is 1..=65535"));
            }
            if let Some(port) = addr.port
                && let Some(v) = dsr.iter().find(|v| v.address.port != port)
            {
                out.push(problem(
                    epath.clone(),
                    format!(
                        "pool {name} is served by the DSR VIP {}: DSR cannot change ports, the element gets the VIP's port {}, not {port}; write it as {} (no port), or serve the pool with a NAT VIP",
                        v.address,
                        v.address.port,
                        addr.addr
                    ),
                ));
            }
            if let Some(v) = nat
                .iter()
                .find(|v| v.address.addr.is_ipv4() != addr.addr.is_ipv4())
            {
                out.push(problem(
                    epath.clone(),
                    format!(
                        "pool {name} is served by the {} NAT VIP {}, and {addr} is {}: NAT does not translate between IPv4 and IPv6",
                        family(v.address.addr),
                        v.address,
                        family(addr.addr)
                    ),
                ));
            }
        }
        if let Some(b) = &p.backup {
            match cfg.pools.get(b.as_str()) {
                None => out.push(problem(
                    at("backup"),
                    format!("pool {name}: backup pool `{b}` is not declared"),
                )),
                Some(_) if b.as_str() == name => out.push(problem(
                    at("backup"),
                    format!("pool {name} cannot be its own backup"),
                )),
                Some(bp) if bp.backup.is_some() => out.push(problem(
                    at("backup"),
                    format!(
                        "pool {name}: its backup `{b}` has a backup of its own; backups are one level deep"
                    ),
                )),
                Some(_) => {}
            }
        }
        if !(p.slow_start_s.is_finite() && (0.0..=3600.0).contains(&p.slow_start_s)) {
            out.push(problem(
                at("slow_start_s"),
                format!("{} is not 0..=3600 seconds", p.slow_start_s),
            ));
        }
        if let Some(c) = &p.check {
            validate_check(cfg, name, p, c, out);
        }
    }
    if let Some(o) = opts
        && total as u64 > u64::from(o.max_elements)
    {
        out.push(problem(
            path![("pool")],
            format!(
                "{total} elements are declared and the interface has {} element slots: raise interface.max_elements",
                o.max_elements
            ),
        ));
    }
}

fn validate_check(
    cfg: &ConfigFile,
    name: &str,
    p: &PoolDecl,
    c: &CheckDecl,
    out: &mut Vec<Problem>,
) {
    let at = |key: &str| path![("pool"), (name), ("check"), (key)];
    let here = path![("pool"), (name), ("check")];
    let range = |out: &mut Vec<Problem>, key: &str, v: u64, min: u64, max: u64| {
        if v < min || v > max {
            out.push(problem(
                at(key),
                format!("{key}: {v} is out of range {min}..={max}"),
            ));
        }
    };
    range(out, "interval_ms", c.interval_ms, 10, 3_600_000);
    range(out, "timeout_ms", c.timeout_ms, 1, 3_600_000);
    range(out, "rise", c.rise.into(), 1, 100);
    range(out, "fall", c.fall.into(), 1, 100);
    if let Some(f) = c.fast_interval_ms {
        range(out, "fast_interval_ms", f, 10, c.interval_ms.max(10));
    }
    if c.timeout_ms > c.interval_ms {
        out.push(problem(
            at("timeout_ms"),
            format!(
                "a check's timeout ({} ms) cannot exceed its interval ({} ms)",
                c.timeout_ms, c.interval_ms
            ),
        ));
    }
    if c.port == Some(0) {
        out.push(problem(at("port"), "port 0 cannot be checked"));
    }
    // Which keys belong to which kind.
    let fields: [(&str, bool, &[CheckKind]); 8] = [
        ("send", c.send.is_some(), &[CheckKind::Udp]),
        ("expect", c.expect.is_some(), &[CheckKind::Udp]),
        (
            "path",
            c.path.is_some(),
            &[CheckKind::Http, CheckKind::Https],
        ),
        (
            "host",
            c.host.is_some(),
            &[CheckKind::Http, CheckKind::Https],
        ),
        (
            "expect_status",
            c.expect_status.is_some(),
            &[CheckKind::Http, CheckKind::Https],
        ),
        (
            "body_contains",
            c.body_contains.is_some(),
            &[CheckKind::Http, CheckKind::Https],
        ),
        ("ca", c.ca.is_some(), &[CheckKind::Https]),
        ("command", c.command.is_some(), &[CheckKind::Exec]),
    ];
    for (key, set, kinds) in fields {
        if set && !kinds.contains(&c.kind) {
            let names: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
            out.push(problem(
                at(key),
                format!(
                    "`{key}` is for {} checks, and this one is {}",
                    names.join(" and "),
                    c.kind
                ),
            ));
        }
    }
    match c.kind {
        CheckKind::Udp if c.send.is_none() => out.push(problem(
            here.clone(),
            "a udp check needs `send` (the request datagram; `expect` is what the reply must contain)",
        )),
        CheckKind::Exec if c.command.as_ref().is_none_or(|v| v.is_empty()) => {
            out.push(problem(
                here.clone(),
                "an exec check needs `command = [\"/path/to/program\", \"arg\", ...]`",
            ))
        }
        CheckKind::Http | CheckKind::Https => {
            if let Some(path) = &c.path
                && !path.starts_with('/')
            {
                out.push(problem(at("path"), format!("`{path}` does not start with /")));
            }
            if let Some(s) = c.expect_status
                && !(100..=599).contains(&s)
            {
                out.push(problem(at("expect_status"), format!("{s} is not an HTTP status")));
            }
        }
        _ => {}
    }
    if let Some(ca) = &c.ca {
        if !ca.is_file() {
            out.push(problem(
                at("ca"),
                format!("{} is not a readable file", ca.display()),
            ));
        } else if let Err(e) = crate::health::probe::tls_config(c) {
            out.push(problem(at("ca"), format!("{e:#}")));
        }
    }
    if let Some(program) = c.command.as_ref().and_then(|v| v.first())
        && !program_exists(program)
    {
        out.push(problem(
            at("command"),
            format!("`{program}` is not an executable file (nor found in PATH)"),
        ));
    }
    // Where the check goes: the check's port, else the element's, else a VIP's.
    let portless = p
        .all_elements(name)
        .into_iter()
        .find(|(a, _, _)| a.port.is_none());
    if c.port.is_none()
        && c.kind != CheckKind::Exec
        && vips_of(cfg, name).next().is_none()
        && let Some((addr, _, _)) = portless
    {
        out.push(problem(
            here,
            format!(
                "pool {name}: the check has no port, the element {addr} has none, and no VIP serves the pool: set `port`"
            ),
        ));
    }
}

/// Is `program` an executable file: a path, or a name found in `PATH`?
fn program_exists(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| executable(&d.join(program))))
}

/// What `config check` prints: a summary of the file.
pub fn summary(cfg: &ConfigFile) -> Value {
    let pools: Vec<Value> = cfg
        .pools
        .iter()
        .map(|(name, p)| {
            json!({
                "pool": name,
                "elements": p.all_elements(name).iter().map(|(a, w, _)| json!({
                    "address": a.to_string(), "weight": w,
                })).collect::<Vec<_>>(),
                "check": p.check.as_ref().map(check_summary),
                "backup": p.backup.as_ref().map(|b| b.to_string()),
                "min_healthy": p.min_healthy,
                "slow_start_s": p.slow_start_s,
                "on_failure": match p.on_failure { OnFailure::Drain => "drain", OnFailure::Remove => "remove" },
                "when_none_healthy": match p.when_none_healthy {
                    NoneHealthy::FailStatic => "fail-static",
                    NoneHealthy::Drop => "drop",
                },
            })
        })
        .collect();
    json!({
        "interface": cfg.interface.name,
        "xdp_mode": match cfg.interface.xdp_mode { XdpMode::Native => "native", XdpMode::Generic => "generic" },
        "metrics": cfg.metrics.map(|m| m.to_string()),
        "interval_s": cfg.interval_s,
        "xdp_log": cfg.xdp_log.to_string(),
        "vips": cfg.vips.iter().map(|v| json!({
            "vip": v.address.to_string(),
            "pool": v.pool.to_string(),
            "mode": v.mode.to_string(),
            "snat": v.snat.map(|s| s.to_string()),
            "nat_timeout_s": v.nat_timeout_s,
            "allow": v.allow.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "hash": v.hash.to_string(),
        })).collect::<Vec<_>>(),
        "pools": pools,
        "registrar": cfg.registrar.as_ref().map(|r| json!({
            "asap_listen": r.asap_listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "enrp_listen": r.enrp.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "enrp_peers": r.enrp.peers.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        })),
    })
}

fn check_summary(c: &CheckDecl) -> Value {
    json!({
        "type": c.kind.to_string(),
        "port": c.port,
        "interval_ms": c.interval_ms,
        "fast_interval_ms": c.fast_interval().as_millis() as u64,
        "timeout_ms": c.timeout_ms,
        "rise": c.rise,
        "fall": c.fall,
    })
}

/// The summary as text.
pub fn summary_text(file: &str, cfg: &ConfigFile) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "{file}: valid");
    let _ = writeln!(
        s,
        "interface  {} ({} XDP)",
        cfg.interface.name,
        match cfg.interface.xdp_mode {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    );
    let _ = writeln!(
        s,
        "metrics    {}",
        cfg.metrics
            .map_or("off".to_string(), |m| format!("http://{m}/metrics"))
    );
    let _ = writeln!(s, "xdp log    {}", cfg.xdp_log);
    match &cfg.registrar {
        None => {
            let _ = writeln!(s, "registrar  off");
        }
        Some(r) => {
            let list = |v: &[SocketAddr]| {
                v.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                s,
                "registrar  ASAP on {}{}",
                list(&r.asap_listen),
                if r.enrp.listen.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; ENRP on {} with {} peer(s)",
                        list(&r.enrp.listen),
                        r.enrp.peers.len()
                    )
                }
            );
        }
    }
    let _ = writeln!(s, "VIPs       {}", cfg.vips.len());
    for v in &cfg.vips {
        let _ = writeln!(
            s,
            "  {:<30} pool {:<16} {}{}",
            v.address.to_string(),
            v.pool.to_string(),
            v.mode,
            v.snat.map(|a| format!(" snat {a}")).unwrap_or_default()
                + &if v.allow.is_empty() {
                    String::new()
                } else {
                    format!(" allow {} prefix(es)", v.allow.len())
                }
                + if v.hash.is_flow() { "" } else { " hash client" }
        );
    }
    let _ = writeln!(s, "pools      {}", cfg.pools.len());
    for (name, p) in &cfg.pools {
        let n = p.all_elements(name).len();
        let check = p.check.as_ref().map_or("no check".to_string(), |c| {
            format!(
                "{} check{} every {} ms (fast {} ms, timeout {} ms, rise {}, fall {})",
                c.kind,
                c.port.map(|p| format!(" on port {p}")).unwrap_or_default(),
                c.interval_ms,
                c.fast_interval().as_millis(),
                c.timeout_ms,
                c.rise,
                c.fall
            )
        });
        let _ = writeln!(
            s,
            "  {:<16} {n} element(s) by hand; {check}; on failure {}; none healthy: {}{}{}",
            name,
            match p.on_failure {
                OnFailure::Drain => "drain",
                OnFailure::Remove => "remove",
            },
            match p.when_none_healthy {
                NoneHealthy::FailStatic => "fail-static",
                NoneHealthy::Drop => "drop",
            },
            p.backup
                .as_ref()
                .map(|b| format!("; backup {b} below {} healthy", p.min_healthy))
                .unwrap_or_default(),
            if p.slow_start_s > 0.0 {
                format!("; slow start {} s", p.slow_start_s)
            } else {
                String::new()
            }
        );
    }
    s
}

#[cfg(test)]
mod tests;
