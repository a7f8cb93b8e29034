// `tcpprobe retransmit HOST:PORT`: the peer's SYN-ACK or FIN retransmission schedule,
// measured at the wire, fitted against exponential backoff, with the inferred Linux
// setting; --count repeats it on fresh source ports and summarises the spread.
#include <algorithm>

#include <fmt/format.h>

#include "tcpprobe/app/cli_options.hpp"
#include "tcpprobe/app/command.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/retransmit.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

const Words<probe::RetxSegment> segment_words = words_of({probe::RetxSegment::SynAck, probe::RetxSegment::Fin});

void options(CLI::App& cmd, RetransmitOptions& r) {
    add_target(cmd, r.target);
    add_syn_options(cmd, r.syn);
    add_connect_options(cmd, r.conn);
    choice(cmd, "--segment", r.segment, segment_words, "synack (default): one SYN, never ACK the SYN-ACK; fin: never ACK the peer's FIN");
    cmd.add_flag("--peer-closes-first", r.peer_closes_first, "fin: the peer closes first (after --request) and sits in FIN-WAIT-1");
    cmd.add_option("--request", r.request, "data to send after the handshake (fin): TEXT with escapes, or @FILE")->type_name("TEXT|@FILE");
    cmd.add_option("--idle", r.idle, "fin: delay from the open connection (and request) to our FIN (default 200ms)")->type_name("DURATION");
    cmd.add_option("--ack-delay", r.ack_delay, "fin: send our ACKs (handshake, data) this late, so the peer measures a longer RTT and its RTO grows (default 0)")->type_name("DURATION");
    cmd.add_flag("--no-follow-up", r.no_follow_up, "fin: no follow-up runs at a longer RTO (when the runs leave Linux's setting between values, or start from an RTT the peer cached)");
    cmd.add_option("--max-wait", r.max_wait, "longest measurement (default 75s)")->type_name("DURATION");
    cmd.add_option("--tolerance", r.tolerance, "gap tolerance: absolute floor and/or percent (default 50ms,10%)")->type_name("FLOOR,PCT%");
    cmd.add_flag("--no-cleanup", r.no_cleanup, "do not send the final RST that clears the peer's state");
    number(cmd, "-c,--count", r.count, "N connections measured in parallel, each on its own source port, merged so that a copy lost in one run is seen in another (default 3)");
}

std::string sysctl_for(probe::RetxSegment s) {
    return s == probe::RetxSegment::SynAck ? "tcp_synack_retries" : "tcp_orphan_retries";
}

std::string what_for(probe::RetxSegment s) { return s == probe::RetxSegment::SynAck ? "SYN-ACK" : "FIN"; }

/// Why a peer may not retransmit at all.
std::vector<std::string> no_retransmission_causes(probe::RetxSegment s) {
    if (s == probe::RetxSegment::SynAck)
        return {"SYN cookies (tcp_syncookies=2, or under SYN flood): the server keeps no state to retransmit from",
                "a SYN proxy or load balancer in front answers the SYN itself",
                "tcp_synack_retries=0"};
    return {"the peer never sent a FIN to retransmit", "tcp_orphan_retries set very low, or the peer reset instead",
            "a middlebox acknowledged the FIN on our behalf"};
}

nlohmann::json run_json(const probe::RetransmitFlow& f) {
    const auto& r = f.report();
    nlohmann::json j = schedule_json(r.evidence, r.fit, sysctl_for(f.config().segment));
    j.update({{"sport", f.tuple().local.port},
              {"end", r.end},
              {"trailing_rst", r.rst_at.has_value()},
              {"probes_sent", r.probes_sent},
              {"cleanup_sent", r.cleanup_sent}});
    // Only where our ACKs were delayed (--ack-delay, follow-up runs): the other runs' objects
    // are as before.
    if (const Duration d = f.connection().config().ack_delay; d > Duration::zero()) j["ack_delay_us"] = to_us(d);
    if (r.follow_up) j["follow_up"] = true;
    j["connect"] = connect_json(f.connection());
    return j;
}

