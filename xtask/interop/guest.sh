#!/bin/bash
# Guest half of `cargo xtask interop`: runs inside the interop lab's guest (kernel SCTP,
# rsplib 3.4.4), one step per call:  guest.sh STEP [ARGS]
# rsplb's binaries are in /mnt/host (the lab share); logs and captures go to /mnt/lab/interop.
set -u
STEP=$1; shift
GIP=${GIP:-198.18.77.2}
BIN=/mnt/host
L=/mnt/lab/interop
RUN=/run/interop
mkdir -p "$L" "$RUN"

bgrun() {  # bgrun NAME CMD... : detached; pid in $RUN/NAME.pid, output in $L/NAME.log
  local n=$1; shift
  setsid bash -c 'echo $$ >'"$RUN/$n"'.pid; exec "$@"' "$n" "$@" <"${STDIN:-/dev/null}" >"$L/$n.log" 2>&1 &
}
bgstop() {  # bgstop NAME [SIG]
  local p; p=$(cat "$RUN/$1.pid" 2>/dev/null) || return 0
  kill -"${2:-INT}" "$p" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || { rm -f "$RUN/$1.pid"; return 0; }; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null; rm -f "$RUN/$1.pid"; return 0
}
waitfor() {  # waitfor SECONDS CMD... : poll CMD until it succeeds
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do ((SECONDS >= end)) && return 1; sleep 0.3; done
}
fail() { echo "FAIL: $*"; exit 1; }
handlespace() { "$BIN/rsplb" handlespace --admin "${ADMIN:-127.0.0.1:3870}" --json; }
# pool_elements POOL: element ids of POOL in rsplb's registrar, one per line
pool_elements() {
  handlespace | python3 -c '
import json, sys
hs = json.load(sys.stdin)
for p in hs.get("pools", []):
    if p["handle"] == sys.argv[1]:
        for e in p.get("elements", []):
            print(e["id"])' "$1"
}
has_elements() { [[ $(pool_elements "$1" | wc -l) -ge ${2:-1} ]]; }
no_pool() { [[ $(pool_elements "$1" | wc -l) -eq 0 ]]; }
# sctp_port PROG: the first SCTP port PROG listens on
sctp_port() { ss -Slnp | awk -v p="\"$1\"" '$0 ~ p {n = split($4, a, ":"); print a[n]; exit}'; }
# echo_through POOL REGISTRAR: a line fed to rspterminal comes back through the pool. rspterminal
# does not exit at EOF: it reads a FIFO and is stopped once the echo ("> LINE") is back.
echo_through() {
  local pool=$1 reg=$2 msg="hello-$1-$RANDOM$RANDOM" rc
  rm -f "$RUN/pu.in"; mkfifo "$RUN/pu.in"
  STDIN=$RUN/pu.in bgrun "pu-$pool" rspterminal -poolhandle="$pool" -registrar="$reg" \
    -asapannounce=off -loglevel=2 -logcolor=off
  exec 5>"$RUN/pu.in"
  echo "$msg" >&5
  waitfor 30 grep -q -- "> $msg" "$L/pu-$pool.log"; rc=$?
  exec 5>&-
  bgstop "pu-$pool" INT
  return $rc
}

