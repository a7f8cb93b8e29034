// The handshake scenario (see handshake.hpp): the shared connection handling plus the
// stale-SYN prelude, the half-open reset and the linger time.
#include "tcpprobe/probe/handshake.hpp"

#include <fmt/format.h>

namespace tcpprobe::probe {

using namespace tcpprobe::wire;

HandshakeFlow::HandshakeFlow(HandshakeConfig config) : ConnectionFlow(config.connect), cfg_(std::move(config)) {}

bool HandshakeFlow::about_stale(Seq our_seq) const {
    // Our stale SYN occupies one sequence number; segments around it belong to it.
    return cfg_.stale_syn && in_window(our_seq, cfg_.stale_isn, 2);
}

FormatContext HandshakeFlow::context_for(Direction d, const Segment& seg) const {
    FormatContext ctx = ConnectionFlow::context_for(d, seg);
    if (about_stale(d == Direction::Out ? seg.seq : seg.ack - 1)) {
        ctx.iss = cfg_.stale_isn;
        ctx.irs = stale_irs_ ? stale_irs_ : (seg.has(flag::syn) ? std::optional<Seq>(seg.seq) : std::nullopt);
    }
    return ctx;
}

void HandshakeFlow::begin(Instant now, Outbox& out) {
    if (!cfg_.stale_syn) {
        connect(now, out);
        return;
    }
    set_phase(Phase::PreConnect);
    stale_ = StaleSynReport{};
    note(now, fmt::format("stale SYN first (ISN {}), the real SYN (ISN {}) follows its answer", cfg_.stale_isn.raw(),
                          tcb_.iss().raw()), out);
    send(make_segment(now, static_cast<std::uint16_t>(flag::syn | ccfg_.tcb.extra_syn_flags), cfg_.stale_isn, Seq{0}), out);
}

void HandshakeFlow::on_preconnect_segment(Instant t, const Segment& seg, Outbox& out) {
    if (seg.has(flag::syn | flag::ack) && seg.ack == cfg_.stale_isn + 1) {
        stale_irs_ = seg.seq;
        stale_->first_answered = true;
        note(t, "the peer answered the stale SYN; sending the real SYN", out);
        connect(t, out);
    } else if (seg.has(flag::rst)) {
        cres_.answer = seg;
        finish(t, Verdict::Closed, out);
    }
}

bool HandshakeFlow::intercept_connecting(Instant t, const Segment& seg, Outbox& out) {
    if (stale_ && !stale_->second_answer) {
        stale_->second_answer = format_flags(seg.flags);
        stale_->second_answer_acks_old = seg.has(flag::ack) && seg.ack == cfg_.stale_isn + 1;
    }
    const bool good_synack = seg.has(flag::syn | flag::ack) && !seg.has(flag::rst) && seg.ack == tcb_.iss() + 1;
    if (!cfg_.half_open || !good_synack || tcb_.state() != tcb::State::SynSent) return false;
    // Negotiate on a copy (what *would* have been agreed), then reset instead of ACKing.
    tcb::Tcb what_if = tcb_;
    (void)what_if.on_segment(t, seg);
    cres_.negotiated = what_if.negotiated();
    send(make_segment(t, flag::rst, seg.ack, Seq{0}), out);
    apply_with_cause(t, tcb_.close(t), "half-open: SYN-ACK answered with RST", out);
    finish(t, Verdict::Open, out);
    return true;
}

void HandshakeFlow::observe(Instant, const tcb::Action& a, Outbox&) {
    if (const auto* s = std::get_if<tcb::SendSegment>(&a); s && stale_ && s->reason == tcb::SendReason::ResetReply)
        stale_->reset_sent = true;
}

void HandshakeFlow::on_established(Instant t, Outbox& out) {
    linger_until_ = t + cfg_.linger;
    if (cfg_.linger == Duration::zero()) finish(t, Verdict::Open, out);
}

void HandshakeFlow::on_connected_timer(Instant now, Outbox& out) {
    ConnectionFlow::on_connected_timer(now, out);
    if (linger_until_ && now >= *linger_until_) finish(now, Verdict::Open, out);
}

std::optional<Instant> HandshakeFlow::connected_deadline() const {
    return earliest({ConnectionFlow::connected_deadline(), linger_until_});
}

}  // namespace tcpprobe::probe
