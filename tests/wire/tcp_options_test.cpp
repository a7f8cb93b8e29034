// Tests for wire/tcp_options: ordered decode of real option lists, encode/decode round
// trips for every kind, padding and the 40-byte limit, and one named case per malformed
// shape (RFC 9293 §3.2; RFC 7323, RFC 2018, RFC 2385, RFC 7413 for the fixed lengths).
#include <doctest/doctest.h>

#include <numeric>
#include <string>

#include "fixtures/linux_capture.hpp"
#include "tcpprobe/wire/format.hpp"
#include "tcpprobe/wire/tcp_options.hpp"

using namespace tcpprobe;
using namespace tcpprobe::wire;
namespace fx = tcpprobe::fixtures;

namespace {
/// The option bytes of an Ethernet + IPv4 (IHL 5) + TCP frame.
Bytes options_of(Bytes frame) {
    Bytes tcp = frame.subspan(14 + 20);
    return tcp.subspan(20, std::size_t{tcp[12]} / 16 * 4 - 20);
}

OptionList decoded(Bytes raw) {
    auto r = decode_options(raw);
    REQUIRE_MESSAGE(r.ok(), "decode_options failed: ", std::string(to_string(r.error())));
    return std::move(r).value();
}

ByteVec encoded(const OptionList& list) {
    auto r = encode_options(list);
    REQUIRE_MESSAGE(r.ok(), "encode_options failed: ", std::string(to_string(r.error())));
    return std::move(r).value();
}

WireError decode_error(const ByteVec& raw) {
    auto r = decode_options(raw);
    REQUIRE_FALSE(r.ok());
    return r.error();
}

/// Option bytes for one option of `kind` whose length byte is `len`, with len - 2 data
/// bytes, padded with NOPs to a multiple of 4 so only the length can be wrong.
ByteVec one_option(std::uint8_t kind, std::uint8_t len) {
    ByteVec b{kind, len};
    for (std::size_t i = 2; i < len; ++i) b.push_back(static_cast<std::uint8_t>(0xA0 + i));
    while (b.size() % 4 != 0) b.push_back(opt::kind_nop);
    return b;
}

void check_bad_lengths(std::uint8_t kind, std::initializer_list<std::uint8_t> lengths) {
    for (std::uint8_t len : lengths) {
        CAPTURE(static_cast<int>(len));
        CHECK(decode_error(one_option(kind, len)) == WireError::OptionBadLength);
    }
}

ByteVec iota_bytes(std::size_t n, std::uint8_t first) {
    ByteVec b(n);
    std::iota(b.begin(), b.end(), first);
    return b;
}

opt::Md5 md5_digest() {
    opt::Md5 m;
    std::iota(m.digest.begin(), m.digest.end(), std::uint8_t{0xE0});
    return m;
}
}  // namespace

TEST_CASE("Options: the captured SYN's options decode in order") {
    OptionList list = decoded(options_of(fx::veth_syn));
    const OptionList expected{opt::Mss{65495}, opt::SackPermitted{}, opt::Timestamps{1987817756u, 0},
                              opt::Nop{}, opt::WindowScale{7}};
    CHECK(list == expected);
    CHECK(format_options(list) == "mss 65495,sackOK,TS val 1987817756 ecr 0,nop,wscale 7");
}

TEST_CASE("Options: the captured SYN-ACK's options decode in order with the echoed timestamp") {
    OptionList list = decoded(options_of(fx::veth_synack));
    const OptionList expected{opt::Mss{65495}, opt::SackPermitted{},
                              opt::Timestamps{4061863940u, 1987817756u}, opt::Nop{}, opt::WindowScale{7}};
    CHECK(list == expected);
}