case $STEP in
reset)  # stop whatever an earlier (aborted) run left behind
  for f in "$RUN"/*.pid; do [[ -e $f ]] && { n=${f##*/}; bgstop "${n%.pid}" KILL; }; done
  pkill -x rspserver; pkill -x rspregistrar; pkill -x rspterminal
  pkill -f "^/mnt/host/rs"; pkill -f "/mnt/host/interop/sctp_"; true
  rm -f "$L"/*.log "$L"/*.pcap
  modprobe sctp && checksctp >/dev/null || fail "no kernel SCTP in the guest"
  # Peers may add addresses to an association (ASCONF, RFC 5061) without AUTH: row 3 checks
  # the registrar's reaction to an added peer address. Set before any association exists.
  sysctl -qw net.sctp.addip_enable=1 net.sctp.addip_noauth_enable=1
  ip netns del rc 2>/dev/null; ip link del veth-rc 2>/dev/null
  for h in r s1 s2 c; do ip netns del "r4$h" 2>/dev/null; done
  ip addr del 198.18.77.5/32 dev lo 2>/dev/null; true
  ;;
capture-start)  # capture-start NAME
  bgrun "tcpdump-$1" tcpdump -i any -n -U -s 0 -w "$L/$1.pcap" 'sctp or udp'
  waitfor 20 grep -q 'listening on' "$L/tcpdump-$1.log" || fail "tcpdump did not start"
  ;;
capture-stop)  # capture-stop NAME
  sleep 0.5; bgstop "tcpdump-$1" INT; sync
  ;;

# ---- row 1: rsplib PEs and PU at rsplb's registrar (SCTP)
row1)
  # ASAP over SCTP on one multi-homed endpoint: the guest's address and a second one on lo.
  ip addr add 198.18.77.5/32 dev lo 2>/dev/null
  RUST_LOG=${RUST_LOG:-info} bgrun rsp-registrar "$BIN/rsp-registrar" --asap "$GIP:3863" \
    --asap-sctp "$GIP:3863" --asap-sctp 198.18.77.5:3863 \
    --admin 127.0.0.1:3870 --announce-interface "$GIP"
  # (ss shows one address of a multi-homed endpoint: the port is what counts)
  waitfor 20 sh -c "ss -Sln | grep -q ':3863 '" || { cat "$L/rsp-registrar.log"; fail "rsp-registrar does not listen on SCTP port 3863"; }
  waitfor 10 grep -q "over SCTP" "$L/rsp-registrar.log" || fail "rsp-registrar does not say it serves SCTP"
  bgrun pe-rr rspserver -echo -poolhandle=EchoRR -policy=RoundRobin -registrar="$GIP:3863" \
    -asapannounce=off -local="$GIP" -loglevel=2 -logcolor=off
  bgrun pe-lu rspserver -echo -poolhandle=EchoLU -policy=LeastUsed -registrar="$GIP:3863" \
    -asapannounce=off -local="$GIP" -loglevel=2 -logcolor=off
  waitfor 30 has_elements EchoRR || { cat "$L/pe-rr.log"; fail "rspserver (RoundRobin) never appeared in rsplb's handlespace"; }
  waitfor 30 has_elements EchoLU || { cat "$L/pe-lu.log"; fail "rspserver (LeastUsed) never appeared in rsplb's handlespace"; }
  "$BIN/rsplb" handlespace --admin 127.0.0.1:3870
  handlespace | grep -q '"least_used"' || fail "EchoLU is not listed with policy least_used"
  echo_through EchoRR "$GIP:3863" || fail "rspterminal got no echo through EchoRR"
  echo_through EchoLU "$GIP:3863" || fail "rspterminal got no echo through EchoLU"
  echo "rspterminal echoed through EchoRR and EchoLU"
  # The endpoint's second address answers too (one endpoint: sctp_bindx).
  "$BIN/rsplb" resolve EchoRR --registrar 198.18.77.5:3863 --asap-transport sctp --json | grep -q '"id"' \
    || fail "no handle resolution at 198.18.77.5:3863, the second address of rsp-registrar's ASAP endpoint"
  echo "PASS multi-homed ASAP endpoint: resolved EchoRR at its second address 198.18.77.5"
  # An element killed without deregistering: its association is aborted by its kernel (or it
  # stops answering keep-alives); rsplb's timers (250 ms + 250 ms) bound the removal.
  t0=$(date +%s.%N)
  bgstop pe-rr KILL
  waitfor 10 no_pool EchoRR || fail "EchoRR's element still registered 10 s after SIGKILL"
  echo "removed $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}') s after SIGKILL"
  has_elements EchoLU || fail "EchoLU lost its element too"
  bgstop pe-lu INT
  ;;

# ---- bad input over SCTP to rsplb's registrar (still running from row 1)
badinput)
  python3 "$BIN/interop/sctp_bad_input.py" "$GIP" 3863 || fail "bad-input checks"
  grep -E "PPID|aborting" "$L/rsp-registrar.log" | head -5
  # Restart: a peer host (netns rc, a veth to the guest) registers from a fixed port; its link
  # goes down, it is killed and its host torn down (its ABORT never
  # leaves), then the host is built again and a new incarnation connects from the same address
  # and port: the registrar sees SCTP_RESTART on the association it still has. Until the new
  # incarnation has sent its INIT, SCTP into rc is dropped (tc): the registrar's retransmissions
  # would otherwise reach a host without the association, whose ABORT would end it first.
  mk_rc() {  # mk_rc [drop]: with "drop", SCTP into rc is dropped from the start (see above)
    ip netns add rc && ip link add veth-rc type veth peer name veth-rc-p && ip link set veth-rc-p netns rc \
      || fail "cannot build netns rc"
    if [[ ${1:-} == drop ]]; then
      tc -n rc qdisc add dev veth-rc-p ingress \
        && tc -n rc filter add dev veth-rc-p ingress protocol ip prio 1 u32 match ip protocol 132 0xff action drop \
        || fail "cannot filter SCTP into rc"
    fi
    ip addr add 10.77.0.1/24 dev veth-rc && ip link set veth-rc up && ip route add 10.77.1.0/24 dev veth-rc \
      && ip -n rc addr add 10.77.0.2/24 dev veth-rc-p && ip -n rc link set veth-rc-p up \
      && ip -n rc route add default via 10.77.0.1 \
      && ip netns exec rc sysctl -qw net.sctp.addip_enable=1 net.sctp.addip_noauth_enable=1 net.sctp.default_auto_asconf=1 \
      || fail "cannot build netns rc"
    # (rc's lo stays down: with auto ASCONF its 127.0.0.1 would be added to the association.)
    sleep 1.5   # let the kernel's address work queue (auto ASCONF) settle before associating
  }
  # A registrar of its own with long keep-alive timers (10 s, 10 s): the first incarnation's
  # element must still be registered when the restart comes (after a keep-alive timeout the
  # registrar closes an association left without elements).
  RUST_LOG=${RUST_LOG:-info} bgrun rsp-registrar-5s "$BIN/rsp-registrar" --asap "$GIP:3873" \
    --admin 127.0.0.1:3871 --no-announce --keepalive-interval 10000 --keepalive-timeout 10000
  waitfor 20 sh -c "ss -Sln | grep -q '$GIP:3873'" || fail "second rsp-registrar does not listen on SCTP $GIP:3873"
  export ADMIN=127.0.0.1:3871
  mk_rc
  bgrun restart-1 ip netns exec rc python3 "$BIN/interop/sctp_restart.py" "$GIP" 3873 45000 0xa1 60
  waitfor 15 grep -q registered "$L/restart-1.log" || { cat "$L/restart-1.log"; fail "first incarnation did not register"; }
  waitfor 5 has_elements Restart || fail "element 0xa1 not in the handlespace"
  # Peer address change: the peer adds an address; its kernel tells ours by ASCONF. (Done on
  # the first incarnation: after a restart, the guest's 6.1 kernel left the ASCONFs unanswered.)
  ip -n rc addr add 10.77.1.2/24 dev veth-rc-p
  waitfor 10 grep -q "peer address 10.77.1.2:45000 Added" "$L/rsp-registrar-5s.log" \
    || fail "no peer address change (10.77.1.2 added) seen by the registrar"
  has_elements Restart || fail "the element left with the address change"
  echo "PASS address change: logged, the element stays registered"
  ip -n rc link set veth-rc-p down   # nothing leaves the old host any more (not its ABORT)
  bgstop restart-1 KILL
  ip netns del rc; ip link del veth-rc 2>/dev/null
  mk_rc drop
  bgrun restart-2 ip netns exec rc python3 "$BIN/interop/sctp_restart.py" "$GIP" 3873 45000 0xa2 30
  waitfor 10 sh -c "ip netns exec rc ss -Sn | grep -q ':45000'" || fail "second incarnation did not start"
  sleep 0.5
  tc -n rc qdisc del dev veth-rc-p ingress   # its INIT is retransmitted within T1 (3 s)
  waitfor 15 grep -q registered "$L/restart-2.log" || { cat "$L/restart-2.log"; fail "second incarnation did not register"; }
  grep -q "the peer restarted" "$L/rsp-registrar-5s.log" || fail "no SCTP restart seen by the registrar"
  ids=$(pool_elements Restart | sort | tr '\n' ' ')
  [[ $ids == "$((0xa2)) " ]] || fail "pool Restart holds [$ids] after the restart, not only 0xa2 ($((0xa2)))"
  echo "PASS restart: seen as SCTP_RESTART; the old incarnation's element is gone (long before its keep-alive timeout), the new one registered"
  grep -E "restarted|peer address|Restart" "$L/rsp-registrar-5s.log"
  bgstop restart-2 INT; bgstop rsp-registrar-5s INT
  ip netns del rc; ip link del veth-rc 2>/dev/null; true
  ;;
row1-stop)
  bgstop rsp-registrar INT
  ip addr del 198.18.77.5/32 dev lo 2>/dev/null; true
  ;;

# ---- row 2: rsplb PEs and PU at rsplib's registrar
row2)
  # rsplib's registrar on random ports (its default), short keep-alive timers.
  bgrun rspregistrar rspregistrar -asap=auto -enrp=auto -asapannounce=auto -enrpannounce=auto \
    -endpointkeepalivetransmissioninterval=1000 -endpointkeepalivetimeoutinterval=1000 \
    -loglevel=3 -logcolor=off
  waitfor 20 sh -c "ss -Slnp | grep -q rspregistrar" || { cat "$L/rspregistrar.log"; fail "rspregistrar did not start"; }
  # A real SCTP echo server, and rsplb's sidecar in front of it. No --registrar: the sidecar
  # finds rsplib's registrar by its announces (random port, given only as the UDP source port).
  bgrun echo-server python3 "$BIN/interop/sctp_echo.py" 0.0.0.0 7777
  waitfor 10 sh -c "ss -Sln | grep -q ':7777'" || fail "SCTP echo server did not start"
  RUST_LOG=${RUST_LOG:-info} bgrun rsplb-pe "$BIN/rsplb" pe register EchoRsplb 0.0.0.0:7777 \
    --transport sctp --asap-transport sctp --policy least-used
  # The registrar's ASAP port, as the sidecar learnt it from the announce's UDP source port.
  waitfor 20 grep -q "registrar .* announced at $GIP:" "$L/rsplb-pe.log" \
    || { cat "$L/rsplb-pe.log"; fail "the sidecar heard no announce from rspregistrar"; }
  port=$(sed -n "s/.*registrar .* announced at $GIP:\([0-9]*\).*/\1/p" "$L/rsplb-pe.log" | head -n 1)
  ss -Slnp | grep rspregistrar
  ss -Slnp | grep rspregistrar | grep -q ":$port " || fail "announced port $port is not one rspregistrar listens on"
  resolved() { "$BIN/rsplb" resolve EchoRsplb --registrar "$GIP:$port" --asap-transport sctp --json; }
  # rsplib's registrar answers only after its 5 s mentor discovery.
  waitfor 30 sh -c "'$BIN/rsplb' resolve EchoRsplb --registrar '$GIP:$port' --asap-transport sctp --json | grep -q '\"id\"'" \
    || { cat "$L/rsplb-pe.log"; tail -30 "$L/rspregistrar.log"; fail "rsplb resolve does not find rsplb's PE at rspregistrar"; }
  first=$(resolved | python3 -c 'import json,sys; print(sorted(e["id"] for e in json.load(sys.stdin)["elements"]))')
  resolved
  lost=$(grep -c "lost registrar" "$L/rsplb-pe.log")
  # Stay registered over more than two keep-alive cycles (1 s each).
  sleep 4
  again=$(resolved | python3 -c 'import json,sys; print(sorted(e["id"] for e in json.load(sys.stdin)["elements"]))')
  [[ $first == "$again" ]] || fail "element changed over 4 s of keep-alives: $first -> $again"
  [[ $(grep -c "lost registrar" "$L/rsplb-pe.log") == "$lost" ]] || fail "the sidecar lost rspregistrar while registered"
  echo "still registered after 4 keep-alive cycles: $again"
  echo_through EchoRsplb "$GIP:$port" || fail "rspterminal got no echo through rsplb's PE"
  echo "rspterminal echoed through rsplb's PE at rsplib's registrar"
  bgstop rsplb-pe INT; bgstop echo-server INT; sleep 0.5; bgstop rspregistrar INT
  ;;
