// Close sequences (see close.hpp). The TCB does the RFC work (FIN-WAIT-1/2, CLOSING,
// TIME-WAIT, LAST-ACK); the mode's scenario decides *when* to close (close_modes.cpp);
// the sequence here watches what the peer sends in answer, infers the peer's states from
// it and names a close we began.
#include "tcpprobe/probe/close.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace tcpprobe::probe {

using namespace tcpprobe::wire;
using tcb::State;

std::string_view to_string(CloseMode m) {
    switch (m) {
        case CloseMode::Active: return "active";
        case CloseMode::Passive: return "passive";
        case CloseMode::Simultaneous: return "simultaneous";
        case CloseMode::Abort: return "abort";
        case CloseMode::HalfClose: return "half-close";
    }
    return "?";
}

std::string_view to_string(CloseOutcome o) {
    switch (o) {
        case CloseOutcome::Pending: return "pending";
        case CloseOutcome::Clean: return "clean";
        case CloseOutcome::Differs: return "differs";
        case CloseOutcome::Incomplete: return "incomplete";
    }
    return "?";
}

std::string_view to_string(ClosePattern p) {
    switch (p) {
        case ClosePattern::None: return "none";
        case ClosePattern::FourWay: return "4-way";
        case ClosePattern::ThreeWay: return "3-way";
        case ClosePattern::ThreeWayUnconfirmed: return "3-way-unconfirmed";
        case ClosePattern::Simultaneous: return "simultaneous";
        case ClosePattern::Passive: return "passive";
        case ClosePattern::Reset: return "reset";
        case ClosePattern::Abort: return "abort";
        case ClosePattern::PeerClosedFirst: return "peer-closed-first";
        case ClosePattern::Incomplete: return "incomplete";
    }
    return "?";
}

// ---------------------------------------------------------------------------------------
// The flow: the Connection, the sequence and the mode.

CloseFlow::CloseFlow(CloseConfig config) : cfg_(std::move(config)) {}

void CloseFlow::start(Instant now, Outbox& out) {
    conn_.start(now);
    conn_.connect(now, out);
}

void CloseFlow::on_segment(Instant t, const Segment& seg, bool outgoing, Outbox& out) {
    if (!conn_.on_segment(t, seg, outgoing, out)) return;
    if (!mode_->take_segment(t, seg, seq_, out)) seq_.on_segment(t, seg, *mode_, out);
}

std::optional<Instant> CloseFlow::next_deadline() const {
    if (conn_.phase() != ConnectPhase::Connected) return conn_.next_deadline(std::nullopt);
    return mode_->deadline(seq_.deadline(), seq_);
}

void CloseFlow::on_established(Instant t, Outbox& out) {
    seq_.established(t, out);
    mode_->established(t, seq_, out);
}

void CloseFlow::observe(Instant t, const tcb::Action& a, Outbox& out) { seq_.observe(t, a, *mode_, out); }

void CloseFlow::observe_outgoing(Instant t, const Segment& seg, bool ours, Outbox& out) {
    if (!ours) return;
    seq_.observe_outgoing(t, seg, out);
    mode_->sent(t, seg, seq_, out);
}

std::optional<Duration> CloseFlow::peer_close_wait() const {
    // Only meaningful when the peer closed after us: our FIN, its ACK, later its FIN.
    const CloseReport& r = report();
    if (!r.our_fin || !r.peer_ack_of_fin || !r.peer_fin) return std::nullopt;
    if (*r.peer_fin < *r.our_fin || r.combined_fin_ack) return std::nullopt;
    return *r.peer_fin - *r.peer_ack_of_fin;
}

void CloseScenario::quiet_over(Instant now, CloseSequence& s, Outbox& out) {
    if (tcb::in_state(s.tcb().state(), {State::Established, State::CloseWait})) s.send_fin(now, out);
}

// ---------------------------------------------------------------------------------------
// The sequence every mode shares.

void CloseSequence::finding(Instant t, std::string text, bool is_anomaly, Outbox& out) {
    report_.findings.push_back(text);
    if (is_anomaly) conn_.anomaly(t, std::move(text), out);
    else conn_.note(t, std::move(text), out);
}

State CloseSequence::peer_now() const {
    return report_.peer_states.empty() ? State::Closed : report_.peer_states.back().state;
}

