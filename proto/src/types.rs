//! Domain values of RSerPool, shared by the wire codec, the handlespace, the registrar core and
//! the client side. Constructors validate what RFC 5354 constrains, so a value of these types is
//! always encodable.

use std::fmt;
use std::net::IpAddr;

/// Longest pool handle accepted (bytes). RFC 5354 leaves the length open; rsplib and rsplb cap it
/// at 32 bytes and answer longer ones with "Invalid values".
pub const MAX_POOL_HANDLE_LEN: usize = 32;

/// Most transport addresses in one SCTP transport parameter of a pool element.
pub const MAX_PE_ADDRESSES: usize = 64;

/// A pool handle: 1 to [`MAX_POOL_HANDLE_LEN`] opaque bytes (usually printable text).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolHandle(Box<[u8]>);

/// Why a pool handle was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolHandleError {
    #[error("pool handle is empty")]
    Empty,
    #[error("pool handle is {0} bytes, more than the {MAX_POOL_HANDLE_LEN} allowed")]
    TooLong(usize),
}

impl PoolHandle {
    pub fn new(bytes: impl Into<Box<[u8]>>) -> Result<Self, PoolHandleError> {
        let bytes = bytes.into();
        match bytes.len() {
            0 => Err(PoolHandleError::Empty),
            n if n > MAX_POOL_HANDLE_LEN => Err(PoolHandleError::TooLong(n)),
            _ => Ok(Self(bytes)),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::str::FromStr for PoolHandle {
    type Err = PoolHandleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s.as_bytes())
    }
}

impl fmt::Display for PoolHandle {
    /// Printable ASCII as is; anything else as `0x` and hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
            f.write_str(std::str::from_utf8(&self.0).unwrap_or_default())
        } else {
            f.write_str("0x")?;
            self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
        }
    }
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PoolHandle({self})")
    }
}

/// Pool element identifier (32 bits, chosen by the PE, unique within a pool).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeId(pub u32);

impl fmt::Display for PeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Registrar (ENRP server) identifier (32 bits). 0 means "none/unknown" in rsplib.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RegistrarId(pub u32);

impl fmt::Display for RegistrarId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Transport Use field of SCTP and TCP transport parameters (RFC 5354 3.3, 3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportUse {
    /// 0x0000: the port carries data only.
    DataOnly,
    /// 0x0001: data and the ASAP control channel are multiplexed on the port.
    DataPlusControl,
}

impl TransportUse {
    pub fn code(self) -> u16 {
        match self {
            Self::DataOnly => 0,
            Self::DataPlusControl => 1,
        }
    }

    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            0 => Some(Self::DataOnly),
            1 => Some(Self::DataPlusControl),
            _ => None,
        }
    }
}

/// Transport protocol of a transport parameter (for pool consistency checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransportProtocol {
    Sctp,
    Tcp,
    Udp,
    UdpLite,
    Dccp,
}

/// A transport address parameter (RFC 5354 3.2-3.6; parameter types 0x3-0x7).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TransportAddress {
    /// 0x0004: one or more addresses (multi-homing), at most [`MAX_PE_ADDRESSES`].
    Sctp {
        port: u16,
        transport_use: TransportUse,
        addrs: Vec<IpAddr>,
    },
    /// 0x0005.
    Tcp {
        port: u16,
        transport_use: TransportUse,
        addr: IpAddr,
    },
    /// 0x0006.
    Udp { port: u16, addr: IpAddr },
    /// 0x0007.
    UdpLite { port: u16, addr: IpAddr },
    /// 0x0003.
    Dccp {
        port: u16,
        service_code: u32,
        addr: IpAddr,
    },
}

impl TransportAddress {
    pub fn protocol(&self) -> TransportProtocol {
        match self {
            Self::Sctp { .. } => TransportProtocol::Sctp,
            Self::Tcp { .. } => TransportProtocol::Tcp,
            Self::Udp { .. } => TransportProtocol::Udp,
            Self::UdpLite { .. } => TransportProtocol::UdpLite,
            Self::Dccp { .. } => TransportProtocol::Dccp,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            Self::Sctp { port, .. }
            | Self::Tcp { port, .. }
            | Self::Udp { port, .. }
            | Self::UdpLite { port, .. }
            | Self::Dccp { port, .. } => *port,
        }
    }

