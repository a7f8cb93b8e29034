// fin-wait-2, idle and keepalive against simulated peers. The server side of every
// connection is a real tcb::Tcb (it answers the request and closes first, or stays
// established); on top of it small models play what the scenario measures:
//   * a Linux FIN-WAIT-2 after tcp_timewait_state_process() in its FIN_WAIT2 substate:
//     our FIN in window is ACKed (the socket moves to TIME-WAIT); once its
//     tcp_fin_timeout is over the port answers a segment with ACK by a RST (the
//     listener), or, as a variant, nothing; with shutdown(SHUT_WR) it never ends;
//   * a stateful firewall between us and the server that forgets a connection idle for
//     `timeout` and then drops its segments, or answers them with a RST of its own
//     (TTL 255; the server's segments carry 64);
//   * a server with keepalive on (idle, interval, count, then a RST).
#include <doctest/doctest.h>

#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "sim.hpp"
#include "tcpprobe/probe/keepalive.hpp"
#include "tcpprobe/probe/lifetime_flow.hpp"
#include "tw_model.hpp"

using namespace tcpprobe;
using namespace tcpprobe::sim;
using namespace tcpprobe::wire;
using probe::Liveness;
using probe::Round;
using tcb::State;

namespace {

const ByteVec get_request{'G', 'E', 'T', ' ', '/', '\r', '\n', '\r', '\n'};

enum class Fw2End { Rst, Silent, Never };

struct NetConfig {
    probe::LifetimeSubject subject = probe::LifetimeSubject::FinWait2;
    Duration fin_timeout = 7s;
    Fw2End fw2_end = Fw2End::Rst;
    bool data_after_fin = false;
    // idle: the firewall
    Duration fw_timeout = 20s;
    bool fw_reset = false;
};

/// Many connections of one run against one simulated server (TwNet's shape).
class LtNet {
public:
    explicit LtNet(NetConfig c) : c_(c), sim_(flow_, Sim::PeerKind::Listening) {
        sim_.set_peer_hook([this](Sim&, Instant t, const Segment& seg) { return to_server(t, seg); });
    }
    probe::Session& session() { return session_; }
    Instant start() const { return sim_.start(); }
    Instant now() const { return sim_.now(); }
    void run(Duration limit) { sim_.run(limit); }
    std::vector<std::string> lines(std::uint16_t port) {
        std::vector<std::string> out;
        for (const auto& e : sim_.events())
            if (const auto* s = std::get_if<probe::SegmentEvent>(&e.body); s && e.flow == port) out.push_back(s->line);
        return out;
    }
    std::vector<std::string> notes() {
        std::vector<std::string> out;
        for (const auto& e : sim_.events())
            if (const auto* n = std::get_if<probe::NoteEvent>(&e.body)) out.push_back(n->text);
        return out;
    }
    /// When the server's socket of `port` entered FIN-WAIT-2.
    std::optional<Instant> fw2_start(std::uint16_t port) const {
        auto it = servers_.find(port);
        return it == servers_.end() ? std::nullopt : it->second.fw2_start;
    }
    unsigned arrivals_after_state(std::uint16_t port) const {
        auto it = servers_.find(port);
        return it == servers_.end() ? 0 : it->second.probes;
    }

private:
    struct Server {
        std::optional<tcb::Tcb> tcb;
        bool answered = false;
        std::optional<Instant> fw2_start;
        bool time_wait = false;
        Instant last_seen{};  ///< the firewall's view: last segment of the connection
        unsigned probes = 0;
    };

    Segment reply(Server& s, Instant t, std::uint16_t flags, Seq seq, Seq ack) {
        return s.tcb->make_segment(t, flags, seq, ack);
    }

