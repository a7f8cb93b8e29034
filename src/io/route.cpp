// Route and source selection: ask the kernel which source address it would use for the
// target (a connected UDP socket sends nothing), then find the interface holding it.
#include <arpa/inet.h>
#include <linux/filter.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/port_reservation.hpp"
#include "tcpprobe/io/route.hpp"

namespace tcpprobe::io {

namespace {
struct Fd {
    int fd;
    ~Fd() { if (fd >= 0) ::close(fd); }
};

sockaddr_in to_sockaddr(wire::Ipv4Addr a, std::uint16_t port) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(a.value);
    return sa;
}

std::optional<std::string> interface_of(wire::Ipv4Addr addr) {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return std::nullopt;
    std::optional<std::string> found;
    for (ifaddrs* i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
        auto* sa = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
        if (ntohl(sa->sin_addr.s_addr) == addr.value) {
            if (!(i->ifa_flags & IFF_UP)) {
                freeifaddrs(list);
                throw EnvironmentError(fmt::format("interface {} holding {} is down", i->ifa_name, wire::to_string(addr)));
            }
            found = i->ifa_name;
            break;
        }
    }
    freeifaddrs(list);
    return found;
}
}  // namespace

Route select_route(wire::Ipv4Addr target, std::optional<wire::Ipv4Addr> source,
                   std::optional<std::string> interface) {
    Route r;
    if (source) {
        r.source = *source;
    } else {
        Fd s{::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
        if (s.fd < 0) throw EnvironmentError(fmt::format("socket: {}", std::strerror(errno)));
        auto sa = to_sockaddr(target, 9);
        if (::connect(s.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
            // A UDP connect to a (directed) broadcast address fails with EACCES.
            if (errno == EACCES)
                throw UsageError(fmt::format("target {}: broadcast addresses are refused", wire::to_string(target)));
            throw EnvironmentError(fmt::format("no route to {}: {}", wire::to_string(target), std::strerror(errno)));
        }
        sockaddr_in local{};
        socklen_t len = sizeof local;
        if (::getsockname(s.fd, reinterpret_cast<sockaddr*>(&local), &len) != 0)
            throw EnvironmentError(fmt::format("getsockname: {}", std::strerror(errno)));
        r.source = {ntohl(local.sin_addr.s_addr)};
    }
    if (interface) {
        if (if_nametoindex(interface->c_str()) == 0)
            throw EnvironmentError(fmt::format("no such interface: {}", *interface));
        r.interface = *interface;
    } else if (auto name = interface_of(r.source)) {
        r.interface = *name;
    } else {
        throw EnvironmentError(fmt::format("source address {} is not on any local interface", wire::to_string(r.source)));
    }
    return r;
}

bool is_local_broadcast(wire::Ipv4Addr addr) {
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return false;
    bool found = false;
    for (ifaddrs* i = list; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_BROADCAST) || !i->ifa_broadaddr) continue;
        found = ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_broadaddr)->sin_addr.s_addr) == addr.value;
    }
    freeifaddrs(list);
    return found;
}

wire::Ipv4Addr resolve_ipv4(const std::string& host) {
    in_addr a{};
    if (inet_pton(AF_INET, host.c_str(), &a) == 1) return {ntohl(a.s_addr)};
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0 || !res)
        throw UsageError(fmt::format("cannot resolve '{}' to an IPv4 address: {}", host, gai_strerror(rc)));
    auto* sa = reinterpret_cast<sockaddr_in*>(res->ai_addr);
    wire::Ipv4Addr out{ntohl(sa->sin_addr.s_addr)};
    freeaddrinfo(res);
    return out;
}

std::optional<int> interface_mtu(const std::string& interface) {
    Fd s{::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
    if (s.fd < 0 || interface.size() >= IFNAMSIZ) return std::nullopt;
    ifreq req{};
    std::memcpy(req.ifr_name, interface.c_str(), interface.size() + 1);
    if (::ioctl(s.fd, SIOCGIFMTU, &req) != 0) return std::nullopt;
    return req.ifr_mtu;
}

PortReservation::~PortReservation() {
    for (int fd : fds_) ::close(fd);
}

namespace {
/// A TCP socket bound to `addr`:`port` (never listening), or -1 with errno set.
int bound_socket(wire::Ipv4Addr addr, std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    auto sa = to_sockaddr(addr, port);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        int e = errno;
        ::close(fd);
        errno = e;
        return -1;
    }
    // Held for the whole run and never polled: kept above FD_SETSIZE when the limit allows,
    // so the descriptors libraries open later stay low. libnftables select()s on its
    // netlink socket, and glibc aborts a select() on a descriptor >= FD_SETSIZE (seen with
    // the RST guard over more than about 1,000 reserved ports).
    if (const int high = ::fcntl(fd, F_DUPFD_CLOEXEC, FD_SETSIZE); high >= 0) {
        ::close(fd);
        fd = high;
    }
    return fd;
}

[[noreturn]] void throw_out_of_descriptors(int e, std::size_t reserved) {
    rlimit r{};
    ::getrlimit(RLIMIT_NOFILE, &r);
    throw EnvironmentError(fmt::format("cannot reserve source port {}: {} (RLIMIT_NOFILE {}): probe fewer ports per run, "
                                       "or raise the limit (ulimit -n)", reserved + 1, std::strerror(e), r.rlim_cur));
}

[[noreturn]] void throw_range_used_up(wire::Ipv4Addr source, std::size_t reserved) {
    throw EnvironmentError(fmt::format("no free source port on {} after {} reserved: the ephemeral range "
                                       "(net.ipv4.ip_local_port_range) is used up; probe fewer ports per run",
                                       wire::to_string(source), reserved));
}

std::pair<std::uint16_t, std::uint16_t> ephemeral_range() {
    unsigned lo = 32768, hi = 60999;  // Linux's default
    if (std::FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
        unsigned a = 0, b = 0;
        if (std::fscanf(f, "%u %u", &a, &b) == 2 && a >= 1 && a <= b && b <= 65535) lo = a, hi = b;
        std::fclose(f);
    }
    return {static_cast<std::uint16_t>(lo), static_cast<std::uint16_t>(hi)};
}
}  // namespace

