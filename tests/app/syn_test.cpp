// SYN planning (app/syn.hpp): the command line's SYN options are validated before
// anything is opened or sent, laid out the way Linux lays them out, and turned into a
// TCB configuration whose random parts come only from the generator passed in.
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "app/usage_error.hpp"
#include "tcpprobe/app/edge.hpp"
#include "tcpprobe/app/syn.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/wire/format.hpp"
#include "tcpprobe/wire/tcp_header.hpp"

using namespace tcpprobe;
using test::usage_error;
using app::plan_syn;
using app::SynOptions;

namespace {

void check_refused(const SynOptions& o, const std::vector<std::string>& needles) {
    std::string what = usage_error([&] { plan_syn(o); });
    INFO("message: '" << what << "'");
    REQUIRE_MESSAGE(!what.empty(), "plan_syn did not refuse");
    for (const auto& n : needles) CHECK_MESSAGE(what.find(n) != std::string::npos, "message does not name '" << n << "'");
}

/// The option list in the one-line notation: failures show what was laid out.
std::string layout(const SynOptions& o, std::uint16_t default_mss = 1460) {
    return wire::format_options(app::syn_option_list(plan_syn(o), default_mss));
}

/// A name no host has as an interface: make_tcb_config falls back to MTU 1500.
const std::string no_such_interface = "tpq-none0";

wire::FourTuple tuple() {
    return {{wire::Ipv4Addr{0xC6120001}, 40000}, {wire::Ipv4Addr{0xC6120002}, 80}};
}

}  // namespace

TEST_CASE("syn: plan_syn: no options means an MSS option only, from the interface") {
    SynOptions o;
    auto p = plan_syn(o);
    CHECK_FALSE(p.mss.has_value());
    CHECK_FALSE(p.wscale.has_value());
    CHECK(p.raw.empty());
    CHECK(p.ip.ttl == 64);
    CHECK(p.ip.df);
    CHECK_FALSE(p.ip_id_set);
    CHECK_FALSE(p.isn.has_value());
    CHECK(layout(o, 1460) == "mss 1460");
    CHECK(layout(o, 8960) == "mss 8960");
}

TEST_CASE("syn: plan_syn: window scale 0-14 is accepted, 15 and above refused (RFC 7323)") {
    for (unsigned ws : {0u, 7u, 14u}) {
        CAPTURE(ws);
        SynOptions o;
        o.wscale = ws;
        CHECK(plan_syn(o).wscale == ws);
    }
    for (unsigned ws : {15u, 16u, 255u, 256u}) {
        CAPTURE(ws);
        SynOptions o;
        o.wscale = ws;
        check_refused(o, {"--wscale", std::to_string(ws), "14"});
    }
}

TEST_CASE("syn: plan_syn: typed options first in Linux's order, raw options after in the order given") {
    SynOptions o;
    // Set in an order unlike Linux's: the layout must not depend on it.
    o.wscale = 7;
    o.ts = true;
    o.sack = true;
    o.mss = 1200;
    o.raw_options = {"30:0102", "1", "253:abcd"};
    CHECK(layout(o) == "mss 1200,sackOK,TS val 0 ecr 0,nop,wscale 7,opt-30:0102,nop,opt-253:abcd");

    SUBCASE("SACK alone is padded with two NOPs before it") {
        SynOptions s;
        s.sack = true;
        CHECK(layout(s) == "mss 1460,nop,nop,sackOK");
    }
    SUBCASE("timestamps alone are padded with two NOPs before them") {
        SynOptions s;
        s.ts = true;
        CHECK(layout(s) == "mss 1460,nop,nop,TS val 0 ecr 0");
    }
    SUBCASE("--no-mss removes the MSS option, nothing else") {
        SynOptions s = o;
        s.mss.reset();
        s.no_mss = true;
        CHECK(layout(s) == "sackOK,TS val 0 ecr 0,nop,wscale 7,opt-30:0102,nop,opt-253:abcd");
    }
    SUBCASE("raw options keep their given order, duplicates included") {
        SynOptions s;
        s.no_mss = true;
        s.raw_options = {"253:02", "1", "253:01", "0"};
        CHECK(layout(s) == "opt-253:02,nop,opt-253:01,eol");
    }
    SUBCASE("a raw option of a known kind is typed, but stays where it was given") {
        SynOptions s;
        s.sack = true;
        s.raw_options = {"2:0578"};
        CHECK(layout(s) == "mss 1460,nop,nop,sackOK,mss 1400");
    }
}

