// Many flows need many descriptors (one reserved source port each): the soft open-file
// limit is raised as far as the hard limit allows, and beyond it the error names both
// limits and what to do, instead of "socket: Too many open files".
#include <doctest/doctest.h>

#include <dirent.h>
#include <sys/resource.h>
#include <sys/select.h>

#include <string>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/port_reservation.hpp"
#include "tcpprobe/io/privileges.hpp"

using namespace tcpprobe;

namespace {
/// Restores RLIMIT_NOFILE at the end of the test.
struct SavedLimit {
    rlimit saved{};
    SavedLimit() { REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0); }
    ~SavedLimit() { ::setrlimit(RLIMIT_NOFILE, &saved); }
};
}  // namespace

TEST_SUITE_BEGIN("io");

namespace {
/// How many of this process's open descriptors are below FD_SETSIZE, and how many at or above.
std::pair<int, int> open_fds() {
    std::pair<int, int> n{0, 0};
    DIR* d = ::opendir("/proc/self/fd");
    REQUIRE(d != nullptr);
    while (const dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        const int fd = std::stoi(e->d_name);
        if (fd == ::dirfd(d)) continue;
        ++(fd < FD_SETSIZE ? n.first : n.second);
    }
    ::closedir(d);
    return n;
}
}  // namespace

TEST_CASE("fd limit: reserved source ports sit above FD_SETSIZE, leaving low descriptors to libraries that select()") {
    SavedLimit keep;
    if (keep.saved.rlim_max != RLIM_INFINITY && keep.saved.rlim_max < FD_SETSIZE + 64) {
        MESSAGE("hard RLIMIT_NOFILE too low to hold descriptors above FD_SETSIZE");
        return;
    }
    io::ensure_fd_limit(FD_SETSIZE + 64, "the test");
    const auto before = open_fds();
    {
        io::PortReservation ports;
        // Bound on loopback, never connected: nothing is sent.
        const auto got = ports.reserve_block(wire::Ipv4Addr{0x7f000001}, 20, 0);
        REQUIRE(got.size() == 20);
        const auto during = open_fds();
        CHECK(during.first == before.first);          // no low descriptor taken
        CHECK(during.second == before.second + 20);   // all 20 above FD_SETSIZE
    }
    CHECK(open_fds() == before);  // released with the reservation
}

TEST_CASE("fd limit: ensure_fd_limit raises the soft limit up to the hard one") {
    SavedLimit keep;
    if (keep.saved.rlim_max != RLIM_INFINITY && keep.saved.rlim_max < 200) {
        MESSAGE("hard RLIMIT_NOFILE below 200: nothing to raise here");
        return;
    }
    rlimit low = keep.saved;
    low.rlim_cur = 100;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
    io::ensure_fd_limit(150, "150 flows");
    rlimit now{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &now) == 0);
    CHECK(now.rlim_cur >= 150);
    // Enough already: nothing changes.
    io::ensure_fd_limit(50, "50 flows");
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &now) == 0);
    CHECK(now.rlim_cur >= 150);
}

TEST_CASE("fd limit: beyond the hard limit the error names the limits and the remedy") {
    SavedLimit keep;
    if (keep.saved.rlim_max == RLIM_INFINITY || keep.saved.rlim_max > 1'000'000) {
        MESSAGE("hard RLIMIT_NOFILE unlimited or huge: cannot exceed it here");
        return;
    }
    const std::size_t too_many = keep.saved.rlim_max + 10;
    std::string what;
    try {
        io::ensure_fd_limit(too_many, "65535 flows (one reserved source port each)");
    } catch (const io::EnvironmentError& e) {
        what = e.what();
    }
    INFO(what);
    REQUIRE_FALSE(what.empty());
    CHECK(what.find("65535 flows") != std::string::npos);
    CHECK(what.find("RLIMIT_NOFILE") != std::string::npos);
    CHECK(what.find(std::to_string(keep.saved.rlim_max)) != std::string::npos);
    CHECK(what.find("fewer ports") != std::string::npos);
    CHECK(what.find('\n') == std::string::npos);
}

TEST_SUITE_END();
