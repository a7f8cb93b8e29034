// libFuzzer target for wire::decode_frame, the single entry point for untrusted bytes.
//
// Input: one selector byte choosing the link type (modulo the table below, whose last
// entry is a DLT we do not decode), then the frame. Whatever decodes is formatted (with
// and without ISS/IRS, both directions) and its options are re-encoded. ASan/UBSan catch
// memory and arithmetic errors; the checks below abort() on broken invariants, which are
// real findings:
//   - a decoded option list (no options_error) re-encodes to the bytes it came from, up
//     to and including the first EOL, and decodes back to the same list;
//   - the options kept before an options_error still encode within 40 bytes;
//   - a truncated capture never claims a checksum verdict.
// Seeds: tests/fuzz/corpus/, real frames from tests/fixtures/ behind their selector byte.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "tcpprobe/wire/format.hpp"
#include "tcpprobe/wire/icmp.hpp"
#include "tcpprobe/wire/linktype.hpp"
#include "tcpprobe/wire/packet.hpp"
#include "tcpprobe/wire/tcp_options.hpp"

namespace {

using namespace tcpprobe;
using namespace tcpprobe::wire;

constexpr int link_types[] = {dlt::en10mb, dlt::linux_sll, dlt::linux_sll2, dlt::raw, dlt::raw_bsd,
                              dlt::raw_file, dlt::ipv4, dlt::null, dlt::loop, 105 /* 802.11 */};

void check_options(const Segment& s) {
    auto encoded = encode_options(s.options);
    // Every option re-encodes to as many bytes as it was decoded from, so a list decoded
    // from at most 40 bytes always fits again, with or without a later error.
    if (!encoded.ok() || encoded_size(s.options) > s.raw_options.size()) std::abort();
    if (s.options_error) return;

    const ByteVec& out = *encoded;
    const ByteVec& raw = s.raw_options;
    // Byte for byte up to the end of the list (EOL included); after an EOL the capture may
    // hold any padding, the encoder writes zeros.
    const std::size_t used = encoded_size(s.options);
    if (out.size() > raw.size()) std::abort();
    for (std::size_t i = 0; i < used; ++i)
        if (out[i] != raw[i]) std::abort();
    for (std::size_t i = used; i < out.size(); ++i)
        if (out[i] != 0) std::abort();
    const bool ends_with_eol = !s.options.empty() && std::holds_alternative<opt::Eol>(s.options.back());
    if (!ends_with_eol && used != raw.size()) std::abort();  // without EOL the list covers every byte

    auto again = decode_options(out);
    if (!again.ok() || *again != s.options) std::abort();
}

void exercise_segment(const DecodedPacket& p, const Segment& s) {
    if (p.truncated && s.checksum_ok.has_value()) std::abort();

    std::string sink;
    sink += format_segment_line(Duration{0}, s, {Direction::Out, std::nullopt, std::nullopt});
    sink += format_segment_line(Duration{123456789}, s, {Direction::In, std::nullopt, std::nullopt});
    sink += format_segment_line(Duration{1}, s, {Direction::Out, s.seq - 1, s.ack - 1});
    sink += format_segment_line(Duration{-5}, s, {Direction::In, s.ack, s.seq});
    sink += format_segment(s, {Direction::Out, s.seq, std::nullopt});
    sink += to_string(s.src) + to_string(s.dst);
    if (sink.empty()) std::abort();

    check_options(s);
}

void exercise_icmp(const IcmpError& e) {
    std::string sink = describe_icmp(e.type, e.code) + to_string(e.reporter) + to_string(e.quoted_src) +
                       to_string(e.quoted_dst);
    if (sink.empty()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const int link_type = link_types[data[0] % std::size(link_types)];
    Bytes frame{data + 1, size - 1};

    auto decoded = decode_frame(link_type, frame);
    if (!decoded.ok()) {
        if (to_string(decoded.error()).empty()) std::abort();
        return 0;
    }
    if (const Segment* s = decoded->segment()) {
        if (s->payload.size() > frame.size()) std::abort();
        exercise_segment(*decoded, *s);
    } else if (const IcmpError* e = decoded->icmp()) {
        exercise_icmp(*e);
    } else {
        std::abort();
    }
    return 0;
}
