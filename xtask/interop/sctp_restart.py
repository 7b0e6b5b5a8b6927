#!/usr/bin/env python3
"""One incarnation of a pool element that registers at rsplb's registrar from a fixed SCTP
port (interop row 3: restart and peer address change). Run inside the guest's netns "rc".
Usage: sctp_restart.py REGISTRAR_ADDR PORT LOCAL_PORT PE_ID SECONDS
Registers PE_ID in pool "Restart" (user transport SCTP 10.77.0.2:9000), prints "registered",
then answers keep-alives for SECONDS and exits (the caller may SIGKILL it first)."""
import socket
import struct
import sys
import time

IPPROTO_SCTP = 132
SCTP_AUTO_ASCONF = 30
SCTP_SNDINFO = 2


def tlv(t, value):
    b = struct.pack("!HH", t, 4 + len(value)) + value
    return b + b"\0" * (-len(b) % 4)


def message(t, params):
    body = b"".join(params)
    return struct.pack("!BBH", t, 0, 4 + len(body)) + body


def send(s, data):
    s.sendmsg([data], [(IPPROTO_SCTP, SCTP_SNDINFO, struct.pack("=HHIIi", 0, 0, socket.htonl(11), 0, 0))])


addr, port, lport, pe_id, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4], 0), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_SCTP)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", lport))
try:  # (needs a wildcard-bound socket)
    s.setsockopt(IPPROTO_SCTP, SCTP_AUTO_ASCONF, 1)
except OSError as e:
    print(f"no auto ASCONF: {e}", flush=True)
s.settimeout(15)  # the caller may drop the first INIT ACK: T1 retransmits the INIT after 3 s
s.connect((addr, port))
pool = tlv(0x0009, b"Restart")
user = tlv(0x0004, struct.pack("!HH", 9000, 0) + tlv(0x0001, socket.inet_aton("10.77.0.2")))
element = tlv(0x000A, struct.pack("!IIi", pe_id, 0, 30000) + user + tlv(0x0008, struct.pack("!I", 1)))
send(s, message(0x01, [pool, element]))
reply = s.recv(65536)
if reply[:1] != b"\x03" or reply[1] & 1:
    print(f"registration refused: {reply.hex()}", flush=True)
    sys.exit(1)
print("registered", flush=True)
end = time.monotonic() + seconds
s.settimeout(0.2)
while time.monotonic() < end:
    try:
        m = s.recv(65536)
    except socket.timeout:
        continue
    if not m:
        break
    if m[:1] == b"\x07":  # ENDPOINT_KEEP_ALIVE -> ACK with pool handle and PE id
        send(s, message(0x08, [pool, tlv(0x000E, struct.pack("!I", pe_id))]))
