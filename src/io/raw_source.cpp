// The capture from raw IP sockets and transmit timestamps (see raw_source.hpp).
#include "tcpprobe/io/raw_source.hpp"

#include <linux/errqueue.h>
#include <linux/filter.h>
#include <linux/net_tstamp.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/wire/linktype.hpp"

namespace tcpprobe::io {

namespace {

/// Two software transmit timestamps per packet, matched by their key (OPT_ID): SCHED when
/// the packet enters the device layer (__dev_queue_xmit, every device) and SND when it is
/// handed to the driver (skb_tx_timestamp). A packet socket (tshark, tcpdump, our libpcap
/// path) stamps an outgoing packet between the two, in dev_queue_xmit_nit, and the work
/// on either side is alike: cloning the packet and queueing it to a socket (our error
/// queue before, the packet socket after). So the midpoint is what a capture on the
/// interface reports: in the lab, SCHED alone read 6.5 us early and SND alone 6.7 us late
/// against tcpdump, the midpoint 0.2 us (bench/README.md). A driver that never stamps
/// SND leaves the SCHED stamp alone.
constexpr unsigned tx_flags = SOF_TIMESTAMPING_TX_SCHED | SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE |
                              SOF_TIMESTAMPING_OPT_ID;

}  // namespace

std::int64_t RawSource::wire_time(std::int64_t sched_ns, std::int64_t snd_ns) {
    // Work on both sides of the tap: the midpoint. A gap longer than that work allows is
    // a wait in a queueing discipline (a busy uplink), which lies before the tap: the tap
    // is then between SND - max_tap_offset_ns and SND, dated in the middle.
    if (snd_ns - sched_ns <= 2 * max_tap_offset_ns) return sched_ns + (snd_ns - sched_ns) / 2;
    return snd_ns - max_tap_offset_ns / 2;
}

namespace {

std::int64_t to_ns(const timespec& ts) { return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec; }

/// A filter compiled by libpcap for raw IPv4 packets, in the form SO_ATTACH_FILTER takes.
class CompiledFilter {
public:
    CompiledFilter(const std::string& text, int snaplen) {
        pcap_t* dead = pcap_open_dead(DLT_RAW, snaplen);
        if (!dead) throw EnvironmentError("pcap_open_dead failed");
        const int rc = pcap_compile(dead, &prog_, text.c_str(), 1, PCAP_NETMASK_UNKNOWN);
        std::string why = rc != 0 ? pcap_geterr(dead) : "";
        pcap_close(dead);
        if (rc != 0) throw EnvironmentError(fmt::format("capture filter: {}", why));
    }
    ~CompiledFilter() { pcap_freecode(&prog_); }
    CompiledFilter(const CompiledFilter&) = delete;
    CompiledFilter& operator=(const CompiledFilter&) = delete;
    // struct bpf_insn and struct sock_filter have the same layout (classic BPF).
    sock_fprog fprog() const { return {static_cast<unsigned short>(prog_.bf_len), reinterpret_cast<sock_filter*>(prog_.bf_insns)}; }

private:
    bpf_program prog_{};
};

void set_option(int fd, int level, int name, const void* value, socklen_t len, const char* what) {
    if (::setsockopt(fd, level, name, value, len) != 0)
        throw EnvironmentError(fmt::format("raw capture socket: {}: {}", what, std::strerror(errno)));
}

void set_buffer(int fd, int name_force, int name, int bytes) {
    // The forced size needs CAP_NET_ADMIN (held until the edge drops privileges);
    // without it the kernel caps the size at net.core.rmem_max.
    if (::setsockopt(fd, SOL_SOCKET, name_force, &bytes, sizeof bytes) != 0)
        ::setsockopt(fd, SOL_SOCKET, name, &bytes, sizeof bytes);
}

int open_raw(int protocol, const std::string& interface, const sock_fprog& filter, int buffer_bytes) {
    int fd = ::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd < 0) {
        if (errno == EPERM || errno == EACCES)
            throw PrivilegeError("CAP_NET_RAW is required to capture: run as root or `setcap cap_net_raw,cap_net_admin,cap_setpcap+ep tcpprobe`");
        throw EnvironmentError(fmt::format("raw capture socket: {}", std::strerror(errno)));
    }
    try {
        set_option(fd, SOL_SOCKET, SO_ATTACH_FILTER, &filter, sizeof filter, "SO_ATTACH_FILTER");
        const int on = 1;
        set_option(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on, "SO_TIMESTAMPNS");
        set_option(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof on, "SO_RXQ_OVFL");
        if (!interface.empty() && interface != "any")
            set_option(fd, SOL_SOCKET, SO_BINDTODEVICE, interface.c_str(), static_cast<socklen_t>(interface.size()),
                       "SO_BINDTODEVICE");
        set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, buffer_bytes);
        // Whatever was queued before the filter was attached is not ours to judge.
        char byte;
        while (::recv(fd, &byte, 1, MSG_DONTWAIT | MSG_TRUNC) >= 0) {
        }
    } catch (...) {
        ::close(fd);
        throw;
    }
    return fd;
}

