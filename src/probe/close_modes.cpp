// The close modes (see close.hpp), each a scenario on the shared CloseSequence: what it
// does at ESTABLISHED, when the peer's FIN comes first, when its quiet time is over, and
// how it names a completed close.
#include <fmt/format.h>

#include "tcpprobe/probe/close.hpp"

namespace tcpprobe::probe {

using namespace tcpprobe::wire;
using tcb::State;

namespace {

/// active: we FIN first, after the request and a quiet --idle (which data restarts).
class ActiveClose final : public CloseScenario {
public:
    void established(Instant t, CloseSequence& s, Outbox&) override { s.quiet_from(t); }
    void data_before_fin(Instant t, CloseSequence& s) override { s.quiet_from(t); }
    void peer_fin_first(Instant t, CloseSequence& s, Outbox& out) override {
        s.finding(t, "the peer closed first, before our FIN", true, out);
        s.close_wait_from(t);
    }
    void completed(Instant t, CloseSequence& s, Outbox& out) override { s.name_our_close(t, out); }
};

/// half-close: our FIN right after the request (shutdown(SHUT_WR)); we keep receiving.
class HalfClose final : public CloseScenario {
public:
    void established(Instant t, CloseSequence& s, Outbox& out) override { s.send_fin(t, out); }
    void peer_fin_first(Instant t, CloseSequence& s, Outbox&) override { s.close_wait_from(t); }
    void completed(Instant t, CloseSequence& s, Outbox& out) override { s.name_our_close(t, out); }
};

/// passive: the peer FINs first; we stay in CLOSE-WAIT for --idle, then FIN (LAST-ACK).
class PassiveClose final : public CloseScenario {
public:
    void established(Instant, CloseSequence&, Outbox&) override {}
    void peer_fin_first(Instant t, CloseSequence& s, Outbox&) override { s.close_wait_from(t); }
    void completed(Instant t, CloseSequence& s, Outbox& out) override {
        s.connection().note(t, "the peer closed first, so it now holds the TIME-WAIT state (2MSL)", out);
        s.conclude(t, CloseOutcome::Clean, ClosePattern::Passive, out);
    }
};

/// simultaneous: at the peer's FIN our FIN goes out before our ACK of theirs, so both
/// ends pass through CLOSING.
class SimultaneousClose final : public CloseScenario {
public:
    void established(Instant, CloseSequence&, Outbox&) override {}
    void peer_fin_first(Instant t, CloseSequence& s, Outbox& out) override {
        if (s.tcb().state() == State::Established) s.send_fin(t, out);
        else s.close_wait_from(t);
    }
    void completed(Instant t, CloseSequence& s, Outbox& out) override {
        s.conclude(t, s.report().peer_passed_closing ? CloseOutcome::Clean : CloseOutcome::Differs, ClosePattern::Simultaneous,
                   out);
    }
};

/// abort: after the quiet --idle an in-window RST, then liveness probes (one byte far out
/// of the window): a peer that dropped the connection answers RST (RFC 9293 §3.10.7.1),
/// one that kept it answers with an ACK (§3.10.7.4). The path may lose our RST, the probe
/// or its answer, so a peer still in state gets our RST again (abort_rsts in all), and a
/// silent round is repeated once before the run calls it unanswered.
class AbortClose final : public CloseScenario {
public:
    explicit AbortClose(const CloseConfig& cfg) : prober_(cfg.liveness) {}

    void established(Instant t, CloseSequence& s, Outbox&) override { s.quiet_from(t); }
    void data_before_fin(Instant t, CloseSequence& s) override { s.quiet_from(t); }
    void peer_fin_first(Instant t, CloseSequence& s, Outbox& out) override {
        s.finding(t, "the peer closed first, before our FIN", false, out);
    }
    void quiet_over(Instant now, CloseSequence& s, Outbox& out) override {
        if (s.tcb().state() == State::Established) send_rst(now, s, out);
        else CloseScenario::quiet_over(now, s, out);
    }
    /// An abort is no close: a close that completed on its own (the peer closed first)
    /// is named by nobody, and --max-wait ends the run.
    void completed(Instant, CloseSequence&, Outbox&) override {}

