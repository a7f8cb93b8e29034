// The pcap capture and its filters.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tcpprobe/io/ports.hpp"

struct pcap;
struct pcap_dumper;

namespace tcpprobe::io {

class PcapSource final : public PacketSource {
public:
    /// One handle: immediate mode, nanosecond timestamps, non-blocking, with `filter`.
    /// The kernel ring holds buffer_bytes / (snaplen + header) frames: runs with many
    /// flows and no payload to read use a short snaplen and a large buffer.
    PcapSource(const std::string& interface, const std::string& filter, int snaplen = 65535,
               int buffer_bytes = 1 << 20);
    ~PcapSource() override;
    std::span<const int> fds() const override { return {&fd_, 1}; }
    /// Hands over what is ready, at most max_frames_per_drain frames: under a flood the
    /// runner gets back to its deadlines and signals (the rest is read on its next turn).
    std::size_t drain(const std::function<void(const CapturedFrame&)>& on_frame) override;
    static constexpr std::size_t max_frames_per_drain = 4096;
    /// A saved capture read back as if live (tests of drain()).
    static std::unique_ptr<PcapSource> open_file(const std::string& path);
    int link_type() const { return link_type_; }
    /// Writes every captured frame to `fd` as well (pcap, nanosecond precision); takes
    /// ownership of `fd` (see create_user_file). `shown` names the file in errors.
    void dump_to(int fd, const std::string& shown, std::uint64_t limit_bytes = 0);
    void flush() override;
    /// Packets not written because the file reached its limit (--write-limit).
    std::uint64_t write_skipped() const { return dump_.skipped; }

    /// The -w file's budget: a packet is written only while the file stays within
    /// `limit` bytes (0: no limit); the rest are counted.
    struct DumpBudget {
        std::uint64_t limit = 0;
        std::uint64_t written = 0;
        std::uint64_t skipped = 0;
        bool take(std::uint64_t bytes) {
            if (limit && written + bytes > limit) {
                ++skipped;
                return false;
            }
            written += bytes;
            return true;
        }
    };
    /// Packets the kernel dropped for lack of buffer space (pcap_stats).
    std::uint64_t kernel_drops() const;
    std::uint64_t drops() const override { return kernel_drops(); }

private:
    PcapSource() = default;
    pcap* p_ = nullptr;
    pcap_dumper* dumper_ = nullptr;
    DumpBudget dump_;
    int fd_ = -1;
    int link_type_ = 0;
};

/// Capture filter for the flows between `local` and `remote` ports, both ways, plus ICMP
/// errors sent to `local`; with `incoming_only` (raw sockets, which see our own
/// segments through their transmit timestamps instead) the answers and ICMP only.
/// Pure: tested against golden strings.
std::string capture_filter(wire::Ipv4Addr local, const std::vector<std::uint16_t>& local_ports,
                           const std::vector<wire::Ipv4Addr>& remotes, const std::vector<std::uint16_t>& remote_ports,
                           bool incoming_only = false);

/// `listen`'s filter: segments to `port` on one of `locals` and those from it. Pure.
std::string listen_capture_filter(std::uint16_t port, const std::vector<wire::Ipv4Addr>& locals);

}  // namespace tcpprobe::io