# ---- row 3: ENRP between rsplb's rsp-registrar (0x200) and rsplib's rspregistrar (0x100)
row3)
  # rsplib's peer timers shortened (defaults: 2.44 s heartbeat, ~10 s to a takeover); rsplb's
  # keep theirs. Keep-alives of 1 s on both sides.
  RSPLIB_TIMERS="-peerheartbeatcycle=1000 -peermaxtimelastheard=2000 -peermaxtimenoresponse=1000 -takeoverexpiryinterval=3000 -endpointkeepalivetransmissioninterval=1000 -endpointkeepalivetimeoutinterval=1000"
  start_rsplib() {  # start_rsplib NAME ARGS...: rspregistrar 0x100, ASAP on 3863, ENRP on 9901
    local n=$1; shift
    bgrun "$n" rspregistrar -identifier=0x100 -asap="$GIP:3863" -enrp="$GIP:9901" \
      -asapannounce="239.0.0.50:3863" $RSPLIB_TIMERS -loglevel=4 -logcolor=off "$@"
    waitfor 20 sh -c "ss -Slnp | grep rspregistrar | grep -q ':9901 '" || { tail -20 "$L/$n.log"; fail "rspregistrar ($n) did not start"; }
  }
  start_rsplb() {  # start_rsplb NAME ARGS...: rsp-registrar 0x200, ASAP on 3873, ENRP on 9911
    local n=$1; shift
    RUST_LOG=${RUST_LOG:-info} bgrun "$n" "$BIN/rsp-registrar" --id 0x200 --asap "$GIP:3873" \
      --admin 127.0.0.1:3870 --announce-interface "$GIP" --keepalive-interval 1000 \
      --keepalive-timeout 1000 --enrp "$GIP:9911" "$@"
    waitfor 20 grep -q "over SCTP on" "$L/$n.log" || { tail -20 "$L/$n.log"; fail "rsp-registrar ($n) does not serve ENRP over SCTP"; }
  }
  # pool_home POOL: the home registrar (decimal) of POOL's elements in rsplb's handlespace
  pool_home() {
    handlespace | python3 -c '
import json, sys
hs = json.load(sys.stdin)
print(" ".join(str(e["home_registrar"]) for p in hs.get("pools", []) if p["handle"] == sys.argv[1] for e in p.get("elements", [])))' "$1"
  }
  home_is() { [[ $(pool_home "$1") == "$2" ]]; }
  # rsplib_dump: rsplib's hsdump of a registrar's handlespace (ENRP over SCTP)
  rsplib_dump() { timeout 15 hsdump "$1" -loglevel=1 -logcolor=off 2>&1; }
  # our checksum of OWNER's elements, and the last one OWNER sent in a Presence on the wire
  our_checksum() {
    handlespace | python3 -c '
import json, sys
hs = json.load(sys.stdin)
print(" ".join("0x%04x" % c["checksum"] for c in hs.get("checksums", []) if c["registrar_id"] == int(sys.argv[1], 0)))' "$1"
  }
  export ADMIN=127.0.0.1:3870

  # --- (a) static peers, synchronisation both ways, checksums, hsdump of rsplb
  bgrun tcpdump-enrp tcpdump -i any -n -U -s 0 -w "$L/row3.pcap" 'sctp or udp'
  waitfor 20 grep -q 'listening on' "$L/tcpdump-enrp.log" || fail "tcpdump did not start"
  start_rsplib rspreg -peer="$GIP:9911"
  start_rsplb rsplb-reg --peer "$GIP:9901"
  # EnrpA's element knows only rspregistrar (no announces): after rspregistrar dies, it can
  # learn of its new home only from the takeover's Keep-Alive with the H flag.
  bgrun pe-a rspserver -echo -poolhandle=EnrpA -registrar="$GIP:3863" -asapannounce=off \
    -local="$GIP" -loglevel=3 -logcolor=off
  bgrun pe-b rspserver -echo -poolhandle=EnrpB -registrar="$GIP:3873" -asapannounce=auto \
    -local="$GIP" -loglevel=3 -logcolor=off
  waitfor 30 has_elements EnrpA || { tail -30 "$L/rsplb-reg.log"; fail "rsplib's element (EnrpA at rspregistrar) never reached rsplb's handlespace"; }
  waitfor 30 has_elements EnrpB || fail "EnrpB's element never registered at rsplb"
  home_is EnrpA 256 || fail "EnrpA's home is $(pool_home EnrpA), not rspregistrar (256)"
  home_is EnrpB 512 || fail "EnrpB's home is $(pool_home EnrpB), not rsp-registrar (512)"
  waitfor 30 sh -c "timeout 15 hsdump '$GIP:9901' -loglevel=1 -logcolor=off 2>&1 | grep -q EnrpB" \
    || { rsplib_dump "$GIP:9901" | tail -20; fail "rsplb's element (EnrpB) never reached rspregistrar's handlespace"; }
  echo "PASS static peering: each registrar's element is in the other's handlespace"
  rsplib_dump "$GIP:9911" >"$L/hsdump-rsplb.txt"
  grep -q EnrpA "$L/hsdump-rsplb.txt" && grep -q EnrpB "$L/hsdump-rsplb.txt" \
    || { cat "$L/hsdump-rsplb.txt"; fail "rsplib's hsdump of rsplb's registrar does not list EnrpA and EnrpB"; }
  echo "PASS hsdump of rsp-registrar lists both pools"
  "$BIN/rsplb" handlespace --registrar "$GIP:9901" --enrp-transport sctp --json >"$L/rsplb-dump-rsplib.json" \
    || fail "rsplb handlespace --registrar could not read rspregistrar over SCTP"
  grep -q EnrpA "$L/rsplb-dump-rsplib.json" && grep -q EnrpB "$L/rsplb-dump-rsplib.json" \
    || { cat "$L/rsplb-dump-rsplib.json"; fail "rsplb's dump of rspregistrar does not list EnrpA and EnrpB"; }
  echo "PASS rsplb handlespace --registrar (ENRP over SCTP) lists both pools at rspregistrar"
  # Equal checksums: over 5 s of Presence (several cycles each way) with the elements in
  # place, neither side finds a mismatch that makes it audit the other (no repair loop).
  audits() {
    echo "$(grep -c 'synchronization with peer \$00000200 is necessary' "$L/rspreg.log") $(grep -c 'audit of registrar 00000100' "$L/rsplb-reg.log")"
  }
  sleep 2; before=$(audits); sleep 5; after=$(audits)
  [[ $before == "$after" ]] || fail "audit repair loop: audits (rsplib of rsplb, rsplb of rsplib) went from $before to $after in 5 s"
  ours256=$(our_checksum 0x100); ours512=$(our_checksum 0x200)
  echo "PASS checksums agree: no audit in 5 s of Presence (audits so far: $after); rsplb holds 0x100 $ours256, 0x200 $ours512"
  echo "$ours256" >"$L/row3.checksum256"

  # --- (b) takeover by rsplb: SIGKILL rspregistrar; its element moves to rsplb and stays
  bgstop rspreg KILL
  t0=$(date +%s.%N)
  waitfor 30 home_is EnrpA 512 || { grep -i "takeover\|took over" "$L/rsplb-reg.log" | tail; fail "rsplb did not become EnrpA's home after rspregistrar was killed (home: $(pool_home EnrpA))"; }
  echo "PASS takeover by rsplb: EnrpA's home is rsp-registrar $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s after SIGKILL"
  # Past the takeover grace (5 s) and several keep-alive cycles (1 s): the element answers its
  # new home on the association rsplb opened to it.
  sleep 8
  home_is EnrpA 512 || { grep -i "association to pool element\|took over" "$L/rsplb-reg.log" | tail; fail "EnrpA left rsplb's handlespace after the takeover (no Keep-Alive with H reached it?)"; }
  grep -q "ASAP association to pool element .* up" "$L/rsplb-reg.log" || fail "rsplb opened no association to EnrpA's element"
  echo "PASS EnrpA (no announces) still registered at rsplb 8 s after the takeover: told by a Keep-Alive with H on an association rsplb opened"

  # --- (c) takeover by rsplib: rspregistrar back (it downloads from rsplb), SIGKILL rsp-registrar
  start_rsplib rspreg2 -peer="$GIP:9911"
  waitfor 30 sh -c "timeout 15 hsdump '$GIP:9901' -loglevel=1 -logcolor=off 2>&1 | grep -q EnrpB" \
    || fail "the restarted rspregistrar did not learn EnrpB"
  bgstop rsplb-reg KILL
  waitfor 40 sh -c "grep -qi 'takeover.*00000200\|00000200.*takeover\|Takeover of peer \$00000200' '$L/rspreg2.log'" \
    || { tail -40 "$L/rspreg2.log"; fail "rspregistrar did not take over rsp-registrar"; }
  sleep 4
  rsplib_dump "$GIP:9901" >"$L/hsdump-after.txt"
  grep -q EnrpB "$L/hsdump-after.txt" || { cat "$L/hsdump-after.txt"; fail "EnrpB left rspregistrar's handlespace after its takeover"; }
  echo "PASS takeover by rsplib: rspregistrar took over rsp-registrar's elements; EnrpB still registered"
  bgstop rspreg2 INT

  # --- (d) peering by multicast Presence only (no static peers), both registrars fresh
  bgstop pe-a INT; bgstop pe-b INT
  start_rsplib rspreg3 -enrpannounce=239.0.0.51:9901
  start_rsplb rsplb-mc --enrp-multicast 239.0.0.51:9901 --enrp-interface "$GIP"
  bgrun pe-c rspserver -echo -poolhandle=EnrpC -registrar="$GIP:3863" -asapannounce=off \
    -local="$GIP" -loglevel=3 -logcolor=off
  waitfor 40 has_elements EnrpC || { tail -30 "$L/rsplb-mc.log"; fail "multicast peering: rsplib's element never reached rsplb"; }
  echo "PASS multicast peering: rspregistrar's element reached rsplb without static peers"
  bgstop pe-c INT; bgstop rsplb-mc INT; bgstop rspreg3 INT

  # --- (e) one multi-homed ENRP endpoint: rsp-registrar on two addresses of one port (a second
  # address of the guest on lo); rsplib's hsdump reaches its handlespace at either address
  ip addr add 198.18.77.5/32 dev lo 2>/dev/null
  RUST_LOG=${RUST_LOG:-info} bgrun rsplb-mh "$BIN/rsp-registrar" --id 0x300 --asap "$GIP:3883" \
    --admin 127.0.0.1:3872 --no-announce --enrp "$GIP:9921" --enrp-sctp "$GIP:9921" \
    --enrp-sctp 198.18.77.5:9921
  waitfor 20 grep -q "over SCTP on" "$L/rsplb-mh.log" || { tail -20 "$L/rsplb-mh.log"; fail "rsp-registrar with two ENRP SCTP addresses did not start"; }
  bgrun pe-mh rspserver -echo -poolhandle=EnrpMH -registrar="$GIP:3883" -asapannounce=off \
    -local="$GIP" -loglevel=3 -logcolor=off
  ADMIN=127.0.0.1:3872 waitfor 30 has_elements EnrpMH || fail "EnrpMH's element never registered at the multi-homed registrar"
  grep -q "over SCTP on \[$GIP:9921, 198.18.77.5:9921\]" "$L/rsplb-mh.log" \
    || { grep "over SCTP" "$L/rsplb-mh.log"; ss -Slnp; fail "rsp-registrar does not serve one ENRP endpoint on both addresses"; }
  for a in "$GIP" 198.18.77.5; do
    rsplib_dump "$a:9921" >"$L/hsdump-mh-$a.txt"
    grep -q EnrpMH "$L/hsdump-mh-$a.txt" || { cat "$L/hsdump-mh-$a.txt"; fail "rsplib's hsdump at $a:9921 (one address of the multi-homed endpoint) does not list EnrpMH"; }
  done
  ss -Slnp | grep -A2 ':9921' | head -4
  echo "PASS multi-homed ENRP endpoint: one SCTP endpoint on $GIP and 198.18.77.5 (port 9921); rsplib's hsdump reads it at both"
  bgstop pe-mh INT; bgstop rsplb-mh INT
  ip addr del 198.18.77.5/32 dev lo 2>/dev/null
  sleep 0.5; bgstop tcpdump-enrp INT; sync
  ;;
