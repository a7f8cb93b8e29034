// The handshake scenario (see handshake.hpp). Every segment is reported when it is
// *captured*, in both directions, so the trace and the RTT come from one time base.
#include "tcpprobe/probe/handshake.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace tcpprobe::probe {

using namespace tcpprobe::wire;

HandshakeFlow::HandshakeFlow(HandshakeConfig config) : cfg_(std::move(config)), tcb_(cfg_.tcb) {}

void HandshakeFlow::event(Instant t, decltype(Event::body) body, Outbox& out) const {
    out.events.push_back(Event{t, port(), std::move(body)});
}

void HandshakeFlow::anomaly(Instant t, std::string text, Outbox& out) {
    event(t, NoteEvent{Severity::Anomaly, text}, out);
    result_.anomalies.push_back(std::move(text));
}

void HandshakeFlow::send(const Segment& s, Outbox& out) {
    expected_.push_back({s.flags, s.seq, s.ack});
    if (s.has(flag::syn) && !s.has(flag::ack)) ++result_.syns_sent;
    out.send.push_back(s);
}

void HandshakeFlow::apply(Instant now, const tcb::Actions& actions, Outbox& out) {
    for (const auto& a : actions) {
        if (const auto* s = std::get_if<tcb::SendSegment>(&a)) {
            if (result_.stale && s->reason == tcb::SendReason::ResetReply) result_.stale->reset_sent = true;
            send(s->segment, out);
        } else if (const auto* c = std::get_if<tcb::StateChanged>(&a)) {
            event(now, StateEvent{"local", std::string(to_string(c->from)), std::string(to_string(c->to)), c->cause}, out);
            result_.final_state = std::string(to_string(c->to));
        } else if (const auto* n = std::get_if<tcb::Note>(&a)) {
            event(now, NoteEvent{Severity::Info, n->text}, out);
        } else if (const auto* g = std::get_if<tcb::GaveUp>(&a)) {
            event(now, NoteEvent{Severity::Info, fmt::format("no answer after {} retransmissions of our {}", g->retransmissions, g->what)}, out);
            if (result_.verdict == Verdict::Pending) finish(now, Verdict::Filtered, out);
        } else if (const auto* d = std::get_if<tcb::DataReceived>(&a)) {
            event(now, NoteEvent{Severity::Info, fmt::format("received {} bytes of data", d->data.size())}, out);
        }
        // ArmTimer/CancelTimer: next_deadline() asks the TCB directly; ConnectionReset is
        // judged by the caller, which knows which segment caused it.
    }
}

bool HandshakeFlow::about_stale(Seq our_seq) const {
    // Our stale SYN occupies one sequence number; segments around it belong to it.
    return cfg_.stale_syn && in_window(our_seq, cfg_.stale_isn, 2);
}

void HandshakeFlow::start(Instant now, Outbox& out) {
    started_ = now;
    if (cfg_.stale_syn) {
        phase_ = Phase::StaleSent;
        result_.stale = StaleSynReport{};
        event(now, NoteEvent{Severity::Info, fmt::format("stale SYN first (ISN {}), the real SYN (ISN {}) follows its answer",
                                                        cfg_.stale_isn.raw(), cfg_.tcb.iss.raw())}, out);
        send(tcb_.make_segment(now, static_cast<std::uint16_t>(flag::syn | cfg_.tcb.extra_syn_flags), cfg_.stale_isn, Seq{0}), out);
        return;
    }
    phase_ = Phase::Connecting;
    apply(now, tcb_.open_active(now), out);
}

void HandshakeFlow::record_outgoing(Instant t, const Segment& seg, Outbox& out) {
    auto it = std::find_if(expected_.begin(), expected_.end(), [&](const Expected& e) {
        return e.flags == seg.flags && e.seq == seg.seq && e.ack == seg.ack;
    });
    const bool ours = it != expected_.end();
    if (ours) expected_.erase(it);
    FormatContext ctx = tcb_.format_context(Direction::Out);
    if (about_stale(seg.seq)) {
        ctx.iss = cfg_.stale_isn;
        ctx.irs = stale_irs_;
    }
    event(t, SegmentEvent{Direction::Out, seg, format_segment(seg, ctx), ours}, out);
    if (ours && seg.has(flag::syn) && !seg.has(flag::ack)) {
        auto ts = find_option<opt::Timestamps>(seg.options);
        syns_seen_.push_back({t, seg.seq, ts ? ts->tsval : 0});
    }
    if (!ours) {
        if (seg.has(flag::rst) && !cfg_.rst_guard)
            event(t, NoteEvent{Severity::Info, "the local kernel sent a RST too (expected: no RST guard in this mode)"}, out);
        else if (seg.has(flag::rst))
            anomaly(t, "the local kernel sent a RST on this flow (RST guard ineffective)", out);
        else
            anomaly(t, "an outgoing segment on this flow that tcpprobe did not send", out);
    }
}

