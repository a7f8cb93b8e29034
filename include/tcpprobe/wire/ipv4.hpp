// Checked view of an IPv4 header (RFC 791).
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |Version|  IHL  |Type of Service|          Total Length         |
//   |         Identification        |Flags|      Fragment Offset    |
//   |  Time to Live |    Protocol   |         Header Checksum       |
//   |                       Source Address                          |
//   |                    Destination Address                        |
//   |                    Options                    |    Padding    |
//
// The view can only be made by parse(), which checks version, IHL and that the header
// fits the captured bytes. The payload is clamped to min(total length, captured bytes);
// a capture shorter than the total length is flagged, not rejected (snaplen, hostile).
#pragma once

#include <cstdint>
#include <string>

#include "tcpprobe/result.hpp"
#include "tcpprobe/wire/bytes.hpp"
#include "tcpprobe/wire/error.hpp"

namespace tcpprobe::wire {

inline constexpr std::uint8_t ip_proto_icmp = 1;
inline constexpr std::uint8_t ip_proto_tcp = 6;

/// An IPv4 address in host byte order.
struct Ipv4Addr {
    std::uint32_t value = 0;
    friend constexpr bool operator==(Ipv4Addr, Ipv4Addr) = default;
};
std::string to_string(Ipv4Addr a);

class Ipv4View {
public:
    static Result<Ipv4View, WireError> parse(Bytes packet);

    std::uint8_t ihl() const { return b_[0] & 0x0F; }
    std::size_t header_len() const { return std::size_t{ihl()} * 4; }
    std::uint8_t tos() const { return b_[1]; }
    std::uint16_t total_length() const { return load_be16(b_, 2); }
    std::uint16_t id() const { return load_be16(b_, 4); }
    bool df() const { return (b_[6] & 0x40) != 0; }
    bool mf() const { return (b_[6] & 0x20) != 0; }
    bool reserved_flag() const { return (b_[6] & 0x80) != 0; }
    std::uint16_t frag_offset() const { return load_be16(b_, 6) & 0x1FFF; }
    bool is_fragment() const { return mf() || frag_offset() != 0; }
    std::uint8_t ttl() const { return b_[8]; }
    std::uint8_t protocol() const { return b_[9]; }
    std::uint16_t checksum() const { return load_be16(b_, 10); }
    Ipv4Addr src() const { return {load_be32(b_, 12)}; }
    Ipv4Addr dst() const { return {load_be32(b_, 16)}; }
    Bytes options() const { return b_.subspan(20, header_len() - 20); }
    Bytes header() const { return b_.first(header_len()); }
    /// Bytes after the header, up to the total length or the end of the capture.
    Bytes payload() const;
    /// The capture holds fewer bytes than the total length says.
    bool truncated() const { return b_.size() < total_length(); }

private:
    explicit Ipv4View(Bytes b) : b_(b) {}
    Bytes b_;
};

/// RFC 1071 one's-complement sum over bytes, folded; used to *verify* received checksums.
std::uint16_t internet_checksum(Bytes b, std::uint32_t initial = 0);

}  // namespace tcpprobe::wire
