// `tcpprobe keepalive HOST:PORT`: stay idle and record the peer's keepalive probes
// (idle time, interval, count, what ends them → tcp_keepalive_time/intvl/probes when
// Linux-like), or with --send INTERVAL send ours and see whether the peer answers each.
#include <fmt/format.h>

#include <algorithm>

#include "tcpprobe/app/cli_options.hpp"
#include "tcpprobe/app/command.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/keepalive.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

void options(CLI::App& cmd, KeepaliveOptions& o) {
    add_target(cmd, o.target);
    add_syn_options(cmd, o.syn);
    add_connect_options(cmd, o.conn);
    cmd.add_option("--request", o.request, "data to send once connected (default none): TEXT with escapes, or @FILE")
        ->type_name("TEXT|@FILE");
    number(cmd, "--answer", o.answer, "answer the peer's first N probes with an ACK (default 0)");
    cmd.add_option("--max-wait", o.max_wait, "longest wait for the peer's probes (default 135m: Linux's default 2 h and its probes)")
        ->type_name("DURATION");
    cmd.add_option("--send", o.send, "send our own keepalive probes this far apart (at least 600ms) instead")->type_name("INTERVAL");
    number(cmd, "--count", o.count, "with --send: probes to send (default 3)");
}

std::string secs(Duration d) { return fmt::format("{:.3f} s", to_ms_f(d) / 1000); }
nlohmann::json opt_us(std::optional<Duration> d) { return d ? nlohmann::json(to_us(*d)) : nlohmann::json(nullptr); }

struct Inferred {
    std::string sysctl;
    unsigned value;
};

/// Linux's settings from a watched run: each figure that matches its timer, and the
/// probe count only when the RST came one interval after the last probe (Linux's way).
std::vector<Inferred> infer(const probe::KeepaliveFigures& f, const probe::KeepaliveReport& r, Duration tolerance) {
    std::vector<Inferred> out;
    if (f.idle)
        if (auto n = probe::infer_linux_seconds(*f.idle, tolerance)) out.push_back({"tcp_keepalive_time", *n});
    std::optional<unsigned> intvl;
    if (f.interval) intvl = probe::infer_linux_seconds(*f.interval, tolerance);
    if (intvl) out.push_back({"tcp_keepalive_intvl", *intvl});
    if (intvl && r.end == probe::KeepaliveEnd::Rst && f.end_after_last) {
        const Duration i = std::chrono::seconds{*intvl};
        if (*f.end_after_last + tolerance >= i && *f.end_after_last <= i + probe::linux_timer_slack(i) + tolerance)
            out.push_back({"tcp_keepalive_probes", f.unanswered});
    }
    return out;
}

std::string end_text(const probe::KeepaliveReport& r, const probe::KeepaliveFigures& f) {
    switch (r.end) {
        case probe::KeepaliveEnd::Rst:
            return f.end_after_last ? fmt::format("a RST {} after the last probe", secs(*f.end_after_last)) : "a RST";
        case probe::KeepaliveEnd::Silence: return "silence (no RST, no further probe)";
        case probe::KeepaliveEnd::PeerFin: return "the peer closed (FIN)";
        case probe::KeepaliveEnd::MaxWait: return "--max-wait";
        case probe::KeepaliveEnd::Interrupted: return "interrupted";
        case probe::KeepaliveEnd::None: break;
    }
    return "-";
}


struct KeepaliveResult {
    Verdict verdict = Verdict::Pending;
    RunHead head;
    const probe::KeepaliveFlow* flow = nullptr;
    probe::KeepaliveMode mode = probe::KeepaliveMode::Watch;
    unsigned answer = 0;
    Duration max_wait{};
    probe::KeepaliveFigures figures;
    std::vector<Inferred> inferred;
    unsigned answered = 0;  ///< send: our probes the peer answered
};

std::string to_text(const KeepaliveResult& r) {
    const auto& c = r.flow->connect_result();
    const auto& rep = r.flow->report();
    const auto& fig = r.figures;
    std::string text = fmt::format("\n--- {} keepalive ---\n", r.head.target);
    if (c.verdict != probe::Verdict::Open) return text + connect_line(c) + "\n";
    if (r.mode == probe::KeepaliveMode::Send)
        return text + fmt::format("our keepalive probes (SND.NXT-1, no data): {} of {} answered with an ACK{}\n", r.answered,
                                  rep.probes.size(), r.answered == rep.probes.size() ? " (RFC 1122 §4.2.3.6)" : "");
    if (rep.probes.empty()) return text + fmt::format("no keepalive within --max-wait ({})\n", secs(r.max_wait));
    text += fmt::format("keepalive: first probe after {} idle; {} unanswered probe(s){}; ended by {}\n",
                        fig.idle ? secs(*fig.idle) : std::string("?"), fig.unanswered,
                        fig.interval ? fmt::format(" {} apart", secs(*fig.interval)) : std::string(), end_text(rep, fig));
    for (const auto& d : fig.idle_after_answer)
        text += fmt::format("after our answer the next probe came {} later: the idle timer restarted\n", secs(d));
    std::string inf;
    for (const auto& i : r.inferred) inf += fmt::format("{}{} = {}", inf.empty() ? "" : ", ", i.sysctl, i.value);
    if (!inf.empty()) text += "inferred (Linux): " + inf + "\n";
    return text;
}

