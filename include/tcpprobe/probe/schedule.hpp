// Retransmission schedules: fitting the capture times of a segment and its
// retransmissions to a backoff model, finding copies the path lost, judging how the
// schedule ended, and inferring a Linux retry setting only when the schedule carries
// Linux's signature (DESIGN §3, §3b).
//
// Gaps are judged against a tolerance, never by equality: the larger of an absolute
// floor and a percentage of the expected gap (packetdrill's --tolerance_usecs and
// --tolerance_percent). Linux's timer granularity (HZ=250 here) turns a 1 s RTO into
// 1000-1032 ms and a 2 s one into 2016 ms (DESIGN §3).
//
// Lost copies. A path that drops one copy shows a gap equal to the sum of two (or, with
// two losses in a row, three) consecutive model gaps. The fitter tries each backoff
// family with the first observed gap standing for one, two or three model gaps and keeps
// the hypothesis that explains every gap with the fewest lost copies. With two copies
// only, "one 3 s gap" and "a lost 1 s copy" explain the data equally: the fewest-losses
// rule picks the 3 s RTO, and nothing Linux-specific is inferred from so little.
//
// The end. Silence alone never ends a schedule that a lost copy could explain. Where the
// protocol allows, the scenario asks the peer with a liveness probe (a segment the
// state under test must answer without leaving it: an out-of-window segment, RFC 9293
// §3.10.7.4 "an acknowledgment should be sent in reply"; a closed port answers RST,
// §3.10.7.1). The probes give a bracket (last time the state was held, first time it
// was gone); a Linux peer gives up exactly at a model expiry, so the expiry inside the
// bracket names the number of copies it sent, lost ones included.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "tcpprobe/probe/lifetime.hpp"
#include "tcpprobe/time.hpp"

