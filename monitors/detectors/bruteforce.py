"""Password guessing against login services: SSH, RDP, SMB, FTP, Telnet, mail, web logins.

Reasoning: each guess (or small batch of guesses, for SSH) needs a new TCP connection to
the service, so a guesser opens connections to one host's login port far more often than a
person does (a person: a handful per minute, a tool like hydra: tens to hundreds). We count
connection attempts (SYNs) per (source, target, port) in a window. Web login pages share
ports with all other web traffic, so they are only watched where configured.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitors.detectors.base import Detector, DetectorConfig, Emit
from monitors.packet import ACK, RST, SYN, Packet

SERVICES = {
    22: "SSH",
    23: "Telnet",
    21: "FTP",
    3389: "RDP",
    445: "SMB",
    139: "SMB",
    25: "SMTP",
    465: "SMTP",
    587: "SMTP",
    110: "POP3",
    995: "POP3",
    143: "IMAP",
    993: "IMAP",
    5900: "VNC",
    3306: "MySQL",
    5432: "PostgreSQL",
    1433: "MSSQL",
}


@dataclass
class BruteForceConfig(DetectorConfig):
    window_seconds: float = 60.0
    min_attempts: int = 10
    web_login_ports: tuple[int, ...] = ()  # e.g. [443] for a login-only host


class _Attempts:
    __slots__ = ("count", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0


class BruteForceDetector(Detector):
    name = "bruteforce"
    config_class = BruteForceConfig
    wants = frozenset({"tcp_syn"})
    config: BruteForceConfig

    def observe(self, pkt: Packet, emit: Emit) -> None:
        if pkt.tcp_flags & (SYN | ACK | RST) != SYN:
            return
        service = SERVICES.get(pkt.dport)
        if service is None:
            if pkt.dport not in self.config.web_login_ports:
                return
            service = "web login"
        key = pkt.src + pkt.dst + pkt.dport.to_bytes(2, "big")
        state = self.table.get_or_create(key, lambda: _Attempts(pkt.ts))
        if pkt.ts - state.start > self.config.window_seconds:
            state.__init__(pkt.ts)
        state.count += 1
        if state.count >= self.config.min_attempts:
            emit(
                self.flow_alert(
                    pkt,
                    9100041,
                    f"KASTRO brute force against {service}",
                    "Attempted User Privilege Gain",
                    1,
                    {
                        "service": service,
                        "connection_attempts": state.count,
                        "window_seconds": self.config.window_seconds,
                    },
                )
            )

    def expire(self, now: float) -> None:
        window = self.config.window_seconds
        self.table.expire(lambda s: now - s.start > 2 * window)
