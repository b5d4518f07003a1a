#!/usr/bin/env bash
# `make docker-smoke`: build the CPU image here, run it, search and ingest against it, stop it;
# then docker/compose-smoke.sh validates docker-compose.yml and runs each of its services once.
#
# Works without any registry: when debian:bookworm-slim cannot be had, docker/make-base.sh
# makes the base image with debootstrap; the Python wheels (and the demo's Twemoji tarball)
# come from docker/wheelhouse (docker/wheelhouse.sh, from this machine's pip sources and npm).
# Traffic goes only to 127.0.0.1.
#
# Environment: XMR_BASE_IMAGE (skip the base detection), XMR_PIP_NO_INDEX=0 (let pip inside
# the build use PyPI instead of the wheelhouse), SMOKE_NO_CACHE=1 (docker build --no-cache),
# SMOKE_THREADS=N (OMP_NUM_THREADS of the training and indexing in the demo bake and the
# compose jobs; default 1, leaving the other cores to other work), SMOKE_SKIP_COMPOSE=1,
# SMOKE_RESULTS=FILE (figures and answers as JSON, default artifacts/docker-smoke.json; with
# .venv present, the report beside it as FILE.md through bench/report.py).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${XMR_IMAGE:-xmr:cpu}
DEMO_IMAGE=${IMAGE}-demo
API_KEY=smoke-$RANDOM$RANDOM
NAME=xmr-smoke-$$
RESULTS=${SMOKE_RESULTS:-artifacts/docker-smoke.json}
PY=python3
THREADS=${SMOKE_THREADS:-1}
PARTS=$(mktemp -d)   # each stage's figures and answers, merged into $RESULTS at the end
trap 'rm -rf "$PARTS"' EXIT

log() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# --- the engine ---------------------------------------------------------------------------
# Started here only when none answers and this runs as root, with settings that work inside a
# VM or container as well: no bridge and no iptables rules (the containers use the host's
# network, see below). dockerd first picks its own storage driver (overlay2 where the kernel
# has overlayfs); when that engine does not come up, it is restarted on vfs, which needs
# nothing from the kernel but copies every layer in full. The engine runs at nice 10, and so
# do the builds and containers it starts: the smoke shares the machine.
start_dockerd() {  # start_dockerd [dockerd args...]; true once `docker info` answers
  log "starting dockerd --iptables=false --bridge=none $* (log: $DOCKERD_LOG)"
  nohup nice -n 10 dockerd --iptables=false --bridge=none "$@" >>"$DOCKERD_LOG" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && return 0
    kill -0 "$DOCKERD_PID" 2>/dev/null || return 1
    sleep 1
  done
  kill "$DOCKERD_PID" 2>/dev/null; wait "$DOCKERD_PID" 2>/dev/null; return 1
}
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null; then
    DOCKERD_LOG=${TMPDIR:-/tmp}/dockerd.log
    start_dockerd || start_dockerd --storage-driver=vfs || true
  fi
  docker info >/dev/null 2>&1 || fail "no Docker engine (apt-get install docker.io; start dockerd)"
fi
# On an engine without its default bridge, `docker run` has no network to publish a port from:
# the container then shares the host's network, the service listening on 127.0.0.1 only.
if docker network inspect bridge >/dev/null 2>&1; then HOST_NETWORK=0; else HOST_NETWORK=1; fi
export HOST_NETWORK

# --- the base image -----------------------------------------------------------------------
BASE=${XMR_BASE_IMAGE:-}
if [ -z "$BASE" ]; then
  if docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
     || timeout 120 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    BASE=debian:bookworm-slim
  else
    log "debian:bookworm-slim cannot be pulled: the base image comes from docker/make-base.sh (debootstrap)"
    docker/make-base.sh xmr-base:bookworm
    BASE=xmr-base:bookworm
  fi
fi
echo "base image: $BASE"

