// The capture: one pcap handle per run, immediate mode (without it delivery waits for
// the buffer timeout, ~100 ms), nanosecond timestamps, non-blocking, polled by the runner.
#include <pcap/pcap.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/system.hpp"

namespace tcpprobe::io {

namespace {
struct DrainContext {
    const std::function<void(const CapturedFrame&)>* on_frame;
    int link_type;
    pcap_dumper_t* dumper;
    std::size_t count = 0;
};

void on_packet(u_char* user, const pcap_pkthdr* h, const u_char* bytes) {
    auto* ctx = reinterpret_cast<DrainContext*>(user);
    if (ctx->dumper) pcap_dump(reinterpret_cast<u_char*>(ctx->dumper), h, bytes);
    // With nanosecond precision, tv_usec holds nanoseconds.
    auto ns = static_cast<std::int64_t>(h->ts.tv_sec) * 1'000'000'000 + h->ts.tv_usec;
    (*ctx->on_frame)(CapturedFrame{instant_from_ns(ns), ctx->link_type, {bytes, h->caplen}});
    ++ctx->count;
}

std::string join_ports(const char* dir, const std::vector<std::uint16_t>& ports) {
    std::string s;
    for (auto p : ports) s += fmt::format("{}{}", s.empty() ? "" : " or ", p);
    return fmt::format("{} port ({})", dir, s);
}
}  // namespace

std::string capture_filter(wire::Ipv4Addr local, const std::vector<std::uint16_t>& local_ports,
                           const std::vector<wire::Ipv4Addr>& remotes, const std::vector<std::uint16_t>& remote_ports) {
    const std::string l = wire::to_string(local);
    // Long lists make the BPF program long; beyond a few dozen entries the local address
    // is filter enough and the flow table discards the rest.
    constexpr std::size_t max_listed = 32;
    auto hosts = [&](const char* dir) {
        std::string h;
        for (auto r : remotes) h += fmt::format("{}{}", h.empty() ? "" : " or ", wire::to_string(r));
        return remotes.size() <= max_listed && !remotes.empty() ? fmt::format(" and {} host ({})", dir, h) : std::string();
    };
    std::string out_dir = fmt::format("src host {}{}", l, hosts("dst"));
    std::string in_dir = fmt::format("dst host {}{}", l, hosts("src"));
    if (!local_ports.empty() && local_ports.size() <= max_listed) {
        out_dir += " and " + join_ports("src", local_ports);
        in_dir += " and " + join_ports("dst", local_ports);
    }
    if (!remote_ports.empty() && remote_ports.size() <= max_listed) {
        out_dir += " and " + join_ports("dst", remote_ports);
        in_dir += " and " + join_ports("src", remote_ports);
    }
    // ICMP errors (unreachable, source quench, redirect, time exceeded, parameter problem)
    // that quote a TCP packet; the quoted ports are checked by the decoder and flow table.
    std::string icmp = fmt::format(
        "icmp and dst host {} and (icmp[0] == 3 or icmp[0] == 4 or icmp[0] == 5 or icmp[0] == 11 or icmp[0] == 12)"
        " and icmp[17] == 6", l);
    return fmt::format("(tcp and (({}) or ({}))) or ({})", out_dir, in_dir, icmp);
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
            throw PrivilegeError("CAP_NET_RAW is required to capture: run as root or `setcap cap_net_raw,cap_net_admin+ep tcpprobe`");
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

void PcapSource::dump_to(int fd, const std::string& shown) {
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
    DrainContext ctx{&on_frame, link_type_, dumper_};
    while (ctx.count < max_frames_per_drain) {
        const auto budget = static_cast<int>(max_frames_per_drain - ctx.count);
        int n = pcap_dispatch(p_, budget, on_packet, reinterpret_cast<u_char*>(&ctx));
        if (n <= 0) break;  // 0: nothing more ready; -1: error (reported by the caller's timeout)
    }
    return ctx.count;
}

}  // namespace tcpprobe::io
