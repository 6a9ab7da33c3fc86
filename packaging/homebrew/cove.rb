# Homebrew formula template for cove. A release fills in url and sha256
# (the source tarball); `brew services start cove` then runs coved at login
# through the service block below (equivalent to `cove daemon install`, which
# also adds socket activation).
class Cove < Formula
  desc "Linux machines for containers: a per-user daemon with a gRPC API, and its CLI"
  homepage "https://cove.dev"
  url "@URL@"
  sha256 "@SHA256@"
  license "Apache-2.0"

  depends_on "cmake" => :build
  depends_on "pkg-config" => :build
  depends_on "abseil"
  depends_on "cli11"
  depends_on "grpc"
  depends_on "libuv"
  depends_on "nlohmann-json"
  depends_on "protobuf"
  depends_on "qemu"
  depends_on "spdlog"

  def install
    # Homebrew's libraries are shared; the static links are for Debian.
    system "cmake", "-S", ".", "-B", "build", *std_cmake_args,
           "-DCOVE_STATIC_DEPS=OFF", "-DCOVE_STATIC_CLI=OFF"
    system "cmake", "--build", "build"
    system "cmake", "--install", "build"
  end

  service do
    run [opt_bin/"coved"]
    environment_variables COVE_HOME: "#{Dir.home}/.cove"
    keep_alive true
    process_type :interactive
    log_path "#{Dir.home}/.cove/coved.stderr.log"
    error_log_path "#{Dir.home}/.cove/coved.stderr.log"
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/coved --version")
    ENV["COVE_HOME"] = testpath/"home"
    ENV["COVE_NO_AUTOSTART"] = "1"
    assert_match "not running", shell_output("#{bin}/cove list 2>&1", 1)
  end
end
