// The one-line segment notation (see format.hpp for examples).
#include "tcpprobe/wire/format.hpp"

#include <fmt/format.h>

#include "tcpprobe/wire/error.hpp"

namespace tcpprobe::wire {

std::string format_flags(std::uint16_t flags) {
    // tcpdump's order and letters; ACK is "."; a segment without flags prints "none".
    static constexpr std::pair<std::uint16_t, char> letters[] = {
        {flag::fin, 'F'}, {flag::syn, 'S'}, {flag::rst, 'R'}, {flag::psh, 'P'},
        {flag::ack, '.'}, {flag::urg, 'U'}, {flag::ece, 'E'}, {flag::cwr, 'W'}, {flag::ae, 'a'}};
    std::string s;
    for (auto [bit, c] : letters)
        if (flags & bit) s.push_back(c);
    if (flags & flag::reserved) s += fmt::format("+rsv{:x}", (flags & flag::reserved) >> 9);
    return s.empty() ? "none" : s;
}

namespace {
struct OptionPrinter {
    std::string operator()(const opt::Eol&) const { return "eol"; }
    std::string operator()(const opt::Nop&) const { return "nop"; }
    std::string operator()(const opt::Mss& m) const { return fmt::format("mss {}", m.value); }
    std::string operator()(const opt::WindowScale& w) const { return fmt::format("wscale {}", w.shift); }
    std::string operator()(const opt::SackPermitted&) const { return "sackOK"; }
    std::string operator()(const opt::Sack& s) const {
        std::string out = fmt::format("sack {}", s.blocks.size());
        for (auto [l, r] : s.blocks) out += fmt::format(" {{{}:{}}}", l.raw(), r.raw());
        return out;
    }
    std::string operator()(const opt::Timestamps& t) const {
        return fmt::format("TS val {} ecr {}", t.tsval, t.tsecr);
    }
    std::string operator()(const opt::FastOpen& f) const {
        return f.cookie.empty() ? "tfo cookiereq" : fmt::format("tfo cookie {}", to_hex(f.cookie));
    }
    std::string operator()(const opt::Md5& m) const { return fmt::format("md5 {}", to_hex(m.digest)); }
    std::string operator()(const opt::Unknown& u) const {
        return u.data.empty() ? fmt::format("opt-{}", u.kind) : fmt::format("opt-{}:{}", u.kind, to_hex(u.data));
    }
};
}  // namespace

std::string format_options(const OptionList& options) {
    std::string out;
    for (const auto& o : options) {
        if (!out.empty()) out += ',';
        out += std::visit(OptionPrinter{}, o);
    }
    return out;
}

std::string format_segment(const Segment& s, const FormatContext& ctx) {
    const bool out = ctx.dir == Direction::Out;
    // Our sequence numbers are relative to ISS, the peer's to IRS; acks the other way round.
    std::optional<Seq> seq_base = out ? ctx.iss : ctx.irs;
    std::optional<Seq> ack_base = out ? ctx.irs : ctx.iss;
    auto rel = [](Seq v, std::optional<Seq> base) { return base ? relative(v, *base) : v.raw(); };

    std::string line = fmt::format("{} {} ", out ? '>' : '<', format_flags(s.flags));
    std::uint32_t start = rel(s.seq, seq_base);
    auto len = static_cast<std::uint32_t>(s.payload.size());
    line += fmt::format("{}:{}({})", start, start + len, len);
    if (s.has(flag::ack) || s.ack.raw() != 0) line += fmt::format(" ack {}", rel(s.ack, ack_base));
    line += fmt::format(" win {}", s.window);
    if (s.has(flag::urg) || s.urgent != 0) line += fmt::format(" urg {}", s.urgent);
    if (!s.options.empty() || s.options_error) {
        line += " <" + format_options(s.options);
        if (s.options_error)
            line += fmt::format("{}bad options: {}", s.options.empty() ? "" : ",", *s.options_error);
        line += '>';
    }
    if (s.checksum_ok == false) line += " [bad tcp cksum]";
    return line;
}

std::string format_segment_line(Duration since_start, const Segment& s, const FormatContext& ctx) {
    double secs = static_cast<double>(since_start.count()) / 1e9;
    return fmt::format("{:.6f} {}", secs, format_segment(s, ctx));
}

}  // namespace tcpprobe::wire
