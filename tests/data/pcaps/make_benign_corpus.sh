#!/usr/bin/env bash
# A benign corpus: real service traffic that municipal networks carry all day, captured into
# one pcap for the monitors' zero-false-alarm test (tests/monitors/test_benign_corpus.py).
#
#   make_benign_corpus.sh OUT.pcap [PACKETS] [MAX_SECONDS] [SNAPLEN]
#
# (root) Captures until PACKETS packets (default 1,000,000) or MAX_SECONDS (default 300) of
# traffic, whichever comes first; prints the count. SNAPLEN (default 400 bytes per frame; 0:
# whole frames, what Suricata needs to follow streams) bounds the file's size.
#
# Network namespaces this script creates (kb-*) on one private bridge, addresses 10.79.0.0/24
# only; every client loop is bounded by `timeout`; the namespaces are removed at the end.
# Nothing leaves the bridge. Real daemons from Debian:
#
#   gw   10.79.0.1   dnsmasq: DHCP server (the clients' DISCOVER/REQUEST/RELEASE cycles)
#   dns  10.79.0.53  unbound: the municipality's resolver, forwarding dimos.test to auth
#   auth 10.79.0.54  dnsmasq: 3,000 names of dimos.test (the zone's server)
#   srv  10.79.0.10  sshd (sessions, scp, rsync backups), smbd (file copies), HTTPS (python's
#                    TLS server: intranet pages and apt-like package downloads), chronyd (NTP),
#                    snmpd, a QUIC-like UDP service on 443
#   mon  10.79.0.5   polls SNMP (snmpbulkwalk) and NTP (chronyd -Q) all along
#   c1..c8 10.79.0.101-108  clients doing all of the above at once, plus VoIP-like RTP calls
#                    between pairs, mDNS and SSDP chatter, ping
#
# Needs: unbound dnsmasq-base openssh-server openssh-client rsync samba smbclient chrony snmpd
# snmp isc-dhcp-client curl tcpdump python3 openssl.
set -euo pipefail
OUT=$(realpath -m "${1:?usage: make_benign_corpus.sh OUT.pcap [PACKETS] [MAX_SECONDS] [SNAPLEN]}")
PACKETS=${2:-1000000}
SECONDS_OF_TRAFFIC=${3:-300}
SNAPLEN=${4:-400}
[[ $PACKETS =~ ^[0-9]+$ && $SECONDS_OF_TRAFFIC =~ ^[0-9]+$ && $SNAPLEN =~ ^[0-9]+$ ]] ||
  { echo 'PACKETS, MAX_SECONDS and SNAPLEN are whole numbers' >&2; exit 2; }
WORK=$(mktemp -d)
CLIENTS=(c1 c2 c3 c4 c5 c6 c7 c8)
NAMES=(gw dns auth srv mon "${CLIENTS[@]}")
declare -A ADDR=([gw]=10.79.0.1 [dns]=10.79.0.53 [auth]=10.79.0.54 [srv]=10.79.0.10 [mon]=10.79.0.5)
for i in "${!CLIENTS[@]}"; do ADDR[${CLIENTS[$i]}]=10.79.0.$((101 + i)); done

