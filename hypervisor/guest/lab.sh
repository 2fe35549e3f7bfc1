#!/usr/bin/env bash
# A lab of libvirt nodes on one machine, for vjob's tests and measurements: each node is a
# network namespace (joined to the others by veth pairs on private 10.77.0.0/24 addresses that
# exist only inside the namespaces) with its own libvirtd, reachable from the root namespace at
# qemu+unix:///system?socket=DIR/NODE/sock/libvirt-sock and from its peers (live migration) at
# qemu+tcp://10.77.0.N/system. Guests run under TCG. Needs root.
#
#   lab.sh install            # the Debian packages (idempotent)
#   lab.sh up DIR N           # N nodes (node1..nodeN) under DIR
#   lab.sh down DIR           # stop the daemons, delete the namespaces and DIR
#   lab.sh node-stop DIR NODE # stop one node's libvirtd (its guests go on running), as a failure
#   lab.sh node-start DIR NODE  # start it again: it finds its guests
#   lab.sh node-poweroff DIR NODE  # pull its plug: every process of the node (libvirtd, its
#                                  # guests' QEMU) killed at once, as a power command would
set -euo pipefail

install() {
  if command -v libvirtd >/dev/null && command -v qemu-system-x86_64 >/dev/null && command -v tini >/dev/null \
     && command -v qemu-img >/dev/null && command -v mke2fs >/dev/null \
     && [ -x /bin/busybox ] && pkg-config --exists libvirt 2>/dev/null; then
    return 0
  fi
  apt-get update -qq
  local utils
  utils=$(qemu_utils_package)
  # --allow-downgrades: a qemu-utils newer than the QEMU that apt can install (from a backports
  # repository no longer listed) is replaced by the one of QEMU's own version.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --allow-downgrades \
    libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 libvirt-clients libvirt-dev \
    pkg-config busybox-static tini iproute2 util-linux "$utils" e2fsprogs >/dev/null
}

# qemu-utils and qemu-system-x86 are built from one source and refuse to sit beside each other
# at different versions (qemu-utils 8+ breaks qemu-system-common 7.x). Prints the qemu-utils to
# install: the version of the QEMU that is installed (or would be), when apt has that version
# and another is installed; plain `qemu-utils` otherwise.
qemu_utils_package() {
  local system utils
  if dpkg-query -W -f='${Status}' qemu-system-x86 2>/dev/null | grep -q 'ok installed'; then
    system=$(dpkg-query -W -f='${Version}' qemu-system-x86)
  else
    system=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
  fi
  utils=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
  if [ -n "$system" ] && [ "$system" != "(none)" ] && [ -n "$utils" ] && [ "$utils" != "$system" ] \
     && apt-cache madison qemu-utils | awk -F'|' '{gsub(/ /, "", $2); print $2}' | grep -qxF "$system"; then
    echo "qemu-utils=$system"
  else
    echo qemu-utils
  fi
}

node_up() { # DIR NAME IP
  local dir=$1 name=$2 ip=$3 ns=vjob-$2
  local n=$dir/$name
  mkdir -p "$n"/{run,lib,log,cache,sock}
  rm -rf "$n/etc" && cp -a /etc/libvirt "$n/etc"
  cat >> "$n/etc/libvirtd.conf" <<CONF
listen_tls = 0
listen_tcp = 1
listen_addr = "$ip"
auth_tcp = "none"
auth_unix_rw = "none"
unix_sock_dir = "$n/sock"
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
CONF
  cat >> "$n/etc/qemu.conf" <<CONF
stdio_handler = "file"
cgroup_controllers = [ ]
migration_address = "$ip"
migration_host = "$ip"
remember_owner = 0
user = "root"
group = "root"
dynamic_ownership = 0
CONF
  mkdir -p "$n"/lib/qemu/{save,snapshot,dump,channel/target,nvram,ram}
  # Started by PID with nsenter --net (not ip netns exec, which hides the cgroup mounts), in a
  # mount namespace of its own where the libvirt directories are the node's.
  nsenter --net=/run/netns/"$ns" unshare --mount --uts sh -c "
    hostname $name
    mount --bind $n/etc /etc/libvirt
    mount --bind $n/run /run/libvirt
    mount --bind $n/lib /var/lib/libvirt
    mount --bind $n/log /var/log/libvirt
    mount --bind $n/cache /var/cache/libvirt
    exec tini -s -- libvirtd --listen --pid-file $n/libvirtd.pid" >"$n/libvirtd.log" 2>&1 &
  echo $! > "$n/tini.pid"
  local uri="qemu+unix:///system?socket=$n/sock/libvirt-sock"
  for _ in $(seq 300); do
    virsh -c "$uri" version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "lab.sh: libvirtd of $name did not answer; see $n/libvirtd.log" >&2
  return 1
}

