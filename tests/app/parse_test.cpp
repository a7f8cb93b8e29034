// Command-line value parsers (app/parse.hpp). Good values parse to what they say; every
// bad value is a UsageError (exit 64) whose one-line message names the bad value, so the
// user sees what to fix (DESIGN §1 "Bad input").
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <variant>

#include "app/usage_error.hpp"
#include "tcpprobe/app/parse.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/wire/format.hpp"
#include "tcpprobe/wire/tcp_header.hpp"

using namespace tcpprobe;
using test::usage_error;
using app::parse_duration;
using app::parse_flags;
using app::parse_number;
using app::parse_raw_option;
using app::parse_target;

namespace {

/// The message must exist, be one line, and contain every one of `needles`.
void check_message(const std::string& what, std::initializer_list<std::string> needles) {
    INFO("message: '" << what << "'");
    REQUIRE_MESSAGE(!what.empty(), "no io::UsageError was thrown");
    CHECK(what.find('\n') == std::string::npos);
    for (const auto& n : needles) CHECK_MESSAGE(what.find(n) != std::string::npos, "message does not name '" << n << "'");
}

constexpr std::uint32_t ip(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
    return (std::uint32_t{a} << 24) | (std::uint32_t{b} << 16) | (std::uint32_t{c} << 8) | d;
}

std::string shown(const wire::TcpOption& o) { return wire::format_options({o}); }

}  // namespace

TEST_CASE("parse: parse_target: HOST:PORT with an address or a name") {
    auto t = parse_target("192.0.2.1:80");
    CHECK(t.host == "192.0.2.1");
    CHECK(t.port == 80);
    t = parse_target("example.org:443");
    CHECK(t.host == "example.org");
    CHECK(t.port == 443);
    CHECK(parse_target("h:1").port == 1);
    CHECK(parse_target("h:65535").port == 65535);
    CHECK(parse_target("h:0x50").port == 80);  // parse_number accepts hex
}

TEST_CASE("parse: parse_target: bad targets are refused, naming the target") {
    for (const char* bad : {"", "192.0.2.1", "192.0.2.1:", ":80", "host:0", "host:65536", "host:http", "host:80x",
                            "host:-1", "host: 80"}) {
        CAPTURE(bad);
        check_message(usage_error([&] { parse_target(bad); }), {std::string("'") + bad + "'"});
    }
    SUBCASE("IPv6 is reserved for later, with its own message") {
        for (const char* v6 : {"[::1]:80", "[2001:db8::1]:443", "::1:80", "fe80::1:22"}) {
            CAPTURE(v6);
            check_message(usage_error([&] { parse_target(v6); }), {v6, "IPv6 is not supported yet"});
        }
    }
}

TEST_CASE("parse: check_target_address: unicast addresses pass") {
    for (std::uint32_t a : {ip(192, 0, 2, 1), ip(10, 0, 0, 1), ip(127, 0, 0, 1), ip(198, 18, 0, 2), ip(223, 255, 255, 254),
                            ip(0, 0, 0, 1)}) {
        CAPTURE(a);
        CHECK_NOTHROW(app::check_target_address(a, "x"));
    }
}

TEST_CASE("parse: check_target_address: any, broadcast, multicast and 240/4 are refused, naming the target") {
    struct Bad {
        std::uint32_t addr;
        const char* shown;
        const char* why;
    };
    for (const Bad& b : {Bad{0, "0.0.0.0:80", "0.0.0.0"}, Bad{ip(255, 255, 255, 255), "255.255.255.255:80", "broadcast"},
                         Bad{ip(224, 0, 0, 1), "224.0.0.1:80", "multicast"},
                         Bad{ip(239, 255, 255, 250), "mcast.example:1900", "multicast"},
                         Bad{ip(240, 0, 0, 1), "240.0.0.1:80", "reserved"}}) {
        CAPTURE(b.shown);
        check_message(usage_error([&] { app::check_target_address(b.addr, b.shown); }), {b.shown, b.why});
    }
}

