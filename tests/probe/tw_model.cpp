// The TIME-WAIT peer model (see tw_model.hpp).
#include "tw_model.hpp"

namespace tcpprobe::sim {

using namespace tcpprobe::wire;

TwModel::TwModel(Init init, Instant start, TwModelConfig cfg)
    : init_(init), cfg_(cfg), start_(start), deadline_(start + cfg.time_wait) {}

TwModel TwModel::from(const tcb::Tcb& peer, Instant start, TwModelConfig cfg) {
    Init i;
    i.tuple = peer.config().tuple;
    i.snd_nxt = peer.snd.nxt;
    i.rcv_nxt = peer.rcv.nxt;
    i.timestamps = peer.negotiated().timestamps;
    i.ts_recent = peer.ts_recent();
    i.ts_offset = peer.config().ts_offset + 100000;
    return TwModel(i, start, cfg);
}

// tcp_paws_check / tcp_paws_reject: only when the connection used timestamps and the
// segment carries one; TS.Recent 0 is never held against a segment.
bool TwModel::paws_rejects(const Segment& seg) const {
    if (!init_.timestamps) return false;
    const auto ts = find_option<opt::Timestamps>(seg.options);
    if (!ts) return false;
    if (static_cast<std::int32_t>(init_.ts_recent - ts->tsval) <= 0) return false;
    return init_.ts_recent != 0;
}

void TwModel::restart(Instant now) {
    deadline_ = now + cfg_.time_wait;
    restarts_.push_back(now);
}

// tcp_oow_rate_limited: data and FIN segments (SEG.LEN > 0) without SYN are never limited.
bool TwModel::rate_limited(Instant now, const Segment& seg) {
    if (seg.seg_len() != 0 && !seg.has(flag::syn)) return false;
    if (last_oow_ack_ && now - *last_oow_ack_ < cfg_.ratelimit) {
        ++rate_limited_;
        return true;
    }
    last_oow_ack_ = now;
    return false;
}

Segment TwModel::answer(Instant now, std::uint16_t flags, Seq seq, Seq ack) const {
    Segment s;
    s.src = init_.tuple.local;
    s.dst = init_.tuple.remote;
    s.flags = flags;
    s.seq = seq;
    s.ack = (flags & flag::ack) ? ack : Seq{0};
    s.window = (flags & flag::rst) ? 0 : init_.window;
    if (init_.timestamps && !(flags & flag::rst)) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - start_).count();
        s.options = {opt::Nop{}, opt::Nop{}, opt::Timestamps{init_.ts_offset + static_cast<std::uint32_t>(ms), init_.ts_recent}};
    }
    return s;
}

std::vector<Segment> TwModel::closed_answer(Instant now, const Segment& seg) const {
    if (seg.has(flag::rst)) return {};
    if (seg.has(flag::ack)) return {answer(now, flag::rst, seg.ack, Seq{0})};
    if (seg.has(flag::syn)) return {answer(now, flag::rst | flag::ack, Seq{0}, seg.seq + seg.seg_len())};
    return {};  // a listener drops segments without ACK, RST or SYN
}

std::vector<Segment> TwModel::on_segment(Instant now, const Segment& seg) {
    if (end_ == End::None && now >= deadline_) {
        end_ = End::Expired;
        ended_at_ = deadline_;
    }
    if (end_ != End::None) return closed_answer(now, seg);

    const bool paws_reject = paws_rejects(seg);
    const auto ts = find_option<opt::Timestamps>(seg.options);
    const bool saw_ts = init_.timestamps && ts.has_value();

    // In window: a bare ACK (or a segment with no flags) or a RST at exactly RCV.NXT.
    if (!paws_reject && seg.seq == init_.rcv_nxt && (seg.seg_len() == 0 || seg.has(flag::rst))) {
        if (seg.has(flag::rst)) {
            if (!cfg_.rfc1337) {
                end_ = End::Killed;
                ended_at_ = now;
                return {};
            }
        } else {
            restart(now);
        }
        if (saw_ts) init_.ts_recent = ts->tsval;
        return {};
    }

    // A new SYN on the 4-tuple.
    if (seg.has(flag::syn) && !seg.has_any(flag::rst | flag::ack) && !paws_reject &&
        (after(seg.seq, init_.rcv_nxt) || (saw_ts && static_cast<std::int32_t>(init_.ts_recent - ts->tsval) < 0))) {
        Seq isn = init_.snd_nxt + 65537u;
        if (isn == Seq{0}) isn = Seq{1};
        new_isn_ = isn;
        end_ = End::Reused;
        ended_at_ = now;
        Segment sa = answer(now, flag::syn | flag::ack, isn, seg.seq + 1);
        sa.window = 65160;
        sa.options = {opt::Mss{1400}};
        if (ts) {
            const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - start_).count();
            sa.options.push_back(opt::Nop{});
            sa.options.push_back(opt::Nop{});
            sa.options.push_back(opt::Timestamps{init_.ts_offset + static_cast<std::uint32_t>(ms), ts->tsval});
        }
        return {sa};
    }

    // Out of window.
    if (seg.has(flag::rst)) return {};
    if (paws_reject || seg.has(flag::ack)) restart(now);
    if (rate_limited(now, seg)) return {};
    ++acks_;
    return {answer(now, flag::ack, init_.snd_nxt, init_.rcv_nxt)};
}

}  // namespace tcpprobe::sim
