// The userspace TCB. The structure follows RFC 9293 §3.10.7 ("SEGMENT ARRIVES"): one
// handler per state group, and inside the synchronized handler one function per
// numbered step, in the RFC's order. Where Linux deviates from the RFC in a way a real
// peer exercises (the SYN-ACK of a simultaneous open), the deviation is commented.
#include "tcpprobe/tcb/tcb.hpp"

#include <algorithm>
#include <cassert>

#include "tcpprobe/wire/format.hpp"

namespace tcpprobe::tcb {

using namespace tcpprobe::wire;

namespace {
constexpr std::uint16_t default_mss = 536;  // RFC 9293 §3.7.1: when the peer sends no MSS
constexpr std::uint8_t max_wscale = 14;     // RFC 7323 §2.3
constexpr std::uint32_t min_ipv4_mtu = 68;  // RFC 791: every IPv4 link carries 68 bytes

std::string rcvd(const Segment& seg) { return "rcvd " + format_flags(seg.flags); }
}  // namespace

OptionList default_syn_options(std::optional<std::uint16_t> mss, std::optional<std::uint8_t> wscale,
                               bool sack, bool timestamps) {
    OptionList l;
    if (mss) l.emplace_back(opt::Mss{*mss});
    if (sack && timestamps) {
        l.emplace_back(opt::SackPermitted{});
        l.emplace_back(opt::Timestamps{});
    } else if (sack) {
        l.emplace_back(opt::Nop{});
        l.emplace_back(opt::Nop{});
        l.emplace_back(opt::SackPermitted{});
    } else if (timestamps) {
        l.emplace_back(opt::Nop{});
        l.emplace_back(opt::Nop{});
        l.emplace_back(opt::Timestamps{});
    }
    if (wscale) {
        l.emplace_back(opt::Nop{});
        l.emplace_back(opt::WindowScale{*wscale});
    }
    return l;
}

namespace {
/// The one shared copy of `c` among the live TCBs' configurations.
std::shared_ptr<const TcbConfig> shared_config(TcbConfig c) {
    static std::vector<std::weak_ptr<const TcbConfig>> live;
    std::erase_if(live, [](const std::weak_ptr<const TcbConfig>& w) { return w.expired(); });
    for (const auto& w : live)
        if (auto p = w.lock(); p && *p == c) return p;
    auto p = std::make_shared<const TcbConfig>(std::move(c));
    live.push_back(p);
    return p;
}

TcbConfig without_own_fields(TcbConfig c) {
    c.tuple = {};
    c.iss = {};
    c.ip = {};
    c.ts_offset = 0;
    return c;
}
}  // namespace

Tcb::Tcb(TcbConfig config)
    : tuple_(config.tuple), iss_(config.iss), ip_(config.ip), ts_offset_(config.ts_offset) {
    cfg_ = shared_config(without_own_fields(std::move(config)));
    snd.una = snd.nxt = iss_;
    rcv.wnd = cfg_->rcv_wnd;
    rto_ = cfg_->rto.initial_rto;
    neg_.our_mss = [&]() -> std::optional<std::uint16_t> {
        if (auto m = find_option<opt::Mss>(cfg_->syn_options)) return m->value;
        return std::nullopt;
    }();
    if (auto w = find_option<opt::WindowScale>(cfg_->syn_options)) neg_.our_wscale = w->shift;
}

TcbConfig Tcb::config() const {
    TcbConfig c = *cfg_;
    c.tuple = tuple_;
    c.iss = iss_;
    c.ip = ip_;
    c.ts_offset = ts_offset_;
    return c;
}

// ---------------------------------------------------------------------------
// Segment construction

std::uint32_t Tcb::ts_now(Instant now) const {
    Instant base = epoch_.value_or(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - base).count();
    return ts_offset_ + static_cast<std::uint32_t>(ms);
}

std::uint16_t Tcb::advertised_window(bool syn) const {
    // RFC 7323 §2.2: the window field of a SYN is never scaled.
    if (syn) return cfg_->syn_window ? cfg_->syn_window : static_cast<std::uint16_t>(std::min<std::uint32_t>(rcv.wnd, 0xFFFF));
    return static_cast<std::uint16_t>(std::min<std::uint32_t>(rcv.wnd >> rcv_wscale_, 0xFFFF));
}

Segment Tcb::make_segment(Instant now, std::uint16_t flags, Seq seq, Seq ack, ByteVec payload) {
    Segment s;
    s.src = tuple_.local;
    s.dst = tuple_.remote;
    s.seq = seq;
    s.ack = (flags & flag::ack) ? ack : Seq{0};
    s.flags = flags;
    const bool syn = (flags & flag::syn) != 0;
    s.window = (flags & flag::rst) ? 0 : advertised_window(syn);
    if (syn) {
        s.options = cfg_->syn_options;
        if (flags & flag::ack) {
            // RFC 7323 §2.2, §3.2 and RFC 2018 §2: a SYN-ACK carries window scale,
            // timestamps and SACK-permitted only when the peer's SYN offered them.
            // The NOPs that aligned a dropped option go with it.
            OptionList kept;
            for (const auto& o : s.options) {
                const bool drop = (std::holds_alternative<opt::WindowScale>(o) && !neg_.peer_wscale) ||
                                  (std::holds_alternative<opt::Timestamps>(o) && !neg_.timestamps) ||
                                  (std::holds_alternative<opt::SackPermitted>(o) && !neg_.sack);
                if (!drop) {
                    kept.push_back(o);
                    continue;
                }
                while (!kept.empty() && std::holds_alternative<opt::Nop>(kept.back())) kept.pop_back();
            }
            s.options = std::move(kept);
        }
        // Our TSval is refreshed per send; TSecr echoes the peer only on a SYN-ACK.
        if (find_option<opt::Timestamps>(s.options))
            replace_option(s.options, opt::Timestamps{ts_now(now), (flags & flag::ack) ? ts_recent_ : 0});
    } else if (neg_.timestamps && !(flags & flag::rst)) {
        // RFC 7323 §3.2 / Linux: NOP, NOP, TS on every non-SYN segment once negotiated.
        s.options = {opt::Nop{}, opt::Nop{}, opt::Timestamps{ts_now(now), ts_recent_}};
    }
    s.payload = std::move(payload);
    s.ip = ip_;  // the IP ID stays the configured one: the sender counts it (probe::IpIds)
    return s;
}

void Tcb::emit(Instant now, std::uint16_t flags, Seq seq, Seq ack, SendReason why, Actions& out,
               ByteVec payload) {
    if (flags & flag::ack) last_ack_sent_ = ack;
    out.push_back(SendSegment{make_segment(now, flags, seq, ack, std::move(payload)), why});
}

void Tcb::send_ack(Instant now, SendReason why, Actions& out) {
    emit(now, flag::ack, snd.nxt, rcv.nxt, why, out);
}

// RFC 9293 §3.10.7.1: the reply of a closed (or not-yet-synchronized) endpoint.
void Tcb::send_reset_reply(Instant now, const Segment& seg, Actions& out) {
    if (seg.has(flag::rst)) return;
    if (seg.has(flag::ack))
        emit(now, flag::rst, seg.ack, Seq{0}, SendReason::ResetReply, out);
    else
        emit(now, flag::rst | flag::ack, Seq{0}, seg.seq + seg.seg_len(), SendReason::ResetReply, out);
}

void Tcb::queue_and_send(Instant now, Pending p, SendReason why, Actions& out) {
    emit(now, p.flags, p.seq, rcv.nxt, why, out, p.data);
    p.sent_at = now;
    if (after(p.end(), snd.nxt)) snd.nxt = p.end();
    retransmit_queue_.push_back(std::move(p));
    if (!rto_deadline_) arm_retransmit(now, out);
}

void Tcb::arm_retransmit(Instant now, Actions& out) {
    rto_deadline_ = now + rto_;
    out.push_back(ArmTimer{TimerKind::Retransmit, *rto_deadline_});
}

void Tcb::rtt_sample(Duration r) {
    // RFC 6298 §2.2-2.3 with alpha = 1/8, beta = 1/4, in whole microseconds (at least 1:
    // 0 means no sample yet).
    const auto us = static_cast<std::uint32_t>(
        std::clamp<std::int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(r).count(), 1, INT32_MAX));
    if (srtt_us_ == 0) {
        srtt_us_ = us;
        rttvar_us_ = us / 2;
        return;
    }
    const std::uint32_t err = srtt_us_ > us ? srtt_us_ - us : us - srtt_us_;
    rttvar_us_ = static_cast<std::uint32_t>((3 * std::uint64_t{rttvar_us_} + err) / 4);
    srtt_us_ = std::max<std::uint32_t>(1, static_cast<std::uint32_t>((7 * std::uint64_t{srtt_us_} + us) / 8));
}

