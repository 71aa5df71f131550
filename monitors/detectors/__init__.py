"""One module per attack. Every detector has the same small interface (see ``base``)."""

from monitors.detectors.arpspoof import ArpSpoofDetector
from monitors.detectors.base import Detector
from monitors.detectors.beacon import BeaconDetector
from monitors.detectors.bruteforce import BruteForceDetector
from monitors.detectors.dnstunnel import DnsTunnelDetector
from monitors.detectors.fingerprint import FingerprintDetector
from monitors.detectors.flood import FloodDetector
from monitors.detectors.portscan import PortScanDetector
from monitors.detectors.sweep import SweepDetector
from monitors.detectors.synflood import SynFloodDetector
from monitors.detectors.volume import VolumeDetector

ALL: tuple[type[Detector], ...] = (
    PortScanDetector,
    SynFloodDetector,
    SweepDetector,
    ArpSpoofDetector,
    DnsTunnelDetector,
    BruteForceDetector,
    VolumeDetector,
    BeaconDetector,
    FloodDetector,
    FingerprintDetector,
)

__all__ = ["ALL", "Detector"]
