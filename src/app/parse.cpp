// Command-line value parsers (see parse.hpp).
#include "tcpprobe/app/parse.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/files.hpp"
#include "tcpprobe/wire/tcp_header.hpp"

namespace tcpprobe::app {

using io::UsageError;

std::uint64_t parse_number(std::string_view text, std::string_view option, std::uint64_t lo, std::uint64_t hi) {
    std::string_view digits = text;
    int base = 10;
    if (digits.starts_with("0x") || digits.starts_with("0X")) {
        digits.remove_prefix(2);
        base = 16;
    }
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v, base);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || v < lo || v > hi)
        throw UsageError(fmt::format("{}: '{}' is not a number in {}..{}", option, text, lo, hi));
    return v;
}

TargetSpec parse_target_spec(std::string_view text) {
    if (text.starts_with("["))
        throw UsageError(fmt::format("target '{}': IPv6 is not supported yet (use an IPv4 address or name)", text));
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size())
        throw UsageError(fmt::format("target '{}': expected HOST:PORTS, e.g. 192.0.2.1:80, host:80,443 or host:8000-8100", text));
    std::string_view host = text.substr(0, colon);
    if (host.find(':') != std::string_view::npos)
        throw UsageError(fmt::format("target '{}': IPv6 is not supported yet (use an IPv4 address or name)", text));
    TargetSpec t;
    t.host = std::string(host);
    std::vector<bool> seen(65536, false);
    std::string_view list = text.substr(colon + 1);
    std::size_t at = 0;
    while (at <= list.size()) {
        auto comma = list.find(',', at);
        std::string_view item = list.substr(at, comma == std::string_view::npos ? std::string_view::npos : comma - at);
        const std::string what = fmt::format("target '{}': port", text);
        auto dash = item.find('-');
        std::uint64_t lo, hi;
        if (dash == std::string_view::npos) {
            lo = hi = parse_number(item, what, 1, 65535);
        } else {
            lo = parse_number(item.substr(0, dash), what, 1, 65535);
            hi = parse_number(item.substr(dash + 1), what, 1, 65535);
            if (hi < lo) throw UsageError(fmt::format("target '{}': port range {} runs backwards", text, item));
        }
        for (std::uint64_t p = lo; p <= hi; ++p)
            if (!seen[p]) {
                seen[p] = true;
                t.ports.push_back(static_cast<std::uint16_t>(p));
            }
        if (comma == std::string_view::npos) break;
        at = comma + 1;
    }
    return t;
}

Target parse_target(std::string_view text) {
    TargetSpec spec = parse_target_spec(text);
    if (spec.ports.size() != 1)
        throw UsageError(fmt::format("target '{}': this command takes one HOST:PORT, e.g. 192.0.2.1:80", text));
    return {std::move(spec.host), spec.ports.front()};
}

void check_target_address(std::uint32_t a, std::string_view shown) {
    if (a == 0) throw UsageError(fmt::format("target {}: 0.0.0.0 is not a host", shown));
    if (a == 0xFFFFFFFFu) throw UsageError(fmt::format("target {}: broadcast addresses are refused", shown));
    if ((a >> 28) == 0xE) throw UsageError(fmt::format("target {}: multicast addresses are refused", shown));
    if ((a >> 28) == 0xF) throw UsageError(fmt::format("target {}: reserved (240.0.0.0/4) addresses are refused", shown));
}

