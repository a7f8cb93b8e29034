// Link-layer stripping for the capture types tcpprobe meets: Ethernet (veth, real NICs,
// 802.1Q/802.1ad tags), Linux cooked v1/v2 (the "any" device), raw IP and BSD loopback.
// The values are the DLT numbers pcap_datalink() returns on Linux.
#pragma once

#include "tcpprobe/result.hpp"
#include "tcpprobe/wire/bytes.hpp"
#include "tcpprobe/wire/error.hpp"

namespace tcpprobe::wire {

namespace dlt {
inline constexpr int null = 0;        ///< BSD loopback, 4-byte family in host order
inline constexpr int en10mb = 1;      ///< Ethernet II
inline constexpr int raw = 12;        ///< raw IP (Linux value)
inline constexpr int raw_bsd = 14;    ///< raw IP (OpenBSD value, found in files)
inline constexpr int raw_file = 101;  ///< LINKTYPE_RAW as stored in pcap files
inline constexpr int loop = 108;      ///< OpenBSD loopback, family in network order
inline constexpr int linux_sll = 113;
inline constexpr int ipv4 = 228;
inline constexpr int linux_sll2 = 276;
}  // namespace dlt

/// Returns the IPv4 packet inside a captured frame.
Result<Bytes, WireError> strip_link_layer(int link_type, Bytes frame);

}  // namespace tcpprobe::wire
