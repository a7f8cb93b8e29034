// Retransmission measurement (see retransmit.hpp).
#include "tcpprobe/probe/retransmit.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace tcpprobe::probe {

std::string_view to_string(RetxSegment s) { return s == RetxSegment::SynAck ? "synack" : "fin"; }

using namespace tcpprobe::wire;

namespace {
/// Far outside any receive window, so the probe is never accepted (RFC 9293 §3.10.7.4:
/// "if a segment's contents straddle the boundary ... not acceptable ... send an ACK").
constexpr std::uint32_t out_of_window = 0x40000000;
/// How many expected copies ahead the probe rounds are planned.
constexpr std::size_t rounds_ahead = 4;
}  // namespace

RetransmitFlow::RetransmitFlow(RetransmitConfig config)
    : cfg_(std::move(config)), prober_(cfg_.liveness) {}

void RetransmitFlow::start(Instant now, Outbox& out) {
    if (cfg_.follow_up) {
        waiting_ = true;
        poll_at_ = now;
        return;
    }
    conn_.start(now);
    conn_.connect(now, out);
}

void RetransmitFlow::poll_follow_up(Instant now, Outbox& out) {
    if (!poll_at_ || now < *poll_at_) return;
    const FollowUp f = cfg_.follow_up();
    switch (f.step) {
        case FollowUp::Step::Wait:
            poll_at_ = now + std::chrono::milliseconds{100};
            return;
        case FollowUp::Step::Skip:
            waiting_ = false;
            skipped_ = true;
            return;
        case FollowUp::Step::Run:
            waiting_ = false;
            report_.follow_up = true;
            past_cache_rto_ = f.past_cache_rto;
            conn_.set_ack_delay(f.ack_delay);
            conn_.start(now);
            conn_.note(now, f.why, out);
            conn_.connect(now, out);
            return;
    }
}

void RetransmitFlow::on_segment(Instant t, const Segment& seg, bool outgoing, Outbox& out) {
    if (conn_.on_segment(t, seg, outgoing, out)) on_connected_segment(t, seg, out);
}

void RetransmitFlow::on_timer(Instant now, Outbox& out) {
    if (waiting_) {
        poll_follow_up(now, out);
        return;
    }
    if (conn_.on_timer(now, out)) on_connected_timer(now, out);
}

std::optional<Instant> RetransmitFlow::next_deadline() const {
    if (waiting_) return poll_at_;
    if (skipped_) return std::nullopt;
    return conn_.next_deadline(conn_.phase() == ConnectPhase::Connected ? connected_deadline() : std::nullopt);
}

void RetransmitFlow::record(Instant t, Outbox& out) {
    if (report_.times.size() >= cfg_.max_copies) {
        conn_.anomaly(t, fmt::format("more than {} copies: a flood, not a retransmission schedule", cfg_.max_copies), out);
        conclude(t, "flood", out);
        return;
    }
    report_.times.push_back(t);
    const std::size_t n = report_.times.size();
    if (n == 1) {
        conn_.note(t, fmt::format("first {} (not acknowledged, on purpose)", cfg_.segment == RetxSegment::SynAck ? "SYN-ACK" : "FIN"),
                   out);
    } else {
        Duration gap = report_.times[n - 1] - report_.times[n - 2];
        conn_.note(t, fmt::format("retransmission #{}: {:.3f} ms after the previous", n - 1, to_ms_f(gap)), out);
    }
    replan(t);
}

ScheduleEvidence RetransmitFlow::evidence(bool stopped_early) const {
    ScheduleEvidence ev;
    if (!report_.origin) return ev;
    const Instant origin = *report_.origin;
    for (auto t : report_.times) ev.copies.push_back(t - origin);
    ev.origin_is_first_copy = cfg_.segment == RetxSegment::Fin;
    // FIN: the connection's RTT bounds Linux's RTO; an RTT after a repeated SYN may be
    // measured from the wrong SYN (Karn), so it is not used then.
    const ConnectResult& c = conn_.result();
    // The peer times our ACKs: delayed ones lengthen the RTT it sees.
    const bool clean_rtt = c.rtt && !c.rtt_ambiguous && c.syns_sent == 1;
    ev.rtt = cfg_.segment == RetxSegment::Fin ? (clean_rtt ? std::optional<Duration>{*c.rtt + conn_.config().ack_delay} : std::nullopt)
                                              : prober_.rtt();
    ev.probes = prober_.relative(origin);
    if (report_.rst_at) ev.peer_rst = *report_.rst_at - origin;
    ev.stopped_early = stopped_early;
    // A follow-up past a cache asks whether the peer's RTO follows the RTT our late ACK gave
    // it. After our SYN went twice the peer may have taken no sample at all: the SYN-ACK we
    // got may be its retransmission, which Karn's algorithm leaves unsampled (RFC 6298 §3;
    // Linux's tcp_synack_rtt_meas), and its RTO then comes from the cache or RFC 6298 §5.7's
    // 3 s. Such a run cannot answer the question: it is read as a first run.
    if (!follow_up_void()) ev.past_cache_rto = past_cache_rto_;
    return ev;
}