cleanup() {
  jobs -p | xargs -r kill 2>/dev/null || true
  for n in "${NAMES[@]}" sw; do ip netns pids "kb-$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true; done
  for n in "${NAMES[@]}" sw; do ip netns del "kb-$n" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cleanup; WORK=$(mktemp -d); chmod 755 "$WORK"

nsrun() { local n=$1; shift; ip netns exec "kb-$n" "$@"; }

ip netns add kb-sw
ip -n kb-sw link add br0 type bridge
ip -n kb-sw link set br0 up
for n in "${NAMES[@]}"; do
  ip netns add "kb-$n"
  ip -n kb-sw link add "p-$n" type veth peer name eth0 netns "kb-$n"
  ip -n kb-sw link set "p-$n" master br0 up
  nsrun "$n" ip link set lo up
  nsrun "$n" ip addr add "${ADDR[$n]}/24" dev eth0
  nsrun "$n" ip link set eth0 up
  nsrun "$n" ethtool -K eth0 tx off rx off tso off gso off >/dev/null 2>&1 || true
  nsrun "$n" ip route add 224.0.0.0/4 dev eth0 2>/dev/null || true
done
sleep 1

wait_for() {  # wait_for NS PROTO PORT: until a server listens (the machine may be busy)
  for _ in $(seq 1 150); do
    nsrun "$1" ss -Hln"${2:0:1}" "sport = :$3" | grep -q . && return 0
    sleep 0.2
  done
  echo "no server on $1 $2/$3" >&2; return 1
}

# --- the zone's server and the resolver -----------------------------------------------------
for i in $(seq 1 3000); do echo "10.79.$((i / 250 + 1)).$((i % 250 + 1)) host$i.dimos.test"; done > "$WORK/zone.hosts"
echo "10.79.0.10 intranet.dimos.test files.dimos.test updates.dimos.test" >> "$WORK/zone.hosts"
nsrun auth dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --user=nobody \
  --listen-address=10.79.0.54 --bind-interfaces --addn-hosts="$WORK/zone.hosts" \
  --local=/dimos.test/ --pid-file="$WORK/auth.pid" >/dev/null 2>&1 &
cat > "$WORK/unbound.conf" <<CFG
server:
  interface: 10.79.0.53
  access-control: 10.79.0.0/24 allow
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$WORK"
  pidfile: "$WORK/unbound.pid"
  use-syslog: no
  logfile: ""
  domain-insecure: "dimos.test"
  local-zone: "test." nodefault   # unbound answers .test itself by default (RFC 6761)
  do-not-query-localhost: no
  cache-max-ttl: 30
remote-control:
  control-enable: no
forward-zone:
  name: "dimos.test"
  forward-addr: 10.79.0.54
CFG
nsrun dns unbound -d -c "$WORK/unbound.conf" >/dev/null 2>&1 &

# --- DHCP on the gateway --------------------------------------------------------------------
nsrun gw dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 --user=nobody \
  --listen-address=10.79.0.1 --bind-interfaces --dhcp-range=10.79.0.150,10.79.0.200,2m \
  --dhcp-leasefile="$WORK/leases" --pid-file="$WORK/gw.pid" >/dev/null 2>&1 &

# --- the server: SSH, SMB, HTTPS, NTP, SNMP, QUIC-like ----------------------------------------
mkdir -p "$WORK/www/debs" "$WORK/share" "$WORK/home"
head -c 20000 /dev/urandom > "$WORK/www/index.html"
for i in 1 2 3 4 5 6; do head -c $((i * 400000)) /dev/urandom > "$WORK/www/debs/pkg$i.deb"; done
for i in 1 2 3; do head -c $((i * 3000000)) /dev/urandom > "$WORK/share/report$i.pdf"; done
chmod -R a+rwX "$WORK/share"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=intranet \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" >/dev/null 2>&1
cat > "$WORK/https.py" <<PY
import functools, http.server, ssl
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="$WORK/www")
handler.log_message = lambda *a: None
server = http.server.ThreadingHTTPServer(("10.79.0.10", 443), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("$WORK/tls.crt", "$WORK/tls.key")
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
PY
nsrun srv python3 -u "$WORK/https.py" >/dev/null 2>&1 &
cat > "$WORK/quic.py" <<PY
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.79.0.10", 443))
while True:
    data, peer = s.recvfrom(2048)
    for _ in range(3):  # a small request, a few full-size answers (a QUIC-like exchange)
        s.sendto(bytes(1200), peer)
PY
nsrun srv python3 -u "$WORK/quic.py" >/dev/null 2>&1 &
ssh-keygen -q -t ed25519 -N "" -f "$WORK/ssh_host_key"
ssh-keygen -q -t ed25519 -N "" -f "$WORK/id_client"
mkdir -p /run/sshd
cat > "$WORK/sshd_config" <<CFG
ListenAddress 10.79.0.10
HostKey $WORK/ssh_host_key
AuthorizedKeysFile $WORK/id_client.pub
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $WORK/sshd.pid
MaxStartups 100:30:200
CFG
nsrun srv /usr/sbin/sshd -f "$WORK/sshd_config"
cat > "$WORK/ssh_config" <<CFG
Host srv
  HostName 10.79.0.10
  User root
  IdentityFile $WORK/id_client
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
CFG
cat > "$WORK/smb.conf" <<CFG
[global]
  interfaces = 10.79.0.10/24
  bind interfaces only = yes
  smb ports = 445
  map to guest = Bad User
  guest account = nobody
  server role = standalone server
  disable netbios = yes
  pid directory = $WORK
  lock directory = $WORK
  state directory = $WORK
  cache directory = $WORK
  private dir = $WORK
  log file = $WORK/smb.log
[share]
  path = $WORK/share
  guest ok = yes
  read only = no
  force user = root
CFG
nsrun srv smbd --foreground --no-process-group -s "$WORK/smb.conf" >/dev/null 2>&1 &
cat > "$WORK/chrony.conf" <<CFG
allow 10.79.0.0/24
local stratum 8
bindaddress 10.79.0.10
pidfile $WORK/chronyd.pid
driftfile $WORK/chrony.drift
cmdport 0
CFG
nsrun srv chronyd -x -d -f "$WORK/chrony.conf" >/dev/null 2>&1 &
cat > "$WORK/snmpd.conf" <<CFG
agentaddress udp:10.79.0.10:161
rocommunity public 10.79.0.5
CFG
nsrun srv snmpd -f -Lo -C -c "$WORK/snmpd.conf" -p "$WORK/snmpd.pid" >/dev/null 2>&1 &

wait_for srv tcp 443; wait_for srv tcp 22; wait_for srv tcp 445; wait_for srv udp 123
wait_for srv udp 161; wait_for srv udp 443; wait_for dns udp 53; wait_for auth udp 53; wait_for gw udp 67

# --- capture on the bridge: everything every host sends and receives ---------------------------
ip netns exec kb-sw tcpdump -i br0 -s "$SNAPLEN" -B 262144 -U -c "$PACKETS" -w "$OUT" >"$WORK/tcpdump.log" 2>&1 &
CAPTURE_PID=$!
sleep 1

# --- what every client does, at once, for SECONDS_OF_TRAFFIC -----------------------------------
T=$SECONDS_OF_TRAFFIC
cat > "$WORK/dns.py" <<'PY'
import random, socket, struct, sys, time
end = time.monotonic() + float(sys.argv[1]); rng = random.Random(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
while time.monotonic() < end:
    name = rng.choice(["intranet", "files", "updates"]) if rng.random() < 0.3 else f"host{rng.randint(1, 3000)}"
    qid = rng.randrange(65536)
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in (name, "dimos", "test")) + b"\0"
    q += struct.pack("!HH", 1 if rng.random() < 0.8 else 28, 1)
    s.sendto(q, ("10.79.0.53", 53))
    try:
        s.recv(2048)
    except OSError:
        pass
    time.sleep(rng.uniform(0.005, 0.05))
PY
cat > "$WORK/rtp.py" <<'PY'
import socket, sys, time
end = time.monotonic() + float(sys.argv[1]); me, peer = sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((me, 16384)); s.setblocking(False)
seq, ts = 0, 0
while time.monotonic() < end:  # one G.711 call leg: 50 packets/s of 160 bytes of audio
    header = bytes([0x80, 0]) + seq.to_bytes(2, "big") + ts.to_bytes(4, "big") + b"\x12\x34\x56\x78"
    s.sendto(header + bytes(160), (peer, 16384))
    seq, ts = (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF
    try:
        while True:
            s.recv(2048)
    except BlockingIOError:
        pass
    time.sleep(0.02)
PY
cat > "$WORK/chatter.py" <<'PY'
import socket, struct, sys, time, random
end = time.monotonic() + float(sys.argv[1]); me = sys.argv[2]; rng = random.Random(me)
m = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); m.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(me))
m.bind((me, 0))
while time.monotonic() < end:  # mDNS queries for printers, SSDP searches, like desktops do
    q = struct.pack("!HHHHHH", 0, 0, 1, 0, 0, 0) + b"\x04_ipp\x04_tcp\x05local\x00" + struct.pack("!HH", 12, 1)
    m.sendto(q, ("224.0.0.251", 5353))
    if rng.random() < 0.3:
        m.sendto(b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n",
                 ("239.255.255.250", 1900))
    time.sleep(rng.uniform(1, 4))