namespace tcpprobe::probe {

struct Tolerance {
    Duration floor = std::chrono::milliseconds{50};
    double percent = 10.0;
    Duration for_gap(Duration expected) const;
    /// How late a peer's expiry `gap` after its last copy may come: the tolerance, or the
    /// granularity of Linux's timer wheel (kernel/time/timer.c rounds an expiry up to its
    /// level's 8^level jiffies: at HZ=250, 32 ms below 2.048 s, 256 ms below 16.4 s,
    /// 2.048 s beyond), whichever is more. Timers fire late, never early.
    Duration late_by(Duration gap) const;
};

/// Which segment's schedule, which decides Linux's signature and how its setting is read.
enum class RetryRule {
    /// SYN-ACK: counts retransmissions (req->num_timeout >= tcp_synack_retries); the
    /// half-open request is dropped silently at the expiry after the last copy.
    Count,
    /// Orphaned FIN: time-based (retransmits_timed_out): stops once the time since the
    /// first retransmission reaches (2^(N+1) - 1) x 200 ms (TCP_RTO_MIN),
    /// tcp_orphan_retries = N; the RTO is the connection's (RTT-based, 200 ms floor).
    OrphanTime,
    /// A client's SYN: time-based from the original SYN with a 1 s base
    /// (TCP_TIMEOUT_INIT), tcp_syn_retries = N (Linux 6.7+ spaces the first
    /// tcp_syn_linear_timeouts + 1 retransmissions linearly).
    SynTime,
};

/// The shape of the gaps between consecutive copies, as multiples of the initial RTO.
enum class Backoff {
    Doubling,   ///< 1, 2, 4, 8, ... (RFC 6298 §5.5): Linux, BSD, Windows
    Linear,     ///< L gaps of 1, then doubling (Linux 6.7+ client SYNs)
    Table,      ///< 1, 2, 3, 4, 5, 6, 7, 7, ... (lwIP's tcp_backoff[])
    Constant,   ///< every gap the same (some embedded and user-space stacks)
};
std::string_view to_string(Backoff b);

// What a liveness probe found (lifetime.hpp's vocabulary): the state was still there
// (Alive: it answered in state), it was gone (a RST: closed), or nothing answered after
// the retries (Silent).

struct LivenessProbe {
    Duration at;       ///< relative to the schedule's origin
    Liveness answer;
};

/// What was seen, on one time axis (relative to `origin`, usually the first copy or our
/// segment that started the schedule).
struct ScheduleEvidence {
    std::vector<Duration> copies;               ///< observed copies, ascending
    /// The first copy is known to be the original (the origin is the first copy), or the
    /// origin is our own segment that triggered the schedule (then the original may be
    /// the lost one: a first copy one RTO after the origin is copy #1).
    bool origin_is_first_copy = true;
    std::optional<Duration> rtt;                ///< to subtract from copy times when origin is ours
    std::vector<LivenessProbe> probes;          ///< ascending
    std::optional<Duration> peer_rst;           ///< the peer ended the schedule with its own RST
    bool stopped_early = false;                 ///< max-wait or interrupted: the end was not seen
    /// A FIN follow-up run past a cached RTT (see ack_delay_past_cache): the first runs'
    /// RTO. Linux's RTO lies above it and its tolerance here, or it did not follow the
    /// longer RTT our late ACK gave the peer.
    std::optional<Duration> past_cache_rto;
    /// FIN: the RTO a cached RTT gave (the first runs' one). Set by the vote once a
    /// follow-up has shown the peer's RTO following the RTT as Linux's does: an RTO above
    /// Linux's range for this RTT is then Linux's from the cache when it is this one,
    /// within tolerance (every connection from us starts from the same cached RTT; one
    /// twice as long is a reading with the original copy lost, not the cache).
    std::optional<Duration> cache_rto;
};

struct MissingCopy {
    unsigned index;      ///< position in the model (0 = the original)
    Duration at;         ///< when the model expects it, relative to the origin
    bool trailing;       ///< after the last observed copy (seen as "still held" by a probe)
};

/// How the schedule ended.
enum class ScheduleEnd {
    Open,          ///< not ended when the run stopped (max-wait, interrupted)
    PeerRst,       ///< the peer sent a RST
    Confirmed,     ///< a liveness probe found the state gone (RST)
    Silence,       ///< no copy for two model gaps and no probe answered: unconfirmed
};
std::string_view to_string(ScheduleEnd e);

struct ScheduleFit {
    // What was observed.
    std::vector<Duration> gaps;             ///< between consecutive observed copies
    std::vector<Duration> expected;         ///< the model's time for each observed gap (lost copies summed in)
    std::vector<bool> within_tolerance;     ///< per observed gap
    std::vector<unsigned> copy_index;       ///< model position of each observed copy
    unsigned retransmissions = 0;           ///< observed copies - 1
    Duration first_copy_at{};               ///< the first observed copy on the model's axis

    // The model, when one fits.
    bool fitted = false;
    Backoff backoff_kind = Backoff::Doubling;
    std::optional<Duration> initial_rto;    ///< the model's first gap
    std::optional<double> backoff;          ///< median ratio of consecutive model gaps
    std::size_t linear_gaps = 0;            ///< Linear: gaps equal to the first before doubling
    bool exponential = false;               ///< fitted with Doubling or Linear (compatibility)
    std::vector<MissingCopy> missing;       ///< copies the path lost, by model position
    std::optional<Duration> next_gap;       ///< the model's gap after the last copy sent

    // The end and what it means.
    ScheduleEnd end = ScheduleEnd::Open;
    bool ended = false;                     ///< PeerRst, Confirmed or Silence
    std::optional<Duration> held_until;     ///< latest evidence the state was still held
    std::optional<Duration> gone_by;        ///< earliest evidence it was gone
    std::optional<unsigned> copies_sent;    ///< the peer's retransmissions, lost ones included (when the end pins it)
    std::optional<unsigned> time_pinned;    ///< client SYN: tcp_syn_retries from the give-up time alone
    /// One copy seen and the state gone before any retransmission could have been due: only
    /// then is "no retransmission" a fact (later, lost copies would look the same).
    bool gone_before_first_rto = false;
    std::optional<Duration> give_up_after;  ///< first copy to the peer giving up (model)

