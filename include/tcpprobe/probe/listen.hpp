// The passive side: a remote *client* connects to a local port that nothing answers
// (an nft rule drops its SYNs before the local stack; the capture still sees them).
//
//   none     its SYN retransmission schedule is timed: Linux retransmits at 1, 2, 4 ...
//            s while the time since the first SYN stays below (2^(N+1) - 1) s, so
//            tcp_syn_retries = N is N retransmissions.
//   synack   the first SYN is answered with our SYN-ACK and the rest of the client's
//            connection is traced by our TCB.
//   syn      the first SYN is answered with a bare SYN of ours: a simultaneous open from
//            the client's point of view (it answers with a SYN-ACK).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/probe/connection.hpp"
#include "tcpprobe/probe/schedule.hpp"

namespace tcpprobe::probe {

enum class ListenAnswer { None, SynAck, Syn };

struct ListenConfig {
    ConnectConfig connect;  ///< tcb.tuple = (our endpoint, the client); our SYN / SYN-ACK options
    ListenAnswer answer = ListenAnswer::None;
    Tolerance tolerance;
    Duration quiet_first = std::chrono::seconds{3};
};

struct ListenReport {
    std::vector<Instant> syn_times;     ///< the client's SYN and its retransmissions
    wire::OptionList syn_options;       ///< options of its first SYN
    std::uint16_t syn_window = 0;
    std::uint8_t syn_ttl = 0;
    std::string end = "pending";        ///< silence, rst, closed, max-wait, interrupted
    ScheduleFit fit;
};

class ListenFlow final : public ConnectionFlow {
public:
    explicit ListenFlow(ListenConfig config);
    const ListenReport& report() const { return report_; }
    const ListenConfig& config() const { return cfg_; }
    bool concluded() const { return concluded_; }
    std::string progress(Instant now) const override;
    void stop(Instant now, Outbox& out) override;

protected:
    void begin(Instant now, Outbox& out) override;
    void on_established(Instant, Outbox&) override {}
    void on_connected_segment(Instant t, const wire::Segment& seg, Outbox& out) override;
    void on_connected_timer(Instant now, Outbox& out) override;
    std::optional<Instant> connected_deadline() const override;
    void on_interrupt(Instant now, Outbox& out) override;
    wire::FormatContext context_for(wire::Direction d, const wire::Segment& seg) const override;

private:
    void conclude(Instant now, std::string end, Outbox& out);

    ListenConfig cfg_;
    ListenReport report_;
    std::optional<wire::Seq> client_isn_;
    bool answered_ = false;
    bool concluded_ = false;
};

}  // namespace tcpprobe::probe
