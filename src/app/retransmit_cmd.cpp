// `tcpprobe retransmit HOST:PORT`: the peer's SYN-ACK or FIN retransmission schedule,
// measured at the wire, fitted against exponential backoff, with the inferred Linux
// setting; --count repeats it on fresh source ports and summarises the spread.
#include <algorithm>

#include <fmt/format.h>

#include "tcpprobe/app/cli.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/app/runner.hpp"
#include "tcpprobe/app/verdict.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/retransmit.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

std::string sysctl_for(const probe::RetransmitConfig& c) {
    return c.segment == probe::RetxSegment::SynAck ? "tcp_synack_retries" : "tcp_orphan_retries";
}

/// Why a peer may not retransmit at all.
std::vector<std::string> no_retransmission_causes(const probe::RetransmitConfig& c) {
    if (c.segment == probe::RetxSegment::SynAck)
        return {"SYN cookies (tcp_syncookies=2, or under SYN flood): the server keeps no state to retransmit from",
                "a SYN proxy or load balancer in front answers the SYN itself",
                "tcp_synack_retries=0"};
    return {"the peer never sent a FIN to retransmit", "tcp_orphan_retries set very low, or the peer reset instead",
            "a middlebox acknowledged the FIN on our behalf"};
}

nlohmann::json run_json(const probe::RetransmitFlow& f) {
    const auto& r = f.report();
    nlohmann::json j = schedule_json(r.evidence, r.fit, sysctl_for(f.config()));
    j.update({{"sport", f.tuple().local.port},
              {"end", r.end},
              {"trailing_rst", r.rst_at.has_value()},
              {"probes_sent", r.probes_sent},
              {"cleanup_sent", r.cleanup_sent}});
    return j;
}

std::string run_text(const probe::RetransmitFlow& f) {
    const auto& r = f.report();
    const std::string what = f.config().segment == probe::RetxSegment::SynAck ? "SYN-ACK" : "FIN";
    if (r.times.empty()) return fmt::format("no {} seen ({})\n", what, r.end);
    std::string t = schedule_text(r.evidence, r.fit, sysctl_for(f.config()), what);
    if (r.rst_at) t += fmt::format("  RST +{:.3f} ms after the first {}\n", to_ms_f(*r.rst_at - r.times.front()), what);
    return t;
}

/// FIN runs are judged one by one, not merged: each connection's RTO comes from its own
/// RTT and carries any backoff its earlier retransmissions left (on a lossy path the runs'
/// schedules differ). The runs vote: a Linux setting stands when every run that carries
/// Linux's signature infers the same value; runs that disagree make it inconclusive.
/// Returns the run that speaks for all, with its fit adjusted by the vote.
std::pair<const probe::RetransmitFlow*, probe::ScheduleFit> vote(const std::vector<const probe::RetransmitFlow*>& runs) {
    std::vector<const probe::RetransmitFlow*> inferring;
    for (const auto* f : runs)
        if (f->report().fit.inferred_retries) inferring.push_back(f);
    if (!inferring.empty()) {
        probe::ScheduleFit fit = inferring.front()->report().fit;
        const bool agree = std::all_of(inferring.begin(), inferring.end(), [&](const auto* f) {
            return *f->report().fit.inferred_retries == *fit.inferred_retries;
        });
        // One run alone is not enough: a run that lost copies at the end can pin the wrong
        // expiry; two runs that agree cannot both have been misled the same way by chance.
        const bool enough = inferring.size() >= std::min<std::size_t>(2, runs.size());
        fit.notes.push_back(fmt::format("{} of {} runs carry Linux's signature{}", inferring.size(), runs.size(),
                                        !agree ? ", and they disagree" : enough ? "; they agree" : ": one run is not enough"));
        if (!agree || !enough) {
            fit.inferred_retries.reset();
            fit.linux_like = false;
            fit.linux_mismatch.push_back(agree ? "only one run carries Linux's signature" : "the runs infer different values");
            fit.copies_sent.reset();
        }
        return {inferring.front(), fit};
    }
    // No run looks like Linux. A foreign schedule is described only when the runs agree on
    // it: a run whose original copy was lost shows an initial RTO twice the others'.
    const probe::RetransmitFlow* speaker = nullptr;
    for (const auto* f : runs) {
        const auto& fit = f->report().fit;
        if (fit.fitted && fit.missing.empty() && fit.copies_sent) {
            speaker = f;
            break;
        }
    }
    if (!speaker) return {runs.front(), runs.front()->report().fit};
    probe::ScheduleFit fit = speaker->report().fit;
    const auto& ref = fit;
    const bool agree = std::all_of(runs.begin(), runs.end(), [&](const auto* f) {
        const auto& o = f->report().fit;
        if (!o.fitted) return o.retransmissions < 2;  // too little to disagree
        const Duration off = *o.initial_rto > *ref.initial_rto ? *o.initial_rto - *ref.initial_rto : *ref.initial_rto - *o.initial_rto;
        return o.backoff_kind == ref.backoff_kind && off <= probe::Tolerance{}.for_gap(*ref.initial_rto);
    });
    if (!agree) {
        fit.copies_sent.reset();  // nothing pinned: inconclusive
        fit.linux_mismatch.push_back("the runs' schedules differ (a lost original copy changes a run's initial RTO)");
    }
    return {speaker, fit};
}

}  // namespace

