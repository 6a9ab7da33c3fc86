#!/usr/bin/env bash
# A client with only the .proto files (Node.js, @grpc/grpc-js) uses the API
# over the unix socket: GetInfo, List, Watch, Create, Get, Delete.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
node_dir="$(cd "$(dirname "$0")/node" && pwd)"
[ -d "$node_dir/node_modules/@grpc/grpc-js" ] || fail "run 'npm ci' in $node_dir first (tests/run.sh does)"
start_coved
node "$node_dir/client.mjs" "${COVE_SOURCE:?}/proto" "$COVE_HOME/coved.sock" "$COVE_TEST_IMAGE"
[ "$(cove list --json)" = "[]" ] || fail "machine left: $(cove list --json)"
log "PASS grpc_js"