# ---- row 4: rsplb's dataplane (XDP on the host's end of the lab link) in front of rsplib's
# pool elements. Four hosts on the lab's link, each a network namespace with a macvlan on eth0
# (bridge mode, so they reach each other and the host's tap): r (198.18.77.3) runs rsplb's
# rsp-registrar (ASAP over SCTP for rsplib's elements, ENRP to the host's balancer); s1, s2
# (.11, .12) run rsplib's rspserver (echo, SCTP port 7777) holding the VIP on their loopback
# for direct server return; c (.10) is a legacy SCTP client that knows only the VIP, routed
# through the host (198.18.77.1), where the balancer's XDP program sends it on to s1 or s2.
row4-up)
  VIP=${VIP:-198.18.78.1}
  modprobe macvlan || fail "no macvlan module in the guest"
  mkhost() {  # mkhost NAME ADDR
    ip netns add "r4$1" && ip link add "mv-$1" link eth0 type macvlan mode bridge \
      && ip link set "mv-$1" netns "r4$1" \
      && ip -n "r4$1" addr add "$2/24" dev "mv-$1" && ip -n "r4$1" link set "mv-$1" up \
      && ip -n "r4$1" link set lo up || fail "cannot build host $1 ($2)"
  }
  mkhost r 198.18.77.3; mkhost s1 198.18.77.11; mkhost s2 198.18.77.12; mkhost c 198.18.77.10
  ip -n r4c route add "$VIP/32" via 198.18.77.1 || fail "cannot route the VIP through the balancer"
  for s in s1 s2; do
    ip -n "r4$s" addr add "$VIP/32" dev lo || fail "cannot put the VIP on $s's loopback"
  done
  ip netns exec r4r env RUST_LOG=${RUST_LOG:-info} setsid "$BIN/rsp-registrar" --asap 198.18.77.3:3863 \
    --enrp 198.18.77.3:9901 --admin 127.0.0.1:3870 --no-announce </dev/null >"$L/row4-registrar.log" 2>&1 &
  echo $! >"$RUN/row4-registrar.pid"
  waitfor 20 sh -c "ip netns exec r4r ss -Sln | grep -q '198.18.77.3:3863'" \
    || { cat "$L/row4-registrar.log"; fail "rsp-registrar (r) does not listen on SCTP"; }
  # Each element binds its own address and the VIP (DSR: it answers from the VIP); its own
  # address comes first, and is the one the balancer forwards to.
  for s in s1 s2; do
    a=198.18.77.$([[ $s == s1 ]] && echo 11 || echo 12)
    ip netns exec "r4$s" setsid rspserver -echo -poolhandle=EchoVip -registrar=198.18.77.3:3863 \
      -asapannounce=off -local="$a:7777,$VIP:7777" -loglevel=2 -logcolor=off \
      </dev/null >"$L/row4-$s.log" 2>&1 &
    echo $! >"$RUN/row4-$s.pid"
  done
  hs4() { ip netns exec r4r "$BIN/rsplb" handlespace --admin 127.0.0.1:3870 --json; }
  waitfor 30 python3 -c '
