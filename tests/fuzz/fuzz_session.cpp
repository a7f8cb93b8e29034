// libFuzzer target for the TCB and every scenario, driven through a Session the way the
// runner drives them, with arbitrary input where the network and the user would give it:
// the peer's segments (raw TCP header bytes, decoded by the wire layer), time steps,
// Ctrl-C, ICMP errors quoting the flow, and segments of our own kernel (or forged ones)
// captured in the outgoing direction.
//
// Input: byte 0 picks the scenario (the bare TCB, handshake variants, the five close
// modes, retransmit synack/fin, time-wait reuse/rst, listen with each answer, keepalive
// watch/send, fin-wait-2, idle with each probe; the last two run several connections,
// one per slot of their measurement); the rest is a list of operations. The target aborts (a real finding) when
//   - SND.UNA is after SND.NXT in the scenario's TCB,
//   - the bare TCB hands up more bytes than the peer's segments carried,
//   - a session is not done after the input ends and simulated time runs on: every
//     scenario must end by itself (--max-wait and its own limits), within 2 hours.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>

#include "tcpprobe/probe/close.hpp"
#include "tcpprobe/probe/handshake.hpp"
#include "tcpprobe/probe/keepalive.hpp"
#include "tcpprobe/probe/lifetime_flow.hpp"
#include "tcpprobe/probe/listen.hpp"
#include "tcpprobe/probe/retransmit.hpp"
#include "tcpprobe/probe/scenario.hpp"
#include "tcpprobe/probe/time_wait.hpp"
#include "tcpprobe/tcb/tcb.hpp"
#include "tcpprobe/wire/bytes.hpp"
#include "tcpprobe/wire/packet.hpp"

