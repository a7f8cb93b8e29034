// Liveness probing: "does the peer still hold this state?" asked without disturbing it.
//
// A scenario that measures how long a peer keeps a state (a half-open request, LAST-ACK,
// a client in SYN-SENT) cannot tell "the peer gave up" from "the path lost the next
// copy" by waiting alone. It asks instead, at the moments the model says matter, with a
// segment the state must answer without leaving it (an out-of-window segment draws an
// ACK, RFC 9293 §3.10.7.4; a closed port draws a RST, §3.10.7.1). The scenario builds
// the segment and classifies the answer; this component owns the timing: rounds at the
// planned instants, each retried (the probe or its answer may be lost) before it counts
// as unanswered. Sans-IO like every scenario.
#pragma once

#include <optional>
#include <vector>

#include "tcpprobe/probe/schedule.hpp"
#include "tcpprobe/time.hpp"

namespace tcpprobe::probe {

struct LivenessConfig {
    Duration answer_wait = std::chrono::milliseconds{400};  ///< per try
    unsigned tries = 3;                                      ///< per round
};

class LivenessProber {
public:
    explicit LivenessProber(LivenessConfig cfg = {}) : cfg_(cfg) {}

    /// Replaces the planned rounds (absolute instants; past ones run at once).
    void plan(std::vector<Instant> due);
    /// Adds one round.
    void plan_one(Instant at);
    /// True when a probe should be sent now (a round's first try or a retry). Also
    /// settles a round whose last try went unanswered.
    bool due(Instant now);
    /// The scenario sent the probe (call once per `due() == true`).
    void sent(Instant now);
    /// An answer to the outstanding probe; ignored when none is outstanding.
    void answered(Instant t, Liveness l);
    bool outstanding() const { return try_sent_.has_value(); }
    std::optional<Instant> next_deadline() const;
    const std::vector<std::pair<Instant, Liveness>>& results() const { return results_; }
    std::optional<Liveness> last() const;
    unsigned probes_sent() const { return sent_; }
    /// Median time from a try to its answer (the path's RTT as the probes saw it).
    std::optional<Duration> rtt() const;
    /// Relative to `origin`, for the schedule fitter.
    std::vector<LivenessProbe> relative(Instant origin) const;

private:
    LivenessConfig cfg_;
    std::vector<Instant> due_;                ///< ascending
    std::optional<Instant> round_started_;
    std::optional<Instant> try_sent_;         ///< outstanding try
    unsigned tries_ = 0;
    unsigned sent_ = 0;
    std::vector<std::pair<Instant, Liveness>> results_;
    std::vector<Duration> rtts_;
};

}  // namespace tcpprobe::probe