TEST_CASE("Options: captured option lists re-encode byte for byte") {
    for (Bytes frame : {Bytes{fx::veth_syn}, Bytes{fx::veth_synack}, Bytes{fx::veth_data},
                        Bytes{fx::veth_fin}, Bytes{fx::lo_syn_partial_checksum}}) {
        Bytes raw = options_of(frame);
        CAPTURE(to_hex(raw));
        ByteVec again = encoded(decoded(raw));
        CHECK(to_hex(again) == to_hex(raw));
        CHECK(encoded_size(decoded(raw)) == raw.size());
    }
}

TEST_CASE("Options: a decoded list holds exactly its options (answers are kept per flow)") {
    // A flow keeps its answer segment until the report: growing the list one option at a
    // time left room for 8 options where a SYN-ACK has 5.
    for (Bytes frame : {Bytes{fx::veth_syn}, Bytes{fx::veth_synack}, Bytes{fx::veth_data}}) {
        OptionList list;
        CHECK_FALSE(decode_options_into(options_of(frame), list).has_value());
        CHECK(list.capacity() == list.size());
    }
    const ByteVec with_eol{opt::kind_mss, 4, 0x05, 0xB4, opt::kind_eol, 0, 0, 0};
    OptionList list;
    CHECK_FALSE(decode_options_into(with_eol, list).has_value());
    CHECK(list == OptionList{opt::Mss{1460}, opt::Eol{}});
    CHECK(list.capacity() == list.size());
    OptionList none;
    CHECK_FALSE(decode_options_into({}, none).has_value());
    CHECK(none.capacity() == 0);  // no options, no allocation
}

TEST_CASE("Options: the captured data segment's nop,nop,TS keeps both NOPs") {
    OptionList list = decoded(options_of(fx::veth_data));
    const OptionList expected{opt::Nop{}, opt::Nop{}, opt::Timestamps{1987817756u, 4061863940u}};
    CHECK(list == expected);
}

TEST_CASE("Options: every option kind round-trips through encode and decode") {
    struct Case {
        const char* name;
        TcpOption option;
        ByteVec bytes;  // unpadded
    };
    opt::Sack four_blocks;
    ByteVec four_block_bytes{0x05, 0x22};
    for (std::uint32_t i = 0; i < 4; ++i) {
        four_blocks.blocks.emplace_back(Seq{0xFFFFFFF0u + i * 0x100}, Seq{0xFFFFFFF0u + i * 0x100 + 0x80});
        append_be32(four_block_bytes, 0xFFFFFFF0u + i * 0x100);
        append_be32(four_block_bytes, 0xFFFFFFF0u + i * 0x100 + 0x80);
    }
    ByteVec md5_bytes{0x13, 0x12};
    for (auto x : md5_digest().digest) md5_bytes.push_back(x);
    ByteVec tfo16_bytes{0x22, 0x12};
    for (auto x : iota_bytes(16, 0x10)) tfo16_bytes.push_back(x);
    ByteVec unknown30_bytes{0x63, 0x20};
    for (auto x : iota_bytes(30, 0x40)) unknown30_bytes.push_back(x);

    const Case cases[] = {
        {"nop", opt::Nop{}, {0x01}},
        {"mss", opt::Mss{1460}, {0x02, 0x04, 0x05, 0xB4}},
        {"wscale", opt::WindowScale{14}, {0x03, 0x03, 0x0E}},
        {"sackOK", opt::SackPermitted{}, {0x04, 0x02}},
        {"sack, one block", opt::Sack{{{Seq{1}, Seq{2}}}},
         {0x05, 0x0A, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02}},
        {"sack, four blocks across the wrap", four_blocks, four_block_bytes},
        {"timestamps", opt::Timestamps{0x01020304u, 0xA0B0C0D0u},
         {0x08, 0x0A, 0x01, 0x02, 0x03, 0x04, 0xA0, 0xB0, 0xC0, 0xD0}},
        {"tfo cookie request", opt::FastOpen{}, {0x22, 0x02}},
        {"tfo 4-byte cookie", opt::FastOpen{{0xDE, 0xAD, 0xBE, 0xEF}}, {0x22, 0x06, 0xDE, 0xAD, 0xBE, 0xEF}},
        {"tfo 16-byte cookie", opt::FastOpen{iota_bytes(16, 0x10)}, tfo16_bytes},
        {"md5", md5_digest(), md5_bytes},
        {"unknown kind 30 (MPTCP) with data", opt::Unknown{30, {0x00, 0x81}}, {0x1E, 0x04, 0x00, 0x81}},
        {"unknown kind 253 without data", opt::Unknown{253, {}}, {0xFD, 0x02}},
        {"unknown kind 99 with 30 data bytes", opt::Unknown{99, iota_bytes(30, 0x40)}, unknown30_bytes},
    };
    for (const Case& c : cases) {
        CAPTURE(c.name);
        // NOPs after the option fill the word, so the list round-trips exactly.
        OptionList list{c.option};
        while (encoded_size(list) % 4 != 0) list.emplace_back(opt::Nop{});
        ByteVec wire = encoded(list);
        CHECK(to_hex(Bytes{wire}.first(c.bytes.size())) == to_hex(c.bytes));
        CHECK(encoded_size(OptionList{c.option}) == c.bytes.size());
        CHECK(decoded(wire) == list);
        CHECK(decoded(c.bytes) == OptionList{c.option});
    }
}