std::string run_text(const probe::RetransmitFlow& f) {
    const auto& r = f.report();
    const std::string what = what_for(f.config().segment);
    if (r.times.empty()) return fmt::format("no {} seen ({})\n", what, r.end);
    std::string t = schedule_text(r.evidence, r.fit, sysctl_for(f.config().segment), what);
    if (r.rst_at) t += fmt::format("  RST +{:.3f} ms after the first {}\n", to_ms_f(*r.rst_at - r.times.front()), what);
    return t;
}

struct RetransmitResult {
    Verdict verdict = Verdict::Pending;
    RunHead head;
    std::string segment_word;  ///< --segment as given
    probe::RetxSegment segment = probe::RetxSegment::SynAck;
    bool peer_closes_first = false;
    probe::Tolerance tolerance;
    std::vector<const probe::RetransmitFlow*> flows;
    std::vector<const probe::RetransmitFlow*> measured;  ///< the runs that connected
    /// The schedule that speaks for all runs: the one run, the SYN-ACK runs merged, or the
    /// FIN runs' vote (with the speaker's port).
    std::optional<probe::ScheduleEvidence> evidence;
    probe::ScheduleFit fit;
    std::optional<std::uint16_t> speaker;
    std::optional<ScheduleVerdict> judged;  ///< when measured
};

/// The spread over runs, gap by gap: (min, median, max, runs).
struct GapSpread {
    Duration min, median, max;
    std::size_t runs;
};
std::vector<GapSpread> spread(const std::vector<const probe::RetransmitFlow*>& measured) {
    std::vector<GapSpread> out;
    if (measured.size() < 2) return out;
    std::size_t most = 0;
    // Follow-up runs run at another RTO on purpose: their gaps are not spread.
    for (const auto* f : measured) most = std::max(most, f->report().fit.gaps.size());
    for (std::size_t i = 0; i < most; ++i) {
        std::vector<Duration> v;
        for (const auto* f : measured)
            if (i < f->report().fit.gaps.size() && !f->report().follow_up) v.push_back(f->report().fit.gaps[i]);
        if (v.empty()) continue;
        std::sort(v.begin(), v.end());
        out.push_back({v.front(), v[v.size() / 2], v.back(), v.size()});
    }
    return out;
}

std::string to_text(const RetransmitResult& r) {
    const std::string what = what_for(r.segment), sysctl = sysctl_for(r.segment);
    std::string text = fmt::format("\n--- {} retransmit ({}{}) ---\n", r.head.target, r.segment_word,
                                   r.peer_closes_first ? ", peer closes first" : "");
    for (const auto* f : r.flows) {
        if (f->report().follow_up)
            text += fmt::format("[{}] follow-up run, our ACKs {:.0f} ms late\n", f->tuple().local.port, to_ms_f(f->connection().config().ack_delay));
        else if (r.flows.size() > 1)
            text += fmt::format("[{}]\n", f->tuple().local.port);
        text += f->connect_result().verdict != probe::Verdict::Open ? fmt::format("connect: {}\n", connect_line(f->connect_result()))
                                                                    : run_text(*f);
    }
    if (r.evidence && r.measured.size() > 1) {
        text += r.speaker ? fmt::format("judged over {} runs (each connection has its own RTO), speaking: [{}]\n", r.measured.size(), *r.speaker)
                          : fmt::format("merged over {} runs:\n", r.measured.size());
        text += schedule_text(*r.evidence, r.fit, sysctl, what);
    }
    const auto gaps = spread(r.measured);
    if (!gaps.empty()) text += "spread over runs (observed gaps):\n";
    for (std::size_t i = 0; i < gaps.size(); ++i)
        text += fmt::format("  gap {}: min {:.3f} median {:.3f} max {:.3f} ms ({} runs)\n", i + 1, to_ms_f(gaps[i].min),
                            to_ms_f(gaps[i].median), to_ms_f(gaps[i].max), gaps[i].runs);
    if (r.judged == ScheduleVerdict::NoRetransmission) {
        text += fmt::format("no retransmission of the {}: the peer dropped the state after its first copy. Likely causes:\n", what);
        for (const auto& c : no_retransmission_causes(r.segment)) text += fmt::format("  - {}\n", c);
    }
    if (r.judged == ScheduleVerdict::Inconclusive)
        text += fmt::format("inconclusive: {} copies seen over {} run(s), {} liveness probe(s) sent; the end of the schedule "
                            "could not be pinned (see the notes above)\n",
                            r.evidence->copies.size(), r.measured.size(), r.evidence->probes.size());
    text += fmt::format("verdict {}\n", to_string(r.verdict));
    return text;
}

