#!/bin/bash
# Host half of `cargo xtask interop` (which builds rsplb and calls this with RSPLB_BIN,
# RSP_REGISTRAR_BIN and LAB set). Puts the binaries and guest scripts on the lab share, runs
# `lab.sh setup` (cached) and `start`, runs the rows, prints `interop row N: PASS|FAIL reason`
# per row, stops the lab on every exit path and exits non-zero when a row failed.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
LAB=${LAB:?path of lab.sh}
LAB_CACHE=${LAB_CACHE:-/var/cache/rsp-interop}
export LAB_CACHE
SHARE=${LAB_SHARE:-$LAB_CACHE/share}
XFER=$LAB_CACHE/run/xfer/interop          # = /mnt/lab/interop in the guest
OUT=${INTEROP_OUT:-/tmp/rsplb-interop-$(date +%Y%m%d-%H%M%S)}
ORACLE=${ORACLE:-$HERE/../../../shared/oracle}
mkdir -p "$OUT"
declare -A RESULT

log() { printf '[interop %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
row() {  # row N PASS|FAIL [reason]
  RESULT[$1]="$2${3:+ $3}"
  echo "interop row $1: $2${3:+ $3}"
}
collect() { [[ -d $XFER ]] && cp -a "$XFER"/. "$OUT"/ 2>/dev/null; true; }
OWN=0   # 1 once this run uses the lab: only then is it stopped on exit
cleanup() {
  ((OWN)) || return 0
  if [[ -n ${R4_DAEMON:-} ]] && kill -0 "$R4_DAEMON" 2>/dev/null; then   # row 4 interrupted
    kill -TERM "$R4_DAEMON"; wait "$R4_DAEMON" 2>/dev/null
    "$RSPLB_BIN" --netns rsplab detach tap-rsp >/dev/null 2>&1
  fi
  collect
  log "stopping the lab"
  "$LAB" stop >>"$OUT/lab.log" 2>&1 || log "lab.sh stop failed (see $OUT/lab.log)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gx() {  # gx STEP [ARGS]: one guest step, output to $OUT/STEP.out
  local step=$1 rc
  "$LAB" exec "bash /mnt/host/interop/guest.sh $*" >"$OUT/$step.out" 2>&1; rc=$?
  return $rc
}
reason() {  # the guest's FAIL line, or the last line of its output
  local r
  r=$(grep -m1 '^FAIL' "$OUT/$1.out" 2>/dev/null | sed 's/^FAIL: //')
  [[ -n $r ]] || r=$(tail -n 1 "$OUT/$1.out" 2>/dev/null)
  echo "${r:-no output} (logs: $OUT)"
}

log "binaries and guest scripts to the lab share $SHARE"
mkdir -p "$SHARE/interop"
cp "${RSPLB_BIN:?}" "$SHARE/rsplb" && cp "${RSP_REGISTRAR_BIN:?}" "$SHARE/rsp-registrar" \
  && { [[ -z ${ASAP_LOAD_BIN:-} ]] || cp "$ASAP_LOAD_BIN" "$SHARE/asap-load"; } \
  && cp "$HERE"/guest.sh "$HERE"/*.py "$SHARE/interop/" || { echo "interop: cannot fill $SHARE"; exit 1; }

started=$(date +%s)
log "lab.sh setup (cached after the first time)"
"$LAB" setup >>"$OUT/lab.log" 2>&1 || { echo "interop: lab.sh setup failed (see $OUT/lab.log)"; exit 1; }
if "$LAB" status >/dev/null 2>&1 && [[ ${INTEROP_REUSE_LAB:-0} != 1 ]]; then
  echo "interop: the lab is already running (someone else's?); not touching it. Stop it with" \
    "'$LAB stop', or set INTEROP_REUSE_LAB=1 to run in it (it is stopped afterwards)"
  exit 1
fi
OWN=1
if ! "$LAB" status >/dev/null 2>&1; then
  log "lab.sh start"
  "$LAB" start >>"$OUT/lab.log" 2>&1 || { echo "interop: lab.sh start failed (see $OUT/lab.log)"; exit 1; }
fi
gx reset || { echo "interop: guest reset failed: $(reason reset)"; exit 1; }
log "lab ready after $(($(date +%s) - started)) s"

# ---- `run.sh bench` (cargo xtask bench interop): the registrars side by side, no rows
if [[ ${1:-rows} == bench ]]; then
  log "asap-load against rspregistrar and rsp-registrar (about 2 minutes)"
  if ! gx bench; then echo "bench interop: FAILED: $(reason bench)"; exit 1; fi
  grep '=' "$OUT/bench.out" | grep -v '^+' | tee "$OUT/bench.kv"
  awk -F= '{v[$1]=$2} END {
    for (c = 1; c <= 20; c += 19) for (k = 0; k < 2; k++) {
      key = k ? "reg" : "hres"; a = v[key "_per_s_rsplib_c" c]; b = v[key "_per_s_rsplb_c" c]
      if (a > 0) printf "%s_ratio_c%d=%.2f\n", key, c, b / a
    }
    for (c = 1; c <= 20; c += 19) for (k = 0; k < 2; k++) {
      key = k ? "reg" : "hres"; a = v[key "_registrar_cpu_us_rsplib_c" c]; b = v[key "_registrar_cpu_us_rsplb_c" c]
      if (b > 0) printf "%s_cpu_ratio_c%d=%.2f\n", key, c, a / b
    }
    printf "hres_per_s_rsplib=%s\nhres_per_s_rsplb=%s\nhres_ratio=%.2f\n", v["hres_per_s_rsplib_c20"], v["hres_per_s_rsplb_c20"], v["hres_per_s_rsplb_c20"] / v["hres_per_s_rsplib_c20"]
    printf "reg_per_s_rsplib=%s\nreg_per_s_rsplb=%s\nreg_ratio=%.2f\n", v["reg_per_s_rsplib_c20"], v["reg_per_s_rsplb_c20"], v["reg_per_s_rsplb_c20"] / v["reg_per_s_rsplib_c20"]
  }' "$OUT/bench.kv"
  echo "method=asap-load over SCTP in the lab guest (1 vCPU, TCG), one request in flight per client, median of ${RUNS:-3} runs of ${SECS:-4} s; rsplb with rate limits off as rsplib's default; the _ratio lines without suffix are at 20 clients; *_registrar_cpu_us_*: the registrar process's CPU time (utime+stime from /proc) per answered request, whole run; *_cpu_ratio_*: rsplib's CPU per request over rsplb's (above 1: rsplb uses less)"
  exit 0
fi

# ---- row 1 and the bad-input checks (rsplb's registrar in the guest), captured apart: the
# second sends bad input on purpose
gx capture-start row1 || row 1 FAIL "tcpdump: $(reason capture-start)"
if gx row1; then row 1 PASS "$(grep -m1 'removed' "$OUT/row1.out")"; else row 1 FAIL "$(reason row1)"; fi
gx capture-stop row1
gx capture-start badinput || row bad-input FAIL "tcpdump: $(reason capture-start)"
if gx badinput; then bad_ok=1; else bad_ok=0; fi
gx row1-stop
gx capture-stop badinput

# ---- row 2 (rsplib's registrar in the guest)
gx capture-start row2 || row 2 FAIL "tcpdump: $(reason capture-start)"
if gx row2; then row2_ok=1; else row2_ok=0; fi
gx capture-stop row2
collect
# On the wire: rsplb's element answered rsplib's keep-alives (1 s cycle) at least three times.
acks=$(tshark -r "$OUT/row2.pcap" -Y 'asap.message_type == 8' 2>/dev/null | wc -l)
if ((row2_ok)) && ((acks >= 3)); then
  row 2 PASS "$(grep -m1 'still registered' "$OUT/row2.out"); $acks keep-alive acks on the wire"
elif ((row2_ok)); then
  row 2 FAIL "only $acks keep-alive acks in $OUT/row2.pcap"
else
  row 2 FAIL "$(reason row2)"
fi

# ---- row 3: ENRP between rsp-registrar and rspregistrar (the step captures it itself)
if gx row3; then row3_ok=1; else row3_ok=0; fi
collect
# On the wire: the checksum rsplb computed over rsplib's element is one rsplib itself sent in
# a Presence (rsplib's bytes, not ours, are the reference).
ours=$(cat "$OUT/row3.checksum256" 2>/dev/null)
sent=$(tshark -r "$OUT/row3.pcap" -Y 'enrp.message_type == 1 && enrp.sender_servers_id == 0x100' \
  -T fields -e enrp.pe_checksum 2>/dev/null | sort -u | tr '\n' ' ')
if ((row3_ok)) && [[ -n $ours && " $sent " == *" $ours "* ]]; then
  row 3 PASS "$(grep -c '^PASS' "$OUT/row3.out") checks; rsplb's checksum of rsplib's elements ($ours) is one rspregistrar sent"
elif ((row3_ok)); then
  row 3 FAIL "checks passed but rsplb's checksum of rsplib's elements ($ours) is none rspregistrar sent ($sent)"
else
  row 3 FAIL "$(reason row3)"
fi

# The bad input on the wire: the large registration really crossed in several DATA chunks, and
# every message rsplb's registrar sent (source port 3863) decodes cleanly; the bad input itself
# is malformed on purpose.
if [[ -s $OUT/badinput.pcap ]]; then
  python3 "$ORACLE/decode_check.py" --strict "$OUT/badinput.pcap" >"$OUT/badinput.decode.txt" 2>&1
  frags=$(tshark -r "$OUT/badinput.pcap" -Y 'sctp.data_e_bit == 0' 2>/dev/null | wc -l)
  bad_replies=$(grep -P '^frame.*\t[0-9.]+:3863 > ' "$OUT/badinput.decode.txt" | grep -vc $'\tOK')
else
  frags=0 bad_replies=?
fi
if ((bad_ok)) && ((frags > 0)) && [[ $bad_replies == 0 ]]; then
  row bad-input PASS "$(grep -c '^PASS' "$OUT/badinput.out") checks; $frags non-final DATA chunks; registrar replies all decode"
elif ((bad_ok)); then
  row bad-input FAIL "checks passed but on the wire: $frags non-final DATA chunks, $bad_replies malformed replies (see $OUT/badinput.decode.txt)"
else
  row bad-input FAIL "$(reason badinput)"
fi

# ---- row 4: rsplb's dataplane in front of rsplib's pool elements. The balancer is `rsplb run
# --config` on the host, inside the lab's network namespace, with its XDP program on the lab's
# tap (tap-rsp): its embedded registrar peers by ENRP with an rsp-registrar in the guest, at
# which two rsplib rspservers (SCTP echo) register; a legacy SCTP client in the guest reaches
# them through the VIP 198.18.78.1:7777/sctp (DSR: the servers answer it directly). See
# guest.sh row4-up for the guest's hosts.
R4=$OUT/row4
mkdir -p "$R4"
rsplb_lab() { "$RSPLB_BIN" --netns rsplab "$@"; }
cat >"$R4/rsplb.toml" <<'TOML'
metrics = "127.0.0.1:9464"
[interface]
name = "tap-rsp"
xdp_mode = "native"
[[vip]]
address = "198.18.78.1:7777/sctp"
pool = "EchoVip"
mode = "dsr"
[pool.EchoVip]
[registrar]
asap_listen = ["198.18.77.1:3863"]
[registrar.enrp]
listen = ["198.18.77.1:9901"]
peers = ["198.18.77.3:9901"]
TOML
# r4_status FIELD: from `rsplb status --json`: "elements" (their count), "ADDR" (that element's
# new flows), "resolved" (elements with a next hop)
r4_status() {
  rsplb_lab status --json 2>/dev/null | python3 -c '
import json, sys
st, what = json.load(sys.stdin), sys.argv[1]
els = [e for e in st["elements"] if e["pool"] == "EchoVip"]
if what == "elements": print(len(els))
elif what == "resolved": print(sum(1 for e in els if e["next_hop"] != "unresolved"))
else: print(sum(e["new_flows"] or 0 for e in els if e["address"].startswith(what + ":")))' "$1"
}
r4_wait() {  # r4_wait SECONDS FIELD VALUE
  local end=$((SECONDS + $1))
  until [[ $(r4_status "$2") == "$3" ]]; do ((SECONDS >= end)) && return 1; sleep 0.2; done
}
row4() {
  gx row4-up || { echo "FAIL: guest hosts: $(reason row4-up)"; return 1; }
  cat "$OUT/row4-up.out" >&2
  RUST_LOG=info setsid "$RSPLB_BIN" --netns rsplab run --config "$R4/rsplb.toml" \
    </dev/null >"$R4/daemon.log" 2>&1 &
  R4_DAEMON=$!
  r4_wait 30 resolved 2 || { tail -20 "$R4/daemon.log"; echo "FAIL: the balancer never had both rspservers in its dataplane (status: $(r4_status elements) elements, $(r4_status resolved) resolved)"; return 1; }
  gx row4-client 20 || { echo "FAIL: $(reason row4-client)"; return 1; }
  local f11 f12
  f11=$(r4_status 198.18.77.11) f12=$(r4_status 198.18.77.12)
  ((f11 > 0 && f12 > 0 && f11 + f12 >= 20)) \
    || { echo "FAIL: 20 associations, new flows at the balancer: s1 $f11, s2 $f12 (both must serve)"; return 1; }
  echo "PASS 20 associations through the VIP echoed; the balancer placed $f11 on s1 and $f12 on s2"
  # Long-lived associations, then s1's rspserver is killed: its element leaves (its
  # association to rsp-registrar aborts; ENRP tells the balancer), new associations all go to
  # s2, and those already on s2 never break.
  gx row4-hold 10 || { echo "FAIL: $(reason row4-hold)"; return 1; }
  local p on_s2=() on_s1=0 el
  for p in $(grep -E '^[0-9]+$' "$OUT/row4-hold.out"); do
    el=$(rsplb_lab flow get "198.18.77.10:$p" 198.18.78.1:7777/sctp --json \
      | python3 -c 'import json,sys; print(json.load(sys.stdin).get("element") or "")')
    case $el in 198.18.77.12:*) on_s2+=("$p") ;; 198.18.77.11:*) on_s1=$((on_s1 + 1)) ;;
      *) echo "FAIL: rsplb flow get: association from port $p pinned to '$el'"; return 1 ;; esac
  done
  ((${#on_s2[@]} > 0)) || { echo "FAIL: none of the 10 long-lived associations is on s2"; return 1; }
  local t0 t1
  t0=$(date +%s%N)
  gx row4-kill s1 || { echo "FAIL: $(reason row4-kill)"; return 1; }
  r4_wait 20 elements 1 || { echo "FAIL: s1's element still in the dataplane 20 s after its rspserver was killed"; return 1; }
  t1=$(date +%s%N)
  gx row4-client 20 || { echo "FAIL: after s1 left: $(reason row4-client)"; return 1; }
  gx row4-release || { echo "FAIL: $(reason row4-release)"; return 1; }
  for p in "${on_s2[@]}"; do
    grep -q "^$p ok$" "$OUT/row4-release.out" || { echo "FAIL: the association from port $p (on s2) broke when s1 left"; return 1; }
  done
  echo "PASS s1 left the dataplane $(((t1 - t0) / 1000000)) ms after SIGKILL (status polled from the host); 20 new associations all echoed by s2; ${#on_s2[@]} long-lived associations on s2 unbroken ($on_s1 were on s1)"
}
row4 >"$OUT/row4.out" 2>"$OUT/row4.err"; r4rc=$?
cat "$OUT/row4.out" >&2
[[ -n ${R4_DAEMON:-} ]] && { kill -TERM "$R4_DAEMON" 2>/dev/null; wait "$R4_DAEMON" 2>/dev/null; }
rsplb_lab detach tap-rsp >>"$R4/daemon.log" 2>&1
gx row4-down
if ((r4rc == 0)); then
  row 4 PASS "$(grep '^PASS' "$OUT/row4.out" | sed 's/^PASS //' | paste -sd'|' | sed 's/|/ | /g')"
else
  row 4 FAIL "$(grep -m1 '^FAIL' "$OUT/row4.out" | sed 's/^FAIL: //') (logs: $OUT)"
fi

# ---- row 5: the captures of rows 1-3 through Wireshark's dissectors, --strict
r5=PASS why=
for c in row1 row2 row3; do
  if [[ ! -s $OUT/$c.pcap ]]; then r5=FAIL; why+="$c: no capture; "; continue; fi
  python3 "$ORACLE/decode_check.py" --strict "$OUT/$c.pcap" >"$OUT/$c.decode.txt" 2>&1
  rc=$?
  last=$(tail -n 1 "$OUT/$c.decode.txt")
  if ((rc != 0)) || ! [[ $last =~ \ 0\ malformed ]]; then r5=FAIL; fi
  why+="$c: $last; "
done
row 5 "$r5" "${why%; } (decode: $OUT/row*.decode.txt)"

log "done in $(($(date +%s) - started)) s; logs and captures in $OUT"
fail=0
for n in 1 2 3 4 5 bad-input; do [[ ${RESULT[$n]:-FAIL} == PASS* ]] || fail=1; done
exit $fail
