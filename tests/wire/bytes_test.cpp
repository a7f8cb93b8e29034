// Tests for wire/bytes: the big-endian load/store helpers every header accessor uses, and
// the hex parser behind --option KIND:HEX (user input, so bad text must be refused whole).
#include <doctest/doctest.h>

#include <array>

#include "tcpprobe/wire/bytes.hpp"

using namespace tcpprobe::wire;

namespace {
ByteVec parsed(std::string_view text) {
    ByteVec out;
    REQUIRE_MESSAGE(parse_hex(text, out), "parse_hex refused \"", text, "\"");
    return out;
}
bool refused(std::string_view text) {
    ByteVec out{0xEE};
    bool ok = parse_hex(text, out);
    CHECK_MESSAGE(out == ByteVec{0xEE}, "output changed although \"", text, "\" was refused");
    return !ok;
}

constexpr std::array<std::uint8_t, 4> be_bytes{0x12, 0x34, 0x56, 0x78};
static_assert(load_be16(be_bytes, 0) == 0x1234);
static_assert(load_be16(be_bytes, 2) == 0x5678);
static_assert(load_be32(be_bytes, 0) == 0x12345678u);
}  // namespace

TEST_CASE("load_be16/load_be32 read network byte order at the given offset") {
    const std::uint8_t b[] = {0xFF, 0x80, 0x01, 0x00, 0x00, 0xFE};
    CHECK(load_be16(b, 0) == 0xFF80);
    CHECK(load_be16(b, 1) == 0x8001);
    CHECK(load_be16(b, 4) == 0x00FE);
    CHECK(load_be32(b, 0) == 0xFF800100u);
    CHECK(load_be32(b, 2) == 0x010000FEu);
}

TEST_CASE("store_be16/store_be32 write network byte order and round-trip with the loads") {
    std::array<std::uint8_t, 6> b{};
    store_be16(b, 0, 0xBEEF);
    store_be32(b, 2, 0xDEADC0DEu);
    CHECK(b == std::array<std::uint8_t, 6>{0xBE, 0xEF, 0xDE, 0xAD, 0xC0, 0xDE});
    CHECK(load_be16(b, 0) == 0xBEEF);
    CHECK(load_be32(b, 2) == 0xDEADC0DEu);
}

TEST_CASE("append_be16/append_be32 grow a vector in network byte order") {
    ByteVec v;
    append_be16(v, 0x0102);
    append_be32(v, 0x03040506u);
    CHECK(v == ByteVec{0x01, 0x02, 0x03, 0x04, 0x05, 0x06});
}

TEST_CASE("parse_hex accepts plain lowercase and uppercase hex") {
    CHECK(parsed("0102ab") == ByteVec{0x01, 0x02, 0xAB});
    CHECK(parsed("0102AB") == ByteVec{0x01, 0x02, 0xAB});
    CHECK(parsed("fF") == ByteVec{0xFF});
}

TEST_CASE("parse_hex accepts colon and space separators between bytes") {
    CHECK(parsed("01:02") == ByteVec{0x01, 0x02});
    CHECK(parsed("de ad be ef") == ByteVec{0xDE, 0xAD, 0xBE, 0xEF});
    CHECK(parsed("01:02 03") == ByteVec{0x01, 0x02, 0x03});
}

TEST_CASE("parse_hex accepts a 0x or 0X prefix") {
    CHECK(parsed("0x01ff") == ByteVec{0x01, 0xFF});
    CHECK(parsed("0X01FF") == ByteVec{0x01, 0xFF});
}

TEST_CASE("parse_hex of empty text is an empty byte string") {
    CHECK(parsed("").empty());
}

TEST_CASE("parse_hex rejects an odd number of digits") {
    CHECK(refused("012"));
    CHECK(refused("0"));
    CHECK(refused("0x1"));
}

TEST_CASE("parse_hex rejects characters that are not hex digits") {
    CHECK(refused("0g"));
    CHECK(refused("01-02"));
    CHECK(refused("0x0x01"));
    CHECK(refused("01\n"));
}

TEST_CASE("parse_hex rejects a separator inside a byte") {
    CHECK(refused("0:1"));
    CHECK(refused("0 1"));
}

TEST_CASE("to_hex prints two lowercase digits per byte and round-trips with parse_hex") {
    const std::uint8_t b[] = {0x00, 0x0A, 0xFF, 0x7F};
    CHECK(to_hex(b) == "000aff7f");
    CHECK(to_hex(Bytes{}).empty());
    CHECK(parsed(to_hex(b)) == ByteVec(std::begin(b), std::end(b)));
}