    // Linux or not.
    bool linux_like = false;                ///< every part of Linux's signature holds
    std::vector<std::string> linux_mismatch;  ///< why not, when not
    /// FIN: the initial RTO lies above what the RTT gives Linux, which a Linux peer shows
    /// only when it starts from a longer RTT cached for our address (tcp_metrics).
    bool rto_above_rtt = false;
    /// FIN follow-up past a cached RTT (ScheduleEvidence::past_cache_rto): its initial RTO is
    /// within Linux's range for the RTT our late ACK gave, and above the first runs'.
    bool rto_followed_rtt = false;
    std::optional<unsigned> inferred_retries;  ///< only when linux_like and the end is pinned
    /// Linux-like with a pinned end: every value of the setting that gives up at the same
    /// expiry. More than one (e.g. tcp_orphan_retries 1 and 2 at an RTO near 235 ms): the
    /// schedule cannot tell them apart, nothing is inferred, runs with other RTOs may.
    std::vector<unsigned> retries_candidates;
    std::string family;                     ///< best matching family ("" = no known family)
    std::vector<std::string> family_matched;
    std::vector<std::string> family_mismatched;
    std::vector<std::string> notes;         ///< "copy #2 missing at ~3.0 s, probably lost", ...
    /// The schedule can be described as a stack's own: at least two observed gaps (one gap
    /// shows no backoff), and no doubt that the first copy seen was the original (with no
    /// anchor, a doubling schedule whose first copies were lost looks like a slower stack).
    bool describable = false;
};

/// Fits the evidence. `rule` selects Linux's signature and setting; `max_rto` caps gaps.
ScheduleFit fit_schedule(const ScheduleEvidence& ev, const Tolerance& tol, RetryRule rule,
                         Duration max_rto = std::chrono::seconds{120});

/// Whether Linux's schedule under `setting` (its initial RTO unknown within Linux's range,
/// the first copies and up to two in a row possibly lost) explains this run: every copy
/// on one model position, none after the last copy the setting allows, and the give-up
/// expiry between the last sign of life and the first of death. A run that lost its
/// original copy cannot infer by itself, but it can agree or disagree with a run that
/// did. Needs two copies and a confirmed end (false otherwise); SYN-ACK (Count) and FIN
/// (OrphanTime) only.
bool linux_setting_explains(const ScheduleEvidence& ev, const Tolerance& tol, RetryRule rule, unsigned setting,
                            Duration max_rto = std::chrono::seconds{120});

/// Every value of the setting (0..15) that linux_setting_explains accepts for this run.
std::vector<unsigned> linux_settings_explaining(const ScheduleEvidence& ev, const Tolerance& tol, RetryRule rule);

/// Runs measured separately (FIN runs: each connection has its own RTO) vote on Linux's
/// setting. A run with Linux's signature offers the values that fit its give-up
/// (`retries_candidates`); a run that lost copies and has a confirmed end offers the
/// values `linux_setting_explains` accepts. The values all of them allow stand; a single
/// one is inferred when at least two runs offered it (or the only run there is): a run
/// that lost copies at the end can pin a wrong expiry, two cannot by chance. Runs at
/// different RTOs separate values that one run cannot (1 and 2 near 235 ms).
struct SettingVote {
    std::size_t signature_runs = 0;  ///< runs with Linux's signature
    std::size_t backing_runs = 0;    ///< other runs whose copies and end fit some values
    std::size_t cached_runs = 0;     ///< runs of both kinds read as started from a cached RTT (cache_rto, or an RTO above the RTT's range)
    std::vector<unsigned> values;    ///< allowed by every offering run (empty: they disagree)
    std::optional<unsigned> inferred;
};
struct RunFit {
    const ScheduleEvidence* evidence;
    const ScheduleFit* fit;
};
SettingVote vote_setting(const std::vector<RunFit>& runs, const Tolerance& tol, RetryRule rule);

/// FIN runs whose RTO leaves several tcp_orphan_retries values possible (their time limits
/// fall between the same two RTO expiries, e.g. 1 and 2 for an RTO in [233, 300) ms): the
/// delay of our ACKs that moves the peer's RTO to where every candidate sends a different
/// number of copies, with 15 % margin either way; none when no delay up to 900 ms does.
/// Linux's RTO after one RTT sample m is m + max(2m, 200 ms) (the first sample sets SRTT
/// to m and RTTVAR to max(2m, rto_min)); `rto` was seen with our ACKs delayed by `delayed`
/// over a path of RTT `path_rtt`. Its excess over the formula is read as timer
/// granularity (kept as it is), as RTT the peer measured beyond ours (a loaded host: it
/// grows with the delay) and as an RTT the peer cached for our address (our sample
/// replaces it once longer), and the delay must work under all three. The middle of the first band
/// of delays (up to 900 ms, 5 ms steps) that works is returned.
std::optional<Duration> ack_delay_to_split(const std::vector<unsigned>& candidates, Duration rto, Duration path_rtt,
                                           Duration delayed);

/// FIN runs whose initial RTO `rto` lies above what their RTT gives Linux: a Linux peer
/// started them from a longer RTT c it cached for our address (RTO = c + max(2c, 200 ms)),
/// or the peer is another stack. Linux keeps a cached RTT only while it is longer than the
/// connection's own sample, so a follow-up whose ACK of the SYN-ACK goes late enough that
/// the peer measures more than c gets the RTO Linux derives from that sample, which we
/// know. A delay qualifies (over a path of RTT `path_rtt`, up to 900 ms, 5 ms steps) when
/// its sample is a fifth above the longest c that explains `rto` and its RTO, less its
/// tolerance, lies above `rto` plus its tolerance: a timer that ignores the RTT keeps its
/// RTO and cannot pass for Linux. Of those, the middle of the first band where the
/// `candidates` (tcp_orphan_retries values the first runs leave) each send a different
/// number of copies, 15 % either way; else the first that qualifies; none when none does.
std::optional<Duration> ack_delay_past_cache(Duration rto, Duration path_rtt, const Tolerance& tol,
                                             const std::vector<unsigned>& candidates);

/// Convenience for callers with plain capture times (the first is the origin and the
/// original; `ended` marks a confirmed end after the last copy with nothing held).
ScheduleFit fit_schedule(const std::vector<Instant>& times, const Tolerance& tol, bool ended,
                         RetryRule rule = RetryRule::Count, Duration max_rto = std::chrono::seconds{120});

/// When the next copies are due, relative to the origin: the model's next `n` transmission
/// times after the last observed copy (lost ones included). Empty without a model; with a
/// single copy, the candidates of the common initial RTOs (1 s and RFC 1122's 3 s) and
/// their lost-copy successors.
std::vector<Duration> next_expected(const ScheduleEvidence& ev, const Tolerance& tol, RetryRule rule, std::size_t n,
                                    Duration max_rto = std::chrono::seconds{120});

/// When the liveness rounds go, relative to the origin: just after each of next_expected's
/// times, allowing for a late timer; for a SYN-ACK schedule also after the next two
/// expiries of every reading of its copies, so that the rounds split the readings.
std::vector<Duration> probe_times(const ScheduleEvidence& ev, const Tolerance& tol, RetryRule rule, std::size_t n,
                                  Duration max_rto = std::chrono::seconds{120});

/// When silence, without any answered probe, may end the schedule: two model gaps after
/// the last copy (so that one lost copy never ends it), plus tolerance; after a single
/// copy, RFC 1122's 3 s initial RTO plus one lost copy (3 s + 6 s) plus tolerance.
Duration silence_after(const ScheduleEvidence& ev, const Tolerance& tol, RetryRule rule,
                       Duration max_rto = std::chrono::seconds{120});

/// Merges several runs of the same schedule (separate connections, started together) on
/// one axis: copies within tolerance of each other are one copy; probes are pooled.
ScheduleEvidence merge_evidence(const std::vector<ScheduleEvidence>& runs, const Tolerance& tol);

/// What a retransmission schedule allows one to say (retransmit and listen):
///   inferred           Linux's signature, the end pinned: a setting
///   measured           a foreign schedule described: shape shown, end seen, count pinned
///   no-retransmission  the peer dropped the state after its first copy
///   inconclusive       anything less (the report says why)
enum class ScheduleVerdict { Inferred, Measured, NoRetransmission, Inconclusive };
ScheduleVerdict judge_schedule(const ScheduleFit& fit);
std::string_view to_string(ScheduleVerdict v);

}  // namespace tcpprobe::probe
