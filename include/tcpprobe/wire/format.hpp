// The one-line segment notation used everywhere: logs, text reports, JSON "line" fields
// and test failure messages. It follows packetdrill/tcpdump so anyone who reads those
// can read this:
//
//   0.000000 > S 0:0(0) win 64240 <mss 1460,sackOK,TS val 7 ecr 0,nop,wscale 7>
//   0.000112 < S. 0:0(0) ack 1 win 65160 <mss 1460,sackOK,TS val 9 ecr 7,nop,wscale 7>
//
// ">" is a segment we sent, "<" one we received. Sequence numbers are relative to ISS
// (ours) and IRS (the peer's) once they are known, absolute before.
#pragma once

#include <optional>
#include <string>

#include "tcpprobe/time.hpp"
#include "tcpprobe/wire/segment.hpp"

namespace tcpprobe::wire {

enum class Direction { Out, In };

struct FormatContext {
    Direction dir = Direction::Out;
    std::optional<Seq> iss;  ///< our initial sequence number
    std::optional<Seq> irs;  ///< the peer's initial sequence number
};

/// "S.", "F.", "R", "P.", "." — tcpdump's letters, plus "a" for AE and "+rsv" for reserved bits.
std::string format_flags(std::uint16_t flags);
std::string format_options(const OptionList& options);
/// The segment without the time: "> S. 0:0(0) ack 1 win 65160 <...>".
std::string format_segment(const Segment& s, const FormatContext& ctx);
/// With a leading time in seconds since the run's start, six decimals.
std::string format_segment_line(Duration since_start, const Segment& s, const FormatContext& ctx);

}  // namespace tcpprobe::wire