TEST_CASE("Options: EOL encodes as one zero byte and ends decoding") {
    CHECK(encoded({opt::Eol{}}) == ByteVec{0, 0, 0, 0});
    CHECK(decoded(ByteVec{0, 0, 0, 0}) == OptionList{opt::Eol{}});
}

TEST_CASE("Options: NOP and EOL keep their place in the list") {
    const OptionList list{opt::Nop{}, opt::Mss{536}, opt::Nop{}, opt::Nop{},
                          opt::Timestamps{7, 9}, opt::Nop{}, opt::Nop{}, opt::Eol{}};
    ByteVec wire = encoded(list);
    CHECK(to_hex(wire) == "01020402180101080a0000000700000009010100");
    CHECK(wire.size() % 4 == 0);
    CHECK(decoded(wire) == list);
    CHECK(format_options(decoded(wire)) == "nop,mss 536,nop,nop,TS val 7 ecr 9,nop,nop,eol");
}

TEST_CASE("Options: bytes after EOL are padding and are not decoded, even if malformed") {
    // mss 1460, EOL, then what would be an option with length 0.
    const ByteVec raw{0x02, 0x04, 0x05, 0xB4, 0x00, 0x02, 0x00, 0x07};
    const OptionList expected{opt::Mss{1460}, opt::Eol{}};
    CHECK(decoded(raw) == expected);
}

TEST_CASE("Options: encoding pads with zero (EOL) bytes to a multiple of 4") {
    CHECK(encoded({}).empty());
    CHECK(encoded({opt::Mss{1460}}) == ByteVec{0x02, 0x04, 0x05, 0xB4});
    CHECK(encoded({opt::WindowScale{7}}) == ByteVec{0x03, 0x03, 0x07, 0x00});
    CHECK(encoded({opt::SackPermitted{}}) == ByteVec{0x04, 0x02, 0x00, 0x00});
    CHECK(encoded({opt::Nop{}}) == ByteVec{0x01, 0x00, 0x00, 0x00});
    CHECK(encoded({opt::Timestamps{1, 2}}).size() == 12);
    // The padding reads back as an EOL, which the list then keeps.
    const OptionList with_eol{opt::WindowScale{7}, opt::Eol{}};
    CHECK(decoded(encoded({opt::WindowScale{7}})) == with_eol);
}

TEST_CASE("Options: encoded_size is the unpadded size") {
    CHECK(encoded_size({}) == 0);
    CHECK(encoded_size({opt::WindowScale{7}}) == 3);
    CHECK(encoded_size({opt::Mss{1}, opt::SackPermitted{}, opt::Timestamps{}, opt::Nop{}, opt::WindowScale{}}) == 20);
}