TEST_CASE("parse: parse_duration: units and fractions") {
    using namespace std::chrono;
    CHECK(parse_duration("250ms", "--x") == milliseconds{250});
    CHECK(parse_duration("2s", "--x") == seconds{2});
    CHECK(parse_duration("1.5s", "--x") == milliseconds{1500});
    CHECK(parse_duration("100us", "--x") == microseconds{100});
    CHECK(parse_duration("10ns", "--x") == nanoseconds{10});
    CHECK(parse_duration("2m", "--x") == minutes{2});
    CHECK(parse_duration("1min", "--x") == minutes{1});
    CHECK(parse_duration("3", "--x") == seconds{3});  // a bare number is seconds
    CHECK(parse_duration("0", "--x") == Duration::zero());
    CHECK(parse_duration("0.25ms", "--x") == microseconds{250});
    CHECK(parse_duration(".5s", "--x") == milliseconds{500});
}

TEST_CASE("parse: parse_duration: bad durations are refused, naming the option and the value") {
    for (const char* bad : {"", "s", "ms", "3x", "3 s", "1.2.3s", "-1s", "1e3s", "abc", "2h", "99999999999s", "1S"}) {
        CAPTURE(bad);
        check_message(usage_error([&] { parse_duration(bad, "--interval"); }), {"--interval", std::string("'") + bad + "'"});
    }
}

TEST_CASE("parse: parse_tolerance: a floor in the duration grammar, a percentage, or both") {
    using namespace std::chrono;
    const auto t = app::parse_tolerance("50ms,10%", "--tolerance");
    CHECK(t.floor == milliseconds{50});
    CHECK(t.percent == doctest::Approx(10.0));
    CHECK(app::parse_tolerance("2s", "--tolerance").floor == seconds{2});
    CHECK(app::parse_tolerance("1m", "--tolerance").floor == minutes{1});  // the same units as every duration
    CHECK(app::parse_tolerance("5%", "--tolerance").percent == doctest::Approx(5.0));
    CHECK(app::parse_tolerance("12.5%,250us", "--tolerance").floor == microseconds{250});
    for (const char* bad : {"", "50", "ms", "10%,", ",10%", "-5%", "5%%", "1001%", "10x", "-1s"}) {
        CAPTURE(bad);
        check_message(usage_error([&] { app::parse_tolerance(bad, "--tolerance"); }), {"--tolerance", std::string("'") + bad + "'"});
    }
}

TEST_CASE("parse: parse_flags: names, tcpdump letters, any case, several separators") {
    using namespace wire::flag;
    CHECK(parse_flags("ece,cwr") == (ece | cwr));
    CHECK(parse_flags("ECE,CWR") == (ece | cwr));
    CHECK(parse_flags("E,W") == (ece | cwr));
    CHECK(parse_flags("fin|psh+urg") == (fin | psh | urg));
    CHECK(parse_flags("syn") == syn);
    CHECK(parse_flags(".") == ack);
    CHECK(parse_flags("f,s,r,p,.,u,e,w") == (fin | syn | rst | psh | ack | urg | ece | cwr));
    CHECK(parse_flags("ack,ack") == ack);
}

TEST_CASE("parse: parse_flags: unknown flags are refused, naming the flag") {
    for (const char* bad : {"bogus", "ece,bogus", "nul", "x", "ns"}) {
        CAPTURE(bad);
        std::string word = bad;
        if (auto comma = word.rfind(','); comma != std::string::npos) word = word.substr(comma + 1);
        check_message(usage_error([&] { parse_flags(bad); }), {"--flags", "'" + word + "'", "fin,syn,rst"});
    }
    SUBCASE("empty names") {
        for (const char* bad : {"", "ece,", ",ece", "ece,,cwr"}) {
            CAPTURE(bad);
            check_message(usage_error([&] { parse_flags(bad); }), {"--flags", "''"});
        }
    }
    SUBCASE("AE cannot be sent, and says why") {
        check_message(usage_error([] { parse_flags("ae"); }), {"--flags", "AE"});
        check_message(usage_error([] { parse_flags("syn,AE"); }), {"--flags", "AE"});
    }
}

TEST_CASE("parse: parse_raw_option: single-byte kinds") {
    CHECK(std::holds_alternative<wire::opt::Nop>(parse_raw_option("1")));
    CHECK(std::holds_alternative<wire::opt::Eol>(parse_raw_option("0")));
    CHECK(std::holds_alternative<wire::opt::Nop>(parse_raw_option("1:")));
}

TEST_CASE("parse: parse_raw_option: well-formed known kinds become typed options (so they are negotiated)") {
    CHECK(parse_raw_option("2:05b4") == wire::TcpOption{wire::opt::Mss{1460}});
    CHECK(parse_raw_option("0x2:05B4") == wire::TcpOption{wire::opt::Mss{1460}});
    CHECK(parse_raw_option("3:07") == wire::TcpOption{wire::opt::WindowScale{7}});
    CHECK(parse_raw_option("4") == wire::TcpOption{wire::opt::SackPermitted{}});
    CHECK(parse_raw_option("8:00000001:00000002") == wire::TcpOption{wire::opt::Timestamps{1, 2}});
}