up() { # DIR N
  local dir=$1 count=$2
  [ "$(id -u)" = 0 ] || { echo "lab.sh: needs root" >&2; exit 1; }
  mkdir -p "$dir"
  # Without this, libvirt probes QEMU again on every start and restore.
  if [ -e /dev/kvm ]; then chgrp kvm /dev/kvm 2>/dev/null || true; chmod 0660 /dev/kvm || true; fi
  # Leftovers of an interrupted run would make the namespaces clash.
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^vjob-node' || true); do
    ip netns delete "$ns" || true
  done
  for i in $(seq "$count"); do
    ip netns add "vjob-node$i"
    ip -n "vjob-node$i" link set lo up
  done
  # A full mesh of veth pairs between the namespaces, one private address per node.
  for i in $(seq "$count"); do
    for j in $(seq $((i + 1)) "$count"); do
      ip link add "vj$i-$j" netns "vjob-node$i" type veth peer name "vj$j-$i" netns "vjob-node$j"
      ip -n "vjob-node$i" addr add "10.77.0.$i/32" dev "vj$i-$j"
      ip -n "vjob-node$j" addr add "10.77.0.$j/32" dev "vj$j-$i"
      ip -n "vjob-node$i" link set "vj$i-$j" up
      ip -n "vjob-node$j" link set "vj$j-$i" up
      ip -n "vjob-node$i" route add "10.77.0.$j/32" dev "vj$i-$j"
      ip -n "vjob-node$j" route add "10.77.0.$i/32" dev "vj$j-$i"
    done
  done
  for i in $(seq "$count"); do
    node_up "$dir" "node$i" "10.77.0.$i"
  done
  echo "$count" > "$dir/nodes"
}

down() { # DIR
  local dir=$1
  for n in "$dir"/node*; do
    [ -d "$n" ] || continue
    for f in "$n/libvirtd.pid" "$n/tini.pid"; do
      [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
  done
  sleep 0.5
  # QEMU processes of the lab's guests (their paths are under DIR).
  pkill -f "qemu-system-x86_64.*$dir" 2>/dev/null || true
  for n in "$dir"/node*; do
    [ -d "$n" ] || continue
    for f in "$n/libvirtd.pid" "$n/tini.pid"; do
      [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true
    done
  done
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^vjob-node' || true); do
    ip netns delete "$ns" || true
  done
  rm -rf "$dir"
}

node_stop() { # DIR NAME
  local n=$1/$2
  [ -f "$n/tini.pid" ] || { echo "lab.sh: no node $2 in $1" >&2; exit 1; }
  kill "$(cat "$n/tini.pid")" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$(cat "$n/tini.pid")" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$(cat "$n/tini.pid")" 2>/dev/null || true
}

node_poweroff() { # DIR NAME
  local n=$1/$2 ns=vjob-$2 pids
  [ -d "$n" ] || { echo "lab.sh: no node $2 in $1" >&2; exit 1; }
  # Every process of the node lives in its network namespace.
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  for _ in $(seq 100); do
    [ -z "$(ip netns pids "$ns" 2>/dev/null || true)" ] && return 0
    sleep 0.1
  done
  echo "lab.sh: processes of $2 survived kill -9: $(ip netns pids "$ns")" >&2
  return 1
}

node_start() { # DIR NAME
  local name=$2
  node_up "$1" "$name" "10.77.0.${name#node}"
}

case "${1:-}" in
  install) install ;;
  up) up "${2:?DIR}" "${3:-2}" ;;
  down) down "${2:?DIR}" ;;
  node-stop) node_stop "${2:?DIR}" "${3:?NODE}" ;;
  node-start) node_start "${2:?DIR}" "${3:?NODE}" ;;
  node-poweroff) node_poweroff "${2:?DIR}" "${3:?NODE}" ;;
  *) echo "usage: lab.sh install | up DIR N | down DIR | node-stop DIR NODE | node-start DIR NODE | node-poweroff DIR NODE" >&2; exit 2 ;;
esac