# --- the wheels ---------------------------------------------------------------------------
NO_INDEX=${XMR_PIP_NO_INDEX:-1}
if [ "$NO_INDEX" = 1 ]; then
  log "wheelhouse (docker/wheelhouse.sh)"
  docker/wheelhouse.sh
fi

# --- build --------------------------------------------------------------------------------
BUILD_LOG=artifacts/docker-build.log
mkdir -p artifacts && : > "$BUILD_LOG"
build() {  # build TAG [extra docker build args...]; the full output goes to $BUILD_LOG
  local tag=$1 from; shift
  from=$(( $(wc -l < "$BUILD_LOG") + 1 ))
  nice -n 10 docker build ${SMOKE_NO_CACHE:+--no-cache} -f docker/Dockerfile \
    --build-arg BASE_IMAGE="$BASE" --build-arg PIP_NO_INDEX="$NO_INDEX" "$@" -t "$tag" . \
    >>"$BUILD_LOG" 2>&1 || { tail -40 "$BUILD_LOG"; fail "docker build $tag (see $BUILD_LOG)"; }
  # [steps taken from the build cache, steps]: the legacy builder's "Step i/n" and
  # "Using cache" lines (BuildKit prints neither: [0, 0])
  CACHED=$(tail -n +"$from" "$BUILD_LOG" \
           | awk '/^Step [0-9]+\/[0-9]+ :/ {n++} /^ ---> Using cache/ {c++} END {printf "[%d, %d]", c, n}')
}
log "docker build $IMAGE"
t0=$(now); build "$IMAGE"; BUILD_S=$(secs "$t0" "$(now)"); BUILD_CACHED=$CACHED
log "docker build $DEMO_IMAGE (BAKE_DEMO=1: xmr data openmoji --twemoji, xmr train, xmr index build)"
t0=$(now); build "$DEMO_IMAGE" --build-arg BAKE_DEMO=1 --build-arg BAKE_THREADS="$THREADS"
BUILD_DEMO_S=$(secs "$t0" "$(now)"); BUILD_DEMO_CACHED=$CACHED
SIZE=$(docker image inspect -f '{{.Size}}' "$IMAGE")
SIZE_DEMO=$(docker image inspect -f '{{.Size}}' "$DEMO_IMAGE")
echo "built in ${BUILD_S}s + ${BUILD_DEMO_S}s; $IMAGE $((SIZE / 1000000)) MB, $DEMO_IMAGE $((SIZE_DEMO / 1000000)) MB"

# --- run ----------------------------------------------------------------------------------
cleanup() { docker rm -f "$NAME" >/dev/null 2>&1 || true; }
trap 'cleanup; rm -rf "$PARTS"' EXIT
t0=$(now)
if [ "$HOST_NETWORK" = 1 ]; then
  log "docker run $DEMO_IMAGE (host network, listening on 127.0.0.1 only)"
  PORT=$($PY docker/free_port.py)
  docker run -d --name "$NAME" --network host -e XMR_HOST=127.0.0.1 -e XMR_PORT="$PORT" \
    -e XMR_API_KEY="$API_KEY" "$DEMO_IMAGE" >/dev/null
else
  log "docker run $DEMO_IMAGE (published on 127.0.0.1 only)"
  docker run -d --name "$NAME" -p 127.0.0.1::8000 -e XMR_API_KEY="$API_KEY" "$DEMO_IMAGE" >/dev/null
  PORT=$(docker port "$NAME" 8000/tcp | sed -n 's/^127\.0\.0\.1:\([0-9]*\)$/\1/p' | head -1)
fi
[ -n "$PORT" ] || fail "no 127.0.0.1 port published"
URL=http://127.0.0.1:$PORT
READY_S=
for _ in $(seq 1500); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200 ]; then
    READY_S=$(secs "$t0" "$(now)"); break
  fi
  [ "$(docker inspect -f '{{.State.Running}}' "$NAME")" = true ] \
    || { docker logs "$NAME" | tail -40; fail "container exited before /readyz"; }
  sleep 0.2
