// Builders for crafted packets in the wire tests.
//
// Real segments come from tests/fixtures/linux_capture.hpp; these builders make the ones a
// capture cannot give us: malformed headers, odd flags, fragments, every option kind.
// They lay bytes out field by field (no structs cast onto buffers) and compute checksums
// with their own RFC 1071 sum, so a test that checks the decoder's checksum verdict does
// not merely compare the library with itself. Fields not set keep harmless defaults, so a
// test names only what it is about.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>

#include "tcpprobe/wire/bytes.hpp"
#include "tcpprobe/wire/ipv4.hpp"
#include "tcpprobe/wire/tcp_header.hpp"

namespace tcpprobe::wire::craft {

inline constexpr Ipv4Addr client{0xC6120001u};  // 198.18.0.1
inline constexpr Ipv4Addr server{0xC6120002u};  // 198.18.0.2

struct Tcp {
    std::uint16_t sport = 40000;
    std::uint16_t dport = 80;
    std::uint32_t seq = 1000;
    std::uint32_t ack = 0;
    std::uint16_t flags = flag::syn;  ///< all 12 bits, reserved and AE included
    std::uint16_t window = 65535;
    std::uint16_t urgent = 0;
    ByteVec options;                  ///< raw option bytes, copied as given
    ByteVec payload;
    std::optional<std::uint8_t> data_offset;  ///< default: 5 + options.size() / 4
    std::optional<std::uint16_t> checksum;    ///< default: the correct one
};

struct Ip {
    Ipv4Addr src = client;
    Ipv4Addr dst = server;
    std::uint8_t version = 4;
    std::uint8_t tos = 0;
    std::uint16_t id = 0x1234;
    bool df = true;
    bool mf = false;
    std::uint16_t frag_offset = 0;  ///< in 8-byte units
    std::uint8_t ttl = 64;
    std::uint8_t protocol = ip_proto_tcp;
    ByteVec options;                          ///< raw, a multiple of 4
    std::optional<std::uint8_t> ihl;          ///< default: 5 + options.size() / 4
    std::optional<std::uint16_t> total_length;  ///< default: header + payload
};

/// RFC 1071, written out independently of wire::internet_checksum.
inline std::uint16_t ones_complement_sum(Bytes b, std::uint32_t sum = 0) {
    for (std::size_t i = 0; i < b.size(); i += 2) {
        std::uint32_t word = std::uint32_t{b[i]} << 8;
        if (i + 1 < b.size()) word |= b[i + 1];
        sum += word;
    }
    while (sum >> 16) sum = (sum & 0xFFFFu) + (sum >> 16);
    return static_cast<std::uint16_t>(sum);
}

inline std::uint16_t tcp_checksum(Ipv4Addr src, Ipv4Addr dst, Bytes tcp) {
    std::uint32_t pseudo = (src.value >> 16) + (src.value & 0xFFFFu) + (dst.value >> 16) +
                           (dst.value & 0xFFFFu) + ip_proto_tcp + static_cast<std::uint32_t>(tcp.size());
    return static_cast<std::uint16_t>(~ones_complement_sum(tcp, pseudo));
}

/// A TCP header + options + payload, checksummed for (src, dst) unless t.checksum is set.
inline ByteVec tcp_segment(const Tcp& t, Ipv4Addr src = client, Ipv4Addr dst = server) {
    ByteVec b;
    append_be16(b, t.sport);
    append_be16(b, t.dport);
    append_be32(b, t.seq);
    append_be32(b, t.ack);
    auto offset = t.data_offset.value_or(static_cast<std::uint8_t>(5 + t.options.size() / 4));
    append_be16(b, static_cast<std::uint16_t>((offset << 12) | (t.flags & flag::all)));
    append_be16(b, t.window);
    append_be16(b, 0);
    append_be16(b, t.urgent);
    b.insert(b.end(), t.options.begin(), t.options.end());
    b.insert(b.end(), t.payload.begin(), t.payload.end());
    store_be16(b, 16, t.checksum.value_or(tcp_checksum(src, dst, b)));
    return b;
}

/// An IPv4 header with a correct header checksum, followed by payload.
inline ByteVec ipv4_packet(const Ip& ip, Bytes payload) {
    ByteVec b;
    auto ihl = ip.ihl.value_or(static_cast<std::uint8_t>(5 + ip.options.size() / 4));
    b.push_back(static_cast<std::uint8_t>((ip.version << 4) | (ihl & 0x0F)));
    b.push_back(ip.tos);
    auto header_len = 20 + ip.options.size();
    append_be16(b, ip.total_length.value_or(static_cast<std::uint16_t>(header_len + payload.size())));
    append_be16(b, ip.id);
    append_be16(b, static_cast<std::uint16_t>((ip.df ? 0x4000 : 0) | (ip.mf ? 0x2000 : 0) |
                                              (ip.frag_offset & 0x1FFF)));
    b.push_back(ip.ttl);
    b.push_back(ip.protocol);
    append_be16(b, 0);
    append_be32(b, ip.src.value);
    append_be32(b, ip.dst.value);
    b.insert(b.end(), ip.options.begin(), ip.options.end());
    store_be16(b, 10, static_cast<std::uint16_t>(~ones_complement_sum(Bytes{b}.first(header_len))));
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

/// IPv4 + TCP with both checksums right (unless overridden).
inline ByteVec tcp_packet(const Tcp& t, const Ip& ip = {}) {
    return ipv4_packet(ip, tcp_segment(t, ip.src, ip.dst));
}

/// An ICMP port unreachable (type 3 code 3) from `from` to the quoted packet's source,
/// quoting its IP header and the first 8 bytes after it (RFC 792).
inline ByteVec icmp_port_unreachable(Ipv4Addr from, Bytes quoted_packet) {
    ByteVec icmp = {3, 3, 0, 0, 0, 0, 0, 0};
    icmp.insert(icmp.end(), quoted_packet.begin(), quoted_packet.begin() + std::min<std::size_t>(28, quoted_packet.size()));
    store_be16(icmp, 2, static_cast<std::uint16_t>(~ones_complement_sum(icmp)));
    Ip ip;
    ip.src = from;
    ip.dst = Ipv4Addr{load_be32(quoted_packet, 12)};
    ip.protocol = 1;
    ip.id = 0;
    return ipv4_packet(ip, icmp);
}

/// Ethernet II header (zero MACs) in front of a packet.
inline ByteVec ethernet(Bytes packet, std::uint16_t ethertype = 0x0800) {
    ByteVec b(12, 0);
    append_be16(b, ethertype);
    b.insert(b.end(), packet.begin(), packet.end());
    return b;
}

inline ByteVec concat(Bytes a, Bytes b) {
    ByteVec out(a.begin(), a.end());
    out.insert(out.end(), b.begin(), b.end());
    return out;
}

}  // namespace tcpprobe::wire::craft