Duration parse_duration(std::string_view text, std::string_view option) {
    std::size_t split = 0;
    while (split < text.size() && (std::isdigit(static_cast<unsigned char>(text[split])) || text[split] == '.')) ++split;
    std::string number(text.substr(0, split));
    std::string_view unit = text.substr(split);
    double scale = 0;
    if (unit.empty() || unit == "s") scale = 1e9;
    else if (unit == "ms") scale = 1e6;
    else if (unit == "us") scale = 1e3;
    else if (unit == "ns") scale = 1;
    else if (unit == "m" || unit == "min") scale = 60e9;
    double v = 0;
    bool ok = !number.empty() && scale > 0 && std::count(number.begin(), number.end(), '.') <= 1;
    if (ok) {
        char* end = nullptr;
        v = std::strtod(number.c_str(), &end);
        ok = end == number.c_str() + number.size() && std::isfinite(v) && v * scale < 1e18;
    }
    if (!ok) throw UsageError(fmt::format("{}: '{}' is not a duration (e.g. 250ms, 2s, 1.5s, 100us, 2m)", option, text));
    return Duration{static_cast<std::int64_t>(std::llround(v * scale))};
}

probe::Tolerance parse_tolerance(std::string_view text, std::string_view option) {
    auto bad = [&] {
        return io::UsageError(fmt::format("{}: '{}' is not a tolerance (e.g. 50ms, 10% or 50ms,10%)", option, text));
    };
    probe::Tolerance t{Duration::zero(), 0.0};
    std::size_t at = 0;
    for (;;) {
        const std::size_t comma = text.find(',', at);
        const std::string_view part = text.substr(at, comma == std::string_view::npos ? std::string_view::npos : comma - at);
        if (part.empty()) throw bad();
        if (part.back() == '%') {
            double v = 0;
            const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size() - 1, v);
            if (ec != std::errc{} || end != part.data() + part.size() - 1 || !(v >= 0 && v <= 1000)) throw bad();
            t.percent = v;
        } else {
            if (std::isdigit(static_cast<unsigned char>(part.back()))) throw bad();  // no unit
            try {
                t.floor = parse_duration(part, option);
            } catch (const io::UsageError&) {
                throw bad();
            }
        }
        if (comma == std::string_view::npos) return t;
        at = comma + 1;
    }
}

