// `tcpprobe handshake HOST:PORTS...`: one flow per destination and --count round, each a
// SYN with the chosen options, completed with an ACK (or a RST with --half-open).
#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "tcpprobe/app/cli_options.hpp"
#include "tcpprobe/app/command.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/handshake.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

void options(CLI::App& cmd, HandshakeOptions& h) {
    add_targets(cmd, h.targets, "host:443");
    add_syn_options(cmd, h.syn);
    cmd.add_flag("--half-open", h.half_open, "answer the SYN-ACK with RST instead of ACK (no RST guard needed)");
    number(cmd, "-c,--count", h.count, "number of handshakes, each from its own source port (default 1)");
    cmd.add_option("--interval", h.interval, "time between handshake starts with --count (default 1s)")->type_name("DURATION");
    cmd.add_flag("--stale-syn", h.stale_syn, "send a stale SYN first, then the real one (RFC 9293 old duplicate SYN)");
    cmd.add_option("--linger", h.linger, "after the handshake, keep receiving and ACKing this long (default 0)")->type_name("DURATION");
    add_connect_options(cmd, h.conn);
}

struct HandshakeResult {
    Verdict verdict = Verdict::Pending;
    RunHead head;
    struct Probe {
        const std::string* host;  ///< as the user wrote it
        const probe::HandshakeFlow* flow;
        std::string target() const { return fmt::format("{}:{}", *host, flow->tuple().remote.port); }
    };
    std::vector<Probe> probes;
    unsigned answered = 0;
    std::size_t anomalies = 0;
    std::vector<double> rtt_us;  ///< of the open ones whose RTT is not ambiguous
    std::size_t ambiguous = 0;   ///< open ones whose RTT is ambiguous (left out of rtt_us)
    RunStats stats;
    bool one() const { return probes.size() == 1; }
    double loss_pct() const {
        return 100.0 * static_cast<double>(probes.size() - answered) / static_cast<double>(probes.size());
    }
};

nlohmann::json stale_json(const probe::StaleSynReport& st) {
    return {{"first_answered", st.first_answered},
            {"second_answer", st.second_answer ? nlohmann::json(*st.second_answer) : nlohmann::json(nullptr)},
            {"second_answer_acks_old", st.second_answer_acks_old},
            {"reset_sent", st.reset_sent}};
}

nlohmann::json to_json(const HandshakeResult& r) {
    nlohmann::json summary = to_json(r.head);
    summary.update({{"verdict", to_string(r.verdict)},
                    {"sent", r.probes.size()},
                    {"answered", r.answered},
                    {"loss_pct", r.loss_pct()},
                    {"anomaly_count", r.anomalies},
                    {"rtt_ambiguous_count", r.ambiguous},
                    {"capture_drops", r.stats.capture_drops}});
    if (!r.one() && !r.rtt_us.empty()) {
        RttStats s = rtt_stats(r.rtt_us);
        summary["rtt"] = {{"min_us", std::llround(s.min_us)}, {"avg_us", std::llround(s.avg_us)},
                          {"max_us", std::llround(s.max_us)}, {"mdev_us", std::llround(s.mdev_us)}};
    }
    return summary;
}

/// "probes": one object per flow, made as it is written.
JsonList json_list(std::shared_ptr<const HandshakeResult> r) {
    const std::size_t n = r->probes.size();
    return {"probes", n, [r = std::move(r)](std::size_t i) {
                const auto& p = r->probes[i];
                nlohmann::json j = connect_json(p.flow->connection());
                j["target"] = p.target();
                if (const auto& st = p.flow->stale()) j["stale_syn"] = stale_json(*st);
                return j;
            }};
}

std::string to_text(const HandshakeResult& r) {
    std::string text = fmt::format("\n--- {} handshake ---\n", r.head.target);
    for (const auto& p : r.probes) {
        const auto& c = p.flow->connect_result();
        std::string head = r.one() ? "" : fmt::format("[{}] {} ", p.flow->tuple().local.port, p.target());
        text += head + connect_line(c) + '\n';
        if (r.one() && c.answer && c.verdict == probe::Verdict::Open)
            text += fmt::format("peer options: <{}>\n", format_options(c.peer_options));
        if (r.one() && c.negotiated) text += fmt::format("negotiated: {}\n", negotiated_text(*c.negotiated));
        if (const auto& st = p.flow->stale())
            text += fmt::format("stale SYN: first answered {}, peer answered the real SYN with {}{}, stale connection reset {}\n",
                                st->first_answered ? "yes" : "no", st->second_answer.value_or("nothing"),
                                st->second_answer_acks_old ? " acknowledging the stale ISN" : "", st->reset_sent ? "yes" : "no");
        text += anomaly_lines(c, head);
    }
    if (!r.one()) {
        text += fmt::format("{} handshakes, {} answered, {:.1f}% loss\n", r.probes.size(), r.answered, r.loss_pct());
        if (!r.rtt_us.empty()) {
            RttStats s = rtt_stats(r.rtt_us);
            text += fmt::format("rtt min/avg/max/mdev = {:.3f}/{:.3f}/{:.3f}/{:.3f} ms\n", s.min_us / 1e3, s.avg_us / 1e3,
                                s.max_us / 1e3, s.mdev_us / 1e3);
        }
        if (r.ambiguous)
            text += fmt::format("({} ambiguous RTT(s) left out: the SYN went more than once and the answer names no copy)\n",
                                r.ambiguous);
    }
    if (r.stats.undecodable) text += fmt::format("{} captured packet(s) could not be decoded\n", r.stats.undecodable);
    if (r.stats.capture_drops) text += fmt::format("the capture lost {} packet(s): some verdicts may be wrong\n", r.stats.capture_drops);
    return text;
}

