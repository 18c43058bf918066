#!/usr/bin/env bash
# Tunnel's network-namespace lab: hosts as network namespaces joined by veth pairs.
#
#   wan 10.77.0.0/24 (bridge in namespace "wan")
#     ctl .10   relay .2   natx .21   naty .31
#   relay-lan 10.77.1.0/24 (bridge in namespace "relay-lan"), behind relay .1 (no forwarding)
#     target-ok .10 (banner :7000, :7001)   target-bad .20 (banner :7000)
#   X LAN 10.77.2.0/24: natx .1 (MASQUERADE) -- hostx .10 (sshd :22, echo :7100)
#   Y LAN 10.77.3.0/24: naty .1 (MASQUERADE) -- hosty .10
#   ctl and relay also answer on :7999 with "<name> <peer address>" so checks can see the NAT.
#
# Every namespace and interface is created by this script and named with the prefix
# tl<ID>- (ID = 4 chars of [a-z0-9], from LAB_ID, default "main"). Veth ends are created
# directly inside their namespaces, so nothing appears in the root namespace, and all rules
# and sysctls live inside the lab's namespaces. The addresses exist only in there.
#
# Usage: lab.sh up | down | check | exec HOST CMD [ARG...] | gc | list
#   LAB_ID=abcd         which lab (default main)
#   LAB_SERVICES=0      up: build the network only (the test harness starts its own processes)
#   LAB_OWNER_PID=PID   up: the lab is stale once PID has exited (gc removes it); default: kept until down
#   LAB_STATE_DIR=DIR   state root (default /run/tunnel-lab)
set -euo pipefail

HOSTS=(ctl relay target-ok target-bad natx hostx naty hosty)
SWITCHES=(wan relay-lan)
STATE_ROOT=${LAB_STATE_DIR:-/run/tunnel-lab}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NODE=${LAB_NODE:-$(command -v node || true)}

die() { echo "lab: $*" >&2; exit 1; }

set_id() {
  ID=$1
  [[ $ID =~ ^[a-z0-9]{4}$ ]] || die "LAB_ID must be 4 chars of [a-z0-9], got '$ID'"
  P="tl${ID}-"
  STATE="$STATE_ROOT/tl${ID}"
}