Duration Tcb::base_rto() const {
    if (!cfg_->rto.from_rtt || srtt_us_ == 0) return cfg_->rto.initial_rto;
    const Duration rto = std::chrono::microseconds{std::uint64_t{srtt_us_} + 4 * std::uint64_t{rttvar_us_}};
    return std::clamp<Duration>(rto, cfg_->rto.min_rto, cfg_->rto.max_rto);
}

void Tcb::cancel_timers(Actions& out) {
    if (rto_deadline_) out.push_back(CancelTimer{TimerKind::Retransmit});
    if (time_wait_deadline_) out.push_back(CancelTimer{TimerKind::TimeWait});
    rto_deadline_.reset();
    time_wait_deadline_.reset();
    retransmit_queue_.clear();
    unsent_.clear();
    fin_queued_ = false;
}

void Tcb::set_state(State to, std::string cause, Actions& out) {
    if (to == state_) return;
    out.push_back(StateChanged{state_, to, std::move(cause)});
    state_ = to;
    if (to == State::Closed) cancel_timers(out);
}

void Tcb::enter_time_wait(Instant now, std::string cause, Actions& out) {
    set_state(State::TimeWait, std::move(cause), out);
    // Nothing of ours is outstanding any more (our FIN is acknowledged).
    retransmit_queue_.clear();
    if (rto_deadline_) out.push_back(CancelTimer{TimerKind::Retransmit});
    rto_deadline_.reset();
    time_wait_deadline_ = now + cfg_->time_wait;
    time_wait_since_ = now;
    out.push_back(ArmTimer{TimerKind::TimeWait, *time_wait_deadline_});
}

