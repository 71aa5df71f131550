"""Where frames come from: pcap/pcapng files, or a live interface through a TPACKET_V3 ring.

Both yield ``(timestamp, frame, wire_length)`` in batches, so the engine's per-batch work
(metrics, timers) is amortised. The file readers are plain struct loops (no scapy): they
are the fast path for offline analysis and the benchmark.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from monitors.batch import FrameBatch
from monitors.linktypes import ETHERNET, Converter, UnsupportedLinkTypeError, converter

Frame = tuple[float, bytes, int]
BATCH = 2048
CHUNK = 1 << 22

LINKTYPE_ETHERNET = ETHERNET


class CaptureError(RuntimeError):
    """The capture source cannot be used; the message says why and what to do."""


# ---- files -------------------------------------------------------------------------------


def read_file(path: Path, batch: int = BATCH) -> Iterator[FrameBatch | list[Frame]]:
    """Frames of a pcap or pcapng file, in batches."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CaptureError(f"cannot open {path}: {exc.strerror}") from exc
    with handle:
        magic = handle.read(4)
        if magic in (
            b"\xd4\xc3\xb2\xa1",
            b"\xa1\xb2\xc3\xd4",
            b"\x4d\x3c\xb2\xa1",
            b"\xa1\xb2\x3c\x4d",
        ):
            yield from _read_pcap(handle, magic, batch, path)
        elif magic == b"\x0a\x0d\x0d\x0a":
            yield from _read_pcapng(handle, batch, path)
        else:
            raise CaptureError(f"{path} is not a pcap or pcapng file")


def _read_pcap(
    handle: BinaryIO, magic: bytes, batch: int, path: Path
) -> Iterator[FrameBatch | list[Frame]]:
    little = magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    order = "<" if little else ">"
    header = handle.read(20)
    if len(header) < 20:
        raise CaptureError(f"{path}: truncated pcap header")
    linktype = struct.unpack(order + "HHiIII", header)[5] & 0x0FFFFFFF
    convert = _converter(linktype, path)
    divisor = 1e9 if nano else 1e6
    # Read in large chunks and cut records out of them: two small reads per packet would
    # cost more than parsing the packet.
    buffer = b""
    position = 0
    while True:
        chunk = handle.read(CHUNK)
        if not chunk:
            break
        buffer = buffer[position:] + chunk
        position = 0
        records, position = _records(buffer, order, divisor, path)
        if records is not None:
            yield from _cut(records, batch, convert)


MAX_CAPLEN = 262144


def _records(
    buffer: bytes, order: str, divisor: float, path: Path
) -> tuple[FrameBatch | None, int]:
    """The whole records in the buffer, and where the first cut by its end starts."""
    starts: list[int] = []
    position, end, caplen_at = 0, len(buffer), struct.Struct(order + "I").unpack_from
    while position + 16 <= end:  # the one sequential step: each record says where the next is
        starts.append(position)
        position += 16 + caplen_at(buffer, position + 8)[0]
    if starts and position > end:  # the last record is cut by the buffer's end
        position = starts.pop()
        if caplen_at(buffer, position + 8)[0] > MAX_CAPLEN:  # or claims to be huge
            raise CaptureError(
                f"{path}: corrupt record (caplen {caplen_at(buffer, position + 8)[0]})"
            )
    if not starts:
        return None, position
    first = np.asarray(starts, dtype=np.int64)
    headers = _header_words(buffer, first, 16, order)  # seconds, fraction, caplen, wirelen
    if (headers[:, 2] > MAX_CAPLEN).any():
        raise CaptureError(f"{path}: corrupt record (caplen {int(headers[:, 2].max())})")
    batch = FrameBatch(
        buffer, first + 16, headers[:, 2], headers[:, 3], headers[:, 0] + headers[:, 1] / divisor
    )
    return batch, position


def _header_words(buffer: bytes, starts: Any, size: int, order: str) -> Any:
    """The `size`-byte headers at `starts` (all inside `buffer`), one row of 32-bit words
    each, as int64: one gather for the whole batch instead of a struct call per record."""
    rows = np.frombuffer(buffer, dtype=np.uint8)[np.add.outer(starts, np.arange(size))]
    return rows.view(order + "u4").astype(np.int64)