void RetransmitFlow::replan(Instant now) {
    // A round just after each moment the model expects a copy: if the copy is not there
    // then, the probe tells a lost copy (still held) from the end (gone).
    const ScheduleEvidence ev = evidence(true);
    std::vector<Instant> due;
    for (Duration rel : probe_times(ev, cfg_.tolerance, rule(), rounds_ahead)) due.push_back(*report_.origin + rel);
    // A peer keeping no state at all (SYN cookies, a proxy that answered for it) is gone at once.
    if (report_.times.size() == 1 && cfg_.segment == RetxSegment::SynAck) due.push_back(now + std::chrono::milliseconds{300});
    prober_.plan(std::move(due));
}

void RetransmitFlow::send_liveness_probe(Instant now, Outbox& out) {
    const tcb::Tcb& tcb = conn_.tcb();
    Segment probe = cfg_.segment == RetxSegment::SynAck
                        ? conn_.make_segment(now, flag::ack, tcb.iss() + 1 + out_of_window, *conn_.result().irs + 1, {0})
                        : conn_.make_segment(now, flag::ack, tcb.snd.nxt + out_of_window, tcb.rcv.nxt, {0});
    conn_.send(probe, out);
    prober_.sent(now);
}

void RetransmitFlow::on_probe_answer(Instant t, Liveness l, Outbox& out) {
    prober_.answered(t, l);
    if (l == Liveness::Alive) {
        last_held_ = t;
        conn_.note(t, "liveness probe: the peer still holds the state (it answered in state)", out);
        return;
    }
    conn_.note(t, "liveness probe: the state is gone (RST)", out);
    conclude(t, "confirmed", out);
}

bool RetransmitFlow::intercept_connecting(Instant t, const Segment& seg, Outbox& out) {
    if (cfg_.segment != RetxSegment::SynAck) return false;
    if (!seg.has(flag::syn | flag::ack) || seg.has(flag::rst) || seg.ack != conn_.tcb().iss() + 1) return false;
    // The SYN-ACK is never acknowledged; our TCB stops here (no SYN retransmission either).
    conn_.result().verdict = Verdict::Open;
    conn_.result().negotiated = [&] {
        tcb::Tcb what_if = conn_.tcb();
        (void)what_if.on_segment(t, seg);
        return what_if.negotiated();
    }();
    conn_.apply_with_cause(t, conn_.tcb().close(t), "measuring: the SYN-ACK stays unacknowledged", out);
    conn_.set_phase(ConnectPhase::Connected);
    measuring_since_ = t;
    // The peer's schedule starts when our SYN reached it: the axis is from that SYN, so
    // a first copy one RTO later is seen as the retransmission it is.
    report_.origin = conn_.last_syn_before(t).value_or(t);
    record(t, out);
    return true;
}

void RetransmitFlow::on_established(Instant t, Outbox& out) {
    // fin mode: the connection is complete; send the request, then (unless the peer is to
    // close first) our FIN after a quiet moment.
    measuring_since_ = t;
    // With our ACKs held back, the request waits for the handshake's ACK: the first segment
    // that acknowledges the SYN-ACK is the peer's RTT sample (Linux: tcp_synack_rtt_meas).
    if (!cfg_.request.empty() && conn_.config().ack_delay > Duration::zero()) request_at_ = t + conn_.config().ack_delay;
    else if (!cfg_.request.empty()) conn_.apply(t, conn_.tcb().send(t, cfg_.request), out);
    // Our FIN waits for the handshake's ACK when that is held back (ack_delay).
    if (!cfg_.peer_closes_first) fin_at_ = t + conn_.config().ack_delay + cfg_.idle;
}

