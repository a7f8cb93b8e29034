// RFC spellings of states, timers and send reasons.
#include "tcpprobe/tcb/action.hpp"
#include "tcpprobe/tcb/state.hpp"

namespace tcpprobe::tcb {

std::string_view to_string(State s) {
    switch (s) {
        case State::Closed: return "CLOSED";
        case State::Listen: return "LISTEN";
        case State::SynSent: return "SYN-SENT";
        case State::SynReceived: return "SYN-RECEIVED";
        case State::Established: return "ESTABLISHED";
        case State::FinWait1: return "FIN-WAIT-1";
        case State::FinWait2: return "FIN-WAIT-2";
        case State::CloseWait: return "CLOSE-WAIT";
        case State::Closing: return "CLOSING";
        case State::LastAck: return "LAST-ACK";
        case State::TimeWait: return "TIME-WAIT";
    }
    return "?";
}

std::string_view to_string(TimerKind k) {
    switch (k) {
        case TimerKind::Retransmit: return "retransmit";
        case TimerKind::TimeWait: return "time-wait";
    }
    return "?";
}

std::string_view to_string(SendReason r) {
    switch (r) {
        case SendReason::Syn: return "syn";
        case SendReason::SynAck: return "syn-ack";
        case SendReason::Ack: return "ack";
        case SendReason::Data: return "data";
        case SendReason::Fin: return "fin";
        case SendReason::Rst: return "rst";
        case SendReason::ChallengeAck: return "challenge-ack";
        case SendReason::Retransmission: return "retransmission";
        case SendReason::ResetReply: return "reset-reply";
    }
    return "?";
}

}  // namespace tcpprobe::tcb
