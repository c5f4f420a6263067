#!/usr/bin/env bash
# A real multi-node Docker Swarm on this machine (Linux only, as root; Debian's packages):
# test hosts are network namespaces on a bridge of our own, each with its own Docker Engine and
# hostname; a GCS emulator host; Debian's docker-registry on the manager's host, which every
# engine pulls the project's images from; one Swarm; the stack's secrets and each serving
# host's own node token file; `docker stack deploy -c stack.yml`.
#
#   bash scripts/cluster.sh up          # idempotent: builds, creates and deploys what is missing
#   bash scripts/cluster.sh down        # removes everything up made; then `check-clean`
#   bash scripts/cluster.sh status | check-clean | info
#   bash scripts/cluster.sh host-add N | host-remove N      # a host ms-hN joins / leaves
#   bash scripts/cluster.sh engine-kill N | engine-start N  # every process of ms-hN SIGKILLed
#   bash scripts/cluster.sh link-cut N | link-heal N        # the manager <-> ms-hN path dropped
#   bash scripts/cluster.sh image-push LOCAL REGISTRY/NAME:TAG  # an image of this machine's
#                                           engine into the cluster's registry (plain HTTP)
#
# Addresses: RFC 2544's benchmarking range, never a private range of a real network. The bridge
# ms-br0 is 198.18.0.1, host ms-hN is 198.18.0.1N (ms-h1 is the manager), the GCS emulator is
# 198.18.0.20; Swarm's overlay pool is 198.19.0.0/16. Every name starts with ms- or
# modelsync-cluster, so `down` touches nothing else (the machine's own engine is only used to
# build the images).
set -euo pipefail
cd "$(dirname "$0")/.."

NET=198.18.0
BRIDGE=ms-br0
HOSTS=${CLUSTER_HOSTS:-4}              # ms-h1 (manager) .. ms-hN (workers)
STATE=/run/modelsync-cluster           # pid files, cluster.env (tokens: mode 600)
DATA=/var/lib/modelsync-cluster        # engines' data roots, registry storage, logs
# Each serving host's own node token, "a file on that node" (stack.yml): the hosts share this
# machine's filesystem, so each has its own directory, named by its Swarm node ID, and the
# stack's bind mount finds it through Swarm's template ({{.Node.ID}}, expanded on the node).
NODE_TOKENS=$DATA/node-tokens
NODE_TOKEN_PATH="$NODE_TOKENS/{{.Node.ID}}/node_token"
STACK=modelsync
BUCKET=cluster
REGISTRY=$NET.11:5000
BROKER_URL=redis://$NET.11:6379/0      # the jobs' broker: on the manager, as every worker reaches it
GCS_NS=ms-gcs
GCS_URL=http://$NET.20:4443
BUILD_IMAGE=${CLUSTER_BUILD_IMAGE:-modelsync-cluster:dev}  # tag on the machine's own engine
IMAGE=$REGISTRY/modelsync:dev
PY=.venv/bin/python

log() { echo "[cluster] $*" >&2; }
die() { log "error: $*"; exit 1; }
addr() { echo "$NET.1$1"; }                      # ms-hN's address
sock() { echo "unix:///run/ms-h$1.sock"; }
dk() { local n=$1; shift; docker -H "$(sock "$n")" "$@"; }
in_ns() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }

TIMINGS=()
step() {  # step NAME CMD...: runs CMD and records how long it took
  local name=$1 t0; shift
  t0=$(date +%s.%N)
  "$@"
  local s; s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
  TIMINGS+=("$name ${s}s")
  log "step $name: ${s} s"
}