TEST_CASE("syn: plan_syn: 40 bytes of options are accepted, 41 refused with a message") {
    // mss 4 + sackOK 2 + TS 10 + nop 1 + wscale 3 = 20 bytes; a 20-byte raw option fills 40.
    SynOptions o;
    o.mss = 1460;
    o.sack = true;
    o.ts = true;
    o.wscale = 7;
    o.raw_options = {"254:" + std::string(36, 'e')};  // 18 data bytes + kind + length
    auto p = plan_syn(o);
    CHECK(wire::encoded_size(app::syn_option_list(p, 1460)) == 40);

    SUBCASE("one NOP more") {
        o.raw_options.push_back("1");
        check_refused(o, {"41 bytes", "40"});
    }
    SUBCASE("raw options alone over 40 bytes") {
        SynOptions r;
        r.no_mss = true;
        r.raw_options = {"254:" + std::string(40, 'e'), "253:" + std::string(40, 'e')};  // 22 + 22
        check_refused(r, {"44 bytes", "40"});
    }
    SUBCASE("the implicit MSS counts too") {
        SynOptions r;
        r.raw_options = {"254:" + std::string(72, 'e')};  // 36 data bytes: 38 + mss 4 = 42
        check_refused(r, {"42 bytes", "40"});
    }
}

TEST_CASE("syn: plan_syn: IP fields, ISN, port and flags") {
    SynOptions o;
    o.ttl = 1;
    o.tos = 0xb8;
    o.df = false;
    o.ip_id = "0x1234";
    o.isn = "4294967295";
    o.sport = 65535;
    o.window = 0;
    o.flags = "ece,cwr";
    auto p = plan_syn(o);
    CHECK(p.ip.ttl == 1);
    CHECK(p.ip.tos == 0xb8);
    CHECK_FALSE(p.ip.df);
    CHECK(p.ip_id_set);
    CHECK(p.ip.id == 0x1234);
    REQUIRE(p.isn.has_value());
    CHECK(p.isn->raw() == 0xFFFFFFFFu);
    CHECK(p.sport == 65535);
    CHECK(p.window == 0);
    CHECK(p.extra_flags == (wire::flag::ece | wire::flag::cwr));
}

TEST_CASE("syn: plan_syn: out-of-range values are refused, naming the option and the value") {
    struct Case {
        const char* name;
        void (*set)(SynOptions&);
        std::vector<std::string> needles;
    };
    const Case cases[] = {
        {"mss 65536", [](SynOptions& o) { o.mss = 65536; }, {"--mss", "65536"}},
        {"mss with no-mss", [](SynOptions& o) { o.mss = 1000; o.no_mss = true; }, {"--mss", "--no-mss"}},
        {"window 65536", [](SynOptions& o) { o.window = 65536; }, {"--window", "65536"}},
        {"ttl 0", [](SynOptions& o) { o.ttl = 0; }, {"--ttl", "0", "1..255"}},
        {"ttl 256", [](SynOptions& o) { o.ttl = 256; }, {"--ttl", "256"}},
        {"tos 256", [](SynOptions& o) { o.tos = 256; }, {"--tos", "256"}},
        {"ip-id 65536", [](SynOptions& o) { o.ip_id = "65536"; }, {"--ip-id", "'65536'"}},
        {"ip-id text", [](SynOptions& o) { o.ip_id = "random"; }, {"--ip-id", "'random'"}},
        {"isn 2^32", [](SynOptions& o) { o.isn = "0x100000000"; }, {"--isn", "'0x100000000'"}},
        {"sport 0", [](SynOptions& o) { o.sport = 0; }, {"--sport", "0"}},
        {"sport 65536", [](SynOptions& o) { o.sport = 65536; }, {"--sport", "65536"}},
        {"flags", [](SynOptions& o) { o.flags = "ece,nope"; }, {"--flags", "'nope'"}},
        {"raw option", [](SynOptions& o) { o.raw_options = {"1", "30:xy"}; }, {"--option", "'30:xy'"}},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        SynOptions o;
        c.set(o);
        check_refused(o, c.needles);
    }
}

