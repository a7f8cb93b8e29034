// Concrete I/O pieces: route and source selection, source-port reservation, the libnet
// sender, the pcap source, the nftables RST guard, privileges, the clock and signals.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tcpprobe/io/ports.hpp"

struct libnet_context;
struct pcap;
struct pcap_dumper;
struct nft_ctx;

namespace tcpprobe::io {

// --- route ------------------------------------------------------------------

struct Route {
    wire::Ipv4Addr source;
    std::string interface;
};

/// Source address from the routing table (connected UDP socket + getsockname) and the
/// interface holding it; either may be overridden. Throws EnvironmentError without a route.
Route select_route(wire::Ipv4Addr target, std::optional<wire::Ipv4Addr> source,
                   std::optional<std::string> interface);

/// True when `addr` is the broadcast address of a local interface (directed broadcast).
bool is_local_broadcast(wire::Ipv4Addr addr);

/// Every IPv4 address of this network namespace's interfaces.
std::vector<wire::Ipv4Addr> local_ipv4_addresses();

/// Resolves "host" to one IPv4 address. Throws UsageError.
wire::Ipv4Addr resolve_ipv4(const std::string& host);

// --- source ports -------------------------------------------------------------

/// Holds a bound (never listening) TCP socket per port so the local stack does not hand
/// the same port to another connection during the run.
class PortReservation {
public:
    PortReservation() = default;
    PortReservation(const PortReservation&) = delete;
    PortReservation& operator=(const PortReservation&) = delete;
    ~PortReservation();
    /// A random free ephemeral port on `source` (port 0 = any), or the given one.
    std::uint16_t reserve(wire::Ipv4Addr source, std::uint16_t port = 0);
    /// `count` free ports of the ephemeral range, consecutive from `start_hint` (taken
    /// modulo the range) where free, so that the capture filter names a few ranges.
    std::vector<std::uint16_t> reserve_block(wire::Ipv4Addr source, std::size_t count, std::uint32_t start_hint);
    /// Holds `port` on `local` (nullopt: every address) for `listen`, so no local socket
    /// uses it during the run. Throws UsageError when a local socket already uses it
    /// (listening, connected or in TIME-WAIT), PrivilegeError when the port is below
    /// net.ipv4.ip_unprivileged_port_start and the process may not bind it.
    void hold_for_listen(std::optional<wire::Ipv4Addr> local, std::uint16_t port);

private:
    std::vector<int> fds_;
};

// --- libnet sender ------------------------------------------------------------

class LibnetSender final : public PacketSink {
public:
    /// Opens a LIBNET_RAW4 context and sets SO_MARK on its socket.
    LibnetSender(const std::string& interface, std::uint32_t mark);
    ~LibnetSender() override;
    void send(const wire::Segment& segment) override;
    std::uint64_t sent() const { return sent_; }
    /// The raw socket (for its transmit timestamps, see RawSource).
    int fd() const;

private:
    libnet_context* l_ = nullptr;
    std::uint64_t sent_ = 0;
    /// The packet libnet holds: its blocks are updated in place (ptags) while the
    /// option and payload sizes stay the same, and rebuilt when either changes.
    std::uint32_t built_opt_len_ = 0, built_payload_len_ = 0;
    int opt_tag_ = 0, tcp_tag_ = 0, ip_tag_ = 0;
    bool built_ = false;
};

// --- pcap source -----------------------------------------------------------------

class PcapSource final : public PacketSource {
public:
    /// One handle: immediate mode, nanosecond timestamps, non-blocking, with `filter`.
    /// The kernel ring holds buffer_bytes / (snaplen + header) frames: runs with many
    /// flows and no payload to read use a short snaplen and a large buffer.
    PcapSource(const std::string& interface, const std::string& filter, int snaplen = 65535,
               int buffer_bytes = 1 << 20);
    ~PcapSource() override;
    int fd() const override { return fd_; }
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

// --- nftables RST guard -----------------------------------------------------------

/// Rule text of the guard: a table with `flags owner`, an output chain at priority raw
/// dropping RSTs from our ports to the target unless they carry our mark. Pure.
std::string rst_guard_ruleset(const std::string& table, wire::Ipv4Addr local,
                              const std::vector<std::uint16_t>& local_ports, const std::vector<wire::Ipv4Addr>& remotes,
                              std::uint32_t mark);

/// The passive side's table: SYNs to `port` (on `local`, or any address) are dropped
/// before the local stack (the capture still sees them), and our kernel's RSTs from that
/// port are dropped unless they carry our mark. Pure.
std::string listen_ruleset(const std::string& table, std::optional<wire::Ipv4Addr> local, std::uint16_t port,
                           std::uint32_t mark);

/// The run's table name: "tcpprobe_<pid>_<8 hex digits>". The PID alone collides when
/// runs in different PID namespaces share a network namespace (both may be PID 1); the
/// random suffix (from getrandom) makes a collision a 1 in 2^32 event. Pure.
std::string guard_table_name(long pid, std::uint32_t suffix);

/// Why creating the table failed. nf_tables answers EPERM both to a process without
/// CAP_NET_ADMIN and to one adding to a table another process owns (`flags owner`), so
/// "Operation not permitted" is a missing capability only if no table of that name exists.
enum class NftFailure { MissingCapability, TableExists, Other };
NftFailure classify_nft_failure(std::string_view nft_error, bool table_exists);

class NftGuard final : public RstSuppressor {
public:
    /// Creates the table in one atomic command buffer. Throws PrivilegeError (missing
    /// CAP_NET_ADMIN) or EnvironmentError (nftables unavailable, the table exists).
    NftGuard(const std::string& table, const std::string& ruleset);
    /// Closing the netlink socket makes the kernel delete the owned table.
    ~NftGuard() override;
    const std::string& table() const { return table_; }

private:
    nft_ctx* ctx_ = nullptr;
    std::string table_;
};

// --- privileges, clock, signals -----------------------------------------------------

/// Throws PrivilegeError naming the missing capability and the setcap command.
void require_capabilities(bool need_net_admin);
/// Who the process runs as after setup. A user running a file-capability copy stays
/// who it is; root (or sudo) becomes the invoking user named by SUDO_UID/SUDO_GID, or
/// nobody (65534) when there is none or it names root. Pure.
struct RunIdentity {
    unsigned uid = 0, gid = 0;
    bool switch_ids = false;
};
inline constexpr unsigned nobody_id = 65534;
RunIdentity identity_after_setup(unsigned ruid, unsigned euid, unsigned rgid, const char* sudo_uid, const char* sudo_gid);

struct DropReport {
    unsigned uid = 0, gid = 0;
    bool bounding_set_emptied = false;  ///< false: CAP_SETPCAP was not held (setcap without it)
};
/// After setup, for good: the bounding and ambient sets emptied, uid/gid switched from
/// root (identity_after_setup), every other capability set emptied, no_new_privs, and a
/// seccomp allow-list (anything else fails with EPERM). Open handles keep working; the
/// nft table goes when its netlink socket closes (`flags owner`), which needs no privilege.
DropReport drop_privileges();
/// Makes room for `needed` open descriptors (one reserved socket per source port, plus
/// the run's own): raises the soft RLIMIT_NOFILE, up to the hard limit, when it is lower.
/// Throws EnvironmentError naming both limits and what to do when the hard limit is lower.
void ensure_fd_limit(std::size_t needed, std::string_view what);

class SystemClock final : public Clock {
public:
    Instant now() const override;
};

/// The first SIGINT/SIGTERM sets a flag and wakes the runner (stop_wake_fd) instead of
/// killing the process, so the run stops in order and destructors remove what it
/// created. A second one exits at once with status 130 (nothing is left behind: the nft
/// table is owned by the process's netlink socket).
void install_stop_signals();
bool stop_requested();
int stop_signal();
/// Readable once a stop signal has arrived (a self-pipe); -1 before install_stop_signals.
int stop_wake_fd();

}  // namespace tcpprobe::io

namespace tcpprobe::io {
/// MTU of an interface (SIOCGIFMTU); nullopt when it cannot be read.
std::optional<int> interface_mtu(const std::string& interface);
}  // namespace tcpprobe::io
