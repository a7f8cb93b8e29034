// TCP options as an ordered list (RFC 9293 §3.2, RFC 7323, RFC 2018, RFC 7413, RFC 2385).
//
// The list keeps NOP and EOL and unknown kinds in the order they arrived, so a capture
// can be reproduced byte for byte and a report shows exactly what a peer sent. Decoding
// is strict: every malformed case has its own WireError. Encoding is permissive: any
// ordered list, including Unknown{kind, bytes} for raw options the user asks for, as
// long as it fits in the 40 bytes of option space.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

#include "tcpprobe/result.hpp"
#include "tcpprobe/wire/bytes.hpp"
#include "tcpprobe/wire/error.hpp"
#include "tcpprobe/wire/seq.hpp"

namespace tcpprobe::wire {

inline constexpr std::size_t max_option_bytes = 40;

namespace opt {
struct Eol {
    friend bool operator==(const Eol&, const Eol&) = default;
};
struct Nop {
    friend bool operator==(const Nop&, const Nop&) = default;
};
struct Mss {
    std::uint16_t value = 0;
    friend bool operator==(const Mss&, const Mss&) = default;
};
struct WindowScale {
    std::uint8_t shift = 0;
    friend bool operator==(const WindowScale&, const WindowScale&) = default;
};
struct SackPermitted {
    friend bool operator==(const SackPermitted&, const SackPermitted&) = default;
};
struct Sack {
    std::vector<std::pair<Seq, Seq>> blocks;  ///< left edge, right edge
    friend bool operator==(const Sack&, const Sack&) = default;
};
struct Timestamps {
    std::uint32_t tsval = 0;
    std::uint32_t tsecr = 0;
    friend bool operator==(const Timestamps&, const Timestamps&) = default;
};
struct FastOpen {
    ByteVec cookie;  ///< empty = cookie request
    friend bool operator==(const FastOpen&, const FastOpen&) = default;
};
struct Md5 {
    std::array<std::uint8_t, 16> digest{};
    friend bool operator==(const Md5&, const Md5&) = default;
};
struct Unknown {
    std::uint8_t kind = 0;
    ByteVec data;  ///< the bytes after kind and length
    friend bool operator==(const Unknown&, const Unknown&) = default;
};

inline constexpr std::uint8_t kind_eol = 0;
inline constexpr std::uint8_t kind_nop = 1;
inline constexpr std::uint8_t kind_mss = 2;
inline constexpr std::uint8_t kind_wscale = 3;
inline constexpr std::uint8_t kind_sack_permitted = 4;
inline constexpr std::uint8_t kind_sack = 5;
inline constexpr std::uint8_t kind_timestamps = 8;
inline constexpr std::uint8_t kind_md5 = 19;
inline constexpr std::uint8_t kind_fast_open = 34;
}  // namespace opt

using TcpOption = std::variant<opt::Eol, opt::Nop, opt::Mss, opt::WindowScale, opt::SackPermitted,
                               opt::Sack, opt::Timestamps, opt::FastOpen, opt::Md5, opt::Unknown>;
using OptionList = std::vector<TcpOption>;

/// Decodes the option bytes of a TCP header. Stops after EOL (the rest is padding).
Result<OptionList, WireError> decode_options(Bytes raw);
/// Same, but keeps the options decoded before an error in `out` (reports show them).
std::optional<WireError> decode_options_into(Bytes raw, OptionList& out);

/// Encodes an ordered list, padded with zero (EOL) bytes to a multiple of 4.
Result<ByteVec, WireError> encode_options(const OptionList& options);

/// Unpadded encoded size of the list.
std::size_t encoded_size(const OptionList& options);

/// The first option of a given alternative, if present.
template <class T>
std::optional<T> find_option(const OptionList& options) {
    for (const auto& o : options)
        if (const auto* p = std::get_if<T>(&o)) return *p;
    return std::nullopt;
}

/// Replaces the first option of type T by value (used to refresh timestamps on send).
template <class T>
bool replace_option(OptionList& options, const T& value) {
    for (auto& o : options)
        if (std::holds_alternative<T>(o)) {
            o = value;
            return true;
        }
    return false;
}

}  // namespace tcpprobe::wire
