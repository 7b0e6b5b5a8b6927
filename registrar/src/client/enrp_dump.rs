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

/// Dump the handlespace of the registrar whose ENRP endpoint is `addr` (TCP). ENRP drops what a
/// broken connection held (its audits repair that between registrars), so a dump that stops
/// getting answers starts over as a new peer, until `timeout` has passed.
pub async fn dump(addr: SocketAddr, timeout: Duration) -> anyhow::Result<EnrpDump> {
    let deadline = Instant::now() + timeout;
    let attempt = (timeout / 3).clamp(Duration::from_millis(500), Duration::from_secs(3));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match dump_once(addr, attempt.min(left)).await {
            Ok(d) => return Ok(d),
            Err(e) if Instant::now() + Duration::from_millis(100) >= deadline => return Err(e),
            Err(e) => log::debug!("ENRP dump of {addr}: {e:#}; starting over"),
        }
    }
}

async fn dump_once(addr: SocketAddr, timeout: Duration) -> anyhow::Result<EnrpDump> {
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
    let (rd_out, mut wr) = out.into_split();
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

    // Answers come on the registrar's own connection to our listener (rsplb), or on ours. Other
    // registrars of the scope that hear of this "peer" may call too: every connection is read,
    // and only the target's answers count (it alone was asked, so the first List or Handle
    // Table Response names it).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1024);
    let mut readers = tokio::task::JoinSet::new();
    readers.spawn(read_all(rd_out, tx.clone()));
    let mut result = EnrpDump {
        registrar: RegistrarId(0),
        checksum: None,
        peers: Vec::new(),
        pools: Vec::new(),
    };
    let mut checksums: Vec<(RegistrarId, u16)> = Vec::new();
    let (mut have_list, mut have_table) = (false, false);
    let mut elements = 0usize;
    while !(have_list && have_table) {
        let msg = tokio::select! {
            a = listener.accept() => {
                if let Ok((s, _)) = a
                    && readers.len() < 64
                {
                    // Keep our write half open: dropping it would send a FIN, and a registrar
                    // ends a connection whose peer has closed it, losing what it had queued.
                    let (rd, wr) = s.into_split();
                    let tx = tx.clone();
                    readers.spawn(async move {
                        read_all(rd, tx).await;
                        drop(wr);
                    });
                }
                continue;
            }
            m = rx.recv() => match m {
                Some(m) => m,
                None => continue,
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
        };
        let Ok(decoded) = wire::decode_enrp(&msg) else {
            continue;
        };
        let m = decoded.message;
        if m.receiver != me && m.receiver.0 != 0 {
            continue;
        }
        let answer = matches!(
            m.body,
            EnrpBody::ListResponse { .. } | EnrpBody::HandleTableResponse { .. }
        );
        if answer && result.registrar.0 == 0 {
            result.registrar = m.sender;
        }
        if let EnrpBody::Presence { checksum, .. } = m.body {
            checksums.push((m.sender, checksum));
            continue;
        }
        if !answer || m.sender != result.registrar {
            continue;
        }
        match m.body {
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
    // The target's Presence (asked for with the R flag) usually came before its answers; give a
    // late one a moment.
    let target = result.registrar;
    let late = Instant::now() + Duration::from_millis(200).min(timeout);
    while !checksums.iter().any(|(r, _)| *r == target) {
        match tokio::time::timeout_at(late, rx.recv()).await {
            Ok(Some(m)) => {
                if let Ok(d) = wire::decode_enrp(&m)
                    && let EnrpBody::Presence { checksum, .. } = d.message.body
                {
                    checksums.push((d.message.sender, checksum));
                }
            }
            _ => break,
        }
    }
    result.checksum = checksums
        .iter()
        .rev()
        .find(|(r, _)| *r == target)
        .map(|(_, c)| *c);
    readers.abort_all();
    let _ = wr.shutdown().await;
    Ok(result)
}

/// The checksum of no elements (the dump owns none).
fn wire_checksum_of_nothing() -> u16 {
    crate::handlespace::compute_checksum(std::iter::empty())
}

/// Every framed ENRP message of one connection (at most 64 KiB each) into `tx`, until the
/// connection ends or stops making sense.
async fn read_all(mut r: tokio::net::tcp::OwnedReadHalf, tx: tokio::sync::mpsc::Sender<Vec<u8>>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match wire::frame_length(&buf, 65_535) {
            Ok(Some(len)) if buf.len() >= len => {
                let rest = buf.split_off(len);
                let m = std::mem::replace(&mut buf, rest);
                if tx.send(m).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(_) => {}
            Err(_) => return,
        }
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