/// Where the IPv4 header starts in a transmitted frame (the error queue returns it with
/// its link-layer header): the first offset whose IPv4 total length spans the rest.
std::optional<std::size_t> ipv4_offset(const std::uint8_t* b, std::size_t len) {
    for (std::size_t o = 0; o + 20 <= len && o <= 64; ++o) {
        if ((b[o] >> 4) != 4 || (b[o] & 0x0F) < 5) continue;
        const std::size_t total = (static_cast<std::size_t>(b[o + 2]) << 8) | b[o + 3];
        if (total == len - o) return o;
    }
    return std::nullopt;
}

}  // namespace

RawSource::RawSource(const std::string& interface, const std::string& filter, int tx_fd,
                     std::function<std::uint64_t()> sent, int snaplen, int buffer_bytes)
    : tx_fd_(tx_fd),
      snaplen_(static_cast<std::size_t>(snaplen)),
      sent_(std::move(sent)),
      // Our packets come back whole, with their link-layer header (the IPv4 header is
      // found by its length); answers are cut at snaplen by the filter already.
      tx_batch_(std::max<std::size_t>(snaplen_, 2048) + 128, snaplen_ > 4096 ? 4 : 32),
      rx_batch_(snaplen_, snaplen_ > 4096 ? 4 : 64) {
    CompiledFilter compiled(filter, snaplen);
    const sock_fprog prog = compiled.fprog();
    try {
        tcp_fd_ = open_raw(IPPROTO_TCP, interface, prog, buffer_bytes);
        icmp_fd_ = open_raw(IPPROTO_ICMP, interface, prog, std::min(buffer_bytes, 1 << 20));
        const unsigned flags = tx_flags;
        set_option(tx_fd_, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags, "SO_TIMESTAMPING");
        // Each queued timestamp holds a copy of its packet until we read it.
        set_buffer(tx_fd_, SO_RCVBUFFORCE, SO_RCVBUF, buffer_bytes);
        fds_ = {tcp_fd_, icmp_fd_, tx_fd_};
    } catch (...) {
        close_all();
        throw;
    }
}

RawSource::~RawSource() { close_all(); }

void RawSource::close_all() {
    for (int* fd : {&tcp_fd_, &icmp_fd_})
        if (*fd >= 0) ::close(std::exchange(*fd, -1));
    tx_fd_ = -1;  // the sender's, which closes it
    fds_ = {-1, -1, -1};
}

/// Messages read per recvmmsg() call: under a flood, one system call per packet was
/// most of the cost (three per probe: two transmit stamps and the answer).
RawSource::Batch::Batch(std::size_t slot_bytes, std::size_t count)
    : slot(slot_bytes), data(new std::uint8_t[slot_bytes * count]), hdrs(count), iovs(count), control(count) {}

template <class Each>
void RawSource::receive(int fd, int flags, Batch& b, std::size_t budget, Each&& each) {
    while (budget > 0) {
        const std::size_t n = std::min(budget, b.hdrs.size());
        for (std::size_t i = 0; i < n; ++i) {
            b.iovs[i] = {b.data.get() + i * b.slot, b.slot};
            b.hdrs[i] = {};
            b.hdrs[i].msg_hdr.msg_iov = &b.iovs[i];
            b.hdrs[i].msg_hdr.msg_iovlen = 1;
            b.hdrs[i].msg_hdr.msg_control = b.control[i].data();
            b.hdrs[i].msg_hdr.msg_controllen = b.control[i].size();
        }
        const int got = ::recvmmsg(fd, b.hdrs.data(), static_cast<unsigned>(n), flags | MSG_DONTWAIT, nullptr);
        if (got < 0 && (errno == EPERM || errno == EACCES || errno == ENOSYS || errno == EBADF || errno == EINVAL ||
                        errno == EFAULT))
            // Not "nothing queued": a refused call (the seccomp allow-list) would otherwise
            // read as a silent network, every probe lost.
            throw EnvironmentError(fmt::format("raw capture: recvmmsg: {}", std::strerror(errno)));
        if (got <= 0) return;  // EAGAIN: nothing more queued
        for (int i = 0; i < got; ++i)
            each(b.hdrs[static_cast<std::size_t>(i)].msg_hdr, b.data.get() + static_cast<std::size_t>(i) * b.slot,
                 static_cast<std::size_t>(b.hdrs[static_cast<std::size_t>(i)].msg_len));
        budget -= static_cast<std::size_t>(got);
        if (static_cast<std::size_t>(got) < n) return;
    }
}

