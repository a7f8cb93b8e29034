// Peer segment construction for tests; see segment_builder.hpp.
#include "support/segment_builder.hpp"

#include <stdexcept>
#include <string>

#include "tcpprobe/wire/tcp_header.hpp"

namespace tcpprobe::test {

using namespace tcpprobe::wire;

Flow default_flow() {
    Flow f;
    f.ours.local = {Ipv4Addr{0xC6120001}, 40000};   // 198.18.0.1
    f.ours.remote = {Ipv4Addr{0xC6120002}, 80};     // 198.18.0.2
    f.iss = Seq{0xFFFFFFFEu};  // our SYN takes ...FE, our first data byte or FIN ...FF, then 0
    f.irs = Seq{0xFFFFFF00u};  // the peer's 256th byte wraps
    return f;
}

std::uint16_t parse_flags(std::string_view letters) {
    if (letters == "none") return 0;
    std::uint16_t bits = 0;
    for (char c : letters) {
        switch (c) {
            case 'F': bits |= flag::fin; break;
            case 'S': bits |= flag::syn; break;
            case 'R': bits |= flag::rst; break;
            case 'P': bits |= flag::psh; break;
            case '.': bits |= flag::ack; break;
            case 'U': bits |= flag::urg; break;
            case 'E': bits |= flag::ece; break;
            case 'W': bits |= flag::cwr; break;
            case 'a': bits |= flag::ae; break;
            default: throw std::invalid_argument("parse_flags: unknown flag letter in \"" + std::string(letters) + "\"");
        }
    }
    return bits;
}

ByteVec stream_bytes(std::uint32_t rel_seq, std::size_t n) {
    // Relative sequence 1 is the first data byte: 'a', 'b', ... 'z', 'a', ...
    ByteVec out(n);
    for (std::size_t i = 0; i < n; ++i)
        out[i] = static_cast<std::uint8_t>('a' + (rel_seq - 1u + static_cast<std::uint32_t>(i)) % 26u);
    return out;
}

Segment SegmentBuilder::build() const {
    Segment s;
    s.src = flow_.ours.remote;
    s.dst = flow_.ours.local;
    s.seq = seq_abs_.value_or(flow_.irs + seq_rel_);
    s.ack = ack_abs_.value_or(flow_.iss + ack_rel_);
    s.flags = flags_;
    s.window = window_;
    s.urgent = urgent_;
    s.options = options_;
    if (payload_)
        s.payload = *payload_;
    else
        // Data rides after the SYN when there is one (a SYN-ACK with data starts at 1).
        s.payload = stream_bytes(relative(s.seq, flow_.irs) + ((flags_ & flag::syn) ? 1u : 0u), data_len_);
    return s;
}

}  // namespace tcpprobe::test
