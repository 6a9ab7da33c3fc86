#!/usr/bin/env bash
# `cpack` makes a .deb holding what an installed cove needs, and the
# installed layout works: coved finds cove-agent and the image builder, the
# user units run the packaged coved. Run from ctest with the build dir.
set -euo pipefail
build=${1:?usage: deb.sh BUILD_DIR}
out=$(mktemp -d /tmp/cove-deb-XXXXXX)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

(cd "$build" && cpack -G DEB -B "$out" >/dev/null) || fail "cpack failed"
deb=$(ls "$out"/cove_*.deb)
echo "built $(basename "$deb") ($(du -h "$deb" | cut -f1))"
contents=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in ./usr/bin/cove ./usr/bin/coved ./usr/lib/cove/cove-agent ./usr/lib/cove/cove-fetch \
  ./usr/share/cove/build-image \
  ./usr/share/cove/packages.txt ./usr/lib/systemd/user/coved.service \
  ./usr/lib/systemd/user/coved.socket ./usr/share/doc/cove/README.md \
  ./usr/share/doc/cove/reliability.md ./usr/share/bash-completion/completions/cove \
  ./usr/share/zsh/vendor-completions/_cove ./usr/share/fish/vendor_completions.d/cove.fish; do
  grep -qx "$f" <<<"$contents" || fail "$f is not in the package"
done
info=$(dpkg-deb -f "$deb" Package Version Architecture Depends)
grep -q "^Depends:.*qemu-utils" <<<"$info" || fail "no qemu dependency: $info"
echo "$info"

root="$out/root"
dpkg-deb -x "$deb" "$root"
grep -qx "ExecStart=/usr/bin/coved" "$root/usr/lib/systemd/user/coved.service" || fail "unit runs another coved"
grep -qx "ListenStream=%h/.cove/coved.sock" "$root/usr/lib/systemd/user/coved.socket" || fail "socket unit path"
"$root/usr/bin/coved" --version | grep -q . || fail "the packaged coved does not run"
# The bash completion is what the packaged cove prints, and bash loads it.
"$root/usr/bin/cove" completion bash | cmp -s - "$root/usr/share/bash-completion/completions/cove" ||
  fail "the packaged bash completion is not what the packaged cove prints"
bash -c 'source "$1" && complete -p cove' _ "$root/usr/share/bash-completion/completions/cove" |
  grep -q -- "-F _cove" || fail "the packaged bash completion does not register _cove"
file "$root/usr/lib/cove/cove-agent" | grep -q "statically linked" || fail "cove-agent is not static"
# Both agents: the other architecture's for foreign guests (cove create --arch).
case $(uname -m) in x86_64) other=aarch64 other_file="ARM aarch64" ;; *) other=x86_64 other_file="x86-64" ;; esac
grep -qx "./usr/lib/cove/cove-agent-$other" <<<"$contents" || fail "cove-agent-$other is not in the package"
file "$root/usr/lib/cove/cove-agent-$other" | grep -q "$other_file.*statically linked" ||
  fail "cove-agent-$other: $(file "$root/usr/lib/cove/cove-agent-$other")"

# The installed coved finds its agent beside it (lib/cove) and its image
# builder (share/cove): start one on a scratch home and ask it.
home=$(mktemp -d /tmp/cdh-XXXXXX)
COVE_HOME=$home "$root/usr/bin/coved" &
pid=$!
for _ in $(seq 100); do [ -S "$home/coved.sock" ] && break; sleep 0.05; done
COVE_HOME=$home COVE_NO_AUTOSTART=1 "$root/usr/bin/cove" version >/dev/null || fail "packaged cove cannot talk to packaged coved"
# ... and runs its download helper from lib/cove: a URL nothing listens at
# fails in cove-fetch (curl's words), not for want of the helper.
out=$(COVE_HOME=$home COVE_NO_AUTOSTART=1 "$root/usr/bin/cove" image import http://127.0.0.1:9/x.tar 2>&1) &&
  fail "an import from a closed port succeeded: $out"
grep -q "failed after 0 bytes" <<<"$out" || fail "the packaged coved did not run cove-fetch: $out"
# coved itself maps neither libcurl nor libarchive (docs/benchmarks.md).
! ldd "$root/usr/bin/coved" | grep -E "libcurl|libarchive" || fail "coved links libcurl or libarchive"
kill "$pid"; wait "$pid" || true
rm -rf "$home"
echo "PASS packaging"