void RawSource::read_tx(std::size_t budget) {
    receive(tx_fd_, MSG_ERRQUEUE, tx_batch_, budget, [&](msghdr& msg, const std::uint8_t* bytes, std::size_t len) {
        std::optional<std::int64_t> ns;
        bool timestamping = false;
        std::uint32_t kind = 0, key = 0;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPING) {
                scm_timestamping ts{};
                std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
                ns = to_ns(ts.ts[0]);
            } else if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) {
                sock_extended_err ee{};
                std::memcpy(&ee, CMSG_DATA(c), sizeof ee);
                timestamping = ee.ee_origin == SO_EE_ORIGIN_TIMESTAMPING;
                kind = ee.ee_info;
                key = ee.ee_data;
            }
        }
        auto at = ipv4_offset(bytes, len);
        if (!ns || !timestamping || !at) return;  // not a transmit timestamp of a whole packet
        if (kind == SCM_TSTAMP_SCHED) {
            // Waits for its SND stamp in the batch (SND cannot come first).
            ++tx_stamps_;
            const std::size_t keep = std::min(len - *at, snaplen_);
            unpaired_.push_back({key, batch_.size()});
            batch_.push_back({*ns, arena_.size(), keep, *ns});
            arena_.insert(arena_.end(), bytes + *at, bytes + *at + keep);
        } else if (kind == SCM_TSTAMP_SND) {
            snd_seen_ = true;
            // Newest first: a packet's SND normally follows its SCHED within the same send.
            auto it = std::find_if(unpaired_.rbegin(), unpaired_.rend(), [&](const auto& u) { return u.first == key; });
            if (it == unpaired_.rend()) return;  // its SCHED stamp went out alone in an earlier drain
            Pending& p = batch_[it->second];
            p.ns = RawSource::wire_time(p.sched_ns, *ns);
            p.paired = true;
            newest_paired_sched_ns_ = std::max(newest_paired_sched_ns_, p.sched_ns);
            *it = unpaired_.back();
            unpaired_.pop_back();
        }
    });
}

std::optional<RawSource::SegmentKey> RawSource::key_of(const std::uint8_t* b, std::size_t len, bool sent) {
    auto be16 = [&](std::size_t o) { return static_cast<std::uint16_t>(b[o] << 8 | b[o + 1]); };
    auto be32 = [&](std::size_t o) { return static_cast<std::uint32_t>(be16(o)) << 16 | be16(o + 2); };
    if (len < 20 || (b[0] >> 4) != 4) return std::nullopt;
    const std::size_t ihl = std::size_t{b[0] & 0x0Fu} * 4;
    SegmentKey k;
    if (!sent && b[9] == IPPROTO_ICMP) {
        // type, code, checksum, 4 bytes; then the quoted IPv4 header and 8 bytes of TCP.
        const std::size_t q = ihl + 8;
        if (len < q + 20 || (b[q] >> 4) != 4 || b[q + 9] != IPPROTO_TCP) return std::nullopt;
        const std::size_t qt = q + std::size_t{b[q] & 0x0Fu} * 4;
        if (len < qt + 8) return std::nullopt;
        k.flow = Flow{be32(q + 12), be16(qt), be32(q + 16), be16(qt + 2)};
        k.icmp = true;
        k.seq = be32(qt + 4);
        return k;
    }
    if (b[9] != IPPROTO_TCP || len < ihl + 14) return std::nullopt;
    const std::uint8_t flags = b[ihl + 13];
    if (sent) {
        k.flow = Flow{be32(12), be16(ihl), be32(16), be16(ihl + 2)};
        k.seq = be32(ihl + 4);
        const std::size_t header = ihl + std::size_t{static_cast<std::uint8_t>(b[ihl + 12] >> 4)} * 4;
        const std::size_t total = be16(2);
        k.span = static_cast<std::uint32_t>((total > header ? total - header : 0) + ((flags & 0x02) ? 1 : 0) +
                                            ((flags & 0x01) ? 1 : 0));
    } else {
        k.flow = Flow{be32(16), be16(ihl + 2), be32(12), be16(ihl)};
        k.ack = be32(ihl + 8);
        k.acks = (flags & 0x10) != 0;
    }
    return k;
}

