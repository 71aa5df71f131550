#!/usr/bin/env bash
# Capture real attack tools and normal traffic into small pcaps for the monitor tests.
#
# Everything happens inside network namespaces this script creates (kp-*) on one private
# bridge, with lab addresses 10.66.0.0/24 only; every tool is bounded in count and time
# and the namespaces are removed at the end. Needs root and: nmap hping3 dsniff iodine
# hydra dnsmasq-base curl dnsutils openssh-server tcpdump python3.
#
#   attacker 10.66.0.66   victim 10.66.0.10 (HTTP, HTTPS, SSH)   dns 10.66.0.53 (dnsmasq/iodined)
#   client   10.66.0.20   gateway 10.66.0.1
set -euo pipefail
OUT=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
NAMES=(attacker victim dns client gw)
declare -A ADDR=([attacker]=10.66.0.66 [victim]=10.66.0.10 [dns]=10.66.0.53 [client]=10.66.0.20 [gw]=10.66.0.1)
declare -A MAC=([attacker]=02:66:00:00:00:66 [victim]=02:66:00:00:00:10 [dns]=02:66:00:00:00:53
                [client]=02:66:00:00:00:20 [gw]=02:66:00:00:00:01)

cleanup() {
  for n in "${NAMES[@]}"; do ip netns pids "kp-$n" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
  for n in "${NAMES[@]}" sw; do ip netns del "kp-$n" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cleanup; WORK=$(mktemp -d)

nsrun() { local n=$1; shift; ip netns exec "kp-$n" "$@"; }

ip netns add kp-sw
ip -n kp-sw link add br0 type bridge
ip -n kp-sw link set br0 up
for n in "${NAMES[@]}"; do
  ip netns add "kp-$n"
  ip -n kp-sw link add "p-$n" type veth peer name eth0 netns "kp-$n"
  ip -n kp-sw link set "p-$n" master br0 up
  nsrun "$n" ip link set lo up
  nsrun "$n" ip link set eth0 address "${MAC[$n]}"
  nsrun "$n" ip addr add "${ADDR[$n]}/24" dev eth0
  nsrun "$n" ip link set eth0 up
  nsrun "$n" ethtool -K eth0 tx off rx off >/dev/null 2>&1 || true   # real checksums in the pcaps
  nsrun "$n" ip route add default via 10.66.0.1 2>/dev/null || true
done
sleep 1

# Services on the victim: HTTP, HTTPS (self-signed), SSH.
mkdir -p "$WORK/www"; head -c 2000000 /dev/urandom > "$WORK/www/update.deb"
printf '<html>Δήμος Καστρου intranet</html>\n' > "$WORK/www/index.html"
nsrun victim /usr/bin/python3 -u -m http.server 80 --bind 10.66.0.10 --directory "$WORK/www" >/dev/null 2>&1 &
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=intranet \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" >/dev/null 2>&1
cat > "$WORK/tls.py" <<PY
import http.server, ssl, functools
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="$WORK/www")
server = http.server.HTTPServer(("10.66.0.10", 443), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("$WORK/tls.crt", "$WORK/tls.key")
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
PY
nsrun victim /usr/bin/python3 -u "$WORK/tls.py" >/dev/null 2>&1 &
ssh-keygen -q -t ed25519 -N "" -f "$WORK/ssh_host_key"
mkdir -p /run/sshd
cat > "$WORK/sshd_config" <<CFG
ListenAddress 10.66.0.10
HostKey $WORK/ssh_host_key
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
PidFile $WORK/sshd.pid
MaxStartups 100:30:200
CFG
nsrun victim /usr/sbin/sshd -f "$WORK/sshd_config"
# DNS for the client: dnsmasq with a local zone, no upstream (nothing leaves the lab).
ip netns exec kp-dns dnsmasq --no-daemon --no-resolv --no-hosts --listen-address=10.66.0.53 --bind-interfaces \
  --address=/intranet.kastro.test/10.66.0.10 --address=/www.kastro.test/10.66.0.10 \
  --address=/updates.kastro.test/10.66.0.10 >/dev/null 2>&1 &
DNSMASQ_PID=$!
sleep 1
wait_for() {  # wait_for NS PROTO PORT: until a server listens (the machine may be busy)
  for _ in $(seq 1 100); do
    nsrun "$1" ss -Hln"${2:0:1}" "sport = :$3" | grep -q . && return 0
    sleep 0.2
  done
  echo "no server on $1 $2/$3" >&2; return 1
}
wait_for victim tcp 80; wait_for victim tcp 443; wait_for victim tcp 22; wait_for dns udp 53

capture() {  # capture NAME NS FILTER: start tcpdump on NS's eth0 into NAME.pcap
  rm -f "$OUT/$1.pcap"
  # Directly, not through nsrun: $! must be tcpdump itself (ip netns exec execs it).
  ip netns exec "kp-$2" tcpdump -i eth0 -s 256 -U -w "$OUT/$1.pcap" ${3:+"$3"} >/dev/null 2>&1 &
  CAPTURE_PID=$!
  sleep 1
}
stop_capture() { sleep 1; kill "$CAPTURE_PID"; wait "$CAPTURE_PID" 2>/dev/null || true; }

echo "normal traffic (curl HTTP/HTTPS, dig, an apt-like download, ping)"
capture normal client
for q in intranet www updates; do nsrun client dig +short @10.66.0.53 "$q.kastro.test" >/dev/null; done
for i in 1 2 3; do nsrun client curl -sS --retry 5 --retry-connrefused --retry-delay 1 -o /dev/null http://10.66.0.10/; done
nsrun client curl -sS --retry 5 --retry-connrefused --retry-delay 1 -k -o /dev/null https://10.66.0.10/index.html
nsrun client curl -sS --retry 5 --retry-connrefused --retry-delay 1 -o /dev/null http://10.66.0.10/update.deb
nsrun client ping -c 3 -i 0.3 10.66.0.10 >/dev/null
stop_capture

echo "nmap -sS (TCP SYN scan of 200 ports)"
capture nmap-syn-scan attacker
nsrun attacker nmap -n -Pn -sS -p 1-200 -T4 --max-retries 1 --host-timeout 60s 10.66.0.10 >/dev/null
stop_capture

echo "nmap -sU (UDP scan of 50 ports)"
capture nmap-udp-scan attacker
nsrun attacker nmap -n -Pn -sU -p 1-50 -T4 --max-retries 0 --host-timeout 60s 10.66.0.10 >/dev/null
stop_capture

echo "nmap -sn (ARP host discovery of the /24)"
capture nmap-ping-sweep attacker
nsrun attacker nmap -n -sn --host-timeout 30s 10.66.0.0/24 >/dev/null
stop_capture

echo "arpspoof (claims the gateway's address towards the victim, 6 s)"
capture arpspoof victim arp
nsrun victim ip neigh flush dev eth0
nsrun victim ping -c 2 -i 0.3 10.66.0.1 >/dev/null   # the victim learns the real gateway first
nsrun attacker timeout 6 arpspoof -i eth0 -t 10.66.0.10 10.66.0.1 >/dev/null 2>&1 || true
stop_capture

echo "hping3 SYN flood from random sources (3000 packets)"
capture hping3-syn-flood victim "tcp port 80"
nsrun attacker timeout 20 hping3 -q -S -p 80 --rand-source -c 3000 -i u300 10.66.0.10 >/dev/null 2>&1 || true
stop_capture

echo "hydra against SSH (40 passwords, 4 tasks)"
for i in $(seq 1 40); do echo "guess$i"; done > "$WORK/passwords"
capture ssh-bruteforce victim "tcp port 22"
nsrun attacker timeout 60 hydra -q -l root -P "$WORK/passwords" -t 4 -w 5 ssh://10.66.0.10 >/dev/null 2>&1 || true
stop_capture

echo "iodine DNS tunnel (20 s: handshake, then pings through the tunnel)"
kill "$DNSMASQ_PID"; wait "$DNSMASQ_PID" 2>/dev/null || true
nsrun dns iodined -f -c -P kastrolab -l 10.66.0.53 172.30.99.1 t.kastro.test >/dev/null 2>&1 &
wait_for dns udp 53
capture iodine-tunnel dns "udp port 53"
nsrun client timeout 25 iodine -f -r -P kastrolab 10.66.0.53 t.kastro.test >/dev/null 2>&1 &
sleep 8
nsrun client ping -c 10 -i 0.5 -s 400 172.30.99.1 >/dev/null 2>&1 || true
sleep 2
stop_capture

ls -l "$OUT"/*.pcap
