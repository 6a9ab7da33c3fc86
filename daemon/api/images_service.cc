#include "daemon/api/images_service.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "common/sizes.h"
#include "daemon/api/status.h"
#include "daemon/image/image_fetch.h"
#include "daemon/loop/channel.h"

namespace cove::daemon::api {

namespace fs = std::filesystem;

absl::StatusOr<std::vector<std::string>> ImagesService::UsersOf(const std::string& path) {
  return loop_.Call<std::vector<std::string>>(
      [this, path]() { return manager_.UsersOfImage(path); });
}

grpc::Status ImagesService::List(grpc::ServerContext* ctx, const cove::v1::ListImagesRequest*,
                                 cove::v1::ListImagesResponse* resp) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  for (const ImageInfo& info : images_.List()) {
    cove::v1::Image img = info.ToProto();
    if (auto users = UsersOf(info.path); users.ok()) {
      for (auto& u : *users) img.add_used_by(u);
    }
    *resp->add_images() = std::move(img);
  }
  return grpc::Status::OK;
}

grpc::Status ImagesService::Build(grpc::ServerContext* ctx, const cove::v1::BuildImageRequest* req,
                                  grpc::ServerWriter<cove::v1::BuildImageResponse>* writer) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  auto arch = NormalizeArch(req->arch().empty() ? HostArch() : req->arch());
  if (!arch.ok()) return ToGrpc(arch.status());
  std::string out = req->output_dir().empty()
                        ? images_.cache_path(ImageStore::DefaultName(*arch))
                        : fs::absolute(req->output_dir()).lexically_normal().string();
  if (fs::exists(out)) {
    if (!req->force()) {
      return Error(
          cove::v1::IMAGE_EXISTS, grpc::StatusCode::ALREADY_EXISTS,
          absl::StrCat("an image already exists at ", out, "; pass --force to rebuild it"));
    }
    auto users = UsersOf(out);
    if (!users.ok()) return ToGrpc(users.status());
    if (!users->empty()) {
      return Error(cove::v1::IMAGE_IN_USE, grpc::StatusCode::FAILED_PRECONDITION,
                   absl::StrCat("machines ", absl::StrJoin(*users, ", "), " use the image at ", out,
                                "; delete them first or build to another --output"));
    }
  }
  // A Debian root filesystem, its packages and the finished image.
  constexpr uint64_t kBuildBytes = uint64_t{1} << 30;
  for (fs::path dir : {fs::path(build_cache_), fs::path(out).parent_path()}) {
    std::error_code ec;
    while (!fs::exists(dir, ec) && dir.has_parent_path() && dir != dir.parent_path()) {
      dir = dir.parent_path();  // not made yet: its filesystem is its parent's
    }
    if (auto st = CheckFreeSpace(dir.string(), kBuildBytes, "an image build"); !st.ok()) {
      return ToGrpc(st);
    }
  }
  using Item = std::variant<cove::v1::BuildImageResponse, absl::Status>;
  auto channel = std::make_shared<Channel<Item>>(4096);
  const auto begun = std::chrono::steady_clock::now();
  auto elapsed = [begun]() {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now() - begun)
                                     .count());
  };
  ImageBuilder::Request request{*arch, out, build_cache_};
  if (!loop_.Post([this, request, channel, elapsed]() {
        builder_.Build(
            request,
            [channel, elapsed](bool phase, const std::string& text) {
              cove::v1::BuildImageResponse r;
              if (phase) {
                r.set_phase(text);
              } else {
                r.set_message(text);
              }
              r.set_elapsed_ms(elapsed());
              channel->Push(std::move(r));
            },
            [channel](absl::Status st) { channel->Push(st, /*final=*/true); });
      })) {
    return Error(cove::v1::SHUTTING_DOWN, grpc::StatusCode::UNAVAILABLE, "coved is shutting down");
  }
  for (;;) {
    auto item = channel->Pop(std::chrono::seconds(1));
    if (!item.has_value()) {
      if (ctx->IsCancelled()) {
        // Nobody is waiting for the image: stop the build instead of
        // leaving it to hold the builder for minutes.
        loop_.Post([this]() { builder_.Cancel(); });
        return grpc::Status::CANCELLED;
      }
      continue;
    }
    if (auto* st = std::get_if<absl::Status>(&*item)) {
      if (!st->ok()) return ToGrpc(*st);
      break;
    }
    writer->Write(std::get<cove::v1::BuildImageResponse>(*item));
  }
  auto image = images_.Load(out, /*verify_digests=*/true);
  if (!image.ok()) return ToGrpc(image.status());
  cove::v1::BuildImageResponse last;
  *last.mutable_image() = image->ToProto();
  last.set_elapsed_ms(elapsed());
  writer->Write(last);
  return grpc::Status::OK;
}

grpc::Status ImagesService::WriteImported(
    const std::string& dest, const std::string& name,
    grpc::ServerWriter<cove::v1::ImportImageResponse>* writer) {
  auto image = images_.Load(dest, false);
  if (!image.ok()) return ToGrpc(image.status());
  image->name = name;
  cove::v1::ImportImageResponse last;
  *last.mutable_image() = image->ToProto();
  writer->Write(last);
  return grpc::Status::OK;
}