void RetransmitFlow::on_connected_segment(Instant t, const Segment& seg, Outbox& out) {
    if (concluded_) return;
    const bool answer_pending = prober_.outstanding();
    if (seg.has(flag::rst)) {
        if (answer_pending) {
            on_probe_answer(t, Liveness::Gone, out);
            return;
        }
        report_.rst_at = t;
        conn_.note(t, "the peer ended it with a RST", out);
        conclude(t, "rst", out);
        return;
    }
    if (cfg_.segment == RetxSegment::SynAck) {
        if (seg.has(flag::syn | flag::ack) && conn_.result().irs && seg.seq == *conn_.result().irs) record(t, out);
        else if (answer_pending && seg.has(flag::ack) && !seg.has(flag::syn)) on_probe_answer(t, Liveness::Alive, out);
        else conn_.note(t, "unexpected segment while measuring SYN-ACK retransmissions", out);
        return;
    }
    // fin mode: everything but the FIN goes to the TCB (data is ACKed); the FIN never is.
    if (seg.has(flag::fin)) {
        const Seq fin_seq = seg.seq + static_cast<std::uint32_t>(seg.payload.size());
        if (!peer_fin_seq_) {
            peer_fin_seq_ = fin_seq;
            report_.origin = t;
            report_.peer_closed_first = cfg_.peer_closes_first || fin_at_.has_value();
        }
        if (fin_seq == *peer_fin_seq_) record(t, out);
        if (report_.times.size() > 1) return;  // a retransmission: nothing new for the TCB
        Segment without_fin = seg;
        without_fin.flags = static_cast<std::uint16_t>(seg.flags & ~flag::fin);
        conn_.feed(t, without_fin, out);
        return;
    }
    if (answer_pending && peer_fin_seq_ && seg.payload.empty() && seg.has(flag::ack)) {
        on_probe_answer(t, Liveness::Alive, out);
        return;
    }
    conn_.feed(t, seg, out);
}

std::optional<Instant> RetransmitFlow::silence_at() const {
    if (report_.times.empty() || !report_.origin) return std::nullopt;
    Instant alive = report_.times.back();
    if (last_held_ && *last_held_ > alive) alive = *last_held_;
    return alive + silence_after(evidence(true), cfg_.tolerance, rule());
}

void RetransmitFlow::on_connected_timer(Instant now, Outbox& out) {
    if (concluded_) return;
    conn_.run_tcb_timers(now, out);
    if (request_at_ && now >= *request_at_) {
        request_at_.reset();
        conn_.apply(now, conn_.tcb().send(now, cfg_.request), out);
    }
    if (fin_at_ && now >= *fin_at_) {
        fin_at_.reset();
        conn_.apply(now, conn_.tcb().close(now), out);
    }
    if (!report_.times.empty() && prober_.due(now)) send_liveness_probe(now, out);
    if (auto s = silence_at(); s && now >= *s && !prober_.outstanding()) {
        conn_.note(now, "no copy for two model gaps and no answer to the liveness probes", out);
        conclude(now, "silence", out);
    } else if (measuring_since_ && now >= *measuring_since_ + cfg_.max_wait) {
        conclude(now, report_.times.empty() ? "no-fin" : "max-wait", out);
    }
}

std::optional<Instant> RetransmitFlow::connected_deadline() const {
    if (concluded_) return std::nullopt;
    Deadlines d{cfg_.segment == RetxSegment::Fin ? conn_.tcb().next_deadline() : std::nullopt, fin_at_, request_at_};
    // As in listen: silence counts only with no probe outstanding, else a silence already
    // past is a deadline that never moves.
    if (!prober_.outstanding()) d.consider(silence_at());
    if (!report_.times.empty()) d.consider(prober_.next_deadline());
    if (measuring_since_) d.consider(*measuring_since_ + cfg_.max_wait);
    return d.earliest();
}

