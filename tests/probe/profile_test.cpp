// The profile as a conversation with simulated servers: every experiment in one session
// against the many-connection network of the time-wait tests (a server TCB per client
// port that answers a request once and closes first, a Linux TIME-WAIT model behind
// it), read into rows whose values, Linux settings and evidence are checked; and the
// pure pieces (ISN patterns, initial TTLs, what runs with which options).
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "sim.hpp"
#include "tcpprobe/probe/profile.hpp"
#include "tw_model.hpp"

using namespace tcpprobe;
using namespace tcpprobe::sim;
using probe::Experiment;

namespace {

/// Connection i: its own port (40000 + i) and ISN, our full option set with timestamps.
probe::ConnectConfig connect_for(std::size_t i) {
    probe::ConnectConfig c;
    c.tcb = client_tcb(true);
    c.tcb.tuple.local.port = static_cast<std::uint16_t>(40000 + i);
    c.tcb.iss = wire::Seq{static_cast<std::uint32_t>(1000u + 7919u * i)};
    c.tcb.ts_offset = static_cast<std::uint32_t>(5000u + 104729u * i);
    return c;
}

probe::ProfileConfig config(bool quick) {
    probe::ProfileConfig c;
    c.quick = quick;
    const std::string get = "GET / HTTP/1.0\r\n\r\n";
    c.request.assign(get.begin(), get.end());
    return c;
}

struct ProfileRun {
    explicit ProfileRun(probe::ProfileConfig c, TwModelConfig m = {}) : net(m), profile(std::move(c)) {
        profile.build(net.session(), net.start(), connect_for);
    }
    probe::ProfileResult run(Duration limit) {
        net.run(limit);
        elapsed = net.now() - net.start();
        return profile.result();
    }
    TwNet net;
    probe::Profile profile;
    Duration elapsed{};
};

const probe::ProfileRow& row(const probe::ProfileResult& r, std::string_view key) {
    const auto* w = r.row(key);
    INFO(key);
    REQUIRE(w);
    return *w;
}

std::string table(const probe::ProfileResult& r) {
    std::string t;
    for (const auto& w : r.rows) t += fmt::format("{} = {} [{}]\n", w.key, w.text, w.evidence);
    return t;
}

}  // namespace

TEST_CASE("profile: ISN patterns: repeated, a constant step, a clock's small increments, random") {
    CHECK(probe::isn_pattern({7, 7, 7}) == "repeated");
    CHECK(probe::isn_pattern({100, 64100, 128100}) == "step");
    CHECK(probe::isn_pattern({0xFFFFFFF0u, 0x10u, 0x30u}) == "step");  // across the wrap
    CHECK(probe::isn_pattern({1000, 51000, 99000}) == "increasing");
    CHECK(probe::isn_pattern({0x12345678u, 0x9ABCDEF0u, 0x0F1E2D3Cu}) == "random");
    CHECK(probe::isn_pattern({1}) == "unknown");
}

TEST_CASE("profile: the initial TTL is the next of 32, 64, 128, 255 at or above the one seen") {
    CHECK(probe::initial_ttl(64) == std::pair{64u, 0u});
    CHECK(probe::initial_ttl(57) == std::pair{64u, 7u});
    CHECK(probe::initial_ttl(120) == std::pair{128u, 8u});
    CHECK(probe::initial_ttl(250) == std::pair{255u, 5u});
}

TEST_CASE("profile: what runs: --quick leaves out TIME-WAIT duration and FIN-WAIT-2; keepalive and idle only when asked") {
    auto has = [](const std::vector<Experiment>& v, Experiment e) { return std::find(v.begin(), v.end(), e) != v.end(); };
    const auto full = probe::Profile(config(false)).experiments();
    CHECK(has(full, Experiment::TimeWaitDuration));
    CHECK(has(full, Experiment::FinWait2));
    CHECK_FALSE(has(full, Experiment::Keepalive));
    CHECK_FALSE(has(full, Experiment::Idle));
    const auto quick = probe::Profile(config(true)).experiments();
    CHECK_FALSE(has(quick, Experiment::TimeWaitDuration));
    CHECK_FALSE(has(quick, Experiment::FinWait2));
    CHECK(has(quick, Experiment::SynAckSchedule));
    CHECK(has(quick, Experiment::TimeWaitRst));
    auto c = config(true);
    c.keepalive = true;
    c.idle_max = std::chrono::seconds{30};
    const auto asked = probe::Profile(c).experiments();
    CHECK(has(asked, Experiment::Keepalive));
    CHECK(has(asked, Experiment::Idle));
}