def _cut(
    batch: FrameBatch, size: int, convert: Converter | None
) -> Iterator[FrameBatch | list[Frame]]:
    """The records in batches of `size`; as Ethernet frames if the link type is another."""
    for first in range(0, len(batch), size):
        part = FrameBatch(
            batch.data,
            batch.offsets[first : first + size],
            batch.caplens[first : first + size],
            batch.wirelens[first : first + size],
            batch.timestamps[first : first + size],
        )
        if convert is None:
            yield part
        else:
            yield [_as_ethernet(ts, frame, wirelen, convert) for ts, frame, wirelen in part]


def _converter(linktype: int, path: Path) -> Converter | None:
    try:
        return converter(linktype)
    except UnsupportedLinkTypeError as exc:
        raise CaptureError(f"{path}: {exc}") from exc


MAX_TIMESTAMP = float(1 << 33)  # year 2242: a later capture time is a corrupt block


def _read_pcapng(handle: BinaryIO, batch: int, path: Path) -> Iterator[list[Frame]]:
    """Frames of a pcapng file. A block too short for its own fields is a corrupt file (a
    clean error naming it); a packet with an impossible timestamp is skipped."""
    handle.seek(0)
    order = "<"
    resolutions: list[float] = []
    linktypes: list[Converter | None] = []
    out: list[Frame] = []
    while True:
        head = handle.read(8)
        if len(head) < 8:
            break
        block_type = struct.unpack(order + "I", head[:4])[0]
        if block_type == 0x0A0D0D0A:  # section header: learn the byte order
            bom = handle.read(4)
            order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            length = struct.unpack(order + "I", head[4:])[0]
            if length < 28 or length > 1 << 24 or length % 4:
                raise CaptureError(f"{path}: corrupt pcapng section header (length {length})")
            handle.read(length - 12)
            resolutions, linktypes = [], []
            continue
        length = struct.unpack(order + "I", head[4:])[0]
        if length < 12 or length > 1 << 24:
            raise CaptureError(f"{path}: corrupt pcapng block (length {length})")
        body = handle.read(length - 8)
        if len(body) < length - 8:
            break
        frame = _pcapng_block(block_type, body, order, linktypes, resolutions, path)
        if frame is not None:
            out.append(frame)
        if len(out) >= batch:
            yield out
            out = []
    if out:
        yield out


# The fixed part of each block type we read (body without the trailing length).
_PCAPNG_MIN_BODY = {1: 8 + 4, 6: 20 + 4, 3: 4 + 4}


def _pcapng_block(
    block_type: int,
    body: bytes,
    order: str,
    linktypes: list[Converter | None],
    resolutions: list[float],
    path: Path,
) -> Frame | None:
    """One block: an interface is recorded, a packet returned, anything else ignored."""
    if len(body) < _PCAPNG_MIN_BODY.get(block_type, 0):
        raise CaptureError(
            f"{path}: corrupt pcapng block of type {block_type} ({len(body) + 8} bytes, "
            f"at least {_PCAPNG_MIN_BODY[block_type] + 8} expected)"
        )
    if block_type == 1:  # interface description
        linktypes.append(_converter(struct.unpack_from(order + "H", body, 0)[0], path))
        resolutions.append(_if_tsresol(body[8:-4], order))
    elif block_type == 6:  # enhanced packet
        iface, ts_high, ts_low, caplen, wirelen = struct.unpack_from(order + "IIIII", body, 0)
        if iface < len(linktypes):
            ts = ((ts_high << 32) | ts_low) * resolutions[iface]
            if 0 <= ts < MAX_TIMESTAMP:
                frame = bytes(body[20 : min(20 + caplen, len(body) - 4)])
                return _as_ethernet(ts, frame, wirelen, linktypes[iface])
    elif block_type == 3 and linktypes:  # simple packet: on the first interface
        (wirelen,) = struct.unpack_from(order + "I", body, 0)
        frame = bytes(body[4 : 4 + min(wirelen, len(body) - 8)])
        return _as_ethernet(0.0, frame, wirelen, linktypes[0])
    return None


def _as_ethernet(ts: float, frame: bytes, wirelen: int, convert: Converter | None) -> Frame:
    """The frame as Ethernet, its wire length moved by the header's change in size."""
    if convert is None:
        return (ts, frame, wirelen)
    ethernet = convert(frame)
    return (ts, ethernet, max(len(ethernet), wirelen + len(ethernet) - len(frame)))


