// Verdict words and exit statuses (see verdict.hpp).
#include "tcpprobe/app/verdict.hpp"

#include "tcpprobe/app/cli.hpp"

namespace tcpprobe::app {

std::string_view to_string(Verdict v) {
    switch (v) {
        case Verdict::Pending: return "pending";
        case Verdict::Open: return "open";
        case Verdict::Closed: return "closed";
        case Verdict::Filtered: return "filtered";
        case Verdict::Unreachable: return "unreachable";
        case Verdict::Clean: return "clean";
        case Verdict::Differs: return "differs";
        case Verdict::Incomplete: return "incomplete";
        case Verdict::Inferred: return "inferred";
        case Verdict::Measured: return "measured";
        case Verdict::NoRetransmission: return "no-retransmission";
        case Verdict::Inconclusive: return "inconclusive";
        case Verdict::NoClient: return "no-client";
        case Verdict::Observed: return "observed";
        case Verdict::NoTimeWait: return "no-time-wait";
        case Verdict::SilentEnd: return "silent-end";
        case Verdict::LongerThanMax: return "longer-than-max";
        case Verdict::Inconsistent: return "inconsistent";
        case Verdict::Accepted: return "accepted";
        case Verdict::Refused: return "refused";
        case Verdict::Killed: return "killed";
        case Verdict::Ignored: return "ignored";
        case Verdict::ReAcked: return "re-acked";
        case Verdict::Reset: return "reset";
        case Verdict::NoAnswer: return "no-answer";
        case Verdict::NoBound: return "no-bound";
        case Verdict::Forgotten: return "forgotten";
        case Verdict::NoTimeout: return "no-timeout";
        case Verdict::Keepalive: return "keepalive";
        case Verdict::NoKeepalive: return "no-keepalive";
        case Verdict::Answered: return "answered";
        case Verdict::PartlyAnswered: return "partly-answered";
        case Verdict::Unanswered: return "unanswered";
        case Verdict::Profiled: return "profiled";
        case Verdict::Same: return "same";
        case Verdict::Interrupted: return "interrupted";
    }
    return "?";
}

int exit_code(Verdict v) {
    switch (v) {
        // The behaviour under test was observed. silent-end: TIME-WAIT bracketed, its end
        // a silence; longer-than-max: it answered throughout, only our time ran out.
        case Verdict::Open:
        case Verdict::Clean:
        case Verdict::Inferred:
        case Verdict::Measured:
        case Verdict::Observed:
        case Verdict::SilentEnd:
        case Verdict::LongerThanMax:
        case Verdict::Accepted:
        case Verdict::Refused:
        case Verdict::Killed:
        case Verdict::Ignored:
        case Verdict::ReAcked:
        // fin-wait-2 / idle: a bracket, or nothing ended the state within the time given;
        // keepalive: the peer probes, or answers ours.
        case Verdict::NoBound:
        case Verdict::Forgotten:
        case Verdict::NoTimeout:
        case Verdict::Keepalive:
        case Verdict::Answered:
        // profile: the host answered and was profiled; --compare found no difference.
        case Verdict::Profiled:
        case Verdict::Same:
            return 0;
        // A negative answer.
        case Verdict::Closed:
        case Verdict::Differs:
        case Verdict::NoRetransmission:
        case Verdict::NoTimeWait:
        case Verdict::Reset:
        case Verdict::Inconsistent:
        case Verdict::NoKeepalive:
        case Verdict::PartlyAnswered:
            return 1;
        // No answer, or not enough of one to tell.
        case Verdict::Pending:
        case Verdict::Filtered:
        case Verdict::Incomplete:
        case Verdict::Inconclusive:
        case Verdict::NoClient:
        case Verdict::NoAnswer:
        case Verdict::Unanswered:
        case Verdict::Interrupted:
            return 2;
        case Verdict::Unreachable:
            return 3;
    }
    return exit_status::internal;
}

Verdict verdict_of(probe::Verdict v) {
    switch (v) {
        case probe::Verdict::Pending: return Verdict::Pending;
        case probe::Verdict::Open: return Verdict::Open;
        case probe::Verdict::Closed: return Verdict::Closed;
        case probe::Verdict::Filtered: return Verdict::Filtered;
        case probe::Verdict::Unreachable: return Verdict::Unreachable;
    }
    return Verdict::Pending;
}

Verdict verdict_of(probe::CloseOutcome o) {
    switch (o) {
        case probe::CloseOutcome::Pending: return Verdict::Pending;
        case probe::CloseOutcome::Clean: return Verdict::Clean;
        case probe::CloseOutcome::Differs: return Verdict::Differs;
        case probe::CloseOutcome::Incomplete: return Verdict::Incomplete;
    }
    return Verdict::Pending;
}

Verdict verdict_of(ScheduleVerdict v) {
    switch (v) {
        case ScheduleVerdict::Inferred: return Verdict::Inferred;
        case ScheduleVerdict::Measured: return Verdict::Measured;
        case ScheduleVerdict::NoRetransmission: return Verdict::NoRetransmission;
        case ScheduleVerdict::Inconclusive: return Verdict::Inconclusive;
    }
    return Verdict::Inconclusive;
}

Verdict verdict_of(probe::TwOutcome o) {
    switch (o) {
        case probe::TwOutcome::Pending: return Verdict::Pending;
        // Only an open port that answered after our SYNs gave up gets here (the other
        // failures report the connect verdict): the test did not run.
        case probe::TwOutcome::ConnectFailed: return Verdict::Incomplete;
        case probe::TwOutcome::Reset: return Verdict::Reset;
        case probe::TwOutcome::Incomplete: return Verdict::Incomplete;
        case probe::TwOutcome::Interrupted: return Verdict::Interrupted;
        case probe::TwOutcome::NoAnswer: return Verdict::NoAnswer;
        case probe::TwOutcome::NoTimeWait: return Verdict::NoTimeWait;
        case probe::TwOutcome::Observed: return Verdict::Observed;
        case probe::TwOutcome::SilentEnd: return Verdict::SilentEnd;
        case probe::TwOutcome::LongerThanMax: return Verdict::LongerThanMax;
        case probe::TwOutcome::Inconsistent: return Verdict::Inconsistent;
        case probe::TwOutcome::Accepted: return Verdict::Accepted;
        case probe::TwOutcome::Refused: return Verdict::Refused;
        case probe::TwOutcome::Killed: return Verdict::Killed;
        case probe::TwOutcome::Ignored: return Verdict::Ignored;
        case probe::TwOutcome::ReAcked: return Verdict::ReAcked;
    }
    return Verdict::Pending;
}

}  // namespace tcpprobe::app