TEST_CASE("syn: make_tcb_config: the same seed gives the same configuration") {
    SynOptions o;
    o.sack = true;
    o.ts = true;
    o.wscale = 7;
    auto p = plan_syn(o);
    io::Random a{42};
    io::Random b{42};
    auto ca = app::make_tcb_config(p, tuple(), no_such_interface, a);
    auto cb = app::make_tcb_config(p, tuple(), no_such_interface, b);
    CHECK(ca.iss == cb.iss);
    CHECK(ca.ip.id == cb.ip.id);
    CHECK(ca.ts_offset == cb.ts_offset);
    CHECK(wire::format_options(ca.syn_options) == wire::format_options(cb.syn_options));
    CHECK(ca.rcv_wnd == cb.rcv_wnd);
    CHECK(ca.syn_window == cb.syn_window);
    CHECK(ca.tuple == tuple());
    // ...and the generators were advanced alike.
    CHECK(a() == b());

    SUBCASE("another seed gives another ISN") {
        io::Random c{43};
        CHECK(app::make_tcb_config(p, tuple(), no_such_interface, c).iss != ca.iss);
    }
}

TEST_CASE("syn: make_tcb_config: the run's generator gives each flow and each run its own ISN, IP ID and TS offset") {
    // The review's case: one mt19937_64 seeded with 32 bits fed every ISN of a run, so a
    // target that saw one ISN could compute the rest. The run's generator is getrandom().
    SynOptions o;
    o.ts = true;
    auto p = plan_syn(o);
    io::Random run_a;
    io::Random run_b;
    auto flow1 = app::make_tcb_config(p, tuple(), no_such_interface, run_a);
    auto flow2 = app::make_tcb_config(p, tuple(), no_such_interface, run_a);
    auto other_run = app::make_tcb_config(p, tuple(), no_such_interface, run_b);
    auto triple = [](const tcb::TcbConfig& c) { return std::tuple(c.iss.raw(), c.ip.id, c.ts_offset); };
    // Equal by chance with probability 2^-64 at most per pair.
    CHECK(triple(flow1) != triple(flow2));
    CHECK(triple(flow1) != triple(other_run));
    CHECK(triple(flow2) != triple(other_run));
    // app::run_rng() is such a generator, drawn from for every flow.
    CHECK(app::make_tcb_config(p, tuple(), no_such_interface, app::run_rng()).iss !=
          app::make_tcb_config(p, tuple(), no_such_interface, app::run_rng()).iss);
    // Not a generator with a short seed: 64 draws of 64 bits are all different.
    std::set<std::uint64_t> seen;
    for (int i = 0; i < 64; ++i) seen.insert(run_a());
    CHECK(seen.size() == 64);
}

TEST_CASE("syn: make_tcb_config: what the user fixed does not come from the generator") {
    SynOptions o;
    o.isn = "1000";
    o.ip_id = "7";
    o.window = 1024;
    o.wscale = 3;
    auto p = plan_syn(o);
    for (std::uint64_t seed : {1u, 2u, 3u}) {
        CAPTURE(seed);
        io::Random rng{seed};
        auto c = app::make_tcb_config(p, tuple(), no_such_interface, rng);
        CHECK(c.iss == wire::Seq{1000});
        CHECK(c.ip.id == 7);
        CHECK(c.syn_window == 1024);
        CHECK(c.rcv_wnd == 1024u << 3);
    }
}

TEST_CASE("syn: make_tcb_config: the default MSS is the interface MTU minus 40") {
    SynOptions o;
    io::Random rng{1};
    auto c = app::make_tcb_config(plan_syn(o), tuple(), no_such_interface, rng);  // MTU unknown: 1500
    CHECK(wire::format_options(c.syn_options) == "mss 1460");
    CHECK(c.syn_window == 64240);
    CHECK(c.rcv_wnd == 64240);
    CHECK(c.mtu == 1500);  // and what we send is cut to it, whatever MSS is announced

    SUBCASE("an explicit MSS wins") {
        o.mss = 536;
        auto d = app::make_tcb_config(plan_syn(o), tuple(), no_such_interface, rng);
        CHECK(wire::format_options(d.syn_options) == "mss 536");
    }
    SUBCASE("an MSS above the link's: announced as given, the link still bounds what we send") {
        o.mss = 9000;
        auto d = app::make_tcb_config(plan_syn(o), tuple(), no_such_interface, rng);
        CHECK(wire::format_options(d.syn_options) == "mss 9000");
        CHECK(d.mtu == 1500);
    }
    SUBCASE("extra flags and IP fields are carried over") {
        o.flags = "cwr";
        o.ttl = 9;
        auto d = app::make_tcb_config(plan_syn(o), tuple(), no_such_interface, rng);
        CHECK(d.extra_syn_flags == wire::flag::cwr);
        CHECK(d.ip.ttl == 9);
    }
}
