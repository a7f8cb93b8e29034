// `tcpprobe teardown` and `tcpprobe half-close`: one connection, a close sequence, and
// a report of both sides' states with the time spent in each.
#include <fmt/format.h>

#include "tcpprobe/app/cli.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/app/runner.hpp"
#include "tcpprobe/app/verdict.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/close.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

probe::CloseMode parse_mode(const std::string& m) {
    if (m == "active") return probe::CloseMode::Active;
    if (m == "passive") return probe::CloseMode::Passive;
    if (m == "simultaneous") return probe::CloseMode::Simultaneous;
    if (m == "abort") return probe::CloseMode::Abort;
    throw io::UsageError(fmt::format("--mode: '{}' is not one of active, passive, simultaneous, abort", m));
}

struct Span {
    tcb::State state;
    std::optional<Duration> lasted;  ///< unset for the final state
};

std::vector<Span> spans(const std::vector<probe::StateSpan>& in) {
    std::vector<Span> out;
    for (std::size_t i = 0; i < in.size(); ++i) {
        std::optional<Duration> d;
        if (i + 1 < in.size()) d = in[i + 1].since - in[i].since;
        out.push_back({in[i].state, d});
    }
    return out;
}

std::string spans_text(const std::vector<Span>& s) {
    std::string t;
    for (const auto& x : s) {
        if (!t.empty()) t += " -> ";
        t += x.lasted ? fmt::format("{} {:.3f} ms", x.state, to_ms_f(*x.lasted))
                      : x.state == tcb::State::Closed ? fmt::format("{}", x.state) : fmt::format("{} (at the end)", x.state);
    }
    return t.empty() ? "-" : t;
}

nlohmann::json spans_json(const std::vector<Span>& s) {
    auto a = nlohmann::json::array();
    for (const auto& x : s)
        a.push_back({{"state", tcb::to_string(x.state)}, {"duration_us", x.lasted ? nlohmann::json(to_us(*x.lasted)) : nlohmann::json(nullptr)}});
    return a;
}

nlohmann::json opt_us(std::optional<Duration> d) { return d ? nlohmann::json(to_us(*d)) : nlohmann::json(nullptr); }

/// b - a when both were seen and b came after a.
std::optional<Duration> between(std::optional<Instant> a, std::optional<Instant> b) {
    if (!a || !b || *b < *a) return std::nullopt;
    return *b - *a;
}

