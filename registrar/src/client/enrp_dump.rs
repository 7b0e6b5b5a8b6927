//! Read any registrar's handlespace over ENRP, as rsplib's `hsdump` does: pose as a peer
//! registrar (a random identifier), say Presence, ask for the peer list and the whole handle
//! table, follow the M flag, and leave. Works with any registrar of the scope, rsplb's or
//! another implementation's, without its admin endpoint.
//!
//! Over TCP a registrar answers a peer at the endpoint the peer's Server Information names, so
//! the dump listens on an ephemeral port of the address its connection leaves from and names
//! that. The registrar briefly lists the dump as a peer (it owns no element, so it is forgotten
//! once silent), as rsplib's registrars list past `hsdump` runs.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::message::{EnrpBody, EnrpMessage};
use crate::types::{
    PoolElement, PoolHandle, RegistrarId, ServerInformation, TransportAddress, TransportUse,
};
use crate::wire;

/// What a registrar told about its handlespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrpDump {
    /// The registrar's identifier (from its messages).
    pub registrar: RegistrarId,
    /// The PE checksum of its own elements, from its Presence (if one came).
    pub checksum: Option<u16>,
    /// Its peers (List Response).
    pub peers: Vec<ServerInformation>,
    /// Every pool with its elements (home registrar, addresses, policy), in the order sent.
    pub pools: Vec<(PoolHandle, Vec<PoolElement>)>,
}

/// Dump the handlespace of the registrar whose ENRP endpoint is `addr` (TCP).
pub async fn dump(addr: SocketAddr, timeout: Duration) -> anyhow::Result<EnrpDump> {
    use anyhow::{Context as _, bail};
    let deadline = Instant::now() + timeout;
    let out = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .context("timed out")
        .and_then(|r| r.context("connecting"))
        .with_context(|| format!("ENRP at {addr}"))?;
    let local = out.local_addr()?;
    let listener = TcpListener::bind(SocketAddr::new(local.ip(), 0)).await?;
    let me = loop {
        let id: u32 = rand::random();
        if id != 0 {
            break RegistrarId(id);
        }
    };
    let info = ServerInformation {
        id: me,
        transport: TransportAddress::Tcp {
            port: listener.local_addr()?.port(),
            transport_use: TransportUse::DataOnly,
            addr: local.ip(),
        },
    };
    let (mut rd_out, mut wr) = out.into_split();
    let send = |receiver: RegistrarId, body: EnrpBody| {
        wire::encode_enrp(&EnrpMessage {
            sender: me,
            receiver,
            body,
        })
    };
    let mut hello = send(
        RegistrarId(0),
        EnrpBody::Presence {
            reply_required: true,
            checksum: wire_checksum_of_nothing(),
            info: Some(info),
        },
    )?;
    hello.extend(send(RegistrarId(0), EnrpBody::ListRequest)?);
    hello.extend(send(
        RegistrarId(0),
        EnrpBody::HandleTableRequest {
            own_children_only: false,
        },
    )?);
    wr.write_all(&hello).await?;

    // Answers come on the registrar's own connection to our listener (rsplb), or on ours.
    let mut inbound: Option<tokio::net::tcp::OwnedReadHalf> = None;
    let mut buf_in = Vec::new();
    let mut buf_out = Vec::new();
    let mut result = EnrpDump {
        registrar: RegistrarId(0),
        checksum: None,
        peers: Vec::new(),
        pools: Vec::new(),
    };
    let (mut have_list, mut have_table) = (false, false);
    let mut out_open = true;
    let mut elements = 0usize;
    while !(have_list && have_table) {
        let msg = tokio::select! {
            a = listener.accept(), if inbound.is_none() => {
                let (s, _) = a?;
                inbound = Some(s.into_split().0);
                continue;
            }
            m = read_message(&mut rd_out, &mut buf_out), if out_open => match m {
                Ok(m) => anyhow::Ok(m),
                Err(e) => {
                    // Answers may still come on the registrar's own connection to us.
                    log::debug!("ENRP dump: our connection to {addr} ended: {e}");
                    out_open = false;
                    continue;
                }
            },
            m = async {
                match inbound.as_mut() {
                    Some(r) => read_message(r, &mut buf_in).await,
                    None => std::future::pending().await,
                }
            } => match m {
                Ok(m) => anyhow::Ok(m),
                Err(e) => {
                    log::debug!("ENRP dump: the connection from {addr} ended: {e}");
                    inbound = None;
                    buf_in.clear();
                    continue;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                bail!(
                    "ENRP at {addr}: no complete answer within {timeout:?} ({} pool(s), {elements} \
                     element(s) so far; list {}, table {})",
                    result.pools.len(),
                    if have_list { "received" } else { "missing" },
                    if have_table { "complete" } else { "incomplete" }
                );
            }
        }
        .with_context(|| format!("reading ENRP from {addr}"))?;
        let Ok(decoded) = wire::decode_enrp(&msg) else {
            continue;
        };
        let m = decoded.message;
        if m.receiver != me && m.receiver.0 != 0 {
            continue;
        }
        if result.registrar.0 == 0 {
            result.registrar = m.sender;
        }
        if m.sender != result.registrar {
            continue;
        }
        match m.body {
            EnrpBody::Presence { checksum, .. } => result.checksum = Some(checksum),
            EnrpBody::ListResponse { servers, .. } => {
                result.peers = servers.into_iter().filter(|s| s.id != me).collect();
                have_list = true;
            }
            EnrpBody::HandleTableResponse {
                reject,
                more,
                pools,
            } => {
                if reject {
                    bail!("ENRP at {addr}: the registrar refused its handle table");
                }
                for (h, els) in pools {
                    elements += els.len();
                    match result.pools.iter_mut().find(|(p, _)| *p == h) {
                        Some((_, v)) => v.extend(els),
                        None => result.pools.push((h, els)),
                    }
                }
                if more {
                    wr.write_all(&send(
                        m.sender,
                        EnrpBody::HandleTableRequest {
                            own_children_only: false,
                        },
                    )?)
                    .await?;
                } else {
                    have_table = true;
                }
            }
            _ => {}
        }
    }
    let _ = wr.shutdown().await;
    Ok(result)
}

/// The checksum of no elements (the dump owns none).
fn wire_checksum_of_nothing() -> u16 {
    crate::handlespace::compute_checksum(std::iter::empty())
}

/// One framed ENRP message from a TCP stream (at most 64 KiB).
async fn read_message(
    r: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    loop {
        if let Some(len) = wire::frame_length(buf, 65_535)?
            && buf.len() >= len
        {
            let rest = buf.split_off(len);
            return Ok(std::mem::replace(buf, rest));
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            anyhow::bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