std::uint16_t parse_flags(std::string_view text) {
    static constexpr std::pair<std::string_view, std::uint16_t> names[] = {
        {"fin", wire::flag::fin}, {"syn", wire::flag::syn}, {"rst", wire::flag::rst}, {"psh", wire::flag::psh},
        {"ack", wire::flag::ack}, {"urg", wire::flag::urg}, {"ece", wire::flag::ece}, {"cwr", wire::flag::cwr},
        {"f", wire::flag::fin},   {"s", wire::flag::syn},   {"r", wire::flag::rst},   {"p", wire::flag::psh},
        {".", wire::flag::ack},   {"u", wire::flag::urg},   {"e", wire::flag::ece},   {"w", wire::flag::cwr}};
    std::uint16_t flags = 0;
    std::size_t at = 0;
    while (at <= text.size()) {
        auto comma = text.find_first_of(",|+", at);
        std::string word(text.substr(at, comma == std::string_view::npos ? std::string_view::npos : comma - at));
        std::transform(word.begin(), word.end(), word.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        if (word == "ae")
            throw UsageError("--flags: AE cannot be sent (libnet builds only the eight classic flag bits)");
        auto it = std::find_if(std::begin(names), std::end(names), [&](const auto& n) { return n.first == word; });
        if (it == std::end(names))
            throw UsageError(fmt::format("--flags: unknown flag '{}' (accepted: fin,syn,rst,psh,ack,urg,ece,cwr)", word));
        flags |= it->second;
        if (comma == std::string_view::npos) break;
        at = comma + 1;
    }
    return flags;
}

wire::TcpOption parse_raw_option(std::string_view text) {
    auto colon = text.find(':');
    std::string_view kind_text = text.substr(0, colon);
    auto kind = static_cast<std::uint8_t>(parse_number(kind_text, fmt::format("--option '{}': kind", text), 0, 255));
    wire::ByteVec data;
    if (colon != std::string_view::npos && !wire::parse_hex(text.substr(colon + 1), data))
        throw UsageError(fmt::format("--option '{}': expected KIND:HEX, e.g. 30:0102 or 1 for a NOP", text));
    if (kind == wire::opt::kind_eol || kind == wire::opt::kind_nop) {
        if (!data.empty()) throw UsageError(fmt::format("--option '{}': kinds 0 and 1 are single bytes", text));
        return kind == 0 ? wire::TcpOption{wire::opt::Eol{}} : wire::TcpOption{wire::opt::Nop{}};
    }
    if (data.size() > wire::max_option_bytes - 2)
        throw UsageError(fmt::format("--option '{}': {} bytes do not fit in 40 bytes of options", text, data.size() + 2));
    // A well-formed known kind is decoded to its typed form so that it is negotiated.
    wire::ByteVec tlv{kind, static_cast<std::uint8_t>(data.size() + 2)};
    tlv.insert(tlv.end(), data.begin(), data.end());
    auto decoded = wire::decode_options(tlv);
    if (decoded && decoded->size() == 1) return decoded->front();
    return wire::opt::Unknown{kind, std::move(data)};
}

namespace {
bool is_hex_digit(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }
}  // namespace

wire::ByteVec parse_request(std::string_view text) {
    if (text.starts_with("@")) {
        // Read as the user who ran sudo, a regular file only: @/dev/zero would never end,
        // @/etc would be an empty request, and root's files are not the user's to send.
        std::string path(text.substr(1));
        return io::read_user_file(path, max_request_bytes, fmt::format("--request '{}'", text));
    }
    wire::ByteVec out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c != '\\') {
            out.push_back(static_cast<std::uint8_t>(c));
            continue;
        }
        if (++i == text.size()) throw UsageError(fmt::format("--request '{}': a lone backslash at the end", text));
        switch (text[i]) {
            case 'r': out.push_back('\r'); break;
            case 'n': out.push_back('\n'); break;
            case 't': out.push_back('\t'); break;
            case '0': out.push_back(0); break;
            case '\\': out.push_back('\\'); break;
            case 'x': {
                // Exactly two hex digits: no "0x" prefix, no separators.
                std::string_view digits = text.substr(i + 1, 2);
                if (digits.size() != 2 || !is_hex_digit(digits[0]) || !is_hex_digit(digits[1]))
                    throw UsageError(fmt::format("--request '{}': bad escape \\x{} (\\x needs two hex digits, e.g. \\x0a)", text, digits));
                wire::ByteVec b;
                wire::parse_hex(digits, b);
                out.push_back(b.at(0));
                i += 2;
                break;
            }
            default:
                throw UsageError(fmt::format("--request '{}': unknown escape \\{} (accepted: \\r \\n \\t \\0 \\\\ \\xHH)", text, text[i]));
        }
    }
    if (out.size() > max_request_bytes)
        throw UsageError(fmt::format("--request: {} bytes, more than the {} accepted", out.size(), max_request_bytes));
    return out;
}

std::uint64_t parse_write_limit(std::string_view text) {
    std::uint64_t unit = 1;
    std::string_view digits = text;
    if (!digits.empty()) {
        switch (digits.back()) {
            case 'K': case 'k': unit = 1ULL << 10; break;
            case 'M': case 'm': unit = 1ULL << 20; break;
            case 'G': case 'g': unit = 1ULL << 30; break;
            default: break;
        }
        if (unit != 1) digits.remove_suffix(1);
    }
    std::uint64_t n = 0;
    auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    const bool ok = !digits.empty() && ec == std::errc() && p == digits.data() + digits.size() && n <= (1ULL << 50) / unit;
    if (!ok || n * unit < 1024)
        throw UsageError(fmt::format("--write-limit '{}': expected a size of at least 1024 bytes, e.g. 65536, 512K, 10M or 1G", text));
    return n * unit;
}

std::string parse_write_path(std::string_view text) {
    if (text == "-")
        throw UsageError("-w -: standard output carries the results (text or JSON); give -w a file name for the capture");
    return std::string(text);
}

}  // namespace tcpprobe::app
