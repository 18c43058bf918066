#!/bin/sh
# Prepares a host for the Tunnel systemd services, after `npm install -g ./tunnel-*.tgz`.
#
#   sudo sh "$(npm root -g)/tunnel/infra/systemd/setup-host.sh" control node   # the Z host
#   sudo sh "$(npm root -g)/tunnel/infra/systemd/setup-host.sh" expose         # an X host
#   sh setup-host.sh --render DIR [--bin-dir DIR]   only write the units (with the paths of the
#                                                   installed binaries) to DIR, change nothing else
#
# What it does, for each part named (default: control node):
#   - control, node: users tunnel-control / tunnel-node (systemd-sysusers, tunnel.sysusers.conf),
#     /etc/tunnel and /etc/tunnel/tls (systemd-tmpfiles); expose alone: only /etc/tunnel;
#   - control: /etc/tunnel/master.key (tunnel-control gen-master-key, root only, mode 0600) and
#     /etc/tunnel/control.env; node: /etc/tunnel/node.env (existing files are never touched);
#   - the units in /etc/systemd/system, ExecStart pointing at the installed binaries, then
#     systemctl daemon-reload. It enables and starts nothing: edit the .env files first.
set -eu

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
render=""
bin_dir=""
parts=""
while [ $# -gt 0 ]; do
  case "$1" in
    --render) render=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    control|node|expose) parts="$parts $1"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "setup-host.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$parts" ] || parts=" control node"
[ -n "$render" ] && parts=" control node expose"

find_bin() {
  if [ -n "$bin_dir" ]; then p="$bin_dir/$1"; else p=$(command -v "$1" || true); fi
  if [ -z "$p" ] || [ ! -x "$p" ]; then
    echo "setup-host.sh: $1 not found${bin_dir:+ in $bin_dir}; install the package first: npm install -g ./tunnel-*.tgz" >&2
    exit 1
  fi
  # systemd wants an absolute path; npm's bin entries are symlinks into the package.
  case "$p" in /*) ;; *) p="$(pwd)/$p" ;; esac
  echo "$p"
}

# unit_file NAME BIN... : writes NAME with each /usr/local/bin/BIN replaced by the installed path.
install_unit() {
  unit=$1; shift
  dest_dir=${render:-/etc/systemd/system}
  mkdir -p "$dest_dir"
  script=""
  for b in "$@"; do
    path=$(find_bin "$b")
    script="$script s#/usr/local/bin/$b\\([ ]\\|\$\\)#$path\\1#g;"
  done
  sed "$script" "$here/$unit" > "$dest_dir/$unit.tmp"
  chmod 0644 "$dest_dir/$unit.tmp"
  mv "$dest_dir/$unit.tmp" "$dest_dir/$unit"
  echo "installed $dest_dir/$unit"
}

if [ -n "$render" ]; then
  for part in $parts; do
    case $part in
      control) install_unit tunnel-control.service tunnel-control ;;
      node) install_unit tunnel-node.service tunnel-node ;;
      expose) install_unit tunnel-expose@.service tunnel ;;
    esac
  done
  exit 0
fi

if [ "$(id -u)" != 0 ]; then echo "setup-host.sh: run it as root (it creates users and files in /etc)" >&2; exit 1; fi

# new_file PATH MODE OWNER: creates PATH from stdin unless it exists.
new_file() {
  if [ -e "$1" ]; then cat >/dev/null; echo "kept $1 (exists)"; return; fi
  umask 077; cat > "$1"; chmod "$2" "$1"; chown "$3" "$1"; echo "created $1"
}

case "$parts" in
  *control*|*node*)
    systemd-sysusers "$here/tunnel.sysusers.conf"
    systemd-tmpfiles --create "$here/tunnel.tmpfiles.conf" ;;
  # An X host runs only tunnel-expose@ (DynamicUser=): no service users, no TLS directory.
  *) mkdir -p /etc/tunnel && chmod 0755 /etc/tunnel ;;
esac

for part in $parts; do
  case $part in
    control)
      if [ -e /etc/tunnel/master.key ]; then echo "kept /etc/tunnel/master.key (exists)"
      else "$(find_bin tunnel-control)" gen-master-key /etc/tunnel/master.key; fi
      new_file /etc/tunnel/control.env 0640 root:tunnel-control <<'ENV'
# tunnel-control settings (tunnel-control --help lists them all).
TUNNEL_LISTEN=0.0.0.0:8443
TUNNEL_PUBLIC_URL=https://tunnel.example.com:8443
# TLS: a certificate from your CA (files readable by group tunnel-control, e.g. in /etc/tunnel/tls;
# systemctl reload tunnel-control after renewing) ...
#TUNNEL_TLS_CERT=/etc/tunnel/tls/fullchain.pem
#TUNNEL_TLS_KEY=/etc/tunnel/tls/privkey.pem
# ... or, with the embedded database, leave both unset: it makes its own certificate in
# /var/lib/tunnel-control/tls and logs its pin (journalctl -u tunnel-control | grep -A1 pin).
# Several replicas: one Postgres, the same master key and TLS files on every replica.
#DATABASE_URL=postgres://tunnel:PASSWORD@db.example.com/tunnel
ENV
      install_unit tunnel-control.service tunnel-control
      ;;
    node)
      new_file /etc/tunnel/node.env 0640 root:tunnel-node <<'ENV'
# tunnel-node settings (tunnel-node --help lists them all).
TUNNEL_CONTROL_URL=https://tunnel.example.com:8443
TUNNEL_LISTEN=0.0.0.0:2222
TUNNEL_ADVERTISE=relay.example.com:2222
# The control plane's certificate pin (printed by tunnel-control), unless it has a public CA's
# certificate; stored in /var/lib/tunnel-node at enrollment.
#TUNNEL_CA_PIN=sha256:...
# First start only: a token from `tunnel admin enroll-token NAME`; remove it after enrollment.
#TUNNEL_ENROLL_TOKEN=
ENV
      install_unit tunnel-node.service tunnel-node
      ;;
    expose)
      install_unit tunnel-expose@.service tunnel
      ;;
  esac
done
systemctl daemon-reload 2>/dev/null || echo "(systemctl daemon-reload failed: is systemd running?)"
case "$parts" in
  *control*|*node*) echo "next: edit /etc/tunnel/*.env, then systemctl enable --now the services (README: Installing on a server)" ;;
  *) echo "next: for each exposure NAME, write /etc/tunnel/NAME.token (mode 0600) and /etc/tunnel/expose-NAME.env, then systemctl enable --now tunnel-expose@NAME (docs/deploy.md step 6)" ;;
esac
