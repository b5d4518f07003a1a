#!/usr/bin/env bash
# Validate docker-compose.yml and run each of its CPU services' commands once, in a throwaway
# project (its own named volumes, removed at the end). Called by docker/smoke.sh after the
# images are built; by itself it needs $XMR_IMAGE and ${XMR_IMAGE}-demo to exist. Given
# SMOKE_PARTS (a folder), its figures and answers go there as compose.json and
# compose-answers.json.
#
#   trainer  (profile jobs)  xmr train ... --out /data/runs/default   on the seeded volumes
#   reindex  (profile jobs)  xmr index build ... with the checkpoint the trainer just wrote
#   api                      xmr serve on those volumes; /readyz, a search, an ingestion
#   api-gpu  (profile gpu)   validated only: no GPU here, and its CUDA base cannot be pulled offline
#   milvus   (profile milvus) validated only: the milvusdb/milvus image cannot be pulled offline
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${XMR_IMAGE:-xmr:cpu}
THREADS=${SMOKE_THREADS:-1}   # torch's threads in the jobs, leaving other cores to other work
PROJECT=xmr-smoke-$$
log() { printf '\n== %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
if command -v docker-compose >/dev/null; then COMPOSE=(docker-compose)
elif docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose)
else fail "neither docker-compose nor the docker compose plugin is installed"; fi

# The demo image seeds the empty named volumes with the OpenMoji corpus, run and index.
export XMR_IMAGE=${IMAGE}-demo
export XMR_API_KEY=smoke-$RANDOM$RANDOM
XMR_PUBLISH_PORT=$(python3 docker/free_port.py)
export XMR_PUBLISH_PORT XMR_BIND=127.0.0.1
# The project gets a network of its own, which an engine without its default bridge
# (docker/smoke.sh's) can still create and publish ports from, so nothing differs here.
compose() { "${COMPOSE[@]}" -p "$PROJECT" "$@"; }
cleanup() { compose --profile jobs down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

log "${COMPOSE[*]} config (every profile)"
compose --profile gpu --profile jobs --profile milvus config -q
echo "services: $(compose --profile gpu --profile jobs --profile milvus config --services | tr '\n' ' ')"

job() {  # run a one-shot service, print the command line its container ran, remove it
  local service=$1 t0=$SECONDS
  log "$service"
  compose --profile jobs run -T --name "$PROJECT-$service" -e OMP_NUM_THREADS="$THREADS" "$service" 2>&1 \
    | tr '\r' '\n' | grep -v -e '%|' -e '^ *$' | tail -5 || true
  local code
  code=$(docker inspect -f '{{.State.ExitCode}}' "$PROJECT-$service")
  echo "ran: $(docker inspect -f '{{.Path}} {{join .Args " "}}' "$PROJECT-$service")"
  echo "exit code $code after $((SECONDS - t0))s"
  SECONDS_OF[$service]=$((SECONDS - t0))
  docker rm "$PROJECT-$service" >/dev/null
  [ "$code" = 0 ] || fail "compose service $service exited with $code"
}
declare -A SECONDS_OF
job trainer
job reindex

log "api on 127.0.0.1:$XMR_PUBLISH_PORT"
t0=$SECONDS
compose up -d api
URL=http://127.0.0.1:$XMR_PUBLISH_PORT
ok=
for _ in $(seq 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200 ] && { ok=1; break; }
  sleep 0.5
done
[ -n "$ok" ] || { compose logs --tail 40 api; fail "compose api: /readyz not 200 within 300 s"; }
READY_S=$((SECONDS - t0))
echo "ready ${READY_S}s after compose up"
PARTS=${SMOKE_PARTS:-$(mktemp -d)}
SMOKE_URL=$URL SMOKE_API_KEY=$XMR_API_KEY SMOKE_ANSWERS=$PARTS/compose-answers.json \
  python3 docker/smoke_api.py
printf '{"compose": "%s", "trainer_s": %s, "reindex_s": %s, "up_to_ready_s": %s}\n' \
  "$("${COMPOSE[@]}" version --short)" "${SECONDS_OF[trainer]}" "${SECONDS_OF[reindex]}" \
  "$READY_S" > "$PARTS/compose.json"
compose stop api >/dev/null 2>&1
log "compose: PASS"