bool Tcb::fin_acked() const { return fin_seq_ && after(snd.una, *fin_seq_); }

// ---------------------------------------------------------------------------
// User calls

bool Tcb::open(Instant now, bool passive, Actions& out) {
    if (state_ != State::Closed) {
        out.push_back(Note{"open: connection already exists"});
        return false;
    }
    // §3.10.1: OPEN creates a new TCB. On an object reused after CLOSED, nothing of the
    // last connection (backed-off RTO, retry count, FIN, IRS, negotiation) may survive.
    *this = Tcb{config()};
    epoch_ = now;
    passive_ = passive;
    set_state(passive ? State::Listen : State::SynSent, passive ? "open (passive)" : "open (active)", out);
    return true;
}

Actions Tcb::open_active(Instant now) {
    Actions out;
    if (open(now, false, out))
        queue_and_send(now, {.seq = iss_, .flags = static_cast<std::uint16_t>(flag::syn | cfg_->extra_syn_flags), .data = {}}, SendReason::Syn, out);
    return out;
}

Actions Tcb::open_passive(Instant now) {
    Actions out;
    (void)open(now, true, out);
    return out;
}

Actions Tcb::send(Instant now, ByteVec data) {
    Actions out;
    if (!in_state(state_, {State::Established, State::CloseWait})) {
        out.push_back(Note{fmt::format("send: not allowed in {}", state_)});
        return out;
    }
    // Cut at the payload size the peer accepts and the link carries; what the send window
    // (the peer's window and max_segments_in_flight) does not take now waits in unsent_
    // and goes as ACKs make room.
    const std::size_t mss = neg_.payload_per_segment();
    for (std::size_t at = 0; at < data.size(); at += mss) {
        std::size_t n = std::min(mss, data.size() - at);
        auto first = data.begin() + static_cast<std::ptrdiff_t>(at);
        unsent_.push_back({ByteVec(first, first + static_cast<std::ptrdiff_t>(n)), at + n == data.size()});
    }
    send_unsent(now, out);
    return out;
}

bool Tcb::may_send(std::size_t len) const {
    // With nothing in flight one segment always goes, even into a zero window: it is the
    // window probe RFC 9293 §3.8.6.1 asks for, and its retransmission timer repeats it.
    if (retransmit_queue_.empty()) return true;
    if (retransmit_queue_.size() >= max_segments_in_flight) return false;
    return std::uint64_t{relative(snd.nxt, snd.una)} + len <= snd.wnd;
}

bool Tcb::send_unsent(Instant now, Actions& out) {
    bool sent = false;
    while (!unsent_.empty() && may_send(unsent_.front().data.size())) {
        Unsent u = std::move(unsent_.front());
        unsent_.erase(unsent_.begin());
        const auto flags = static_cast<std::uint16_t>(flag::ack | (u.push ? flag::psh : 0));
        queue_and_send(now, {.seq = snd.nxt, .flags = flags, .data = std::move(u.data)}, SendReason::Data, out);
        sent = true;
    }
    if (unsent_.empty() && fin_queued_) {
        fin_queued_ = false;
        send_fin(now, out);
        sent = true;
    }
    return sent;
}

void Tcb::send_fin(Instant now, Actions& out) {
    queue_and_send(now, {.seq = snd.nxt, .flags = flag::fin | flag::ack, .data = {}}, SendReason::Fin, out);
    fin_seq_ = snd.nxt - 1;
}

Actions Tcb::close(Instant now) {
    Actions out;
    switch (state_) {
        case State::Listen:
        case State::SynSent:
            set_state(State::Closed, "close", out);
            break;
        case State::SynReceived:
        case State::Established:
        case State::CloseWait: {
            // §3.10.4: the FIN is queued until all preceding SENDs have been segmentized
            // (and, here, sent); the state changes at once either way.
            const bool now_sent = unsent_.empty();
            if (now_sent) send_fin(now, out);
            else fin_queued_ = true;
            const std::string cause = now_sent ? "close: sent FIN" : "close: FIN queued behind unsent data";
            set_state(state_ == State::CloseWait ? State::LastAck : State::FinWait1, cause, out);
            break;
        }
        case State::Closed:
        case State::FinWait1:
        case State::FinWait2:
        case State::Closing:
        case State::LastAck:
        case State::TimeWait:
            out.push_back(Note{fmt::format("close: connection closing (in {})", state_)});
            break;
    }
    return out;
}

Actions Tcb::abort(Instant now) {
    Actions out;
    if (in_state(state_, {State::SynReceived, State::Established, State::FinWait1, State::FinWait2,
                          State::CloseWait}))
        emit(now, flag::rst, snd.nxt, Seq{0}, SendReason::Rst, out);
    set_state(State::Closed, "abort", out);
    return out;
}

// ---------------------------------------------------------------------------
// Timers