import json, subprocess, sys
hs = json.loads(subprocess.run(sys.argv[1:], capture_output=True, check=True).stdout)
n = sum(len(p.get("elements", [])) for p in hs.get("pools", []) if p["handle"] == "EchoVip")
sys.exit(0 if n == 2 else 1)' ip netns exec r4r "$BIN/rsplb" handlespace --admin 127.0.0.1:3870 --json \
    || { tail -5 "$L"/row4-s*.log; hs4; fail "the two rspservers did not register at rsp-registrar (r)"; }
  hs4 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["pools"]:
    for e in p.get("elements", []):
        print("registered", p["handle"], e["id"], e.get("addresses"), e.get("port"))'
  ;;
row4-client)  # row4-client N: N associations from c to the VIP, one line echoed on each
  ip netns exec r4c python3 - "${VIP:-198.18.78.1}" 7777 "${1:-20}" <<'PY' || fail "the legacy client was not served through the VIP"
import socket, sys
vip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok, errors = 0, []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132)
    s.settimeout(10)
    msg = b"legacy-client-%d\n" % i
    try:
        s.connect((vip, port))
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        if got == msg:
            ok += 1
        else:
            errors.append("association %d: echoed %r" % (i, got))
    except OSError as e:
        errors.append("association %d: %s" % (i, e))
    finally:
        s.close()