std::optional<RawSource::Flow> RawSource::flow_of(const std::uint8_t* b, std::size_t len, bool sent) {
    auto k = key_of(b, len, sent);
    if (!k) return std::nullopt;
    return k->flow;
}

bool RawSource::answers(const SegmentKey& answer, const SegmentKey& sent) {
    if (answer.flow != sent.flow) return false;
    if (answer.icmp) return answer.seq == sent.seq;
    // It acknowledges something of this segment: ack in (seq, seq + span].
    const std::uint32_t past = answer.ack - sent.seq;
    return answer.acks && sent.span > 0 && past >= 1 && past <= sent.span;
}

void RawSource::hold_unpaired(std::size_t answers_from, std::size_t answers_to) {
    // A packet whose SND stamp has not come yet still waits in a queueing discipline (a
    // busy uplink): its SCHED stamp alone would date it too early by that wait. It is
    // held for a later drain, until its SND stamp, unless
    //  * an answer to it was read now (its SND stamp was lost: the error queue was full),
    //    or any packet of its flow while the device has not shown an SND stamp (a driver
    //    that never stamps SND): an answer must not come before its segment;
    //  * a later packet of its flow got its SND stamp: a queue keeps a flow's order, so
    //    this one was dropped;
    //  * it has waited hold_limit_ns (dropped; or the driver does not stamp SND: if it
    //    has never shown one by then, nothing is held until it does);
    //  * this is the run's last drain; past max_held, the oldest go.
    // Released without SND, it keeps its SCHED time, and counts as unsent.
    if (unpaired_.empty()) return;
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    const std::int64_t now_ns = to_ns(now);
    std::vector<SegmentKey> answered;
    for (std::size_t i = answers_from; i < answers_to; ++i)
        if (auto k = key_of(arena_.data() + batch_[i].offset, batch_[i].length, false)) answered.push_back(*k);
    const auto by_flow = [](const SegmentKey& a, const SegmentKey& b) { return a.flow < b.flow; };
    std::sort(answered.begin(), answered.end(), by_flow);
    // The latest SCHED time of a packet paired in this drain, per flow.
    std::vector<std::pair<Flow, std::int64_t>> paired;
    for (const auto& p : batch_)
        if (p.paired)
            if (auto f = flow_of(arena_.data() + p.offset, p.length, true)) paired.push_back({*f, p.sched_ns});
    std::sort(paired.begin(), paired.end());
    std::vector<std::pair<std::int64_t, std::size_t>> keep;  // SCHED time, index in unpaired_
    for (std::size_t u = 0; u < unpaired_.size(); ++u) {
        const Pending& p = batch_[unpaired_[u].second];
        const auto key = key_of(arena_.data() + p.offset, p.length, true);
        const std::int64_t age = now_ns - p.sched_ns;
        if (age > hold_limit_ns && !snd_seen_) no_snd_ = true;
        bool release = last_drain_ || (no_snd_ && !snd_seen_) || age > hold_limit_ns;
        if (!release && key) {
            const auto [from, to] = std::equal_range(answered.begin(), answered.end(), *key, by_flow);
            release = std::any_of(from, to, [&](const SegmentKey& a) { return !snd_seen_ || answers(a, *key); });
            auto later = std::upper_bound(paired.begin(), paired.end(), std::make_pair(key->flow, p.sched_ns));
            release = release || (later != paired.end() && later->first == key->flow);
        }
        if (!release) {
            keep.push_back({p.sched_ns, u});
        } else if (snd_seen_ && (!last_drain_ || p.sched_ns < newest_paired_sched_ns_)) {
            // In the last drain, one still queued is not counted; one older than a packet
            // that has reached the device was dropped.
            ++snd_missing_;
        }
    }
    if (keep.size() > max_held) {
        std::sort(keep.begin(), keep.end(), std::greater<>{});  // the newest stay
        snd_missing_ += keep.size() - max_held;
        keep.resize(max_held);
    }
    for (const auto& [sched, u] : keep) {
        const auto& [key, index] = unpaired_[u];
        Pending& p = batch_[index];
        held_.push_back({key, p.ns, p.sched_ns, {arena_.begin() + static_cast<std::ptrdiff_t>(p.offset),
                                                 arena_.begin() + static_cast<std::ptrdiff_t>(p.offset + p.length)}});
        p.held = true;
    }
    unpaired_.clear();
}

