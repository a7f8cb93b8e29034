// Big-endian loads and stores at explicit offsets. Every header field in the wire layer
// is read through these; no struct is ever cast onto a buffer and no bitfields are used,
// so the code is correct on any host byte order without #if.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tcpprobe::wire {

using Bytes = std::span<const std::uint8_t>;
using ByteVec = std::vector<std::uint8_t>;

constexpr std::uint16_t load_be16(Bytes b, std::size_t at) {
    return static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]);
}
constexpr std::uint32_t load_be32(Bytes b, std::size_t at) {
    return (std::uint32_t{b[at]} << 24) | (std::uint32_t{b[at + 1]} << 16) |
           (std::uint32_t{b[at + 2]} << 8) | std::uint32_t{b[at + 3]};
}
constexpr void store_be16(std::span<std::uint8_t> b, std::size_t at, std::uint16_t v) {
    b[at] = static_cast<std::uint8_t>(v >> 8);
    b[at + 1] = static_cast<std::uint8_t>(v);
}
constexpr void store_be32(std::span<std::uint8_t> b, std::size_t at, std::uint32_t v) {
    b[at] = static_cast<std::uint8_t>(v >> 24);
    b[at + 1] = static_cast<std::uint8_t>(v >> 16);
    b[at + 2] = static_cast<std::uint8_t>(v >> 8);
    b[at + 3] = static_cast<std::uint8_t>(v);
}
inline void append_be16(ByteVec& out, std::uint16_t v) {
    out.push_back(static_cast<std::uint8_t>(v >> 8));
    out.push_back(static_cast<std::uint8_t>(v));
}
inline void append_be32(ByteVec& out, std::uint32_t v) {
    append_be16(out, static_cast<std::uint16_t>(v >> 16));
    append_be16(out, static_cast<std::uint16_t>(v));
}

/// Parses hex text ("0102ab", optional ":" or " " separators); false on bad input.
bool parse_hex(std::string_view text, ByteVec& out);
std::string to_hex(Bytes b);

}  // namespace tcpprobe::wire
