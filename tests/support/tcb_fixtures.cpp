// Fixtures and assertions for TCB tests; see tcb_fixtures.hpp.
#include "support/tcb_fixtures.hpp"

#include <fmt/format.h>

#include "tcpprobe/wire/format.hpp"
#include "tcpprobe/wire/tcp_header.hpp"

namespace tcpprobe::test {

using namespace tcpprobe::wire;
using tcb::State;

tcb::TcbConfig default_config(const Flow& flow) {
    tcb::TcbConfig c;
    c.tuple = flow.ours;
    c.iss = flow.iss;
    c.rcv_wnd = 65535;
    c.syn_options = {opt::Mss{1460}};
    c.rto = tcb::RetransmitPolicy{1s, 2.0, 3, 60s};
    c.time_wait = 60s;
    c.ts_offset = 0;
    c.rfc1337 = false;
    return c;
}

tcb::TcbConfig linux_like_config(const Flow& flow) {
    tcb::TcbConfig c = default_config(flow);
    c.syn_options = tcb::default_syn_options(1460, 7, true, true);
    c.rcv_wnd = 1u << 20;
    c.ts_offset = 1000;
    return c;
}

OptionList default_peer_syn_options() { return {opt::Mss{1460}}; }

// ---------------------------------------------------------------------------
// Fixtures

namespace {

Connection make(const FixtureOptions& o) {
    Flow flow = default_flow();
    flow.ours = o.config.tuple;
    flow.iss = o.config.iss;
    return Connection{tcb::Tcb{o.config}, FakeClock{}, flow, {}};
}

void step(Connection& c, tcb::Actions more) {
    c.history.insert(c.history.end(), more.begin(), more.end());
}

void peer_sends(Connection& c, const FixtureOptions& o, const SegmentBuilder& b) {
    c.clock.advance(o.step);
    step(c, c.tcb.on_segment(c.now(), b));
}

void require_state(const Connection& c, State s) {
    REQUIRE_MESSAGE(c.tcb.state() == s, "fixture could not reach ", tcb::to_string(s), "; it did:\n",
                    describe(c.history, c.flow));
}

}  // namespace

Connection tcb_closed(const FixtureOptions& o) {
    Connection c = make(o);
    require_state(c, State::Closed);
    return c;
}

Connection tcb_in_listen(const FixtureOptions& o) {
    Connection c = make(o);
    step(c, c.tcb.open_passive(c.now()));
    require_state(c, State::Listen);
    return c;
}

Connection tcb_in_syn_sent(const FixtureOptions& o) {
    Connection c = make(o);
    step(c, c.tcb.open_active(c.now()));
    require_state(c, State::SynSent);
    return c;
}

Connection tcb_in_syn_received(const FixtureOptions& o) {
    Connection c = tcb_in_listen(o);
    peer_sends(c, o, c.seg("S").seq(0).options(o.peer_syn_options));
    require_state(c, State::SynReceived);
    return c;
}

Connection tcb_in_established(const FixtureOptions& o) {
    Connection c = tcb_in_syn_sent(o);
    peer_sends(c, o, c.seg("S.").seq(0).ack(1).options(o.peer_syn_options));
    require_state(c, State::Established);
    return c;
}

Connection tcb_in_established_passive(const FixtureOptions& o) {
    Connection c = tcb_in_syn_received(o);
    peer_sends(c, o, c.seg(".").seq(1).ack(1));
    require_state(c, State::Established);
    return c;
}

Connection tcb_in_fin_wait_1(const FixtureOptions& o) {
    Connection c = tcb_in_established(o);
    c.clock.advance(o.step);
    step(c, c.tcb.close(c.now()));
    require_state(c, State::FinWait1);
    return c;
}

Connection tcb_in_fin_wait_2(const FixtureOptions& o) {
    Connection c = tcb_in_fin_wait_1(o);
    peer_sends(c, o, c.seg(".").seq(1).ack(2));
    require_state(c, State::FinWait2);
    return c;
}

Connection tcb_in_close_wait(const FixtureOptions& o) {
    Connection c = tcb_in_established(o);
    peer_sends(c, o, c.seg("F.").seq(1).ack(1));
    require_state(c, State::CloseWait);
    return c;
}

Connection tcb_in_closing(const FixtureOptions& o) {
    Connection c = tcb_in_fin_wait_1(o);
    peer_sends(c, o, c.seg("F.").seq(1).ack(1));
    require_state(c, State::Closing);
    return c;
}

Connection tcb_in_last_ack(const FixtureOptions& o) {
    Connection c = tcb_in_close_wait(o);
    c.clock.advance(o.step);
    step(c, c.tcb.close(c.now()));
    require_state(c, State::LastAck);
    return c;
}

Connection tcb_in_time_wait(const FixtureOptions& o) {
    Connection c = tcb_in_fin_wait_2(o);
    peer_sends(c, o, c.seg("F.").seq(1).ack(2));
    require_state(c, State::TimeWait);
    return c;
}

// ---------------------------------------------------------------------------
// Driving the TCB

tcb::Actions inject(tcb::Tcb& t, Instant at, const Segment& seg) { return t.on_segment(at, seg); }

tcb::Actions advance(tcb::Tcb& t, FakeClock& clock, Duration by) {
    const Instant until = clock.now() + by;
    tcb::Actions out;
    // A timer that re-arms at its own instant would loop forever; a few thousand firings
    // is far more than any schedule in these tests.
    for (int guard = 0; guard < 10000; ++guard) {
        auto due = t.next_deadline();
        if (!due || *due > until) break;
        clock.advance_to(std::max(*due, clock.now()));
        auto fired = t.on_timer(clock.now());
        out.insert(out.end(), fired.begin(), fired.end());
        if (t.next_deadline() == due) {
            FAIL("timer at ", to_ns(*due), " ns fired without moving its deadline");
        }
    }
    clock.advance_to(until);
    return out;
}

std::vector<Segment> sent_segments(const tcb::Actions& actions) {
    std::vector<Segment> out;
    for (const auto& s : find_all<tcb::SendSegment>(actions)) out.push_back(s.segment);
    return out;
}

bool has_note(const tcb::Actions& actions, std::string_view part) {
    for (const auto& n : find_all<tcb::Note>(actions))
        if (n.text.find(part) != std::string::npos) return true;
    return false;
}

// ---------------------------------------------------------------------------
// Expectations

Expected sent(std::string_view flags, std::uint32_t seq) {
    Expected e;
    e.flags = std::string(flags);
    e.seq = seq;
    return e;
}

Expected sent(std::string_view flags, std::uint32_t seq, std::uint32_t ack) {
    Expected e = sent(flags, seq);
    e.ack = ack;
    return e;
}

std::string Expected::describe() const {
    std::string s = fmt::format("{} {}{}:{}({})", flags, seq_absolute ? "abs " : "", seq, seq + length, length);
    if (ack) s += fmt::format(" ack {}", *ack);
    if (window) s += fmt::format(" win {}", *window);
    if (reason) s += fmt::format(" [{}]", *reason);
    return s;
}

std::string Expected::mismatch(const tcb::SendSegment& s, const Flow& flow) const {
    std::string why;
    const Segment& g = s.segment;
    const bool wants_ack = (parse_flags(flags) & flag::ack) != 0;
    if (wants_ack && !ack) why += " (expectation error: \".\" in the flags needs an ack number)";
    if (format_flags(g.flags) != flags) why += fmt::format(" flags {} != {}", format_flags(g.flags), flags);
    const std::uint32_t got_seq = seq_absolute ? g.seq.raw() : relative(g.seq, flow.iss);
    if (got_seq != seq) why += fmt::format(" seq {} != {}", got_seq, seq);
    if (ack && relative(g.ack, flow.irs) != *ack)
        why += fmt::format(" ack {} != {}", relative(g.ack, flow.irs), *ack);
    if (g.payload.size() != length) why += fmt::format(" len {} != {}", g.payload.size(), length);
    if (reason && s.reason != *reason) why += fmt::format(" reason {} != {}", s.reason, *reason);
    if (window && g.window != *window) why += fmt::format(" win {} != {}", g.window, *window);
    if (g.src != flow.ours.local || g.dst != flow.ours.remote) why += " wrong addresses";
    return why;
}

namespace {
std::string describe_action(const tcb::Action& a, const Flow& flow) {
    const FormatContext ctx{Direction::Out, flow.iss, flow.irs};
    return std::visit(
        [&](const auto& x) -> std::string {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, tcb::SendSegment>)
                return fmt::format("{} [{}]", format_segment(x.segment, ctx), x.reason);
            else if constexpr (std::is_same_v<T, tcb::ArmTimer>)
                return fmt::format("arm {} at +{} ns", to_string(x.kind), to_ns(x.at) - to_ns(test_epoch));
            else if constexpr (std::is_same_v<T, tcb::CancelTimer>)
                return fmt::format("cancel {}", to_string(x.kind));
            else if constexpr (std::is_same_v<T, tcb::StateChanged>)
                return fmt::format("state {} -> {} ({})", x.from, x.to, x.cause);
            else if constexpr (std::is_same_v<T, tcb::DataReceived>)
                return fmt::format("data {} bytes at {}", x.data.size(), relative(x.seq, flow.irs));
            else if constexpr (std::is_same_v<T, tcb::ConnectionReset>)
                return fmt::format("connection reset in {}", x.in_state);
            else if constexpr (std::is_same_v<T, tcb::GaveUp>)
                return fmt::format("gave up on {} after {} retransmissions", x.what, x.retransmissions);
            else
                return fmt::format("note: {}", x.text);
        },
        a);
}
}  // namespace