def _if_tsresol(options: bytes, order: str) -> float:
    offset = 0
    while offset + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, offset)
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = options[offset + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0**-value
        offset += 4 + ((length + 3) & ~3)
    return 1e-6


# ---- live: AF_PACKET with a TPACKET_V3 ring ---------------------------------------------

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_FANOUT = 18
PACKET_MR_PROMISC = 1
TPACKET_V3 = 2
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
TP_STATUS_USER = 1
SO_ATTACH_FILTER = 26
ETH_P_ALL = 0x0003


class _BlockDesc(ctypes.Structure):  # tpacket_block_desc with tpacket_hdr_v1 inside
    _fields_ = [
        ("version", ctypes.c_uint32),
        ("offset_to_priv", ctypes.c_uint32),
        ("block_status", ctypes.c_uint32),
        ("num_pkts", ctypes.c_uint32),
        ("offset_to_first_pkt", ctypes.c_uint32),
        ("blk_len", ctypes.c_uint32),
    ]


_T3_HDR = struct.Struct("IIIIIII")  # next_offset, sec, nsec, snaplen, len, status, mac(H)+net(H)
_T3_NEXT = struct.Struct("I")  # next_offset alone
_T3_SIZE = 28  # the tpacket3_hdr words read per frame (up to tp_mac | tp_net << 16)
# In a SOCK_DGRAM ring the frame has no link header; the kernel puts a sockaddr_ll after the
# 48-byte tpacket3_hdr: family, protocol (the EtherType, network order), ifindex, ARPHRD
# type, packet type, address length, address.
_T3_SLL_OFFSET = 48
_SLL = struct.Struct("=H2siHBB8s")
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772  # both deliver an Ethernet header
ANY = "any"


def link_header_type(iface: str) -> int:
    """The interface's ARPHRD type (1: Ethernet; 65534: none, as tun and WireGuard have)."""
    try:
        return int(Path(f"/sys/class/net/{iface}/type").read_text().strip())
    except (OSError, ValueError):
        return ARPHRD_ETHER


def compile_bpf(expression: str) -> bytes:
    """Compile a tcpdump filter to classic BPF with tcpdump itself (no libpcap binding)."""
    if not expression:
        return b""
    if shutil.which("tcpdump") is None:
        raise CaptureError(
            f"--filter '{expression}': compiling a capture filter needs tcpdump; "
            "run 'apt-get install tcpdump' or leave --filter out"
        )
    proc = subprocess.run(
        ["tcpdump", "-ddd", "-y", "EN10MB", expression], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise CaptureError(
            f"--filter '{expression}' is not a valid capture filter: {proc.stderr.strip()}"
        )
    numbers = [list(map(int, line.split())) for line in proc.stdout.strip().splitlines()[1:]]
    return b"".join(struct.pack("HBBI", *n) for n in numbers)


class LiveCapture:
    """A TPACKET_V3 memory-mapped ring on one interface, optionally in a fanout group.

    Several processes that join the same fanout group share the interface's traffic,
    each flow always going to the same process (PACKET_FANOUT_HASH).
    """

    def __init__(
        self,
        iface: str,
        bpf: str = "",
        fanout_group: int | None = None,
        block_size: int = 1 << 20,
        block_count: int = 64,
        promiscuous: bool = True,
    ) -> None:
        self.iface = iface
        index = self._index(iface)
        # Interfaces without an Ethernet header (tun, WireGuard, PPP) and `any` (every
        # interface, each with its own header) are read cooked: the kernel strips the link
        # header and says the protocol, and each frame gets an Ethernet header here.
        self.cooked = index == 0 or link_header_type(iface) not in (ARPHRD_ETHER, ARPHRD_LOOPBACK)
        if self.cooked and bpf:
            raise CaptureError(
                f"--filter '{bpf}': capture filters are compiled for Ethernet; --iface {iface} "
                "has no Ethernet header, so leave --filter out there"
            )
        kind = socket.SOCK_DGRAM if self.cooked else socket.SOCK_RAW
        try:
            self.sock = socket.socket(socket.AF_PACKET, kind, socket.htons(ETH_P_ALL))
        except PermissionError as exc:
            raise CaptureError(
                "capturing needs CAP_NET_RAW (run as root or grant the capability)"
            ) from exc
        code = compile_bpf(bpf)
        if code:
            buf = ctypes.create_string_buffer(code)
            prog = struct.pack("HL", len(code) // 8, ctypes.addressof(buf))
            self._filter_buf = buf  # keep alive while attached
            self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
        self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        frame_size = 2048
        frames = block_size // frame_size * block_count
        # tpacket_req3; a block is handed to us after 100 ms even if not full.
        req = struct.pack("IIIIIII", block_size, block_count, frame_size, frames, 100, 0, 0)
        self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.block_size, self.block_count = block_size, block_count
        self.ring = mmap.mmap(
            self.sock.fileno(),
            block_size * block_count,
            mmap.MAP_SHARED,
            mmap.PROT_READ | mmap.PROT_WRITE,
        )
        if index:  # unbound, the socket hears every interface: that is `any`
            self.sock.bind((iface, 0))
        if promiscuous and not self.cooked:
            mreq = struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b"")
            self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        if fanout_group is not None:
            value = (fanout_group & 0xFFFF) | (
                (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16
            )
            try:  # the value is an unsigned 32-bit int (the flag sets bit 31)
                self.sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", value))
            except OSError as exc:
                self.close()
                raise CaptureError(
                    f"--fanout-group {fanout_group}: cannot join ({exc.strerror}); every member "
                    "must capture on the same interface with the same settings"
                ) from exc
        self._block = 0
        self.kernel_packets = 0
        self.kernel_drops = 0

    @staticmethod
    def _index(iface: str) -> int:
        """The interface index; 0 for `any`."""
        if iface == ANY:
            return 0
        try:
            return socket.if_nametoindex(iface)
        except OSError as exc:
            raise CaptureError(f"--iface {iface}: no such interface") from exc

    def batches(self, timeout: float = 0.5) -> Iterator[FrameBatch | list[Frame]]:
        """Yield the frames of each filled block; an empty list when ``timeout`` passes idle."""
        import select

        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN | select.POLLERR)
        ring = self.ring
        while True:
            base = self._block * self.block_size
            desc = _BlockDesc.from_buffer(ring, base)
            if not desc.block_status & TP_STATUS_USER:
                poller.poll(int(timeout * 1000))
                desc = _BlockDesc.from_buffer(ring, base)
                if not desc.block_status & TP_STATUS_USER:
                    del desc
                    yield []
                    continue
            if self.cooked:
                out: FrameBatch | list[Frame] = self._frames(
                    ring, base + desc.offset_to_first_pkt, desc.num_pkts
                )
            else:
                used = desc.blk_len if 0 < desc.blk_len <= self.block_size else self.block_size
                out = _ring_block(ring[base : base + used], desc.offset_to_first_pkt, desc.num_pkts)
            desc.block_status = 0  # hand the block back to the kernel
            del desc
            self._block = (self._block + 1) % self.block_count
            yield out

    def _frames(self, ring: mmap.mmap, offset: int, count: int) -> list[Frame]:
        out: list[Frame] = []
        cooked = self.cooked
        for _ in range(count):
            next_offset, sec, nsec, snaplen, wirelen, _status, macnet = _T3_HDR.unpack_from(
                ring, offset
            )
            start = offset + (macnet & 0xFFFF)
            frame = ring[start : start + snaplen]
            if cooked:
                _fam, protocol, _ifindex, _hatype, _pkttype, halen, addr = _SLL.unpack_from(
                    ring, offset + _T3_SLL_OFFSET
                )
                source = addr[:6] if halen == 6 else bytes(6)
                frame = bytes(6) + source + protocol + frame
                wirelen += 14
            out.append((sec + nsec / 1e9, frame, wirelen))
            offset += next_offset
        return out

    def statistics(self) -> tuple[int, int]:
        """(packets, drops) counted by the kernel since the last call; kept as running totals."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        packets, drops, _freeze = struct.unpack("III", raw)
        self.kernel_packets += packets
        self.kernel_drops += drops
        return self.kernel_packets, self.kernel_drops

    def close(self) -> None:
        self.ring.close()
        self.sock.close()


def _ring_block(block: bytes, first: int, count: int) -> FrameBatch:
    """The frames of one ring block (a copy, so the block goes back to the kernel at once)."""
    starts: list[int] = []
    position, next_at = first, _T3_NEXT.unpack_from
    for _ in range(count):  # each tpacket3_hdr says where the next one is
        if position + _T3_SIZE > len(block):  # never read past the block, whatever it says
            break
        starts.append(position)
        step = next_at(block, position)[0]
        if step == 0:  # the last frame of the block
            break
        position += step
    at = np.asarray(starts, dtype=np.int64)
    # tpacket3_hdr: next_offset, sec, nsec, snaplen, len, status, mac | net << 16
    fields = _header_words(block, at, _T3_SIZE, "=")
    return FrameBatch(
        block,
        at + (fields[:, 6] & 0xFFFF),
        fields[:, 3],
        fields[:, 4],
        fields[:, 1] + fields[:, 2] / 1e9,
    )


def have_raw_socket_rights() -> bool:
    return os.geteuid() == 0