int run_retransmit(const GlobalOptions& g, const RetransmitOptions& o) {
    PreparedTarget prep = prepare_target(o.target, o.syn, o.conn);
    probe::RetransmitConfig base;
    if (o.segment == "synack") base.segment = probe::RetxSegment::SynAck;
    else if (o.segment == "fin") base.segment = probe::RetxSegment::Fin;
    else throw io::UsageError(fmt::format("--segment: '{}' is not synack or fin", o.segment));
    if (o.peer_closes_first && base.segment != probe::RetxSegment::Fin)
        throw io::UsageError("--peer-closes-first goes with --segment fin");
    base.peer_closes_first = o.peer_closes_first;
    base.request = o.request.empty() ? ByteVec{} : parse_request(o.request);
    if (o.peer_closes_first && base.request.empty())
        throw io::UsageError("--peer-closes-first needs --request (something that makes the peer close, e.g. 'GET / HTTP/1.0\\r\\n\\r\\n')");
    base.idle = parse_duration(o.idle, "--idle");
    base.max_wait = parse_duration(o.max_wait, "--max-wait");
    auto tol = probe::parse_tolerance(o.tolerance);
    if (!tol) throw io::UsageError(fmt::format("--tolerance: '{}' is not e.g. 50ms,10% or 50ms,10%", o.tolerance));
    base.tolerance = *tol;
    base.cleanup = !o.no_cleanup;
    if (o.count < 1) throw io::UsageError("--count: must be at least 1");
    if (o.count > 1 && o.syn.sport) throw io::UsageError("--sport cannot be combined with --count > 1 (use --count 1)");

    auto edge = open_edge(g, {{prep.addr}, {prep.target.port}, o.count, prep.syn.sport, true});
    auto renderer = make_renderer(g);
    renderer->set_multi_flow(o.count > 1);
    probe::Session session;  // the runs go in parallel: a copy lost in one is seen in another
    std::vector<const probe::RetransmitFlow*> flows;
    for (unsigned i = 0; i < o.count; ++i) {
        probe::RetransmitConfig rc = base;
        rc.connect = make_connect_config(prep, *edge, i);
        // Our SYN is repeated only after a long silence: a repeated SYN makes many stacks
        // resend their SYN-ACK at once and restart its timer, which would skew the schedule.
        if (base.segment == probe::RetxSegment::SynAck)
            rc.connect.tcb.rto.initial_rto = std::max(rc.connect.tcb.rto.initial_rto, Duration{std::chrono::milliseconds{2500}});
        auto flow = std::make_unique<probe::RetransmitFlow>(std::move(rc));
        flows.push_back(flow.get());
        session.add(edge->clock().now(), std::move(flow));
    }
    RunStats stats = run_session(session, *edge, *renderer);
    edge->flush();

    const std::string what = base.segment == probe::RetxSegment::SynAck ? "SYN-ACK" : "FIN";
    std::string text = fmt::format("\n--- {} retransmit ({}{}) ---\n", o.target, o.segment,
                                   o.peer_closes_first ? ", peer closes first" : "");
    auto runs = nlohmann::json::array();
    probe::Verdict connect = probe::Verdict::Pending;
    std::vector<const probe::RetransmitFlow*> measured;
    for (const auto* f : flows) {
        connect = probe::combine(connect, f->connect_result().verdict);
        if (o.count > 1) text += fmt::format("[{}]\n", f->tuple().local.port);
        if (f->connect_result().verdict != probe::Verdict::Open) {
            text += fmt::format("connect: {}\n", connect_line(f->connect_result()));
        } else {
            text += run_text(*f);
            measured.push_back(f);
        }
        nlohmann::json run = run_json(*f);
        run["connect"] = connect_json(*f);
        runs.push_back(run);
    }
    // SYN-ACK runs on one axis (the peer's timer starts when our SYN arrives and counts
    // copies: every run has the same schedule); FIN runs vote (see vote()).
    probe::ScheduleEvidence merged_ev;
    probe::ScheduleFit merged;
    nlohmann::json merged_json = nullptr;
    if (!measured.empty()) {
        if (measured.size() == 1) {
            merged_ev = measured.front()->report().evidence;
            merged = measured.front()->report().fit;
        } else if (base.segment == probe::RetxSegment::SynAck) {
            std::vector<probe::ScheduleEvidence> evs;
            for (const auto* f : measured) evs.push_back(f->report().evidence);
            merged_ev = probe::merge_evidence(evs, base.tolerance);
            merged = probe::fit_schedule(merged_ev, base.tolerance, probe::RetryRule::Count);
            text += fmt::format("merged over {} runs:\n", measured.size());
            text += schedule_text(merged_ev, merged, sysctl_for(base), what);
        } else {
            auto [speaker, fit] = vote(measured);
            merged_ev = speaker->report().evidence;
            merged = std::move(fit);
            text += fmt::format("judged over {} runs (each connection has its own RTO), speaking: [{}]\n", measured.size(),
                                speaker->tuple().local.port);
            text += schedule_text(merged_ev, merged, sysctl_for(base), what);
        }
        merged_json = schedule_json(merged_ev, merged, sysctl_for(base));
        merged_json["runs"] = measured.size();
    }
    // The spread over runs, gap by gap.
    nlohmann::json spread = nlohmann::json::array();
    if (measured.size() > 1) {
        std::size_t most = 0;
        for (const auto* f : measured) most = std::max(most, f->report().fit.gaps.size());
        text += "spread over runs (observed gaps):\n";
        for (std::size_t i = 0; i < most; ++i) {
            std::vector<Duration> v;
            for (const auto* f : measured)
                if (i < f->report().fit.gaps.size()) v.push_back(f->report().fit.gaps[i]);
            std::sort(v.begin(), v.end());
            Duration med = v[v.size() / 2];
            text += fmt::format("  gap {}: min {:.3f} median {:.3f} max {:.3f} ms ({} runs)\n", i + 1, to_ms_f(v.front()),
                                to_ms_f(med), to_ms_f(v.back()), v.size());
            spread.push_back({{"gap", i + 1}, {"min_us", to_us(v.front())}, {"median_us", to_us(med)}, {"max_us", to_us(v.back())}, {"runs", v.size()}});
        }
    }
    Verdict verdict = Verdict::Pending;
    if (connect != probe::Verdict::Open || measured.empty()) {
        verdict = verdict_of(connect == probe::Verdict::Open ? probe::Verdict::Filtered : connect);
    } else {
        ScheduleVerdict v = judge_schedule(merged);
        // "No retransmission" is a claim about the peer: every run must show it.
        if (v == ScheduleVerdict::NoRetransmission &&
            std::any_of(measured.begin(), measured.end(), [](const auto* f) { return f->report().times.size() > 1; }))
            v = ScheduleVerdict::Inconclusive;
        verdict = verdict_of(v);
        if (v == ScheduleVerdict::NoRetransmission) {
            text += fmt::format("no retransmission of the {}: the peer dropped the state after its first copy. Likely causes:\n", what);
            for (const auto& c : no_retransmission_causes(base)) text += fmt::format("  - {}\n", c);
            merged_json["no_retransmission_causes"] = no_retransmission_causes(base);
        }
        if (v == ScheduleVerdict::Inconclusive)
            text += fmt::format("inconclusive: {} copies seen over {} run(s), {} liveness probe(s) sent; the end of the schedule "
                                "could not be pinned (see the notes above)\n",
                                merged_ev.copies.size(), measured.size(), merged_ev.probes.size());
    }
    text += fmt::format("verdict {}\n", to_string(verdict));
    if (stats.interrupted) text += "interrupted\n";

    nlohmann::json summary = summary_head("retransmit", o.target, prep, *edge);
    summary.update({{"verdict", to_string(verdict)},
                    {"segment", o.segment},
                    {"peer_closes_first", o.peer_closes_first},
                    {"interrupted", stats.interrupted},
                    {"tolerance", {{"floor_us", to_us(base.tolerance.floor)}, {"percent", base.tolerance.percent}}},
                    {"runs", runs},
                    {"merged", merged_json},
                    {"spread", spread}});
    // The merged inference at the top level, as DESIGN §1 spells it.
    summary["inferred"] = merged_json.is_object() ? merged_json["inferred"] : nlohmann::json(nullptr);
    renderer->summary(text, summary);
    if (stats.interrupted) return exit_status::interrupted;
    return exit_code(verdict);
}

}  // namespace tcpprobe::app
