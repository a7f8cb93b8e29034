// Hex helpers for raw options (--option KIND:HEX) and for reports.
#include "tcpprobe/wire/bytes.hpp"

#include <fmt/format.h>

namespace tcpprobe::wire {

namespace {
int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
}  // namespace

bool parse_hex(std::string_view text, ByteVec& out) {
    if (text.starts_with("0x") || text.starts_with("0X")) text.remove_prefix(2);
    ByteVec result;
    int high = -1;
    for (char c : text) {
        if (c == ':' || c == ' ') {
            if (high >= 0) return false;  // separators only between whole bytes
            continue;
        }
        int v = hex_value(c);
        if (v < 0) return false;
        if (high < 0) {
            high = v;
        } else {
            result.push_back(static_cast<std::uint8_t>((high << 4) | v));
            high = -1;
        }
    }
    if (high >= 0) return false;
    out = std::move(result);
    return true;
}

std::string to_hex(Bytes b) {
    std::string s;
    s.reserve(b.size() * 2);
    for (auto x : b) fmt::format_to(std::back_inserter(s), "{:02x}", x);
    return s;
}

}  // namespace tcpprobe::wire
