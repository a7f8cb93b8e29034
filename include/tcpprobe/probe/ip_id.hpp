// The IPv4 Identification of what we send. It belongs to the sender, not to the
// connection (RFC 791; RFC 6864 §4: unique per source, destination and protocol while a
// datagram may live): Linux counts it per socket from a random start. So the scenario
// (or whatever sends) owns the counter; the TCB, which is RFC 9293 state, never sees it.
#pragma once

#include <cstdint>

#include "tcpprobe/wire/segment.hpp"

namespace tcpprobe::probe {

class IpIds {
public:
    explicit IpIds(std::uint16_t first) : next_(first) {}
    /// Gives `seg` the next IP ID (wrapping at 65535) and returns it.
    wire::Segment& stamp(wire::Segment& seg) {
        seg.ip.id = next_++;
        return seg;
    }
    std::uint16_t next() const { return next_; }

private:
    std::uint16_t next_;
};

}  // namespace tcpprobe::probe
