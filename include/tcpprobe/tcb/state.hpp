// The eleven connection states of RFC 9293 §3.3.2, spelled as the RFC spells them.
#pragma once

#include <initializer_list>
#include <string_view>

#include <fmt/format.h>

namespace tcpprobe::tcb {

enum class State {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
};

inline constexpr State all_states[] = {
    State::Closed,   State::Listen,   State::SynSent,   State::SynReceived,
    State::Established, State::FinWait1, State::FinWait2, State::CloseWait,
    State::Closing,  State::LastAck,  State::TimeWait};

std::string_view to_string(State s);

/// Multi-state predicates are sets, never comparisons on enumerator order.
constexpr bool in_state(State s, std::initializer_list<State> set) {
    for (State x : set)
        if (x == s) return true;
    return false;
}

/// RFC 9293: every state from ESTABLISHED on, plus SYN-RECEIVED, shares one processing path.
constexpr bool is_synchronized(State s) {
    return in_state(s, {State::SynReceived, State::Established, State::FinWait1, State::FinWait2,
                        State::CloseWait, State::Closing, State::LastAck, State::TimeWait});
}

}  // namespace tcpprobe::tcb

template <>
struct fmt::formatter<tcpprobe::tcb::State> : fmt::formatter<std::string_view> {
    auto format(tcpprobe::tcb::State s, fmt::format_context& ctx) const {
        return fmt::formatter<std::string_view>::format(tcpprobe::tcb::to_string(s), ctx);
    }
};
