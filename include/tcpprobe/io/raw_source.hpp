// The capture without a packet socket: what a run sees of the wire, read from raw IP
// sockets, for runs that write no pcap file.
//
// Why: an AF_PACKET capture costs about 40 ms of kernel RCU grace periods per process
// (setsockopt PACKET_RX_RING and close() each wait in synchronize_net), which is most
// of a one-shot run. Raw IP sockets cost microseconds to open and close. They see:
//
//  * answers: one IPPROTO_TCP and one IPPROTO_ICMP socket receive a copy of every
//    packet delivered to this host, before TCP handles it, each with the kernel's
//    receive timestamp (SO_TIMESTAMPNS). That is skb->tstamp, taken when the frame
//    entered the stack, the same stamp a packet socket (tcpdump, tshark) reports for it.
//    A classic BPF program compiled by libpcap (raw IP link type) keeps only the run's
//    packets, in the kernel;
//  * our own segments: the sending socket asks for software transmit timestamps
//    (SO_TIMESTAMPING); the kernel queues a copy of each packet it transmitted, with
//    the times it entered the device layer and reached the driver, on the socket's
//    error queue (see raw_source.cpp for how the two make one time).
//
// It does not see what the local kernel itself sends (its RSTs): runs that must see
// those, and runs that write -w FILE, capture with libpcap (PcapSource) instead.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <functional>
#include <optional>
#include <tuple>
#include <string>
#include <utility>
#include <vector>

#include "tcpprobe/io/ports.hpp"

namespace tcpprobe::io {

class RawSource final : public PacketSource {
public:
    /// `filter` (pcap syntax, applied to IP packets) selects the incoming packets;
    /// `tx_fd` is the sending raw socket, whose transmit timestamps are read here;
    /// `buffer_bytes` sizes each socket's receive queue; packets are cut at `snaplen`.
    /// `sent` counts the packets sent on `tx_fd`, to tell lost transmit timestamps.
    RawSource(const std::string& interface, const std::string& filter, int tx_fd, std::function<std::uint64_t()> sent,
              int snaplen, int buffer_bytes);
    ~RawSource() override;
    RawSource(const RawSource&) = delete;
    RawSource& operator=(const RawSource&) = delete;