nlohmann::json to_json(const KeepaliveResult& r) {
    const auto& c = r.flow->connect_result();
    const auto& rep = r.flow->report();
    const bool opened = c.verdict == probe::Verdict::Open;
    nlohmann::json j = to_json(r.head);
    auto probes = nlohmann::json::array();
    const Instant base = rep.idle_start.value_or(rep.probes.empty() ? Instant{} : rep.probes.front().t);
    for (const auto& p : rep.probes)
        probes.push_back({{"offset_us", to_us(p.t - base)}, {"length", p.length}, {"answered", p.answered}, {"rtt_us", opt_us(p.rtt)}});
    j.update({{"verdict", to_string(r.verdict)},
              {"mode", r.mode == probe::KeepaliveMode::Send ? "send" : "watch"},
              {"end", opened ? nlohmann::json(probe::to_string(rep.end)) : nlohmann::json(nullptr)},
              {"probes", probes},
              {"connect", connect_json(r.flow->connection())}});
    if (r.mode == probe::KeepaliveMode::Send) {
        j["answered"] = r.answered;
        return j;
    }
    const auto& fig = r.figures;
    auto after = nlohmann::json::array();
    for (auto d : fig.idle_after_answer) after.push_back(to_us(d));
    auto inf = nlohmann::json::array();
    for (const auto& i : r.inferred) inf.push_back({{"sysctl", i.sysctl}, {"value", i.value}});
    j.update({{"answer", r.answer},
              {"idle_us", opt_us(fig.idle)},
              {"idle_after_answer_us", after},
              {"interval_us", opt_us(fig.interval)},
              {"unanswered", fig.unanswered},
              {"end_after_last_us", opt_us(fig.end_after_last)},
              {"inferred", inf}});
    return j;
}

class KeepaliveJob final : public TypedJob<KeepaliveResult> {
public:
    explicit KeepaliveJob(const KeepaliveOptions& o) : o_(o), prep_(prepare_target(o.target, o.syn, o.conn)) {
        kc_.request = parse_request(o.request);
        kc_.answer = o.answer;
        kc_.max_wait = parse_duration(o.max_wait, "--max-wait");
        kc_.count = o.count;
        if (!o.send.empty()) {
            kc_.mode = probe::KeepaliveMode::Send;
            kc_.send_interval = parse_duration(o.send, "--send");
            if (kc_.send_interval < std::chrono::milliseconds{600})
                throw io::UsageError(fmt::format("--send: '{}' is below 600ms (Linux answers such probes at most once per 500 ms)", o.send));
            if (o.count == 0 || o.count > 1000) throw io::UsageError(fmt::format("--count: {} is not 1 to 1000", o.count));
            if (o.answer > 0) throw io::UsageError("--answer goes with watching the peer's probes, not with --send");
        }
    }

    std::unique_ptr<Edge> open(const GlobalOptions& g) override {
        return open_edge(g, {{prep_.addr}, {prep_.target.port}, 1, prep_.syn.sport, true});
    }

    void build(probe::Session& session, Edge& edge, Renderer&) override {
        kc_.connect = make_connect_config(prep_, edge, 0);
        auto flow = std::make_unique<probe::KeepaliveFlow>(kc_);
        flow_ = flow.get();
        session.add(edge.clock().now(), std::move(flow));
    }

    KeepaliveResult result(const Edge& edge, const RunStats& stats) override {
        KeepaliveResult r;
        r.head = run_head("keepalive", o_.target, prep_, edge);
        r.flow = flow_;
        r.mode = kc_.mode;
        r.answer = kc_.answer;
        r.max_wait = kc_.max_wait;
        const auto& c = flow_->connect_result();
        const auto& rep = flow_->report();
        if (stats.interrupted) r.verdict = Verdict::Interrupted;
        else if (c.verdict != probe::Verdict::Open) r.verdict = verdict_of(c.verdict);
        else if (kc_.mode == probe::KeepaliveMode::Send) {
            r.answered = static_cast<unsigned>(
                std::count_if(rep.probes.begin(), rep.probes.end(), [](const probe::KeepaliveProbe& p) { return p.answered; }));
            r.verdict = !rep.probes.empty() && r.answered == rep.probes.size() ? Verdict::Answered
                        : r.answered > 0                                        ? Verdict::PartlyAnswered
                                                                                : Verdict::Unanswered;
        } else {
            r.figures = flow_->figures();
            r.inferred = infer(r.figures, rep, 2 * c.rtt.value_or(Duration::zero()) + 10ms);
            r.verdict = rep.probes.empty() ? Verdict::NoKeepalive : Verdict::Keepalive;
        }
        return r;
    }

private:
    KeepaliveOptions o_;
    PreparedTarget prep_;
    probe::KeepaliveConfig kc_;
    const probe::KeepaliveFlow* flow_ = nullptr;
};

}  // namespace

CommandSpec keepalive_command() {
    return job_command<KeepaliveOptions, KeepaliveJob>("keepalive", "stay idle and record the peer's keepalive probes (or --send ours)",
                                                       options);
}

}  // namespace tcpprobe::app