void CloseSequence::peer_goes(Instant t, State to, std::string cause, Outbox& out) {
    const State from = peer_now();
    if (from == to) return;
    report_.peer_states.push_back({to, t});
    conn_.peer_state(t, std::string(tcb::to_string(from)), std::string(tcb::to_string(to)), std::move(cause), out);
}

void CloseSequence::send_fin(Instant now, Outbox& out) {
    conn_.apply(now, conn_.tcb().close(now), out);
    if (conn_.tcb().fin_sent()) our_fin_seq_ = conn_.tcb().snd.nxt - 1;
}

void CloseSequence::conclude(Instant now, CloseOutcome o, ClosePattern pattern, Outbox& out) {
    if (!concluded_.conclude()) return;
    report_.outcome = o;
    report_.pattern = pattern;
    report_.end = now;
    conn_.finish(now, Verdict::Open, out);
}

void CloseSequence::established(Instant t, Outbox& out) {
    report_.local_states.push_back({tcb().state(), t});
    peer_goes(t, State::Established, "our ACK completed the handshake", out);
    max_wait_until_ = t + cfg_.max_wait;
    if (!cfg_.request.empty()) conn_.apply(t, conn_.tcb().send(t, cfg_.request), out);
}

void CloseSequence::on_segment(Instant t, const Segment& seg, CloseScenario& mode, Outbox& out) {
    if (seg.has(flag::rst)) report_.peer_reset = true;
    const bool acks_our_fin = our_fin_seq_ && seg.has(flag::ack) && !seg.has(flag::rst) && !report_.peer_ack_of_fin &&
                              after_eq(seg.ack, *our_fin_seq_ + 1);
    const bool first_fin = seg.has(flag::fin) && !report_.peer_fin;
    // IP ID bookkeeping: a per-connection counter (Linux: inet_id, +1 per segment) lets a
    // gap show a segment the path lost.
    std::optional<int> id_gap;
    if (last_peer_ip_id_) id_gap = static_cast<std::uint16_t>(seg.ip.id - *last_peer_ip_id_);
    if (acks_our_fin) {
        report_.peer_ack_of_fin = t;
        report_.combined_fin_ack = first_fin;
        if (first_fin && report_.our_fin) {
            // A counter: every earlier step was +1, or (one earlier segment only) a gap of at
            // most 3, which random IDs give once in 20,000.
            const bool counter = peer_id_counter_ && id_gap && (peer_id_steps_ >= 1 || *id_gap <= 3);
            const Duration delay = t - *report_.our_fin;
            const Duration ack_limit = std::chrono::milliseconds{500} + conn_.result().rtt.value_or(Duration::zero());
            if ((counter && *id_gap >= 2) || delay > ack_limit) {
                // RFC 1122 §4.2.3.2: an ACK MUST NOT be delayed 0.5 s; with a per-connection
                // IP ID the skipped number is the ACK itself.
                report_.combined_fin_ack = false;
                report_.peer_ack_lost = true;
                finding(t, counter && *id_gap >= 2
                               ? fmt::format("the peer's ACK of our FIN was lost on the path: its IP ID skipped {} "
                                             "number(s) before this FIN", *id_gap - 1)
                               : fmt::format("the peer's ACK of our FIN was not seen: its FIN came {:.0f} ms after ours, "
                                             "later than RFC 1122 lets an ACK wait (lost on the path)", to_ms_f(delay)),
                        false, out);
            } else if (!counter) {
                report_.combined_unconfirmed = true;
                finding(t, "FIN and ACK came together, but the peer's IP IDs are no per-connection counter: a separate "
                           "ACK lost on the path cannot be ruled out", false, out);
            }
        }
        // Its ACK of our FIN proves the peer got our FIN; if that was while its own FIN
        // was unacknowledged, it passed through CLOSING.
        report_.peer_passed_closing = std::any_of(report_.peer_states.begin(), report_.peer_states.end(),
                                                  [](const StateSpan& s) { return s.state == State::Closing; }) ||
                                      peer_now() == State::FinWait1;
        // The peer's state follows from where it was when our FIN reached it.
        const State now_in = peer_now();
        if (now_in == State::Established) {
            peer_goes(t, State::CloseWait, "acknowledged our FIN", out);
        } else if (now_in == State::FinWait1) {
            peer_goes(t, State::Closing, "acknowledged our FIN before our ACK of its FIN", out);
        } else if (now_in == State::FinWait2) {
            peer_goes(t, State::TimeWait, "acknowledged our FIN", out);
        }
    }
    if (id_gap) {
        if (*id_gap == 1) ++peer_id_steps_;
        else if (!(report_.peer_ack_lost && *id_gap >= 2)) peer_id_counter_ = false;
    }
    last_peer_ip_id_ = seg.ip.id;
    if (first_fin) {
        report_.peer_fin = t;
        peer_fin_seq_ = seg.seq + static_cast<std::uint32_t>(seg.payload.size());
        if (our_fin_seq_ && report_.peer_ack_of_fin) {
            peer_goes(t, State::LastAck, "sent its FIN", out);
        } else {
            peer_goes(t, State::FinWait1, "sent its FIN first", out);
            mode.peer_fin_first(t, *this, out);
        }
    }
    const State before_feed = conn_.tcb().state();
    if (conn_.feed(t, seg, out)) {
        if (before_feed == State::TimeWait && sent_after_close_ && peer_now() == State::Closed) {
            // Our ACK of its FIN had closed the peer's side (LAST-ACK -> CLOSED); a copy of
            // its FIN (a tail-loss probe or a retransmission that crossed our ACK) drew our
            // re-ACK, which a closed 4-tuple answers with a RST (RFC 9293 §3.10.7.1). The
            // close was complete before it; the RST ends only our TIME-WAIT early.
            report_.peer_reset = false;  // the close was not reset: the trace keeps the RST
            conn_.note(t, "the RST answers our re-ACK of a copy of the peer's FIN: its side had already closed", out);
            completed(t, mode, out);
            return;
        }
        peer_goes(t, State::Closed, "sent RST", out);
        if (conn_.connected_retransmissions() > 0) {
            // Something of ours had gone unanswered (lost on the path, or its ACK was):
            // meanwhile the peer's own timers run (a FIN-WAIT-2 timeout, its data or FIN
            // retransmissions giving up) and a RST is their answer. Loss explains it.
            finding(t, fmt::format("the peer reset the connection (RST) while we were in {}, after {} retransmission(s) "
                                   "of ours: its timers may have run out while our segments were lost",
                                   before_feed, conn_.connected_retransmissions()),
                    false, out);
            conclude(t, CloseOutcome::Incomplete, ClosePattern::Incomplete, out);
            return;
        }
        finding(t, fmt::format("the peer reset the connection (RST) while we were in {}", before_feed), true, out);
        conclude(t, CloseOutcome::Differs, ClosePattern::Reset, out);
    }
}