    /// The TCP and ICMP sockets and the sender's (its error queue), polled directly: an
    /// epoll set would keep a waiter on each socket, and every packet received and
    /// every transmit stamp queued or read would run its wake-up callback even while
    /// the loop is busy sending (about 4 % of a flood's time).
    std::span<const int> fds() const override { return fds_; }
    /// Reads everything ready (bounded), then hands it over in timestamp order: a
    /// segment we sent comes before the answer to it even though the two are read from
    /// different sockets.
    std::size_t drain(const std::function<void(const CapturedFrame&)>& on_frame) override;
    /// The run's last drain: nothing is held any longer.
    std::size_t drain_last(const std::function<void(const CapturedFrame&)>& on_frame) override;
    /// Answers the kernel dropped for lack of queue space, plus our packets whose
    /// transmit timestamp was lost: either may hide an answer or a send time.
    std::uint64_t drops() const override;
    std::uint64_t unsent() const override { return snd_missing_; }
    /// Answers handed over per call; transmit stamps (two per packet we sent) are read
    /// up to max_tx_stamps_per_drain first, normally until the error queue is empty.
    static constexpr std::size_t max_frames_per_drain = 4096;
    /// A transmitted packet's time as a capture on the interface dates it, from its two
    /// transmit stamps (SCHED: it entered the device layer; SND: the driver got it). A
    /// packet socket stamps it between the two, after any queueing discipline: the
    /// midpoint, unless the packet waited in a queue, which happens before the tap; the
    /// work between the tap and the driver is at most max_tap_offset_ns (about 7 us
    /// measured on veth with tshark capturing, bench/README.md), so the packet is then
    /// dated half of that before SND.
    static std::int64_t wire_time(std::int64_t sched_ns, std::int64_t snd_ns);
    static constexpr std::int64_t max_tap_offset_ns = 10'000;
    /// Local address and port, remote address and port.
    using Flow = std::tuple<std::uint32_t, std::uint16_t, std::uint32_t, std::uint16_t>;
    /// The flow of an IPv4 packet: one we sent (`sent`), a TCP answer (reversed), or the
    /// TCP segment an ICMP error quotes; nullopt for anything else or too short.
    static std::optional<Flow> flow_of(const std::uint8_t* b, std::size_t len, bool sent);
    /// What pairs an answer with a segment we sent: the flow, and our segment's sequence
    /// space (seq, and span = payload + SYN + FIN), an answer's ack, an ICMP error's
    /// quoted seq.
    struct SegmentKey {
        Flow flow{};
        std::uint32_t seq = 0, span = 0, ack = 0;
        bool acks = false;  ///< a TCP answer with ACK set
        bool icmp = false;  ///< an ICMP error quoting a segment (seq is the quoted one)
    };
    static std::optional<SegmentKey> key_of(const std::uint8_t* b, std::size_t len, bool sent);
    /// `answer` acknowledges part of `sent` or is an ICMP error quoting it.
    static bool answers(const SegmentKey& answer, const SegmentKey& sent);
    static constexpr std::size_t max_tx_stamps_per_drain = 4 * max_frames_per_drain;

private:
    struct Pending {
        std::int64_t ns;
        std::size_t offset, length;
        std::int64_t sched_ns;  ///< a sent packet's SCHED stamp (its age while held)
        bool held = false;      ///< waits for its SND stamp in a later drain
        bool paired = false;    ///< a sent packet whose SND stamp came in this drain
    };
    /// A sent packet whose SND stamp had not come by the end of a drain.
    struct Held {
        std::uint32_t key;
        std::int64_t ns, sched_ns;
        std::vector<std::uint8_t> bytes;
    };
    struct Batch {
        Batch(std::size_t slot_bytes, std::size_t count);
        std::size_t slot;
        std::unique_ptr<std::uint8_t[]> data;  ///< count slots, untouched until used
        std::vector<mmsghdr> hdrs;
        std::vector<iovec> iovs;
        std::vector<std::array<char, 256>> control;
    };
    template <class Each>
    void receive(int fd, int flags, Batch& b, std::size_t budget, Each&& each);
    void close_all();
    void read_tx(std::size_t budget);
    /// Holds the sent packets still without an SND stamp for a later drain, or lets them
    /// go with SCHED alone; batch_[answers_from, answers_to) are the answers read now.
    void hold_unpaired(std::size_t answers_from, std::size_t answers_to);
    /// How long a sent packet waits for its SND stamp before it goes with SCHED alone
    /// (a queueing discipline dropped it, or the driver does not stamp SND).
    static constexpr std::int64_t hold_limit_ns = 1'000'000'000;
    static constexpr std::size_t max_held = 8192;
    void read_rx(int fd, std::uint32_t& dropped, std::size_t budget);

    int tcp_fd_ = -1, icmp_fd_ = -1, tx_fd_ = -1;
    std::array<int, 3> fds_{-1, -1, -1};
    std::size_t snaplen_;
    std::uint32_t tcp_dropped_ = 0, icmp_dropped_ = 0;  ///< SO_RXQ_OVFL counters (cumulative)
    std::function<std::uint64_t()> sent_;
    std::uint64_t tx_stamps_ = 0;                       ///< transmit timestamps read
    std::uint64_t untimed_ = 0;                         ///< packets read without a timestamp
    std::vector<std::uint8_t> arena_;
    std::vector<Pending> batch_;
    /// SCHED stamps waiting for their SND: key, index in batch_ (at most max_held plus one
    /// drain's stamps; searched from the newest).
    std::vector<std::pair<std::uint32_t, std::size_t>> unpaired_;
    std::vector<Held> held_;
    bool snd_seen_ = false;  ///< the device stamps SND (a driver may not)
    bool last_drain_ = false;
    bool no_snd_ = false;    ///< a packet waited hold_limit_ns and the device never stamped SND
    std::uint64_t snd_missing_ = 0;
    std::int64_t newest_paired_sched_ns_ = 0;  ///< SCHED time of the newest packet that got its SND  ///< packets handed over without their SND stamp (its time: SCHED)
    Batch tx_batch_, rx_batch_;
};

}  // namespace tcpprobe::io
