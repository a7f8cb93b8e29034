// Text forms of segment vocabulary: "198.18.0.1:40000" for an endpoint.
#include "tcpprobe/wire/segment.hpp"

#include <fmt/format.h>

namespace tcpprobe::wire {

std::string to_string(const Endpoint& e) { return fmt::format("{}:{}", to_string(e.addr), e.port); }

}  // namespace tcpprobe::wire
