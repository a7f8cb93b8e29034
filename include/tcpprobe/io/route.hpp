// Route and source selection, the local addresses, name resolution, an interface's MTU.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/wire/ipv4.hpp"

namespace tcpprobe::io {

struct Route {
    wire::Ipv4Addr source;
    std::string interface;
};

/// Source address from the routing table (connected UDP socket + getsockname) and the
/// interface holding it; either may be overridden. Throws EnvironmentError without a route.
Route select_route(wire::Ipv4Addr target, std::optional<wire::Ipv4Addr> source,
                   std::optional<std::string> interface);

/// True when `addr` is the broadcast address of a local interface (directed broadcast).
bool is_local_broadcast(wire::Ipv4Addr addr);

/// Every IPv4 address of this network namespace's interfaces.
std::vector<wire::Ipv4Addr> local_ipv4_addresses();

/// Resolves "host" to one IPv4 address. Throws UsageError.
wire::Ipv4Addr resolve_ipv4(const std::string& host);

/// MTU of an interface (SIOCGIFMTU); nullopt when it cannot be read.
std::optional<int> interface_mtu(const std::string& interface);

}  // namespace tcpprobe::io
