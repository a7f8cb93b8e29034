// A fluent builder for the segments a test peer sends, written the way packetdrill
// scripts are: the peer's sequence number relative to its own ISN (IRS from our side),
// its acknowledgment number relative to our ISS.
//
//   seg("S.").seq(0).ack(1).win(65535).mss(1460)      // < S. 0:0(0) ack 1 win 65535 <mss 1460>
//   seg("P.").seq(1).ack(1).data(100)                  // < P. 1:101(100) ack 1
//
// Both ISNs sit just below 2^32 by default, so every test crosses the sequence-number
// wrap-around without asking for it. Payload made by data(n) is a function of the
// sequence number it sits at (stream_bytes), so a retransmission carries the same bytes
// as the original and a test can say exactly which bytes must be delivered.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "tcpprobe/wire/segment.hpp"

namespace tcpprobe::test {

/// Both ends of the test connection and both initial sequence numbers.
struct Flow {
    wire::FourTuple ours;  ///< (local = the TCB under test, remote = the peer)
    wire::Seq iss;         ///< our initial sequence number
    wire::Seq irs;         ///< the peer's initial sequence number
};

/// 198.18.0.1:40000 (us) to 198.18.0.2:80 (peer); ISS 2^32-2, IRS 2^32-256.
Flow default_flow();

/// tcpdump's flag letters as format_flags prints them ("S", "S.", "F.", "R", "R.", "P.",
/// ".", "FP.", "SE", "none") to flag bits. Throws std::invalid_argument on anything else.
std::uint16_t parse_flags(std::string_view letters);

/// The bytes of the peer's stream starting at relative sequence number `rel_seq`.
wire::ByteVec stream_bytes(std::uint32_t rel_seq, std::size_t n);

class SegmentBuilder {
public:
    explicit SegmentBuilder(Flow flow = default_flow()) : flow_(flow) {}

    SegmentBuilder& flags(std::string_view letters) { flags_ = parse_flags(letters); return *this; }
    SegmentBuilder& flags(std::uint16_t bits) { flags_ = bits; return *this; }
    /// Sequence number relative to the peer's ISN (IRS).
    SegmentBuilder& seq(std::uint32_t rel) { seq_rel_ = rel; seq_abs_.reset(); return *this; }
    SegmentBuilder& seq_abs(wire::Seq s) { seq_abs_ = s; return *this; }
    /// Acknowledgment number relative to our ISS. Does not set the ACK flag: flags say that.
    SegmentBuilder& ack(std::uint32_t rel) { ack_rel_ = rel; ack_abs_.reset(); return *this; }
    SegmentBuilder& ack_abs(wire::Seq a) { ack_abs_ = a; return *this; }
    SegmentBuilder& win(std::uint16_t w) { window_ = w; return *this; }
    SegmentBuilder& urg(std::uint16_t ptr) { urgent_ = ptr; return *this; }

    SegmentBuilder& option(wire::TcpOption o) { options_.push_back(std::move(o)); return *this; }
    SegmentBuilder& options(wire::OptionList l) { options_ = std::move(l); return *this; }
    SegmentBuilder& mss(std::uint16_t v) { return option(wire::opt::Mss{v}); }
    SegmentBuilder& wscale(std::uint8_t shift) { return option(wire::opt::WindowScale{shift}); }
    SegmentBuilder& sack_ok() { return option(wire::opt::SackPermitted{}); }
    SegmentBuilder& nop() { return option(wire::opt::Nop{}); }
    SegmentBuilder& ts(std::uint32_t val, std::uint32_t ecr) { return option(wire::opt::Timestamps{val, ecr}); }

    /// n bytes of the peer's stream at this segment's sequence number (see stream_bytes).
    SegmentBuilder& data(std::size_t n) { data_len_ = n; payload_.reset(); return *this; }
    SegmentBuilder& text(std::string_view s) { return payload(wire::ByteVec(s.begin(), s.end())); }
    SegmentBuilder& payload(wire::ByteVec p) { payload_ = std::move(p); return *this; }

    /// Rebases the relative numbers on another flow (the scripted peer uses its own).
    SegmentBuilder& on(const Flow& f) { flow_ = f; return *this; }
    const Flow& flow() const { return flow_; }

    wire::Segment build() const;
    operator wire::Segment() const { return build(); }  // NOLINT: implicit so inject() reads well

private:
    Flow flow_;
    std::uint16_t flags_ = 0;
    std::uint32_t seq_rel_ = 0;
    std::optional<wire::Seq> seq_abs_;
    std::uint32_t ack_rel_ = 0;
    std::optional<wire::Seq> ack_abs_;
    std::uint16_t window_ = 65535;
    std::uint16_t urgent_ = 0;
    wire::OptionList options_;
    std::size_t data_len_ = 0;
    std::optional<wire::ByteVec> payload_;
};

/// A peer segment with the given flags, on the default flow.
inline SegmentBuilder seg(std::string_view flags) { return SegmentBuilder{}.flags(flags); }
inline SegmentBuilder seg(std::string_view flags, const Flow& flow) { return SegmentBuilder{flow}.flags(flags); }

}  // namespace tcpprobe::test