print("associations=%d echoed=%d" % (n, ok))
for e in errors[:5]:
    print(e)
sys.exit(0 if ok == n else 1)
PY
  ;;
row4-hold)  # row4-hold N: N long-lived associations from c to the VIP, each echoing a line every
  # 0.3 s until $RUN/row4-hold.stop appears (at most 120 s). Their local ports go to
  # $L/row4-hold.ports once all are up; at the end, "PORT ok|broken" per association to
  # $L/row4-hold.result.
  rm -f "$RUN/row4-hold.stop" "$L/row4-hold.ports" "$L/row4-hold.result"
  ip netns exec r4c setsid python3 - "${VIP:-198.18.78.1}" 7777 "${1:-10}" "$RUN/row4-hold.stop" \
    "$L/row4-hold.ports" "$L/row4-hold.result" </dev/null >"$L/row4-hold.log" 2>&1 <<'PY' &
import os, socket, sys, time
vip, port, n, stop, ports_file, result_file = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:]
conns = []
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132)
    s.settimeout(3)
    s.connect((vip, port))
    conns.append([s, s.getsockname()[1], "ok"])
with open(ports_file + ".tmp", "w") as f:
    f.write("".join("%d\n" % c[1] for c in conns))
os.rename(ports_file + ".tmp", ports_file)
end = time.time() + 120
k = 0
while not os.path.exists(stop) and time.time() < end:
    for c in conns:
        if c[2] != "ok":
            continue
        msg = b"hold-%d-%d\n" % (c[1], k)
        try:
            c[0].sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = c[0].recv(4096)
                if not chunk:
                    break
                got += chunk
            if got != msg:
                c[2] = "broken"
        except OSError:
            c[2] = "broken"
    k += 1
    time.sleep(0.3)