std::string describe(const tcb::Actions& actions, const Flow& flow) {
    std::string out;
    for (const auto& a : actions) out += "  " + describe_action(a, flow) + "\n";
    return out.empty() ? "  (no actions)\n" : out;
}

std::string sent_mismatch(const tcb::Actions& actions, std::initializer_list<Expected> expected, const Flow& flow) {
    const auto got = find_all<tcb::SendSegment>(actions);
    std::string problems;
    if (got.size() != expected.size())
        problems += fmt::format("sent {} segment(s), expected {}\n", got.size(), expected.size());
    std::size_t i = 0;
    for (const auto& e : expected) {
        if (i < got.size()) {
            auto m = e.mismatch(got[i], flow);
            if (!m.empty()) problems += fmt::format("segment {}:{}\n", i + 1, m);
        }
        ++i;
    }
    if (problems.empty()) return {};
    std::string want;
    for (const auto& e : expected) want += "  > " + e.describe() + "\n";
    return fmt::format("{}expected:\n{}actions:\n{}", problems, want.empty() ? "  (nothing)\n" : want,
                       describe(actions, flow));
}

void expect_sent(const tcb::Actions& actions, std::initializer_list<Expected> expected, const Flow& flow,
                 std::source_location loc) {
    auto problems = sent_mismatch(actions, expected, flow);
    if (problems.empty()) return;
    ADD_FAIL_CHECK_AT(loc.file_name(), static_cast<int>(loc.line()), problems);
}