TEST_CASE("Options: exactly 40 bytes encode without padding") {
    // md5 (18) + sack with one block (10) + timestamps (10) + nop + nop = 40.
    const OptionList list{md5_digest(), opt::Sack{{{Seq{100}, Seq{200}}}}, opt::Timestamps{1, 2},
                          opt::Nop{}, opt::Nop{}};
    REQUIRE(encoded_size(list) == max_option_bytes);
    ByteVec wire = encoded(list);
    CHECK(wire.size() == 40);
    CHECK(decoded(wire) == list);
}

TEST_CASE("options-too-long: the encoder refuses 41 bytes") {
    const OptionList list{md5_digest(), opt::Sack{{{Seq{100}, Seq{200}}}}, opt::Timestamps{1, 2},
                          opt::Nop{}, opt::Nop{}, opt::Nop{}};
    CHECK(encoded_size(list) == 41);
    auto r = encode_options(list);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == WireError::OptionsTooLong);
    CHECK(to_string(WireError::OptionsTooLong) == "options-too-long");
}

TEST_CASE("options-too-long: one option too big for its length byte is refused, not wrapped") {
    auto r = encode_options({opt::Unknown{99, ByteVec(300, 0xAB)}});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error() == WireError::OptionsTooLong);
}

TEST_CASE("Options: an empty option space decodes to an empty list") {
    CHECK(decoded(ByteVec{}).empty());
}

TEST_CASE("Options: SACK blocks keep their order and edges") {
    ByteVec raw{0x01, 0x01, 0x05, 0x12};
    for (std::uint32_t v : {3000u, 4000u, 1000u, 2000u}) append_be32(raw, v);
    OptionList list = decoded(raw);
    REQUIRE(list.size() == 3);
    auto sack = find_option<opt::Sack>(list);
    REQUIRE(sack.has_value());
    REQUIRE(sack->blocks.size() == 2);
    CHECK(sack->blocks[0] == std::pair{Seq{3000}, Seq{4000}});
    CHECK(sack->blocks[1] == std::pair{Seq{1000}, Seq{2000}});
    CHECK(format_options(list) == "nop,nop,sack 2 {3000:4000} {1000:2000}");
}

TEST_CASE("Options: TFO cookies of 4 and 16 bytes are the valid extremes") {
    CHECK(decoded(one_option(opt::kind_fast_open, 6)) ==
          OptionList{opt::FastOpen{{0xA2, 0xA3, 0xA4, 0xA5}}, opt::Nop{}, opt::Nop{}});
    OptionList long_cookie = decoded(one_option(opt::kind_fast_open, 18));
    REQUIRE(find_option<opt::FastOpen>(long_cookie).has_value());
    CHECK(find_option<opt::FastOpen>(long_cookie)->cookie.size() == 16);
}

TEST_CASE("Options: find_option returns the first option of a kind, or nothing") {
    const OptionList list{opt::Nop{}, opt::WindowScale{3}, opt::WindowScale{9}};
    REQUIRE(find_option<opt::WindowScale>(list).has_value());
    CHECK(find_option<opt::WindowScale>(list)->shift == 3);
    CHECK_FALSE(find_option<opt::Mss>(list).has_value());
    CHECK_FALSE(find_option<opt::Timestamps>(OptionList{}).has_value());
}

TEST_CASE("Options: replace_option swaps the first option of a kind in place") {
    OptionList list{opt::Nop{}, opt::Nop{}, opt::Timestamps{1, 0}, opt::Timestamps{5, 5}};
    CHECK(replace_option(list, opt::Timestamps{100, 200}));
    const OptionList expected{opt::Nop{}, opt::Nop{}, opt::Timestamps{100, 200}, opt::Timestamps{5, 5}};
    CHECK(list == expected);
    CHECK_FALSE(replace_option(list, opt::Mss{1460}));
    CHECK(list == expected);
}