std::optional<Instant> Tcb::next_deadline() const {
    if (rto_deadline_ && time_wait_deadline_) return std::min(*rto_deadline_, *time_wait_deadline_);
    return rto_deadline_ ? rto_deadline_ : time_wait_deadline_;
}

Actions Tcb::on_timer(Instant now) {
    Actions out;
    if (time_wait_deadline_ && now >= *time_wait_deadline_) {
        time_wait_deadline_.reset();
        set_state(State::Closed, "timer: 2MSL expired", out);
        return out;
    }
    if (!rto_deadline_ || now < *rto_deadline_ || retransmit_queue_.empty()) return out;
    rto_deadline_.reset();
    const Pending& head = retransmit_queue_.front();
    const char* what = (head.flags & flag::syn) ? "SYN" : (head.flags & flag::fin) && head.data.empty() ? "FIN" : "data";
    if (retries_ >= cfg_->rto.max_retries) {
        out.push_back(GaveUp{what, retries_});
        set_state(State::Closed, fmt::format("timer: gave up after {} retransmissions of {}", retries_, what), out);
        return out;
    }
    ++retries_;
    retransmit_queue_.front().retransmitted = true;
    syn_resent_ = false;
    // The head is resent as it was first sent, except that a SYN-ACK or later segment
    // carries the current RCV.NXT.
    std::uint16_t flags = head.flags;
    if (state_ != State::SynSent) flags |= flag::ack;
    emit(now, flags, head.seq, rcv.nxt, SendReason::Retransmission, out, head.data);
    // Linux's linear SYN timeouts: after retransmission k <= syn_linear the RTO stays.
    if (state_ != State::SynSent || retries_ > cfg_->rto.syn_linear) {
        auto next = std::chrono::duration_cast<Duration>(rto_ * cfg_->rto.backoff);
        rto_ = std::min(next, cfg_->rto.max_rto);
    }
    arm_retransmit(now, out);
    return out;
}

// ---------------------------------------------------------------------------
// SEGMENT ARRIVES

Actions Tcb::on_segment(Instant now, const Segment& seg) {
    Actions out;
    if (!epoch_) epoch_ = now;
    switch (state_) {
        case State::Closed: handle_closed(now, seg, out); break;
        case State::Listen: handle_listen(now, seg, out); break;
        case State::SynSent: handle_syn_sent(now, seg, out); break;
        case State::TimeWait: handle_time_wait(now, seg, out); break;
        case State::SynReceived:
        case State::Established:
        case State::FinWait1:
        case State::FinWait2:
        case State::CloseWait:
        case State::Closing:
        case State::LastAck:
            handle_synchronized(now, seg, out);
            break;
    }
    return out;
}

void Tcb::handle_closed(Instant now, const Segment& seg, Actions& out) {
    // §3.10.7.1: all data is discarded; anything but a RST is answered with a RST.
    send_reset_reply(now, seg, out);
}

void Tcb::handle_listen(Instant now, const Segment& seg, Actions& out) {
    // §3.10.7.2, first: an incoming RST is ignored.
    if (seg.has(flag::rst)) return;
    // Second: an ACK means the segment belongs to nothing we know.
    if (seg.has(flag::ack)) {
        send_reset_reply(now, seg, out);
        return;
    }
    // Third: a SYN starts a connection.
    if (!seg.has(flag::syn)) return;
    irs_ = seg.seq;
    rcv.nxt = seg.seq + 1;
    negotiate(seg);
    snd.wnd = seg.window;  // unscaled in a SYN
    snd.wl1 = seg.seq;
    if (!seg.payload.empty()) out.push_back(Note{"SYN carries data (not accepted before the handshake completes)"});
    set_state(State::SynReceived, rcvd(seg), out);
    queue_and_send(now, {.seq = iss_, .flags = flag::syn | flag::ack, .data = {}}, SendReason::SynAck, out);
}