PY
cat > "$WORK/quicc.py" <<'PY'
import socket, sys, time, random
end = time.monotonic() + float(sys.argv[1]); rng = random.Random(sys.argv[2])
while time.monotonic() < end:  # a page over QUIC-like UDP: a request, answers, a new port each time
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
    for _ in range(rng.randint(3, 10)):
        s.sendto(bytes(300), ("10.79.0.10", 443))
        try:
            for _ in range(3):
                s.recv(2048)
        except OSError:
            pass
    s.close(); time.sleep(rng.uniform(0.5, 2))
PY

cat > "$WORK/desk.sh" <<'SH'
# desk.sh NAME SECONDS WORK: one desktop's working day, compressed (run inside its namespace).
# As real clients do: one SMB session held open for many file copies, one SSH session held
# open, a backup or a copy over SSH every 15 s; web pages and downloads as often as they come.
n=$1; T=$2; end=$((SECONDS + T)); work=$3
mkdir -p "$work/home/$n"
(while [ $SECONDS -lt $end ]; do echo "get report$((RANDOM % 3 + 1)).pdf /dev/null"; sleep $((RANDOM % 4 + 2)); done) \
  | smbclient -N -s /dev/null //10.79.0.10/share >/dev/null 2>&1 &
ssh -F "$work/ssh_config" srv "end=\$((SECONDS + $T)); while [ \$SECONDS -lt \$end ]; do date; sleep 0.5; done" >/dev/null 2>&1 &
(while [ $SECONDS -lt $end ]; do
   sleep 15
   head -c $((RANDOM * 20)) /dev/urandom > "$work/home/$n/doc$((RANDOM % 5)).odt"
   if [ $((RANDOM % 2)) = 0 ]; then
     rsync -a --bwlimit=20000 -e "ssh -F $work/ssh_config" "$work/home/$n/" "srv:$work/share/backup-$n/" >/dev/null 2>&1
   else
     scp -q -F "$work/ssh_config" "srv:$work/share/report1.pdf" /dev/null >/dev/null 2>&1
   fi
 done) &
