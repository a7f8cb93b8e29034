// Parsers for command-line values. Each throws io::UsageError with a one-line message
// naming the bad value and what is accepted (exit 64).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tcpprobe/probe/schedule.hpp"
#include "tcpprobe/time.hpp"
#include "tcpprobe/wire/tcp_options.hpp"

namespace tcpprobe::app {

struct Target {
    std::string host;
    std::uint16_t port = 0;
};

/// A host and a list of ports: "host:80", "host:80,443", "host:8000-8100", "host:22,8000-8010".
struct TargetSpec {
    std::string host;
    std::vector<std::uint16_t> ports;  ///< in the order given, duplicates removed
};
inline constexpr std::size_t max_ports_per_target = 65535;
TargetSpec parse_target_spec(std::string_view text);

/// "host:port" (name or dotted quad). "[v6]:port" is refused: IPv6 is not supported yet.
Target parse_target(std::string_view text);
/// Refuses 0.0.0.0, broadcast and multicast (and the 240/4 reserved block).
void check_target_address(std::uint32_t addr, std::string_view shown);
/// "250ms", "2s", "1.5s", "100us", "2m"; a bare number is seconds.
Duration parse_duration(std::string_view text, std::string_view option);
/// --tolerance: "50ms", "10%" or both ("50ms,10%"): a floor in parse_duration's grammar
/// (a unit is required: a bare number could be either) and a percentage of the gap.
probe::Tolerance parse_tolerance(std::string_view text, std::string_view option);
/// "ece,cwr" or "E,W": the eight classic flag names (or tcpdump letters).
std::uint16_t parse_flags(std::string_view text);
/// "KIND:HEX" (KIND 0-255; HEX the bytes after kind and length). Kinds 0 and 1 take no
/// bytes. A well-formed known kind becomes its typed option (so it is negotiated).
wire::TcpOption parse_raw_option(std::string_view text);
/// The largest request a probe sends (--request): 64 KiB, enough for any request line,
/// header block or TLS ClientHello a probe needs, and small enough that the TCB's segments
/// of at least 16 bytes stay a bounded number.
inline constexpr std::size_t max_request_bytes = 65536;
/// --request: "TEXT" with escapes (\r \n \t \\ \0 \xHH) or "@FILE" (a regular file, read
/// verbatim as the invoking user); at most max_request_bytes either way.
wire::ByteVec parse_request(std::string_view text);
/// -w FILE: the capture's path; "-" is refused (standard output carries the results).
std::string parse_write_path(std::string_view text);
/// --write-limit SIZE: bytes, or with a K, M or G suffix (powers of 1024); at least 1 KiB
/// (the pcap file header and a packet or two). Throws UsageError.
std::uint64_t parse_write_limit(std::string_view text);
/// Decimal or 0x-hex unsigned number within [lo, hi].
std::uint64_t parse_number(std::string_view text, std::string_view option, std::uint64_t lo, std::uint64_t hi);

}  // namespace tcpprobe::app
