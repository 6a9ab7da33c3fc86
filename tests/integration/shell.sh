#!/usr/bin/env bash
# cove shell in tmux: a login shell on a guest pty that runs commands, sees
# the window size and its changes, and gets ^C.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
command -v tmux >/dev/null || { log "tmux missing; skipping"; exit 77; }
start_coved
cove start "${MACHINE_FLAGS[@]}"

export TMUX_TMPDIR="$COVE_HOME"
session=cove-shell-test
tmux new-session -d -s "$session" -x 100 -y 30 "env PATH='$PATH' COVE_HOME='$COVE_HOME' cove shell"
pane() { tmux capture-pane -p -t "$session"; }
send() { tmux send-keys -t "$session" "$@"; }
screen_has() { pane | grep -q -- "$1"; }

wait_for 20 "a shell prompt" screen_has '#'
send 'echo $((6*7))done' Enter
wait_for 10 "the shell to run a command" screen_has '42done'
send 'stty size' Enter
wait_for 10 "the terminal size" screen_has '^30 100'
tmux resize-window -t "$session" -x 120 -y 40
# The resize reaches the guest asynchronously: ask until the new size shows.
size_is() { send 'stty size' Enter && screen_has "^$1"; }
wait_for 10 "the new terminal size" size_is '40 120'
send 'sleep 100; echo slept' Enter
# ^C must find sleep running in the guest, not the shell still reading.
wait_for 10 "sleep to run in the guest" cove exec default -- pidof sleep
send C-c
send 'echo after-$((1+1))' Enter
wait_for 10 "^C to stop sleep" screen_has 'after-2'
pane | grep -qx slept && fail "sleep was not interrupted"
send 'exit 3' Enter
wait_for 10 "the shell to exit" sh -c "! tmux has-session -t $session 2>/dev/null"
cove stop
