//! Typed ASAP (RFC 5352) and ENRP (RFC 5353) messages. The `wire` module turns these into bytes
//! and back; everything above it (handlespace, registrar core, client side) speaks only these.

use crate::types::{
    ErrorCause, PeId, Policy, PoolElement, PoolHandle, RegistrarId, ServerInformation,
    TransportAddress,
};

/// ASAP message type codes (low byte on the wire).
pub mod asap_type {
    pub const REGISTRATION: u8 = 0x01;
    pub const DEREGISTRATION: u8 = 0x02;
    pub const REGISTRATION_RESPONSE: u8 = 0x03;
    pub const DEREGISTRATION_RESPONSE: u8 = 0x04;
    pub const HANDLE_RESOLUTION: u8 = 0x05;
    pub const HANDLE_RESOLUTION_RESPONSE: u8 = 0x06;
    pub const ENDPOINT_KEEP_ALIVE: u8 = 0x07;
    pub const ENDPOINT_KEEP_ALIVE_ACK: u8 = 0x08;
    pub const ENDPOINT_UNREACHABLE: u8 = 0x09;
    pub const SERVER_ANNOUNCE: u8 = 0x0a;
    pub const COOKIE: u8 = 0x0b;
    pub const COOKIE_ECHO: u8 = 0x0c;
    pub const BUSINESS_CARD: u8 = 0x0d;
    pub const ERROR: u8 = 0x0e;
}

/// ENRP message type codes.
pub mod enrp_type {
    pub const PRESENCE: u8 = 0x01;
    pub const HANDLE_TABLE_REQUEST: u8 = 0x02;
    pub const HANDLE_TABLE_RESPONSE: u8 = 0x03;
    pub const HANDLE_UPDATE: u8 = 0x04;
    pub const LIST_REQUEST: u8 = 0x05;
    pub const LIST_RESPONSE: u8 = 0x06;
    pub const INIT_TAKEOVER: u8 = 0x07;
    pub const INIT_TAKEOVER_ACK: u8 = 0x08;
    pub const TAKEOVER_SERVER: u8 = 0x09;
    pub const ERROR: u8 = 0x0a;
}

/// An ASAP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsapMessage {
    /// 0x01, PE -> PR: register or re-register (update) an element.
    Registration {
        pool_handle: PoolHandle,
        element: PoolElement,
    },
    /// 0x02, PE -> PR.
    Deregistration { pool_handle: PoolHandle, id: PeId },
    /// 0x03, PR -> PE. `reject` is the R flag; `error` explains a rejection.
    RegistrationResponse {
        reject: bool,
        pool_handle: PoolHandle,
        id: PeId,
        error: Option<Vec<ErrorCause>>,
    },
    /// 0x04, PR -> PE.
    DeregistrationResponse {
        pool_handle: PoolHandle,
        id: PeId,
        error: Option<Vec<ErrorCause>>,
    },
    /// 0x05, PU -> PR. `items` is the Handle Resolution Option (0x803f): how many elements the PU
    /// wants (`u32::MAX` = all); `None` = option absent (the registrar's default applies).
    HandleResolution {
        pool_handle: PoolHandle,
        items: Option<u32>,
    },
    /// 0x06, PR -> PU: the pool's policy and the selected elements, or an error
    /// (Unknown Pool Handle).
    HandleResolutionResponse {
        pool_handle: PoolHandle,
        policy: Option<Policy>,
        elements: Vec<PoolElement>,
        error: Option<Vec<ErrorCause>>,
    },
    /// 0x07, PR -> PE. `home` is the H flag: the sender is (now) the element's home registrar.
    EndpointKeepAlive {
        home: bool,
        server_id: RegistrarId,
        pool_handle: PoolHandle,
        id: PeId,
    },
    /// 0x08, PE -> PR.
    EndpointKeepAliveAck { pool_handle: PoolHandle, id: PeId },
    /// 0x09, PU -> PR: the PU could not reach this element.
    EndpointUnreachable { pool_handle: PoolHandle, id: PeId },
    /// 0x0a, PR -> PEs/PUs (UDP multicast): where to reach the registrar. `transports` empty =
    /// use the datagram's source address and port (what rsplib does).
    ServerAnnounce {
        server_id: RegistrarId,
        transports: Vec<TransportAddress>,
    },
    /// 0x0b, PE -> PU (control channel).
    Cookie { cookie: Vec<u8> },
    /// 0x0c, PU -> new PE after failover.
    CookieEcho { cookie: Vec<u8> },
    /// 0x0d, PE <-> PU: the peer's pool and failover candidates.
    BusinessCard {
        pool_handle: PoolHandle,
        policy: Option<Policy>,
        elements: Vec<PoolElement>,
    },
    /// 0x0e, any: report an unrecognized or invalid message or parameter.
    Error { causes: Vec<ErrorCause> },
}

