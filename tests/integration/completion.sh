#!/usr/bin/env bash
# `cove completion bash|zsh|fish`: each script parses; bash's (and fish's,
# where fish is installed) completes commands, subcommands, flags and the
# names of machines a real coved has; with coved stopped or stuck, machine
# names are none, at once, and coved is not started. Runs as root, then again
# as an ordinary user (as-user.sh).
source "$(dirname "$0")/lib.sh"

bash_script="$COVE_HOME/cove.bash"
cove completion bash >"$bash_script"
bash -n "$bash_script" || fail "the bash script does not parse"
expect_fail "shell: tcsh not in" cove completion tcsh

# bash_complete WORD...: what the script completes for the last WORD (""
# for a new word), sorted, one a line; from a fresh non-interactive bash, as
# bash itself calls the function on TAB.
bash_complete() {
  bash -c 'source "$1" && shift || exit 1
    complete -p cove | grep -q -- "-F _cove" || { echo "no complete -F _cove cove" >&2; exit 1; }
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    _cove cove "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}" || exit 1
    if [ ${#COMPREPLY[@]} -gt 0 ]; then printf "%s\n" "${COMPREPLY[@]}"; fi' \
    _ "$bash_script" "$@" | sort
}
# expect_completion "WANT" WORD...: the completions are exactly WANT (words).
expect_completion() {
  local want=$1 got
  shift
  got=$(bash_complete "$@" | tr '\n' ' ' | sed 's/ $//')
  [ "$got" = "$want" ] || fail "completing '$*': want '$want', got '$got'"
}
# expect_completion_has "WANT" WORD...: the completions include each of WANT.
expect_completion_has() {
  local got w
  got=$(bash_complete "${@:2}")
  for w in $1; do grep -qx -- "$w" <<<"$got" || fail "completing '${*:2}': no $w in: $got"; done
}

log "as $(id -un)"
log "bash: commands, subcommands, flags (no coved needed)"
expect_completion "start stop" cove st
expect_completion "daemon delete doctor" cove d
expect_completion_has "build list import delete" cove image ""
expect_completion_has "install uninstall status start stop" cove daemon ""
expect_completion "add rm" cove forward ""
expect_completion "bash fish zsh" cove completion ""
expect_completion_has "--arch --output --force --json --help" cove image build --
expect_completion "--cpus" cove create --cp
expect_completion_has "--autostart --no-autostart --port-rule" cove set dev --
expect_completion "" cove __complete
# The hidden helper is not in the help either.
! cove --help | grep -q __complete || fail "__complete-machines shows in cove --help"

start_coved
cove create alpha "${MACHINE_FLAGS[@]}" >/dev/null
cove create beta "${MACHINE_FLAGS[@]}" >/dev/null
[ "$(cove __complete-machines | sort | tr '\n' ' ')" = "alpha beta " ] ||
  fail "__complete-machines: $(cove __complete-machines 2>&1)"

log "bash: machine names from coved"
expect_completion "alpha beta" cove start ""
expect_completion "alpha beta" cove inspect ""
expect_completion "alpha" cove inspect al
expect_completion "alpha beta" cove exec ""
expect_completion "alpha beta" cove forward add ""
expect_completion "alpha beta" cove start --runtime docker ""
expect_completion "alpha beta" cove stop --timeout = 5 ""  # bash splits at =
expect_completion "alpha beta" cove delete alpha ""  # takes many
expect_completion "" cove start alpha ""             # takes one
expect_completion "" cove create ""                  # a new name
expect_completion "" cove image delete ""            # an image's name
expect_completion "" cove exec alpha -- ""

if command -v zsh >/dev/null; then
  log "zsh: parses, and registers _cove"
  cove completion zsh >"$COVE_HOME/_cove"
  zsh -n "$COVE_HOME/_cove" || fail "the zsh script does not parse"
  zsh -fc 'autoload -Uz compinit && compinit -u -D && source "$1" && [[ $_comps[cove] == _cove ]]' \
    _ "$COVE_HOME/_cove" || fail "the zsh script does not register _cove for cove"
else
  log "no zsh here: not checking the zsh script"
fi

# fish_complete LINE: what fish completes at the end of LINE, names only.
fish_complete() {
  fish --no-config -c 'source $argv[1]; complete -C $argv[2]' "$COVE_HOME/cove.fish" "$1" |
    cut -f1 | sort | tr '\n' ' ' | sed 's/ $//'
}
if command -v fish >/dev/null; then
  log "fish: parses and completes"
  cove completion fish >"$COVE_HOME/cove.fish"
  fish --no-execute "$COVE_HOME/cove.fish" || fail "the fish script does not parse"
  [ "$(fish_complete 'cove st')" = "start stop" ] || fail "fish 'cove st': $(fish_complete 'cove st')"
  [ "$(fish_complete 'cove forward ')" = "add rm" ] || fail "fish 'cove forward ': $(fish_complete 'cove forward ')"
  [ "$(fish_complete 'cove image build --f')" = "--force" ] ||
    fail "fish 'cove image build --f': $(fish_complete 'cove image build --f')"
  [ "$(fish_complete 'cove start ')" = "alpha beta" ] || fail "fish 'cove start ': $(fish_complete 'cove start ')"
  [ "$(fish_complete 'cove start alpha ')" = "" ] || fail "fish 'cove start alpha ': $(fish_complete 'cove start alpha ')"
else
  log "no fish here: not checking the fish script"
fi

# quick_and_quiet WHAT CMD...: CMD prints nothing, succeeds, within 2.5 s
# (the helper's deadline is 1 s).
quick_and_quiet() {
  local what=$1 out rc=0 t0 ms
  shift
  t0=$(date +%s%N)
  out=$("$@" 2>&1) || rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  if [ $rc != 0 ] || [ -n "$out" ]; then fail "$what: exit $rc, printed: $out"; fi
  [ $ms -lt 2500 ] || fail "$what took $ms ms"
  log "$what: nothing, in $ms ms"
}

log "a stuck coved: the helper gives up after its deadline"
kill -STOP "$COVED_PID"
quick_and_quiet "machine names from a stuck coved" cove __complete-machines
kill -CONT "$COVED_PID"

log "coved stopped: no names, at once, and coved stays stopped"
stop_coved
# With autostart allowed, so that it is the helper that does not start coved.
autostart_allowed() { (unset COVE_NO_AUTOSTART && "$@"); }
quick_and_quiet "machine names without coved" autostart_allowed cove __complete-machines
quick_and_quiet "completing 'cove start ' without coved" \
  autostart_allowed bash_complete cove start ""
expect_fail "coved is not running" cove list

log "PASS completion"
# cove is a per-user tool: once more as an ordinary user.
if [ "$(id -u)" = 0 ]; then bash "$(dirname "$0")/as-user.sh" "$0"; fi
