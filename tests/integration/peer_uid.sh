#!/usr/bin/env bash
# Another uid is refused on coved.sock with PERMISSION_DENIED, even when the
# file modes would let it connect.
if [ "$(id -u)" != 0 ]; then
  # Acting as a second user needs root (runuser); CI runs as root.
  echo "SKIP: peer_uid needs root to connect as another uid"
  exit 77
fi
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
start_coved
[ "$(stat -c %a "$COVE_HOME")" = 700 ] || fail "home is not 0700"
[ "$(stat -c %a "$COVE_HOME/coved.sock")" = 600 ] || fail "socket is not 0600"

other=nobody
id "$other" >/dev/null || fail "no user $other"
# The modes alone keep others out; open them to reach the daemon's own check.
chmod 711 "$COVE_HOME"
chmod 666 "$COVE_HOME/coved.sock"
cp "$COVE_BIN/cove" "$COVE_HOME/cove-copy"
chmod 755 "$COVE_HOME/cove-copy"
out=$(runuser -u "$other" -- env COVE_HOME="$COVE_HOME" COVE_NO_AUTOSTART=1 \
      "$COVE_HOME/cove-copy" list 2>&1) && fail "uid $(id -u $other) was let in: $out"
grep -q "may not use it" <<<"$out" || fail "unexpected refusal: $out"
log "refused as expected: $out"
# The owner still works.
cove list >/dev/null
log "PASS peer_uid"