/// ENRP Handle Update action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpdateAction {
    AddPe,
    DelPe,
}

impl UpdateAction {
    pub fn code(self) -> u16 {
        match self {
            Self::AddPe => 0,
            Self::DelPe => 1,
        }
    }

    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            0 => Some(Self::AddPe),
            1 => Some(Self::DelPe),
            _ => None,
        }
    }
}

/// An ENRP message: the sender and receiver registrar IDs (every ENRP message carries both) and
/// the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrpMessage {
    pub sender: RegistrarId,
    /// 0 when the sender does not know the receiver yet.
    pub receiver: RegistrarId,
    pub body: EnrpBody,
}

/// The type-specific part of an ENRP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnrpBody {
    /// 0x01: heartbeat and audit. `reply_required` is the R flag.
    Presence {
        reply_required: bool,
        checksum: u16,
        info: Option<ServerInformation>,
    },
    /// 0x02: `own_children_only` is the W flag.
    HandleTableRequest { own_children_only: bool },
    /// 0x03: `reject` is R, `more` is M; pools with their elements.
    HandleTableResponse {
        reject: bool,
        more: bool,
        pools: Vec<(PoolHandle, Vec<PoolElement>)>,
    },
    /// 0x04: `takeover_suggested` is the T flag.
    HandleUpdate {
        takeover_suggested: bool,
        action: UpdateAction,
        pool_handle: PoolHandle,
        element: PoolElement,
    },
    /// 0x05.
    ListRequest,
    /// 0x06: `reject` is the R flag.
    ListResponse {
        reject: bool,
        servers: Vec<ServerInformation>,
    },
    /// 0x07.
    InitTakeover { target: RegistrarId },
    /// 0x08.
    InitTakeoverAck { target: RegistrarId },
    /// 0x09.
    TakeoverServer { target: RegistrarId },
    /// 0x0a.
    Error { causes: Vec<ErrorCause> },
}

/// Either protocol, for transports and tools that carry both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Asap(AsapMessage),
    Enrp(EnrpMessage),
}

impl AsapMessage {
    /// The message type code.
    pub fn type_code(&self) -> u8 {
        use asap_type::*;
        match self {
            Self::Registration { .. } => REGISTRATION,
            Self::Deregistration { .. } => DEREGISTRATION,
            Self::RegistrationResponse { .. } => REGISTRATION_RESPONSE,
            Self::DeregistrationResponse { .. } => DEREGISTRATION_RESPONSE,
            Self::HandleResolution { .. } => HANDLE_RESOLUTION,
            Self::HandleResolutionResponse { .. } => HANDLE_RESOLUTION_RESPONSE,
            Self::EndpointKeepAlive { .. } => ENDPOINT_KEEP_ALIVE,
            Self::EndpointKeepAliveAck { .. } => ENDPOINT_KEEP_ALIVE_ACK,
            Self::EndpointUnreachable { .. } => ENDPOINT_UNREACHABLE,
            Self::ServerAnnounce { .. } => SERVER_ANNOUNCE,
            Self::Cookie { .. } => COOKIE,
            Self::CookieEcho { .. } => COOKIE_ECHO,
            Self::BusinessCard { .. } => BUSINESS_CARD,
            Self::Error { .. } => ERROR,
        }
    }
}

impl EnrpBody {
    /// The message type code.
    pub fn type_code(&self) -> u8 {
        use enrp_type::*;
        match self {
            Self::Presence { .. } => PRESENCE,
            Self::HandleTableRequest { .. } => HANDLE_TABLE_REQUEST,
            Self::HandleTableResponse { .. } => HANDLE_TABLE_RESPONSE,
            Self::HandleUpdate { .. } => HANDLE_UPDATE,
            Self::ListRequest => LIST_REQUEST,
            Self::ListResponse { .. } => LIST_RESPONSE,
            Self::InitTakeover { .. } => INIT_TAKEOVER,
            Self::InitTakeoverAck { .. } => INIT_TAKEOVER_ACK,
            Self::TakeoverServer { .. } => TAKEOVER_SERVER,
            Self::Error { .. } => ERROR,
        }
    }
}
