// Checked view of a TCP header (RFC 9293 §3.1), with the AE bit of RFC 3168/AccECN.
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |          Source Port          |       Destination Port        |
//   |                        Sequence Number                        |
//   |                    Acknowledgment Number                      |
//   |  Data |Rsrvd|A|C|E|U|A|P|R|S|F|                               |
//   | Offset|     |E|W|C|R|C|S|S|Y|I|            Window             |
//   |       |     | |R|E|G|K|H|T|N|N|                               |
//   |           Checksum            |         Urgent Pointer        |
//   |                           [Options]                           |
//   |                             Data                             ...
//
// Flags are kept as the full 12 bits after the data offset, so reserved bits that a
// hostile or experimental peer sets are reported, never normalised away.
#pragma once

#include <cstdint>

#include "tcpprobe/result.hpp"
#include "tcpprobe/wire/bytes.hpp"
#include "tcpprobe/wire/error.hpp"
#include "tcpprobe/wire/seq.hpp"

namespace tcpprobe::wire {

/// The 12 bits following the data offset.
namespace flag {
inline constexpr std::uint16_t fin = 0x001;
inline constexpr std::uint16_t syn = 0x002;
inline constexpr std::uint16_t rst = 0x004;
inline constexpr std::uint16_t psh = 0x008;
inline constexpr std::uint16_t ack = 0x010;
inline constexpr std::uint16_t urg = 0x020;
inline constexpr std::uint16_t ece = 0x040;
inline constexpr std::uint16_t cwr = 0x080;
inline constexpr std::uint16_t ae = 0x100;
inline constexpr std::uint16_t reserved = 0xE00;
inline constexpr std::uint16_t all = 0xFFF;
}  // namespace flag

class TcpHeaderView {
public:
    static Result<TcpHeaderView, WireError> parse(Bytes segment);

    std::uint16_t src_port() const { return load_be16(b_, 0); }
    std::uint16_t dst_port() const { return load_be16(b_, 2); }
    Seq seq() const { return Seq{load_be32(b_, 4)}; }
    Seq ack() const { return Seq{load_be32(b_, 8)}; }
    std::uint8_t data_offset() const { return b_[12] >> 4; }
    std::size_t header_len() const { return std::size_t{data_offset()} * 4; }
    std::uint16_t flags() const { return load_be16(b_, 12) & flag::all; }
    std::uint16_t window() const { return load_be16(b_, 14); }
    std::uint16_t checksum() const { return load_be16(b_, 16); }
    std::uint16_t urgent() const { return load_be16(b_, 18); }
    Bytes options() const { return b_.subspan(20, header_len() - 20); }
    Bytes payload() const { return b_.subspan(header_len()); }

private:
    explicit TcpHeaderView(Bytes b) : b_(b) {}
    Bytes b_;
};

}  // namespace tcpprobe::wire
