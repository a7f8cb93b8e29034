// The socket RST guard: a reserved port that refuses segments draws no answer from the
// local stack. A plain TCP connect() on loopback stands in for the peer: against a port
// that is only bound the local kernel answers its SYN with a RST (ECONNREFUSED at once);
// against a refusing port the SYN is dropped unanswered, so the connect() stays pending.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "tcpprobe/io/port_reservation.hpp"

using namespace tcpprobe;

namespace {
constexpr wire::Ipv4Addr loopback{0x7F000001};

/// What a non-blocking connect() to 127.0.0.1:`port` sees within `wait_ms`: 0 connected,
/// an errno (ECONNREFUSED: the kernel's RST), or -1 when it is still pending.
int connect_outcome(std::uint16_t port, int wait_ms) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(0x7F000001);
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
    int outcome = 0;
    if (rc != 0 && errno != EINPROGRESS) {
        outcome = errno;
    } else if (rc != 0) {
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, wait_ms) == 0) {
            outcome = -1;
        } else {
            socklen_t len = sizeof outcome;
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &outcome, &len);
        }
    }
    ::close(fd);
    return outcome;
}
}  // namespace

TEST_SUITE_BEGIN("io");

TEST_CASE("port reservation: a held port draws the kernel's RST; once it refuses segments, nothing answers") {
    SUBCASE("only bound: the SYN is reset") {
        io::PortReservation ports;
        const std::uint16_t port = ports.reserve(loopback);
        CHECK(connect_outcome(port, 500) == ECONNREFUSED);
    }
    SUBCASE("refusing: the SYN is dropped without an answer, on every held port") {
        io::PortReservation ports;
        const std::vector<std::uint16_t> held = ports.reserve_block(loopback, 3, 0);
        REQUIRE(held.size() == 3);
        ports.refuse_segments();
        for (std::uint16_t port : held) {
            CAPTURE(port);
            CHECK(connect_outcome(port, 300) == -1);  // still pending: no RST, no SYN-ACK
        }
    }
    SUBCASE("the guard ends with the reservation: the port is only a closed port again") {
        std::uint16_t port = 0;
        {
            io::PortReservation ports;
            port = ports.reserve(loopback);
            ports.refuse_segments();
        }
        CHECK(connect_outcome(port, 500) == ECONNREFUSED);
    }
}

TEST_SUITE_END();