std::uint16_t PortReservation::reserve(wire::Ipv4Addr source, std::uint16_t port) {
    int fd = bound_socket(source, port);
    if (fd < 0) {
        int e = errno;
        if (e == EMFILE || e == ENFILE) throw_out_of_descriptors(e, fds_.size());
        if (port != 0 && e == EADDRINUSE)
            throw UsageError(fmt::format("--sport {}: port in use on {}", port, wire::to_string(source)));
        if (port == 0 && e == EADDRINUSE) throw_range_used_up(source, fds_.size());
        throw EnvironmentError(fmt::format("bind {}:{}: {}", wire::to_string(source), port, std::strerror(e)));
    }
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    fds_.push_back(fd);
    return ntohs(bound.sin_port);
}

std::vector<std::uint16_t> PortReservation::reserve_block(wire::Ipv4Addr source, std::size_t count, std::uint32_t start_hint) {
    const auto [lo, hi] = ephemeral_range();
    const std::uint32_t size = std::uint32_t{hi} - lo + 1;
    std::vector<std::uint16_t> ports;
    for (std::uint32_t i = 0; i < size && ports.size() < count; ++i) {
        const auto port = static_cast<std::uint16_t>(lo + (start_hint + i) % size);
        int fd = bound_socket(source, port);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) throw_out_of_descriptors(errno, fds_.size());
            continue;  // in use (or reserved by the administrator): the next one
        }
        fds_.push_back(fd);
        ports.push_back(port);
    }
    if (ports.size() < count) throw_range_used_up(source, fds_.size());
    return ports;
}

void PortReservation::hold_for_listen(std::optional<wire::Ipv4Addr> local, std::uint16_t port) {
    const wire::Ipv4Addr addr = local.value_or(wire::Ipv4Addr{0});
    int fd = bound_socket(addr, port);
    if (fd >= 0) {
        fds_.push_back(fd);
        return;
    }
    const int e = errno;
    const std::string where = local ? fmt::format("{}:{}", wire::to_string(*local), port) : fmt::format("port {}", port);
    if (e == EADDRINUSE)
        throw UsageError(fmt::format("listen {}: a local socket uses this port (listening, connected or in TIME-WAIT; "
                                     "see `ss -tan sport = :{}`): listen watches only ports nothing local uses",
                                     where, port));
    if (e == EACCES)
        throw PrivilegeError(fmt::format("listen {}: a privileged port (below net.ipv4.ip_unprivileged_port_start) "
                                         "needs root or CAP_NET_BIND_SERVICE, as a server binding it would", where));
    throw EnvironmentError(fmt::format("listen {}: cannot hold the port: {}", where, std::strerror(e)));
}

void PortReservation::refuse(int fd) {
    // Classic BPF "ret #0": keep no byte of the segment, i.e. refuse it. Locked, so that
    // nothing can lift it while the socket lives.
    static sock_filter refuse_all[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
    const sock_fprog prog{1, refuse_all};
    const int one = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof one) != 0)
        throw EnvironmentError(fmt::format("RST guard: cannot attach the socket filter: {}", std::strerror(errno)));
    // The filter is in place before the socket listens: no segment ever reaches it.
    if (::listen(fd, 1) != 0) {
        const int e = errno;
        sockaddr_in bound{};
        socklen_t len = sizeof bound;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
        throw EnvironmentError(fmt::format("RST guard: cannot listen on port {}: {}", ntohs(bound.sin_port), std::strerror(e)));
    }
}

void PortReservation::refuse_segments() {
    for (int fd : fds_) refuse(fd);
}

std::vector<wire::Ipv4Addr> local_ipv4_addresses() {
    std::vector<wire::Ipv4Addr> out;
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) return out;
    for (ifaddrs* i = list; i; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET)
            out.push_back(wire::Ipv4Addr{ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr)});
    freeifaddrs(list);
    return out;
}

}  // namespace tcpprobe::io