nlohmann::json to_json(const RetransmitResult& r) {
    auto runs = nlohmann::json::array();
    for (const auto* f : r.flows) runs.push_back(run_json(*f));
    nlohmann::json merged = nullptr;
    if (r.evidence) {
        merged = schedule_json(*r.evidence, r.fit, sysctl_for(r.segment));
        merged["runs"] = r.measured.size();
        if (r.judged == ScheduleVerdict::NoRetransmission) merged["no_retransmission_causes"] = no_retransmission_causes(r.segment);
    }
    auto gaps = nlohmann::json::array();
    const auto spreads = spread(r.measured);
    for (std::size_t i = 0; i < spreads.size(); ++i)
        gaps.push_back({{"gap", i + 1}, {"min_us", to_us(spreads[i].min)}, {"median_us", to_us(spreads[i].median)},
                        {"max_us", to_us(spreads[i].max)}, {"runs", spreads[i].runs}});
    nlohmann::json summary = to_json(r.head);
    summary.update({{"verdict", to_string(r.verdict)},
                    {"segment", r.segment_word},
                    {"peer_closes_first", r.peer_closes_first},
                    {"tolerance", {{"floor_us", to_us(r.tolerance.floor)}, {"percent", r.tolerance.percent}}},
                    {"runs", runs},
                    {"merged", merged},
                    {"spread", gaps}});
    // The merged inference at the top level, as DESIGN §1 spells it.
    summary["inferred"] = merged.is_object() ? merged["inferred"] : nlohmann::json(nullptr);
    return summary;
}

class RetransmitJob final : public TypedJob<RetransmitResult> {
public:
    explicit RetransmitJob(const RetransmitOptions& o) : o_(o), prep_(prepare_target(o.target, o.syn, o.conn)) {
        base_.segment = o.segment;
        if (o.peer_closes_first && base_.segment != probe::RetxSegment::Fin)
            throw io::UsageError("--peer-closes-first goes with --segment fin");
        base_.peer_closes_first = o.peer_closes_first;
        base_.request = o.request.empty() ? ByteVec{} : parse_request(o.request);
        if (o.peer_closes_first && base_.request.empty())
            throw io::UsageError("--peer-closes-first needs --request (something that makes the peer close, e.g. 'GET / HTTP/1.0\\r\\n\\r\\n')");
        base_.idle = parse_duration(o.idle, "--idle");
        ack_delay_ = parse_duration(o.ack_delay, "--ack-delay");
        if (ack_delay_ > Duration::zero() && base_.segment != probe::RetxSegment::Fin) throw io::UsageError("--ack-delay goes with --segment fin");
        if (ack_delay_ > Duration::zero() && o.peer_closes_first)
            throw io::UsageError("--ack-delay cannot go with --peer-closes-first: our late ACK of the peer's data would restart its FIN timer");
        if (ack_delay_ > std::chrono::milliseconds{900})
            throw io::UsageError("--ack-delay: at most 900ms (a later ACK meets the peer's SYN-ACK retransmission, 1 s on Linux)");
        base_.max_wait = parse_duration(o.max_wait, "--max-wait");
        base_.tolerance = parse_tolerance(o.tolerance, "--tolerance");
        base_.cleanup = !o.no_cleanup;
        if (o.count < 1) throw io::UsageError("--count: must be at least 1");
        if (o.count > 1 && o.syn.sport) throw io::UsageError("--sport cannot be combined with --count > 1 (use --count 1)");
    }

