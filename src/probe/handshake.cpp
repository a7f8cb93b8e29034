// The handshake scenario (see handshake.hpp): a Connection plus the stale-SYN prelude,
// the half-open reset and the linger time.
#include "tcpprobe/probe/handshake.hpp"

#include <fmt/format.h>

namespace tcpprobe::probe {

using namespace tcpprobe::wire;

HandshakeFlow::HandshakeFlow(HandshakeConfig config) : cfg_(config), conn_(std::move(config.connect), *this) {}

bool HandshakeFlow::about_stale(Seq our_seq) const {
    // Our stale SYN occupies one sequence number; segments around it belong to it.
    return cfg_.stale_syn && in_window(our_seq, cfg_.stale_isn, 2);
}

std::optional<FormatContext> HandshakeFlow::format_context(Direction d, const Segment& seg) const {
    if (!about_stale(d == Direction::Out ? seg.seq : seg.ack - 1)) return std::nullopt;
    FormatContext ctx = conn_.tcb_context(d, seg);
    ctx.iss = cfg_.stale_isn;
    ctx.irs = stale_irs_ ? stale_irs_ : (seg.has(flag::syn) ? std::optional<Seq>(seg.seq) : std::nullopt);
    return ctx;
}

void HandshakeFlow::start(Instant now, Outbox& out) {
    conn_.start(now);
    if (!cfg_.stale_syn) {
        conn_.connect(now, out);
        return;
    }
    conn_.set_phase(ConnectPhase::PreConnect);
    stale_ = std::make_unique<StaleSynReport>();
    conn_.note(now, fmt::format("stale SYN first (ISN {}), the real SYN (ISN {}) follows its answer", cfg_.stale_isn.raw(),
                                conn_.tcb().iss().raw()), out);
    conn_.send(conn_.make_segment(now, static_cast<std::uint16_t>(flag::syn | conn_.tcb().extra_syn_flags()), cfg_.stale_isn,
                                  Seq{0}), out);
}

void HandshakeFlow::on_segment(Instant t, const Segment& seg, bool outgoing, Outbox& out) {
    if (!conn_.on_segment(t, seg, outgoing, out)) return;
    if (conn_.phase() == ConnectPhase::PreConnect) on_stale_answer(t, seg, out);
    else conn_.feed(t, seg, out);  // lingering: the TCB ACKs what arrives
}

void HandshakeFlow::on_stale_answer(Instant t, const Segment& seg, Outbox& out) {
    if (seg.has(flag::syn | flag::ack) && seg.ack == cfg_.stale_isn + 1) {
        stale_irs_ = seg.seq;
        stale_->first_answered = true;
        conn_.note(t, "the peer answered the stale SYN; sending the real SYN", out);
        conn_.connect(t, out);
    } else if (seg.has(flag::rst)) {
        conn_.result().answer = std::make_shared<const Segment>(seg);
        conn_.finish(t, Verdict::Closed, out);
    }
}

bool HandshakeFlow::intercept_connecting(Instant t, const Segment& seg, Outbox& out) {
    if (stale_ && !stale_->second_answer) {
        stale_->second_answer = format_flags(seg.flags);
        stale_->second_answer_acks_old = seg.has(flag::ack) && seg.ack == cfg_.stale_isn + 1;
    }
    tcb::Tcb& tcb = conn_.tcb();
    const bool good_synack = seg.has(flag::syn | flag::ack) && !seg.has(flag::rst) && seg.ack == tcb.iss() + 1;
    if (!cfg_.half_open || !good_synack || tcb.state() != tcb::State::SynSent) return false;
    // Negotiate on a copy (what *would* have been agreed), then reset instead of ACKing.
    tcb::Tcb what_if = tcb;
    (void)what_if.on_segment(t, seg);
    conn_.result().negotiated = what_if.negotiated();
    conn_.send(conn_.make_segment(t, flag::rst, seg.ack, Seq{0}), out);
    conn_.apply_with_cause(t, tcb.close(t), "half-open: SYN-ACK answered with RST", out);
    conn_.finish(t, Verdict::Open, out);
    return true;
}

void HandshakeFlow::observe(Instant, const tcb::Action& a, Outbox&) {
    if (const auto* s = std::get_if<tcb::SendSegment>(&a); s && stale_ && s->reason == tcb::SendReason::ResetReply)
        stale_->reset_sent = true;
}

void HandshakeFlow::on_established(Instant t, Outbox& out) {
    linger_until_ = t + cfg_.linger;
    if (cfg_.linger == Duration::zero()) conn_.finish(t, Verdict::Open, out);
}

void HandshakeFlow::on_timer(Instant now, Outbox& out) {
    if (!conn_.on_timer(now, out)) return;
    conn_.run_tcb_timers(now, out);
    if (linger_until_ && now >= *linger_until_) conn_.finish(now, Verdict::Open, out);
}

std::optional<Instant> HandshakeFlow::next_deadline() const {
    return conn_.next_deadline(earliest({conn_.tcb().next_deadline(), linger_until_}));
}

}  // namespace tcpprobe::probe
