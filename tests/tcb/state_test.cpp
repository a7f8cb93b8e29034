// State vocabulary of the TCB: the eleven RFC 9293 §3.3.2 states and their spelling,
// the synchronized set, and the rule that every state change is recorded with a cause
// (DESIGN §1: "Every state change is an event in the trace").
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <set>
#include <string>

#include "support/tcb_fixtures.hpp"

using namespace tcpprobe;
using namespace tcpprobe::test;
using tcb::State;

TEST_SUITE_BEGIN("tcb");

TEST_CASE("to_string spells all eleven states as RFC 9293 does") {
    struct Row {
        State state;
        const char* rfc;
    };
    const Row rows[] = {
        {State::Closed, "CLOSED"},           {State::Listen, "LISTEN"},
        {State::SynSent, "SYN-SENT"},        {State::SynReceived, "SYN-RECEIVED"},
        {State::Established, "ESTABLISHED"}, {State::FinWait1, "FIN-WAIT-1"},
        {State::FinWait2, "FIN-WAIT-2"},     {State::CloseWait, "CLOSE-WAIT"},
        {State::Closing, "CLOSING"},         {State::LastAck, "LAST-ACK"},
        {State::TimeWait, "TIME-WAIT"},
    };
    CHECK(std::size(rows) == 11);
    for (const auto& r : rows) {
        CAPTURE(r.rfc);
        CHECK(tcb::to_string(r.state) == r.rfc);
        CHECK(fmt::format("{}", r.state) == r.rfc);  // the fmt formatter agrees
    }
}

TEST_CASE("all_states lists each of the eleven states exactly once") {
    std::set<std::string> names;
    for (State s : tcb::all_states) names.insert(std::string(tcb::to_string(s)));
    CHECK(std::size(tcb::all_states) == 11);
    CHECK(names.size() == 11);
    CHECK(names.count("?") == 0);
}

TEST_CASE("is_synchronized holds from SYN-RECEIVED on, and never before") {
    const std::set<State> synchronized = {State::SynReceived, State::Established, State::FinWait1,
                                          State::FinWait2,    State::CloseWait,   State::Closing,
                                          State::LastAck,     State::TimeWait};
    for (State s : tcb::all_states) {
        CAPTURE(s);
        CHECK(tcb::is_synchronized(s) == (synchronized.count(s) == 1));
    }
}

TEST_CASE("in_state tests membership of a set of states, not enumerator order") {
    CHECK(tcb::in_state(State::TimeWait, {State::Closing, State::TimeWait}));
    CHECK_FALSE(tcb::in_state(State::FinWait2, {State::FinWait1, State::CloseWait}));
    CHECK_FALSE(tcb::in_state(State::Closed, {}));
    static_assert(tcb::in_state(State::Listen, {State::Listen}));
}

TEST_CASE("timer kinds and send reasons have stable names") {
    CHECK(tcb::to_string(tcb::TimerKind::Retransmit) == "retransmit");
    CHECK(tcb::to_string(tcb::TimerKind::TimeWait) == "time-wait");
    using R = tcb::SendReason;
    CHECK(tcb::to_string(R::Syn) == "syn");
    CHECK(tcb::to_string(R::SynAck) == "syn-ack");
    CHECK(tcb::to_string(R::Ack) == "ack");
    CHECK(tcb::to_string(R::Data) == "data");
    CHECK(tcb::to_string(R::Fin) == "fin");
    CHECK(tcb::to_string(R::Rst) == "rst");
    CHECK(tcb::to_string(R::ChallengeAck) == "challenge-ack");
    CHECK(tcb::to_string(R::Retransmission) == "retransmission");
    CHECK(tcb::to_string(R::ResetReply) == "reset-reply");
    CHECK(fmt::format("{}", R::ChallengeAck) == "challenge-ack");
}

TEST_CASE("a new TCB is CLOSED, with nothing to wait for") {
    Connection c = tcb_closed();
    expect_state(c.tcb, State::Closed);
    CHECK_FALSE(c.tcb.next_deadline().has_value());
    CHECK_FALSE(c.tcb.irs().has_value());
    CHECK(c.tcb.snd.una == c.flow.iss);
    CHECK(c.tcb.snd.nxt == c.flow.iss);
    CHECK_FALSE(c.tcb.fin_sent());
    CHECK_FALSE(c.tcb.fin_received());
}

