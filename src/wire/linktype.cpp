// Link-layer headers: Ethernet II with up to two VLAN tags, Linux cooked capture v1
// (16 bytes, protocol at 14) and v2 (20 bytes, protocol at 0), BSD/OpenBSD loopback
// (4-byte address family), and raw IP.
#include "tcpprobe/wire/linktype.hpp"

namespace tcpprobe::wire {

namespace {
constexpr std::uint16_t ethertype_ipv4 = 0x0800;
constexpr std::uint16_t ethertype_vlan = 0x8100;
constexpr std::uint16_t ethertype_qinq = 0x88A8;
constexpr std::uint32_t af_inet = 2;

Result<Bytes, WireError> raw_ip(Bytes b) {
    if (b.empty()) return Err{WireError::LinkTruncated};
    if ((b[0] >> 4) != 4) return Err{WireError::NotIpv4};
    return b;
}
}  // namespace

Result<Bytes, WireError> strip_link_layer(int link_type, Bytes frame) {
    switch (link_type) {
        case dlt::en10mb: {
            std::size_t at = 12;
            for (int tags = 0;; ++tags) {
                if (frame.size() < at + 2) return Err{WireError::LinkTruncated};
                std::uint16_t type = load_be16(frame, at);
                if ((type == ethertype_vlan || type == ethertype_qinq) && tags < 2) {
                    at += 4;
                    continue;
                }
                if (type != ethertype_ipv4) return Err{WireError::NotIpv4};
                return frame.subspan(at + 2);
            }
        }
        case dlt::linux_sll:
            if (frame.size() < 16) return Err{WireError::LinkTruncated};
            if (load_be16(frame, 14) != ethertype_ipv4) return Err{WireError::NotIpv4};
            return frame.subspan(16);
        case dlt::linux_sll2:
            if (frame.size() < 20) return Err{WireError::LinkTruncated};
            if (load_be16(frame, 0) != ethertype_ipv4) return Err{WireError::NotIpv4};
            return frame.subspan(20);
        case dlt::null:
        case dlt::loop: {
            if (frame.size() < 4) return Err{WireError::LinkTruncated};
            // DLT_NULL stores the family in the capturing host's order, which may not be
            // ours: accept AF_INET in either order. DLT_LOOP is always network order.
            std::uint32_t be = load_be32(frame, 0);
            std::uint32_t le = (be >> 24) | ((be >> 8) & 0xFF00) | ((be << 8) & 0xFF0000) | (be << 24);
            bool inet = be == af_inet || (link_type == dlt::null && le == af_inet);
            if (!inet) return Err{WireError::NotIpv4};
            return frame.subspan(4);
        }
        case dlt::raw:
        case dlt::raw_bsd:
        case dlt::raw_file:
        case dlt::ipv4:
            return raw_ip(frame);
        default:
            return Err{WireError::UnknownLinkType};
    }
}

}  // namespace tcpprobe::wire
