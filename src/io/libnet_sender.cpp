// The libnet sender: every outgoing packet is built by libnet in LIBNET_RAW4 mode
// (options bytes from the core, then TCP, then IPv4; libnet fills lengths and the TCP
// checksum). The context is cleared and rebuilt for each packet: changing a header's
// size through a ptag update corrupts the IP length in libnet 1.1.6 (DESIGN §3).
#include <libnet.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/system.hpp"
#include "tcpprobe/wire/tcp_options.hpp"

namespace tcpprobe::io {

LibnetSender::LibnetSender(const std::string& interface, std::uint32_t mark) {
    char err[LIBNET_ERRBUF_SIZE] = {};
    l_ = libnet_init(LIBNET_RAW4, interface.empty() ? nullptr : interface.c_str(), err);
    if (!l_) {
        std::string why = err;
        if (why.find("ermission") != std::string::npos || why.find("not permitted") != std::string::npos)
            throw PrivilegeError("CAP_NET_RAW is required to open a raw socket: run as root or `setcap cap_net_raw,cap_net_admin,cap_setpcap+ep tcpprobe`");
        throw EnvironmentError(fmt::format("libnet_init: {}", why));
    }
    int fd = libnet_getfd(l_);
    if (::setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
        int e = errno;
        libnet_destroy(l_);
        l_ = nullptr;
        if (e == EPERM)
            throw PrivilegeError("CAP_NET_ADMIN is required to mark packets (SO_MARK): run as root or `setcap cap_net_raw,cap_net_admin,cap_setpcap+ep tcpprobe`");
        throw EnvironmentError(fmt::format("SO_MARK: {}", std::strerror(e)));
    }
}

LibnetSender::~LibnetSender() {
    if (l_) libnet_destroy(l_);
}

void LibnetSender::send(const wire::Segment& s) {
    auto options = wire::encode_options(s.options);
    if (!options) throw UsageError(fmt::format("TCP options: {}", options.error()));
    libnet_clear_packet(l_);
    const auto opt_len = static_cast<std::uint32_t>(options->size());
    // The TCB cuts data to the link MTU; a larger segment here is a bug, and its length
    // must not wrap the 16-bit IP and TCP length fields.
    if (s.payload.size() > 0xFFFF - LIBNET_IPV4_H - LIBNET_TCP_H - opt_len)
        throw std::length_error(fmt::format("a segment with {} bytes of payload does not fit in one IPv4 packet", s.payload.size()));
    const auto payload_len = static_cast<std::uint32_t>(s.payload.size());
    if (opt_len > 0 && libnet_build_tcp_options(options->data(), opt_len, l_, 0) == -1)
        throw EnvironmentError(fmt::format("libnet_build_tcp_options: {}", libnet_geterror(l_)));
    // libnet takes the eight classic flag bits; AE and the reserved bits are refused by the CLI.
    const auto tcp_len = static_cast<std::uint16_t>(LIBNET_TCP_H + opt_len + payload_len);
    if (libnet_build_tcp(s.src.port, s.dst.port, s.seq.raw(), s.ack.raw(), static_cast<std::uint8_t>(s.flags & 0xFF),
                         s.window, 0, s.urgent, tcp_len, s.payload.empty() ? nullptr : s.payload.data(),
                         payload_len, l_, 0) == -1)
        throw EnvironmentError(fmt::format("libnet_build_tcp: {}", libnet_geterror(l_)));
    const auto ip_len = static_cast<std::uint16_t>(LIBNET_IPV4_H + tcp_len);
    if (libnet_build_ipv4(ip_len, s.ip.tos, s.ip.id, s.ip.df ? IP_DF : 0, s.ip.ttl, IPPROTO_TCP, 0,
                          htonl(s.src.addr.value), htonl(s.dst.addr.value), nullptr, 0, l_, 0) == -1)
        throw EnvironmentError(fmt::format("libnet_build_ipv4: {}", libnet_geterror(l_)));
    if (libnet_write(l_) == -1) throw EnvironmentError(fmt::format("libnet_write: {}", libnet_geterror(l_)));
    ++sent_;
}

}  // namespace tcpprobe::io
