//! Failover and recovery with `rsplb run --registrar` and three servers registered by their
//! sidecars: a server host whose link is cut, and one whose pool element process freezes
//! (SIGSTOP), each leave the dataplane (no new connection reaches them, the others' connections
//! go on), and each gets new connections again once it is back (link up; SIGCONT), without
//! anyone touching the balancer.

mod common;

use std::time::Duration;

use common::*;
use rsplb_integration::{
    TcpConn,
    rserpool::{contains, contains_all, wait_for_elements},
    tcp_burst,
};

const POOL: &str = "web";
const BOUND: Duration = Duration::from_secs(20);

#[test]
fn a_cut_link_and_a_frozen_element_leave_and_come_back() {
    let RegisteredLab {
        lab,
        sidecars,
        vip,
        elements,
        ..
    } = registered_lab(POOL);
    let client = lab.client.netns.name().to_string();
    let mut long: Vec<(TcpConn, String)> = (0..30)
        .map(|_| {
            let mut c = TcpConn::open(&client, vip).expect("connect");
            let s = c.ask().expect("first request");
            (c, s)
        })
        .collect();
    assert!(long.iter().any(|(_, s)| s == "s1"), "no connection on s1");

    // --- s3's link is cut: its sidecar answers no keep-alive any more.
    let s3 = &lab.server_hosts[2];
    s3.netns
        .ip(&["link", "set", &s3.iface, "down"])
        .expect("link down");
    let took = wait_for_elements(
        &lab.rsplb,
        POOL,
        BOUND,
        "s3 out after its link was cut",
        |l| Ok(!contains(l, &elements[2]) && contains_all(l, &elements[..2])),
    )
    .unwrap();
    println!("link_cut_to_removal_s={:.3}", took.as_secs_f64());
    let t = tcp_burst(&client, vip, 150).expect("tcp burst");
    assert_eq!(t.failed, 0, "connections failed with s3 cut off: {t}");
    assert_eq!(t.get("s3"), 0, "a new connection reached s3: {t}");
    for (c, s) in long.iter_mut().filter(|(_, s)| s != "s3") {
        assert_eq!(&c.ask().expect("a connection to a healthy server broke"), s);
    }

    // Link back: the sidecar notices its registration is gone and registers again.
    s3.netns
        .ip(&["link", "set", &s3.iface, "up"])
        .expect("link up");
    let took = wait_for_elements(&lab.rsplb, POOL, BOUND, "s3 back after link up", |l| {
        Ok(contains_all(l, &elements))
    })
    .unwrap();
    println!("link_up_to_return_s={:.3}", took.as_secs_f64());
    let t = tcp_burst(&client, vip, 300).expect("tcp burst");
    assert_eq!(t.failed, 0, "connections failed after s3 came back: {t}");
    assert!(
        t.get("s3") > 0,
        "s3 is back but gets no new connection: {t}"
    );

    // --- s2's pool element process freezes: keep-alives go unanswered.
    let pid = sidecars[1].pid() as i32;
    // SAFETY: kill(2) on a child this test started and still holds.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let took = wait_for_elements(&lab.rsplb, POOL, BOUND, "s2 out while frozen", |l| {
        Ok(!contains(l, &elements[1]) && contains(l, &elements[0]))
    });
    // SAFETY: as above (continued even when the wait failed, so the guard can stop it).
    unsafe { libc::kill(pid, libc::SIGCONT) };
    println!("freeze_to_removal_s={:.3}", took.unwrap().as_secs_f64());
    for (c, s) in long.iter_mut().filter(|(_, s)| s == "s1") {
        assert_eq!(&c.ask().expect("a connection to s1 broke"), s);
    }
    // Thawed: the registrar had closed its connection; it registers again.
    let took = wait_for_elements(&lab.rsplb, POOL, BOUND, "s2 back after SIGCONT", |l| {
        Ok(contains_all(l, &elements))
    })
    .unwrap();
    println!("thaw_to_return_s={:.3}", took.as_secs_f64());
    let t = tcp_burst(&client, vip, 300).expect("tcp burst");
    assert_eq!(t.failed, 0, "connections failed after s2 came back: {t}");
    assert!(
        t.get("s2") > 0,
        "s2 is back but gets no new connection: {t}"
    );
    for (c, s) in long.iter_mut().filter(|(_, s)| s == "s1") {
        assert_eq!(&c.ask().expect("a connection to s1 broke"), s);
    }
}