int run_close(const GlobalOptions& g, const CloseOptions& o, const std::string& command, probe::CloseMode mode) {
    PreparedTarget prep = prepare_target(o.target, o.syn, o.conn);
    probe::CloseConfig cc;
    cc.mode = mode;
    cc.request = o.request.empty() ? ByteVec{} : parse_request(o.request);
    cc.idle = parse_duration(o.idle, "--idle");
    cc.max_wait = parse_duration(o.max_wait, "--max-wait");
    const Duration time_wait = parse_duration(o.time_wait, "--time-wait");

    auto edge = open_edge(g, {{prep.addr}, {prep.target.port}, 1, prep.syn.sport, true});
    auto renderer = make_renderer(g);
    cc.connect = make_connect_config(prep, *edge, 0);
    cc.connect.tcb.time_wait = time_wait;

    probe::Session session;
    auto owned = std::make_unique<probe::CloseFlow>(std::move(cc));
    const probe::CloseFlow& flow = *owned;
    session.add(edge->clock().now(), std::move(owned));
    RunStats stats = run_session(session, *edge, *renderer);
    edge->flush();

    const auto& c = flow.connect_result();
    const auto& r = flow.report();
    const bool connected = c.verdict == probe::Verdict::Open;
    const Verdict verdict = connected ? verdict_of(r.outcome) : verdict_of(c.verdict);
    auto local = spans(r.local_states);
    auto peer = spans(r.peer_states);

    std::string text = mode == probe::CloseMode::HalfClose
                           ? fmt::format("\n--- {} {} ---\n", o.target, command)
                           : fmt::format("\n--- {} {} ({}) ---\n", o.target, command, probe::to_string(mode));
    text += fmt::format("connect: {}\n", connect_line(c));
    if (connected) {
        text += fmt::format("verdict {}: {}\n", to_string(verdict), probe::to_string(r.pattern));
        if (r.our_fin) {
            text += "after our FIN:";
            if (auto d = between(r.our_fin, r.peer_ack_of_fin)) text += fmt::format(" peer ACK +{:.3f} ms{},", to_ms_f(*d),
                                    r.combined_fin_ack ? " (with its FIN)"
                                    : r.peer_ack_lost  ? " (with its FIN; its own ACK was lost on the path)"
                                                       : "");
            if (auto d = between(r.our_fin, r.peer_fin); d && *d >= Duration::zero()) text += fmt::format(" peer FIN +{:.3f} ms,", to_ms_f(*d));
            text += fmt::format(" {} bytes in {} segment(s)\n", r.bytes_after_our_fin, r.segments_after_our_fin);
        }
        if (auto cw = flow.peer_close_wait())
            text += fmt::format("peer CLOSE-WAIT (its ACK of our FIN -> its FIN): {:.3f} ms\n", to_ms_f(*cw));
        if (mode == probe::CloseMode::Simultaneous)
            text += fmt::format("peer passed through CLOSING: {}\n", r.peer_passed_closing ? "yes (it acknowledged our FIN before getting our ACK)" : "no");
        if (r.abort_confirmed)
            text += fmt::format("abort: the peer {} ({} RST(s), {} probe(s))\n",
                                *r.abort_confirmed ? "dropped the connection: a probe was answered with RST"
                                                   : "kept the connection: it still answered in state",
                                r.abort_rsts_sent, r.abort_probes_sent);
        text += fmt::format("local states: {}\n", spans_text(local));
        text += fmt::format("peer states (inferred): {}\n", spans_text(peer));
        text += fmt::format("data received: {} bytes before our FIN, {} after; {} bytes before the peer's FIN, {} after\n",
                            r.bytes_before_our_fin, r.bytes_after_our_fin, r.bytes_before_peer_fin, r.bytes_after_peer_fin);
    }
    // Who holds TIME-WAIT, described the same way as `tcpprobe time-wait` describes the peer's.
    nlohmann::json tw_json = {{"side", nullptr}, {"observed", false}, {"duration_us", nullptr}};
    for (const auto& sp : local)
        if (sp.state == tcb::State::TimeWait) {
            tw_json = {{"side", "local"}, {"observed", true}, {"duration_us", sp.lasted ? nlohmann::json(to_us(*sp.lasted)) : nlohmann::json(nullptr)}};
            if (connected) text += fmt::format("TIME-WAIT: ours, {}\n", sp.lasted ? fmt::format("{:.3f} ms (--time-wait)", to_ms_f(*sp.lasted)) : std::string("cut short"));
        }
    if (!peer.empty() && peer.back().state == tcb::State::TimeWait) {
        tw_json = {{"side", "peer"}, {"observed", true}, {"duration_us", nullptr}};
        if (connected) text += "TIME-WAIT: held by the peer (inferred; `tcpprobe time-wait` measures it)\n";
    }
    for (const auto& a : c.anomalies) text += fmt::format("anomaly: {}\n", a);
    if (stats.interrupted) text += "interrupted\n";

    nlohmann::json summary = summary_head(command, o.target, prep, *edge);
    summary.update({{"verdict", to_string(verdict)},
                    {"mode", probe::to_string(mode)},
                    {"pattern", probe::to_string(r.pattern)},
                    {"interrupted", stats.interrupted},
                    {"connect", connect_json(flow)},
                    {"findings", r.findings},
                    {"anomaly_count", c.anomalies.size()},
                    {"our_fin_to_peer_ack_us", opt_us(between(r.our_fin, r.peer_ack_of_fin))},
                    {"our_fin_to_peer_fin_us", opt_us(between(r.our_fin, r.peer_fin))},
                    {"peer_close_wait_us", opt_us(flow.peer_close_wait())},
                    {"combined_fin_ack", r.combined_fin_ack},
                    {"peer_ack_lost", r.peer_ack_lost},
                    {"combined_unconfirmed", r.combined_unconfirmed},
                    {"peer_reset", r.peer_reset},
                    {"peer_passed_closing", r.peer_passed_closing},
                    {"abort_confirmed", r.abort_confirmed ? nlohmann::json(*r.abort_confirmed) : nlohmann::json(nullptr)},
                    {"abort_rsts_sent", r.abort_rsts_sent},
                    {"abort_probes_sent", r.abort_probes_sent},
                    {"bytes_before_our_fin", r.bytes_before_our_fin},
                    {"bytes_after_our_fin", r.bytes_after_our_fin},
                    {"segments_after_our_fin", r.segments_after_our_fin},
                    {"bytes_before_peer_fin", r.bytes_before_peer_fin},
                    {"bytes_after_peer_fin", r.bytes_after_peer_fin},
                    {"local_states", spans_json(local)},
                    {"peer_states", spans_json(peer)},
                    {"time_wait", tw_json}});
    renderer->summary(text, summary);
    if (stats.interrupted) return exit_status::interrupted;
    return exit_code(verdict);
}

}  // namespace

int run_teardown(const GlobalOptions& g, const CloseOptions& o) { return run_close(g, o, "teardown", parse_mode(o.mode)); }

int run_half_close(const GlobalOptions& g, const CloseOptions& o) {
    return run_close(g, o, "half-close", probe::CloseMode::HalfClose);
}

}  // namespace tcpprobe::app