TEST_CASE("option-length-too-small: a length byte of 0") {
    CHECK(decode_error({0x02, 0x00, 0x05, 0xB4}) == WireError::OptionLengthTooSmall);
    CHECK(to_string(WireError::OptionLengthTooSmall) == "option-length-too-small");
}

TEST_CASE("option-length-too-small: a length byte of 1") {
    CHECK(decode_error({0x01, 0x01, 0x08, 0x01}) == WireError::OptionLengthTooSmall);
    CHECK(decode_error({0x63, 0x01, 0x00, 0x00}) == WireError::OptionLengthTooSmall);
}

TEST_CASE("option-past-end: a kind byte with no length byte after it") {
    CHECK(decode_error({0x01, 0x01, 0x01, 0x02}) == WireError::OptionPastEnd);
    CHECK(decode_error({0x08}) == WireError::OptionPastEnd);
    CHECK(to_string(WireError::OptionPastEnd) == "option-past-end");
}

TEST_CASE("option-past-end: a length that overruns the option space") {
    CHECK(decode_error({0x02, 0x08, 0x05, 0xB4}) == WireError::OptionPastEnd);
    // Timestamps need 10 bytes; only 8 are there.
    CHECK(decode_error({0x01, 0x01, 0x08, 0x0A, 0x00, 0x00, 0x00, 0x01}) == WireError::OptionPastEnd);
    CHECK(decode_error({0x63, 0xFF, 0x00, 0x00}) == WireError::OptionPastEnd);
}

TEST_CASE("option-bad-length: MSS is not 4 bytes") {
    check_bad_lengths(opt::kind_mss, {2, 3, 5, 6});
    CHECK(to_string(WireError::OptionBadLength) == "option-bad-length");
}

TEST_CASE("option-bad-length: window scale is not 3 bytes") {
    check_bad_lengths(opt::kind_wscale, {2, 4});
}

TEST_CASE("option-bad-length: SACK-permitted is not 2 bytes") {
    check_bad_lengths(opt::kind_sack_permitted, {3, 4, 6});
}

TEST_CASE("option-bad-length: SACK is not 2 + 8n bytes with n >= 1") {
    check_bad_lengths(opt::kind_sack, {2, 3, 9, 11, 14, 17, 19});
}

TEST_CASE("option-bad-length: timestamps are not 10 bytes") {
    check_bad_lengths(opt::kind_timestamps, {2, 6, 9, 11, 12});
}

TEST_CASE("option-bad-length: MD5 signature is not 18 bytes") {
    check_bad_lengths(opt::kind_md5, {2, 10, 17, 19});
}

TEST_CASE("option-bad-length: TFO is neither 2 nor 6..18 bytes") {
    check_bad_lengths(opt::kind_fast_open, {3, 4, 5, 19, 20});
}

TEST_CASE("Options: decoding keeps the options before the first error") {
    // mss 1460, nop, nop, then a window scale of length 4.
    const ByteVec raw{0x02, 0x04, 0x05, 0xB4, 0x01, 0x01, 0x03, 0x04, 0x07, 0x00, 0x01, 0x01};
    OptionList prefix;
    auto err = decode_options_into(raw, prefix);
    REQUIRE(err.has_value());
    CHECK(*err == WireError::OptionBadLength);
    const OptionList expected{opt::Mss{1460}, opt::Nop{}, opt::Nop{}};
    CHECK(prefix == expected);
    CHECK(decode_error(raw) == WireError::OptionBadLength);
}

TEST_CASE("Options: decode_options_into appends to what the list already holds") {
    OptionList list{opt::Nop{}};
    CHECK_FALSE(decode_options_into(ByteVec{0x03, 0x03, 0x02, 0x01}, list).has_value());
    const OptionList expected{opt::Nop{}, opt::WindowScale{2}, opt::Nop{}};
    CHECK(list == expected);
}
