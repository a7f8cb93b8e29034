// The passive side (see listen.hpp).
#include "tcpprobe/probe/listen.hpp"

#include <fmt/format.h>

namespace tcpprobe::probe {

std::string_view to_string(ListenAnswer a) {
    switch (a) {
        case ListenAnswer::None: return "none";
        case ListenAnswer::SynAck: return "synack";
        case ListenAnswer::Syn: return "syn";
    }
    return "?";
}

using namespace tcpprobe::wire;
using tcb::State;

namespace {
/// Between liveness rounds once one went unanswered (see on_connected_timer).
constexpr Duration silent_round_gap = std::chrono::seconds{1};
}  // namespace

ListenFlow::ListenFlow(ListenConfig config) : cfg_(std::move(config)), prober_(cfg_.liveness) {
    conn_.set_flow_tag(tuple().remote.port);  // every client shares our port: tell them apart by theirs
}

void ListenFlow::start(Instant now, Outbox&) {
    conn_.start(now);
    conn_.set_phase(ConnectPhase::Connected);  // everything is driven by the client's segments
}

std::optional<FormatContext> ListenFlow::format_context(Direction d, const Segment& seg) const {
    FormatContext ctx = conn_.tcb_context(d, seg);
    if (!ctx.irs) ctx.irs = client_isn_;
    return ctx;
}

void ListenFlow::on_client_segment(Instant t, const Segment& seg, Outbox& out) {
    if (concluded_ && !answered_) return;
    const bool bare_syn = seg.has(flag::syn) && !seg.has_any(flag::ack | flag::rst);
    if (bare_syn && (!client_isn_ || seg.seq == *client_isn_)) {
        const bool first = !client_isn_;
        if (report_.syn_times.size() >= cfg_.max_syns) {
            if (!concluded_) {
                conn_.anomaly(t, fmt::format("more than {} SYNs: a flood, not a retransmission schedule", cfg_.max_syns), out);
                conclude(t, "flood", out);
            }
            return;
        }
        report_.syn_times.push_back(t);
        if (cfg_.answer == ListenAnswer::None) replan();
        if (first) {
            client_isn_ = seg.seq;
            report_.syn_options = seg.options;
            report_.syn_window = seg.window;
            report_.syn_ttl = seg.ip.ttl;
            conn_.note(t, fmt::format("client SYN <{}>", format_options(seg.options)), out);
            for (auto& a : syn_option_anomalies(seg.options)) conn_.anomaly(t, std::move(a), out);
        } else {
            conn_.note(t, fmt::format("client SYN retransmission #{}: {:.3f} ms after the previous", report_.syn_times.size() - 1,
                                to_ms_f(report_.syn_times.back() - report_.syn_times[report_.syn_times.size() - 2])), out);
        }
        switch (cfg_.answer) {
            case ListenAnswer::None:
                return;
            case ListenAnswer::SynAck:
                if (first) {
                    answered_ = true;
                    conn_.apply(t, tcb_.open_passive(t), out);
                }
                conn_.feed(t, seg, out);  // SYN-RECEIVED answers with our SYN-ACK (again on a retransmission)
                return;
            case ListenAnswer::Syn:
                if (first) {
                    answered_ = true;
                    conn_.note(t, "answering with a bare SYN: a simultaneous open for the client", out);
                    conn_.apply(t, tcb_.open_active(t), out);
                }
                return;
        }
    }
    if (!answered_) {
        if (seg.has(flag::rst) && prober_.outstanding()) {
            prober_.answered(t, Liveness::Gone);
            conn_.note(t, "liveness probe: the client has given up (RST)", out);
            conclude(t, "confirmed", out);
        } else if (seg.has(flag::rst)) {
            conclude(t, "rst", out);
        }
        return;
    }
    const bool reset = conn_.feed(t, seg, out);
    if (tcb_.state() == State::CloseWait) conn_.apply(t, tcb_.close(t), out);  // the client closed: so do we
    if (reset) conclude(t, "rst", out);
    else if (tcb_.state() == State::Closed || tcb_.state() == State::TimeWait) conclude(t, "closed", out);
}

void ListenFlow::on_client_timer(Instant now, Outbox& out) {
    if (answered_) {
        conn_.run_tcb_timers(now, out);
        if (tcb_.state() == State::Closed && !concluded_) conclude(now, "closed", out);
        return;
    }
    if (concluded_ || report_.syn_times.empty()) return;
    const std::size_t settled = prober_.results().size();
    if (prober_.due(now)) {
        // An ACK of the client's SYN, no SYN of ours: ignored in SYN-SENT, RST when closed.
        conn_.send(conn_.make_segment(now, flag::ack, tcb_.iss(), *client_isn_ + 1), out);
        prober_.sent(now);
    }
    // A client in SYN-SENT drops our ACK: a silent round is what "still there" looks like,
    // so only a RST dates the end. Keep asking once per second after a silent round
    // (until silence_at() or --max-wait ends the run): the give-up time is the evidence
    // for a time-based rule, and rounds at the model's growing gaps would leave it
    // seconds wide.
    if (prober_.results().size() > settled && prober_.last() == Liveness::Silent)
        prober_.plan_one(now + silent_round_gap);
    if (auto s = silence_at(); s && now >= *s && !prober_.outstanding()) conclude(now, "silence", out);
}

ScheduleEvidence ListenFlow::evidence(bool stopped_early) const {
    ScheduleEvidence ev;
    if (report_.syn_times.empty()) return ev;
    const Instant origin = report_.syn_times.front();
    for (auto t : report_.syn_times) ev.copies.push_back(t - origin);
    ev.probes = prober_.relative(origin);
    ev.stopped_early = stopped_early;
    return ev;
}

void ListenFlow::replan() {
    const ScheduleEvidence ev = evidence(true);
    std::vector<Instant> due;
    Instant prev = report_.syn_times.back();
    for (Duration rel : next_expected(ev, cfg_.tolerance, RetryRule::SynTime, 4)) {
        const Instant at = report_.syn_times.front() + rel;
        due.push_back(at + cfg_.tolerance.late_by(at - prev));
        prev = at;
    }
    prober_.plan(std::move(due));
}

std::optional<Instant> ListenFlow::silence_at() const {
    if (report_.syn_times.empty()) return std::nullopt;
    return report_.syn_times.back() + silence_after(evidence(true), cfg_.tolerance, RetryRule::SynTime);
}

std::optional<Instant> ListenFlow::next_deadline() const {
    if (conn_.phase() != ConnectPhase::Connected) return conn_.next_deadline(std::nullopt);
    if (answered_) return tcb_.next_deadline();
    if (concluded_ || report_.syn_times.empty()) return std::nullopt;
    // Silence ends the run only when no probe is outstanding (on_connected_timer): while one
    // is, its answer wait is the deadline. A silence already past would otherwise be a
    // deadline that never moves (fuzz_session: the runner spun until the answer wait ended).
    return earliest({prober_.outstanding() ? std::nullopt : silence_at(), prober_.next_deadline()});
}

void ListenFlow::conclude(Instant now, std::string end, Outbox& out) {
    if (!concluded_.conclude()) return;
    report_.end = std::move(end);
    report_.evidence = evidence(report_.end == "max-wait" || report_.end == "flood");
    report_.probes_sent = prober_.probes_sent();
    // A flow starts with its client's SYN in listen_cmd, but the flow itself takes any
    // first segment (fuzz_session found a RST first reading an empty list here).
    if (!report_.syn_times.empty()) {
        if (report_.end == "rst") report_.evidence.peer_rst = now - report_.syn_times.front();
        report_.fit = fit_schedule(report_.evidence, cfg_.tolerance, RetryRule::SynTime);
        for (const auto& n : report_.fit.notes) conn_.note(now, n, out);
    }
    conn_.finish(now, Verdict::Open, out);
}

void ListenFlow::interrupt(Instant now, Outbox& out) {
    conn_.interrupt(now, out);
    if (concluded_) return;
    // Leave nothing open on the client: reset a connection we answered.
    if (answered_ && !tcb::in_state(tcb_.state(), {State::Closed, State::TimeWait, State::Listen}))
        conn_.apply_with_cause(now, tcb_.abort(now), "stopped: RST to the client", out);
    if (!concluded_.conclude()) return;
    report_.end = "interrupted";
    report_.evidence = evidence(true);
    report_.probes_sent = prober_.probes_sent();
    if (!report_.syn_times.empty()) report_.fit = fit_schedule(report_.evidence, cfg_.tolerance, RetryRule::SynTime);
}

void ListenFlow::stop(Instant now, Outbox& out) {
    if (answered_ && !tcb::in_state(tcb_.state(), {State::Closed, State::TimeWait, State::Listen}))
        conn_.apply_with_cause(now, tcb_.abort(now), "--max-wait: RST to the client", out);
    conclude(now, "max-wait", out);
}

std::string ListenFlow::progress(Instant) const {
    return fmt::format("{}:{}: {} SYN(s)", to_string(tuple().remote.addr), tuple().remote.port, report_.syn_times.size());
}

}  // namespace tcpprobe::probe
