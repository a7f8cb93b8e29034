// The scripted peer; see scripted_peer.hpp.
#include "support/scripted_peer.hpp"

#include <stdexcept>

#include <fmt/format.h>

#include "tcpprobe/wire/format.hpp"

namespace tcpprobe::test {

using namespace tcpprobe::wire;

namespace script {

Step peer(Duration delta, SegmentBuilder segment) { return {delta, PeerSends{std::move(segment)}}; }
Step expect(Duration delta, Expected segment) { return {delta, WeSend{std::move(segment)}}; }
Step user_open_active(Duration delta) {
    return {delta, UserCall{"OPEN (active)", [](tcb::Tcb& t, Instant at) { return t.open_active(at); }}};
}
Step user_open_passive(Duration delta) {
    return {delta, UserCall{"OPEN (passive)", [](tcb::Tcb& t, Instant at) { return t.open_passive(at); }}};
}
Step user_send(Duration delta, std::size_t bytes) {
    return {delta, UserCall{fmt::format("SEND {} bytes", bytes), [bytes](tcb::Tcb& t, Instant at) {
                                return t.send(at, ByteVec(bytes, std::uint8_t{'x'}));
                            }}};
}
Step user_close(Duration delta) {
    return {delta, UserCall{"CLOSE", [](tcb::Tcb& t, Instant at) { return t.close(at); }}};
}
Step user_abort(Duration delta) {
    return {delta, UserCall{"ABORT", [](tcb::Tcb& t, Instant at) { return t.abort(at); }}};
}
Step silence(Duration delta) { return {delta, Silence{}}; }
Step now_in(tcb::State s) { return {Duration::zero(), InState{s}}; }
Step gave_up(std::string what) { return {Duration::zero(), GaveUp{std::move(what)}}; }
Step was_reset() { return {Duration::zero(), Reset{}}; }

}  // namespace script

std::string ScriptResult::report() const {
    std::string out;
    for (const auto& e : errors) out += "error: " + e + "\n";
    out += "transcript:\n";
    for (const auto& l : transcript) out += "  " + l + "\n";
    return out;
}

ScriptedPeer::ScriptedPeer(tcb::Tcb& t, FakeClock& clock, Flow flow)
    : tcb_(t), clock_(clock), flow_(flow), start_(clock.now()) {
    if (flow_.iss != t.iss()) throw std::invalid_argument("ScriptedPeer: flow.iss is not the TCB's ISS");
    flow_.ours = t.config().tuple;
}

std::string ScriptedPeer::stamp(Instant at) const {
    return fmt::format("{:.6f}", static_cast<double>((at - start_).count()) / 1e9);
}

void ScriptedPeer::take(Instant at, tcb::Actions acts, ScriptResult& r) {
    const FormatContext out_ctx{Direction::Out, flow_.iss, flow_.irs};
    for (const auto& a : acts) {
        if (const auto* s = std::get_if<tcb::SendSegment>(&a)) {
            outbox_.push_back({at, *s});
            r.transcript.push_back(fmt::format("{} {} [{}]", stamp(at), format_segment(s->segment, out_ctx), s->reason));
        } else if (const auto* c = std::get_if<tcb::StateChanged>(&a)) {
            r.transcript.push_back(fmt::format("{} state {} -> {} ({})", stamp(at), c->from, c->to, c->cause));
        } else if (const auto* n = std::get_if<tcb::Note>(&a)) {
            r.transcript.push_back(fmt::format("{} note: {}", stamp(at), n->text));
        } else if (const auto* g = std::get_if<tcb::GaveUp>(&a)) {
            r.transcript.push_back(fmt::format("{} gave up on {} after {}", stamp(at), g->what, g->retransmissions));
        } else if (std::holds_alternative<tcb::ConnectionReset>(a)) {
            r.transcript.push_back(fmt::format("{} connection reset", stamp(at)));
        }
        r.actions.push_back(a);
    }
}

void ScriptedPeer::catch_up(Instant until, ScriptResult& r) {
    for (int guard = 0; guard < 10000; ++guard) {
        auto due = tcb_.next_deadline();
        if (!due || *due > until) break;
        const Instant at = std::max(*due, clock_.now());
        clock_.advance_to(at);
        take(at, tcb_.on_timer(at), r);
        if (tcb_.next_deadline() == due) {
            r.errors.push_back(fmt::format("at {}: the timer due then fired without moving its deadline", stamp(at)));
            return;
        }
    }
    clock_.advance_to(until);
}

bool ScriptedPeer::no_unexpected(ScriptResult& r, const char* before) {
    if (outbox_.empty()) return true;
    const FormatContext ctx{Direction::Out, flow_.iss, flow_.irs};
    for (const auto& o : outbox_)
        r.errors.push_back(fmt::format("unexpected segment at {} (before {}): {}", stamp(o.at), before,
                                       format_segment(o.segment.segment, ctx)));
    return false;
}

ScriptResult ScriptedPeer::run(const std::vector<script::Step>& steps) {
    using namespace script;
    ScriptResult r;
    Instant t = clock_.now();
    for (const Step& s : steps) {
        if (!r.ok()) break;
        t += s.delta;
        catch_up(t, r);
        if (!r.ok()) break;
        std::visit(
            [&](const auto& w) {
                using W = std::decay_t<decltype(w)>;
                if constexpr (std::is_same_v<W, PeerSends>) {
                    if (!no_unexpected(r, "the peer's segment")) return;
                    Segment seg = SegmentBuilder{w.segment}.on(flow_).build();
                    r.transcript.push_back(fmt::format(
                        "{} {}", stamp(t), format_segment(seg, FormatContext{Direction::In, flow_.iss, flow_.irs})));
                    take(t, tcb_.on_segment(t, seg), r);
                } else if constexpr (std::is_same_v<W, UserCall>) {
                    if (!no_unexpected(r, w.name.c_str())) return;
                    r.transcript.push_back(fmt::format("{} {}", stamp(t), w.name));
                    take(t, w.call(tcb_, t), r);
                } else if constexpr (std::is_same_v<W, WeSend>) {
                    if (outbox_.empty()) {
                        r.errors.push_back(fmt::format("at {}: expected > {}, nothing was sent", stamp(t),
                                                       w.expected.describe()));
                        return;
                    }
                    Outgoing o = outbox_.front();
                    outbox_.erase(outbox_.begin());
                    const FormatContext ctx{Direction::Out, flow_.iss, flow_.irs};
                    if (o.at != t)
                        r.errors.push_back(fmt::format("expected > {} at {}, sent at {}: {}", w.expected.describe(),
                                                       stamp(t), stamp(o.at), format_segment(o.segment.segment, ctx)));
                    else if (auto m = w.expected.mismatch(o.segment, flow_); !m.empty())
                        r.errors.push_back(fmt::format("at {}: expected > {}, sent {} [{}]:{}", stamp(t),
                                                       w.expected.describe(), format_segment(o.segment.segment, ctx),
                                                       o.segment.reason, m));
                } else if constexpr (std::is_same_v<W, Silence>) {
                    no_unexpected(r, "the end of a silence");
                } else if constexpr (std::is_same_v<W, InState>) {
                    if (tcb_.state() != w.state)
                        r.errors.push_back(fmt::format("at {}: state is {}, expected {}", stamp(t), tcb_.state(), w.state));
                } else if constexpr (std::is_same_v<W, GaveUp>) {
                    auto g = find<tcb::GaveUp>(r.actions);
                    if (!g || g->what != w.what)
                        r.errors.push_back(fmt::format("at {}: expected to have given up on {}", stamp(t), w.what));
                } else {
                    if (!find<tcb::ConnectionReset>(r.actions))
                        r.errors.push_back(fmt::format("at {}: expected the connection to be reset", stamp(t)));
                }
            },
            s.what);
    }
    if (r.ok()) no_unexpected(r, "the end of the transcript");
    return r;
}

void check(const ScriptResult& r, std::source_location loc) {
    if (r.ok()) return;
    ADD_FAIL_CHECK_AT(loc.file_name(), static_cast<int>(loc.line()), r.report());
}

}  // namespace tcpprobe::test