    std::optional<std::vector<Segment>> to_server(Instant t, const Segment& seg) {
        const std::uint16_t port = seg.src.port;
        Server& s = servers_[port];
        if (c_.subject == probe::LifetimeSubject::Idle && s.tcb) {
            // The firewall: a connection idle longer than its timeout is forgotten.
            if (t - s.last_seen >= c_.fw_timeout) {
                ++s.probes;
                if (!c_.fw_reset || seg.has(flag::rst)) return std::vector<Segment>{};
                Segment r = reply(s, t, flag::rst, seg.ack, Seq{0});
                r.options.clear();
                r.ip.ttl = 255;
                r.ip.id = 0;
                return std::vector<Segment>{r};
            }
            s.last_seen = t;
        }
        if (s.fw2_start) {
            ++s.probes;
            const bool over = c_.fw2_end != Fw2End::Never && t - *s.fw2_start >= c_.fin_timeout && !s.time_wait;
            if (over) {
                if (c_.fw2_end == Fw2End::Silent || !seg.has(flag::ack) || seg.has(flag::rst)) return std::vector<Segment>{};
                return std::vector<Segment>{reply(s, t, flag::rst, seg.ack, Seq{0})};
            }
            if (seg.has(flag::rst)) return std::vector<Segment>{};
            if (seg.has(flag::fin) && seg.seq == s.tcb->rcv.nxt) s.time_wait = true;
            if (s.time_wait) return std::vector<Segment>{reply(s, t, flag::ack, s.tcb->snd.nxt, seg.seq + 1)};
            return std::vector<Segment>{};
        }
        if (!s.tcb) {
            if (!(seg.has(flag::syn) && !seg.has_any(flag::ack | flag::rst))) return std::vector<Segment>{};
            tcb::TcbConfig cfg = server_tcb();
            cfg.tuple = {seg.dst, seg.src};
            cfg.iss = Seq{0xFFFFFF00u + port};
            s.tcb.emplace(cfg);
            s.last_seen = t;
            actions(port, t, s.tcb->open_passive(t));
        }
        actions(port, t, s.tcb->on_segment(t, seg));
        return std::vector<Segment>{};
    }

    void actions(std::uint16_t port, Instant t, const tcb::Actions& a) {
        Server& s = servers_[port];
        sim_.peer_actions(t, a);
        const bool got_data = std::any_of(a.begin(), a.end(), [](const tcb::Action& x) { return std::holds_alternative<tcb::DataReceived>(x); });
        if (c_.subject == probe::LifetimeSubject::FinWait2 && got_data && !s.answered && s.tcb->state() == State::Established) {
            s.answered = true;
            actions(port, t, s.tcb->send(t, ByteVec(100, 'r')));
            actions(port, t, s.tcb->close(t));
            if (c_.data_after_fin) {
                // A broken stack: more data after its FIN.
                Segment d = s.tcb->make_segment(t, flag::ack | flag::psh, s.tcb->snd.nxt, s.tcb->rcv.nxt, ByteVec(10, 'x'));
                sim_.peer_actions(t, {tcb::SendSegment{d, tcb::SendReason::Data}});
            }
        }
        if (!s.fw2_start && s.tcb->state() == State::FinWait2) s.fw2_start = t;
    }

    NetConfig c_;
    probe::Session session_;
    SessionFlow flow_{session_};
    Sim sim_;
    std::map<std::uint16_t, Server> servers_;
};

struct LtRun {
    explicit LtRun(NetConfig c, probe::LifetimeConfig lc = {}) : net(c) {
        run = std::make_shared<probe::LifetimeRun>(c.subject, lc);
        std::uint16_t port = 41000;
        for (auto [round, n] : {std::pair{Round::Coarse, run->engine().slots(Round::Coarse)},
                                std::pair{Round::Fine, probe::LifetimeEngine::fine_capacity(lc)}})
            for (unsigned slot = 0; slot < n; ++slot) {
                probe::LifetimeFlowConfig fc;
                fc.connect.tcb = client_tcb();
                fc.connect.tcb.tuple.local.port = port;
                fc.connect.tcb.iss = Seq{1000u + 7919u * port};
                fc.request = c.subject == probe::LifetimeSubject::FinWait2 ? get_request : ByteVec{};
                fc.run = run;
                fc.round = round;
                fc.slot = slot;
                auto f = std::make_unique<probe::LifetimeFlow>(std::move(fc));
                flows[port] = f.get();
                net.session().add(net.start(), std::move(f));
                ++port;
            }
    }
    std::string trace(std::uint16_t port) { return fmt::format("{}", fmt::join(net.lines(port), "\n")); }
    LtNet net;
    std::shared_ptr<probe::LifetimeRun> run;
    std::map<std::uint16_t, const probe::LifetimeFlow*> flows;
};

probe::LifetimeConfig fin_wait_2_config(Duration max = 150s) {
    probe::LifetimeConfig lc;
    lc.max = max;
    lc.resolution = 500ms;
    return lc;
}

}  // namespace