TEST_CASE("profile: every connection it asks for gets its own port, and the pace holds: at most 4 SYNs in any 50 ms") {
    ProfileRun run(config(false));
    const std::size_t n = run.profile.connections();
    CHECK(n > 40);  // the lifetime engine's connections of TIME-WAIT and FIN-WAIT-2
    CHECK(run.net.session().size() == n);
    run.net.run(std::chrono::seconds{3});
    // The capture time of each connection's first SYN.
    std::map<std::uint16_t, Instant> first;
    for (const auto& e : run.net.events())
        if (const auto* seg = std::get_if<probe::SegmentEvent>(&e.body);
            seg && seg->dir == wire::Direction::Out && seg->segment.has(wire::flag::syn))
            first.emplace(e.flow, e.t);
    std::vector<Instant> syns;
    for (const auto& [port, t] : first) syns.push_back(t);
    std::sort(syns.begin(), syns.end());
    CHECK(first.size() >= 30);  // every experiment's first connections are open by 3 s
    for (std::size_t i = 4; i < syns.size(); ++i) {
        INFO(i);
        CHECK(syns[i] - syns[i - 4] >= std::chrono::milliseconds{50});
    }
}

TEST_CASE("profile, Linux-like server: TIME-WAIT 60 s, RFC 1337 off, reuse at SND.NXT + 65537, options; in at most 2 x the TIME-WAIT run") {
    ProfileRun run(config(false));
    const auto r = run.run(std::chrono::seconds{400});
    INFO(table(r));
    CHECK(run.net.session().done());
    // Options the server TCB offers back (server_tcb: mss 1400, sackOK, TS, wscale 9).
    CHECK(std::get<std::int64_t>(row(r, "handshake.mss").value) == 1400);
    CHECK(std::get<bool>(row(r, "handshake.sack").value));
    CHECK(row(r, "handshake.sack").linux->sysctl == "tcp_sack");
    CHECK(std::get<bool>(row(r, "handshake.timestamps").value));
    CHECK(row(r, "handshake.timestamps").linux->value == 1);
    CHECK(std::get<std::int64_t>(row(r, "handshake.wscale").value) == 9);
    CHECK(std::get<std::int64_t>(row(r, "handshake.ttl").value) == 64);
    // TIME-WAIT: 60 s on the model, measured within the engine's bracket.
    const auto& tw = row(r, "time_wait.duration");
    REQUIRE(std::holds_alternative<Duration>(tw.value));
    CHECK(std::get<Duration>(tw.value) > std::chrono::seconds{58});
    CHECK(std::get<Duration>(tw.value) < std::chrono::seconds{62});
    CHECK_FALSE(tw.marks.empty());
    CHECK_FALSE(std::get<bool>(row(r, "time_wait.rfc1337").value));
    CHECK(row(r, "time_wait.rfc1337").linux->sysctl == "tcp_rfc1337");
    CHECK(row(r, "time_wait.rfc1337").linux->value == 0);
    CHECK(std::get<bool>(row(r, "time_wait.reuse").value));
    CHECK(std::get<std::int64_t>(row(r, "time_wait.reuse_isn").value) == 65537);
    CHECK(std::get<bool>(row(r, "time_wait.fin_reack").value));
    // Half-close: our FIN comes before any request, and the simulated server answers only
    // a request: nothing after our FIN.
    CHECK_FALSE(std::get<bool>(row(r, "half_close.data_after_fin").value));
    // The server TCB's FIN-WAIT-2 has no timer: no bound within the 150 s looked for.
    CHECK(std::get<std::string>(row(r, "fin_wait_2.lifetime").value) == "no bound");
    // No middlebox: every segment of the simulated server has the same TTL.
    CHECK(r.middlebox.empty());
    // Run time: the longest experiment alone is FIN-WAIT-2's (its last coarse probe at
    // 150 s plus set-up); everything together must not take much longer than it.
    CHECK(run.elapsed < std::chrono::seconds{2 * 160});
}

TEST_CASE("profile, --quick against a server with tcp_rfc1337=1: RFC 1337 row on, within about 10 s plus the closes' waits") {
    TwModelConfig m;
    m.rfc1337 = true;
    ProfileRun run(config(true), m);
    const auto r = run.run(std::chrono::seconds{60});
    INFO(table(r));
    CHECK(run.net.session().done());
    CHECK(r.row("time_wait.duration") == nullptr);
    CHECK(r.row("fin_wait_2.lifetime") == nullptr);
    CHECK(std::get<bool>(row(r, "time_wait.rfc1337").value));
    CHECK(row(r, "time_wait.rfc1337").linux->value == 1);
    CHECK(run.elapsed <= std::chrono::seconds{15});
}

namespace {

bool has_sign(const probe::ProfileResult& r, std::string_view words) {
    return std::any_of(r.middlebox.begin(), r.middlebox.end(), [&](const std::string& m) { return m.find(words) != std::string::npos; });
}

/// A middlebox between us and the server that lowers the MSS of every SYN to 536, as
/// `tcp option maxseg size set 536` in nft: the server's own SYN-ACK still offers 1400.
void clamp_syns(TwNet& net) {
    net.set_rewrite_to_server([](wire::Segment& s) {
        if (s.has(wire::flag::syn) && !s.has(wire::flag::ack)) wire::replace_option(s.options, wire::opt::Mss{536});
    });
}

}  // namespace

