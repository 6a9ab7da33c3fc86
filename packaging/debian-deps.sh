#!/usr/bin/env bash
# Installs what building, running and testing cove needs on Debian 12 or
# newer. Idempotent; run as root (or through sudo).
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  exec sudo "$0" "$@"
fi

packages=(
  # build
  build-essential cmake pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libspdlog-dev nlohmann-json3-dev libuv1-dev libcli11-dev libssl-dev
  catch2 libcurl4-gnutls-dev libarchive-dev
  # run: the hypervisors (x86_64 and aarch64 machines) and the disk tool
  qemu-system-x86 qemu-system-arm qemu-utils
  # guest image recipe (guest/image/build-image)
  debian-archive-keyring dpkg-dev fakeroot e2fsprogs cpio busybox-static xz-utils zstd
  ca-certificates
  # tests: tools, and clang with its libFuzzer runtime for tests/fuzz
  jq cpio procps util-linux clang libclang-rt-dev
  # tests: a terminal multiplexer for `cove shell`, socat as the benchmark peer
  # and UDP client, curl and ss (iproute2) for the port forwarding tests,
  # iperf3 for the forwarding benchmark
  tmux socat curl iproute2 iperf3
  # tests: systemd-socket-activate (socket activation), file and dpkg-deb
  # (the .deb from cpack)
  systemd file dpkg
  # tests: zsh and fish, to check the completion scripts for them
  zsh fish
  # tests/lint.sh: format, lint and shell checks
  clang-format clang-tidy shellcheck
  # benchmarks (bench/): hyperfine times whole commands
  hyperfine
)

# cove-agent for the other guest architecture: Debian's cross g++ and that
# architecture's protobuf-lite through multiarch (guest/CMakeLists.txt).
case "$(dpkg --print-architecture)" in
  amd64) foreign=arm64 cross=g++-aarch64-linux-gnu ;;
  arm64) foreign=amd64 cross=g++-x86-64-linux-gnu ;;
  *) foreign='' cross='' ;;
esac
if [ -n "$foreign" ]; then
  packages+=("$cross" "libprotobuf-dev:$foreign")
  if ! dpkg --print-foreign-architectures | grep -qx "$foreign"; then
    echo "adding the $foreign architecture to dpkg (for libprotobuf-dev:$foreign)"
    dpkg --add-architecture "$foreign"
    apt-get update -qq
  fi
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm run the API client test; keep an existing Node.js.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all build and test dependencies are installed"
fi
