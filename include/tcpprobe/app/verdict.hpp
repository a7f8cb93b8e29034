// A run's verdict: the lower-case word of the summary ("verdict": "open") and, through
// one exhaustive switch, the exit status (DESIGN §1): 0 the behaviour under test was
// observed, 1 a negative answer, 2 no answer (or not enough to tell), 3 an ICMP error.
// Each command turns its scenario's own outcome enum into a Verdict with a switch of its
// own; a new outcome without a Verdict, or a Verdict without an exit status, does not
// compile (-Wswitch, -Werror).
#pragma once

#include <string_view>

#include "tcpprobe/app/report.hpp"
#include "tcpprobe/probe/close.hpp"
#include "tcpprobe/probe/time_wait.hpp"
#include "tcpprobe/probe/verdict.hpp"

namespace tcpprobe::app {

enum class Verdict {
    // the connection: handshake, ping, and the connect step of every command
    Pending, Open, Closed, Filtered, Unreachable,
    // teardown, half-close
    Clean, Differs, Incomplete,
    // a retransmission schedule: retransmit, listen
    Inferred, Measured, NoRetransmission, Inconclusive,
    // listen
    NoClient, Observed,
    // time-wait (Observed, Incomplete above too)
    NoTimeWait, SilentEnd, LongerThanMax, Inconsistent, Accepted, Refused, Killed, Ignored, ReAcked, Reset, NoAnswer,
    // fin-wait-2 (Measured, SilentEnd, Inconsistent, Incomplete, Inconclusive above too), idle
    NoBound, Forgotten, NoTimeout,
    // keepalive
    Keepalive, NoKeepalive, Answered, PartlyAnswered, Unanswered,
    // profile (--compare: Same, or Differs above)
    Profiled, Same,
    Interrupted,
};

std::string_view to_string(Verdict v);
/// The one place a verdict becomes an exit status.
int exit_code(Verdict v);

Verdict verdict_of(probe::Verdict v);
Verdict verdict_of(probe::CloseOutcome o);
Verdict verdict_of(ScheduleVerdict v);
/// TwOutcome::ConnectFailed has no word of its own: callers report the connect verdict.
Verdict verdict_of(probe::TwOutcome o);

}  // namespace tcpprobe::app
