// The TIME-WAIT peer model and the many-connection network (see tw_model.hpp).
#include "tw_model.hpp"

#include <algorithm>

#include "sim.hpp"

namespace tcpprobe::sim {

using namespace tcpprobe::wire;

TwSegKind classify(const Segment& seg, Seq rcv_nxt) {
    if (seg.has(flag::syn)) return TwSegKind::Syn;
    if (seg.has(flag::fin)) {
        if (seg.seq + static_cast<std::uint32_t>(seg.payload.size()) + 1u == rcv_nxt) return TwSegKind::RetxFin;
        return seg.has(flag::ack) ? TwSegKind::FinAck : TwSegKind::FinNoAck;
    }
    if (seg.has(flag::ack)) return TwSegKind::Ack;
    return TwSegKind::Other;
}

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
    switch (cfg_.closed) {
        case TwClosedReply::Silent:
            return {};
        case TwClosedReply::Linux:
        case TwClosedReply::RstAckOnly:
            if (!seg.has_any(flag::ack | flag::syn)) return {};  // a listener drops them
            break;
        case TwClosedReply::Rst:
            break;
    }
    if (seg.has(flag::ack)) return {answer(now, flag::rst, seg.ack, Seq{0})};
    return {answer(now, flag::rst | flag::ack, Seq{0}, seg.seq + seg.seg_len())};
}

// Another stack's TIME-WAIT: the kind of the segment decides, nothing else (no window,
// no PAWS, no rate limit), as in foreign_peer.py.
std::vector<Segment> TwModel::by_policy(Instant now, const Segment& seg) {
    const TwSegKind kind = classify(seg, init_.rcv_nxt);
    if (cfg_.policy->restarts.contains(kind)) restart(now);
    if (!cfg_.policy->answers.contains(kind)) return {};
    ++acks_;
    return {answer(now, flag::ack, init_.snd_nxt, init_.rcv_nxt)};
}

std::vector<Segment> TwModel::on_segment(Instant now, const Segment& seg) {
    if (end_ == End::None && now >= deadline_) {
        end_ = End::Expired;
        ended_at_ = deadline_;
    }
    if (end_ != End::None) return closed_answer(now, seg);
    if (cfg_.policy && !seg.has(flag::rst) && !seg.has(flag::syn)) return by_policy(now, seg);

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


// ---------------------------------------------------------------------------------------
// SessionFlow and TwNet

void SessionFlow::on_segment(Instant t, const Segment& seg, bool, probe::Outbox& out) {
    DecodedPacket p;
    p.src = seg.src.addr;
    p.dst = seg.dst.addr;
    p.body = seg;
    s_.on_packet(t, p, out);
}

void SessionFlow::on_icmp(Instant t, const IcmpError& err, probe::Outbox& out) {
    DecodedPacket p;
    p.src = err.reporter;
    p.dst = err.quoted_src.addr;
    p.body = err;
    s_.on_packet(t, p, out);
}

// Every segment to the server goes through the hook: the server's side of each client
// port is ours to play, the Sim's own peer TCB never sees a segment.
TwNet::TwNet(TwModelConfig tw, Duration one_way) : tw_(tw), sim_(flow_, Sim::PeerKind::Listening, one_way) {
    sim_.set_peer_hook([this](Sim&, Instant t, const Segment& seg) { return to_server(t, seg); });
}

const TwModel* TwNet::model(std::uint16_t port) const {
    auto it = servers_.find(port);
    return it == servers_.end() || !it->second.model ? nullptr : &*it->second.model;
}

const std::vector<std::pair<Instant, Segment>>& TwNet::arrivals(std::uint16_t port) const {
    static const std::vector<std::pair<Instant, Segment>> none;
    auto it = servers_.find(port);
    return it == servers_.end() ? none : it->second.arrivals;
}

std::vector<std::string> TwNet::lines(std::uint16_t port) {
    std::vector<std::string> out;
    for (const auto& e : sim_.events())
        if (const auto* s = std::get_if<probe::SegmentEvent>(&e.body); s && e.flow == port) out.push_back(s->line);
    return out;
}

std::vector<Segment> TwNet::sent(std::uint16_t port) const {
    std::vector<Segment> out;
    for (const auto& s : sim_.sent_by_flow())
        if (s.src.port == port) out.push_back(s);
    return out;
}

void TwNet::server_actions(std::uint16_t port, Instant t, const tcb::Actions& actions) {
    Server& s = servers_[port];
    sim_.peer_actions(t, actions);  // sends, through the Sim's filter and delay
    const bool got_data = std::any_of(actions.begin(), actions.end(),
                                      [](const tcb::Action& a) { return std::holds_alternative<tcb::DataReceived>(a); });
    // The application: answer the request once, then close first (HTTP/1.0).
    if (got_data && !s.answered && s.tcb->state() == tcb::State::Established) {
        s.answered = true;
        server_actions(port, t, s.tcb->send(t, ByteVec(answer_size_, 'r')));
        if (closes_first_) server_actions(port, t, s.tcb->close(t));
    }
    if (!s.model && s.tcb->state() == tcb::State::TimeWait) {
        s.model.emplace(TwModel::from(*s.tcb, t, tw_));
        return;
    }
    // The server TCB's own timers (its retransmissions) run as scheduled actions.
    if (auto d = s.tcb->next_deadline(); d && !s.model)
        sim_.at(*d, [this, port](Sim&, Instant now) {
            Server& again = servers_[port];
            if (!again.model && again.tcb->next_deadline() && *again.tcb->next_deadline() <= now)
                server_actions(port, now, again.tcb->on_timer(now));
        });
}

std::optional<std::vector<Segment>> TwNet::to_server(Instant t, const Segment& arrived) {
    Segment seg = arrived;
    if (to_server_rewrite_) to_server_rewrite_(seg);
    const std::uint16_t port = seg.src.port;
    Server& s = servers_[port];
    if (s.model) {
        s.arrivals.push_back({t, seg});
        return s.model->on_segment(t, seg);
    }
    if (!s.tcb) {
        if (!(seg.has(flag::syn) && !seg.has_any(flag::ack | flag::rst))) return std::vector<Segment>{};
        tcb::TcbConfig c = server_tcb();
        c.tuple = {seg.dst, seg.src};
        c.iss = Seq{0xFFFFFF00u + port};
        s.tcb.emplace(c);
        server_actions(port, t, s.tcb->open_passive(t));
    }
    server_actions(port, t, s.tcb->on_segment(t, seg));
    return std::vector<Segment>{};
}

}  // namespace tcpprobe::sim
