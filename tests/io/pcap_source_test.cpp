// PcapSource::drain is bounded: under a flood it returns after max_frames_per_drain
// frames, so the runner gets back to its deadlines and to Ctrl-C; the rest is read on
// the next call. A saved capture stands in for a live one.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "tcpprobe/io/pcap_source.hpp"

using namespace tcpprobe;

namespace {

void put32(std::ofstream& out, std::uint32_t v) {
    const char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16), static_cast<char>(v >> 24)};
    out.write(b, 4);
}

/// A classic little-endian pcap (raw IPv4 link type) of `count` 20-byte frames.
std::string write_capture(std::size_t count) {
    char name[] = "/tmp/tcpprobe_drain_XXXXXX";
    int fd = ::mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    std::ofstream out(name, std::ios::binary);
    put32(out, 0xA1B2C3D4u);
    put32(out, 2u | (4u << 16));  // version 2.4
    put32(out, 0);
    put32(out, 0);
    put32(out, 65535);
    put32(out, 228);  // LINKTYPE_IPV4
    for (std::size_t i = 0; i < count; ++i) {
        put32(out, 1'700'000'000u + static_cast<std::uint32_t>(i / 1000));
        put32(out, static_cast<std::uint32_t>(i % 1000) * 1000);
        put32(out, 20);
        put32(out, 20);
        const char frame[20] = {0x45};
        out.write(frame, sizeof frame);
    }
    return name;
}

}  // namespace

TEST_SUITE_BEGIN("io");

TEST_CASE("pcap source: drain hands over at most max_frames_per_drain frames per call") {
    const std::size_t total = io::PcapSource::max_frames_per_drain + 904;
    const std::string path = write_capture(total);
    auto source = io::PcapSource::open_file(path);
    std::size_t seen = 0;
    std::size_t wrong_size = 0;
    auto count = [&](const io::CapturedFrame& f) {
        wrong_size += f.bytes.size() != 20;
        ++seen;
    };
    CHECK(source->drain(count) == io::PcapSource::max_frames_per_drain);
    CHECK(seen == io::PcapSource::max_frames_per_drain);
    CHECK(source->drain(count) == 904);
    CHECK(source->drain(count) == 0);
    CHECK(seen == total);
    CHECK(wrong_size == 0);
    std::remove(path.c_str());
}

TEST_CASE("pcap source: -w with --write-limit: the file stops at the limit and every later packet is counted") {
    // 100 frames of 20 bytes: each record is a 16-byte header and the frame. A limit of
    // the file header (24) and ten records, plus 35 bytes that no eleventh record fits.
    const std::string path = write_capture(100);
    char out_name[] = "/tmp/tcpprobe_wlimit_XXXXXX";
    const int fd = ::mkstemp(out_name);
    REQUIRE(fd >= 0);
    const std::uint64_t limit = 24 + 10 * 36 + 35;
    {
        auto source = io::PcapSource::open_file(path);
        source->dump_to(fd, out_name, limit);
        CHECK(source->drain([](const io::CapturedFrame&) {}) == 100);  // the run still sees every frame
        source->flush();
        CHECK(source->write_skipped() == 90);
    }
    std::ifstream written(out_name, std::ios::binary | std::ios::ate);
    CHECK(static_cast<std::uint64_t>(written.tellg()) == 24 + 10 * 36);
    auto reread = io::PcapSource::open_file(out_name);
    CHECK(reread->drain([](const io::CapturedFrame&) {}) == 10);  // a valid capture of the first ten
    std::remove(path.c_str());
    std::remove(out_name);
}

TEST_SUITE_END();
