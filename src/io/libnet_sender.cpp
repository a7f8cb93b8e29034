// The libnet sender: every outgoing packet is built by libnet in LIBNET_RAW4 mode
// (options bytes from the core, then TCP, then IPv4; libnet fills lengths and the TCP
// checksum). A packet whose option and payload sizes equal the previous one's updates
// the built blocks in place through their ptags (a flood's SYNs differ only in ports,
// ISN, IP ID and timestamps): clearing and rebuilding them cost a third of the user time
// per probe (allocations, and libnet_pblock_find's snprintf on every new block). Any
// other packet clears the context and is rebuilt: changing a header's size through a
// ptag update corrupts the IP length in libnet 1.1.6 (DESIGN §3).
#include <libnet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/libnet_sender.hpp"
#include "tcpprobe/wire/tcp_options.hpp"

namespace tcpprobe::io {

namespace {
/// The socket libnet_open_raw4() would open (raw IPv4, IP_HDRINCL, SO_BROADCAST, bound to
/// the interface), without its send-buffer probe: libnet 1.1.6 raises SO_SNDBUF 128
/// bytes at a time up to 1 MiB, about 6,500 setsockopt() calls (~2 ms) on Linux, which
/// never refuses a size but caps it at net.core.wmem_max. One forced size does the same.
int open_raw4(const std::string& interface, std::uint32_t mark) {
    int fd = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) {
        if (errno == EPERM || errno == EACCES)
            throw PrivilegeError("CAP_NET_RAW is required to open a raw socket: run as root or `setcap cap_net_raw,cap_net_admin,cap_setpcap+ep tcpprobe`");
        throw EnvironmentError(fmt::format("raw socket: {}", std::strerror(errno)));
    }
    const int on = 1;
    const int sndbuf = 1 << 20;
    int e = 0;
    if (::setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &on, sizeof on) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &on, sizeof on) != 0 ||
        (!interface.empty() &&
         ::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, interface.c_str(), static_cast<socklen_t>(interface.size())) != 0))
        e = errno;
    if (!e && ::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) != 0)
        ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);  // capped by wmem_max
    if (!e && ::setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
        e = errno;
        if (e == EPERM) {
            ::close(fd);
            throw PrivilegeError("CAP_NET_ADMIN is required to mark packets (SO_MARK): run as root or `setcap cap_net_raw,cap_net_admin,cap_setpcap+ep tcpprobe`");
        }
    }
    if (e) {
        ::close(fd);
        throw EnvironmentError(fmt::format("raw socket on {}: {}", interface.empty() ? "any interface" : interface, std::strerror(e)));
    }
    return fd;
}
}  // namespace

LibnetSender::LibnetSender(const std::string& interface, std::uint32_t mark) {
    const int fd = open_raw4(interface, mark);
    char err[LIBNET_ERRBUF_SIZE] = {};
    // A context that only builds, then given our socket as a RAW4 one: libnet_write()
    // still builds and injects every packet (libnet_write_raw_ipv4 on l->fd), and
    // libnet_destroy() closes the socket. The two fields are public in libnet 1.1.6's
    // libnet-structures.h (the API has no way to skip the probe or to adopt a socket).
    l_ = libnet_init(LIBNET_NONE, nullptr, err);
    if (!l_) {
        ::close(fd);
        throw EnvironmentError(fmt::format("libnet_init: {}", err));
    }
    l_->fd = fd;
    l_->injection_type = LIBNET_RAW4;
}

int LibnetSender::fd() const { return libnet_getfd(l_); }

LibnetSender::~LibnetSender() {
    if (l_) libnet_destroy(l_);
}

void LibnetSender::send(const wire::Segment& s) {
    auto options = wire::encode_options(s.options);
    if (!options) throw UsageError(fmt::format("TCP options: {}", options.error()));
    const auto opt_len = static_cast<std::uint32_t>(options->size());
    // The TCB cuts data to the link MTU; a larger segment here is a bug, and its length
    // must not wrap the 16-bit IP and TCP length fields.
    if (s.payload.size() > 0xFFFF - LIBNET_IPV4_H - LIBNET_TCP_H - opt_len)
        throw std::length_error(fmt::format("a segment with {} bytes of payload does not fit in one IPv4 packet", s.payload.size()));
    const auto payload_len = static_cast<std::uint32_t>(s.payload.size());
    if (!built_ || opt_len != built_opt_len_ || payload_len != built_payload_len_) {
        libnet_clear_packet(l_);
        opt_tag_ = tcp_tag_ = ip_tag_ = 0;
        built_ = false;
    }
    if (opt_len > 0 && (opt_tag_ = libnet_build_tcp_options(options->data(), opt_len, l_, opt_tag_)) == -1)
        throw EnvironmentError(fmt::format("libnet_build_tcp_options: {}", libnet_geterror(l_)));
    // libnet takes the eight classic flag bits; AE and the reserved bits are refused by the CLI.
    const auto tcp_len = static_cast<std::uint16_t>(LIBNET_TCP_H + opt_len + payload_len);
    if ((tcp_tag_ = libnet_build_tcp(s.src.port, s.dst.port, s.seq.raw(), s.ack.raw(), static_cast<std::uint8_t>(s.flags & 0xFF),
                                     s.window, 0, s.urgent, tcp_len, s.payload.empty() ? nullptr : s.payload.data(),
                                     payload_len, l_, tcp_tag_)) == -1)
        throw EnvironmentError(fmt::format("libnet_build_tcp: {}", libnet_geterror(l_)));
    const auto ip_len = static_cast<std::uint16_t>(LIBNET_IPV4_H + tcp_len);
    if ((ip_tag_ = libnet_build_ipv4(ip_len, s.ip.tos, s.ip.id, s.ip.df ? IP_DF : 0, s.ip.ttl, IPPROTO_TCP, 0,
                                     htonl(s.src.addr.value), htonl(s.dst.addr.value), nullptr, 0, l_, ip_tag_)) == -1)
        throw EnvironmentError(fmt::format("libnet_build_ipv4: {}", libnet_geterror(l_)));
    built_ = true;
    built_opt_len_ = opt_len;
    built_payload_len_ = payload_len;
    if (libnet_write(l_) == -1) throw EnvironmentError(fmt::format("libnet_write: {}", libnet_geterror(l_)));
    ++sent_;
}

}  // namespace tcpprobe::io
