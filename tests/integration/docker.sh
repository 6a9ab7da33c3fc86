#!/usr/bin/env bash
# --runtime docker: dockerd in the guest, its socket on the host, the host's
# docker CLI against it (run, ps, logs, exec), a published port (-p) on the
# host, the cove-NAME docker context.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
command -v docker >/dev/null || { log "no docker CLI on this host; skipping"; exit 77; }
export DOCKER_CONFIG="$COVE_HOME/docker-config"
start_coved

name=dk
cove create "$name" "${MACHINE_FLAGS[@]}" --runtime docker >/dev/null
cove start "$name" --activate
sock=$(machine_field "$name" .sockets.docker)
[ "$sock" = "$COVE_HOME/machines/$name/docker.sock" ] || fail "sockets: $(machine_field "$name" .sockets)"
[ -S "$sock" ] || fail "no docker socket"
export DOCKER_HOST="unix://$sock"

docker load -i "$(test_image_tar)" | grep -c "$TEST_IMAGE_REF" >/dev/null || fail "docker load"
[ "$(docker run --rm "$TEST_IMAGE_REF" echo hi)" = hi ] || fail "docker run"
docker run -d --name web "$TEST_IMAGE_REF" sh -c 'echo hello-from-logs; sleep 300' >/dev/null
docker ps --format '{{.Names}}' | grep -cx web >/dev/null || fail "docker ps: $(docker ps)"
wait_for 10 "docker logs" sh -c "docker logs web 2>&1 | grep -c hello-from-logs"
[ "$(docker exec web echo from-exec)" = from-exec ] || fail "docker exec"
docker rm -f web >/dev/null

log "docker run -p: the published port answers on host 127.0.0.1"
docker run -d --name pub -p 8081:80 "$TEST_IMAGE_REF" \
  sh -c 'mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 80 -h /www' >/dev/null
wait_for 10 "host 127.0.0.1:8081" curl -sf -m 3 http://127.0.0.1:8081/
[ "$(curl -s http://127.0.0.1:8081/)" = published ] || fail "published port answered wrong"
log "a container restart: the forward comes back and serves"
docker restart pub >/dev/null
wait_for 10 "host 127.0.0.1:8081 after the restart" curl -sf -m 3 http://127.0.0.1:8081/
docker rm -f pub >/dev/null
wait_for 5 "the 8081 forward to close" sh -c "! curl -sf -m 2 http://127.0.0.1:8081/"

log "the docker context"
unset DOCKER_HOST
[ "$(docker context show)" = "cove-$name" ] || fail "context not current: $(docker context show)"
[ "$(docker --context "cove-$name" run --rm "$TEST_IMAGE_REF" echo ctx)" = ctx ] || fail "context run"
cove delete -f "$name"
docker context inspect "cove-$name" >/dev/null 2>&1 && fail "context left after delete"
[ "$(docker context show)" = default ] || fail "context after delete: $(docker context show)"
exit 0
