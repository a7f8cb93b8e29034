// The capture: one pcap handle per run, immediate mode (without it delivery waits for
// the buffer timeout, ~100 ms), nanosecond timestamps, non-blocking, polled by the runner.
#include <pcap/pcap.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <string_view>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/pcap_source.hpp"

namespace tcpprobe::io {

namespace {
struct DrainContext {
    const std::function<void(const CapturedFrame&)>* on_frame;
    int link_type;
    pcap_dumper_t* dumper;
    PcapSource::DumpBudget* budget;
    std::size_t count = 0;
};

void on_packet(u_char* user, const pcap_pkthdr* h, const u_char* bytes) {
    auto* ctx = reinterpret_cast<DrainContext*>(user);
    // A record is a 16-byte header and the captured bytes.
    if (ctx->dumper && ctx->budget->take(16 + std::uint64_t{h->caplen})) pcap_dump(reinterpret_cast<u_char*>(ctx->dumper), h, bytes);
    // With nanosecond precision, tv_usec holds nanoseconds.
    auto ns = static_cast<std::int64_t>(h->ts.tv_sec) * 1'000'000'000 + h->ts.tv_usec;
    (*ctx->on_frame)(CapturedFrame{instant_from_ns(ns), ctx->link_type, {bytes, h->caplen}});
    ++ctx->count;
}

/// Sorted, distinct values folded into inclusive ranges.
template <class T>
std::vector<std::pair<T, T>> ranges_of(std::vector<T> v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    std::vector<std::pair<T, T>> out;
    for (T x : v) {
        if (!out.empty() && out.back().second + 1 == x) out.back().second = x;
        else out.emplace_back(x, x);
    }
    return out;
}

std::string any_of(const std::vector<std::string>& terms) {
    std::string s;
    for (const auto& t : terms) s += fmt::format("{}{}", s.empty() ? "" : " or ", t);
    return terms.size() == 1 ? s : fmt::format("({})", s);
}

/// "src port 80", "(dst port 80 or dst portrange 1000-1999)": exact for any number of
/// ports, and short when they are consecutive (a target's port range, the run's block of
/// source ports).
std::string port_clause(const char* dir, const std::vector<std::uint16_t>& ports) {
    std::vector<std::string> terms;
    for (auto [lo, hi] : ranges_of(ports))
        terms.push_back(lo == hi ? fmt::format("{} port {}", dir, lo) : fmt::format("{} portrange {}-{}", dir, lo, hi));
    return any_of(terms);
}

/// The same for addresses; a run of consecutive addresses is compared as a number at the
/// IPv4 header's source (12) or destination (16) offset.
std::string host_clause(const char* dir, const std::vector<wire::Ipv4Addr>& hosts) {
    std::vector<std::uint32_t> values;
    for (auto h : hosts) values.push_back(h.value);
    const int offset = std::string_view(dir) == "src" ? 12 : 16;
    std::vector<std::string> terms;
    for (auto [lo, hi] : ranges_of(values))
        terms.push_back(lo == hi ? fmt::format("{} host {}", dir, wire::to_string(wire::Ipv4Addr{lo}))
                                 : fmt::format("(ip[{}:4] >= {} and ip[{}:4] <= {})", offset, lo, offset, hi));
    return any_of(terms);
}
}  // namespace

// Exact whatever the number of ports and targets: a packet passes only if it belongs to
// one of the run's flows (our address and one of our reserved source ports, one of the
// targets and target ports). The source ports are held by the run (PortReservation), so
// no other local socket's traffic can match. An earlier version dropped a list longer
// than 32 entries, and -w then recorded all TCP to or from the targets.
std::string capture_filter(wire::Ipv4Addr local, const std::vector<std::uint16_t>& local_ports,
                           const std::vector<wire::Ipv4Addr>& remotes, const std::vector<std::uint16_t>& remote_ports,
                           bool incoming_only) {
    const std::string l = wire::to_string(local);
    std::string out_dir = fmt::format("src host {}", l);
    std::string in_dir = fmt::format("dst host {}", l);
    if (!remotes.empty()) {
        out_dir += " and " + host_clause("dst", remotes);
        in_dir += " and " + host_clause("src", remotes);
    }
    if (!local_ports.empty()) {
        out_dir += " and " + port_clause("src", local_ports);
        in_dir += " and " + port_clause("dst", local_ports);
    }
    if (!remote_ports.empty()) {
        out_dir += " and " + port_clause("dst", remote_ports);
        in_dir += " and " + port_clause("src", remote_ports);
    }
    // ICMP errors (unreachable, source quench, redirect, time exceeded, parameter problem)
    // that quote a TCP packet; the quoted ports are checked by the decoder and flow table.
    std::string icmp = fmt::format(
        "icmp and dst host {} and (icmp[0] == 3 or icmp[0] == 4 or icmp[0] == 5 or icmp[0] == 11 or icmp[0] == 12)"
        " and icmp[17] == 6", l);
    if (incoming_only) return fmt::format("(tcp and {}) or ({})", in_dir, icmp);
    return fmt::format("(tcp and (({}) or ({}))) or ({})", out_dir, in_dir, icmp);
}

// Only segments to `port` on one of our addresses and our answers from it: a local
// client's connection to some remote port `port` is not ours, and is not captured.
std::string listen_capture_filter(std::uint16_t port, const std::vector<wire::Ipv4Addr>& locals) {
    if (locals.empty()) return fmt::format("tcp and (dst port {} or src port {})", port, port);
    return fmt::format("tcp and ((dst port {} and {}) or (src port {} and {}))", port, host_clause("dst", locals), port,
                       host_clause("src", locals));
}

PcapSource::PcapSource(const std::string& interface, const std::string& filter, int snaplen, int buffer_bytes) {
    char err[PCAP_ERRBUF_SIZE] = {};
    p_ = pcap_create(interface.c_str(), err);
    if (!p_) throw EnvironmentError(fmt::format("pcap_create {}: {}", interface, err));
    pcap_set_snaplen(p_, snaplen);
    pcap_set_immediate_mode(p_, 1);
    // Each frame of the ring takes snaplen bytes plus a header, so 1 MiB holds only ~16
    // full-size frames: enough for one connection, not for a many-flow run.
    pcap_set_buffer_size(p_, buffer_bytes);
    pcap_set_tstamp_precision(p_, PCAP_TSTAMP_PRECISION_NANO);
    int rc = pcap_activate(p_);
    if (rc < 0) {
        std::string why = pcap_geterr(p_);
        pcap_close(p_);
        p_ = nullptr;
        if (rc == PCAP_ERROR_PERM_DENIED)
            throw PrivilegeError("CAP_NET_RAW is required to capture: run as root or `setcap cap_net_raw,cap_net_admin,cap_setpcap+ep tcpprobe`");
        throw EnvironmentError(fmt::format("cannot capture on {}: {}", interface, why));
    }
    link_type_ = pcap_datalink(p_);
    bpf_program prog{};
    if (pcap_compile(p_, &prog, filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
        std::string why = pcap_geterr(p_);
        pcap_close(p_);
        p_ = nullptr;
        throw EnvironmentError(fmt::format("capture filter: {}", why));
    }
    rc = pcap_setfilter(p_, &prog);
    pcap_freecode(&prog);
    if (rc != 0 || pcap_setnonblock(p_, 1, err) != 0) {
        std::string why = pcap_geterr(p_);
        pcap_close(p_);
        p_ = nullptr;
        throw EnvironmentError(fmt::format("capture setup: {}", why));
    }
    fd_ = pcap_get_selectable_fd(p_);
}

PcapSource::~PcapSource() {
    if (dumper_) pcap_dump_close(dumper_);
    if (p_) pcap_close(p_);
}

void PcapSource::dump_to(int fd, const std::string& shown, std::uint64_t limit_bytes) {
    dump_ = DumpBudget{limit_bytes, 24, 0};  // the file header
    std::FILE* f = ::fdopen(fd, "wb");
    if (!f) {
        ::close(fd);
        throw EnvironmentError(fmt::format("-w {}: {}", shown, std::strerror(errno)));
    }
    dumper_ = pcap_dump_fopen(p_, f);
    if (!dumper_) {
        std::fclose(f);
        throw EnvironmentError(fmt::format("-w {}: {}", shown, pcap_geterr(p_)));
    }
}

void PcapSource::flush() {
    if (dumper_) pcap_dump_flush(dumper_);
}

std::uint64_t PcapSource::kernel_drops() const {
    pcap_stat st{};
    if (pcap_stats(p_, &st) != 0) return 0;
    return st.ps_drop;
}

std::unique_ptr<PcapSource> PcapSource::open_file(const std::string& path) {
    char err[PCAP_ERRBUF_SIZE] = {};
    std::unique_ptr<PcapSource> s(new PcapSource());
    s->p_ = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
    if (!s->p_) throw EnvironmentError(fmt::format("{}: {}", path, err));
    s->link_type_ = pcap_datalink(s->p_);
    s->fd_ = -1;
    return s;
}

std::size_t PcapSource::drain(const std::function<void(const CapturedFrame&)>& on_frame) {
    DrainContext ctx{&on_frame, link_type_, dumper_, &dump_};
    while (ctx.count < max_frames_per_drain) {
        const auto budget = static_cast<int>(max_frames_per_drain - ctx.count);
        int n = pcap_dispatch(p_, budget, on_packet, reinterpret_cast<u_char*>(&ctx));
        if (n <= 0) break;  // 0: nothing more ready; -1: error (reported by the caller's timeout)
    }
    return ctx.count;
}

}  // namespace tcpprobe::io