TEST_CASE("every fixture reaches its state through a chain of recorded changes, each with a cause") {
    struct Row {
        const char* name;
        Connection (*make)(const FixtureOptions&);
        std::initializer_list<State> path;
    };
    const Row rows[] = {
        {"LISTEN", tcb_in_listen, {State::Closed, State::Listen}},
        {"SYN-SENT", tcb_in_syn_sent, {State::Closed, State::SynSent}},
        {"SYN-RECEIVED", tcb_in_syn_received, {State::Closed, State::Listen, State::SynReceived}},
        {"ESTABLISHED (active)", tcb_in_established, {State::Closed, State::SynSent, State::Established}},
        {"ESTABLISHED (passive)",
         tcb_in_established_passive,
         {State::Closed, State::Listen, State::SynReceived, State::Established}},
        {"FIN-WAIT-1", tcb_in_fin_wait_1, {State::Closed, State::SynSent, State::Established, State::FinWait1}},
        {"FIN-WAIT-2",
         tcb_in_fin_wait_2,
         {State::Closed, State::SynSent, State::Established, State::FinWait1, State::FinWait2}},
        {"CLOSE-WAIT", tcb_in_close_wait, {State::Closed, State::SynSent, State::Established, State::CloseWait}},
        {"CLOSING",
         tcb_in_closing,
         {State::Closed, State::SynSent, State::Established, State::FinWait1, State::Closing}},
        {"LAST-ACK",
         tcb_in_last_ack,
         {State::Closed, State::SynSent, State::Established, State::CloseWait, State::LastAck}},
        {"TIME-WAIT",
         tcb_in_time_wait,
         {State::Closed, State::SynSent, State::Established, State::FinWait1, State::FinWait2, State::TimeWait}},
    };
    for (const auto& r : rows) {
        SUBCASE(r.name) {
            Connection c = r.make({});
            expect_transitions(c.history, r.path);
            CHECK(c.tcb.state() == *(r.path.end() - 1));
        }
    }
}

TEST_CASE("state changes on the way down to CLOSED carry their causes too") {
    SUBCASE("peer RST") {
        Connection c = tcb_in_established();
        auto out = inject(c.tcb, c.now(), c.seg("R").seq(1));
        expect_transitions(out, {State::Established, State::Closed});
        CHECK(find<tcb::StateChanged>(out)->cause.find("RST") != std::string::npos);
    }
    SUBCASE("ABORT") {
        Connection c = tcb_in_established();
        auto out = c.tcb.abort(c.now());
        expect_transitions(out, {State::Established, State::Closed});
        CHECK(find<tcb::StateChanged>(out)->cause == "abort");
    }
    SUBCASE("2MSL expiry") {
        Connection c = tcb_in_time_wait();
        auto out = advance(c.tcb, c.clock, 60s);
        expect_transitions(out, {State::TimeWait, State::Closed});
        CHECK(find<tcb::StateChanged>(out)->cause.find("2MSL") != std::string::npos);
    }
    SUBCASE("retransmissions exhausted") {
        Connection c = tcb_in_syn_sent();
        auto out = advance(c.tcb, c.clock, 15s);
        expect_transitions(out, {State::SynSent, State::Closed});
        CHECK(find<tcb::StateChanged>(out)->cause.find("gave up") != std::string::npos);
    }
    SUBCASE("last ACK") {
        Connection c = tcb_in_last_ack();
        auto out = inject(c.tcb, c.now(), c.seg(".").seq(2).ack(2));
        expect_transitions(out, {State::LastAck, State::Closed});
        CHECK(find<tcb::StateChanged>(out)->cause.find("our FIN acknowledged") != std::string::npos);
    }
}

TEST_CASE("a state change is reported only when the state really changes") {
    Connection c = tcb_in_established();
    // A pure ACK that changes nothing: no StateChanged at all.
    auto out = inject(c.tcb, c.now(), c.seg(".").seq(1).ack(1));
    CHECK(find_all<tcb::StateChanged>(out).empty());
    // CLOSE twice: the second is a note, not a change.
    auto first = c.tcb.close(c.now());
    auto second = c.tcb.close(c.now());
    CHECK(find_all<tcb::StateChanged>(first).size() == 1);
    CHECK(find_all<tcb::StateChanged>(second).empty());
    CHECK(has_note(second, "closing"));
    expect_nothing_sent(second);
}

TEST_SUITE_END();