require_root() {
  [[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, veth and iptables need CAP_NET_ADMIN)"
  command -v ip >/dev/null || die "needs iproute2 (ip)"
}

ns() { echo "${P}$1"; }
nsx() { local host=$1; shift; ip netns exec "$(ns "$host")" "$@"; }
lab_namespaces() { ip netns list | awk '{print $1}' | grep -E "^${P}" || true; }

mkns() {
  local n
  n=$(ns "$1")
  ip netns add "$n"
  ip -n "$n" link set lo up
  # IPv6 off keeps the lab to the IPv4 plan above; forwarding only where a router needs it.
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
  ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=0 net.ipv4.icmp_ratelimit=0
}

# veth HOST_A IF_A HOST_B IF_B: one pair, each end created inside its own namespace.
veth() {
  ip -n "$(ns "$1")" link add "$2" type veth peer name "$4" netns "$(ns "$3")"
  ip -n "$(ns "$1")" link set "$2" up
  ip -n "$(ns "$3")" link set "$4" up
}

bridge() {
  ip -n "$(ns "$1")" link add "${P}br" type bridge
  ip -n "$(ns "$1")" link set "${P}br" up
}

# port SWITCH TAG HOST HOST_IF: plug HOST into SWITCH's bridge through switch-side port P<TAG>.
port() {
  veth "$1" "${P}$2" "$3" "$4"
  ip -n "$(ns "$1")" link set "${P}$2" master "${P}br"
}

addr() { ip -n "$(ns "$1")" addr add "$3" dev "$2"; }

nat_router() {
  local host=$1
  nsx "$host" sysctl -qw net.ipv4.ip_forward=1
  # A home router: outbound masqueraded, nothing unsolicited forwarded inwards.
  nsx "$host" iptables-restore <<EOF
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o ${P}wan -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -i ${P}lan -o ${P}wan -j ACCEPT
COMMIT
EOF
}

owner_of() {
  local pid=$1
  [[ -r /proc/$pid/stat ]] || return 1
  # Field 22 (start time) disambiguates a reused pid; skip "pid (comm) " first, comm may hold spaces.
  echo "$pid $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $20}')"
}

build() {
  local h
  for h in "${SWITCHES[@]}" "${HOSTS[@]}"; do mkns "$h"; done

  bridge wan
  port wan ctl ctl "${P}eth0"
  port wan relay relay "${P}wan"
  port wan natx natx "${P}wan"
  port wan naty naty "${P}wan"
  bridge relay-lan
  port relay-lan relay relay "${P}lan"
  port relay-lan tok target-ok "${P}eth0"
  port relay-lan tbad target-bad "${P}eth0"
  veth natx "${P}lan" hostx "${P}eth0"
  veth naty "${P}lan" hosty "${P}eth0"

  addr ctl "${P}eth0" 10.77.0.10/24
  addr relay "${P}wan" 10.77.0.2/24
  addr relay "${P}lan" 10.77.1.1/24
  addr target-ok "${P}eth0" 10.77.1.10/24
  addr target-bad "${P}eth0" 10.77.1.20/24
  addr natx "${P}wan" 10.77.0.21/24
  addr natx "${P}lan" 10.77.2.1/24
  addr hostx "${P}eth0" 10.77.2.10/24
  addr naty "${P}wan" 10.77.0.31/24
  addr naty "${P}lan" 10.77.3.1/24
  addr hosty "${P}eth0" 10.77.3.10/24
  ip -n "$(ns hostx)" route add default via 10.77.2.1
  ip -n "$(ns hosty)" route add default via 10.77.3.1
  nat_router natx
  nat_router naty
}

# service HOST NAME CMD...: a background process for hand-made labs; down kills it with the namespace.
service() {
  local host=$1 name=$2; shift 2
  setsid ip netns exec "$(ns "$host")" "$@" </dev/null >"$STATE/$name.log" 2>&1 &
}

# wait_for_line FILE REGEX: poll (bounded, 10 s) until a service logs that it is ready.
wait_for_line() {
  local i
  for i in $(seq 1 100); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  die "not ready after 10 s: $1"
}

start_services() {
  [[ -n $NODE ]] || die "needs node on PATH for the lab's services"
  local svc="$HERE/service.mjs" sshd_dir="$STATE/hostx-sshd"
  service target-ok target-ok-7000 "$NODE" "$svc" banner 10.77.1.10 7000 target-ok
  service target-ok target-ok-7001 "$NODE" "$svc" banner 10.77.1.10 7001 target-ok-7001
  service target-bad target-bad-7000 "$NODE" "$svc" banner 10.77.1.20 7000 target-bad
  service ctl ctl-probe "$NODE" "$svc" banner 10.77.0.10 7999 ctl --peer
  service relay relay-probe "$NODE" "$svc" banner 10.77.0.2 7999 relay --peer
  service hostx hostx-echo "$NODE" "$svc" echo 0.0.0.0 7100
  mkdir -p "$sshd_dir" /run/sshd
  ssh-keygen -q -t ed25519 -N '' -C "hostx.lab" -f "$sshd_dir/ssh_host_ed25519_key"
  : >"$sshd_dir/authorized_keys"
  cat >"$sshd_dir/sshd_config" <<EOF
ListenAddress 10.77.2.10:22
ListenAddress 127.0.0.1:22
HostKey $sshd_dir/ssh_host_ed25519_key
AuthorizedKeysFile $sshd_dir/authorized_keys
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
EOF
  service hostx hostx-sshd /usr/sbin/sshd -D -e -f "$sshd_dir/sshd_config"
  local log
  for log in target-ok-7000 target-ok-7001 target-bad-7000 ctl-probe relay-probe hostx-echo hostx-sshd; do
    wait_for_line "$STATE/$log.log" '^(listening|Server listening on 10\.77)'
  done
  echo "lab $P: services started; logs in $STATE; add keys to $sshd_dir/authorized_keys" >&2
}

cmd_up() {
  require_root
  command -v iptables-restore >/dev/null || die "needs iptables (apt-get install -y iptables)"
  [[ -z $(lab_namespaces) ]] && [[ ! -e $STATE ]] || die "lab $P already exists; run: LAB_ID=$ID $0 down"
  mkdir -p "$STATE_ROOT"
  # The state dir appears atomically with its owner, before any namespace, so gc never
  # mistakes a lab that is being built for a stale one.
  local tmp owner=manual
  tmp=$(mktemp -d "$STATE_ROOT/.new.XXXXXX")
  if [[ -n ${LAB_OWNER_PID:-} ]]; then owner=$(owner_of "$LAB_OWNER_PID") || die "no process $LAB_OWNER_PID"; fi
  echo "$owner" >"$tmp/owner"
  mv -T "$tmp" "$STATE" 2>/dev/null || { rm -rf "$tmp"; die "lab $P already exists"; }
  UP_DONE=0
  trap '[[ $UP_DONE == 1 ]] || { echo "lab: up failed, tearing down $P" >&2; cmd_down || true; }' EXIT
  build
  if [[ ${LAB_SERVICES:-1} != 0 ]]; then start_services; fi
  UP_DONE=1
  echo "lab $P is up" >&2
}

cmd_down() {
  require_root
  local n pids i
  local -a nss
  mapfile -t nss < <(lab_namespaces)
  for i in $(seq 1 50); do
    pids=$(for n in "${nss[@]}"; do ip netns pids "$n" 2>/dev/null || true; done)
    [[ -z $pids ]] && break
    # TERM first, KILL after about a second of polling.
    if [[ $i -lt 10 ]]; then kill -TERM $pids 2>/dev/null || true; else kill -KILL $pids 2>/dev/null || true; fi
    sleep 0.1
  done
  for n in "${nss[@]}"; do ip netns del "$n" 2>/dev/null || true; done
  # Nothing of ours should ever be in the root namespace; remove anything that is, by prefix only.
  for n in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^${P}" || true); do
    ip link del "$n" 2>/dev/null || true
  done
  rm -rf "$STATE"
  [[ -z $(lab_namespaces) ]] || die "namespaces with prefix $P remain: $(lab_namespaces | tr '\n' ' ')"
  if ip -o link show | awk -F': ' '{print $2}' | grep -qE "^${P}"; then die "links with prefix $P remain in the root namespace"; fi
}

# probe FROM ADDR PORT: exit 0 when a TCP connection opens within 2 s.
probe() { nsx "$1" timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$2" "$3" 2>/dev/null; }

cmd_check() {
  require_root
  local failed=0
  expect() {
    local want=$1 from=$2 addr=$3 port=$4 got=blocked
    if probe "$from" "$addr" "$port"; then got=reachable; fi
    if [[ $got == "$want" ]]; then echo "ok   $from -> $addr:$port $got"; else echo "FAIL $from -> $addr:$port $got (want $want)"; failed=1; fi
  }
  expect reachable hostx 10.77.0.2 7999
  expect reachable hosty 10.77.0.2 7999
  expect reachable hostx 10.77.0.10 7999
  expect reachable hosty 10.77.0.10 7999
  expect reachable relay 10.77.0.10 7999
  expect reachable ctl 10.77.0.2 7999
  expect reachable relay 10.77.1.10 7000
  expect reachable relay 10.77.1.20 7000
  expect reachable natx 10.77.2.10 22
  expect reachable natx 10.77.2.10 7100
  expect blocked hosty 10.77.2.10 22
  expect blocked hosty 10.77.2.10 7100
  expect blocked hosty 10.77.0.21 22
  expect blocked hostx 10.77.3.10 22
  expect blocked ctl 10.77.2.10 22
  expect blocked relay 10.77.2.10 22
  expect blocked ctl 10.77.3.10 22
  expect blocked relay 10.77.3.10 22
  expect blocked ctl 10.77.1.10 7000
  expect blocked hostx 10.77.1.10 7000
  expect blocked hosty 10.77.1.20 7000
  [[ $failed == 0 ]] || die "lab $P does not have its shape"
}

cmd_gc() {
  require_root
  local n id owner
  local -A stale=()
  for n in $(ip netns list | awk '{print $1}' | grep -E '^tl[a-z0-9]{4}-' || true); do
    id=${n:2:4}
    [[ -n ${stale[$id]:-} ]] && continue
    if [[ ! -r $STATE_ROOT/tl$id/owner ]]; then stale[$id]=1; continue; fi
    owner=$(<"$STATE_ROOT/tl$id/owner")
    [[ $owner == manual ]] && continue
    [[ $(owner_of "${owner%% *}" 2>/dev/null || true) == "$owner" ]] || stale[$id]=1
  done
  for n in "$STATE_ROOT"/tl*; do
    [[ -r $n/owner ]] || continue
    id=${n##*/tl}
    owner=$(<"$n/owner")
    [[ $owner == manual ]] && continue
    [[ $(owner_of "${owner%% *}" 2>/dev/null || true) == "$owner" ]] || stale[$id]=1
  done
  local rc=0
  for id in "${!stale[@]}"; do
    echo "lab: removing stale lab tl$id-" >&2
    (set_id "$id" && cmd_down) || rc=1
  done
  return "$rc"
}

cmd_list() {
  ip netns list | awk '{print $1}' | grep -E '^tl[a-z0-9]{4}-' | cut -c1-7 | sort -u || true
}

set_id "${LAB_ID:-main}"
case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  check) cmd_check ;;
  gc) cmd_gc ;;
  list) cmd_list ;;
  exec)
    [[ $# -ge 3 ]] || die "usage: lab.sh exec HOST CMD [ARG...]"
    host=$2; shift 2
    [[ " ${HOSTS[*]} " == *" $host "* ]] || die "unknown host '$host' (hosts: ${HOSTS[*]})"
    exec ip netns exec "$(ns "$host")" "$@"
    ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