void HandshakeFlow::on_synack(Instant t, const Segment& seg, Outbox& out) {
    if (seg.ack != tcb_.iss() + 1) {
        anomaly(t, fmt::format("SYN-ACK acknowledges {} (relative {}), expected ISS+1", seg.ack.raw(),
                               static_cast<std::int64_t>(distance(tcb_.iss(), seg.ack))), out);
        return;
    }
    if (result_.rtt) return;  // a retransmitted SYN-ACK: keep the first
    result_.answer = seg;
    result_.irs = seg.seq;
    result_.peer_options = seg.options;
    if (!seg.payload.empty()) anomaly(t, fmt::format("SYN-ACK carries {} bytes of data", seg.payload.size()), out);
    std::uint16_t allowed = flag::syn | flag::ack;
    if ((cfg_.tcb.extra_syn_flags & (flag::ece | flag::cwr)) == (flag::ece | flag::cwr)) allowed |= flag::ece;
    if (seg.flags & ~allowed) anomaly(t, fmt::format("unexpected flags on the SYN-ACK: {}", format_flags(seg.flags)), out);

    // RTT: SYN capture -> SYN-ACK capture. After a retransmitted SYN the SYN-ACK's TSecr
    // names the SYN it answers; without timestamps the pairing is ambiguous (Karn).
    const SynSeen* syn = nullptr;
    auto ts = find_option<opt::Timestamps>(seg.options);
    for (const auto& s : syns_seen_) {
        if (s.seq != tcb_.iss() || s.t > t) continue;
        if (ts && s.tsval == ts->tsecr && find_option<opt::Timestamps>(cfg_.tcb.syn_options)) syn = &s;
    }
    if (!syn) {
        for (const auto& s : syns_seen_)
            if (s.seq == tcb_.iss() && s.t <= t) syn = &s;  // the last SYN before the answer
        std::size_t real = static_cast<std::size_t>(std::count_if(syns_seen_.begin(), syns_seen_.end(),
                                                                   [&](const SynSeen& s) { return s.seq == tcb_.iss(); }));
        result_.rtt_ambiguous = real > 1;
    }
    if (syn) result_.rtt = t - syn->t;
}

void HandshakeFlow::on_segment(Instant t, const Segment& seg, bool outgoing, Outbox& out) {
    if (outgoing) {
        record_outgoing(t, seg, out);
        if (phase_ == Phase::Lingering || phase_ == Phase::Done) on_timer(t, out);
        return;
    }
    FormatContext ctx = tcb_.format_context(Direction::In);
    if (phase_ == Phase::StaleSent && seg.has(flag::syn)) stale_irs_ = seg.seq;
    if (about_stale(seg.ack - 1)) {
        ctx.iss = cfg_.stale_isn;
        ctx.irs = stale_irs_;
    }
    if (!ctx.irs && seg.has(flag::syn)) ctx.irs = seg.seq;
    event(t, SegmentEvent{Direction::In, seg, format_segment(seg, ctx), true}, out);
    if (seg.checksum_ok == false) anomaly(t, "bad TCP checksum on a received segment", out);
    if (seg.options_error) anomaly(t, fmt::format("malformed TCP options: {}", *seg.options_error), out);

    switch (phase_) {
        case Phase::Idle:
            return;
        case Phase::StaleSent:
            if (seg.has(flag::syn | flag::ack) && seg.ack == cfg_.stale_isn + 1) {
                result_.stale->first_answered = true;
                event(t, NoteEvent{Severity::Info, "the peer answered the stale SYN; sending the real SYN"}, out);
                phase_ = Phase::Connecting;
                apply(t, tcb_.open_active(t), out);
            } else if (seg.has(flag::rst)) {
                result_.answer = seg;
                finish(t, Verdict::Closed, out);
            }
            return;
        case Phase::Connecting:
            break;
        case Phase::Lingering:
        case Phase::Done:
            apply(t, tcb_.on_segment(t, seg), out);
            return;
    }

    if (result_.stale && !result_.stale->second_answer && tcb_.state() == tcb::State::SynSent) {
        result_.stale->second_answer = format_flags(seg.flags);
        result_.stale->second_answer_acks_old = seg.has(flag::ack) && seg.ack == cfg_.stale_isn + 1;
    }
    const bool synack = seg.has(flag::syn | flag::ack) && !seg.has(flag::rst);
    if (tcb_.state() == tcb::State::SynSent && synack) on_synack(t, seg, out);

    if (cfg_.half_open && synack && tcb_.state() == tcb::State::SynSent && seg.ack == tcb_.iss() + 1) {
        // Negotiate on a copy (what *would* have been agreed), then reset instead of ACKing.
        tcb::Tcb what_if = tcb_;
        (void)what_if.on_segment(t, seg);
        result_.negotiated = what_if.negotiated();
        send(tcb_.make_segment(t, flag::rst, seg.ack, Seq{0}), out);
        auto actions = tcb_.close(t);
        for (auto& a : actions)
            if (auto* c = std::get_if<tcb::StateChanged>(&a)) c->cause = "half-open: SYN-ACK answered with RST";
        apply(t, actions, out);
        finish(t, Verdict::Open, out);
        return;
    }

    auto actions = tcb_.on_segment(t, seg);
    const bool reset = std::any_of(actions.begin(), actions.end(),
                                   [](const tcb::Action& a) { return std::holds_alternative<tcb::ConnectionReset>(a); });
    apply(t, actions, out);
    if (reset) {
        result_.answer = seg;
        // Time to the RST, like the RTT of an open port.
        for (const auto& s : syns_seen_)
            if (s.seq == tcb_.iss() && s.t <= t) result_.rtt = t - s.t;
        finish(t, Verdict::Closed, out);
        return;
    }
    if (tcb_.state() == tcb::State::Established || tcb_.state() == tcb::State::CloseWait) {
        result_.negotiated = tcb_.negotiated();
        result_.verdict = Verdict::Open;
        phase_ = Phase::Lingering;
        linger_until_ = t + cfg_.linger;
        grace_until_ = *linger_until_ + cfg_.capture_grace;
    }
}

