// IPv4 header checks. See ipv4.hpp for what is rejected and what is only flagged.
#include "tcpprobe/wire/ipv4.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace tcpprobe::wire {

std::string to_string(Ipv4Addr a) {
    return fmt::format("{}.{}.{}.{}", a.value >> 24, (a.value >> 16) & 0xFF, (a.value >> 8) & 0xFF,
                       a.value & 0xFF);
}

Result<Ipv4View, WireError> Ipv4View::parse(Bytes packet) {
    if (packet.size() < 20) return Err{WireError::Ipv4Truncated};
    if ((packet[0] >> 4) != 4) return Err{WireError::Ipv4BadVersion};
    std::size_t ihl = packet[0] & 0x0F;
    if (ihl < 5) return Err{WireError::Ipv4BadIhl};
    if (ihl * 4 > packet.size()) return Err{WireError::Ipv4HeaderPastEnd};
    if (load_be16(packet, 2) < ihl * 4) return Err{WireError::Ipv4BadTotalLength};
    return Ipv4View{packet};
}

Bytes Ipv4View::payload() const {
    std::size_t end = std::min<std::size_t>(total_length(), b_.size());
    return b_.subspan(header_len(), end - header_len());
}

std::uint16_t internet_checksum(Bytes b, std::uint32_t initial) {
    std::uint64_t sum = initial;
    std::size_t i = 0;
    for (; i + 1 < b.size(); i += 2) sum += load_be16(b, i);
    if (i < b.size()) sum += std::uint32_t{b[i]} << 8;
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum & 0xFFFF);
}

}  // namespace tcpprobe::wire
