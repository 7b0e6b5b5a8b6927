//! The Wireshark oracle for capture tests: `shared/oracle/capture.sh` recording a test
//! namespace's loopback, and `decode_check.py --strict` read back as rows.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::netns_support::Netns;

// ---------------------------------------------------------------------------------------------
// Environment: root, tshark, the oracle.

pub fn oracle_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/oracle");
    assert!(
        d.join("decode_check.py").exists() && d.join("capture.sh").exists(),
        "the Wireshark oracle is missing: expected decode_check.py and capture.sh in {} \
         (shared/oracle, checked out beside the repository)",
        d.display()
    );
    d
}

pub fn require_environment() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (it creates a network namespace and captures with dumpcap); \
         run it as root"
    );
    for tool in ["tshark", "dumpcap", "editcap"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{tool}` is not installed: install tshark with `cargo xtask setup` \
             (or `apt-get install -y tshark`)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Guards: the namespace and the capture process are removed / stopped on every exit path.

/// `capture.sh OUT -- sh -c 'echo ready; cat >/dev/null'` inside the namespace: it captures that
/// namespace's `lo` (capture.sh always captures `lo` of the namespace it runs in) until
/// [`Capture::finish`] closes the command's stdin.
pub struct Capture {
    child: Option<Child>,
}

impl Capture {
    pub fn start(ns: &Netns, out: &Path) -> Self {
        let script = oracle_dir().join("capture.sh");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(script)
            .arg(out)
            .args(["--", "sh", "-c", "echo ready; cat >/dev/null"])
            .env("CAPTURE_LINGER", "0.5")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ip netns exec capture.sh");
        let stdout = child.stdout.take().unwrap();
        let mut guard = Self { child: Some(child) };
        // capture.sh runs the command only once dumpcap says "Capturing on".
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) if l.trim() == "ready" => guard,
            other => {
                let err = guard.stop_and_collect_stderr();
                panic!("capture.sh did not start ({other:?}): {err}");
            }
        }
    }

    /// Let the command end, wait for capture.sh to write the pcap; its stderr.
    pub fn finish(mut self) -> String {
        let mut child = self.child.take().unwrap();
        drop(child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                assert!(st.success(), "capture.sh failed ({st}): {err}");
                return err;
            }
            if Instant::now() > deadline {
                self.child = Some(child);
                panic!("capture.sh did not end within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_and_collect_stderr(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return String::new();
        };
        // capture.sh stops dumpcap on SIGTERM (its trap); SIGKILL after 5 s.
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        err
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop_and_collect_stderr();
    }
}

pub struct Oracle {
    pub status: i32,
    pub output: String,
    /// (messages, malformed) from the last line.
    pub summary: (usize, usize),
    /// Message type name -> count, from the coverage summary.
    pub types: BTreeMap<String, usize>,
    pub rows: Vec<Row>,
}

/// One line of decode_check's `--tsv`.
#[derive(Clone, Debug)]
pub struct Row {
    pub sport: u16,
    pub transport: String,
    pub msg_type: u8,
    pub flags: u8,
    pub verdict: String,
    pub params: String,
    pub bytes: Vec<u8>,
}

pub fn decode_check(pcap: &Path) -> Oracle {
    let tsv = pcap.with_extension("tsv");
    let out = Command::new("python3")
        .arg(oracle_dir().join("decode_check.py"))
        .arg("--strict")
        .arg("--tsv")
        .arg(&tsv)
        .arg(pcap)
        .output()
        .expect("python3 runs");
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let status = out.status.code().unwrap_or(-1);
    assert_ne!(
        status, 2,
        "decode_check.py could not run tshark (install it with `cargo xtask setup`):\n{output}"
    );
    let last = output
        .lines()
        .rfind(|l| l.contains(" messages, ") && l.ends_with(" malformed"))
        .unwrap_or_else(|| panic!("no summary line:\n{output}"));
    let nums: Vec<usize> = last
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let summary = (nums[0], nums[1]);
    let mut types = BTreeMap::new();
    let mut in_types = false;
    for l in output.lines() {
        if l.starts_with("--- ") {
            in_types = l == "--- message types:";
            continue;
        }
        if in_types && let Some((name, count)) = l.trim().rsplit_once(": ") {
            // "ASAP 3 ASAP Registration Response: 4"
            let name = name.splitn(3, ' ').nth(2).unwrap_or(name).to_string();
            types.insert(name, count.parse().unwrap());
        }
    }
    let text = std::fs::read_to_string(&tsv).expect("decode_check wrote its tsv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (sport, transport, msg_type, flags, verdict, params, hex) = (
        col("sport"),
        col("transport"),
        col("msg_type"),
        col("flags"),
        col("verdict"),
        col("ws_param_types"),
        col("hex"),
    );
    let rows = lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Row {
                sport: f[sport].parse().unwrap(),
                transport: f[transport].to_string(),
                msg_type: f[msg_type].parse().unwrap_or(0),
                flags: u8::from_str_radix(f[flags].trim_start_matches("0x"), 16).unwrap_or(0xff),
                verdict: f[verdict].to_string(),
                params: f[params].to_string(),
                bytes: (0..f[hex].len() / 2)
                    .map(|i| u8::from_str_radix(&f[hex][2 * i..2 * i + 2], 16).unwrap())
                    .collect(),
            }
        })
        .collect();
    Oracle {
        status,
        output,
        summary,
        types,
        rows,
    }
}