void CloseSequence::observe(Instant t, const tcb::Action& a, CloseScenario& mode, Outbox& out) {
    if (const auto* d = std::get_if<tcb::DataReceived>(&a)) {
        const auto n = d->data.size();
        // "After our FIN" in wire order: our FIN was captured before this data.
        (report_.our_fin ? report_.bytes_after_our_fin : report_.bytes_before_our_fin) += n;
        if (report_.our_fin) ++report_.segments_after_our_fin;
        (report_.peer_fin ? report_.bytes_after_peer_fin : report_.bytes_before_peer_fin) += n;
        if (!our_fin_seq_) mode.data_before_fin(t, *this);
        return;
    }
    if (const auto* g = std::get_if<tcb::GaveUp>(&a)) {
        finding(t, fmt::format("our {} was never acknowledged ({} retransmissions)", g->what, g->retransmissions), true, out);
        conclude(t, CloseOutcome::Incomplete, ClosePattern::Incomplete, out);
        return;
    }
    const auto* c = std::get_if<tcb::StateChanged>(&a);
    if (!c || conn_.phase() != ConnectPhase::Connected) return;
    report_.local_states.push_back({c->to, t});
    if (c->to != State::Closed || concluded_ || giving_up_) return;
    // The TCB closed normally (TIME-WAIT expired or LAST-ACK acknowledged): name the pattern.
    if (report_.peer_reset) return;
    completed(t, mode, out);
}

void CloseSequence::completed(Instant t, CloseScenario& mode, Outbox& out) {
    if (concluded_) return;
    mode.completed(t, *this, out);
}

void CloseSequence::name_our_close(Instant t, Outbox& out) {
    const bool peer_first = report_.peer_fin && report_.our_fin && *report_.peer_fin < *report_.our_fin;
    const bool crossed = std::any_of(report_.local_states.begin(), report_.local_states.end(),
                                     [](const StateSpan& x) { return x.state == State::Closing; });
    if (crossed) {
        finding(t, "the peer's FIN crossed ours: a simultaneous close, not the sequence under test", true, out);
        conclude(t, CloseOutcome::Differs, ClosePattern::Simultaneous, out);
    } else if (peer_first) {
        conclude(t, CloseOutcome::Differs, ClosePattern::PeerClosedFirst, out);
    } else {
        conclude(t, CloseOutcome::Clean,
                 !report_.combined_fin_ack        ? ClosePattern::FourWay
                 : report_.combined_unconfirmed ? ClosePattern::ThreeWayUnconfirmed
                                                : ClosePattern::ThreeWay,
                 out);
    }
}

