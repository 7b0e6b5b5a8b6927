//! The XDP program's event log as an operator meets it: `rsplb run` prints the rare events of
//! the dataplane (here: packets to a VIP whose pool is empty) with target `xdp`, naming the
//! VIP; at `--xdp-log off` the program writes none; a flood gives a bounded number of lines.
mod common;

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{attached_lab, vip_str};
use rsplb_integration::Lab;

/// A log file of the test, removed when dropped.
struct LogFile(PathBuf);

impl LogFile {
    fn new(lab: &Lab, name: &str) -> LogFile {
        LogFile(std::env::temp_dir().join(format!("{}{name}.log", lab.id.netns(""))))
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap_or_default()
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Waits (at most `secs` seconds) until `cond` holds of the log's text; fails with the text.
fn wait_log(lab: &mut Lab, log: &LogFile, secs: u64, what: &str, cond: impl Fn(&str) -> bool) {
    let t0 = Instant::now();
    loop {
        let text = log.text();
        if cond(&text) {
            return;
        }
        lab.check_daemons().expect("the daemon runs");
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{what} within {secs} s; the daemon's log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `count` datagrams from the client to `to`, paced so that the veths do not drop them
/// before the balancer's XDP program sees them.
fn send_datagrams(lab: &Lab, to: SocketAddr, count: u32) {
    lab.client
        .netns
        .run(move || {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            for i in 0..count {
                let _ = s.send_to(b"rsplb", to);
                if i % 100 == 99 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(())
        })
        .expect("sending datagrams");
}

/// `drop_no_element` of the balancer's global counters.
fn no_element_drops(lab: &Lab) -> u64 {
    lab.rsplb
        .stats()
        .expect("rsplb stats")
        .global("drop_no_element")
}

/// Waits (at most 10 s) until `drop_no_element` reaches `at_least`.
fn wait_drops(lab: &Lab, at_least: u64) -> u64 {
    let t0 = Instant::now();
    loop {
        let n = no_element_drops(lab);
        if n >= at_least || t0.elapsed() > Duration::from_secs(10) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The event lines of a daemon's log that name `vip`.
fn event_lines<'a>(text: &'a str, vip: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.contains(" xdp]") && l.contains(&format!("VIP {vip}:")))
        .collect()
}

#[test]
fn an_empty_pool_is_logged_by_the_daemon_naming_its_vip_off_means_none_and_a_flood_is_bounded() {
    let mut lab = attached_lab();
    let addr: IpAddr = lab.vip4(1).into();
    let (quiet, loud) = (vip_str(addr, 7000, "udp"), vip_str(addr, 7001, "udp"));
    for vip in [&quiet, &loud] {
        lab.rsplb
            .vip_add(vip, "empty", "dsr", None)
            .expect("vip add");
    }

    // Off: the program writes no event (so the next daemon, which reads the ring buffer they
    // would be in, finds none either).
    let off = LogFile::new(&lab, "xdp-off");
    lab.start_daemon_logged(&["--xdp-log", "off"], off.path())
        .unwrap();
    wait_log(&mut lab, &off, 30, "the daemon started", |t| {
        t.contains("rsplb: running on")
    });
    let before = no_element_drops(&lab);
    send_datagrams(&lab, SocketAddr::new(addr, 7000), 200);
    let dropped = wait_drops(&lab, before + 200) - before;
    assert!(dropped >= 100, "only {dropped} of 200 datagrams dropped");
    lab.stop_daemons();
    assert!(
        !off.text().contains(" xdp]"),
        "events at --xdp-log off:\n{}",
        off.text()
    );

    // Warn (the default): the event names the VIP.
    let warn = LogFile::new(&lab, "xdp-warn");
    lab.start_daemon_logged(&[], warn.path()).unwrap();
    wait_log(&mut lab, &warn, 30, "the daemon started", |t| {
        t.contains("rsplb: running on")
    });
    send_datagrams(&lab, SocketAddr::new(addr, 7001), 1);
    wait_log(&mut lab, &warn, 10, "an event naming the VIP", |t| {
        !event_lines(t, &loud).is_empty()
    });
    let text = warn.text();
    let line = event_lines(&text, &loud)[0];
    assert!(
        line.contains("WARN") && line.contains("empty pool") && line.contains("dropped"),
        "{line}"
    );
    assert!(
        event_lines(&text, &quiet).is_empty(),
        "the ring buffer held events written at --xdp-log off:\n{text}"
    );

    // A flood: a few lines a second per CPU, not one per packet; the rest are counted.
    let suppressed_before = lab.rsplb.stats().unwrap().global("log_suppressed");
    let before = no_element_drops(&lab);
    let t0 = Instant::now();
    send_datagrams(&lab, SocketAddr::new(addr, 7001), 10_000);
    let dropped = wait_drops(&lab, before + 10_000) - before;
    let secs = t0.elapsed().as_secs() + 1;
    assert!(
        dropped >= 5_000,
        "only {dropped} of 10,000 datagrams dropped"
    );
    let suppressed = lab.rsplb.stats().unwrap().global("log_suppressed") - suppressed_before;
    // Every packet was either logged or counted as suppressed.
    wait_log(&mut lab, &warn, 10, "the flood's events", |t| {
        event_lines(t, &loud).len() > 1
    });
    let cpus = std::thread::available_parallelism().map_or(64, |n| n.get()) as u64;
    // 3 per CPU per second (`rsplb::dataplane::events::BURST`), one window more for the edges.
    let bound = 3 * cpus * (secs + 1) + 1;
    let lines = event_lines(&warn.text(), &loud).len() as u64;
    assert!(
        lines <= bound,
        "{lines} event lines for {dropped} dropped datagrams in {secs} s (at most {bound}):\n{}",
        warn.text()
    );
    // Every dropped datagram was logged (at most `bound`) or counted as suppressed.
    assert!(
        suppressed + bound >= dropped,
        "{dropped} dropped, at most {bound} logged, {suppressed} counted as suppressed"
    );
    // The next event a CPU logs, in a later window, says how many it kept back.
    let t0 = Instant::now();
    while !warn.text().contains("more like it on this CPU not logged") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no event reported the suppressed ones:\n{}",
            warn.text()
        );
        send_datagrams(&lab, SocketAddr::new(addr, 7001), 1);
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.stop_daemons();
}