void Tcb::handle_syn_sent(Instant now, const Segment& seg, Actions& out) {
    // §3.10.7.3, first: check the ACK.
    bool ack_ok = false;
    if (seg.has(flag::ack)) {
        if (before_eq(seg.ack, iss_) || after(seg.ack, snd.nxt)) {
            out.push_back(Note{fmt::format("unacceptable ack {} in SYN-SENT (expected {})",
                                           relative(seg.ack, iss_), relative(snd.nxt, iss_))});
            if (seg.has(flag::rst)) return;
            emit(now, flag::rst, seg.ack, Seq{0}, SendReason::ResetReply, out);
            // The peer holds another connection on this 4-tuple: an earlier incarnation in
            // TIME-WAIT or still open (a raw-socket run's port is unknown to our kernel,
            // which hands it out again), or the one an old duplicate SYN opened (RFC 9293 §3.5).
            // Our RST at its RCV.NXT ends it; our SYN goes again right behind it instead
            // of one RTO later, once per copy, so that a lossy path keeps all its tries.
            if (!syn_resent_ && !retransmit_queue_.empty()) {
                syn_resent_ = true;
                Pending& head = retransmit_queue_.front();
                head.retransmitted = true;
                out.push_back(Note{"our SYN again behind the RST: the peer held another connection on this 4-tuple"});
                emit(now, head.flags, head.seq, rcv.nxt, SendReason::Retransmission, out, head.data);
            }
            return;
        }
        ack_ok = true;
    }
    // Second: a RST is valid only with an acceptable ACK (RFC 5961 §3.2 for SYN-SENT).
    if (seg.has(flag::rst)) {
        if (!ack_ok) {
            out.push_back(Note{"RST without an acceptable ACK ignored in SYN-SENT"});
            return;
        }
        out.push_back(ConnectionReset{state_});
        set_state(State::Closed, "rcvd RST: connection refused", out);
        return;
    }
    // Fourth: the SYN.
    if (!seg.has(flag::syn)) return;
    irs_ = seg.seq;
    rcv.nxt = seg.seq + 1;
    negotiate(seg);
    update_timestamps(seg);
    snd.wnd = seg.window;
    snd.wl1 = seg.seq;
    snd.wl2 = seg.ack;
    if (ack_ok) {
        snd.una = seg.ack;
        on_ack_advanced(now, out);
    }
    if (after(snd.una, iss_)) {
        set_state(State::Established, rcvd(seg), out);
        if (!seg.payload.empty()) {
            out.push_back(Note{fmt::format("SYN-ACK carries {} bytes of data", seg.payload.size())});
            out.push_back(DataReceived{seg.seq + 1, seg.payload});
            rcv.nxt += static_cast<std::uint32_t>(seg.payload.size());
        }
        if (seg.has(flag::fin)) {
            out.push_back(Note{"SYN-ACK carries FIN"});
            rcv.nxt += 1;
            fin_received_ = true;
            set_state(State::CloseWait, "rcvd FIN with SYN-ACK", out);
        }
        send_ack(now, SendReason::Ack, out);
    } else {
        // Simultaneous open: answer the peer's SYN with our SYN-ACK (same ISS).
        set_state(State::SynReceived, rcvd(seg) + " (simultaneous open)", out);
        emit(now, flag::syn | flag::ack, iss_, rcv.nxt, SendReason::SynAck, out);
    }
}

// ---------------------------------------------------------------------------
// Synchronized states, §3.10.7.4

void Tcb::handle_synchronized(Instant now, const Segment& seg, Actions& out) {
    // Linux (tcp_validate_incoming) accepts the peer's SYN-ACK of a simultaneous open in
    // SYN-RECEIVED although its sequence number is RCV.NXT-1: without this, simultaneous
    // open against a real host never completes.
    if (state_ == State::SynReceived && !passive_ && seg.has(flag::syn | flag::ack) &&
        !seg.has_any(flag::rst) && irs_ && seg.seq == *irs_ && seg.ack == snd.nxt) {
        snd.una = seg.ack;
        update_window(seg);
        on_ack_advanced(now, out);
        set_state(State::Established, rcvd(seg) + " (simultaneous open)", out);
        return;
    }
    // Linux (tcp_check_req) answers a retransmission of the peer's SYN in SYN-RECEIVED
    // with its SYN-ACK again, instead of RFC 9293's bare ACK: a client whose first
    // SYN-ACK was lost then completes without waiting for our RTO.
    if (state_ == State::SynReceived && passive_ && seg.flags == flag::syn && irs_ && seg.seq == *irs_) {
        out.push_back(Note{"retransmitted SYN: SYN-ACK sent again"});
        emit(now, flag::syn | flag::ack, iss_, rcv.nxt, SendReason::SynAck, out);
        return;
    }
    if (!check_sequence(now, seg, out)) return;    // first
    if (!check_rst(now, seg, out)) return;         // second
    // third: security/compartment — not used
    if (!check_syn(now, seg, out)) return;         // fourth
    if (!check_ack(now, seg, out)) return;         // fifth
    check_urg(seg, out);                           // sixth
    bool must_ack = process_text(seg, out);        // seventh
    must_ack |= process_fin(now, seg, out);        // eighth
    // Data the ACK made room for goes now, and carries the acknowledgment itself.
    if (send_unsent(now, out)) return;
    if (must_ack) send_ack(now, SendReason::Ack, out);
}

bool Tcb::acceptable(const Segment& seg) const {
    const std::uint32_t len = seg.seg_len();
    if (len == 0 && rcv.wnd == 0) return seg.seq == rcv.nxt;
    if (len == 0) return in_window(seg.seq, rcv.nxt, rcv.wnd);
    if (rcv.wnd == 0) return false;
    return in_window(seg.seq, rcv.nxt, rcv.wnd) || in_window(seg.seq + (len - 1), rcv.nxt, rcv.wnd);
}

bool Tcb::paws_rejects(const Segment& seg) const {
    // RFC 7323 §5.3: a segment whose TSval is older than TS.Recent is an old duplicate.
    if (!neg_.timestamps || seg.has(flag::rst)) return false;
    auto ts = find_option<opt::Timestamps>(seg.options);
    return ts && static_cast<std::int32_t>(ts->tsval - ts_recent_) < 0;
}

