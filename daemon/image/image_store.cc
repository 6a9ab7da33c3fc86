#include "daemon/image/image_store.h"

#include <openssl/evp.h>
#include <sys/utsname.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"

namespace cove::daemon {

namespace fs = std::filesystem;

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(md), len));
}

absl::StatusOr<std::string> NormalizeArch(const std::string& arch) {
  if (arch == "x86_64" || arch == "amd64") return std::string("x86_64");
  if (arch == "aarch64" || arch == "arm64") return std::string("aarch64");
  return absl::InvalidArgumentError(
      absl::StrCat("unknown architecture \"", arch, "\"; use x86_64 (amd64) or aarch64 (arm64)"));
}

std::string HostArch() {
  struct utsname u {};
  ::uname(&u);
  auto arch = NormalizeArch(u.machine);
  return arch.ok() ? *arch : std::string(u.machine);
}

cove::v1::Image ImageInfo::ToProto() const {
  cove::v1::Image img;
  img.set_name(name);
  img.set_path(path);
  img.set_arch(arch);
  img.set_suite(suite);
  img.set_kernel_version(kernel_version);
  for (const auto& [k, v] : packages) (*img.mutable_packages())[k] = v;
  for (const auto& [k, v] : sha256) (*img.mutable_sha256())[k] = v;
  img.set_size_bytes(size_bytes);
  return img;
}

absl::StatusOr<ImageInfo> ImageStore::Load(const std::string& dir, bool verify_digests) const {
  std::error_code ec;
  const std::string abs = fs::absolute(dir, ec).lexically_normal().string();
  const std::string json_path = abs + "/image.json";
  auto text = ReadFile(json_path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat("no image at ", abs, " (", json_path,
                                            " is missing); build one with `cove image build`"));
  }
  auto j = nlohmann::json::parse(*text, nullptr, false);
  auto corrupt = [&](const std::string& why) {
    return absl::DataLossError(absl::StrCat("image at ", abs, " is corrupt: ", why,
                                            "; rebuild it with `cove image build --force`"));
  };
  if (!j.is_object()) return corrupt("image.json is not valid JSON");
  ImageInfo info;
  try {
    info.path = abs;
    info.name = j.value("name", fs::path(abs).filename().string());
    info.arch = j.at("arch").get<std::string>();
    info.suite = j.value("suite", "");
    info.kernel_version = j.value("kernel_version", "");
    info.kernel_cmdline = j.value("kernel_cmdline", "console=ttyS0 root=/dev/vda rw quiet");
    info.created_at = j.value("created_at", "");
    info.rootfs_size_bytes = j.value("rootfs_size_bytes", uint64_t{0});
    const auto& files = j.at("files");
    info.kernel = abs + "/" + files.at("kernel").get<std::string>();
    info.initrd = abs + "/" + files.at("initrd").get<std::string>();
    info.rootfs = abs + "/" + files.at("rootfs").get<std::string>();
    const nlohmann::json digests = j.value("sha256", nlohmann::json::object());
    for (const auto& [k, v] : digests.items()) info.sha256[k] = v.get<std::string>();
    const nlohmann::json packages = j.value("packages", nlohmann::json::object());
    for (const auto& [k, v] : packages.items()) info.packages[k] = v.get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    return corrupt(absl::StrCat("image.json: ", e.what()));
  }
  if (!NormalizeArch(info.arch).ok()) return corrupt("unknown arch \"" + info.arch + "\"");
  for (const std::string& file : {info.kernel, info.initrd, info.rootfs}) {
    auto size = fs::file_size(file, ec);
    if (ec || size == 0) return corrupt(absl::StrCat(file, " is missing or empty"));
    info.size_bytes += size;
    const std::string base = fs::path(file).filename().string();
    if (!info.sha256.count(base)) return corrupt(absl::StrCat("no sha256 for ", base));
    if (verify_digests) {
      auto digest = Sha256File(file);
      if (!digest.ok()) return corrupt(std::string(digest.status().message()));
      if (*digest != info.sha256[base]) {
        return corrupt(absl::StrCat(base, " does not match its sha256 in image.json"));
      }
    }
  }
  return info;
}

absl::StatusOr<ImageInfo> ImageStore::Resolve(const std::string& ref, const std::string& arch,
                                              bool verify_digests) const {
  if (ref.find('/') != std::string::npos) return Load(ref, verify_digests);
  const std::string name = ref.empty() ? DefaultName(arch) : ref;
  if (name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat("invalid image name \"", name, "\""));
  }
  auto info = Load(cache_path(name), verify_digests);
  if (info.ok()) info->name = name;
  if (!info.ok() && absl::IsNotFound(info.status())) {
    return absl::NotFoundError(absl::StrCat(
        "image \"", name, "\" is not in ", layout_.images(), "; build it with `cove image build",
        arch == HostArch() ? "" : " --arch " + arch, "` (a few minutes) or pass --image DIR"));
  }
  return info;
}

std::vector<ImageInfo> ImageStore::List() const {
  std::vector<ImageInfo> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(layout_.images(), ec)) {
    if (!entry.is_directory()) continue;
    auto info = Load(entry.path().string(), /*verify_digests=*/false);
    if (!info.ok()) continue;
    // In the cache an image is known by its directory's name.
    info->name = entry.path().filename().string();
    out.push_back(*std::move(info));
  }
  return out;
}

}  // namespace cove::daemon
