// The RST guard's table (io/nft_guard.hpp): its name and rule text are pure functions,
// checked against golden strings; a failure to create it is classified without nft.
#include <doctest/doctest.h>

#include <regex>
#include <string>

#include "tcpprobe/app/edge.hpp"
#include "tcpprobe/io/nft_guard.hpp"

using namespace tcpprobe;

TEST_SUITE_BEGIN("io");

TEST_CASE("nft: guard_table_name: the PID and eight hex digits of randomness") {
    CHECK(io::guard_table_name(1, 0) == "tcpprobe_1_00000000");
    CHECK(io::guard_table_name(4242, 0xdeadbeef) == "tcpprobe_4242_deadbeef");
    CHECK(io::guard_table_name(4194304, 0x1a) == "tcpprobe_4194304_0000001a");
    // Two runs that are both PID 1 (two PID namespaces, one network namespace) once both
    // used "tcpprobe_1"; the second failed with a misleading "CAP_NET_ADMIN is required".
    io::Random a;
    io::Random b;
    const auto name_a = io::guard_table_name(1, static_cast<std::uint32_t>(a()));
    const auto name_b = io::guard_table_name(1, static_cast<std::uint32_t>(b()));
    CHECK(name_a != name_b);  // 1 in 2^32 to fail
    CHECK(std::regex_match(name_a, std::regex("tcpprobe_1_[0-9a-f]{8}")));
}

TEST_CASE("nft: rst_guard_ruleset: golden text with the run's table name") {
    const std::string table = io::guard_table_name(77, 0x0badcafe);
    const std::string rules = io::rst_guard_ruleset(table, wire::Ipv4Addr{0xC6120001}, {40000, 40001},
                                                    {wire::Ipv4Addr{0xC6120002}}, app::packet_mark);
    CHECK(rules ==
          "table ip tcpprobe_77_0badcafe {\n"
          "  flags owner\n"
          "  chain rst_guard {\n"
          "    type filter hook output priority raw; policy accept;\n"
          "    ip saddr 198.18.0.1 ip daddr { 198.18.0.2 } tcp sport { 40000, 40001 } tcp flags & rst == rst meta mark != 0x74637070 drop\n"
          "  }\n"
          "}\n");
}

TEST_CASE("nft: listen_ruleset: golden text with the run's table name") {
    const std::string table = io::guard_table_name(8, 0xffffffff);
    CHECK(io::listen_ruleset(table, wire::Ipv4Addr{0xC6120001}, 8080, app::packet_mark) ==
          "table ip tcpprobe_8_ffffffff {\n"
          "  flags owner\n"
          "  chain syn_drop {\n"
          "    type filter hook prerouting priority raw; policy accept;\n"
          "    ip daddr 198.18.0.1 tcp dport 8080 tcp flags & (syn | ack | rst) == syn drop\n"
          "  }\n"
          "  chain rst_guard {\n"
          "    type filter hook output priority raw; policy accept;\n"
          "    ip saddr 198.18.0.1 tcp sport 8080 tcp flags & rst == rst meta mark != 0x74637070 drop\n"
          "  }\n"
          "}\n");
}

TEST_CASE("nft: classify_nft_failure: EPERM is a missing capability only when no such table exists") {
    const char* eperm = "Error: Could not process rule: Operation not permitted\ntable ip tcpprobe_1_00000000 {\n";
    // Another process owns a table of that name (flags owner): the kernel says EPERM too.
    CHECK(io::classify_nft_failure(eperm, true) == io::NftFailure::TableExists);
    CHECK(io::classify_nft_failure(eperm, false) == io::NftFailure::MissingCapability);
    CHECK(io::classify_nft_failure("Error: Could not process rule: File exists", false) == io::NftFailure::TableExists);
    CHECK(io::classify_nft_failure("Error: Could not process rule: No such file or directory", false) == io::NftFailure::Other);
    CHECK(io::classify_nft_failure("", true) == io::NftFailure::Other);
}

TEST_SUITE_END();