    /// The addresses, in order (one for every protocol but SCTP).
    pub fn addrs(&self) -> &[IpAddr] {
        match self {
            Self::Sctp { addrs, .. } => addrs,
            Self::Tcp { addr, .. }
            | Self::Udp { addr, .. }
            | Self::UdpLite { addr, .. }
            | Self::Dccp { addr, .. } => std::slice::from_ref(addr),
        }
    }

    /// Transport use; protocols without the field count as data only.
    pub fn transport_use(&self) -> TransportUse {
        match self {
            Self::Sctp { transport_use, .. } | Self::Tcp { transport_use, .. } => *transport_use,
            _ => TransportUse::DataOnly,
        }
    }
}

/// Policy type codes (RFC 5356 and rsplib's extensions; see `shared/reference/rserpool.md` 2).
pub mod policy_type {
    pub const ROUND_ROBIN: u32 = 0x0000_0001;
    pub const WEIGHTED_ROUND_ROBIN: u32 = 0x0000_0002;
    pub const RANDOM: u32 = 0x0000_0003;
    pub const WEIGHTED_RANDOM: u32 = 0x0000_0004;
    pub const PRIORITY: u32 = 0x0000_0005;
    pub const LEAST_USED: u32 = 0x4000_0001;
    pub const LEAST_USED_DEGRADATION: u32 = 0x4000_0002;
    pub const PRIORITY_LEAST_USED: u32 = 0x4000_0003;
    pub const RANDOMIZED_LEAST_USED: u32 = 0x4000_0004;
    pub const RANDOMIZED_PRIORITY_LEAST_USED: u32 = 0xb000_1001;
    pub const RANDOMIZED_LEAST_USED_DEGRADATION: u32 = 0xb000_1002;
    pub const PRIORITY_LEAST_USED_DEGRADATION: u32 = 0xb000_1003;
    pub const RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION: u32 = 0xb000_1004;
    pub const WEIGHTED_RANDOM_DPF: u32 = 0xb000_2001;
    pub const LEAST_USED_DPF: u32 = 0xb000_2002;
    pub const LEAST_USED_DEGRADATION_DPF: u32 = 0xb000_2003;
}

/// Load, load degradation and DPF values are fractions of `u32::MAX` (0 = 0 %, MAX = 100 %).
pub type Fraction = u32;

/// A pool member selection policy with the values an element registered (parameter 0x0008).
/// Every policy rsplb can select with is an arm; other type codes decode to `Unknown` and are
/// refused at registration (the registrar cannot select with them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    RoundRobin,
    WeightedRoundRobin {
        weight: u32,
    },
    Random,
    WeightedRandom {
        weight: u32,
    },
    /// Higher value = preferred. (On the wire, rsplib carries it in the weight field.)
    Priority {
        priority: u32,
    },
    LeastUsed {
        load: Fraction,
    },
    LeastUsedDegradation {
        load: Fraction,
        degradation: Fraction,
    },
    PriorityLeastUsed {
        load: Fraction,
        degradation: Fraction,
    },
    RandomizedLeastUsed {
        load: Fraction,
    },
    RandomizedPriorityLeastUsed {
        load: Fraction,
        degradation: Fraction,
    },
    RandomizedLeastUsedDegradation {
        load: Fraction,
        degradation: Fraction,
    },
    PriorityLeastUsedDegradation {
        load: Fraction,
        degradation: Fraction,
    },
    RandomizedPriorityLeastUsedDegradation {
        load: Fraction,
        degradation: Fraction,
    },
    WeightedRandomDpf {
        weight: u32,
        weight_dpf: Fraction,
        distance: u32,
    },
    LeastUsedDpf {
        load: Fraction,
        load_dpf: Fraction,
        distance: u32,
    },
    LeastUsedDegradationDpf {
        load: Fraction,
        degradation: Fraction,
        load_dpf: Fraction,
        distance: u32,
    },
    /// A type code rsplb does not know, with its raw 32-bit values.
    Unknown {
        policy_type: u32,
        values: Vec<u32>,
    },
}

