#!/usr/bin/env bash
# The house's habits, checked: clang-format on every C++ file, shellcheck on
# every shell script, clang-tidy (.clang-tidy) on the C++ sources that the
# newest commit changing C++ changed. Exits non-zero on the first kind of finding, listing them.
#
#   bash tests/lint.sh [BUILD_DIR]
#
# BUILD_DIR must hold compile_commands.json (the default build has it).
# COVE_TIDY_BASE names the commit to compare against for "changed" (default:
# the parent of the newest commit that changed C++; `COVE_TIDY_BASE=origin/main`
# before a push).
# COVE_LINT_FIX=1 formats the C++ files in place instead of checking.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-${COVE_BUILD_DIR:-$src/build}}
cd "$src"
status=0

echo "== clang-format"
mapfile -t cxx < <(git ls-files -- '*.cc' '*.h' | grep -v '^tests/fuzz/corpus/')
if [ "${COVE_LINT_FIX:-0}" = 1 ]; then
  clang-format -i "${cxx[@]}"
elif ! clang-format --dry-run --Werror "${cxx[@]}" 2>/tmp/cove-format.$$; then
  grep -E '^[^ ].*: (error|warning):' /tmp/cove-format.$$ | cut -d: -f1 | sort -u |
    sed 's/^/  not formatted: /'
  echo "clang-format: run COVE_LINT_FIX=1 bash tests/lint.sh"
  status=1
fi
rm -f /tmp/cove-format.$$

echo "== shellcheck"
# Scripts by name or by their #! line; sourced libraries carry a
# "shellcheck shell=bash" directive.
mapfile -t scripts < <(git ls-files | while IFS= read -r f; do
  [ -f "$f" ] || continue
  case "$f" in
    *.sh) echo "$f" ;;
    *.md | *.json | *.proto | *.cc | *.h | *.txt | *.js | *.c) ;;
    *) head -c 64 "$f" | grep -qE '^#!(/usr)?/bin/(env )?(ba)?sh' && echo "$f" ;;
  esac
done)
if ! shellcheck -S warning -x "${scripts[@]}"; then
  status=1
fi

echo "== clang-tidy (changed C++ sources)"
# By default, the newest commit that changed C++ at all, against its parent.
last_cxx=$(git log -1 --format=%H -- '*.cc' '*.h')
base=${COVE_TIDY_BASE:-${last_cxx:-HEAD}~1}
if ! git rev-parse -q --verify "$base^{commit}" >/dev/null; then
  echo "no commit $base to compare against: nothing to tidy"
else
  mapfile -t changed < <(git diff --no-renames --name-only --diff-filter=AM "$base" -- \
    'daemon/*.cc' 'client/*.cc' 'common/*.cc' 'guest/agent/*.cc' | while IFS= read -r f; do
    [ -f "$f" ] && grep -q "\"file\": \"$src/$f\"" "$build/compile_commands.json" && echo "$f"
  done)
  max=${COVE_TIDY_MAX:-12}
  if [ "${#changed[@]}" -gt "$max" ]; then
    # A sweeping change (a reformat, a move) would take CI's whole budget:
    # about 25 s of CPU a file here. Its smallest changes are tidied.
    echo "${#changed[@]} C++ sources changed since $base; tidying the $max with the most changed lines"
    echo "(all of them: COVE_TIDY_MAX=${#changed[@]} bash tests/lint.sh)"
    mapfile -t changed < <(git diff --no-renames --numstat "$base" -- "${changed[@]}" |
      awk '{print $1 + $2, $3}' | sort -rn | head -n "$max" | cut -d' ' -f2)
  fi
  if [ "${#changed[@]}" = 0 ]; then
    echo "no C++ source changed since $base"
  elif ! printf '%s\n' "${changed[@]}" |
    xargs -P "$(nproc)" -n 1 clang-tidy -p "$build" --quiet --warnings-as-errors='*' 2>/dev/null; then
    status=1
  fi
fi
exit $status