void RetransmitFlow::conclude(Instant now, std::string end, Outbox& out) {
    if (!concluded_.conclude()) return;
    report_.end = std::move(end);
    const bool stopped = report_.end == "max-wait" || report_.end == "no-fin" || report_.end == "interrupted" ||
                         report_.end == "flood";
    report_.evidence = evidence(stopped);
    report_.probes_sent = prober_.probes_sent();
    report_.fit = fit_schedule(report_.evidence, cfg_.tolerance, rule());
    if (follow_up_void())
        report_.fit.notes.insert(report_.fit.notes.begin(),
                                 "our SYN went more than once: the peer may have answered with a retransmitted SYN-ACK, "
                                 "which gives it no RTT sample (Karn), so this follow-up cannot show its RTO following "
                                 "our late ACK; read as a first run");
    for (const auto& n : report_.fit.notes) conn_.note(now, n, out);
    if (cfg_.cleanup && report_.end != "rst" && report_.end != "confirmed" && !report_.times.empty()) {
        // Clear whatever the peer still holds: a RST at the sequence number it expects.
        Seq at = cfg_.segment == RetxSegment::SynAck ? conn_.tcb().iss() + 1 : conn_.tcb().snd.nxt;
        conn_.send(conn_.make_segment(now, flag::rst, at, Seq{0}), out);
        report_.cleanup_sent = true;
        conn_.note(now, "cleanup: RST sent so the peer drops what it still holds", out);
    }
    conn_.finish(now, Verdict::Open, out);
}

void RetransmitFlow::on_interrupt(Instant now, Outbox& out) {
    if (!concluded_.conclude()) return;
    report_.end = "interrupted";
    report_.evidence = evidence(true);
    report_.probes_sent = prober_.probes_sent();
    report_.fit = fit_schedule(report_.evidence, cfg_.tolerance, rule());
    if (cfg_.cleanup && !report_.times.empty()) {
        Seq at = cfg_.segment == RetxSegment::SynAck ? conn_.tcb().iss() + 1 : conn_.tcb().snd.nxt;
        conn_.send(conn_.make_segment(now, flag::rst, at, Seq{0}), out);
        report_.cleanup_sent = true;
    }
}

std::string RetransmitFlow::progress(Instant now) const {
    if (report_.times.empty()) return "waiting for the first transmission";
    std::string s = fmt::format("{} retransmission(s)", report_.times.size() - 1);
    if (auto d = prober_.next_deadline(); d && *d > now) s += fmt::format(", next liveness probe in {:.1f} s", to_ms_f(*d - now) / 1000);
    return s;
}

