// `tcpprobe teardown` and `tcpprobe half-close`: one connection, a close sequence, and
// a report of both sides' states with the time spent in each.
#include <fmt/format.h>

#include "tcpprobe/app/cli_options.hpp"
#include "tcpprobe/app/command.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/close.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

/// The --mode words, from the modes teardown runs (half-close is a command of its own).
Words<probe::CloseMode> mode_words() {
    return words_of({probe::CloseMode::Active, probe::CloseMode::Passive, probe::CloseMode::Simultaneous, probe::CloseMode::Abort});
}

void close_options(CLI::App& cmd, CloseOptions& o, bool with_mode) {
    add_target(cmd, o.target);
    add_syn_options(cmd, o.syn);
    add_connect_options(cmd, o.conn);
    if (with_mode) {
        choice(cmd, "--mode", o.mode, mode_words(), "active (we FIN first, default), passive, simultaneous or abort");
        cmd.add_option("--idle", o.idle, "quiet time before our FIN or RST; time we stay in CLOSE-WAIT (default 200ms)")
            ->type_name("DURATION");
    }
    cmd.add_option("--request", o.request,
                   "data to send after the handshake: TEXT with \\r \\n \\t \\0 \\\\ \\xHH escapes, or @FILE")
        ->type_name("TEXT|@FILE");
    cmd.add_option("--max-wait", o.max_wait, "longest wait for the peer's part of the close (default 10s)")->type_name("DURATION");
    cmd.add_option("--time-wait", o.time_wait, "length of our own TIME-WAIT after an active close (default 2s)")->type_name("DURATION");
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

struct CloseResult {
    Verdict verdict = Verdict::Pending;
    RunHead head;
    probe::CloseMode mode;
    const probe::CloseFlow* flow;
    std::vector<Span> local, peer;
    bool connected() const { return flow->connect_result().verdict == probe::Verdict::Open; }
    /// Our TIME-WAIT span, if we held one.
    const Span* our_time_wait() const {
        const Span* found = nullptr;
        for (const auto& sp : local)
            if (sp.state == tcb::State::TimeWait) found = &sp;
        return found;
    }
    bool peer_time_wait() const { return !peer.empty() && peer.back().state == tcb::State::TimeWait; }
};

std::string to_text(const CloseResult& res) {
    const auto& c = res.flow->connect_result();
    const auto& r = res.flow->report();
    std::string text = res.mode == probe::CloseMode::HalfClose
                           ? fmt::format("\n--- {} {} ---\n", res.head.target, res.head.command)
                           : fmt::format("\n--- {} {} ({}) ---\n", res.head.target, res.head.command, probe::to_string(res.mode));
    text += fmt::format("connect: {}\n", connect_line(c));
    if (res.connected()) {
        text += fmt::format("verdict {}: {}\n", to_string(res.verdict), probe::to_string(r.pattern));
        if (r.our_fin) {
            text += "after our FIN:";
            if (auto d = between(r.our_fin, r.peer_ack_of_fin))
                text += fmt::format(" peer ACK +{:.3f} ms{},", to_ms_f(*d),
                                    r.combined_fin_ack ? " (with its FIN)"
                                    : r.peer_ack_lost  ? " (with its FIN; its own ACK was lost on the path)"
                                                       : "");
            if (auto d = between(r.our_fin, r.peer_fin); d && *d >= Duration::zero()) text += fmt::format(" peer FIN +{:.3f} ms,", to_ms_f(*d));
            text += fmt::format(" {} bytes in {} segment(s)\n", r.bytes_after_our_fin, r.segments_after_our_fin);
        }
        if (auto cw = res.flow->peer_close_wait())
            text += fmt::format("peer CLOSE-WAIT (its ACK of our FIN -> its FIN): {:.3f} ms\n", to_ms_f(*cw));
        if (res.mode == probe::CloseMode::Simultaneous)
            text += fmt::format("peer passed through CLOSING: {}\n",
                                r.peer_passed_closing ? "yes (it acknowledged our FIN before getting our ACK)" : "no");
        if (r.abort_confirmed)
            text += fmt::format("abort: the peer {} ({} RST(s), {} probe(s))\n",
                                *r.abort_confirmed ? "dropped the connection: a probe was answered with RST"
                                                   : "kept the connection: it still answered in state",
                                r.abort_rsts_sent, r.abort_probes_sent);
        text += fmt::format("local states: {}\n", spans_text(res.local));
        text += fmt::format("peer states (inferred): {}\n", spans_text(res.peer));
        text += fmt::format("data received: {} bytes before our FIN, {} after; {} bytes before the peer's FIN, {} after\n",
                            r.bytes_before_our_fin, r.bytes_after_our_fin, r.bytes_before_peer_fin, r.bytes_after_peer_fin);
        // Who holds TIME-WAIT, described the same way as `tcpprobe time-wait` describes the peer's.
        for (const auto& sp : res.local)
            if (sp.state == tcb::State::TimeWait)
                text += fmt::format("TIME-WAIT: ours, {}\n",
                                    sp.lasted ? fmt::format("{:.3f} ms (--time-wait)", to_ms_f(*sp.lasted)) : std::string("cut short"));
        if (res.peer_time_wait()) text += "TIME-WAIT: held by the peer (inferred; `tcpprobe time-wait` measures it)\n";
    }
    text += anomaly_lines(c);
    return text;
}

nlohmann::json to_json(const CloseResult& res) {
    const auto& c = res.flow->connect_result();
    const auto& r = res.flow->report();
    nlohmann::json tw_json = {{"side", nullptr}, {"observed", false}, {"duration_us", nullptr}};
    if (const Span* sp = res.our_time_wait()) tw_json = {{"side", "local"}, {"observed", true}, {"duration_us", opt_us(sp->lasted)}};
    if (res.peer_time_wait()) tw_json = {{"side", "peer"}, {"observed", true}, {"duration_us", nullptr}};
    nlohmann::json summary = to_json(res.head);
    summary.update({{"verdict", to_string(res.verdict)},
                    {"mode", probe::to_string(res.mode)},
                    {"pattern", probe::to_string(r.pattern)},
                    {"connect", connect_json(res.flow->connection())},
                    {"findings", r.findings},
                    {"anomaly_count", c.anomaly_total},
                    {"our_fin_to_peer_ack_us", opt_us(between(r.our_fin, r.peer_ack_of_fin))},
                    {"our_fin_to_peer_fin_us", opt_us(between(r.our_fin, r.peer_fin))},
                    {"peer_close_wait_us", opt_us(res.flow->peer_close_wait())},
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
                    {"local_states", spans_json(res.local)},
                    {"peer_states", spans_json(res.peer)},
                    {"time_wait", tw_json}});
    return summary;
}

class CloseJob final : public TypedJob<CloseResult> {
public:
    CloseJob(const CloseOptions& o, std::string command, probe::CloseMode mode)
        : o_(o), command_(std::move(command)), prep_(prepare_target(o.target, o.syn, o.conn)) {
        cc_.mode = mode;
        cc_.request = o.request.empty() ? ByteVec{} : parse_request(o.request);
        cc_.idle = parse_duration(o.idle, "--idle");
        cc_.max_wait = parse_duration(o.max_wait, "--max-wait");
        time_wait_ = parse_duration(o.time_wait, "--time-wait");
    }

    std::unique_ptr<Edge> open(const GlobalOptions& g) override {
        return open_edge(g, {{prep_.addr}, {prep_.target.port}, 1, prep_.syn.sport, true});
    }

    void build(probe::Session& session, Edge& edge, Renderer&) override {
        probe::CloseConfig cc = cc_;
        cc.connect = make_connect_config(prep_, edge, 0);
        cc.connect.tcb.time_wait = time_wait_;
        auto flow = std::make_unique<probe::CloseFlow>(std::move(cc));
        flow_ = flow.get();
        session.add(edge.clock().now(), std::move(flow));
    }

    CloseResult result(const Edge& edge, const RunStats&) override {
        CloseResult r;
        r.head = run_head(command_, o_.target, prep_, edge);
        r.mode = cc_.mode;
        r.flow = flow_;
        r.local = spans(flow_->report().local_states);
        r.peer = spans(flow_->report().peer_states);
        r.verdict = r.connected() ? verdict_of(flow_->report().outcome) : verdict_of(flow_->connect_result().verdict);
        return r;
    }

private:
    CloseOptions o_;
    std::string command_;
    PreparedTarget prep_;
    probe::CloseConfig cc_;
    Duration time_wait_{};
    const probe::CloseFlow* flow_ = nullptr;
};

}  // namespace

CommandSpec teardown_command() {
    return make_command<CloseOptions>(
        "teardown", "handshake, optional request, then a close sequence (--mode)",
        [](CLI::App& cmd, CloseOptions& o) { close_options(cmd, o, true); },
        [](const GlobalOptions&, const CloseOptions& o) { return std::make_unique<CloseJob>(o, "teardown", o.mode); });
}

CommandSpec half_close_command() {
    return make_command<CloseOptions>(
        "half-close", "handshake, request, our FIN at once; keep receiving until the peer's FIN",
        [](CLI::App& cmd, CloseOptions& o) { close_options(cmd, o, false); },
        [](const GlobalOptions&, const CloseOptions& o) {
            return std::make_unique<CloseJob>(o, "half-close", probe::CloseMode::HalfClose);
        });
}

}  // namespace tcpprobe::app