bool Tcb::check_sequence(Instant now, const Segment& seg, Actions& out) {
    if (paws_rejects(seg)) {
        out.push_back(Note{"PAWS: TSval older than TS.Recent, segment dropped"});
        send_ack(now, SendReason::Ack, out);
        return false;
    }
    if (acceptable(seg)) return true;
    if (seg.has(flag::rst)) {
        out.push_back(Note{"RST outside the window ignored (RFC 5961 §3.2)"});
        return false;
    }
    out.push_back(Note{fmt::format("unacceptable segment (seq {} outside RCV.NXT {} + {}), ACK sent",
                                   irs_ ? relative(seg.seq, *irs_) : seg.seq.raw(),
                                   irs_ ? relative(rcv.nxt, *irs_) : rcv.nxt.raw(), rcv.wnd)});
    send_ack(now, SendReason::Ack, out);
    return false;
}

bool Tcb::check_rst(Instant now, const Segment& seg, Actions& out) {
    if (!seg.has(flag::rst)) return true;
    // RFC 5961 §3.2: only the exact sequence number resets; in-window gets a challenge ACK.
    if (seg.seq != rcv.nxt) {
        out.push_back(Note{"in-window RST with inexact sequence: challenge ACK (RFC 5961 §3.2)"});
        send_ack(now, SendReason::ChallengeAck, out);
        return false;
    }
    if (state_ == State::SynReceived && passive_) {
        retransmit_queue_.clear();
        if (rto_deadline_) out.push_back(CancelTimer{TimerKind::Retransmit});
        rto_deadline_.reset();
        set_state(State::Listen, "rcvd RST", out);
        return false;
    }
    out.push_back(ConnectionReset{state_});
    set_state(State::Closed, "rcvd RST", out);
    return false;
}

bool Tcb::check_syn(Instant now, const Segment& seg, Actions& out) {
    if (!seg.has(flag::syn)) return true;
    if (state_ == State::SynReceived && passive_) {
        // RFC 9293 §3.10.7.4 fourth: a passive SYN-RECEIVED returns to LISTEN.
        retransmit_queue_.clear();
        if (rto_deadline_) out.push_back(CancelTimer{TimerKind::Retransmit});
        rto_deadline_.reset();
        set_state(State::Listen, rcvd(seg), out);
        return false;
    }
    // RFC 5961 §4.2: any SYN in a synchronized state gets a challenge ACK.
    out.push_back(Note{"SYN in a synchronized state: challenge ACK (RFC 5961 §4)"});
    send_ack(now, SendReason::ChallengeAck, out);
    return false;
}

void Tcb::update_window(const Segment& seg) {
    if (before(snd.wl1, seg.seq) || (snd.wl1 == seg.seq && before_eq(snd.wl2, seg.ack))) {
        snd.wnd = std::uint32_t{seg.window} << snd_wscale_;
        snd.wl1 = seg.seq;
        snd.wl2 = seg.ack;
    }
}

void Tcb::on_ack_advanced(Instant now, Actions& out) {
    bool progressed = false;
    std::optional<Duration> sample;
    while (!retransmit_queue_.empty()) {
        Pending& head = retransmit_queue_.front();
        if (before_eq(head.end(), snd.una)) {
            // Karn: only a segment sent once times the path.
            if (!head.retransmitted) sample = now - head.sent_at;
            retransmit_queue_.erase(retransmit_queue_.begin());
            progressed = true;
        } else if (after(snd.una, head.seq) && !head.data.empty()) {
            // Partial acknowledgment of data: keep the unacknowledged tail.
            auto done = std::min<std::size_t>(relative(snd.una, head.seq), head.data.size());
            head.data.erase(head.data.begin(), head.data.begin() + static_cast<std::ptrdiff_t>(done));
            head.seq = head.seq + static_cast<std::uint32_t>(done);
            head.flags &= static_cast<std::uint16_t>(~flag::syn);
            progressed = true;
            break;
        } else {
            break;
        }
    }
    if (!progressed) return;
    // RFC 6298 §5.3/5.7: new data acknowledged restarts the timer with a fresh RTO.
    if (sample) rtt_sample(*sample);
    retries_ = 0;
    rto_ = base_rto();
    if (rto_deadline_) {
        out.push_back(CancelTimer{TimerKind::Retransmit});
        rto_deadline_.reset();
    }
    if (!retransmit_queue_.empty()) arm_retransmit(now, out);
}