wait_until() {  # wait_until SECONDS WHAT CMD...: bounded poll, 0.5 s apart
  local limit=$1 what=$2 i; shift 2
  for ((i = 0; i < limit * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  die "$what: not within $limit s"
}

preflight() {
  [ "$(uname -s)" = Linux ] || die "Linux only (network namespaces, one dockerd per namespace)"
  [ "$(id -u)" = 0 ] || die "run as root (namespaces, bridges, dockerd)"
  [ -x "$PY" ] || die "$PY missing: run 'make venv' first"
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v nsenter >/dev/null || missing+=(util-linux)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v curl >/dev/null || missing+=(curl)
  command -v skopeo >/dev/null || missing+=(skopeo)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
  fi
}

# ---- network: the bridge, one namespace + veth per host ----------------------------------

net_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$NET.1/24" dev "$BRIDGE"
  fi
  ip link set "$BRIDGE" up
}

net_host() {  # net_host NAMESPACE ADDRESS
  local ns=$1 ip=$2 veth="$1-v"
  [ -e "/run/netns/$ns" ] || ip netns add "$ns"
  if ! ip link show "$veth" >/dev/null 2>&1; then
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE" up
  fi
  local have; have=$(ip -n "$ns" -4 -o addr show dev eth0)  # (grep -q in a pipe: SIGPIPE)
  [[ $have == *"inet $ip/"* ]] || ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
}

# ---- daemons started in a namespace, stopped by their pid files ---------------------------

start_in_ns() {  # start_in_ns NS NAME CMD...: detached, logs to $DATA/logs/NAME.log
  local ns=$1 name=$2; shift 2
  mkdir -p "$DATA/logs" "$STATE"
  setsid nsenter --net="/run/netns/$ns" "$@" >>"$DATA/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/$name.pid"
}

alive() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

gcs_up() {
  net_host "$GCS_NS" "$NET.20"
  if ! alive gcs; then
    local bin
    bin=$("$PY" -c 'from modelsync.dev.emulator import emulator_binary; print(emulator_binary())')
    start_in_ns "$GCS_NS" gcs "$bin" -scheme http -host "$NET.20" -port 4443 -backend memory \
      -public-host "$NET.20:4443" -external-url "$GCS_URL" -log-level warn
  fi
  wait_until 30 "GCS emulator at $GCS_URL" curl -fsS "$GCS_URL/storage/v1/b"
  curl -fsS "$GCS_URL/storage/v1/b/$BUCKET" >/dev/null 2>&1 \
    || curl -fsS -X POST -H 'Content-Type: application/json' -d "{\"name\": \"$BUCKET\"}" \
      "$GCS_URL/storage/v1/b" >/dev/null
}

registry_up() {  # Debian's docker-registry on the manager's host, no auth, plain HTTP
  mkdir -p "$DATA/registry/data"
  cat >"$DATA/registry/config.yml" <<EOF
version: 0.1
log: {level: warn, fields: {service: registry}}
storage:
  filesystem: {rootdirectory: $DATA/registry/data}
  delete: {enabled: true}
http:
  addr: $REGISTRY
EOF
  alive registry || start_in_ns ms-h1 registry docker-registry serve "$DATA/registry/config.yml"
  wait_until 30 "registry at $REGISTRY" curl -fsS "http://$REGISTRY/v2/"
}

engine_up() {  # engine_up N: ms-hN's dockerd, in its own network and UTS namespaces
  local n=$1 h="ms-h$1"
  net_host "$h" "$(addr "$n")"
  if ! dk "$n" info >/dev/null 2>&1; then
    [ -f "$STATE/$h.pid" ] && kill -0 "$(cat "$STATE/$h.pid")" 2>/dev/null \
      && die "$h: dockerd runs but does not answer on $(sock "$n")"
    rm -f "/run/ms-h$n.sock" "$STATE/$h.pid"
    mkdir -p "$DATA/$h"
    # NOT `ip netns exec`: it remounts /sys and dockerd fails ("Devices cgroup isn't mounted").
    # The stack's services use the host network; container models (Swarm services publishing
    # a host port, mode host, on no network of their own) need the engine's default bridge
    # (docker0, inside the host's namespace) and, with no iptables, docker-proxy forwarding
    # the host port to the container: the engine's defaults, so neither is turned off.
    start_in_ns "$h" "$h" unshare --uts sh -c "hostname $h; exec dockerd \
      --data-root $DATA/$h --exec-root /run/$h -H $(sock "$n") --pidfile $STATE/$h.dockerd.pid \
      --iptables=false --ip6tables=false \
      --cgroup-parent /modelsync-cluster/$h \
      --default-address-pool base=198.19.128.0/17,size=24 --insecure-registry $REGISTRY"
  fi
}

engines_up() {
  local n
  for n in $(seq 1 "$HOSTS"); do engine_up "$n"; done
  for n in $(seq 1 "$HOSTS"); do engine_wait "$n"; done
}

engine_wait() { wait_until 90 "ms-h$1's engine" dk "$1" info; }

swarm_state() { dk "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo down; }

swarm_join() {  # swarm_join N: ms-hN joins as a worker, gets its node token, then the label
  local n=$1
  if [ "$(swarm_state "$n")" != active ]; then
    local token
    token=$(dk 1 swarm join-token -q worker)
    dk "$n" swarm join --advertise-addr "$(addr "$n")" --listen-addr "$(addr "$n"):2377" \
      --token "$token" "$(addr 1):2377" >/dev/null
  fi
  wait_until 60 "ms-h$n Ready in the Swarm" \
    sh -c "docker -H $(sock 1) node ls --format '{{.Hostname}} {{.Status}}' | grep -qx 'ms-h$n Ready'"
  node_token_file "$n"  # before the label: the serving tasks mount it as they start
  dk 1 node update --label-add modelsync.serving=true "ms-h$n" >/dev/null
}

node_token_file() {  # node_token_file N: ms-hN's own token, from the master's node secret
  local n=$1 id dir
  tokens
  id=$(dk "$n" info --format '{{.Swarm.NodeID}}')
  [ -n "$id" ] || die "ms-h$n has no Swarm node ID"
  dir="$NODE_TOKENS/$id"
  mkdir -p "$dir"
  # as on a real node: root's, readable by the image's group (10001) only
  MODELSYNC_NODE_SECRET="$NODE_SECRET" "$(dirname "$PY")/modelsync" node-token "$id" \
    | install -m 0440 -o root -g 10001 /dev/stdin "$dir/node_token"
}

swarm_up() {
  if [ "$(swarm_state 1)" != active ]; then
    dk 1 swarm init --advertise-addr "$(addr 1)" --listen-addr "$(addr 1):2377" \
      --default-addr-pool 198.19.0.0/16 --default-addr-pool-mask-length 24 >/dev/null
  fi
  local n
  for n in $(seq 2 "$HOSTS"); do swarm_join "$n"; done
}

# ---- images: built on this machine's engine, pushed to the registry, pulled by every engine --

images_build() {
  MODELSYNC_IMAGE="$BUILD_IMAGE" bash scripts/build-images.sh >/dev/null
}

images_push() { image_push "$BUILD_IMAGE" "$IMAGE"; }

image_push() {  # image_push LOCAL REMOTE: LOCAL (this machine's engine) as REMOTE ($REGISTRY/…)
  # skopeo (Debian) reads the image from this machine's engine and pushes it, compressing on
  # every core: 50 s where a load into the manager's engine and a push from there took 150 s
  # (and the machine's engine is not ours to reconfigure for a plain-HTTP registry).
  local local_image=$1 remote=$2 want have repo
  [[ $remote == "$REGISTRY/"*:* ]] || die "image-push: $remote is not $REGISTRY/NAME:TAG"
  repo=${remote#*/}
  want=$(docker image inspect -f '{{.Id}}' "$local_image")
  have=$(curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REGISTRY/v2/${repo%:*}/manifests/${repo##*:}" 2>/dev/null | tr -d ' \n' | grep -o '"config":{[^}]*' \
    | grep -o 'sha256:[0-9a-f]*' || true)
  [ "$want" = "$have" ] && { log "registry has $remote ($want)"; return 0; }
  # skopeo's blob cache (which layers the registry has: a rebuilt image pushes only its new
  # layers) lives in /var/lib/containers; when this made it, `down` removes it
  [ -e /var/lib/containers ] || touch "$STATE/skopeo-cache.ours"
  skopeo copy -q --dest-tls-verify=false "docker-daemon:$local_image" "docker://$remote"
}

images_pull() {  # every other engine pulls from the registry, all at once (as a deploy would)
  local n pids=()
  for n in "$@"; do dk "$n" pull -q "$IMAGE" >/dev/null & pids+=($!); done
  for n in "${pids[@]}"; do wait "$n"; done
}

# ---- the stack -------------------------------------------------------------------------------

SECRETS=(admin_token read_token node_secret gateway_token session_key broker_password)

tokens() {  # random values of the stack's secrets, made once (any missing one is added)
  mkdir -p "$STATE"
  touch "$STATE/tokens.env"
  chmod 600 "$STATE/tokens.env"
  local name var
  for name in "${SECRETS[@]}"; do
    var=${name^^}
    # shellcheck disable=SC1091
    . "$STATE/tokens.env"
    # the session key signs cookies: at least 32 characters; the rest at least 16
    [ -n "${!var:-}" ] || echo "$var=$(openssl rand -hex "$([ "$name" = session_key ] && echo 32 || echo 24)")" \
      >>"$STATE/tokens.env"
  done
  # shellcheck disable=SC1091
  . "$STATE/tokens.env"
}

secrets_up() {
  tokens
  local name value var
  for name in "${SECRETS[@]}" gcs_credentials; do
    if [ "$name" = gcs_credentials ]; then value='{}'; else var=${name^^}; value=${!var}; fi
    dk 1 secret inspect "${STACK}_$name" >/dev/null 2>&1 \
      || printf '%s' "$value" | dk 1 secret create "${STACK}_$name" - >/dev/null
  done
}

deploy() {
  # the unmodified stack.yml; what differs from a one-node Swarm is only in these variables
  env MODELSYNC_BUCKET="$BUCKET" STORAGE_EMULATOR_HOST="$GCS_URL" \
    MODELSYNC_MASTER_URL="http://$(addr 1):8000" MODELSYNC_BROKER_URL="$BROKER_URL" \
    MODELSYNC_NODE_TOKEN_PATH="$NODE_TOKEN_PATH" \
    MODELSYNC_DOCKER_SOCKET=/run/ms-h1.sock MODELSYNC_DOCKER_GID="$(stat -c %g /run/ms-h1.sock)" \
    MODELSYNC_IMAGE="$IMAGE" TFSERVING_IMAGE="$IMAGE" TFS_MEMORY=2G \
    MODELSYNC_POLL_S=2 MODELSYNC_CATALOG_S=2 MODELSYNC_HEARTBEAT_S=3 \
    MODELSYNC_CONTAINER_READY_S=60 \
    docker -H "$(sock 1)" stack deploy --prune -c stack.yml "$STACK" >/dev/null
}

write_env() {  # what the tests and the benchmark read: python -m modelsync.dev.cluster
  tokens
  local hosts
  hosts=$(ip netns list | awk '{print $1}' | grep -E '^ms-h[0-9]+$' | sort -V | tr '\n' ' ')
  umask 077
  cat >"$STATE/cluster.env" <<EOF
STACK=$STACK
NET=$NET
HOSTS="${hosts% }"
MANAGER=ms-h1
BUCKET=$BUCKET
PREFIX=models
GCS_URL=$GCS_URL
GCS_VETH=$GCS_NS-v
MASTER_URL=http://$(addr 1):8000
REGISTRY=$REGISTRY
IMAGE=$IMAGE
BROKER_URL=$BROKER_URL
NODE_TOKENS=$NODE_TOKENS
ADMIN_TOKEN=$ADMIN_TOKEN
READ_TOKEN=$READ_TOKEN
GATEWAY_TOKEN=$GATEWAY_TOKEN
NODE_SECRET=$NODE_SECRET
EOF
}

ready() { "$PY" -m modelsync.dev.cluster wait-ready --timeout 600; }

summary() {
  local n
  log "cluster up: Swarm of $HOSTS engines, stack '$STACK' (stack.yml), bucket gs://$BUCKET"
  for n in $(seq 1 "$HOSTS"); do
    log "  ms-h$n  $(addr "$n")  $([ "$n" = 1 ] && echo 'manager: master, jobs broker, registry' || echo 'worker: TF Serving :8500/:8501, gateway :8080, jobs worker')"
  done
  log "  $GCS_NS $NET.20  GCS emulator $GCS_URL"
  log "tokens:   . $STATE/tokens.env   (\$ADMIN_TOKEN for the console, \$GATEWAY_TOKEN for scoring)"
  log "console:  http://$(addr 1):8000/"
  log "gateway:  curl -H \"Authorization: Bearer \$GATEWAY_TOKEN\" -d '{\"inputs\": {\"x\": [1.0]}}' http://$(addr 2):8080/model/MODEL/invocations"
  log "docker:   docker -H $(sock 1) node ls   (ms-hN: $(sock N))"
  log "timings:  ${TIMINGS[*]}"
}

up() {
  local t0=$SECONDS n
  step preflight preflight
  mkdir -p "$STATE"
  # the build runs on this machine's engine while the hosts start
  (step build images_build 2>&1 | tee "$STATE/build.log" >&2) &
  local build=$!
  step network net_bridge
  step engines engines_up
  step gcs gcs_up
  step registry registry_up
  step swarm swarm_up
  wait "$build" || die "image build failed"
  TIMINGS+=("$(grep -o 'step build: .*' "$STATE/build.log" | sed 's/step build: /build /; s/ s$/s/')")
  step push images_push
  step pull images_pull $(seq 1 "$HOSTS")
  step secrets secrets_up
  step deploy deploy
  write_env
  step ready ready
  TIMINGS+=("total $((SECONDS - t0))s")
  summary
}

# ---- faults and joins (used by tests/e2e_cluster and bench/cluster.py) -----------------------

host_add() {  # a new host ms-hN joins as a serving worker (what an operator does on day two)
  local n=$1
  engine_up "$n"
  engine_wait "$n"
  swarm_join "$n"
  write_env
}

host_remove() {
  local n=$1 id
  if dk "$n" info >/dev/null 2>&1; then
    id=$(dk "$n" info --format '{{.Swarm.NodeID}}')
    [ -z "$id" ] || rm -rf "${NODE_TOKENS:?}/$id"
    dk "$n" swarm leave --force >/dev/null 2>&1 || true
  fi
  engine_stop "ms-h$n"
  host_clean "ms-h$n"
  if dk 1 node inspect "ms-h$n" >/dev/null 2>&1; then
    wait_until 60 "ms-h$n Down" sh -c "docker -H $(sock 1) node inspect -f '{{.Status.State}}' ms-h$n | grep -qx down"
    dk 1 node rm --force "ms-h$n" >/dev/null
  fi
  write_env
}

engine_kill() {  # a host crash: every process in ms-hN's namespace (engine, containers) SIGKILLed
  local h="ms-h$1" pids
  pids=$(ip netns pids "$h" 2>/dev/null || true)
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
  wait_until 30 "$h's processes gone" sh -c "[ -z \"\$(ip netns pids $h)\" ]"
}

link() {  # link cut|heal N: drop every packet between the manager and ms-hN (iptables in ms-h1)
  local op=$1 ip; ip=$(addr "$2")
  local rule
  for rule in "INPUT -s $ip" "OUTPUT -d $ip"; do
    # shellcheck disable=SC2086
    if in_ns ms-h1 iptables -C $rule -j DROP 2>/dev/null; then
      [ "$op" = heal ] && in_ns ms-h1 iptables -D $rule -j DROP
    else
      [ "$op" = cut ] && in_ns ms-h1 iptables -A $rule -j DROP
    fi
  done
  return 0
}

# ---- down: everything up made, and nothing else ----------------------------------------------

engine_stop() {  # SIGTERM dockerd (it stops its containers), then SIGKILL whatever is left
  local h=$1 pid
  pid=$(cat "$STATE/$h.dockerd.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  local left; left=$(ip netns pids "$h" 2>/dev/null || true)
  [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
  rm -f "$STATE/$h.pid" "$STATE/$h.dockerd.pid"
}

our_mounts() {  # mounts under our paths, deepest first
  awk '{print $5}' /proc/self/mountinfo \
    | grep -E "^($DATA|/run/ms-h[0-9]+|/run/netns/ms-)(/|$)" | sort -r || true
}

host_clean() {  # host_clean NS: its mounts, cgroups, namespace, veth and data
  local ns=$1 m
  for m in $(our_mounts | grep -E "^($DATA/$ns|/run/$ns)(/|$)" || true); do umount -l "$m" || true; done
  rmdir_cgroups "$ns"
  [ -e "/run/netns/$ns" ] && ip netns del "$ns"
  ip link del "$ns-v" 2>/dev/null || true
  rm -rf "${DATA:?}/$ns" "/run/$ns" "/run/$ns.sock"
}

rmdir_cgroups() {  # the containers' cgroups (--cgroup-parent /modelsync-cluster/NS), deepest first
  local d
  for d in $(find /sys/fs/cgroup -depth -type d -path "*/modelsync-cluster/$1*" 2>/dev/null); do
    rmdir "$d" 2>/dev/null || true
  done
  for d in /sys/fs/cgroup/*/modelsync-cluster /sys/fs/cgroup/modelsync-cluster; do
    [ -d "$d" ] && rmdir "$d" 2>/dev/null || true
  done
  return 0
}

down() {
  local t0=$SECONDS ns left pids=()
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^ms-h[0-9]+$' || true); do
    engine_stop "$ns" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  log "engines stopped in $((SECONDS - t0)) s"
  for name in registry gcs; do
    [ -f "$STATE/$name.pid" ] && kill -TERM "$(cat "$STATE/$name.pid")" 2>/dev/null || true
  done
  pids=()
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^ms-' || true); do
    left=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
    host_clean "$ns" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  local m
  for m in $(our_mounts); do umount -l "$m" || true; done
  rmdir_cgroups ""
  ip link del "$BRIDGE" 2>/dev/null || true
  [ ! -f "$STATE/skopeo-cache.ours" ] || rm -rf /var/lib/containers
  rm -rf "${DATA:?}" "${STATE:?}"
  rm -f /run/ms-h[0-9]*.sock
  log "down in $((SECONDS - t0)) s"
  check_clean
}

check_clean() {  # exit 1 and say what is left, if anything
  local left=()
  [ -z "$(ip netns list 2>/dev/null | grep -E '^ms-' || true)" ] || left+=("namespaces: $(ip netns list | grep -E '^ms-' | awk '{print $1}' | tr '\n' ' ')")
  [ -z "$(ip -o link show 2>/dev/null | grep -E ': ms-' || true)" ] || left+=("links: $(ip -o link show | grep -E ': ms-' | awk -F': ' '{print $2}' | tr '\n' ' ')")
  [ -z "$(our_mounts)" ] || left+=("mounts: $(our_mounts | tr '\n' ' ')")
  [ ! -e "$DATA" ] || left+=("data: $DATA")
  [ ! -e "$STATE" ] || left+=("state: $STATE")
  ls /run/ms-h[0-9]*.sock >/dev/null 2>&1 && left+=("sockets: $(ls /run/ms-h[0-9]*.sock | tr '\n' ' ')")
  ls -d /run/ms-h[0-9]* >/dev/null 2>&1 && left+=("exec roots: $(ls -d /run/ms-h[0-9]* | tr '\n' ' ')")
  [ -z "$(find /sys/fs/cgroup -maxdepth 2 -name modelsync-cluster 2>/dev/null)" ] || left+=("cgroups")
  local procs
  procs=$(pgrep -f "dockerd .*--data-root $DATA|docker-registry serve $DATA|-external-url $GCS_URL" || true)
  [ -z "$procs" ] || left+=("processes: $procs")
  if [ ${#left[@]} -gt 0 ]; then
    log "LEFT BEHIND: ${left[*]}"
    return 1
  fi
  log "clean: no engine, namespace, bridge, veth, mount, cgroup, socket or data of the cluster"
}

status() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^ms-' | sort -V || true); do
    log "$ns: $(ip -n "$ns" -4 -o addr show dev eth0 | awk '{print $4}'), $(ip netns pids "$ns" | wc -l) processes"
  done
  if dk 1 info >/dev/null 2>&1; then dk 1 node ls; dk 1 stack services "$STACK" 2>/dev/null || true; fi
}

cmd=${1:-}
case $cmd in
  up) up ;;
  down) down ;;
  status) status ;;
  check-clean) check_clean ;;
  info) cat "$STATE/cluster.env" ;;
  host-add) host_add "${2:?host number}" ;;
  host-remove) host_remove "${2:?host number}" ;;
  engine-kill) engine_kill "${2:?host number}" ;;
  engine-start) engine_up "${2:?host number}"; engine_wait "$2" ;;
  link-cut) link cut "${2:?host number}" ;;
  link-heal) link heal "${2:?host number}" ;;
  image-push) image_push "${2:?local image}" "${3:?$REGISTRY/NAME:TAG}" ;;
  _fn) shift; "$@" ;;  # one step alone, for debugging: _fn FUNCTION ARGS
  *) sed -n '2,22p' "$0" >&2; exit 2 ;;
esac