/// Matches every policy that carries a load, binding the load to `$load` (by reference, with
/// the mutability of `$p`); the one list of load-carrying policies.
macro_rules! match_load {
    ($p:expr, $load:ident => $some:expr, _ => $none:expr) => {
        match $p {
            Policy::LeastUsed { load: $load }
            | Policy::RandomizedLeastUsed { load: $load }
            | Policy::LeastUsedDegradation { load: $load, .. }
            | Policy::PriorityLeastUsed { load: $load, .. }
            | Policy::RandomizedPriorityLeastUsed { load: $load, .. }
            | Policy::RandomizedLeastUsedDegradation { load: $load, .. }
            | Policy::PriorityLeastUsedDegradation { load: $load, .. }
            | Policy::RandomizedPriorityLeastUsedDegradation { load: $load, .. }
            | Policy::LeastUsedDpf { load: $load, .. }
            | Policy::LeastUsedDegradationDpf { load: $load, .. } => $some,
            _ => $none,
        }
    };
}

impl Policy {
    /// The load, for the policies that carry one (the least-used family).
    pub fn load(&self) -> Option<Fraction> {
        match_load!(self, load => Some(*load), _ => None)
    }

    /// This policy with its load replaced; `None` for policies without a load.
    pub fn with_load(&self, new: Fraction) -> Option<Policy> {
        let mut p = self.clone();
        match_load!(&mut p, load => *load = new, _ => return None);
        Some(p)
    }

    /// The values carried after the type code, in wire order (RFC 5356 section 4; rsplib's
    /// extensions as in `shared/reference/rserpool.md` section 2), each with its name. The raw
    /// values of an unknown policy are all named `value`.
    pub fn named_values(&self) -> Vec<(&'static str, u32)> {
        match self {
            Self::RoundRobin | Self::Random => vec![],
            Self::WeightedRoundRobin { weight } | Self::WeightedRandom { weight } => {
                vec![("weight", *weight)]
            }
            Self::Priority { priority } => vec![("priority", *priority)],
            Self::LeastUsed { load } | Self::RandomizedLeastUsed { load } => vec![("load", *load)],
            Self::LeastUsedDegradation { load, degradation }
            | Self::PriorityLeastUsed { load, degradation }
            | Self::RandomizedPriorityLeastUsed { load, degradation }
            | Self::RandomizedLeastUsedDegradation { load, degradation }
            | Self::PriorityLeastUsedDegradation { load, degradation }
            | Self::RandomizedPriorityLeastUsedDegradation { load, degradation } => {
                vec![("load", *load), ("load_degradation", *degradation)]
            }
            Self::WeightedRandomDpf {
                weight,
                weight_dpf,
                distance,
            } => vec![
                ("weight", *weight),
                ("weight_dpf", *weight_dpf),
                ("distance", *distance),
            ],
            Self::LeastUsedDpf {
                load,
                load_dpf,
                distance,
            } => vec![
                ("load", *load),
                ("load_dpf", *load_dpf),
                ("distance", *distance),
            ],
            Self::LeastUsedDegradationDpf {
                load,
                degradation,
                load_dpf,
                distance,
            } => vec![
                ("load", *load),
                ("load_degradation", *degradation),
                ("load_dpf", *load_dpf),
                ("distance", *distance),
            ],
            Self::Unknown { values, .. } => values.iter().map(|v| ("value", *v)).collect(),
        }
    }

    pub fn type_code(&self) -> u32 {
        use policy_type::*;
        match self {
            Self::RoundRobin => ROUND_ROBIN,
            Self::WeightedRoundRobin { .. } => WEIGHTED_ROUND_ROBIN,
            Self::Random => RANDOM,
            Self::WeightedRandom { .. } => WEIGHTED_RANDOM,
            Self::Priority { .. } => PRIORITY,
            Self::LeastUsed { .. } => LEAST_USED,
            Self::LeastUsedDegradation { .. } => LEAST_USED_DEGRADATION,
            Self::PriorityLeastUsed { .. } => PRIORITY_LEAST_USED,
            Self::RandomizedLeastUsed { .. } => RANDOMIZED_LEAST_USED,
            Self::RandomizedPriorityLeastUsed { .. } => RANDOMIZED_PRIORITY_LEAST_USED,
            Self::RandomizedLeastUsedDegradation { .. } => RANDOMIZED_LEAST_USED_DEGRADATION,
            Self::PriorityLeastUsedDegradation { .. } => PRIORITY_LEAST_USED_DEGRADATION,
            Self::RandomizedPriorityLeastUsedDegradation { .. } => {
                RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION
            }
            Self::WeightedRandomDpf { .. } => WEIGHTED_RANDOM_DPF,
            Self::LeastUsedDpf { .. } => LEAST_USED_DPF,
            Self::LeastUsedDegradationDpf { .. } => LEAST_USED_DEGRADATION_DPF,
            Self::Unknown { policy_type, .. } => *policy_type,
        }
    }

