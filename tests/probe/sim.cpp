// The simulated network (see sim.hpp).
#include "sim.hpp"

#include <algorithm>

namespace tcpprobe::sim {

tcb::TcbConfig client_tcb(bool timestamps) {
    tcb::TcbConfig c;
    c.tuple = {client, server};
    c.iss = wire::Seq{1000};
    c.syn_options = tcb::default_syn_options(1460, 7, true, timestamps);
    c.rcv_wnd = 64240u << 7;
    c.syn_window = 64240;
    c.rto.initial_rto = 1s;
    c.rto.max_retries = 1;
    c.time_wait = 2s;
    c.ts_offset = 5000;
    return c;
}

tcb::TcbConfig server_tcb(bool timestamps) {
    tcb::TcbConfig c;
    c.tuple = {server, client};
    c.iss = wire::Seq{0xFFFFFF00u};  // wraps during the test, on purpose
    c.syn_options = tcb::default_syn_options(1400, 9, true, timestamps);
    c.rcv_wnd = 65160;
    c.rto.initial_rto = 200ms;
    c.rto.max_retries = 5;
    c.time_wait = 60s;
    c.ts_offset = 90000;
    return c;
}

std::vector<std::string> flags_of(const std::vector<wire::Segment>& segs) {
    std::vector<std::string> out;
    for (const auto& s : segs) out.push_back(wire::format_flags(s.flags));
    return out;
}

PeerApp kernel_resets_synacks(Duration after) {
    return [after](Sim& s, Instant t, const tcb::Actions& a) {
        for (const auto& x : a)
            if (const auto* send = std::get_if<tcb::SendSegment>(&x); send && send->segment.has(wire::flag::syn | wire::flag::ack)) {
                wire::Segment rst;
                rst.src = client;
                rst.dst = server;
                rst.seq = send->segment.ack;
                rst.flags = wire::flag::rst;
                rst.ip.id = 0x7777;
                s.capture(t + after, rst, true);
            }
    };
}

std::vector<std::string> segment_lines(const std::vector<probe::Event>& events) {
    std::vector<std::string> out;
    for (const auto& e : events)
        if (const auto* s = std::get_if<probe::SegmentEvent>(&e.body)) out.push_back(s->line);
    return out;
}

Sim::Sim(probe::Flow& flow, PeerKind kind, Duration one_way) : flow_(flow), kind_(kind), delay_(one_way) {
    peer_.emplace(server_tcb());
    if (kind_ == PeerKind::Listening) peer_actions(now_, peer_->open_passive(now_));
}

void Sim::peer_actions(Instant t, const tcb::Actions& given) {
    tcb::Actions actions = given;
    for (auto& a : actions)
        if (auto* s = std::get_if<tcb::SendSegment>(&a)) peer_ids_.stamp(s->segment);
    for (const auto& a : actions) {
        if (const auto* s = std::get_if<tcb::SendSegment>(&a)) {
            wire::Segment seg = s->segment;
            if (rewrite_peer_) rewrite_peer_(seg);
            if (drop_peer_ && drop_peer_(seg)) continue;
            in_flight_.push_back({t + delay_, seg, false});
        } else if (const auto* c = std::get_if<tcb::StateChanged>(&a)) {
            peer_states_.push_back(c->to);
        }
    }
    if (app_) app_(*this, t, actions);
}

void Sim::capture(Instant t, const wire::Segment& seg, bool outgoing) {
    probe::Outbox out;
    wire_.push_back(std::string(outgoing ? "> " : "< ") + wire::format_flags(seg.flags));
    flow_.on_segment(t, seg, outgoing, out);
    flush(out);
}

void Sim::icmp(Instant t, const wire::Segment& quoted, std::uint8_t type, std::uint8_t code, wire::Ipv4Addr reporter) {
    wire::IcmpError e;
    e.reporter = reporter;
    e.type = type;
    e.code = code;
    e.quoted_src = quoted.src;
    e.quoted_dst = quoted.dst;
    e.quoted_seq = quoted.seq;
    probe::Outbox out;
    flow_.on_icmp(t, e, out);
    flush(out);
}

void Sim::flush(probe::Outbox& out) {
    for (auto& e : out.events) events_.push_back(std::move(e));
    out.events.clear();
    auto sends = std::move(out.send);
    out.send.clear();
    for (auto& s : sends) {
        from_flow_.push_back(s);
        in_flight_.push_back({now_ + delay_, s, true});
        capture(now_, s, true);  // our own segment shows up in the capture at once
    }
}

void Sim::deliver(const InFlight& f) {
    if (f.to_peer) {
        switch (kind_) {
            case PeerKind::Silent:
                return;
            case PeerKind::IcmpUnreachable:
                if (f.seg.has(wire::flag::syn)) icmp(now_ + delay_, f.seg, 3, 13, server.addr);  // admin-prohibited
                return;
            case PeerKind::Closed:
            case PeerKind::Listening:
                if (hook_) {
                    if (auto answers = hook_(*this, now_, f.seg)) {
                        for (auto& a : *answers)
                            if (!(drop_peer_ && drop_peer_(a))) in_flight_.push_back({now_ + delay_, std::move(a), false});
                        return;
                    }
                }
                peer_actions(now_, peer_->on_segment(now_, f.seg));
                return;
        }
    }
    from_peer_.push_back(f.seg);
    capture(now_, f.seg, false);
}

void Sim::run(Duration limit) {
    probe::Outbox out;
    flow_.start(now_, out);
    flush(out);
    const Instant end = start_ + limit;
    while (!flow_.done() && now_ < end) {
        // The next thing to happen: a segment arriving, a flow timer, a peer timer, an app action.
        std::optional<Instant> next;
        auto consider = [&](std::optional<Instant> t) {
            if (t && (!next || *t < *next)) next = t;
        };
        for (const auto& f : in_flight_) consider(f.at);
        consider(flow_.next_deadline());
        if (peer_) consider(peer_->next_deadline());
        for (const auto& s : scheduled_) consider(s.first);
        if (!next) break;
        now_ = std::max(now_, *next);
        // Arrivals first (in order), then timers.
        std::stable_sort(in_flight_.begin(), in_flight_.end(), [](const InFlight& a, const InFlight& b) { return a.at < b.at; });
        while (!in_flight_.empty() && in_flight_.front().at <= now_) {
            InFlight f = in_flight_.front();
            in_flight_.pop_front();
            deliver(f);
        }
        for (std::size_t i = 0; i < scheduled_.size();) {
            if (scheduled_[i].first <= now_) {
                auto fn = std::move(scheduled_[i].second);
                scheduled_.erase(scheduled_.begin() + static_cast<std::ptrdiff_t>(i));
                fn(*this, now_);
            } else {
                ++i;
            }
        }
        if (peer_ && peer_->next_deadline() && *peer_->next_deadline() <= now_) peer_actions(now_, peer_->on_timer(now_));
        if (auto d = flow_.next_deadline(); d && *d <= now_) {
            flow_.on_timer(now_, out);
            flush(out);
        }
    }
    // Segments still on the wire when the flow finished still arrive (bounded: the
    // exchange they start is at most a few segments long).
    for (int rounds = 0; rounds < 16 && !in_flight_.empty(); ++rounds) {
        std::stable_sort(in_flight_.begin(), in_flight_.end(), [](const InFlight& a, const InFlight& b) { return a.at < b.at; });
        InFlight f = in_flight_.front();
        in_flight_.pop_front();
        now_ = std::max(now_, f.at);
        deliver(f);
    }
}

}  // namespace tcpprobe::sim
