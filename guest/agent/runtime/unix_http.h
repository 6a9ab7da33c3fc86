// Small blocking HTTP/1.0 over a guest unix socket: dockerd's API, asked
// with a short timeout (readiness pings, container names).
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "guest/agent/core/unique_fd.h"

namespace cove::agent {

// A connected socket, with `timeout_ms` on every read and write; invalid
// when nothing accepts there.
UniqueFd UnixConnect(const std::string& socket_path, int timeout_ms);

// GET `http_path`: the whole response (status line, headers, body), at most
// `max_bytes` of it and what came within `timeout_ms` in all; nullopt when it
// cannot be sent or nothing comes back.
std::optional<std::string> UnixHttpGet(const std::string& socket_path, const std::string& http_path,
                                       int timeout_ms, size_t max_bytes);

// The status code of a response ("HTTP/1.1 200 OK" -> 200), 0 when it is not one.
int HttpStatus(const std::string& response);

}  // namespace cove::agent
