// HOST:PORTS parsing for ping and handshake: lists, ranges, duplicates and bad input.
#include <doctest/doctest.h>

#include "tcpprobe/app/parse.hpp"
#include "tcpprobe/io/errors.hpp"

using tcpprobe::app::parse_target_spec;
using tcpprobe::io::UsageError;

TEST_CASE("targets: a single port, a list, a range and a mix keep their order without duplicates") {
    CHECK(parse_target_spec("198.18.0.2:80").ports == std::vector<std::uint16_t>{80});
    CHECK(parse_target_spec("host:80,443").ports == std::vector<std::uint16_t>{80, 443});
    auto r = parse_target_spec("example.org:8000-8003");
    CHECK(r.host == "example.org");
    CHECK(r.ports == std::vector<std::uint16_t>{8000, 8001, 8002, 8003});
    CHECK(parse_target_spec("h:22,8000-8001,22,8001").ports == std::vector<std::uint16_t>{22, 8000, 8001});
    CHECK(parse_target_spec("h:1-65535").ports.size() == 65535);
}

TEST_CASE("targets: bad HOST:PORTS are one-line usage errors naming the value") {
    auto message = [](const char* text) {
        try {
            (void)parse_target_spec(text);
        } catch (const UsageError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    for (const char* bad : {"host", "host:", ":80", "host:0", "host:65536", "host:80-", "host:-80", "host:90-80",
                            "host:80,,81", "host:8o", "[::1]:80", "fe80::1:80"}) {
        CAPTURE(bad);
        std::string m = message(bad);
        CHECK(m != "no error");
        CHECK(m.find('\n') == std::string::npos);
        CHECK(m.find(bad) != std::string::npos);
    }
    CHECK(message("h:90-80").find("backwards") != std::string::npos);
    CHECK(message("[::1]:80").find("IPv6") != std::string::npos);
}