grpc::Status ImagesService::Import(grpc::ServerContext* ctx,
                                   const cove::v1::ImportImageRequest* req,
                                   grpc::ServerWriter<cove::v1::ImportImageResponse>* writer) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  if (IsUrl(req->path())) return ImportUrl(ctx, req, writer);
  if (!req->digest().empty()) {
    return Error(cove::v1::INVALID_REQUEST, grpc::StatusCode::INVALID_ARGUMENT,
                 "--digest is for a URL; a directory is checked against its image.json");
  }
  cove::v1::ImportImageResponse r;
  r.set_phase("verifying");
  writer->Write(r);
  auto src = images_.Load(req->path(), /*verify_digests=*/true);
  if (!src.ok()) return ToGrpc(src.status());
  const std::string name =
      req->name().empty() ? fs::path(src->path).filename().string() : req->name();
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return Error(cove::v1::INVALID_NAME, grpc::StatusCode::INVALID_ARGUMENT,
                 "invalid image name \"" + name + "\"");
  }
  const std::string dest = images_.cache_path(name);
  if (fs::exists(dest)) {
    return Error(cove::v1::IMAGE_EXISTS, grpc::StatusCode::ALREADY_EXISTS,
                 absl::StrCat("an image named ", name, " exists; delete it first"));
  }
  r.set_phase("copying");
  writer->Write(r);
  const std::string staging = dest + ".importing";
  std::error_code ec;
  fs::remove_all(staging, ec);
  if (auto st = CheckFreeSpace(images_.cache_path(""), src->size_bytes, "the image copy");
      !st.ok()) {
    return ToGrpc(st);
  }
  fs::copy(src->path, staging, fs::copy_options::recursive, ec);
  if (!ec) fs::rename(staging, dest, ec);
  if (ec) {
    const int err = ec.value();
    fs::remove_all(staging, ec);
    return ToGrpc(FileError("cannot copy the image to", staging, err));
  }
  return WriteImported(dest, name, writer);
}

grpc::Status ImagesService::ImportUrl(grpc::ServerContext* ctx,
                                      const cove::v1::ImportImageRequest* req,
                                      grpc::ServerWriter<cove::v1::ImportImageResponse>* writer) {
  const std::string staging =
      images_.cache_path(absl::StrCat(".download-", ::getpid(), "-", std::rand()));
  std::error_code ec;
  fs::create_directories(staging, ec);
  if (ec) return ToGrpc(FileError("cannot make", staging, ec.value()));
  // Whatever happens below, nothing stays but a complete, verified image.
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } cleanup{staging};
  cove::v1::ImportImageResponse r;
  r.set_phase("downloading");
  r.set_message(req->path());
  writer->Write(r);
  const std::string archive = staging + "/image.tar";
  absl::Status st = Download(
      req->path(), archive, req->digest(), [&](uint64_t done, uint64_t total, uint64_t rate) {
        cove::v1::ImportImageResponse p;
        p.set_phase("downloading");
        p.set_message(total > 0 ? absl::StrCat(FormatSize(done), " of ", FormatSize(total), ", ",
                                               FormatSize(rate), "/s")
                                : absl::StrCat(FormatSize(done), ", ", FormatSize(rate), "/s"));
        writer->Write(p);
        return !ctx->IsCancelled();
      });
  if (!st.ok()) return ToGrpc(st);
  r.set_phase("unpacking");
  r.set_message(req->digest().empty()
                    ? "no --digest given: only the image's own digests are checked"
                    : "sha256 matches --digest");
  writer->Write(r);
  auto dir = UnpackImage(archive, staging + "/unpacked");
  if (!dir.ok()) return ToGrpc(dir.status());
  ::unlink(archive.c_str());
  r.set_phase("verifying");
  r.clear_message();
  writer->Write(r);
  auto src = images_.Load(*dir, /*verify_digests=*/true);
  if (!src.ok()) return ToGrpc(src.status());
  const std::string name = req->name().empty() ? fs::path(*dir).filename().string() : req->name();
  if (name.empty() || name == "." || name == ".." || name == "unpacked" ||
      name.find('/') != std::string::npos || name[0] == '.') {
    return Error(cove::v1::INVALID_NAME, grpc::StatusCode::INVALID_ARGUMENT,
                 "the archive does not name its image; pass --name NAME");
  }
  const std::string dest = images_.cache_path(name);
  if (fs::exists(dest)) {
    return Error(cove::v1::IMAGE_EXISTS, grpc::StatusCode::ALREADY_EXISTS,
                 absl::StrCat("an image named ", name, " exists; delete it first"));
  }
  fs::rename(*dir, dest, ec);
  if (ec) return ToGrpc(FileError("cannot move the image to", dest, ec.value()));
  return WriteImported(dest, name, writer);
}

grpc::Status ImagesService::Delete(grpc::ServerContext* ctx,
                                   const cove::v1::DeleteImageRequest* req,
                                   cove::v1::DeleteImageResponse*) {
  if (auto st = auth_.Check(ctx); !st.ok()) return st;
  const std::string& name = req->name();
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return Error(cove::v1::INVALID_NAME, grpc::StatusCode::INVALID_ARGUMENT,
                 "invalid image name \"" + name + "\"");
  }
  const std::string path = images_.cache_path(name);
  if (!fs::exists(path)) {
    return Error(cove::v1::IMAGE_NOT_FOUND, grpc::StatusCode::NOT_FOUND,
                 "no image named " + name + "; `cove image list` shows them");
  }
  auto users = UsersOf(path);
  if (!users.ok()) return ToGrpc(users.status());
  if (!users->empty()) {
    return Error(cove::v1::IMAGE_IN_USE, grpc::StatusCode::FAILED_PRECONDITION,
                 absl::StrCat("machines ", absl::StrJoin(*users, ", "), " use image ", name,
                              "; delete them first"));
  }
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec)
    return Error(cove::v1::HOST_ERROR, grpc::StatusCode::INTERNAL,
                 "cannot delete: " + ec.message());
  return grpc::Status::OK;
}

}  // namespace cove::daemon::api