namespace {

/// A follow-up past a cached RTT (decide_follow_up) showed the peer's RTO following the RTT
/// our late ACK gave it, within Linux's range, and Linux's schedule under some setting
/// explains its copies and its confirmed end.
bool shows_rto_following_rtt(const RetransmitFlow& f, const Tolerance& tol) {
    const ScheduleFit& fit = f.report().fit;
    return fit.rto_followed_rtt && fit.end == ScheduleEnd::Confirmed &&
           !linux_settings_explaining(f.report().evidence, tol, RetryRule::OrphanTime).empty();
}

/// The tcp_orphan_retries values that Linux's schedule, started from a cached RTT, allows
/// for every run with a confirmed end (runs that fit none are left out, as in the vote).
std::vector<unsigned> values_from_cache(const std::vector<const RetransmitFlow*>& runs, const Tolerance& tol) {
    std::optional<std::vector<unsigned>> allowed;
    for (const auto* f : runs) {
        if (f->report().fit.end != ScheduleEnd::Confirmed) continue;
        ScheduleEvidence ev = f->report().evidence;
        ev.cache_rto = f->report().fit.initial_rto;
        const std::vector<unsigned> fits = linux_settings_explaining(ev, tol, RetryRule::OrphanTime);
        if (fits.empty()) continue;
        if (!allowed) allowed = fits;
        else std::erase_if(*allowed, [&](unsigned n) { return std::find(fits.begin(), fits.end(), n) == fits.end(); });
    }
    return allowed.value_or(std::vector<unsigned>{});
}

/// FIN runs are judged one by one, not merged: each connection's RTO comes from its own
/// RTT and carries any backoff its earlier retransmissions left (on a lossy path the runs'
/// schedules differ). The runs vote: a Linux setting stands when every run that carries
/// Linux's signature infers the same value and a second run backs it; runs that disagree
/// make it inconclusive. A run that lost its original copy (or whose end is not pinned)
/// infers nothing by itself, but it backs the values that Linux's schedule explains
/// under any of its readings (vote_setting; for an RTO above Linux's range, the reading
/// from a cached RTT among them), and rules out the others. Once a follow-up has shown
/// the RTO following the RTT, the runs whose RTO lies above Linux's range for their RTT
/// are read again as started from a cached RTT, that reading alone.
/// Returns the run that speaks for all, with its fit adjusted by the vote.
std::pair<const RetransmitFlow*, ScheduleFit> vote(const std::vector<const RetransmitFlow*>& runs,
                                                                 const Tolerance& tol) {
    const auto shown = std::find_if(runs.begin(), runs.end(), [&](const auto* f) { return shows_rto_following_rtt(*f, tol); });
    const std::optional<Duration> cache_rto = shown != runs.end() ? (*shown)->report().evidence.past_cache_rto : std::nullopt;
    std::vector<ScheduleEvidence> evs;
    std::vector<ScheduleFit> fits;
    evs.reserve(runs.size());
    fits.reserve(runs.size());
    for (const auto* f : runs) {
        evs.push_back(f->report().evidence);
        fits.push_back(f->report().fit);
        if (cache_rto && fits.back().rto_above_rtt) {
            evs.back().cache_rto = cache_rto;
            fits.back() = fit_schedule(evs.back(), tol, RetryRule::OrphanTime);
        }
    }
    std::vector<RunFit> run_fits;
    for (std::size_t i = 0; i < runs.size(); ++i) run_fits.push_back({&evs[i], &fits[i]});
    const SettingVote v = vote_setting(run_fits, tol, RetryRule::OrphanTime);
    if (v.signature_runs > 0) {
        const auto at = static_cast<std::size_t>(std::find_if(fits.begin(), fits.end(), [](const ScheduleFit& f) {
                                                     return f.linux_like && !f.retries_candidates.empty();
                                                 }) - fits.begin());
        const auto* speaker = runs[at];
        ScheduleFit fit = fits[at];
        fit.retries_candidates = v.values;
        fit.inferred_retries = v.inferred;
        const bool enough = v.signature_runs + v.backing_runs >= std::min<std::size_t>(2, runs.size());
        fit.notes.push_back(fmt::format("{} of {} runs carry Linux's signature{}{}{}", v.signature_runs, runs.size(),
                                        v.values.empty() ? ", and they disagree" : enough ? "; they agree" : ": one run is not enough",
                                        v.backing_runs ? fmt::format("; {} other run(s) fit it by their copies and confirmed end", v.backing_runs) : "",
                                        v.cached_runs ? fmt::format("; {} of the {} started from a longer RTT the peer cached for "
                                                                    "our address", v.cached_runs,
                                                                    v.signature_runs + v.backing_runs)
                                                      : ""));
        if (!v.inferred) {
            if (v.values.size() > 1 && enough) return {speaker, fit};  // Linux, the value not pinned: the text says which
            fit.retries_candidates.clear();
            fit.linux_like = false;
            fit.linux_mismatch.push_back(!v.values.empty() ? "only one run carries Linux's signature" : "the runs infer different values");
            fit.copies_sent.reset();
        }
        return {speaker, fit};
    }
    // No run looks like Linux. A foreign schedule is described only when the runs agree on
    // it: a run whose original copy was lost shows an initial RTO twice the others'.
    const RetransmitFlow* speaker = nullptr;
    for (const auto* f : runs) {
        const auto& fit = f->report().fit;
        if (fit.fitted && fit.missing.empty() && fit.copies_sent) {
            speaker = f;
            break;
        }
    }
    if (!speaker) return {runs.front(), runs.front()->report().fit};
    ScheduleFit fit = speaker->report().fit;
    const auto& ref = fit;
    const bool agree = std::all_of(runs.begin(), runs.end(), [&](const auto* f) {
        const auto& o = f->report().fit;
        if (!o.fitted) return o.retransmissions < 2;  // too little to disagree
        const Duration off = *o.initial_rto > *ref.initial_rto ? *o.initial_rto - *ref.initial_rto : *ref.initial_rto - *o.initial_rto;
        return o.backoff_kind == ref.backoff_kind && off <= Tolerance{}.for_gap(*ref.initial_rto);
    });
    if (!agree) {
        fit.copies_sent.reset();  // nothing pinned: inconclusive
        fit.linux_mismatch.push_back("the runs' schedules differ (a lost original copy changes a run's initial RTO)");
    }
    return {speaker, fit};
}

}  // namespace