// --- Linux timers ------------------------------------------------------------------------

TEST_CASE("linux timer slack: one wheel granularity at HZ=250 (32 ms at 1 s, 256 ms at 7 s, 2.048 s at 60 s)") {
    CHECK(probe::linux_timer_slack(100ms) == 4ms);
    CHECK(probe::linux_timer_slack(1s) == 32ms);
    CHECK(probe::linux_timer_slack(3s) == 256ms);
    CHECK(probe::linux_timer_slack(7s) == 256ms);
    CHECK(probe::linux_timer_slack(60s) == 2048ms);
    CHECK(probe::linux_timer_slack(7200s) == 131072ms);
}

TEST_CASE("inferring a Linux setting in seconds: one fits, or none is inferred") {
    CHECK(probe::infer_linux_seconds(3012ms, 5ms) == std::optional<unsigned>{3});
    CHECK(probe::infer_linux_seconds(1000ms + 900us, 5ms) == std::optional<unsigned>{1});
    // Two hours sit on a wheel level 131 s coarse: 7069 to 7200 s all fit; nothing is inferred.
    CHECK_FALSE(probe::infer_linux_seconds(7200s + 100ms, 5ms));
    CHECK_FALSE(probe::infer_linux_seconds(75s + 300ms, 5ms));  // 74 s + 2.048 s fits as well as 75 s
    CHECK_FALSE(probe::infer_linux_seconds(3500ms, 5ms));  // between 3 s + 256 ms and 4 s: no Linux timer
    // A bracket: (6.8, 7.2] meets only 7's window [7, 7.256]; (7.2, 7.6] too.
    CHECK(probe::infer_linux_seconds_in(6800ms, 7200ms, 5ms) == std::optional<unsigned>{7});
    CHECK(probe::infer_linux_seconds_in(7200ms, 7600ms, 5ms) == std::optional<unsigned>{7});
    // (6, 8] meets 6, 7 and 8: not inferred; 60 s's 2 s slack makes (60.3, 61] ambiguous.
    CHECK_FALSE(probe::infer_linux_seconds_in(6s, 8s, 5ms));
    CHECK_FALSE(probe::infer_linux_seconds_in(60300ms, 61s, 5ms));
}

// --- who sent a RST ------------------------------------------------------------------------

TEST_CASE("attribute_rst: another TTL is a middlebox; the peer's TTL with its timestamps or IP IDs is the peer") {
    probe::PeerIpTrace peer;
    Segment p;
    p.flags = flag::ack;
    p.ip.ttl = 64;
    p.ip.id = 1934;
    p.options = {opt::Nop{}, opt::Nop{}, opt::Timestamps{500, 9}};
    peer.observe(p);

    Segment rst;
    rst.flags = flag::rst;
    rst.ip.ttl = 255;
    rst.ip.id = 0;
    auto o = probe::attribute_rst(rst, peer);
    CHECK(o.from == probe::RstFrom::Middlebox);
    CHECK(o.why == "its TTL is 255, the peer's segments arrived with 64; it lacks the connection's timestamps");

    rst.ip.ttl = 64;
    o = probe::attribute_rst(rst, peer);
    CHECK(o.from == probe::RstFrom::Unknown);  // Linux's RST for a socket it no longer has looks like this
    CHECK(o.ts_match == std::optional<bool>{false});
    CHECK_FALSE(o.id_match);

    rst.ip.id = 1935;
    CHECK(probe::attribute_rst(rst, peer).from == probe::RstFrom::Peer);
    rst.ip.id = 0;
    rst.options = {opt::Nop{}, opt::Nop{}, opt::Timestamps{620, 9}};
    o = probe::attribute_rst(rst, peer);
    CHECK(o.from == probe::RstFrom::Peer);
    CHECK(o.why == "its TTL 64 is the peer's, its TSval follows the peer's");

    CHECK(probe::attribute_rst(rst, probe::PeerIpTrace{}).from == probe::RstFrom::Unknown);
}

// --- fin-wait-2 ------------------------------------------------------------------------