void expect_nothing_sent(const tcb::Actions& actions, const Flow& flow, std::source_location loc) {
    if (find_all<tcb::SendSegment>(actions).empty()) return;
    ADD_FAIL_CHECK_AT(loc.file_name(), static_cast<int>(loc.line()),
                      fmt::format("expected nothing sent, actions:\n{}", describe(actions, flow)));
}

void expect_state(const tcb::Tcb& t, State s, std::source_location loc) {
    if (t.state() == s) return;
    ADD_FAIL_CHECK_AT(loc.file_name(), static_cast<int>(loc.line()),
                      fmt::format("state is {}, expected {}", t.state(), s));
}

void expect_transitions(const tcb::Actions& actions, std::initializer_list<State> path, std::source_location loc) {
    const auto changes = find_all<tcb::StateChanged>(actions);
    std::string problems;
    const std::size_t want = path.size() < 2 ? 0 : path.size() - 1;
    if (changes.size() != want) problems += fmt::format("{} state change(s), expected {}\n", changes.size(), want);
    for (std::size_t i = 0; i < changes.size() && i < want; ++i) {
        State from = path.begin()[i];
        State to = path.begin()[i + 1];
        if (changes[i].from != from || changes[i].to != to)
            problems += fmt::format("change {}: {} -> {}, expected {} -> {}\n", i + 1, changes[i].from,
                                    changes[i].to, from, to);
        if (changes[i].cause.empty()) problems += fmt::format("change {} has no cause\n", i + 1);
    }
    if (problems.empty()) return;
    ADD_FAIL_CHECK_AT(loc.file_name(), static_cast<int>(loc.line()),
                      fmt::format("{}actions:\n{}", problems, describe(actions)));
}

void expect_armed(const tcb::Actions& actions, tcb::TimerKind kind, Instant at, std::source_location loc) {
    std::optional<Instant> last;
    for (const auto& a : find_all<tcb::ArmTimer>(actions))
        if (a.kind == kind) last = a.at;
    if (last == at) return;
    ADD_FAIL_CHECK_AT(loc.file_name(), static_cast<int>(loc.line()),
                      fmt::format("expected {} armed at +{} ns, actions:\n{}", to_string(kind),
                                  to_ns(at) - to_ns(test_epoch), describe(actions)));
}

}  // namespace tcpprobe::test