class HandshakeJob final : public TypedJob<HandshakeResult> {
public:
    explicit HandshakeJob(const HandshakeOptions& o) : o_(o) {
        // Every HOST:PORTS expands to destinations; each gets --count flows of its own. A
        // HOST:PORTS is prepared once (its ports differ in nothing else): 10,000 ports
        // were 10,000 prepared targets, about 400 bytes each.
        for (const auto& text : o.targets) {
            TargetSpec spec = parse_target_spec(text);
            specs_.push_back(prepare_target(fmt::format("{}:{}", spec.host, spec.ports.front()), o.syn, o.conn));
            for (auto port : spec.ports) dests_.push_back({specs_.size() - 1, port});
        }
        if (dests_.empty()) throw io::UsageError("handshake: no target given (HOST:PORTS)");
        interval_ = parse_duration(o.interval, "--interval");
        linger_ = parse_duration(o.linger, "--linger");
        if (o.count < 1) throw io::UsageError("--count: must be at least 1");
        total_ = dests_.size() * o.count;
        if (total_ > 1 && o.syn.sport) throw io::UsageError("--sport goes with one handshake only (each flow needs its own port)");
        if (o.half_open && o.stale_syn) throw io::UsageError("--half-open and --stale-syn cannot be combined");
    }

    std::unique_ptr<Edge> open(const GlobalOptions& g) override {
        std::vector<Ipv4Addr> addrs;
        std::vector<std::uint16_t> ports;
        for (const auto& s : specs_)
            if (std::find(addrs.begin(), addrs.end(), s.addr) == addrs.end()) addrs.push_back(s.addr);
        for (const auto& d : dests_)
            if (std::find(ports.begin(), ports.end(), d.port) == ports.end()) ports.push_back(d.port);
        return open_edge(g, {addrs, ports, total_, specs_.front().syn.sport, !o_.half_open});
    }

    void build(probe::Session& session, Edge& edge, Renderer& renderer) override {
        renderer.set_multi_flow(total_ > 1);
        session.reserve(total_);
        probes_.reserve(total_);
        const Instant start = edge.clock().now();
        for (std::size_t i = 0; i < total_; ++i) {
            // Round k of --count reaches every destination together (within the global pace).
            const std::size_t d = i % dests_.size(), round = i / dests_.size();
            PreparedTarget dest = specs_[dests_[d].spec];
            dest.target.port = dests_[d].port;
            probe::HandshakeConfig hc;
            hc.connect = make_connect_config(dest, edge, i);
            hc.half_open = o_.half_open;
            hc.connect.kernel_rst_expected = o_.half_open && !edge.rst_guard;
            hc.stale_syn = o_.stale_syn;
            hc.stale_isn = hc.connect.tcb.iss + 0x40000000u;  // far from the real ISN, either way round
            hc.linger = linger_;
            auto flow = std::make_unique<probe::HandshakeFlow>(std::move(hc));
            probes_.push_back({&specs_[dests_[d].spec].target.host, flow.get()});
            session.add(start + interval_ * static_cast<std::int64_t>(round), std::move(flow));
        }
    }

    HandshakeResult result(const Edge& edge, const RunStats& stats) override {
        HandshakeResult r;
        r.head = run_head("handshake", fmt::format("{}", fmt::join(o_.targets, " ")), specs_.front(), edge);
        r.probes = probes_;
        r.stats = stats;
        probe::Verdict verdict = probe::Verdict::Pending;
        for (const auto& p : probes_) {
            const auto& c = p.flow->connect_result();
            verdict = probe::combine(verdict, c.verdict);
            r.anomalies += c.anomaly_total;
            if (c.verdict == probe::Verdict::Open || c.verdict == probe::Verdict::Closed || c.verdict == probe::Verdict::Unreachable)
                ++r.answered;
            // Karn: an RTT that may run from the wrong SYN stays out of the figures.
            if (c.rtt && c.verdict == probe::Verdict::Open) {
                if (c.rtt_ambiguous) ++r.ambiguous;
                else r.rtt_us.push_back(static_cast<double>(to_us(*c.rtt)));
            }
        }
        r.verdict = verdict_of(verdict);
        return r;
    }

private:
    HandshakeOptions o_;
    std::vector<PreparedTarget> specs_;  ///< one per HOST:PORTS, prepared for its first port
    struct Dest {
        std::size_t spec;
        std::uint16_t port;
    };
    std::vector<Dest> dests_;
    Duration interval_{}, linger_{};
    std::size_t total_ = 0;
    std::vector<HandshakeResult::Probe> probes_;
};

}  // namespace

CommandSpec handshake_command() {
    return job_command<HandshakeOptions, HandshakeJob>("handshake", "SYN with the chosen options, observe, complete (or reset)",
                                                       options);
}

}  // namespace tcpprobe::app