RetransmitRuns judge_runs(const std::vector<const RetransmitFlow*>& flows, RetxSegment segment, const Tolerance& tol) {
    RetransmitRuns r;
    Verdict connect = Verdict::Pending;
    for (const auto* f : flows) {
        connect = combine(connect, f->connect_result().verdict);
        if (f->connect_result().verdict == Verdict::Open) r.measured.push_back(f);
    }
    // SYN-ACK runs on one axis (the peer's timer starts when our SYN arrives and counts
    // copies: every run has the same schedule); FIN runs vote (see vote()).
    if (r.measured.size() == 1) {
        r.evidence = r.measured.front()->report().evidence;
        r.fit = r.measured.front()->report().fit;
    } else if (!r.measured.empty() && segment == RetxSegment::SynAck) {
        // A run whose SYN we had to repeat is left out when others are not: our repeated
        // SYN may have met a held request, which then resends its SYN-ACK at once and
        // restarts its timer (Linux's tcp_check_req, BSD's syncache), so that run's
        // copies are on another axis. One lost SYN must not blur the merged schedule.
        // Such a request resumes at its backed-off gap, at least twice the first one; a
        // run whose first gap is a fresh request's (that of a run whose SYN went once,
        // within tolerance) met no held request, its first SYN lost on the way: it joins.
        // The reference is a clean run whose first two copies are the original and copy #1
        // (a run that lost one of them shows a longer first gap, a held request's).
        std::optional<Duration> fresh_gap;
        for (const auto* f : r.measured) {
            const auto& t = f->report().times;
            const auto& at = f->report().fit.copy_index;
            const bool first_two = at.size() >= 2 && at[0] == 0 && at[1] == 1;
            if (f->connect_result().syns_sent <= 1 && first_two && t.size() >= 2 && (!fresh_gap || t[1] - t[0] < *fresh_gap))
                fresh_gap = t[1] - t[0];
        }
        auto fresh = [&](const RetransmitFlow& f) {
            const auto& t = f.report().times;
            if (f.connect_result().syns_sent <= 1) return true;
            if (!fresh_gap || t.size() < 2) return false;
            const Duration g = t[1] - t[0];
            return (g > *fresh_gap ? g - *fresh_gap : *fresh_gap - g) <= tol.for_gap(*fresh_gap);
        };
        std::vector<ScheduleEvidence> evs;
        std::size_t rejoined = 0;
        for (const auto* f : r.measured) {
            if (!fresh(*f)) continue;
            evs.push_back(f->report().evidence);
            if (f->connect_result().syns_sent > 1) ++rejoined;
        }
        const std::size_t left_out = evs.empty() ? 0 : r.measured.size() - evs.size();
        if (evs.empty())
            for (const auto* f : r.measured) evs.push_back(f->report().evidence);
        r.evidence = merge_evidence(evs, tol);
        r.fit = fit_schedule(*r.evidence, tol, RetryRule::Count);
        if (left_out)
            r.fit.notes.push_back(fmt::format("{} run(s) left out of the merge: our SYN was repeated there", left_out));
        if (rejoined)
            r.fit.notes.push_back(fmt::format("{} run(s) whose SYN was repeated joined the merge: their first gap is a fresh "
                                              "request's, so the first SYN never reached the peer",
                                              rejoined));
    } else if (!r.measured.empty()) {
        auto [speaker, fit] = vote(r.measured, tol);
        r.evidence = speaker->report().evidence;
        r.fit = std::move(fit);
        r.speaker = speaker->tuple().local.port;
    }
    if (connect != Verdict::Open || r.measured.empty()) {
        r.connect = connect == Verdict::Open ? Verdict::Filtered : connect;
        return r;
    }
    r.connect = connect;
    ScheduleVerdict v = judge_schedule(r.fit);
    // "No retransmission" is a claim about the peer: every run must show it.
    if (v == ScheduleVerdict::NoRetransmission &&
        std::any_of(r.measured.begin(), r.measured.end(), [](const auto* f) { return f->report().times.size() > 1; }))
        v = ScheduleVerdict::Inconclusive;
    r.judged = v;
    return r;
}