done
[ -n "$READY_S" ] || { docker logs "$NAME" | tail -40; fail "/readyz not 200 within 300 s"; }
echo "ready: ${READY_S}s from docker run to GET /readyz 200"

USER_ID=$(docker exec "$NAME" id -u)
[ "$USER_ID" != 0 ] || fail "the service runs as root"
echo "runs as uid $USER_ID"

log "search and ingestion against $URL"
SMOKE_URL=$URL SMOKE_API_KEY=$API_KEY SMOKE_ANSWERS=$PARTS/run.json $PY docker/smoke_api.py

log "healthcheck (HEALTHCHECK on /readyz)"
HEALTH=
for _ in $(seq 60); do
  HEALTH=$(docker inspect -f '{{.State.Health.Status}}' "$NAME")
  [ "$HEALTH" = healthy ] && break
  sleep 1
done
[ "$HEALTH" = healthy ] || fail "docker health status is '$HEALTH'"
echo "docker reports: $HEALTH"

log "docker stop"
t0=$(now); docker stop -t 30 "$NAME" >/dev/null; STOP_S=$(secs "$t0" "$(now)")
EXIT_CODE=$(docker inspect -f '{{.State.ExitCode}}' "$NAME")
# uvicorn re-raises SIGTERM after its graceful shutdown, so 143 (128 + 15) is a clean stop too.
case $EXIT_CODE in 0|143) ;; *) docker logs "$NAME" | tail -20; fail "exit code $EXIT_CODE on SIGTERM";; esac
# The log is read whole before grep: `docker logs | grep -q` fails under pipefail whenever grep's
# early exit cuts docker logs off with SIGPIPE.
STOP_LOG=$(docker logs "$NAME" 2>&1)
grep -q 'Application shutdown complete' <<<"$STOP_LOG" \
  || { tail -20 <<<"$STOP_LOG"; fail "no graceful shutdown in the log"; }
echo "stopped in ${STOP_S}s, exit code $EXIT_CODE, graceful shutdown logged"
cleanup

cat > "$PARTS/figures.json" <<EOF
{"base_image": "$BASE", "pip_no_index": $NO_INDEX, "no_cache": ${SMOKE_NO_CACHE:-0}, "threads": $THREADS,
 "engine": "Docker $(docker version -f '{{.Server.Version}}'), $(docker info -f '{{.Driver}}') storage",
 "host_network": $HOST_NETWORK, "machine": "$(nproc) CPU cores, $(uname -m)",
 "build_s": $BUILD_S, "build_demo_s": $BUILD_DEMO_S,
 "build_cached_steps": $BUILD_CACHED, "build_demo_cached_steps": $BUILD_DEMO_CACHED,
 "image_bytes": $SIZE, "demo_image_bytes": $SIZE_DEMO,
 "start_to_ready_s": $READY_S, "uid": $USER_ID, "health": "$HEALTH",
 "stop_s": $STOP_S, "exit_code": $EXIT_CODE}
EOF

if [ -z "${SMOKE_SKIP_COMPOSE:-}" ]; then
  XMR_IMAGE=$IMAGE SMOKE_PARTS=$PARTS SMOKE_THREADS=$THREADS docker/compose-smoke.sh
fi
mkdir -p "$(dirname "$RESULTS")"
$PY - "$PARTS" "$RESULTS" <<'EOF'
import json, sys
from pathlib import Path
parts, out = Path(sys.argv[1]), Path(sys.argv[2])
read = lambda name: json.loads((parts / name).read_text()) if (parts / name).exists() else None
result = {"command": "make docker-smoke", **read("figures.json"), "run": read("run.json"),
          "compose": read("compose.json")}
if result["compose"] is not None:
    result["compose"]["answers"] = read("compose-answers.json")
out.write_text(json.dumps(result, indent=1) + "\n")
EOF
echo "figures and answers: $RESULTS"
if [ -x .venv/bin/python ]; then
  .venv/bin/python -m bench.report docker "$RESULTS" && echo "report: ${RESULTS%.json}.md"
fi
log "docker-smoke: PASS"
