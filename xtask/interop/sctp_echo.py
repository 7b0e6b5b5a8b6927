#!/usr/bin/env python3
"""An SCTP echo server (one-to-one sockets) for the interop lab: the real server behind
`rsplb pe register`. Usage: sctp_echo.py ADDR PORT"""
import socket
import sys
import threading

IPPROTO_SCTP = 132


def serve(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)


def main():
    addr, port = sys.argv[1], int(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_SCTP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(64)
    print(f"SCTP echo on {addr}:{port}", flush=True)
    while True:
        conn, peer = s.accept()
        print(f"association from {peer}", flush=True)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