with open(result_file, "w") as f:
    f.write("".join("%d %s\n" % (c[1], c[2]) for c in conns))
print("rounds=%d" % k)
PY
  waitfor 30 test -s "$L/row4-hold.ports" || { cat "$L/row4-hold.log"; fail "the long-lived associations did not come up"; }
  cat "$L/row4-hold.ports"
  ;;
row4-release)  # stop row4-hold's client and print its result
  touch "$RUN/row4-hold.stop"
  waitfor 30 test -s "$L/row4-hold.result" || { cat "$L/row4-hold.log"; fail "the long-lived client left no result"; }
  cat "$L/row4-hold.result"
  ;;
row4-kill)  # row4-kill s1|s2: SIGKILL that element's rspserver
  kill -KILL "$(cat "$RUN/row4-$1.pid")" || fail "no rspserver $1"
  ;;
row4-down)
  for f in "$RUN"/row4-*.pid; do [[ -e $f ]] && kill -KILL "$(cat "$f")" 2>/dev/null; rm -f "$f"; done
  for h in r s1 s2 c; do ip netns del "r4$h" 2>/dev/null; done; true
  ;;
# ---- cargo xtask bench interop: asap-load against rspregistrar, then rsp-registrar, in this
# guest (one vCPU shared by the registrar and the load generator, the same for both)
bench)
  RUNS=${RUNS:-3}; SECS=${SECS:-4}
  median() { sort -n | awk '{v[NR]=$1} END {if (NR == 0) print 0; else print v[int((NR + 1) / 2)]}'; }
  cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, in clock ticks
  TCK=$(getconf CLK_TCK)
  measure() {  # measure PID PORT OP CLIENTS: "OPS_PER_S CPU_US_PER_OP", medians of RUNS runs
    local out c0 c1 n
    for _ in $(seq "$RUNS"); do
      c0=$(cpu_ticks "$1")
      out=$("$BIN/asap-load" --registrar "$GIP:$2" --op "$3" --clients "$4" --secs "$SECS" 2>>"$L/asap-load.err")
      c1=$(cpu_ticks "$1")
      n=$(sed -n 's/^ops=//p' <<<"$out")
      # The registrar's CPU time over the whole run (warm-up included) per answered request.
      echo "$(sed -n 's/^ops_per_s=//p' <<<"$out") $(awk -v d=$((c1 - c0)) -v t="$TCK" -v n="${n:-0}" 'BEGIN {if (n > 0) printf "%.1f", d * 1e6 / t / n; else print 0}')"
    done >"$RUN/runs"
    echo "$(cut -d' ' -f1 "$RUN/runs" | median) $(cut -d' ' -f2 "$RUN/runs" | median)"
  }
  all() {  # all NAME PORT PID
    for op in resolve register; do
      for c in 1 20; do
        read -r v cpu <<<"$(measure "$3" "$2" "$op" "$c")"
        [[ ${v:-0} -gt 0 ]] || { tail -5 "$L/asap-load.err"; fail "$1: no $op answered with $c clients"; }
        key=hres; [[ $op == register ]] && key=reg
        echo "${key}_per_s_$1_c$c=$v"
        echo "${key}_registrar_cpu_us_$1_c$c=$cpu"
      done
    done
  }
  # rsplib's registrar with its defaults (no rate limits), announces off.
  bgrun rspregistrar-bench rspregistrar -asap="$GIP:3863" -enrp="$GIP:9901" -asapannounce=off \
    -enrpannounce=off -loglevel=1 -logcolor=off
  waitfor 20 sh -c "ss -Slnp | grep rspregistrar | grep -q ':3863 '" || fail "rspregistrar did not start"
  all rsplib 3863 "$(cat "$RUN/rspregistrar-bench.pid")"
  bgstop rspregistrar-bench INT
  # rsplb's registrar likewise: rate limits off as rsplib's are, ENRP on as rsplib's is.
  printf '[rate_limits]\nregistration = { rate_per_s = 0, burst = 0 }\nhandle_resolution = { rate_per_s = 0, burst = 0 }\n' >"$RUN/bench.toml"
  RUST_LOG=warn bgrun rsp-registrar-bench "$BIN/rsp-registrar" --config "$RUN/bench.toml" \
    --asap "$GIP:3873" --enrp "$GIP:9911" --no-announce --no-admin
  waitfor 20 sh -c "ss -Sln | grep -q '$GIP:3873'" || fail "rsp-registrar did not start"
  all rsplb 3873 "$(cat "$RUN/rsp-registrar-bench.pid")"
  bgstop rsp-registrar-bench INT
  ;;
*)
  fail "unknown step $STEP"
  ;;
esac