    /// Adaptive policies select by load, so their elements re-register when the load changes.
    pub fn is_adaptive(&self) -> bool {
        self.type_code() & 0x4000_0000 != 0
            || matches!(
                self.type_code(),
                policy_type::RANDOMIZED_PRIORITY_LEAST_USED
                    ..=policy_type::RANDOMIZED_PRIORITY_LEAST_USED_DEGRADATION
                        | policy_type::LEAST_USED_DPF
                        | policy_type::LEAST_USED_DEGRADATION_DPF
            )
    }
}

/// A pool element as registered (parameter 0x000a).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolElement {
    pub id: PeId,
    /// The element's home registrar (PR-H); 0 in a registration from the PE itself.
    pub home_registrar: RegistrarId,
    /// Registration life in milliseconds (signed 32-bit on the wire; rsplib and Wireshark read ms).
    pub registration_life_ms: i32,
    /// Where PUs reach the element's service.
    pub user_transport: TransportAddress,
    pub policy: Policy,
    /// Where the registrar reaches the element's ASAP endpoint (ENRP only; absent in ASAP).
    pub asap_transport: Option<TransportAddress>,
}

/// Server information parameter (0x000b): a registrar and its ENRP transport.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerInformation {
    pub id: RegistrarId,
    pub transport: TransportAddress,
}

/// Error cause codes (RFC 5352 5.4 / RFC 5354 3.10) with an arm for any other code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CauseCode {
    Unspecified,
    UnrecognizedParameter,
    UnrecognizedMessage,
    InvalidValues,
    NonUniquePeIdentifier,
    InconsistentPoolingPolicy,
    LackOfResources,
    InconsistentTransportType,
    InconsistentDataControlConfiguration,
    UnknownPoolHandle,
    RejectedSecurity,
    Unknown(u16),
}

impl CauseCode {
    pub fn code(self) -> u16 {
        match self {
            Self::Unspecified => 0x0,
            Self::UnrecognizedParameter => 0x1,
            Self::UnrecognizedMessage => 0x2,
            Self::InvalidValues => 0x3,
            Self::NonUniquePeIdentifier => 0x4,
            Self::InconsistentPoolingPolicy => 0x5,
            Self::LackOfResources => 0x6,
            Self::InconsistentTransportType => 0x7,
            Self::InconsistentDataControlConfiguration => 0x8,
            Self::UnknownPoolHandle => 0x9,
            Self::RejectedSecurity => 0xa,
            Self::Unknown(c) => c,
        }
    }

    pub fn from_code(code: u16) -> Self {
        match code {
            0x0 => Self::Unspecified,
            0x1 => Self::UnrecognizedParameter,
            0x2 => Self::UnrecognizedMessage,
            0x3 => Self::InvalidValues,
            0x4 => Self::NonUniquePeIdentifier,
            0x5 => Self::InconsistentPoolingPolicy,
            0x6 => Self::LackOfResources,
            0x7 => Self::InconsistentTransportType,
            0x8 => Self::InconsistentDataControlConfiguration,
            0x9 => Self::UnknownPoolHandle,
            0xa => Self::RejectedSecurity,
            c => Self::Unknown(c),
        }
    }
}

impl fmt::Display for CauseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Unspecified => "unspecified error",
            Self::UnrecognizedParameter => "unrecognized parameter",
            Self::UnrecognizedMessage => "unrecognized message",
            Self::InvalidValues => "invalid values",
            Self::NonUniquePeIdentifier => "non-unique PE identifier",
            Self::InconsistentPoolingPolicy => "inconsistent pooling policy",
            Self::LackOfResources => "lack of resources",
            Self::InconsistentTransportType => "inconsistent transport type",
            Self::InconsistentDataControlConfiguration => "inconsistent data/control configuration",
            Self::UnknownPoolHandle => "unknown pool handle",
            Self::RejectedSecurity => "rejected due to security considerations",
            Self::Unknown(c) => return write!(f, "error cause 0x{c:04x}"),
        };
        f.write_str(s)
    }
}

/// One error cause of an Operation Error parameter: the code and its cause-specific information
/// (the offending parameter or message bytes, padded on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCause {
    pub code: CauseCode,
    pub info: Vec<u8>,
}

impl ErrorCause {
    pub fn new(code: CauseCode) -> Self {
        Self {
            code,
            info: Vec::new(),
        }
    }
}
