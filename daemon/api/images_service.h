// cove.v1.Images over gRPC: translation only (see machines_service.h).
#pragma once

#include "cove/v1/images.grpc.pb.h"
#include "daemon/api/peer_auth.h"
#include "daemon/image/image_builder.h"
#include "daemon/image/image_store.h"
#include "daemon/loop/event_loop.h"
#include "daemon/machine/machine_manager.h"

namespace cove::daemon::api {

class ImagesService final : public cove::v1::Images::Service {
 public:
  ImagesService(EventLoop& loop, MachineManager& manager, ImageStore& images, ImageBuilder& builder,
                const PeerAuth& auth, std::string build_cache)
      : loop_(loop),
        manager_(manager),
        images_(images),
        builder_(builder),
        auth_(auth),
        build_cache_(std::move(build_cache)) {}

  grpc::Status List(grpc::ServerContext* ctx, const cove::v1::ListImagesRequest* req,
                    cove::v1::ListImagesResponse* resp) override;
  grpc::Status Build(grpc::ServerContext* ctx, const cove::v1::BuildImageRequest* req,
                     grpc::ServerWriter<cove::v1::BuildImageResponse>* writer) override;
  grpc::Status Import(grpc::ServerContext* ctx, const cove::v1::ImportImageRequest* req,
                      grpc::ServerWriter<cove::v1::ImportImageResponse>* writer) override;
  grpc::Status Delete(grpc::ServerContext* ctx, const cove::v1::DeleteImageRequest* req,
                      cove::v1::DeleteImageResponse* resp) override;

 private:
  // The last answer of an import: the image now at `dest`, named `name`.
  grpc::Status WriteImported(const std::string& dest, const std::string& name,
                             grpc::ServerWriter<cove::v1::ImportImageResponse>* writer);
  absl::StatusOr<std::vector<std::string>> UsersOf(const std::string& path);
  // Import of an http(s) URL: download (digest checked), unpack, verify,
  // then into the cache; on any failure nothing is left.
  grpc::Status ImportUrl(grpc::ServerContext* ctx, const cove::v1::ImportImageRequest* req,
                         grpc::ServerWriter<cove::v1::ImportImageResponse>* writer);

  EventLoop& loop_;
  MachineManager& manager_;
  ImageStore& images_;
  ImageBuilder& builder_;
  const PeerAuth& auth_;
  const std::string build_cache_;
};

}  // namespace cove::daemon::api
