"""Latency probes for the QoS test, copied to the lab's LAN hosts (python3 only, no packages).

    probe.py serve PORT                  UDP and TCP echo on PORT (until killed)
    probe.py udp HOST PORT COUNT GAP     a VoIP-like stream: COUNT packets of 172 bytes
    probe.py tcp HOST PORT COUNT GAP     request/answer over one TCP connection
Prints one JSON line: sent, received, and RTT percentiles in milliseconds.
"""

import json
import socket
import sys
import threading
import time


def serve(port: int) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", port))

    def udp_loop() -> None:
        while True:
            data, peer = udp.recvfrom(2048)
            udp.sendto(data, peer)

    threading.Thread(target=udp_loop, daemon=True).start()
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", port))
    tcp.listen(4)
    while True:
        conn, _ = tcp.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def echo(c: socket.socket) -> None:
            while data := c.recv(4096):
                c.sendall(data)

        threading.Thread(target=echo, args=(conn,), daemon=True).start()


def summary(rtts: list[float], sent: int) -> dict:
    rtts = sorted(rtts)

    def pct(p: float) -> float:
        return round(rtts[min(len(rtts) - 1, int(p * len(rtts)))] * 1000, 2) if rtts else -1.0

    return {
        "sent": sent,
        "received": len(rtts),
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
        "max_ms": pct(1.0),
    }


def udp_client(host: str, port: int, count: int, gap: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.001)
    sent_at: dict[int, float] = {}
    rtts: list[float] = []

    def drain() -> None:
        while True:
            try:
                data = sock.recv(2048)
            except (TimeoutError, BlockingIOError):
                return
            seq = int.from_bytes(data[:4], "big")
            if seq in sent_at:
                rtts.append(time.monotonic() - sent_at.pop(seq))

    for seq in range(count):
        sent_at[seq] = time.monotonic()
        sock.sendto(seq.to_bytes(4, "big") + bytes(168), (host, port))
        end = time.monotonic() + gap
        while time.monotonic() < end:
            drain()
    end = time.monotonic() + 1.0
    while time.monotonic() < end and sent_at:
        drain()
    return summary(rtts, count)


def tcp_client(host: str, port: int, count: int, gap: float) -> dict:
    sock = socket.create_connection((host, port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    for _ in range(count):
        start = time.monotonic()
        sock.sendall(bytes(64))
        got = 0
        while got < 64:
            got += len(sock.recv(64 - got))
        rtts.append(time.monotonic() - start)
        time.sleep(gap)
    return summary(rtts, count)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "serve":
        serve(int(sys.argv[2]))
    else:
        client = udp_client if mode == "udp" else tcp_client
        print(
            json.dumps(client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
        )
