//! systemd's readiness protocol (`Type=notify`, see deploy/rsplb.service): a datagram to
//! `$NOTIFY_SOCKET` says when the daemon serves (`READY=1`), reloads and stops. Without that
//! variable (not started by systemd) nothing is sent.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=...`, newline-separated).
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let send = || -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket address.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(state.as_bytes(), &addr)?;
            }
            None => {
                sock.send_to(state.as_bytes(), &path)?;
            }
        }
        Ok(())
    };
    if let Err(e) = send() {
        log::warn!("notifying systemd ({state:?}): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_reaches_the_notify_socket() {
        let dir = std::env::temp_dir().join(format!("rsplb-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        // SAFETY: this test is the only one in this process to touch NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        notify("READY=1\nSTATUS=serving");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
