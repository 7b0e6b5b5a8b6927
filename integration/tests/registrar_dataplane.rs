//! The whole loop: servers register into pool `web` through `rsplb pe register` sidecars at the
//! registrar that `rsplb run --registrar` embeds on the balancer; the daemon puts them into the
//! XDP dataplane behind a DSR VIP; a server that fails leaves the pool (its sidecar's health
//! check deregisters it) and the dataplane, new connections go to the others only, and a
//! connection opened before to a remaining server keeps working. A server whose host hangs
//! (its sidecar stopped: no keep-alive answered) leaves the same way.

mod common;

use std::time::Duration;

use common::*;
use rsplb_integration::{
    TcpConn,
    rserpool::{contains, contains_all, pool_elements, wait_for_elements},
    tcp_burst,
};

const POOL: &str = "web";
/// A generous bound for a shared, noisy machine: the measured times are printed.
const LEAVE_BOUND: Duration = Duration::from_secs(5);

#[test]
fn registered_servers_serve_a_vip_and_a_failed_one_leaves_at_once() {
    // `rsplb pe register web ADDR:80 --registrar LB:3863 --check tcp` in each server's namespace.
    let RegisteredLab {
        mut lab,
        mut sidecars,
        vip,
        elements,
        took,
    } = registered_lab(POOL);
    println!("registration_to_dataplane_s={:.3}", took.as_secs_f64());
    for e in pool_elements(&lab.rsplb, POOL).unwrap() {
        assert_eq!(e.owner, "registrar", "{}", e.address);
        assert_eq!(e.state, "active", "{}", e.address);
    }

    // Real connections reach all three.
    let t = tcp_burst(lab.client.netns.name(), vip, 300).expect("tcp burst");
    assert_eq!(t.failed, 0, "connections failed: {t}");
    assert!(
        counts(&t, 3).iter().all(|&n| n > 0),
        "not every server answered: {t}"
    );

    // Long-lived connections, until some have landed on s1 (the server that stays to the end)
    // and on s2.
    let mut long: Vec<(TcpConn, String)> = Vec::new();
    for _ in 0..60 {
        let mut c = TcpConn::open(lab.client.netns.name(), vip).expect("connect");
        let s = c.ask().expect("first request");
        long.push((c, s));
        let on = |name: &str| long.iter().filter(|(_, s)| s == name).count();
        if on("s1") >= 2 && on("s2") >= 2 {
            break;
        }
    }
    assert!(
        long.iter().any(|(_, s)| s == "s1"),
        "60 connections, none on s1"
    );

    // s3's service fails: its sidecar's health check deregisters it.
    drop(lab.servers.remove(2));
    let left = wait_for_elements(
        &lab.rsplb,
        POOL,
        LEAVE_BOUND,
        "s3 left the dataplane",
        |l| Ok(!contains(l, &elements[2]) && contains_all(l, &elements[..2])),
    )
    .unwrap();
    println!("failure_to_dataplane_removal_s={:.3}", left.as_secs_f64());
    sidecars[2]
        .check_running()
        .expect("the sidecar of s3 exited");

    // New connections go to s1 and s2 only, none fails.
    let t = tcp_burst(lab.client.netns.name(), vip, 200).expect("tcp burst");
    assert_eq!(t.failed, 0, "connections failed after s3 left: {t}");
    assert_eq!(t.get("s3"), 0, "s3 still answered: {t}");
    assert!(t.get("s1") > 0 && t.get("s2") > 0, "{t}");

    // Connections opened before to s1/s2 still reach the same server.
    for (c, s) in long.iter_mut().filter(|(_, s)| s != "s3") {
        assert_eq!(&c.ask().expect("a connection to a healthy server broke"), s);
    }

    // s2's host hangs (its sidecar stops answering keep-alives): the registrar's keep-alive
    // timeout removes it.
    let _cont = Stopped::stop(sidecars[1].pid());
    let left = wait_for_elements(
        &lab.rsplb,
        POOL,
        LEAVE_BOUND,
        "s2 left the dataplane",
        |l| Ok(!contains(l, &elements[1]) && contains(l, &elements[0])),
    )
    .unwrap();
    println!(
        "keepalive_loss_to_dataplane_removal_s={:.3}",
        left.as_secs_f64()
    );
    let t = tcp_burst(lab.client.netns.name(), vip, 100).expect("tcp burst");
    assert_eq!(t.failed, 0, "connections failed after s2 left: {t}");
    assert_eq!(t.get("s1"), 100, "{t}");
    for (c, s) in long.iter_mut().filter(|(_, s)| s == "s1") {
        assert_eq!(&c.ask().expect("a connection to s1 broke"), s);
    }
}

/// A process stopped with SIGSTOP, continued (SIGCONT) when dropped so it can be stopped
/// normally.
struct Stopped(i32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        let pid = pid as i32;
        assert!(pid > 0, "no process to stop");
        // SAFETY: kill with a pid of our own child and a valid signal.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}