namespace {
/// The path's RTT: the shortest the runs measured without a repeated SYN (Karn), less our
/// own ACK delay (a run whose SYN went twice has none).
std::optional<Duration> path_rtt_of(const std::vector<const RetransmitFlow*>& runs) {
    std::optional<Duration> best;
    for (const auto* f : runs) {
        const auto& rtt = f->report().evidence.rtt;
        if (!rtt) continue;
        const Duration path = *rtt - f->connection().config().ack_delay;
        if (!best || path < *best) best = path;
    }
    return best;
}

/// The vote inferred nothing, and some runs double from an RTO above what their RTT gives
/// Linux: a Linux peer started them from a longer RTT it cached for our address (runs
/// that completed their handshakes at other moments may have met other cached values).
/// A follow-up whose late ACK makes the peer measure more than the shortest such RTO's
/// cache shows whether the RTO follows the RTT as Linux's does (see
/// ack_delay_past_cache); a run with another backoff than doubling rules it out.
FollowUp follow_up_past_cache(const std::vector<const RetransmitFlow*>& first_runs, const Tolerance& tol) {
    const RetransmitFlow* lowest = nullptr;
    for (const auto* f : first_runs) {
        const ScheduleFit& fit = f->report().fit;
        if (!fit.fitted) continue;
        if (fit.backoff_kind != Backoff::Doubling) return FollowUp::skip();
        if (fit.rto_above_rtt && (!lowest || *fit.initial_rto < *lowest->report().fit.initial_rto)) lowest = f;
    }
    const auto path_rtt = path_rtt_of(first_runs);
    if (!lowest || !path_rtt) return FollowUp::skip();
    const Duration rto = *lowest->report().fit.initial_rto;
    const auto d = ack_delay_past_cache(rto, *path_rtt, tol, values_from_cache(first_runs, tol));
    if (!d) return FollowUp::skip();
    FollowUp up{FollowUp::Step::Run, *d,
                fmt::format("follow-up run: an initial RTO of {:.0f} ms is Linux's only from a longer RTT cached for our "
                            "address; our ACKs go {:.0f} ms late so that the peer measures a longer one, from which Linux "
                            "derives an RTO above {:.0f} ms (no SACK: no tail-loss probe)",
                            to_ms_f(rto), to_ms_f(*d), to_ms_f(rto + tol.for_gap(rto))),
                rto};
    return up;
}
}  // namespace

FollowUp decide_follow_up(const std::vector<const RetransmitFlow*>& first_runs, const Tolerance& tol) {
    if (std::any_of(first_runs.begin(), first_runs.end(), [](const auto* f) { return !f->done(); })) return FollowUp{};
    // Our late ACK of data the peer sent before its FIN would restart its FIN timer.
    if (std::any_of(first_runs.begin(), first_runs.end(), [](const auto* f) { return f->report().peer_closed_first; }))
        return FollowUp::skip();
    const RetransmitRuns r = judge_runs(first_runs, RetxSegment::Fin, tol);
    const ScheduleFit& fit = r.fit;
    if (!fit.linux_like) return follow_up_past_cache(first_runs, tol);
    // The RTT from any run that has one: the speaker's SYN may have gone twice.
    const auto path_rtt = path_rtt_of(first_runs);
    if (!r.evidence || !r.speaker || !fit.linux_like || fit.inferred_retries || fit.retries_candidates.size() < 2 ||
        !fit.initial_rto || !path_rtt)
        return FollowUp::skip();
    const auto speaker = std::find_if(first_runs.begin(), first_runs.end(), [&](const auto* f) { return f->tuple().local.port == *r.speaker; });
    const Duration delayed = (*speaker)->connection().config().ack_delay;
    const auto d = ack_delay_to_split(fit.retries_candidates, *fit.initial_rto, *path_rtt, delayed);
    if (!d) return FollowUp::skip();
    std::string values;
    for (unsigned n : fit.retries_candidates) values += fmt::format("{}{}", values.empty() ? "" : " or ", n);
    return {FollowUp::Step::Run, *d,
            fmt::format("follow-up run: at an RTO of {:.0f} ms tcp_orphan_retries {} send the same copies; our ACKs go "
                        "{:.0f} ms late so the peer's RTO grows to where they differ (no SACK: no tail-loss probe)",
                        to_ms_f(*fit.initial_rto), values, to_ms_f(*d)),
            {}};
}

RetransmitConfig follow_up_config(RetransmitConfig base, std::function<FollowUp()> decide) {
    auto& opts = base.connect.tcb.syn_options;
    const auto sack = std::find_if(opts.begin(), opts.end(), [](const TcpOption& o) { return std::holds_alternative<opt::SackPermitted>(o); });
    if (sack != opts.end()) {
        *sack = opt::Nop{};  // two NOPs in its two bytes keep the other options' alignment
        opts.insert(sack, opt::Nop{});
    }
    base.follow_up = std::move(decide);
    return base;
}

}  // namespace tcpprobe::probe
