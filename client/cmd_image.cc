#include <cstdio>
#include <iostream>

#include "client/commands.h"
#include "client/output.h"

namespace cove::client {
namespace {

void AddBuild(CLI::App& image, Context& ctx, int& exit_code) {
  auto* cmd = image.add_subcommand("build", "Build a guest image from Debian packages (minutes)");
  auto arch = std::make_shared<std::string>();
  auto output = std::make_shared<std::string>();
  auto force = std::make_shared<bool>(false);
  cmd->add_option("--arch", *arch, "x86_64 or aarch64 (default: the host's)");
  cmd->add_option("--output", *output, "Write the image to this directory instead of the cache");
  cmd->add_flag("-f,--force", *force, "Rebuild an existing image");
  cmd->add_flag("--json", ctx.json, "Print the image as JSON at the end");
  cmd->callback([&ctx, &exit_code, arch, output, force]() {
    cove::v1::BuildImageRequest req;
    req.set_arch(*arch);
    if (!output->empty()) req.set_output_dir(std::filesystem::absolute(*output).string());
    req.set_force(*force);
    grpc::ClientContext call;
    auto reader = ctx.images().Build(&call, req);
    cove::v1::BuildImageResponse resp;
    cove::v1::Image image;
    while (reader->Read(&resp)) {
      if (resp.has_image()) {
        image = resp.image();
      } else if (resp.event_case() == cove::v1::BuildImageResponse::kPhase) {
        std::fprintf(stderr, "==> %s (%.0fs)\n", resp.phase().c_str(), resp.elapsed_ms() / 1000.0);
      } else if (std::getenv("COVE_VERBOSE") != nullptr) {
        std::fprintf(stderr, "    %s\n", resp.message().c_str());
      }
    }
    grpc::Status st = reader->Finish();
    if (!st.ok()) {
      exit_code = Context::Fail(st);
      return;
    }
    if (ctx.json) {
      std::cout << ImageJson(image).dump(2) << "\n";
    } else {
      std::cout << "built " << image.name() << " at " << image.path() << "\n";
    }
  });
}

}  // namespace

void RegisterImage(CLI::App& app, Context& ctx, int& exit_code) {
  auto* image = app.add_subcommand("image", "Manage guest images")->require_subcommand(1);
  AddBuild(*image, ctx, exit_code);

  auto* list = image->add_subcommand("list", "List cached images")->alias("ls");
  list->add_flag("--json", ctx.json, "JSON array");
  list->callback([&ctx, &exit_code]() {
    cove::v1::ListImagesResponse resp;
    grpc::ClientContext call;
    grpc::Status st = ctx.images().List(&call, {}, &resp);
    if (!st.ok()) {
      exit_code = Context::Fail(st);
      return;
    }
    if (ctx.json) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& img : resp.images()) out.push_back(ImageJson(img));
      std::cout << out.dump(2) << "\n";
    } else {
      std::cout << ImageTable(resp);
    }
  });

  auto* imp = image->add_subcommand(
      "import", "Copy an image directory into the cache, or download one (a tar of it) by URL");
  auto path = std::make_shared<std::string>();
  auto name = std::make_shared<std::string>();
  auto digest = std::make_shared<std::string>();
  imp->add_option("path", *path, "Image directory, or an http(s) URL of a tar of one")->required();
  imp->add_option("--name", *name, "Name in the cache (default: the directory's name)");
  imp->add_option("--digest", *digest, "For a URL: the archive's sha256 (sha256sum FILE)");
  imp->callback([&ctx, &exit_code, path, name, digest]() {
    cove::v1::ImportImageRequest req;
    const bool url = path->rfind("http://", 0) == 0 || path->rfind("https://", 0) == 0;
    req.set_path(url ? *path : std::filesystem::absolute(*path).string());
    req.set_name(*name);
    req.set_digest(*digest);
    grpc::ClientContext call;
    auto reader = ctx.images().Import(&call, req);
    cove::v1::ImportImageResponse resp;
    while (reader->Read(&resp)) {
      if (resp.has_image()) {
        std::cout << "imported " << resp.image().name() << " (" << resp.image().arch() << ")\n";
      } else {
        std::cerr << "==> " << resp.phase() << (resp.message().empty() ? "" : ": ")
                  << resp.message() << "\n";
      }
    }
    grpc::Status st = reader->Finish();
    if (!st.ok()) exit_code = Context::Fail(st);
  });

  auto* del = image->add_subcommand("delete", "Delete a cached image")->alias("rm");
  auto del_name = std::make_shared<std::string>();
  del->add_option("name", *del_name, "Image name")->required();
  del->callback([&ctx, &exit_code, del_name]() {
    cove::v1::DeleteImageRequest req;
    req.set_name(*del_name);
    cove::v1::DeleteImageResponse resp;
    grpc::ClientContext call;
    grpc::Status st = ctx.images().Delete(&call, req, &resp);
    if (!st.ok()) {
      exit_code = Context::Fail(st);
      return;
    }
    std::cout << "deleted image " << *del_name << "\n";
  });
}

}  // namespace cove::client
