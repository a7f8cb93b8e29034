// The simulated network behind app::Edge (see sim_net.hpp).
#include "app/sim_net.hpp"

#include <algorithm>

#include "probe/sim.hpp"
#include "tcpprobe/wire/linktype.hpp"
#include "tcpprobe/wire/tcp_options.hpp"
#include "wire/craft.hpp"

namespace tcpprobe::simnet {

using wire::Segment;

namespace {

/// The edge a command opens: forwards to the network, which outlives it.
class SimEdge final : public app::Edge, io::PacketSink, io::PacketSource, io::Clock {
public:
    explicit SimEdge(SimNet& net) : net_(net) {}
    io::PacketSink& sink() override { return *this; }
    io::PacketSource& source() override { return *this; }
    const io::Clock& clock() const override { return *this; }
    bool wait(Duration timeout) override { return net_.wait(timeout); }

    void send(const Segment& s) override { net_.send(s); }
    std::span<const int> fds() const override { return {}; }
    std::size_t drain(const std::function<void(const io::CapturedFrame&)>& on_frame) override { return net_.drain(on_frame); }
    Instant now() const override { return net_.now(); }

private:
    SimNet& net_;
};

wire::ByteVec encode(const Segment& s) {
    wire::craft::Tcp t;
    t.sport = s.src.port;
    t.dport = s.dst.port;
    t.seq = s.seq.raw();
    t.ack = s.ack.raw();
    t.flags = s.flags;
    t.window = s.window;
    t.urgent = s.urgent;
    auto opts = wire::encode_options(s.options);
    if (opts) t.options = *opts;
    t.payload = s.payload;
    wire::craft::Ip ip;
    ip.src = s.src.addr;
    ip.dst = s.dst.addr;
    ip.ttl = s.ip.ttl;
    ip.tos = s.ip.tos;
    ip.df = s.ip.df;
    ip.id = s.ip.id;
    return wire::craft::tcp_packet(t, ip);
}

}  // namespace

SimNet::SimNet(Duration one_way) : delay_(one_way) {}
SimNet::~SimNet() = default;

std::unique_ptr<app::Edge> SimNet::open(const app::GlobalOptions& g, const app::EdgeRequest& req) {
    auto e = std::make_unique<SimEdge>(*this);
    e->route = {local_addr, interface};
    for (std::size_t i = 0; i < req.flows; ++i)
        e->sports.push_back(req.sport && req.flows == 1 ? *req.sport : static_cast<std::uint16_t>(first_sport + i));
    e->rst_guard = req.rst_guard && !g.no_rst_guard;
    if (e->rst_guard) e->rst_guard_kind = g.rst_guard;
    // The capture the live edge would choose (app/edge.cpp): raw sockets, which do not
    // see the local kernel's own packets, unless -w or the kernel's RSTs matter.
    e->raw_capture = g.write_pcap.empty() && !(req.kernel_rsts_matter && !e->rst_guard);
    kernel_resets_ = !e->rst_guard;
    kernel_seen_ = !e->raw_capture;
    return e;
}

std::unique_ptr<app::Edge> SimNet::open_listen(const app::GlobalOptions& g, std::optional<wire::Ipv4Addr> local,
                                               std::uint16_t port) {
    auto e = std::make_unique<SimEdge>(*this);
    e->route = {local.value_or(local_addr), interface};
    e->rst_guard = true;
    e->rst_guard_kind = g.rst_guard;
    kernel_resets_ = false;
    listen_port_ = port;
    return e;
}

void SimNet::capture(Instant t, const Segment& seg) { ready_.push_back({t, encode(seg)}); }

void SimNet::capture_icmp(Instant t, const Segment& quoted) {
    ready_.push_back({t, wire::craft::icmp_port_unreachable(server_addr, encode(quoted))});
}

void SimNet::send(const Segment& seg) {
    capture(now_, seg);  // our own segment shows up in the capture at once
    in_flight_.push_back({now_ + delay_, order_++, seg, true});
}

void SimNet::from_peer(Instant t, const Segment& seg) { in_flight_.push_back({t + delay_, order_++, seg, false}); }

std::optional<Instant> SimNet::next_event() const {
    std::optional<Instant> next;
    auto consider = [&](std::optional<Instant> t) {
        if (t && (!next || *t < *next)) next = t;
    };
    for (const auto& f : in_flight_) consider(f.at);
    for (const auto& [k, c] : conns_)
        if (c.tcb && !c.tw) consider(c.tcb->next_deadline());
    for (const auto& cl : closes_) consider(cl.first);
    for (std::size_t i = 0; i < clients_.size(); ++i)
        if (listen_port_ && !(i < client_started_.size() && client_started_[i])) consider(start_time() + clients_[i].at);
    return next;
}

void SimNet::step(Instant t) {
    now_ = t;
    // Clients due now open their connections.
    client_started_.resize(clients_.size(), false);
    for (std::size_t i = 0; i < clients_.size(); ++i) {
        if (!listen_port_ || client_started_[i] || start_time() + clients_[i].at > t) continue;
        client_started_[i] = true;
        const ClientSpec& c = clients_[i];
        tcb::TcbConfig cfg = sim::server_tcb();
        cfg.tuple = {{client_addr, c.port}, {local_addr, *listen_port_}};
        cfg.iss = wire::Seq{0x10000000u + c.port};
        cfg.rto.initial_rto = c.rto;
        cfg.rto.max_retries = c.retries;
        Key k{*listen_port_, client_addr.value, c.port};
        Conn& conn = conns_[k];
        conn.client = true;
        conn.tcb.emplace(cfg);
        peer_actions(k, t, conn.tcb->open_active(t));
    }
    // Arrivals, in order of time and then of sending.
    std::stable_sort(in_flight_.begin(), in_flight_.end(),
                     [](const InFlight& a, const InFlight& b) { return std::tie(a.at, a.order) < std::tie(b.at, b.order); });
    while (!in_flight_.empty() && in_flight_.front().at <= t) {
        InFlight f = std::move(in_flight_.front());
        in_flight_.pop_front();
        if (f.to_peer) {
            deliver_to_peer(t, f.seg);
        } else {
            capture(t, f.seg);
            local_kernel(t, f.seg);
        }
    }
    // Applications that close late.
    for (std::size_t i = 0; i < closes_.size();) {
        if (closes_[i].first > t) {
            ++i;
            continue;
        }
        Key k = closes_[i].second;
        closes_.erase(closes_.begin() + static_cast<std::ptrdiff_t>(i));
        if (auto& c = conns_[k]; c.tcb && c.tcb->state() == tcb::State::CloseWait) peer_actions(k, t, c.tcb->close(t));
    }
    // Peer timers.
    for (auto& [k, c] : conns_)
        if (c.tcb && !c.tw && c.tcb->next_deadline() && *c.tcb->next_deadline() <= t) peer_actions(k, t, c.tcb->on_timer(t));
}

bool SimNet::wait(Duration timeout) {
    const Instant until = now_ + timeout;
    while (ready_.empty()) {
        auto next = next_event();
        if (!next || *next > until) {
            now_ = until;
            return false;
        }
        step(std::max(now_, *next));
    }
    return true;
}

std::size_t SimNet::drain(const std::function<void(const io::CapturedFrame&)>& on_frame) {
    std::size_t n = 0;
    while (!ready_.empty()) {
        Frame f = std::move(ready_.front());
        ready_.pop_front();
        current_ = std::move(f.bytes);
        on_frame({f.at, wire::dlt::raw, current_});
        ++n;
    }
    return n;
}

void SimNet::local_kernel(Instant t, const Segment& seg) {
    // Without the RST guard our host's kernel sees the peers' segments too. It has no
    // socket for these connections (the reserved source ports are bound, not connected),
    // so it answers as RFC 9293 3.10.7.1 says for a CLOSED connection: nothing to a RST,
    // <SEQ=SEG.ACK><CTL=RST> to a segment with ACK, else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    if (!kernel_resets_ || seg.dst.addr != local_addr || seg.has(wire::flag::rst)) return;
    Segment rst;
    rst.src = seg.dst;
    rst.dst = seg.src;
    rst.ip.df = true;  // Linux: IP ID 0, DF
    if (seg.has(wire::flag::ack)) {
        rst.seq = seg.ack;
        rst.flags = wire::flag::rst;
    } else {
        const std::uint32_t len = static_cast<std::uint32_t>(seg.payload.size()) + (seg.has(wire::flag::syn) ? 1u : 0u) +
                                  (seg.has(wire::flag::fin) ? 1u : 0u);
        rst.ack = seg.seq + len;
        rst.flags = wire::flag::rst | wire::flag::ack;
    }
    if (kernel_seen_) capture(t, rst);
    in_flight_.push_back({t + delay_, order_++, rst, true});
}

void SimNet::deliver_to_peer(Instant t, const Segment& seg) {
    const Key k{seg.src.port, seg.dst.addr.value, seg.dst.port};
    if (seg.dst.addr == client_addr) {
        auto it = conns_.find(k);
        if (it != conns_.end() && it->second.tcb) peer_actions(k, t, it->second.tcb->on_segment(t, seg));
        return;
    }
    auto spec_it = ports_.find(seg.dst.port);
    const PortSpec spec = spec_it == ports_.end() ? PortSpec{} : spec_it->second;
    switch (spec.peer) {
        case Peer::Silent:
            return;
        case Peer::Unreachable:
            if (seg.has(wire::flag::syn)) capture_icmp(t + delay_, seg);
            return;
        case Peer::Closed:
        case Peer::Listening:
            break;
    }
    Conn& c = conns_[k];
    if (c.tw) {
        for (const auto& a : c.tw->on_segment(t, seg)) from_peer(t, a);
        return;
    }
    const bool new_syn = seg.has(wire::flag::syn) && !seg.has_any(wire::flag::ack | wire::flag::rst);
    if (!c.tcb || (new_syn && c.tcb->state() == tcb::State::Closed && spec.peer == Peer::Listening)) {
        tcb::TcbConfig cfg = sim::server_tcb();
        cfg.tuple = {seg.dst, seg.src};
        cfg.iss = wire::Seq{0xFFFFFF00u + seg.src.port};
        cfg.rto.initial_rto = spec.rto;
        cfg.rto.max_retries = spec.retries;
        c = Conn{};
        c.spec = spec;
        c.tcb.emplace(cfg);
        if (spec.peer == Peer::Listening && new_syn) peer_actions(k, t, c.tcb->open_passive(t));
    }
    peer_actions(k, t, c.tcb->on_segment(t, seg));
}

void SimNet::peer_actions(const Key& k, Instant t, const tcb::Actions& actions) {
    bool got_data = false, got_fin = false;
    for (const auto& a : actions) {
        if (const auto* s = std::get_if<tcb::SendSegment>(&a)) {
            // The peer's stack counts IP IDs per connection, as Linux does per socket.
            Conn& sender = conns_[k];
            if (!sender.ip_ids) sender.ip_ids.emplace(sender.tcb ? sender.tcb->config().ip.id : std::uint16_t{0});
            Segment seg = s->segment;
            from_peer(t, sender.ip_ids->stamp(seg));
        }
        else if (std::holds_alternative<tcb::DataReceived>(a)) got_data = true;
        else if (const auto* st = std::get_if<tcb::StateChanged>(&a); st && st->to == tcb::State::CloseWait) got_fin = true;
    }
    Conn& c = conns_[k];
    if (c.client || !c.tcb) return;
    switch (c.spec.app) {
        case App::Hold:
            break;
        case App::Http:
        case App::HttpHold:
            if (got_data && !c.answered && c.tcb->state() == tcb::State::Established) {
                c.answered = true;
                peer_actions(k, t, c.tcb->send(t, wire::ByteVec(100, 'r')));
                if (c.spec.app == App::Http) peer_actions(k, t, c.tcb->close(t));
            }
            break;
        case App::CloseOnFin:
            if (got_fin) {
                if (c.spec.close_delay == Duration::zero()) {
                    peer_actions(k, t, c.tcb->close(t));
                } else {
                    closes_.push_back({t + c.spec.close_delay, k});
                }
            }
            break;
    }
    if (c.spec.time_wait && !c.tw && c.tcb->state() == tcb::State::TimeWait) c.tw.emplace(sim::TwModel::from(*c.tcb, t, *c.spec.time_wait));
}

}  // namespace tcpprobe::simnet