TEST_CASE("parse: parse_raw_option: unknown kinds and malformed known kinds stay raw, bytes kept") {
    CHECK(parse_raw_option("30:0102") == wire::TcpOption{wire::opt::Unknown{30, {0x01, 0x02}}});
    CHECK(parse_raw_option("253:4e4f") == wire::TcpOption{wire::opt::Unknown{253, {0x4e, 0x4f}}});
    CHECK(parse_raw_option("254") == wire::TcpOption{wire::opt::Unknown{254, {}}});
    // An MSS option one byte short cannot be decoded as an MSS: it is sent as given.
    auto short_mss = parse_raw_option("2:05");
    CAPTURE(shown(short_mss));
    CHECK(short_mss == wire::TcpOption{wire::opt::Unknown{2, {0x05}}});
    // 38 bytes of data + kind + length = 40 bytes: the largest option that fits.
    const std::string max = "254:" + std::string(76, 'a');
    CHECK(std::get<wire::opt::Unknown>(parse_raw_option(max)).data.size() == 38);
}

TEST_CASE("parse: parse_raw_option: bad options are refused, naming the option") {
    const std::string too_long = "254:" + std::string(78, 'a');  // 39 data bytes: 41 in all
    for (const std::string& bad : {std::string("x"), std::string(""), std::string("256:00"), std::string("-1"),
                                   std::string("30:zz"), std::string("30:012"), std::string("1:00"), std::string("0:00"),
                                   std::string(":0102"), too_long}) {
        CAPTURE(bad);
        check_message(usage_error([&] { parse_raw_option(bad); }), {"--option", "'" + bad + "'"});
    }
    check_message(usage_error([&] { parse_raw_option(too_long); }), {"41 bytes", "40"});
}

TEST_CASE("parse: parse_number: decimal and 0x-hex within bounds") {
    CHECK(parse_number("0", "--n", 0, 10) == 0);
    CHECK(parse_number("10", "--n", 0, 10) == 10);
    CHECK(parse_number("65535", "--n", 0, 65535) == 65535);
    CHECK(parse_number("0x10", "--n", 0, 65535) == 16);
    CHECK(parse_number("0XfF", "--n", 0, 65535) == 255);
    CHECK(parse_number("010", "--n", 0, 65535) == 10);  // decimal, not octal
    CHECK(parse_number("4294967295", "--isn", 0, 0xFFFFFFFFu) == 0xFFFFFFFFu);
}

TEST_CASE("parse: parse_number: bad numbers are refused, naming the option, the value and the range") {
    for (const char* bad : {"", "abc", "-1", "+1", "65536", "0x", "0x10000", "12a", " 1", "1 ", "1.5", "99999999999999999999999"}) {
        CAPTURE(bad);
        check_message(usage_error([&] { parse_number(bad, "--ip-id", 0, 65535); }),
                      {"--ip-id", std::string("'") + bad + "'", "0..65535"});
    }
    check_message(usage_error([] { parse_number("0", "--ttl", 1, 255); }), {"--ttl", "'0'", "1..255"});
}

TEST_CASE("parse: parse_request: text with escapes") {
    auto bytes = [](std::string_view s) { return wire::ByteVec(s.begin(), s.end()); };
    CHECK(app::parse_request("GET / HTTP/1.0\\r\\n\\r\\n") == bytes("GET / HTTP/1.0\r\n\r\n"));
    CHECK(app::parse_request("a\\tb\\\\c") == bytes("a\tb\\c"));
    CHECK(app::parse_request("\\0\\x41\\xfF") == wire::ByteVec{0, 0x41, 0xFF});
    CHECK(app::parse_request("") == wire::ByteVec{});
}

TEST_CASE("parse: parse_request: a bad \\x escape is a usage error naming it, never a crash") {
    // '\x::' and '\x0x' once read a byte out of an empty vector (SIGSEGV).
    for (const char* bad : {"\\x::", "\\x0x", "\\x: ", "\\x 1", "\\xg0", "\\x0", "\\x", "ab\\x4"}) {
        CAPTURE(bad);
        const std::string what = usage_error([&] { app::parse_request(bad); });
        std::string_view escape = std::string_view(bad).substr(std::string_view(bad).find("\\x"), 4);
        check_message(what, {"--request", std::string(escape), "two hex digits"});
    }
    check_message(usage_error([] { app::parse_request("\\q"); }), {"--request", "\\q", "accepted"});
    check_message(usage_error([] { app::parse_request("abc\\"); }), {"--request", "lone backslash"});
}

