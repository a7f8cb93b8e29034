// Retransmission schedules: fitting the capture times of a segment and its
// retransmissions to an exponential-backoff model (RFC 6298 §5.5; Linux's SYN-ACK, FIN
// and SYN timers) and inferring the retry setting when the end was seen.
//
// Gaps are judged against a tolerance, never by equality: the larger of an absolute
// floor and a percentage of the expected gap (packetdrill's --tolerance_usecs and
// --tolerance_percent). Linux's timer granularity (HZ=250 here) turns a 1 s RTO into
// 1000-1032 ms and a 2 s one into 2016 ms (DESIGN §3).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/time.hpp"

namespace tcpprobe::probe {

struct Tolerance {
    Duration floor = std::chrono::milliseconds{50};
    double percent = 10.0;
    Duration for_gap(Duration expected) const;
};

/// Parses "50ms" (floor only), "10%" (percent only) or "50ms,10%". Returns nullopt when malformed.
std::optional<Tolerance> parse_tolerance(const std::string& text);

/// How a Linux peer decides to stop retransmitting, which decides what its setting is.
enum class RetryRule {
    /// Counts retransmissions: SYN-ACK (req->num_timeout >= tcp_synack_retries).
    Count,
    /// Time-based (retransmits_timed_out): stops once the time since the first
    /// retransmission reaches (2^(N+1) - 1) x 200 ms (TCP_RTO_MIN): orphaned FIN
    /// retransmissions, tcp_orphan_retries = N. With the 200 ms RTO of a short path that
    /// is N + 1 retransmissions.
    OrphanTime,
    /// Time-based from the original SYN with a 1 s base (TCP_TIMEOUT_INIT): a client's
    /// SYN retransmissions stop at the first expiry (2^(N+1) - 1) s after the first SYN,
    /// tcp_syn_retries = N (with Linux 6.7+'s linear first gaps that is more than N).
    SynTime,
};

struct ScheduleFit {
    std::vector<Duration> gaps;             ///< between consecutive transmissions
    std::vector<Duration> expected;         ///< the model's gap for each (rto0 * 2^i, capped)
    std::vector<bool> within_tolerance;     ///< per gap
    std::optional<Duration> initial_rto;    ///< the first gap
    std::optional<double> backoff;          ///< median ratio of consecutive gaps
    std::size_t linear_gaps = 0;            ///< leading gaps equal to the first (then doubling)
    bool exponential = false;               ///< every gap within tolerance of the doubling model
    unsigned retransmissions = 0;
    bool ended = false;                     ///< silence past the next expected gap, or a RST
    std::optional<Duration> next_gap;       ///< what the model expects next
    std::optional<unsigned> inferred_retries;   ///< when ended and exponential
    std::optional<Duration> give_up_after;  ///< first transmission to the peer giving up (model)
};

/// `times`: the original transmission and every retransmission, in capture order.
ScheduleFit fit_schedule(const std::vector<Instant>& times, const Tolerance& tol, bool ended,
                         RetryRule rule = RetryRule::Count, Duration max_rto = std::chrono::seconds{120});

/// When silence means the peer has stopped: the last transmission plus the next expected
/// gap plus its tolerance; with a single transmission, `first_wait` after it.
Instant silence_deadline(const std::vector<Instant>& times, const Tolerance& tol, Duration first_wait,
                         Duration max_rto = std::chrono::seconds{120});

}  // namespace tcpprobe::probe