TEST_CASE("profile, MSS clamped on the path: the peer's 3000-byte answers come in 536-byte segments (524 + 12 option bytes); named") {
    ProfileRun run(config(true));
    run.net.set_answer_size(3000);
    clamp_syns(run.net);
    const auto r = run.run(std::chrono::seconds{60});
    INFO(table(r));
    INFO(fmt::format("{}", r.middlebox));
    // The SYN-ACK does not show it: the server offers its own MSS, whatever ours arrived as.
    CHECK(std::get<std::int64_t>(row(r, "handshake.mss").value) == 1400);
    const auto& w = row(r, "path.peer_mss");
    CHECK(std::get<std::int64_t>(w.value) == 536);
    CHECK(w.text.find("clamped") != std::string::npos);
    REQUIRE_FALSE(w.marks.empty());
    CHECK(has_sign(r, "MSS clamping"));
}

TEST_CASE("profile, no clamp: segments cut at the peer's own MSS (1400, below our 1460) are not called a clamp") {
    ProfileRun run(config(true));
    run.net.set_answer_size(3000);
    const auto r = run.run(std::chrono::seconds{60});
    INFO(table(r));
    const auto& w = row(r, "path.peer_mss");
    CHECK(std::get<std::int64_t>(w.value) == 1400);
    CHECK(w.text.find("cannot be told") != std::string::npos);
    CHECK_FALSE(has_sign(r, "MSS clamping"));
    CHECK(r.middlebox.empty());
}

TEST_CASE("profile: answers of one segment (100 bytes) say nothing about the MSS: not observable, no value") {
    ProfileRun run(config(true));
    clamp_syns(run.net);  // even with a clamp: nothing shows it
    const auto r = run.run(std::chrono::seconds{60});
    const auto& w = row(r, "path.peer_mss");
    CHECK(std::holds_alternative<std::monostate>(w.value));
    CHECK(w.text.rfind("not observable", 0) == 0);
    CHECK_FALSE(has_sign(r, "MSS clamping"));
}

TEST_CASE("profile, a SYN proxy in front: SYN-ACKs with its own TTL (255) and window 0, never retransmitted, data with the server's (64)") {
    ProfileRun run(config(true));
    std::set<std::uint16_t> answered;
    // As nf_synproxy: its SYN-ACK offers window 0; the server's next segment opens it.
    run.net.set_rewrite_to_us([](wire::Segment& s) {
        if (s.has(wire::flag::syn | wire::flag::ack)) {
            s.ip.ttl = 255;
            s.window = 0;
        }
    });
    // The proxy answers each SYN once, from its cookie: no SYN-ACK copy ever reaches us.
    run.net.set_drop([answered](const wire::Segment& s) mutable {
        return s.has(wire::flag::syn | wire::flag::ack) && !answered.insert(s.dst.port).second;
    });
    const auto r = run.run(std::chrono::seconds{60});
    INFO(table(r));
    INFO(fmt::format("{}", r.middlebox));
    CHECK(has_sign(r, "SYN-ACK TTL 255 but data TTL 64"));
    CHECK(has_sign(r, "SYN-ACK with window 0"));
    // --quick cuts the SYN-ACK schedule at 10 s, before a silence could be confirmed: no
    // cookie verdict either way (not "no: the SYN-ACK was retransmitted").
    CHECK(std::holds_alternative<std::monostate>(row(r, "synack.syncookies").value));
    CHECK(row(r, "synack.syncookies").text.rfind("inconclusive", 0) == 0);
    // The server's own RSTs (TIME-WAIT killed) have the data's TTL: not a foreign RST.
    CHECK_FALSE(has_sign(r, "RST with TTL"));
}

TEST_CASE("profile, a box that rewrites the TTL of the SYN-ACKs only: named, with the port and time that show it") {
    ProfileRun run(config(true));
    run.net.set_rewrite_to_us([](wire::Segment& s) {
        if (s.has(wire::flag::syn | wire::flag::ack)) s.ip.ttl = 100;
    });
    const auto r = run.run(std::chrono::seconds{60});
    INFO(fmt::format("{}", r.middlebox));
    REQUIRE(r.middlebox.size() == 1);
    CHECK(has_sign(r, "SYN-ACK TTL 100 but data TTL 64 on port"));
}

TEST_CASE("profile, RSTs with a foreign TTL (a firewall resetting for the peer): named") {
    ProfileRun run(config(true));
    run.net.set_rewrite_to_us([](wire::Segment& s) {
        if (s.has(wire::flag::rst)) s.ip.ttl = 255;
    });
    const auto r = run.run(std::chrono::seconds{60});
    INFO(table(r));
    INFO(fmt::format("{}", r.middlebox));
    CHECK(has_sign(r, "RST with TTL 255 where the peer's segments have TTL 64"));
}
