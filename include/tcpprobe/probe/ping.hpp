// TCP ping: repeated half-open SYN probes, timed at the wire.
//
// Probes to one destination go out on "lanes": a lane is one source port (one 4-tuple,
// one flow) that carries one probe at a time, each with its own ISN, so an answer is
// matched to its probe by the acknowledgment number without ambiguity. A SYN-ACK is
// reset by the local kernel, which knows nothing of the connection (there is no RST
// guard); we send no RST of our own, so a probe costs one packet. The global pace (--interval,
// --rate, --flood) is a ticket schedule shared by every lane of the run.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "tcpprobe/probe/ip_id.hpp"
#include "tcpprobe/probe/scenario.hpp"
#include "tcpprobe/tcb/tcb.hpp"

namespace tcpprobe::probe {

/// The run's pace: ticket k may go at start + k * spacing (spacing 0: as fast as possible),
/// and each destination gets `per_destination` probes.
class PingPlan {
public:
    PingPlan(Instant start, Duration spacing, std::size_t destinations, std::uint32_t per_destination);
    struct Ticket {
        Instant at;            ///< when it may go
        std::uint32_t seq_no;  ///< the probe's number for its destination
    };
    /// Takes the next ticket for destination d, or nullopt when d is served.
    std::optional<Ticket> take(std::size_t d);
    std::uint32_t per_destination() const { return per_destination_; }

private:
    Instant start_;
    Duration spacing_;
    std::uint64_t issued_ = 0;
    std::uint32_t per_destination_;
    std::vector<std::uint32_t> taken_;
};

enum class ProbeResult : std::uint8_t { Pending, SynAck, Rst, Icmp, Silence };

/// The run's results as probes finish: per destination, a count per outcome and every
/// RTT (8 bytes a probe, so percentiles stay exact: 1,000,000 probes take 8 MB). Lanes
/// report here and keep no history, so their memory does not grow with --count.
class PingTally {
public:
    explicit PingTally(std::size_t destinations) : dests_(destinations) {}
    struct Destination {
        std::uint64_t sent = 0, synack = 0, rst = 0, icmp = 0, silence = 0;
        std::vector<std::int64_t> rtt_ns;  ///< answered probes, in the order they finished
    };
    void record(std::size_t d, ProbeResult r, std::int64_t rtt_ns);
    const Destination& at(std::size_t d) const { return dests_.at(d); }
    Destination& at(std::size_t d) { return dests_.at(d); }
    std::size_t size() const { return dests_.size(); }

private:
    std::vector<Destination> dests_;
};

struct PingLaneConfig {
    wire::FourTuple tuple;
    wire::Seq iss;             ///< seeds the lane's ISNs
    /// Builds our SYNs (options, timestamps, window, IP fields); shared by every lane of
    /// a run, which differ only in tuple and ISN. Its own tuple is not used.
    std::shared_ptr<tcb::Tcb> syn_maker;
    /// The IP IDs of every lane's SYNs (one sender): counted from the SYN maker's first one.
    std::shared_ptr<IpIds> ip_ids;
    std::size_t destination = 0;
    Duration timeout = std::chrono::seconds{1};
    bool events = true;        ///< per-probe lines (off under --flood)
};

class PingLane final : public Flow {
public:
    PingLane(PingLaneConfig config, std::shared_ptr<PingPlan> plan, std::shared_ptr<PingTally> tally);

    wire::FourTuple tuple() const override { return cfg_.tuple; }
    void start(Instant now, Outbox& out) override;
    void on_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out) override;
    void on_icmp(Instant t, const wire::IcmpError& err, Outbox& out) override;
    void on_timer(Instant now, Outbox& out) override;
    void interrupt(Instant now, Outbox& out) override;
    std::optional<Instant> next_deadline() const override;
    bool done() const override { return done_; }

    std::size_t destination() const { return cfg_.destination; }
    /// The local kernel's RSTs seen in the capture (0 when the capture cannot see them).
    std::uint64_t kernel_rsts() const { return kernel_rsts_; }
    std::uint64_t late() const { return late_; }
    /// ICMP redirects and source quenches about our SYNs: no answer (wire::icmp_is_advisory).
    std::uint64_t icmp_advisories() const { return advisories_; }
    /// Probes sent again because the peer still held the lane's previous half-open
    /// connection and answered with an ACK for it.
    std::uint64_t held() const { return held_; }

private:
    void next_ticket(Instant now);
    void send_probe(Instant now, Outbox& out);
    /// The outstanding probe's SYN, with a new ISN (its first, or its one resend).
    void send_syn(Instant now, Outbox& out);
    void finish_probe(Instant t, ProbeResult r, Outbox& out, const char* what);

    /// An answer captured after the probe's timeout: the probe is lost and the answer late.
    bool answered_too_late(Instant t, Outbox& out);

    PingLaneConfig cfg_;
    std::shared_ptr<PingPlan> plan_;
    std::shared_ptr<PingTally> tally_;
    Instant sent_{};                   ///< the outstanding probe's SYN, at the capture
    std::uint32_t seq_no_ = 0;         ///< its number for its destination
    std::optional<Instant> send_at_;   ///< our next ticket
    std::uint32_t next_seq_no_ = 0;
    std::optional<Instant> give_up_at_;
    bool outstanding_ = false;
    bool captured_ = false;            ///< the outstanding SYN has been seen in the capture
    wire::Seq isn_;
    std::uint64_t kernel_rsts_ = 0;
    std::uint64_t late_ = 0;
    std::uint64_t advisories_ = 0;
    std::optional<wire::Seq> previous_isn_;  ///< the ISN of the lane's SYN before the outstanding one
    bool resent_ = false;                     ///< the outstanding probe's SYN went again (held connection)
    bool syn_sent_ = false;
    std::uint64_t held_ = 0;
    std::uint32_t own_rsts_ = 0;              ///< our RSTs not yet seen in the capture
    bool done_ = false;
};

}  // namespace tcpprobe::probe
