// A peer played from a transcript, for whole conversations with the TCB (STYLE §18,
// after packetdrill's .pkt scripts).
//
// A transcript is a list of steps, each at a time relative to the step before it (the
// "+0.010" of packetdrill). The peer sends a segment; the user calls OPEN, SEND, CLOSE or
// ABORT; we expect the TCB to send a segment at exactly that instant; time passes in
// silence; the TCB is in a given state. Time is simulated: before each step every
// timer due on the way fires at its own deadline, so a retransmission expected at "+1s"
// must have been sent at exactly one second after the previous step.
//
//   auto r = ScriptedPeer{t, clock}.run({
//       user_open_active(),                                  //  0.000 connect()
//       expect(0ms, sent("S", 0).why(SendReason::Syn)),      //  0.000 > S 0:0(0)
//       peer(10ms, seg("S.").seq(0).ack(1).mss(1460)),       //  0.010 < S. 0:0(0) ack 1
//       expect(0ms, sent(".", 1, 1)),                        //  0.010 > . 1:1(0) ack 1
//       now_in(State::Established),
//   });
//   check(r);
//
// Like packetdrill, the peer is strict: a segment the TCB sends that the transcript does
// not expect is an error, found at the latest when the next peer segment, user call or
// silence is due, or when the transcript ends. The run stops at the first error and
// the result carries the transcript of what really happened, in the project's notation.
#pragma once

#include <functional>
#include <source_location>
#include <string>
#include <variant>
#include <vector>

#include "support/tcb_fixtures.hpp"

namespace tcpprobe::test {

namespace script {

struct PeerSends {
    SegmentBuilder segment;
};
struct WeSend {
    Expected expected;
};
struct UserCall {
    std::string name;
    std::function<tcb::Actions(tcb::Tcb&, Instant)> call;
};
struct Silence {};
struct InState {
    tcb::State state;
};
struct GaveUp {
    std::string what;
};
struct Reset {};

struct Step {
    Duration delta;  ///< after the previous step
    std::variant<PeerSends, WeSend, UserCall, Silence, InState, GaveUp, Reset> what;
};

/// "+delta < segment": the peer sends.
Step peer(Duration delta, SegmentBuilder segment);
/// "+delta > segment": the TCB must send this, at exactly this instant.
Step expect(Duration delta, Expected segment);
/// User calls of RFC 9293 §3.10.
Step user_open_active(Duration delta = Duration::zero());
Step user_open_passive(Duration delta = Duration::zero());
Step user_send(Duration delta, std::size_t bytes);
Step user_close(Duration delta = Duration::zero());
Step user_abort(Duration delta = Duration::zero());
/// Time passes and nothing may be sent (timers due on the way still fire).
Step silence(Duration delta);
/// The TCB is in this state now.
Step now_in(tcb::State s);
/// The TCB has given up retransmitting `what` ("SYN", "FIN", "data") by now.
Step gave_up(std::string what);
/// The TCB has reported the connection reset by the peer by now.
Step was_reset();

}  // namespace script

struct ScriptResult {
    std::vector<std::string> errors;      ///< empty when the transcript played out
    std::vector<std::string> transcript;  ///< what happened, one line per event
    tcb::Actions actions;                 ///< everything the TCB returned, in order
    bool ok() const { return errors.empty(); }
    std::string report() const;
};

class ScriptedPeer {
public:
    /// `flow.iss` must be the TCB's ISS; the peer's ISN is `flow.irs`.
    ScriptedPeer(tcb::Tcb& t, FakeClock& clock, Flow flow = default_flow());

    ScriptResult run(const std::vector<script::Step>& steps);

private:
    struct Outgoing {
        Instant at;
        tcb::SendSegment segment;
    };

    void catch_up(Instant until, ScriptResult& r);
    void take(Instant at, tcb::Actions acts, ScriptResult& r);
    bool no_unexpected(ScriptResult& r, const char* before);
    std::string stamp(Instant at) const;

    tcb::Tcb& tcb_;
    FakeClock& clock_;
    Flow flow_;
    Instant start_;
    std::vector<Outgoing> outbox_;
};

/// Fails the current test with the result's report unless the transcript played out.
void check(const ScriptResult& r, std::source_location loc = std::source_location::current());

}  // namespace tcpprobe::test