    std::unique_ptr<Edge> open(const GlobalOptions& g) override {
        return open_edge(g, {{prep_.addr}, {prep_.target.port}, o_.count + follow_ups(), prep_.syn.sport, true});
    }

    /// FIN, several runs: this many follow-up runs stand by (two, so that one lost
    /// segment does not waste the follow-up); they run only when the first runs need them.
    unsigned follow_ups() const {
        // Not with --peer-closes-first: our late ACK of the peer's data would restart its FIN timer.
        return base_.segment == probe::RetxSegment::Fin && o_.count > 1 && !o_.no_follow_up && !o_.peer_closes_first ? 2 : 0;
    }

    void build(probe::Session& session, Edge& edge, Renderer& renderer) override {
        renderer.set_multi_flow(o_.count > 1);
        // The runs go in parallel: a copy lost in one is seen in another.
        for (unsigned i = 0; i < o_.count; ++i) {
            probe::RetransmitConfig rc = base_;
            rc.connect = make_connect_config(prep_, edge, i);
            // Our SYN is repeated only after a long silence: a repeated SYN makes many stacks
            // resend their SYN-ACK at once and restart its timer, which would skew the schedule.
            if (base_.segment == probe::RetxSegment::SynAck) {
                rc.connect.tcb.rto.initial_rto = std::max(rc.connect.tcb.rto.initial_rto, Duration{std::chrono::milliseconds{2500}});
                rc.connect.tcb.rto.syn_linear = 0;  // and after longer silences each time
            }
            rc.connect.ack_delay = ack_delay_;
            auto flow = std::make_unique<probe::RetransmitFlow>(std::move(rc));
            flows_.push_back(flow.get());
            session.add(edge.clock().now(), std::move(flow));
        }
        const std::vector<const probe::RetransmitFlow*> first(flows_);
        for (unsigned i = 0; i < follow_ups(); ++i) {
            probe::RetransmitConfig rc = base_;
            rc.connect = make_connect_config(prep_, edge, o_.count + i);
            rc = probe::follow_up_config(std::move(rc), [first, tol = base_.tolerance] { return probe::decide_follow_up(first, tol); });
            auto flow = std::make_unique<probe::RetransmitFlow>(std::move(rc));
            flows_.push_back(flow.get());
            session.add(edge.clock().now(), std::move(flow));
        }
    }

    RetransmitResult result(const Edge& edge, const RunStats&) override {
        RetransmitResult r;
        r.head = run_head("retransmit", o_.target, prep_, edge);
        r.segment_word = word_of(segment_words, o_.segment);
        r.segment = base_.segment;
        r.peer_closes_first = o_.peer_closes_first;
        r.tolerance = base_.tolerance;
        for (const auto* f : flows_)
            if (!f->skipped()) r.flows.push_back(f);
        const probe::RetransmitRuns runs = probe::judge_runs(r.flows, base_.segment, base_.tolerance);
        r.measured = runs.measured;
        r.evidence = runs.evidence;
        r.fit = runs.fit;
        r.speaker = runs.speaker;
        r.judged = runs.judged;
        r.verdict = runs.judged ? verdict_of(*runs.judged) : verdict_of(runs.connect);
        return r;
    }

private:
    RetransmitOptions o_;
    PreparedTarget prep_;
    probe::RetransmitConfig base_;
    Duration ack_delay_{};
    std::vector<const probe::RetransmitFlow*> flows_;
};

}  // namespace

CommandSpec retransmit_command() {
    return job_command<RetransmitOptions, RetransmitJob>("retransmit",
                                                         "the peer's SYN-ACK or FIN retransmission schedule, never ACKed", options);
}

}  // namespace tcpprobe::app
