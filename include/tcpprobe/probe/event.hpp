// What a scenario reports: segments as captured (both directions), state changes (ours
// observed, the peer's inferred), ICMP errors and notes. Renderers (text, JSON) turn
// these into output; the core only produces them.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "tcpprobe/time.hpp"
#include "tcpprobe/wire/format.hpp"
#include "tcpprobe/wire/icmp.hpp"
#include "tcpprobe/wire/segment.hpp"

namespace tcpprobe::probe {

enum class Severity { Info, Anomaly };

struct SegmentEvent {
    wire::Direction dir;
    wire::Segment segment;
    std::string line;    ///< format_segment(), relative to the flow's ISS/IRS
    bool ours = true;    ///< an outgoing segment we did not send is the local kernel's
};
struct StateEvent {
    std::string side;  ///< "local" (observed) or "peer" (inferred)
    std::string from;
    std::string to;
    std::string cause;
};
struct IcmpEvent {
    wire::IcmpError error;
    std::string name;
};
/// One finished ping probe.
struct ProbeEvent {
    std::string target;            ///< "address:port"
    std::uint32_t seq = 0;         ///< the probe's number for its destination
    std::string result;            ///< "S.", "R.", an ICMP name, or "no answer"
    std::optional<Duration> rtt;   ///< SYN capture -> answer capture
};
struct NoteEvent {
    Severity severity;
    std::string text;
};

struct Event {
    Instant t;
    std::uint16_t flow = 0;  ///< our source port: tells flows apart in multi-flow runs
    std::variant<SegmentEvent, StateEvent, IcmpEvent, NoteEvent, ProbeEvent> body;
};

/// What a scenario asks the runner to do and to report.
struct Outbox {
    std::vector<wire::Segment> send;
    std::vector<Event> events;
};

}  // namespace tcpprobe::probe