    bool take_segment(Instant t, const Segment& seg, CloseSequence& s, Outbox& out) override {
        if (!aborted_) return false;
        // After our RST the TCB is CLOSED: it must not answer; we only judge the answer.
        if (prober_.outstanding() && !s.concluded()) on_answer(t, seg.has(flag::rst) ? Liveness::Gone : Liveness::Alive, s, out);
        return true;
    }
    bool take_timer(Instant now, CloseSequence& s, Outbox& out) override;
    std::optional<Instant> deadline(std::optional<Instant> sequence, const CloseSequence& s) const override {
        if (!aborted_) return sequence;
        return s.concluded() ? std::nullopt : prober_.next_deadline();
    }
    void sent(Instant t, const Segment& seg, CloseSequence& s, Outbox& out) override {
        const CloseReport& r = s.report();
        if (seg.has(flag::rst) && aborted_ && r.abort_rsts_sent == 1 && !r.abort_probes_sent)
            s.peer_goes(t, State::Closed, "gets our in-window RST (to be confirmed)", out);
    }

private:
    void send_rst(Instant now, CloseSequence& s, Outbox& out);
    void on_answer(Instant t, Liveness l, CloseSequence& s, Outbox& out);

    LivenessProber prober_;  ///< is the connection gone?
    unsigned silent_rounds_ = 0;
    bool aborted_ = false;
};

void AbortClose::send_rst(Instant now, CloseSequence& s, Outbox& out) {
    Connection& conn = s.connection();
    CloseReport& r = s.report();
    if (r.abort_rsts_sent == 0) {
        conn.apply_with_cause(now, conn.tcb().abort(now), "abort: sent an in-window RST", out);
    } else {
        conn.note(now, fmt::format("abort: the peer still answers in state: our RST again (#{}), it may have been lost",
                                   r.abort_rsts_sent + 1), out);
        conn.send(conn.make_segment(now, flag::rst, conn.tcb().snd.nxt, Seq{0}), out);
    }
    ++r.abort_rsts_sent;
    aborted_ = true;
    prober_.plan_one(now + s.config().abort_probe_delay);
}

void AbortClose::on_answer(Instant t, Liveness l, CloseSequence& s, Outbox& out) {
    prober_.answered(t, l);
    CloseReport& r = s.report();
    if (l == Liveness::Gone) {
        r.abort_confirmed = true;
        s.peer_goes(t, State::Closed, "answered our probe with RST: the connection is gone", out);
        s.conclude(t, CloseOutcome::Clean, ClosePattern::Abort, out);
        return;
    }
    if (r.abort_rsts_sent < s.config().abort_rsts) {
        send_rst(t, s, out);
        return;
    }
    r.abort_confirmed = false;
    s.finding(t, fmt::format("the peer still answers in state after {} RSTs: it did not drop the connection", r.abort_rsts_sent),
              true, out);
    s.conclude(t, CloseOutcome::Differs, ClosePattern::Abort, out);
}

bool AbortClose::take_timer(Instant now, CloseSequence& s, Outbox& out) {
    if (!aborted_) return false;
    Connection& conn = s.connection();
    CloseReport& r = s.report();
    const std::size_t rounds = prober_.results().size();
    if (prober_.due(now)) {
        if (!r.abort_probes_sent) conn.note(now, "probe: one byte far outside the window (kept: an ACK; dropped: a RST)", out);
        conn.send(conn.make_segment(now, flag::ack, conn.tcb().snd.nxt + 0x40000000u, conn.tcb().rcv.nxt, {0}), out);
        prober_.sent(now);
        ++r.abort_probes_sent;
    }
    if (prober_.results().size() > rounds && prober_.last() == Liveness::Silent) {
        // Our RST and then every try went unanswered: lost on the path, or a peer that
        // answers nothing. Once more with a fresh RST, then give up.
        if (++silent_rounds_ < 2) send_rst(now, s, out);
        else s.give_up(now, fmt::format("no answer to {} probes after {} RSTs", r.abort_probes_sent, r.abort_rsts_sent), out);
    }
    return true;
}

}  // namespace

std::unique_ptr<CloseScenario> make_close_scenario(const CloseConfig& cfg) {
    switch (cfg.mode) {
        case CloseMode::Active: return std::make_unique<ActiveClose>();
        case CloseMode::Passive: return std::make_unique<PassiveClose>();
        case CloseMode::Simultaneous: return std::make_unique<SimultaneousClose>();
        case CloseMode::Abort: return std::make_unique<AbortClose>(cfg);
        case CloseMode::HalfClose: return std::make_unique<HalfClose>();
    }
    return std::make_unique<ActiveClose>();
}

}  // namespace tcpprobe::probe
