#!/usr/bin/env python3
"""Bad input over SCTP for rsplb's registrar (interop row 3), run in the lab's guest.
Usage: sctp_bad_input.py ADDR PORT. Prints one line per check; exit status 1 if any failed.

- a message on stream 3 (not 0) is answered as one on stream 0;
- a message with PPID 12 (ENRP) or 0 ends the association with an ABORT (as rsplib does);
- a registration of about 3 KB sent in 512-byte DATA chunks (SCTP_MAXSEG) is reassembled and
  accepted;
- a message above the registrar's 65535-byte limit gets an ASAP ERROR, then the association
  is closed (as the TCP path does for an impossible Length).
"""
import socket
import struct
import sys

IPPROTO_SCTP = 132
SCTP_MAXSEG = 13
SCTP_RECVRCVINFO = 32
SCTP_SNDINFO = 2
SCTP_RCVINFO = 3
MSG_NOTIFICATION = 0x8000
PPID_ASAP = 11

ADDR, PORT = sys.argv[1], int(sys.argv[2])
failures = 0


def check(name, ok, detail=""):
    global failures
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        failures += 1


def tlv(t, value):
    b = struct.pack("!HH", t, 4 + len(value)) + value
    return b + b"\0" * (-len(b) % 4)


def message(t, params, flags=0):
    body = b"".join(params)
    return struct.pack("!BBH", t, flags, 4 + len(body)) + body


def pool_handle(name):
    return tlv(0x0009, name.encode())


def handle_resolution(pool):
    return message(0x05, [pool_handle(pool)])


def registration(pool, pe_id, addr, port, extra=b""):
    user = tlv(0x0004, struct.pack("!HH", port, 0) + tlv(0x0001, socket.inet_aton(addr)))
    policy = tlv(0x0008, struct.pack("!I", 1))
    element = tlv(0x000A, struct.pack("!IIi", pe_id, 0, 30000) + user + policy)
    return message(0x01, [pool_handle(pool), element]) + extra


def connect(maxseg=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_SCTP)
    s.setsockopt(IPPROTO_SCTP, SCTP_RECVRCVINFO, 1)
    if maxseg:
        s.setsockopt(IPPROTO_SCTP, SCTP_MAXSEG, maxseg)
    s.settimeout(5)
    s.connect((ADDR, PORT))
    return s


def send(s, data, ppid=PPID_ASAP, stream=0):
    info = struct.pack("=HHIIi", stream, 0, socket.htonl(ppid), 0, 0)
    s.sendmsg([data], [(IPPROTO_SCTP, SCTP_SNDINFO, info)])


def recv(s):
    """(bytes, ppid, stream) of the next data message; notifications are skipped."""
    while True:
        data, anc, flags, _ = s.recvmsg(70000, 256)
        if flags & MSG_NOTIFICATION:
            continue
        if not data:
            return b"", None, None
        ppid = stream = None
        for level, kind, d in anc:
            if level == IPPROTO_SCTP and kind == SCTP_RCVINFO:
                stream, _ssn, _flags, ppid = struct.unpack_from("=HHH2xI", d)
                ppid = socket.ntohl(ppid)
        return data, ppid, stream


def aborted(s):
    """True when the association ends (reset or EOF) without another message."""
    try:
        data, _, _ = recv(s)
        return data == b""
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


# 1. A message on stream 3 is answered (on stream 0, PPID 11).
s = connect()
send(s, handle_resolution("EchoLU"), stream=3)
data, ppid, stream = recv(s)
check("handle resolution on stream 3 answered", data[:1] == b"\x06" and ppid == PPID_ASAP,
      f"type {data[:1].hex()} ppid {ppid} stream {stream}")
# 1b. The same association still works on stream 0.
send(s, handle_resolution("EchoLU"))
data, ppid, stream = recv(s)
check("then on stream 0", data[:1] == b"\x06" and ppid == PPID_ASAP and stream == 0)
s.close()

# 2. Wrong PPIDs: the association is aborted, nothing is answered.
for bad in (12, 0):
    s = connect()
    send(s, handle_resolution("EchoLU"), ppid=bad)
    check(f"PPID {bad}: association aborted without an answer", aborted(s))
    s.close()

# 3. A registration of about 3 KB in 512-byte DATA chunks (an unknown parameter with action
#    bits 10, "skip", pads it out): reassembled and accepted.
s = connect(maxseg=512)
filler = tlv(0x8123, b"\xab" * 3000)
reg = registration("BigPool", 0x1234ABCD, ADDR, 9999, filler)
# Length field covers the filler too.
reg = reg[:2] + struct.pack("!H", len(reg)) + reg[4:]
send(s, reg)
data, ppid, _ = recv(s)
check(f"registration of {len(reg)} bytes in 512-byte chunks accepted",
      data[:1] == b"\x03" and data[1] & 1 == 0 and ppid == PPID_ASAP,
      f"type {data[:1].hex()} flags {data[1:2].hex()}")
s.close()

# 4. A message above the limit: an ERROR, then the association is closed.
s = connect()
big = b"\x05\x00\xff\xff" + b"\0" * 69996
send(s, big)
data, ppid, _ = recv(s)
check("message of 70000 bytes answered with an ASAP ERROR", data[:1] == b"\x0e" and ppid == PPID_ASAP,
      f"type {data[:1].hex()}")
check("then the association is closed", aborted(s))
s.close()

sys.exit(1 if failures else 0)
