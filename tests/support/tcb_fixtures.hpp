// Fixtures and assertions for TCB tests (STYLE §16, after smoltcp's socket tests).
//
// Every fixture returns a TCB already in the state under test, reached by driving the
// real TCB through real segments and user calls, never by touching its internals: if a
// fixture cannot reach its state, the fixture fails, and that is a finding too. Each
// fixture documents the segments that got it there and where both sequence spaces stand.
//
// The assertions check what a capture would show: the segments the TCB decided to send
// (flags, sequence and acknowledgment numbers relative to ISS/IRS, payload length, and
// why), the state changes and their causes, the timers' instants. On failure they print
// every segment in the project's one-line notation (wire::format_segment).
#pragma once

#include <optional>
#include <source_location>
#include <string>
#include <string_view>
#include <vector>

#include "support/doctest_printers.hpp"
#include "support/fake_clock.hpp"
#include "support/segment_builder.hpp"
#include "tcpprobe/tcb/tcb.hpp"

namespace tcpprobe::test {

using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// Configurations

/// The default flow; our SYN carries <mss 1460> only; 64 KiB window, initial RTO 1 s
/// doubling, 3 retransmissions then give up, RTO capped at 60 s, 2MSL 60 s.
tcb::TcbConfig default_config(const Flow& flow = default_flow());
/// As default_config, with Linux's SYN options <mss 1460,sackOK,TS,nop,wscale 7>, a 1 MiB
/// receive window (advertised as 8192 << 7 after the handshake) and TSval starting at 1000.
tcb::TcbConfig linux_like_config(const Flow& flow = default_flow());
/// The peer's SYN / SYN-ACK options in fixtures: <mss 1460>.
wire::OptionList default_peer_syn_options();

// ---------------------------------------------------------------------------
// Fixtures

struct FixtureOptions {
    tcb::TcbConfig config = default_config();
    wire::OptionList peer_syn_options = default_peer_syn_options();
    /// Time between the fixture's steps (the handshake's RTT, the peer's reaction time).
    Duration step = 10ms;
};

/// A TCB in a given state, the clock at the instant of the last step that got it there,
/// and everything the TCB returned on the way.
struct Connection {
    tcb::Tcb tcb;
    FakeClock clock;
    Flow flow;
    tcb::Actions history;