TEST_CASE("fin-wait-2, Linux tcp_fin_timeout 7: our FIN is ACKed while it lasts, RST after; bracketed within 0.5 s, inferred 7") {
    LtRun r({}, fin_wait_2_config());
    r.net.run(100s);
    const auto b = r.run->engine().bracket();
    INFO(r.trace(41000));
    INFO(fmt::format("{}", fmt::join(r.net.notes(), "\n")));
    CHECK(r.run->done());
    REQUIRE(b.closed());
    CHECK(b.end_confirmed());
    CHECK(*b.alive < 7s);
    CHECK(*b.upper() >= 7s);
    CHECK(*b.width() <= 500ms);
    CHECK(probe::infer_linux_seconds_in(*b.alive, *b.upper(), 5ms) == std::optional<unsigned>{7});
    CHECK(r.run->failures().empty());
    CHECK(r.run->anomalies().empty());
    // The first connection: request, the server's answer and FIN, our ACK (FIN-WAIT-2
    // begins), 2 s later our FIN, ACKed: the peer moved to TIME-WAIT.
    const auto lines = r.net.lines(41000);
    REQUIRE(lines.size() == 11);
    CHECK(lines[3] == "> P. 1:10(9) ack 1 win 64240 <nop,nop,TS val 5000 ecr 90000>");
    CHECK(lines[7] == "< F. 101:101(0) ack 10 win 127 <nop,nop,TS val 90000 ecr 5000>");
    CHECK(lines[8] == "> . 10:10(0) ack 102 win 64240 <nop,nop,TS val 5000 ecr 90000>");
    CHECK(lines[9] == "> F. 10:10(0) ack 102 win 64240 <nop,nop,TS val 7000 ecr 90000>");
    CHECK(lines[10] == "< . 102:102(0) ack 11 win 127 <nop,nop,TS val 92000 ecr 5000>");
    // Every connection got exactly one probe: one FIN (no loss here).
    for (const auto& m : r.run->members()) {
        CHECK(m.segments == 1);
        CHECK(r.net.arrivals_after_state(m.port) == 1);
        CHECK(m.result == (m.offset < 7s ? Liveness::Alive : Liveness::Gone));
        REQUIRE(r.net.fw2_start(m.port));
    }
    // The first gone connection: its RST came from the peer's port (its TTL).
    const auto* g = r.run->first_gone();
    REQUIRE(g);
    REQUIRE(g->rst);
    CHECK(g->rst->ttl == 64);
    // Run time: the coarse round ends with its RST at 8 s, the fine one a fine step above 7 s.
    CHECK(r.net.now() - r.net.start() <= 7s * 5 / 2);
}

TEST_CASE("fin-wait-2: a peer that shut down with shutdown(SHUT_WR) never ends FIN-WAIT-2: alive up to max, no bound") {
    NetConfig c;
    c.fw2_end = Fw2End::Never;
    LtRun r(c, fin_wait_2_config(10s));
    r.net.run(60s);
    const auto b = r.run->engine().bracket();
    CHECK(r.run->done());
    CHECK_FALSE(b.upper());
    REQUIRE(b.alive);
    CHECK(*b.alive >= 10s);
    CHECK(r.run->members().size() == r.run->engine().slots(Round::Coarse));
    CHECK(r.net.now() - r.net.start() < 13s);
}

TEST_CASE("fin-wait-2: a stack that drops the socket silently: the end is a silence, not a RST, and infers nothing") {
    NetConfig c;
    c.fw2_end = Fw2End::Silent;
    LtRun r(c, fin_wait_2_config());
    r.net.run(100s);
    const auto b = r.run->engine().bracket();
    REQUIRE(b.closed());
    CHECK_FALSE(b.end_confirmed());
    CHECK(*b.alive < 7s);
    CHECK(*b.upper() >= 7s);
    // Each silent connection sent its FIN three times (two copies after silence).
    for (const auto& m : r.run->members())
        if (m.result == Liveness::Silent) CHECK(m.segments == 3);
}

TEST_CASE("fin-wait-2: data after the peer's FIN is an anomaly") {
    NetConfig c;
    c.data_after_fin = true;
    LtRun r(c, fin_wait_2_config(4s));
    r.net.run(60s);
    REQUIRE(r.run->anomalies().size() == 1);
    CHECK(r.run->anomalies()[0] == "the peer sent 10 bytes after its FIN");
}

