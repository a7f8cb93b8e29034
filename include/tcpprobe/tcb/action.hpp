// What the TCB decides. The TCB never performs I/O: every method returns a list of
// actions that the caller (a probe scenario, then the runner) carries out or, on
// purpose, does not (a probe that must not ACK the peer's FIN just drops that send).
#pragma once

#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tcpprobe/tcb/state.hpp"
#include "tcpprobe/time.hpp"
#include "tcpprobe/wire/segment.hpp"

namespace tcpprobe::tcb {

enum class TimerKind { Retransmit, TimeWait };
std::string_view to_string(TimerKind k);

/// Why a segment is sent; reports and tests tell a challenge ACK from a plain ACK.
enum class SendReason {
    Syn, SynAck, Ack, Data, Fin, Rst, ChallengeAck, Retransmission, ResetReply,
};
std::string_view to_string(SendReason r);

struct SendSegment {
    wire::Segment segment;
    SendReason reason;
};
struct ArmTimer {
    TimerKind kind;
    Instant at;
};
struct CancelTimer {
    TimerKind kind;
};
struct StateChanged {
    State from;
    State to;
    std::string cause;
};
struct DataReceived {
    wire::Seq seq;
    wire::ByteVec data;
};
/// The connection was reset by an acceptable RST from the peer.
struct ConnectionReset {
    State in_state;
};
/// Our own retransmissions ran out.
struct GaveUp {
    std::string what;  ///< "SYN", "FIN", "data"
    unsigned retransmissions;
};
/// Something worth reporting that changes nothing: anomalies, ignored segments.
struct Note {
    std::string text;
};

using Action = std::variant<SendSegment, ArmTimer, CancelTimer, StateChanged, DataReceived,
                            ConnectionReset, GaveUp, Note>;
using Actions = std::vector<Action>;

}  // namespace tcpprobe::tcb

template <>
struct fmt::formatter<tcpprobe::tcb::SendReason> : fmt::formatter<std::string_view> {
    auto format(tcpprobe::tcb::SendReason r, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(tcpprobe::tcb::to_string(r), ctx);
    }
};
