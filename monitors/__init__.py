"""Kastro's packet-level anomaly monitors.

Frames come from a pcap file or a live AF_PACKET ring (``capture``), are parsed into
compact records by a struct-based fast path (``packet``), run through independent
detectors (``detectors/``, one per attack), and become Suricata EVE-style alerts
(``alerts``) and Prometheus metrics (``metrics``). ``engine`` ties them together.
"""