    Instant now() const { return clock.now(); }
    /// A peer segment on this connection's flow.
    SegmentBuilder seg(std::string_view flags) const { return SegmentBuilder{flow}.flags(flags); }
};

/// CLOSED, nothing done yet (the clock at its start).
Connection tcb_closed(const FixtureOptions& o = {});
/// OPEN (passive): LISTEN, nothing sent.
Connection tcb_in_listen(const FixtureOptions& o = {});
/// OPEN (active): > S 0:0(0). SND.NXT = 1.
Connection tcb_in_syn_sent(const FixtureOptions& o = {});
/// Passive: LISTEN, +step < S 0:0(0), > S. 0:0(0) ack 1. SND.NXT = 1, RCV.NXT = 1.
Connection tcb_in_syn_received(const FixtureOptions& o = {});
/// Active: > S 0:0(0), +step < S. 0:0(0) ack 1, > . 1:1(0) ack 1. Both sides at 1.
Connection tcb_in_established(const FixtureOptions& o = {});
/// Passive: LISTEN, +step < S, > S., +step < . 1:1(0) ack 1. Both sides at 1.
Connection tcb_in_established_passive(const FixtureOptions& o = {});
/// ESTABLISHED, +step CLOSE: > F. 1:1(0) ack 1. Our FIN is 1, SND.NXT = 2.
Connection tcb_in_fin_wait_1(const FixtureOptions& o = {});
/// FIN-WAIT-1, +step < . 1:1(0) ack 2. Our FIN acknowledged; RCV.NXT = 1.
Connection tcb_in_fin_wait_2(const FixtureOptions& o = {});
/// ESTABLISHED, +step < F. 1:1(0) ack 1, > . 1:1(0) ack 2. RCV.NXT = 2, SND.NXT = 1.
Connection tcb_in_close_wait(const FixtureOptions& o = {});
/// FIN-WAIT-1, +step < F. 1:1(0) ack 1 (our FIN not yet acknowledged), > . 2:2(0) ack 2.
Connection tcb_in_closing(const FixtureOptions& o = {});
/// CLOSE-WAIT, +step CLOSE: > F. 1:1(0) ack 2. Our FIN is 1, SND.NXT = 2, RCV.NXT = 2.
Connection tcb_in_last_ack(const FixtureOptions& o = {});
/// FIN-WAIT-2, +step < F. 1:1(0) ack 2, > . 2:2(0) ack 2. 2MSL runs from now().
Connection tcb_in_time_wait(const FixtureOptions& o = {});

// ---------------------------------------------------------------------------
// Driving the TCB

tcb::Actions inject(tcb::Tcb& t, Instant at, const wire::Segment& seg);
/// Moves the clock forward by `by`, firing every timer that falls due on the way at its
/// own deadline (in order), and returns everything the timers did.
tcb::Actions advance(tcb::Tcb& t, FakeClock& clock, Duration by);

template <class T>
std::optional<T> find(const tcb::Actions& actions) {
    for (const auto& a : actions)
        if (const auto* p = std::get_if<T>(&a)) return *p;
    return std::nullopt;
}
template <class T>
std::vector<T> find_all(const tcb::Actions& actions) {
    std::vector<T> out;
    for (const auto& a : actions)
        if (const auto* p = std::get_if<T>(&a)) out.push_back(*p);
    return out;
}
std::vector<wire::Segment> sent_segments(const tcb::Actions& actions);
/// True when some Note's text contains `part`.
bool has_note(const tcb::Actions& actions, std::string_view part);

// ---------------------------------------------------------------------------
// Expectations

/// One segment we expect the TCB to send: flags in tcpdump letters, sequence number
/// relative to ISS, acknowledgment number relative to IRS (required when "." is in the
/// flags), payload length, and optionally why it was sent and its window field.
struct Expected {
    std::string flags;
    std::uint32_t seq = 0;
    std::optional<std::uint32_t> ack;
    std::uint32_t length = 0;
    std::optional<tcb::SendReason> reason;
    std::optional<std::uint16_t> window;
    bool seq_absolute = false;

    Expected& len(std::uint32_t n) { length = n; return *this; }
    Expected& why(tcb::SendReason r) { reason = r; return *this; }
    Expected& win(std::uint16_t w) { window = w; return *this; }
    /// The sequence number is absolute (a RST,ACK reply has SEQ=0 on the wire).
    Expected& absolute() { seq_absolute = true; return *this; }

    /// "S. 0:0(0) ack 1 [syn-ack]"
    std::string describe() const;
    /// Empty when `s` matches, else what differs.
    std::string mismatch(const tcb::SendSegment& s, const Flow& flow) const;
};
Expected sent(std::string_view flags, std::uint32_t seq);
Expected sent(std::string_view flags, std::uint32_t seq, std::uint32_t ack);

/// Every action, one per line, segments in the project's notation (for failure messages).
std::string describe(const tcb::Actions& actions, const Flow& flow = default_flow());

/// What differs between the segments sent in `actions` and `expected`, with both
/// listed; empty when they match (expect_sent's report, testable on its own).
std::string sent_mismatch(const tcb::Actions& actions, std::initializer_list<Expected> expected,
                          const Flow& flow = default_flow());
/// The segments sent in `actions` are exactly `expected`, in order.
void expect_sent(const tcb::Actions& actions, std::initializer_list<Expected> expected,
                 const Flow& flow = default_flow(), std::source_location loc = std::source_location::current());
void expect_nothing_sent(const tcb::Actions& actions, const Flow& flow = default_flow(),
                         std::source_location loc = std::source_location::current());
void expect_state(const tcb::Tcb& t, tcb::State s, std::source_location loc = std::source_location::current());
/// `actions` holds exactly the state changes `path` (from one to the next), each with a cause.
void expect_transitions(const tcb::Actions& actions, std::initializer_list<tcb::State> path,
                        std::source_location loc = std::source_location::current());
/// `actions` arms `kind` at `at` (the last ArmTimer of that kind wins).
void expect_armed(const tcb::Actions& actions, tcb::TimerKind kind, Instant at,
                  std::source_location loc = std::source_location::current());

}  // namespace tcpprobe::test
