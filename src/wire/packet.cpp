// Whole-packet decoding. Strictness lives in the views; this file only chains them and
// records what a report needs (checksums, truncation, IP fields).
#include "tcpprobe/wire/packet.hpp"

#include "tcpprobe/wire/ipv4.hpp"
#include "tcpprobe/wire/linktype.hpp"
#include "tcpprobe/wire/tcp_header.hpp"

namespace tcpprobe::wire {

namespace {
std::uint32_t pseudo_header_sum(Ipv4Addr src, Ipv4Addr dst, std::size_t tcp_len) {
    return (src.value >> 16) + (src.value & 0xFFFF) + (dst.value >> 16) + (dst.value & 0xFFFF) +
           ip_proto_tcp + static_cast<std::uint32_t>(tcp_len);
}
}  // namespace

Result<Segment, WireError> decode_tcp(Ipv4Addr src, Ipv4Addr dst, Bytes tcp, bool truncated) {
    auto view = TcpHeaderView::parse(tcp);
    if (!view) return Err{view.error()};
    const TcpHeaderView& h = *view;
    Segment s;
    s.src = {src, h.src_port()};
    s.dst = {dst, h.dst_port()};
    s.seq = h.seq();
    s.ack = h.ack();
    s.flags = h.flags();
    s.window = h.window();
    s.urgent = h.urgent();
    Bytes raw_opts = h.options();
    s.raw_options.assign(raw_opts.begin(), raw_opts.end());
    s.options_error = decode_options_into(raw_opts, s.options);
    Bytes payload = h.payload();
    s.payload.assign(payload.begin(), payload.end());
    if (!truncated) s.checksum_ok = internet_checksum(tcp, pseudo_header_sum(src, dst, tcp.size())) == 0;
    return s;
}

Result<DecodedPacket, WireError> decode_ipv4_packet(Bytes packet) {
    auto view = Ipv4View::parse(packet);
    if (!view) return Err{view.error()};
    const Ipv4View& ip = *view;
    if (ip.frag_offset() != 0) return Err{WireError::Fragment};
    DecodedPacket p;
    p.src = ip.src();
    p.dst = ip.dst();
    p.ip = {ip.ttl(), ip.tos(), ip.df(), ip.id()};
    p.total_length = ip.total_length();
    p.truncated = ip.truncated();
    p.ip_checksum_ok = internet_checksum(ip.header()) == 0;
    p.ip_options_len = ip.options().size();
    // A first fragment (MF set) is decoded as far as its bytes go and flagged truncated.
    bool partial = p.truncated || ip.mf();
    switch (ip.protocol()) {
        case ip_proto_tcp: {
            auto seg = decode_tcp(p.src, p.dst, ip.payload(), partial);
            if (!seg) return Err{seg.error() == WireError::TcpTruncated && ip.mf() ? WireError::Fragment : seg.error()};
            seg->ip = p.ip;
            p.truncated = partial;
            p.body = std::move(seg).value();
            return p;
        }
        case ip_proto_icmp: {
            auto err = parse_icmp_error(p.src, ip.payload());
            if (!err) return Err{err.error()};
            p.body = *err;
            return p;
        }
        default:
            return Err{WireError::NotTcp};
    }
}

Result<DecodedPacket, WireError> decode_frame(int link_type, Bytes frame) {
    auto ip = strip_link_layer(link_type, frame);
    if (!ip) return Err{ip.error()};
    return decode_ipv4_packet(*ip);
}

}  // namespace tcpprobe::wire