TEST_CASE("parse: parse_request: a request is at most 64 KiB") {
    CHECK(app::max_request_bytes == 65536);
    CHECK(app::parse_request(std::string(app::max_request_bytes, 'a')).size() == app::max_request_bytes);
    check_message(usage_error([] { app::parse_request(std::string(app::max_request_bytes + 1, 'a')); }),
                  {"--request", "65537 bytes", "65536"});
    // Escapes count as the bytes they stand for.
    std::string escaped;
    for (std::size_t i = 0; i < app::max_request_bytes / 2 + 1; ++i) escaped += "\\r\\n";
    check_message(usage_error([&] { app::parse_request(escaped); }), {"--request", "65538 bytes"});
}

namespace {
/// A scratch directory of the test's own, removed at the end.
struct TempDir {
    std::string path;
    TempDir() {
        char name[] = "/tmp/tcpprobe_parse_XXXXXX";
        REQUIRE(::mkdtemp(name) != nullptr);
        path = name;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::string file(std::string_view name, std::string_view contents) const {
        std::string p = path + "/" + std::string(name);
        std::ofstream(p, std::ios::binary) << contents;
        return p;
    }
};
}  // namespace

TEST_CASE("parse: parse_request: @FILE reads a regular file as it is, at most 64 KiB") {
    TempDir dir;
    std::string req = dir.file("req.txt", std::string("GET /\r\n\0x", 9));
    CHECK(app::parse_request("@" + req) == wire::ByteVec{'G', 'E', 'T', ' ', '/', '\r', '\n', 0, 'x'});
    CHECK(app::parse_request("@" + dir.file("exact", std::string(app::max_request_bytes, 'z'))).size() == app::max_request_bytes);
    SUBCASE("a larger file is refused, naming it and the limit") {
        std::string big = dir.file("big", std::string(app::max_request_bytes + 1, 'z'));
        check_message(usage_error([&] { app::parse_request("@" + big); }), {"--request", big, "65537 bytes", "65536"});
    }
    SUBCASE("/dev/zero (once an endless read, then out of memory) is not a regular file") {
        check_message(usage_error([] { app::parse_request("@/dev/zero"); }), {"--request '@/dev/zero'", "not a regular file"});
    }
    SUBCASE("a directory (once an empty request) is not a regular file") {
        check_message(usage_error([&] { app::parse_request("@" + dir.path); }), {dir.path, "not a regular file"});
        check_message(usage_error([] { app::parse_request("@/etc"); }), {"/etc", "not a regular file"});
    }
    SUBCASE("a FIFO is refused at once, not waited on") {
        std::string fifo = dir.path + "/fifo";
        REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
        check_message(usage_error([&] { app::parse_request("@" + fifo); }), {fifo, "not a regular file"});
    }
    SUBCASE("a missing file names the path and the reason") {
        check_message(usage_error([&] { app::parse_request("@" + dir.path + "/none"); }), {dir.path + "/none", "No such file"});
    }
}

TEST_CASE("parse: parse_write_path: -w - is refused, standard output carries the results") {
    CHECK(app::parse_write_path("run.pcap") == "run.pcap");
    check_message(usage_error([] { app::parse_write_path("-"); }), {"-w -", "standard output", "file name"});
}

TEST_CASE("parse: parse_write_limit: bytes or K/M/G (powers of 1024), at least 1024, no overflow") {
    CHECK(app::parse_write_limit("65536") == 65536);
    CHECK(app::parse_write_limit("512K") == 512u * 1024);
    CHECK(app::parse_write_limit("10m") == 10u * 1024 * 1024);
    CHECK(app::parse_write_limit("1G") == 1ULL << 30);
    CHECK(app::parse_write_limit("1024") == 1024);
    for (const char* bad : {"", "K", "1023", "0", "-5", "10X", "1.5M", "M10", "99999999999999999999", "2000000000G"}) {
        CAPTURE(bad);
        const std::string msg = test::usage_error([&] { app::parse_write_limit(bad); });
        CHECK(msg.find("--write-limit") != std::string::npos);
    }
}