// --- idle ---------------------------------------------------------------------------------

TEST_CASE("idle: a firewall that forgets after 20 s and drops: bracketed within 3 s by silences, every connection reset at the end") {
    NetConfig c;
    c.subject = probe::LifetimeSubject::Idle;
    LtRun r(c);
    r.net.run(120s);
    const auto b = r.run->engine().bracket();
    INFO(r.trace(41000));
    CHECK(r.run->done());
    REQUIRE(b.closed());
    CHECK_FALSE(b.end_confirmed());
    CHECK(*b.alive < 20s);
    CHECK(*b.upper() >= 20s);
    CHECK(*b.width() <= 3s);
    const auto lines = r.net.lines(41000);
    // The keepalive-style probe at SND.NXT-1, answered with an ACK of SND.NXT; then our RST.
    REQUIRE(lines.size() == 6);
    CHECK(lines[3] == "> . 0:0(0) ack 1 win 64240 <nop,nop,TS val 7000 ecr 90000>");
    CHECK(lines[4] == "< . 1:1(0) ack 1 win 127 <nop,nop,TS val 92000 ecr 5000>");
    CHECK(lines[5] == "> R 1:1(0) win 0");
    CHECK(r.net.now() - r.net.start() <= 20s * 5 / 2);
}

TEST_CASE("idle: a firewall that forgets and resets: the RST is the middlebox's (TTL 255, the server's 64)") {
    NetConfig c;
    c.subject = probe::LifetimeSubject::Idle;
    c.fw_reset = true;
    LtRun r(c);
    r.net.run(120s);
    const auto b = r.run->engine().bracket();
    REQUIRE(b.closed());
    CHECK(b.end_confirmed());
    CHECK(*b.alive < 20s);
    CHECK(*b.upper() >= 20s);
    const auto* g = r.run->first_gone();
    REQUIRE(g);
    REQUIRE(g->rst);
    CHECK(g->rst->from == probe::RstFrom::Middlebox);
    CHECK(g->rst->ttl == 255);
    CHECK(g->rst->peer_ttl == std::optional<std::uint8_t>{64});
    CHECK(r.net.now() - r.net.start() <= 20s * 5 / 2);
}

// --- keepalive ----------------------------------------------------------------------------

namespace {

/// A server with keepalive on: after `idle` without a segment from us it probes every
/// `intvl`; after `count` unanswered probes, one interval later, a RST. Our ACK of a
/// probe restarts the idle timer.
struct KaServer {
    Duration idle = 3s, intvl = 1s;
    unsigned count = 4;
    bool rst_at_end = true;
    unsigned out = 0;
    std::optional<Instant> last_heard;
    std::uint64_t generation = 0;

    void arm(Sim& s, Instant from, Duration after) {
        const std::uint64_t g = ++generation;
        s.at(from + after, [this, g](Sim& sim, Instant t) {
            if (g != generation || sim.peer().state() != State::Established) return;
            if (out >= count) {
                if (rst_at_end)
                    sim.peer_actions(t, {tcb::SendSegment{sim.peer().make_segment(t, flag::rst | flag::ack, sim.peer().snd.nxt,
                                                                                  sim.peer().rcv.nxt), tcb::SendReason::Rst}});
                return;
            }
            ++out;
            Segment k = sim.peer().make_segment(t, flag::ack, sim.peer().snd.nxt - 1, sim.peer().rcv.nxt);
            sim.peer_actions(t, {tcb::SendSegment{k, tcb::SendReason::Ack}});
            arm(sim, t, intvl);
        });
    }
};

}  // namespace

