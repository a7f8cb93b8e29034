// The passive side: a remote *client* connects to a local port that nothing answers
// (an nft rule drops its SYNs before the local stack; the capture still sees them).
//
// Whether the client is still trying is asked with an ACK of its SYN that carries no
// SYN: a client in SYN-SENT drops it silently (RFC 9293 §3.10.7.3, "fifth, if neither of
// the SYN or RST bits is set then drop the segment"), a client that gave up answers RST
// (§3.10.7.1). Only the RST is evidence; silence tells nothing.
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

#include "tcpprobe/probe/conclusion.hpp"
#include "tcpprobe/probe/connection.hpp"
#include "tcpprobe/probe/liveness.hpp"
#include "tcpprobe/probe/schedule.hpp"

namespace tcpprobe::probe {

enum class ListenAnswer { None, SynAck, Syn };
std::string_view to_string(ListenAnswer a);  ///< "none", "synack", "syn" (the --answer words)

struct ListenConfig {
    ConnectConfig connect;  ///< tcb.tuple = (our endpoint, the client); our SYN / SYN-ACK options
    ListenAnswer answer = ListenAnswer::None;
    Tolerance tolerance;
    LivenessConfig liveness;
    std::size_t max_syns = 64;   ///< more is a flood, not a SYN schedule: the client is done
};

struct ListenReport {
    std::vector<Instant> syn_times;     ///< the client's SYN and its retransmissions
    wire::OptionList syn_options;       ///< options of its first SYN
    std::uint16_t syn_window = 0;
    std::uint8_t syn_ttl = 0;
    std::string end = "pending";        ///< silence, confirmed, rst, closed, max-wait, interrupted, flood
    ScheduleEvidence evidence;          ///< relative to the first SYN, with the liveness probes
    ScheduleFit fit;
    unsigned probes_sent = 0;
};

/// A Flow that holds its Connection, open from the start: the client's segments drive it.
class ListenFlow final : public Flow, private ConnectionHooks {
public:
    explicit ListenFlow(ListenConfig config);
    const ListenReport& report() const { return report_; }
    const ListenConfig& config() const { return cfg_; }
    const Connection& connection() const { return conn_; }
    const ConnectResult& connect_result() const { return conn_.result(); }
    const tcb::Tcb& tcb() const { return conn_.tcb(); }
    bool concluded() const { return concluded_.reached(); }
    std::string progress(Instant now) const override;
    void stop(Instant now, Outbox& out) override;

    wire::FourTuple tuple() const override { return conn_.tuple(); }
    void start(Instant now, Outbox& out) override;
    void on_segment(Instant t, const wire::Segment& seg, bool outgoing, Outbox& out) override {
        if (conn_.on_segment(t, seg, outgoing, out)) on_client_segment(t, seg, out);
    }
    void on_icmp(Instant t, const wire::IcmpError& err, Outbox& out) override { conn_.on_icmp(t, err, out); }
    void on_timer(Instant now, Outbox& out) override {
        if (conn_.on_timer(now, out)) on_client_timer(now, out);
    }
    void interrupt(Instant now, Outbox& out) override;
    std::optional<Instant> next_deadline() const override;
    bool done() const override { return conn_.done(); }

private:
    // What the connection tells us.
    void on_established(Instant, Outbox&) override {}
    std::optional<wire::FormatContext> format_context(wire::Direction d, const wire::Segment& seg) const override;

    void on_client_segment(Instant t, const wire::Segment& seg, Outbox& out);
    void on_client_timer(Instant now, Outbox& out);
    void conclude(Instant now, std::string end, Outbox& out);
    ScheduleEvidence evidence(bool stopped_early) const;
    void replan();
    std::optional<Instant> silence_at() const;

    ListenConfig cfg_;
    Connection conn_{cfg_.connect, *this};
    tcb::Tcb& tcb_ = conn_.tcb();
    ListenReport report_;
    std::optional<wire::Seq> client_isn_;
    bool answered_ = false;
    Conclusion concluded_;
    LivenessProber prober_;
};

}  // namespace tcpprobe::probe
