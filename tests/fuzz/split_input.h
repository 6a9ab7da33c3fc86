// Turns one fuzz input into a byte stream plus the reads it arrives in, so the
// fuzzer explores both what a peer sends and how the kernel splits it.
//
// Layout: k = byte 0 % 8; the next k bytes are piece lengths, used in turn
// and cycled until the stream is used up (0 = an empty read); the rest of
// the input is the stream. k = 0, or all lengths 0, feeds the stream whole.
// Seeds therefore start with "\x00" followed by the bytes on the wire.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace cove::fuzz {

struct SplitInput {
  std::string_view stream;
  std::vector<std::string_view> pieces;  // concatenated, they equal `stream`
};

inline SplitInput Split(const uint8_t* data, size_t size) {
  SplitInput in;
  if (size == 0) return in;
  const size_t k = data[0] % 8;
  const size_t header = 1 + k < size ? 1 + k : size;
  const uint8_t* lengths = data + 1;
  const size_t num_lengths = header - 1;
  in.stream = std::string_view(reinterpret_cast<const char*>(data) + header, size - header);

  size_t cycle_total = 0;
  for (size_t i = 0; i < num_lengths; ++i) cycle_total += lengths[i];
  if (cycle_total == 0) {
    in.pieces.push_back(in.stream);
    return in;
  }
  size_t pos = 0;
  for (size_t i = 0; pos < in.stream.size(); i = (i + 1) % num_lengths) {
    const size_t n = std::min<size_t>(lengths[i], in.stream.size() - pos);
    in.pieces.push_back(in.stream.substr(pos, n));
    pos += n;
  }
  return in;
}

}  // namespace cove::fuzz
