#!/usr/bin/env bash
# Capture nmap's OS and service detection against two ports (one open, one closed), too few
# for a port scan alert: what the fingerprint detector alone must catch.
#
# Inside network namespaces this script creates (kf-*), on a veth pair with lab addresses
# 10.66.0.0/24 only; nmap is bounded by --host-timeout; the namespaces are removed at the end.
# Needs root, nmap, tcpdump and python3.
#
#   attacker 10.66.0.66   victim 10.66.0.10 (HTTP on 80; 81 closed)
set -euo pipefail
OUT=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)

cleanup() {
  for n in attacker victim; do ip netns pids "kf-$n" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
  for n in attacker victim; do ip netns del "kf-$n" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cleanup; WORK=$(mktemp -d)

ip netns add kf-attacker
ip netns add kf-victim
ip -n kf-attacker link add eth0 type veth peer name eth0 netns kf-victim
ip -n kf-attacker link set eth0 address 02:66:00:00:00:66
ip -n kf-victim link set eth0 address 02:66:00:00:00:10
ip -n kf-attacker addr add 10.66.0.66/24 dev eth0
ip -n kf-victim addr add 10.66.0.10/24 dev eth0
for n in attacker victim; do
  ip -n "kf-$n" link set lo up
  ip -n "kf-$n" link set eth0 up
  ip netns exec "kf-$n" ethtool -K eth0 tx off rx off >/dev/null 2>&1 || true
done
printf '<html>intranet</html>\n' > "$WORK/index.html"
ip netns exec kf-victim python3 -m http.server 80 --bind 10.66.0.10 --directory "$WORK" >/dev/null 2>&1 &
for _ in $(seq 1 50); do
  ip netns exec kf-victim ss -Hlnt 'sport = :80' | grep -q . && break
  sleep 0.2
done

capture() {  # capture NAME: tcpdump on the victim's eth0 into NAME.pcap
  rm -f "$OUT/$1.pcap"
  ip netns exec kf-victim tcpdump -i eth0 -s 512 -U -w "$OUT/$1.pcap" >/dev/null 2>&1 &
  CAPTURE_PID=$!
  sleep 1
}
stop_capture() { sleep 1; kill "$CAPTURE_PID"; wait "$CAPTURE_PID" 2>/dev/null || true; }

echo "nmap -O (OS detection) against ports 80 and 81"
capture nmap-os-detection
ip netns exec kf-attacker nmap -n -Pn -O -p 80,81 --max-retries 1 --host-timeout 60s 10.66.0.10 >/dev/null || true
stop_capture

echo "nmap -A (OS and service detection, scripts, traceroute) against ports 80 and 81"
capture nmap-aggressive
ip netns exec kf-attacker nmap -n -Pn -A -p 80,81 --max-retries 1 --host-timeout 90s 10.66.0.10 >/dev/null || true
stop_capture

ls -l "$OUT"/nmap-os-detection.pcap "$OUT"/nmap-aggressive.pcap