TEST_CASE("keepalive: idle 3 s, interval 1 s, 4 probes, then a RST: all three read from the probes, the RST one interval later") {
    probe::KeepaliveConfig kc;
    kc.connect.tcb = client_tcb();
    kc.max_wait = 60s;
    probe::KeepaliveFlow flow(kc);
    Sim sim(flow, Sim::PeerKind::Listening);
    KaServer ka;
    bool armed = false;
    sim.set_app([&](Sim& s, Instant t, const tcb::Actions&) {
        if (!armed && s.peer().state() == State::Established) {
            armed = true;
            ka.arm(s, t, ka.idle);
        }
    });
    sim.run(60s);
    const auto& r = flow.report();
    CHECK(r.end == probe::KeepaliveEnd::Rst);
    REQUIRE(r.probes.size() == 4);
    for (const auto& p : r.probes) CHECK_FALSE(p.answered);
    const auto f = flow.figures();
    REQUIRE(f.idle);
    CHECK(*f.idle == 3s + 200us);  // from the capture of our ACK: one way there, one back
    REQUIRE(f.interval);
    CHECK(*f.interval == 1s);
    CHECK(f.unanswered == 4);
    REQUIRE(f.end_after_last);
    CHECK(*f.end_after_last == 1s);
    CHECK(probe::infer_linux_seconds(*f.idle, 5ms) == std::optional<unsigned>{3});
    CHECK(probe::infer_linux_seconds(*f.interval, 5ms) == std::optional<unsigned>{1});
    // We never answered: the only segments we sent were the handshake's and the final none
    // (the peer's RST closed the connection: nothing to clean up).
    CHECK(flags_of(sim.sent_by_flow()) == std::vector<std::string>{"S", "."});
}

TEST_CASE("keepalive --answer 1: our ACK restarts the peer's idle timer: the next probe a whole idle time later") {
    probe::KeepaliveConfig kc;
    kc.connect.tcb = client_tcb();
    kc.max_wait = 60s;
    kc.answer = 1;
    probe::KeepaliveFlow flow(kc);
    Sim sim(flow, Sim::PeerKind::Listening);
    KaServer ka;
    bool armed = false;
    sim.set_app([&](Sim& s, Instant t, const tcb::Actions&) {
        if (!armed && s.peer().state() == State::Established) {
            armed = true;
            ka.arm(s, t, ka.idle);
        }
    });
    // Our ACK of a probe (SND.NXT, nothing new): the server's idle timer starts again.
    sim.set_peer_hook([&](Sim& s, Instant t, const Segment& seg) -> std::optional<std::vector<Segment>> {
        if (armed && seg.has(flag::ack) && seg.payload.empty() && !seg.has_any(flag::rst | flag::fin) && ka.out > 0) {
            ka.out = 0;
            ka.arm(s, t, ka.idle);
            return std::vector<Segment>{};
        }
        return std::nullopt;
    });
    sim.run(60s);
    const auto& r = flow.report();
    REQUIRE(r.probes.size() == 5);
    CHECK(r.probes[0].answered);
    CHECK(r.end == probe::KeepaliveEnd::Rst);
    const auto f = flow.figures();
    REQUIRE(f.idle_after_answer.size() == 1);
    CHECK(f.idle_after_answer[0] == 3s + 200us);
    CHECK(f.unanswered == 4);
    CHECK(flags_of(sim.sent_by_flow()) == std::vector<std::string>{"S", ".", "."});
}

TEST_CASE("keepalive: a peer without keepalive: nothing until --max-wait, then our RST cleans up") {
    probe::KeepaliveConfig kc;
    kc.connect.tcb = client_tcb();
    kc.max_wait = 10s;
    probe::KeepaliveFlow flow(kc);
    Sim sim(flow, Sim::PeerKind::Listening);
    sim.run(60s);
    CHECK(flow.report().end == probe::KeepaliveEnd::MaxWait);
    CHECK(flow.report().probes.empty());
    CHECK(flags_of(sim.sent_by_flow()) == std::vector<std::string>{"S", ".", "R"});
    CHECK(sim.now() - sim.start() < 11s);
}

TEST_CASE("keepalive --send: our probes at SND.NXT-1 are each answered with an ACK of SND.NXT") {
    probe::KeepaliveConfig kc;
    kc.connect.tcb = client_tcb();
    kc.mode = probe::KeepaliveMode::Send;
    kc.count = 3;
    kc.send_interval = 1s;
    probe::KeepaliveFlow flow(kc);
    Sim sim(flow, Sim::PeerKind::Listening);
    sim.run(60s);
    const auto& r = flow.report();
    REQUIRE(r.probes.size() == 3);
    for (const auto& p : r.probes) {
        CHECK(p.answered);
        REQUIRE(p.rtt);
        CHECK(*p.rtt == 200us);
    }
    CHECK(flags_of(sim.sent_by_flow()) == std::vector<std::string>{"S", ".", ".", ".", ".", "R"});
}