bool Tcb::check_ack(Instant now, const Segment& seg, Actions& out) {
    if (!seg.has(flag::ack)) {
        out.push_back(Note{"segment without ACK dropped"});
        return false;
    }
    if (state_ == State::SynReceived) {
        if (!(after(seg.ack, snd.una) && before_eq(seg.ack, snd.nxt))) {
            out.push_back(Note{"unacceptable ACK in SYN-RECEIVED: reset"});
            emit(now, flag::rst, seg.ack, Seq{0}, SendReason::ResetReply, out);
            return false;
        }
        snd.una = seg.ack;
        snd.wnd = std::uint32_t{seg.window} << snd_wscale_;
        snd.wl1 = seg.seq;
        snd.wl2 = seg.ack;
        on_ack_advanced(now, out);
        set_state(State::Established, rcvd(seg), out);
    }
    if (after(seg.ack, snd.nxt)) {
        // RFC 5961 §5.2: an ACK for data we never sent is dropped and answered.
        out.push_back(Note{fmt::format("ACK for data not yet sent (ack {} > SND.NXT {})",
                                       relative(seg.ack, iss_), relative(snd.nxt, iss_))});
        send_ack(now, SendReason::ChallengeAck, out);
        return false;
    }
    if (after(seg.ack, snd.una)) {
        snd.una = seg.ack;
        on_ack_advanced(now, out);
    }
    // §3.10.7.4 fifth: the window is taken only from SND.UNA =< SEG.ACK =< SND.NXT; an old
    // ACK (a reordered or duplicated segment) must not move it.
    if (before_eq(snd.una, seg.ack)) update_window(seg);
    switch (state_) {
        case State::FinWait1:
            // A FIN on this segment is the eighth step's: "if our FIN has been ACKed (perhaps
            // in this segment), then enter TIME-WAIT" -- a 3-way close never shows FIN-WAIT-2.
            if (fin_acked() && !seg.has(flag::fin))
                set_state(State::FinWait2, rcvd(seg) + ": our FIN acknowledged", out);
            break;
        case State::Closing:
            if (fin_acked()) {
                enter_time_wait(now, rcvd(seg) + ": our FIN acknowledged", out);
                return false;
            }
            break;
        case State::LastAck:
            if (fin_acked()) {
                set_state(State::Closed, rcvd(seg) + ": our FIN acknowledged", out);
                return false;
            }
            break;
        case State::Closed:
        case State::Listen:
        case State::SynSent:
        case State::SynReceived:
        case State::Established:
        case State::FinWait2:
        case State::CloseWait:
        case State::TimeWait:
            break;
    }
    return true;
}

void Tcb::check_urg(const Segment& seg, Actions& out) {
    if (seg.has(flag::urg)) out.push_back(Note{fmt::format("URG set, urgent pointer {}", seg.urgent)});
}

bool Tcb::process_text(const Segment& seg, Actions& out) {
    if (seg.payload.empty()) return false;
    if (!in_state(state_, {State::Established, State::FinWait1, State::FinWait2})) {
        out.push_back(Note{fmt::format("{} bytes of data after the peer's FIN ignored (in {})", seg.payload.size(), state_)});
        return false;
    }
    update_timestamps(seg);
    const auto len = static_cast<std::uint32_t>(seg.payload.size());
    if (after(seg.seq, rcv.nxt)) {
        // Out of order: reported, not reassembled; the duplicate ACK tells the peer.
        out.push_back(Note{fmt::format("out-of-order data: {} bytes at seq {} (expected {})", len,
                                       relative(seg.seq, *irs_), relative(rcv.nxt, *irs_))});
        return true;
    }
    const std::uint32_t skip = relative(rcv.nxt, seg.seq);  // already received prefix
    if (skip >= len) return true;                            // pure duplicate
    if (skip > 0) out.push_back(Note{fmt::format("retransmitted data overlaps {} bytes already received", skip)});
    ByteVec fresh(seg.payload.begin() + skip, seg.payload.end());
    out.push_back(DataReceived{rcv.nxt, std::move(fresh)});
    rcv.nxt += len - skip;
    return true;
}

void Tcb::update_timestamps(const Segment& seg) {
    // RFC 7323 §4.3: TS.Recent follows the segment that covers the last ACK we sent.
    if (!neg_.timestamps) return;
    auto ts = find_option<opt::Timestamps>(seg.options);
    if (!ts) return;
    if (static_cast<std::int32_t>(ts->tsval - ts_recent_) >= 0 && before_eq(seg.seq, last_ack_sent_))
        ts_recent_ = ts->tsval;
}

bool Tcb::process_fin(Instant now, const Segment& seg, Actions& out) {
    // Timestamps of a pure ACK or FIN are recorded here (data did it in process_text).
    if (seg.payload.empty()) update_timestamps(seg);
    if (!seg.has(flag::fin)) return false;
    const Seq fin_at = seg.seq + static_cast<std::uint32_t>(seg.payload.size());
    if (fin_received_ && fin_at + 1 == rcv.nxt) {
        // A retransmitted FIN: re-ACK it.
        out.push_back(Note{"retransmitted FIN re-acknowledged"});
        return true;
    }
    if (fin_at != rcv.nxt) {
        out.push_back(Note{"FIN beyond missing data not processed"});
        // The ACK on it still counts (the fifth step left this to us).
        if (state_ == State::FinWait1 && fin_acked())
            set_state(State::FinWait2, rcvd(seg) + ": our FIN acknowledged", out);
        return true;
    }
    rcv.nxt += 1;
    fin_received_ = true;
    switch (state_) {
        case State::SynReceived:
        case State::Established:
            set_state(State::CloseWait, rcvd(seg), out);
            break;
        case State::FinWait1:
            // The caller's one ACK acknowledges the FIN and any data before it.
            if (fin_acked()) {
                enter_time_wait(now, rcvd(seg) + ": FIN and ACK of our FIN", out);
                break;
            }
            set_state(State::Closing, rcvd(seg) + ": simultaneous close", out);
            break;
        case State::FinWait2:
            enter_time_wait(now, rcvd(seg), out);
            break;
        case State::Closed:
        case State::Listen:
        case State::SynSent:
        case State::CloseWait:
        case State::Closing:
        case State::LastAck:
        case State::TimeWait:
            break;
    }
    return true;
}