void HandshakeFlow::on_icmp(Instant t, const IcmpError& err, Outbox& out) {
    event(t, IcmpEvent{err, describe_icmp(err.type, err.code)}, out);
    const bool about_our_syn = err.quoted_seq == tcb_.iss() || (cfg_.stale_syn && err.quoted_seq == cfg_.stale_isn);
    if (!about_our_syn) {
        anomaly(t, fmt::format("ICMP error quoting sequence number {} that we did not send", err.quoted_seq.raw()), out);
        return;
    }
    if (result_.verdict != Verdict::Pending) return;
    result_.icmp = err;
    for (const auto& s : syns_seen_)
        if (s.t <= t) result_.rtt = t - s.t;
    apply(t, tcb_.close(t), out);
    finish(t, Verdict::Unreachable, out);
}

void HandshakeFlow::finish(Instant now, Verdict v, Outbox& out) {
    (void)out;
    if (result_.verdict == Verdict::Pending) result_.verdict = v;
    phase_ = Phase::Done;
    linger_until_ = now;
    grace_until_ = now + cfg_.capture_grace;
    if (expected_.empty()) done_ = true;
}

void HandshakeFlow::on_timer(Instant now, Outbox& out) {
    switch (phase_) {
        case Phase::Idle:
            return;
        case Phase::StaleSent:
        case Phase::Connecting:
            if (now >= started_ + cfg_.timeout) {
                event(now, NoteEvent{Severity::Info, fmt::format("no answer within {:.1f} s", to_ms_f(cfg_.timeout) / 1000)}, out);
                if (tcb_.state() != tcb::State::Closed) apply(now, tcb_.close(now), out);
                finish(now, Verdict::Filtered, out);
                return;
            }
            if (phase_ == Phase::Connecting) apply(now, tcb_.on_timer(now), out);
            return;
        case Phase::Lingering:
        case Phase::Done:
            if (tcb_.next_deadline() && *tcb_.next_deadline() <= now) apply(now, tcb_.on_timer(now), out);
            if (expected_.empty() && linger_until_ && now >= *linger_until_) {
                done_ = true;
            } else if (grace_until_ && now >= *grace_until_) {
                if (!expected_.empty()) anomaly(now, fmt::format("{} segment(s) we sent never appeared in the capture", expected_.size()), out);
                expected_.clear();
                done_ = true;
            }
            return;
    }
}

void HandshakeFlow::interrupt(Instant now, Outbox& out) {
    result_.interrupted = true;
    event(now, NoteEvent{Severity::Info, "interrupted"}, out);
    phase_ = Phase::Done;
    done_ = true;
}

std::optional<Instant> HandshakeFlow::next_deadline() const {
    switch (phase_) {
        case Phase::Idle:
            return std::nullopt;
        case Phase::StaleSent:
            return started_ + cfg_.timeout;
        case Phase::Connecting: {
            Instant d = started_ + cfg_.timeout;
            if (auto t = tcb_.next_deadline()) d = std::min(d, *t);
            return d;
        }
        case Phase::Lingering:
        case Phase::Done: {
            std::optional<Instant> d = expected_.empty() ? linger_until_ : grace_until_;
            if (auto t = tcb_.next_deadline(); t && (!d || *t < *d)) d = t;
            return d;
        }
    }
    return std::nullopt;
}

}  // namespace tcpprobe::probe