void CloseSequence::observe_outgoing(Instant t, const Segment& seg, Outbox& out) {
    if (seg.has(flag::fin) && !report_.our_fin) {
        report_.our_fin = t;
        // The state our FIN put us in starts when the FIN is on the wire, not when we
        // decided to send it (one time base for every interval).
        for (auto it = report_.local_states.rbegin(); it != report_.local_states.rend(); ++it) {
            if (it->state != State::FinWait1 && it->state != State::LastAck) continue;
            auto next = it.base();  // the entry after *it
            if (it->since < t && (next == report_.local_states.end() || t <= next->since)) it->since = t;
            break;
        }
        if (peer_now() == State::FinWait1) peer_goes(t, State::Closing, "gets our FIN before our ACK of its FIN", out);
    }
    if (report_.our_ack_of_peer_fin) sent_after_close_ = true;  // set by an earlier segment: this one is later
    if (seg.has(flag::ack) && peer_fin_seq_ && seg.ack == *peer_fin_seq_ + 1 && !report_.our_ack_of_peer_fin) {
        report_.our_ack_of_peer_fin = t;
        const State now_in = peer_now();
        if (now_in == State::FinWait1) peer_goes(t, State::FinWait2, "gets our ACK of its FIN", out);
        else if (now_in == State::Closing) peer_goes(t, State::TimeWait, "gets our ACK of its FIN", out);
        else if (now_in == State::LastAck) peer_goes(t, State::Closed, "gets our ACK of its FIN", out);
    }
}

void CloseSequence::give_up(Instant now, std::string why, Outbox& out) {
    finding(now, std::move(why), true, out);
    // Leave nothing half-open on the peer: reset what is left of the connection (after
    // an abort our TCB is CLOSED already). The resulting CLOSED is recorded but is not a
    // normal end (giving_up_).
    giving_up_ = true;
    if (!tcb::in_state(tcb().state(), {State::Closed, State::TimeWait})) {
        conn_.apply_with_cause(now, conn_.tcb().abort(now), "cleanup after --max-wait (RST)", out);
        peer_goes(now, State::Closed, "gets our cleanup RST", out);
    }
    conclude(now, CloseOutcome::Incomplete, ClosePattern::Incomplete, out);
}

void CloseSequence::on_timer(Instant now, CloseScenario& mode, Outbox& out) {
    conn_.run_tcb_timers(now, out);
    if (concluded_) return;
    if (quiet_until_ && now >= *quiet_until_) {
        quiet_until_.reset();
        mode.quiet_over(now, *this, out);
    }
    if (mode.take_timer(now, *this, out)) return;
    if (auto until = give_up_at(); until && now >= *until) {
        if (conn_.tcb().state() != State::TimeWait)
            give_up(now, fmt::format("the close did not complete within --max-wait (we are in {})", conn_.tcb().state()), out);
        else
            give_up(now, fmt::format("the peer retransmitted its FIN {} time(s) into our TIME-WAIT until --max-wait: "
                                     "our ACKs do not reach it", conn_.tcb().time_wait_fins()), out);
    }
}

// --max-wait bounds every state. Our own TIME-WAIT is part of a completed close and runs
// its 2MSL even past --max-wait; only a peer that keeps retransmitting its FIN into it
// (each copy restarts 2MSL) is cut off, at the later of --max-wait and the first 2MSL.
std::optional<Instant> CloseSequence::give_up_at() const {
    if (!max_wait_until_ || conn_.tcb().state() != State::TimeWait) return max_wait_until_;
    if (conn_.tcb().time_wait_fins() == 0 || !conn_.tcb().time_wait_since()) return std::nullopt;
    return std::max(*max_wait_until_, *conn_.tcb().time_wait_since() + conn_.tcb().config().time_wait);
}

std::optional<Instant> CloseSequence::deadline() const {
    return earliest({tcb().next_deadline(), quiet_until_, give_up_at()});
}

}  // namespace tcpprobe::probe