// ---------------------------------------------------------------------------
// TIME-WAIT (RFC 9293 §3.10.7.4 as applied to TIME-WAIT; Linux tcp_timewait_state_process)

void Tcb::handle_time_wait(Instant now, const Segment& seg, Actions& out) {
    if (seg.has(flag::rst)) {
        if (!in_window(seg.seq, rcv.nxt, std::max<std::uint32_t>(rcv.wnd, 1))) {
            out.push_back(Note{"RST outside the window ignored in TIME-WAIT"});
            return;
        }
        if (cfg_->rfc1337) {
            out.push_back(Note{"RST ignored in TIME-WAIT (RFC 1337)"});
            return;
        }
        if (seg.seq != rcv.nxt) {
            out.push_back(Note{"in-window RST with inexact sequence: challenge ACK (RFC 5961 §3.2)"});
            send_ack(now, SendReason::ChallengeAck, out);
            return;
        }
        out.push_back(ConnectionReset{state_});
        set_state(State::Closed, "rcvd RST in TIME-WAIT", out);
        return;
    }
    const Seq fin_at = seg.seq + static_cast<std::uint32_t>(seg.payload.size());
    if (seg.has(flag::fin) && fin_at + 1 == rcv.nxt) {
        // The peer did not get our last ACK: re-ACK and restart the 2MSL timer. A peer
        // repeating its FIN faster than 2MSL would keep us here for ever, so the restart
        // stops at time_wait_max_periods x 2MSL after TIME-WAIT began.
        ++time_wait_fins_;
        send_ack(now, SendReason::Ack, out);
        const Instant cap = time_wait_since_.value_or(now) + cfg_->time_wait * std::max(1u, cfg_->time_wait_max_periods);
        const Instant restarted = std::min(now + cfg_->time_wait, cap);
        if (time_wait_deadline_ && restarted <= *time_wait_deadline_) {
            out.push_back(Note{"retransmitted FIN in TIME-WAIT: re-ACK, 2MSL not restarted (TIME-WAIT at its longest)"});
            return;
        }
        out.push_back(Note{"retransmitted FIN in TIME-WAIT: re-ACK, 2MSL restarted"});
        time_wait_deadline_ = restarted;
        out.push_back(ArmTimer{TimerKind::TimeWait, *time_wait_deadline_});
        return;
    }
    if (seg.has(flag::syn)) {
        out.push_back(Note{"SYN in TIME-WAIT: challenge ACK (RFC 5961 §4)"});
        send_ack(now, SendReason::ChallengeAck, out);
        return;
    }
    if (!acceptable(seg) || !seg.payload.empty()) {
        out.push_back(Note{"unexpected segment in TIME-WAIT: ACK sent"});
        send_ack(now, SendReason::Ack, out);
    }
}

// ---------------------------------------------------------------------------
// Option negotiation (RFC 9293 §3.7.1, RFC 7323, RFC 2018)

void Tcb::negotiate(const Segment& syn) {
    const OptionList& ours = cfg_->syn_options;
    // A passive SYN-RECEIVED that went back to LISTEN (RST or SYN, §3.10.7.4) negotiates
    // again with whatever SYN comes next: nothing of the previous peer's SYN may stick.
    neg_.peer_mss.reset();
    neg_.peer_wscale.reset();
    snd_wscale_ = rcv_wscale_ = 0;
    if (auto m = find_option<opt::Mss>(syn.options)) neg_.peer_mss = m->value;
    // RFC 9293 §3.7.1: min(the peer's MSS or 536, ours), then the floor of min_send_mss
    // (a peer may announce 0), then the link: IPv4 and TCP headers take 40 bytes of the
    // MTU (68, IPv4's smallest, to 65535, its largest packet).
    const std::uint16_t announced = std::min<std::uint16_t>(neg_.peer_mss.value_or(default_mss), neg_.our_mss.value_or(0xFFFF));
    const auto link = static_cast<std::uint16_t>(std::clamp<std::uint32_t>(cfg_->mtu, min_ipv4_mtu, 65535) - 40);
    neg_.effective_mss = std::min(std::max(announced, min_send_mss), link);
    auto peer_ws = find_option<opt::WindowScale>(syn.options);
    if (peer_ws) neg_.peer_wscale = peer_ws->shift;
    neg_.window_scaling = peer_ws && neg_.our_wscale;
    if (neg_.window_scaling) {
        snd_wscale_ = std::min(peer_ws->shift, max_wscale);
        rcv_wscale_ = std::min(*neg_.our_wscale, max_wscale);
    }
    neg_.sack = find_option<opt::SackPermitted>(syn.options) && find_option<opt::SackPermitted>(ours);
    auto peer_ts = find_option<opt::Timestamps>(syn.options);
    neg_.timestamps = peer_ts && find_option<opt::Timestamps>(ours);
    if (neg_.timestamps) ts_recent_ = peer_ts->tsval;
}

}  // namespace tcpprobe::tcb