while [ $SECONDS -lt $end ]; do
  case $((RANDOM % 4)) in
    0) curl -sk -o /dev/null https://10.79.0.10/index.html ;;
    1) curl -sk --limit-rate 20M -o /dev/null "https://10.79.0.10/debs/pkg$((RANDOM % 6 + 1)).deb" ;;
    2) ping -c 3 -i 0.2 -q 10.79.0.10 >/dev/null ;;
    3) chronyd -Q -t 3 -f /dev/null "pidfile $work/ntp-$n.pid" 'server 10.79.0.10 iburst maxsamples 1' >/dev/null 2>&1 ;;
  esac
  sleep "0.$((RANDOM % 9 + 1))"
done
wait
SH

client() {  # client NAME INDEX: every kind of traffic from one desktop, at once
  local n=$1 i=$2 peer
  peer=${CLIENTS[$(( (i + 4) % 8 ))]}
  timeout $((T + 5)) ip netns exec "kb-$n" python3 "$WORK/dns.py" "$T" "$n" &
  timeout $((T + 5)) ip netns exec "kb-$n" python3 "$WORK/rtp.py" "$T" "${ADDR[$n]}" "${ADDR[$peer]}" &
  timeout $((T + 5)) ip netns exec "kb-$n" python3 "$WORK/chatter.py" "$T" "${ADDR[$n]}" &
  timeout $((T + 5)) ip netns exec "kb-$n" python3 "$WORK/quicc.py" "$T" "$n" &
  timeout $((T + 5)) ip netns exec "kb-$n" bash "$WORK/desk.sh" "$n" "$T" "$WORK" &
  # DHCP: a lease taken and released a few times (dhclient changes nothing here: -sf /bin/true)
  timeout $((T + 5)) ip netns exec "kb-$n" bash -c "
    for k in 1 2 3; do
      dhclient -1 -4 -sf /bin/true -lf $WORK/$n.leases -pf $WORK/$n.dhpid eth0 >/dev/null 2>&1
      sleep $((T / 4))
      dhclient -r -sf /bin/true -lf $WORK/$n.leases -pf $WORK/$n.dhpid eth0 >/dev/null 2>&1
    done" &
}
for i in "${!CLIENTS[@]}"; do client "${CLIENTS[$i]}" "$i"; done

# The monitoring host polls SNMP and NTP every 5 s.
timeout $((T + 5)) bash -c "
  end=\$((SECONDS + $T))
  while [ \$SECONDS -lt \$end ]; do
    ip netns exec kb-mon snmpbulkwalk -v2c -c public -t 2 -r 1 10.79.0.10 1.3.6.1.2.1 >/dev/null 2>&1
    ip netns exec kb-mon chronyd -Q -t 3 -f /dev/null 'pidfile $WORK/ntp-mon.pid' 'server 10.79.0.10 iburst maxsamples 1' >/dev/null 2>&1
    sleep 5
  done" &

started=$SECONDS
while kill -0 "$CAPTURE_PID" 2>/dev/null && [ $((SECONDS - started)) -lt "$T" ]; do sleep 1; done
kill "$CAPTURE_PID" 2>/dev/null || true; wait "$CAPTURE_PID" 2>/dev/null || true
echo "$((SECONDS - started)) s of traffic" >&2
tail -3 "$WORK/tcpdump.log" >&2