namespace {

using namespace tcpprobe;
using namespace std::chrono_literals;

const wire::Endpoint us{{0xC6120001u}, 40000};
const wire::Endpoint peer{{0xC6120002u}, 80};

struct Input {
    const std::uint8_t* p;
    std::size_t n;
    bool empty() const { return n == 0; }
    std::uint8_t u8() {
        if (!n) return 0;
        --n;
        return *p++;
    }
    std::uint16_t u16() { return static_cast<std::uint16_t>(u8() << 8 | u8()); }
    std::uint32_t u32() { return std::uint32_t{u16()} << 16 | u16(); }
};

void check(bool ok) {
    if (!ok) std::abort();
}

tcb::TcbConfig tcb_config(std::uint16_t local_port = us.port) {
    tcb::TcbConfig c;
    c.tuple = {{us.addr, local_port}, peer};
    c.iss = wire::Seq{1000};
    c.syn_options = tcb::default_syn_options(1460, 7, true, true);
    c.time_wait = 2s;
    c.rto.max_retries = 3;
    return c;
}

probe::ConnectConfig connect_config(std::uint16_t local_port = us.port) {
    probe::ConnectConfig c;
    c.tcb = tcb_config(local_port);
    return c;
}

/// Scenarios byte 0 selects; one more value is the bare TCB.
constexpr unsigned scenario_count = 20;
constexpr bool is_listen(unsigned sel) { return sel >= 12 && sel <= 14; }

/// Adds the scenario picked by `sel` (below scenario_count) to `session`; returns its
/// connections (for the TCB invariants), one per local port from us.port on.
std::vector<const probe::Connection*> add_flows(unsigned sel, probe::Session& session, Instant now) {
    const wire::ByteVec request{'G', 'E', 'T', '\r', '\n'};
    std::unique_ptr<probe::Flow> f;
    const probe::Connection* conn = nullptr;
    switch (sel) {
        case 0: case 1: case 2: {
            probe::HandshakeConfig c;
            c.connect = connect_config();
            c.half_open = sel == 1;
            c.stale_syn = sel == 2;
            c.stale_isn = wire::Seq{5000};
            c.linger = 3s;
            {
                auto p = std::make_unique<probe::HandshakeFlow>(c);
                conn = &p->connection();
                f = std::move(p);
            }
            break;
        }
        case 3: case 4: case 5: case 6: case 7: {
            probe::CloseConfig c;
            c.connect = connect_config();
            c.mode = static_cast<probe::CloseMode>(sel - 3);
            c.request = request;
            {
                auto p = std::make_unique<probe::CloseFlow>(c);
                conn = &p->connection();
                f = std::move(p);
            }
            break;
        }
        case 8: case 9: {
            probe::RetransmitConfig c;
            c.connect = connect_config();
            c.segment = sel == 8 ? probe::RetxSegment::SynAck : probe::RetxSegment::Fin;
            c.peer_closes_first = true;
            c.request = request;
            c.max_wait = 30s;
            {
                auto p = std::make_unique<probe::RetransmitFlow>(c);
                conn = &p->connection();
                f = std::move(p);
            }
            break;
        }
        case 10: case 11: {
            probe::TimeWaitConfig c;
            c.connect = connect_config();
            c.test = sel == 10 ? probe::TwTest::Reuse : probe::TwTest::Rst;
            c.request = request;
            {
                auto p = std::make_unique<probe::TimeWaitFlow>(c);
                conn = &p->connection();
                f = std::move(p);
            }
            break;
        }
        case 12: case 13: case 14: {
            probe::ListenConfig c;
            c.connect = connect_config();
            c.answer = static_cast<probe::ListenAnswer>(sel - 12);
            {
                auto p = std::make_unique<probe::ListenFlow>(c);
                conn = &p->connection();
                f = std::move(p);
            }
            break;
        }
        case 15: case 16: {
            probe::KeepaliveConfig c;
            c.connect = connect_config();
            c.request = request;
            c.mode = sel == 15 ? probe::KeepaliveMode::Watch : probe::KeepaliveMode::Send;
            c.answer = 1;
            c.max_wait = 10min;  // keepalive_cmd's --max-wait, shorter than the default
            c.count = 3;
            {
                auto p = std::make_unique<probe::KeepaliveFlow>(c);
                conn = &p->connection();
                f = std::move(p);
            }
            break;
        }
        default: {  // fin-wait-2, idle (ack, data): one connection per slot, as lifetime_cmd builds them
            const auto subject = sel == 17 ? probe::LifetimeSubject::FinWait2 : probe::LifetimeSubject::Idle;
            probe::LifetimeConfig lc;
            lc.max = 8s;
            lc.resolution = 1s;
            auto run = std::make_shared<probe::LifetimeRun>(subject, lc);
            std::vector<const probe::Connection*> conns;
            std::uint16_t port = us.port;
            for (auto [round, count] : {std::pair{probe::Round::Coarse, run->engine().slots(probe::Round::Coarse)},
                                        std::pair{probe::Round::Fine, probe::LifetimeEngine::fine_capacity(lc)}})
                for (unsigned slot = 0; slot < count; ++slot) {
                    probe::LifetimeFlowConfig c;
                    c.connect = connect_config(port++);
                    c.request = request;
                    c.idle_probe = sel == 19 ? probe::IdleProbe::Data : probe::IdleProbe::Ack;
                    c.max_wait = 5s;
                    c.run = run;
                    c.round = round;
                    c.slot = slot;
                    auto lf = std::make_unique<probe::LifetimeFlow>(std::move(c));
                    conns.push_back(&lf->connection());
                    session.add(now, std::move(lf));
                }
            return conns;
        }
    }
    session.add(now, std::move(f));
    return {conn};
}

/// A TCP segment from the peer as raw bytes (header fields, options and payload from the
/// input; sequence numbers near what we sent last), decoded by the wire layer like a capture.
std::optional<wire::DecodedPacket> peer_packet(Input& in, const wire::Segment* last_ours, std::uint16_t local_port = us.port) {
    const std::uint8_t opt_len = static_cast<std::uint8_t>((in.u8() % 11) * 4);
    const std::uint8_t payload_len = in.u8() % 48;
    const std::uint8_t mode = in.u8();
    std::uint32_t seq = in.u32(), ack = in.u32();
    if (last_ours && mode % 4 != 0) {  // mostly near the numbers in play
        seq = last_ours->ack.raw() + static_cast<std::uint32_t>(static_cast<std::int8_t>(seq & 0xff));
        ack = last_ours->seq.raw() + static_cast<std::uint32_t>(last_ours->payload.size()) +
              static_cast<std::uint32_t>(static_cast<std::int8_t>(ack & 0xff));
    }
    wire::ByteVec b(20 + 20 + opt_len + payload_len, 0);
    b[0] = 0x45;
    wire::store_be16(b, 2, static_cast<std::uint16_t>(b.size()));
    b[8] = 64;
    b[9] = 6;
    wire::store_be32(b, 12, peer.addr.value);
    wire::store_be32(b, 16, us.addr.value);
    wire::store_be16(b, 20, mode & 0x80 ? in.u16() : peer.port);
    wire::store_be16(b, 22, local_port);
    wire::store_be32(b, 24, seq);
    wire::store_be32(b, 28, ack);
    const std::uint16_t flags = in.u16() & 0x0fff;
    wire::store_be16(b, 32, static_cast<std::uint16_t>(((5 + opt_len / 4) << 12) | flags));
    wire::store_be16(b, 34, in.u16());
    for (std::size_t i = 40; i < b.size(); ++i) b[i] = in.u8();
    auto d = wire::decode_ipv4_packet(b);
    if (!d) return std::nullopt;
    return *d;
}

wire::DecodedPacket outgoing(const wire::Segment& s) {
    wire::DecodedPacket p;
    p.src = s.src.addr;
    p.dst = s.dst.addr;
    p.body = s;
    return p;
}

void fuzz_tcb(Input& in) {
    tcb::Tcb t(tcb_config());
    Instant now = instant_from_ns(1'000'000'000);
    std::uint64_t fed = 0, received = 0;
    std::optional<wire::Segment> last;
    auto take = [&](const tcb::Actions& actions) {
        for (const auto& a : actions) {
            if (const auto* d = std::get_if<tcb::DataReceived>(&a)) received += d->data.size();
            if (const auto* s = std::get_if<tcb::SendSegment>(&a)) last = s->segment;
        }
        check(!wire::after(t.snd.una, t.snd.nxt));
        check(received <= fed);
    };
    take(in.u8() & 1 ? t.open_active(now) : t.open_passive(now));
    for (int steps = 0; !in.empty() && steps < 4096; ++steps) {
        switch (in.u8() % 6) {
            case 0: case 1: {
                auto p = peer_packet(in, last ? &*last : nullptr);
                if (!p || !p->segment()) break;
                fed += p->segment()->payload.size();
                take(t.on_segment(now, *p->segment()));
                break;
            }
            case 2:
                now += std::chrono::microseconds{std::uint64_t{in.u16()} * 100};
                take(t.on_timer(now));
                break;
            case 3:
                take(t.send(now, wire::ByteVec(in.u8() % 200, 'x')));
                break;
            case 4:
                take(t.close(now));
                break;
            default:
                if (in.u8() % 8 == 0) take(t.abort(now));
                break;
        }
    }
}

void fuzz_scenario(unsigned sel, Input& in) {
    probe::Session session;
    Instant now = instant_from_ns(1'000'000'000);
    const std::vector<const probe::Connection*> conns = add_flows(sel, session, now);
    // listen waits for clients until --max-wait: the command bounds its session (set_end),
    // the flow does not; every other scenario must end by itself.
    if (is_listen(sel)) session.set_end(now + 60s);
    probe::Outbox out;
    std::vector<wire::Segment> unsent_capture;  // ours, not yet seen by the "capture"
    std::map<std::uint16_t, wire::Segment> last;  // our last segment, per local port
    auto last_of = [&](std::uint16_t port) -> const wire::Segment* {
        auto it = last.find(port);
        return it == last.end() ? nullptr : &it->second;
    };
    auto settle = [&] {
        for (auto& s : out.send) {
            last[s.src.port] = s;
            unsent_capture.push_back(std::move(s));
        }
        out.send.clear();
        out.events.clear();
        for (const auto* c : conns) check(!wire::after(c->tcb().snd.una, c->tcb().snd.nxt));
    };
    // Which connection the next peer segment or forged one belongs to.
    auto pick_port = [&] { return static_cast<std::uint16_t>(us.port + (conns.size() > 1 ? in.u8() % conns.size() : 0)); };
    session.on_timer(now, out);
    settle();
    for (int steps = 0; !in.empty() && steps < 4096 && !session.done(); ++steps) {
        switch (in.u8() % 8) {
            case 0: case 1: case 2: {
                const std::uint16_t port = pick_port();
                if (auto p = peer_packet(in, last_of(port), port)) session.on_packet(now, *p, out);
                break;
            }
            case 3: {  // our segments reach the capture (all, or all but one: lost before it)
                const bool drop_one = in.u8() % 4 == 0;
                for (std::size_t i = 0; i < unsent_capture.size(); ++i)
                    if (!(drop_one && i == 0)) session.on_packet(now, outgoing(unsent_capture[i]), out);
                unsent_capture.clear();
                break;
            }
            case 4: {
                now += std::chrono::microseconds{std::uint64_t{in.u16()} * 200};
                session.on_timer(now, out);
                break;
            }
            case 5: {  // an ICMP error quoting the flow
                wire::DecodedPacket p;
                p.src = wire::Ipv4Addr{in.u32()};
                p.dst = us.addr;
                wire::IcmpError e;
                e.reporter = p.src;
                e.type = static_cast<std::uint8_t>(in.u8() % 13);
                e.code = static_cast<std::uint8_t>(in.u8() % 16);
                e.next_hop_mtu = in.u16();
                e.quoted_src = {us.addr, pick_port()};
                e.quoted_dst = peer;
                e.quoted_seq = wire::Seq{in.u32()};
                p.body = e;
                session.on_packet(now, p, out);
                break;
            }
            case 6: {  // a segment of our own kernel, or a forged one, in the outgoing direction
                wire::Segment s;
                s.src = {us.addr, pick_port()};
                s.dst = peer;
                s.flags = in.u16() & 0x0fff;
                s.seq = wire::Seq{in.u32()};
                s.ack = wire::Seq{in.u32()};
                const wire::Segment* l = last_of(s.src.port);
                if (l && in.u8() % 2) {
                    s.seq = l->seq;
                    s.ack = l->ack;
                }
                session.on_packet(now, outgoing(s), out);
                break;
            }
            default:
                if (in.u8() % 16 == 0) session.interrupt(now, out);  // Ctrl-C
                break;
        }
        settle();
    }
    // The input is over: the capture sees what we sent, then time runs on. Every scenario
    // must end by itself.
    const Instant limit = now + 2h;
    for (int rounds = 0; !session.done() && rounds < 100000; ++rounds) {
        for (const auto& s : unsent_capture) session.on_packet(now, outgoing(s), out);
        unsent_capture.clear();
        auto d = session.next_deadline();
        if (!d || *d > limit) break;
        if (*d > now) now = *d;
        session.on_timer(now, out);
        settle();
    }
    check(session.done());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Input in{data, size};
    const unsigned sel = in.u8() % (scenario_count + 1);
    if (sel == scenario_count) fuzz_tcb(in);
    else fuzz_scenario(sel, in);
    return 0;
}