void RawSource::read_rx(int fd, std::uint32_t& dropped, std::size_t budget) {
    receive(fd, 0, rx_batch_, budget, [&](msghdr& msg, const std::uint8_t* bytes, std::size_t len) {
        std::optional<std::int64_t> ns;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET) continue;
            if (c->cmsg_type == SCM_TIMESTAMPNS) {
                timespec ts{};
                std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
                ns = to_ns(ts);
            } else if (c->cmsg_type == SO_RXQ_OVFL) {
                std::memcpy(&dropped, CMSG_DATA(c), sizeof dropped);
            }
        }
        if (!ns) {
            // Cannot happen with SO_TIMESTAMPNS set; a packet without a time is useless.
            ++untimed_;
            return;
        }
        len = std::min(len, snaplen_);
        batch_.push_back({*ns, arena_.size(), len, *ns});
        arena_.insert(arena_.end(), bytes, bytes + len);
    });
}

std::size_t RawSource::drain_last(const std::function<void(const CapturedFrame&)>& on_frame) {
    last_drain_ = true;
    return drain(on_frame);
}

std::size_t RawSource::drain(const std::function<void(const CapturedFrame&)>& on_frame) {
    batch_.clear();
    arena_.clear();
    // Packets held by the last drain wait for their SND stamp again.
    for (auto& h : held_) {
        unpaired_.push_back({h.key, batch_.size()});
        batch_.push_back({h.ns, arena_.size(), h.bytes.size(), h.sched_ns});
        arena_.insert(arena_.end(), h.bytes.begin(), h.bytes.end());
    }
    held_.clear();
    // Transmit timestamps first, all of them (bounded): the kernel queues a segment's
    // stamps inside the send call, before its answer can exist, so once the error queue
    // is empty every answer read next has its segment's stamp in this batch. Reading only
    // part of it let answers under a flood come before their SYN's stamp, and their RTT
    // ran from the time the loop built the SYN instead (up to tens of ms early).
    read_tx(max_tx_stamps_per_drain);
    const std::size_t stamps = batch_.size();
    read_rx(tcp_fd_, tcp_dropped_, max_frames_per_drain);
    read_rx(icmp_fd_, icmp_dropped_, std::max<std::size_t>(1, max_frames_per_drain + stamps - batch_.size()));
    const std::size_t answers_end = batch_.size();
    // A stamp queued while the answers were read (a packet that waited in a queue, or for
    // its next hop's address after its send call returned): its answer may be among
    // them, and must not come before it. Under a flood every packet sent so far has
    // usually shown its SCHED stamp by now, and nothing waits: no second read.
    const bool stamps_due = !unpaired_.empty() || (sent_ && sent_() > tx_stamps_);
    if (answers_end > stamps && stamps_due) read_tx(max_tx_stamps_per_drain);
    hold_unpaired(stamps, answers_end);
    std::stable_sort(batch_.begin(), batch_.end(), [](const Pending& a, const Pending& b) { return a.ns < b.ns; });
    std::size_t handed = 0;
    for (const auto& p : batch_)
        if (!p.held) {
            on_frame(CapturedFrame{instant_from_ns(p.ns), wire::dlt::raw, {arena_.data() + p.offset, p.length}});
            ++handed;
        }
    return handed;
}

std::uint64_t RawSource::drops() const {
    const std::uint64_t sent = sent_ ? sent_() : 0;
    const std::uint64_t tx_missing = sent > tx_stamps_ ? sent - tx_stamps_ : 0;
    // SO_RXQ_OVFL reports the socket's drop count with each packet queued after a drop:
    // drops after the last queued packet (a flood's final burst) show only here.
    auto dropped = [](int fd, std::uint32_t seen) -> std::uint64_t {
        std::uint32_t info[SK_MEMINFO_VARS] = {};
        socklen_t len = sizeof info;
        if (fd >= 0 && ::getsockopt(fd, SOL_SOCKET, SO_MEMINFO, info, &len) == 0 && len > SK_MEMINFO_DROPS * sizeof info[0])
            return std::max(seen, info[SK_MEMINFO_DROPS]);
        return seen;
    };
    return dropped(tcp_fd_, tcp_dropped_) + dropped(icmp_fd_, icmp_dropped_) + untimed_ + tx_missing;
}

}  // namespace tcpprobe::io
