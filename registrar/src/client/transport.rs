//! ASAP messages over a byte stream: each message is framed by its own Length field (the TCP
//! mapping rsplb uses where the kernel has no SCTP). Generic over the stream so another
//! transport (TLS, a Unix socket, in-memory pipes in tests) fits without touching the PE and PU
//! logic above it.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::message::AsapMessage;
use crate::wire::{self, MAX_MESSAGE_LEN};

use super::ClientError;

/// A framed ASAP connection. [`AsapStream::recv`] is cancel-safe (bytes already read stay
/// buffered), so it can sit in a `tokio::select!` beside timers.
#[derive(Debug)]
pub struct AsapStream<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsapStream<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(1024),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Encodes and writes one message.
    pub async fn send(&mut self, msg: &AsapMessage) -> Result<(), ClientError> {
        let bytes = wire::encode_asap(msg)?;
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// The next message. Messages the decoder refuses but whose frame is intact are skipped
    /// (logged): one bad message from a registrar is no reason to drop the registration. A frame
    /// with an impossible Length cannot be re-synchronised and ends the connection with an error.
    pub async fn recv(&mut self) -> Result<AsapMessage, ClientError> {
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(len) = wire::frame_length(&self.buf, MAX_MESSAGE_LEN)? {
                if self.buf.len() < len {
                    break;
                }
                let frame: Vec<u8> = self.buf.drain(..len).collect();
                match wire::decode_asap(&frame) {
                    Ok(decoded) => return Ok(decoded.message),
                    Err(e) => log::warn!("ignoring an undecodable ASAP message: {e}"),
                }
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ClientError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "registrar closed the connection",
                )));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
