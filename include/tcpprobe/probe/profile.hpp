// The connection-management profile of one host: every experiment that applies, run
// together in one Session on separate source ports, under a global pace, and read into
// one table of behaviour -> value -> evidence -> Linux setting, the stack family the
// answers fit best, and the signs of a middlebox in front.
//
// The profile composes the scenarios; it does not copy them. Each experiment is the
// flow (or the measurement of several flows) its own command runs:
//
//   handshake-full   HandshakeFlow, half-open, our SYN with mss, sackOK, TS, wscale 7:
//                    the options offered back (tcp_sack, tcp_timestamps,
//                    tcp_window_scaling), MSS, window, TTL of the SYN-ACK
//   handshake-bare   the same SYN with no option at all: what the peer assumes
//   isn              `isn_syns` half-open handshakes, `isn_interval` apart: the peer's
//                    ISNs (RFC 6528 hash: no relation between ports; a constant step; a
//                    clock; the same one every time)
//   close-active     CloseFlow active (no request): 4-way or 3-way
//   close-simultaneous, close-abort, half-close   CloseFlow in those modes (half-close:
//                    our FIN before any request, so what the peer sends at our EOF
//                    comes after it, whatever the timing)
//   synack-schedule  `schedule_runs` RetransmitFlows (SYN-ACK), judged as one
//                    (judge_runs: merged on one axis) -> tcp_synack_retries
//   fin-schedule     `schedule_runs` RetransmitFlows (FIN, never ACKed), voting
//                    -> tcp_orphan_retries; the request makes the peer close first, so
//                    its orphaned socket retransmits from FIN-WAIT-1 (a server that
//                    answers and closes would send data after our FIN in LAST-ACK)
//   time-wait-*      TimeWaitFlows: duration (with the connections probed once),
//                    reuse by a higher ISN with a newer timestamp, RST (RFC 1337:
//                    tcp_rfc1337), our FIN again (re-ACKed)
//   fin-wait-2       LifetimeFlows (FIN-WAIT-2) -> tcp_fin_timeout
//   keepalive        KeepaliveFlow, only when asked (Linux waits 2 h by default)
//   idle             LifetimeFlows (idle), only when asked, up to `idle_max`
//
// --quick keeps what ends in about 10 s: the handshakes, the ISNs, the closes, the
// TIME-WAIT questions that need one answer (reuse, RST, FIN), and the two schedules cut
// at 10 s (enough for Linux's first three SYN-ACK copies: 1 + 2 + 4 s); not the
// TIME-WAIT duration (60 s on Linux) nor the FIN-WAIT-2 lifetime.
//
// The pace. The session paces new connections (Session::set_pace): at most
// `pace.starts` SYNs go out in any `pace.per` (defaults: 4 per 50 ms, 80 SYNs a second);
// a SYN beyond that waits, in order, and a flow due to start waits until there is room.
// A full profile opens about 70 connections, most of them the lifetime engine's
// connections probed once (TIME-WAIT and FIN-WAIT-2); at this pace they are all open in
// about a second, well inside the engine's 2 s first probe, and the peer's listen queue
// never holds more than a handful of half-open requests from us: a burst that filled it
// would switch Linux to SYN cookies and falsify the SYN-ACK schedule being measured.
//
// Evidence. Every row names the connections (source ports) and the capture times, since
// the profile started, that show its value; the run's trace (-o json: one event per
// segment with its "flow" = source port) holds the segments themselves.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "tcpprobe/probe/close.hpp"
#include "tcpprobe/probe/handshake.hpp"
#include "tcpprobe/probe/keepalive.hpp"
#include "tcpprobe/probe/lifetime_flow.hpp"
#include "tcpprobe/probe/retransmit.hpp"
#include "tcpprobe/probe/scenario.hpp"
#include "tcpprobe/probe/time_wait.hpp"

namespace tcpprobe::probe {

enum class Experiment : std::uint8_t {
    HandshakeFull,
    HandshakeBare,
    Isn,
    CloseActive,
    CloseSimultaneous,
    CloseAbort,
    HalfClose,
    SynAckSchedule,
    FinSchedule,
    TimeWaitDuration,
    TimeWaitReuse,
    TimeWaitRst,
    TimeWaitFin,
    FinWait2,
    Keepalive,
    Idle,
};
std::string_view to_string(Experiment e);

struct Pace {
    unsigned starts = 4;
    Duration per = std::chrono::milliseconds{50};
};

struct ProfileConfig {
    bool quick = false;
    bool keepalive = false;
    std::optional<Duration> idle_max;           ///< the idle experiment, up to this long
    wire::ByteVec request;                      ///< makes the peer close first (an HTTP/1.0 GET)
    unsigned isn_syns = 3;
    Duration isn_interval = std::chrono::milliseconds{200};
    unsigned schedule_runs = 2;                 ///< connections per retransmission schedule
    Duration schedule_max_wait = std::chrono::seconds{75};
    Duration quick_limit = std::chrono::seconds{10};
    Duration time_wait_max = std::chrono::seconds{150};
    Duration fin_wait_2_max = std::chrono::seconds{150};
    Duration keepalive_max = std::chrono::minutes{135};
    Tolerance tolerance;
    Pace pace;
};

/// A row's value: nothing (not measured), a yes/no, a count, a word, a duration.
using ProfileValue = std::variant<std::monostate, bool, std::int64_t, std::string, Duration>;

struct LinuxSetting {
    std::string sysctl;
    std::int64_t value = 0;
    bool suspected = false;  ///< a sign, not an inference (syncookies)
};

/// Where a value was seen: the connection (our source port) and the capture time since
/// the profile started.
struct EvidenceMark {
    std::uint16_t port = 0;
    Duration at{};
    std::string what;  ///< "SYN-ACK", "FIN", "RST", ...
};

struct ProfileRow {
    std::string key;            ///< stable: "synack.retransmissions" (the JSON and --compare key)
    Experiment experiment;
    std::string behaviour;      ///< for people
    ProfileValue value;
    std::string text;           ///< the value for people ("3-way", "60.4 s", "not measured: ...")
    std::string evidence;       ///< how it was seen, in words
    std::vector<EvidenceMark> marks;
    std::optional<LinuxSetting> linux;
    /// Durations: two values this close are the same behaviour (--compare).
    Duration tolerance{};
};

struct FamilyMatch {
    std::string family;         ///< "" when no known family fits
    std::vector<std::string> matched;
    std::vector<std::string> mismatched;
};

struct ExperimentStatus {
    Experiment experiment;
    bool done = false;
    std::string progress;       ///< the running flow's own status line
    std::size_t connections = 0;
};

struct ProfileResult {
    std::vector<ProfileRow> rows;
    FamilyMatch family;
    std::vector<std::string> middlebox;   ///< signs of a SYN proxy, load balancer or firewall
    std::vector<Experiment> experiments;  ///< what ran, in order
    std::vector<std::string> notes;
    const ProfileRow* row(std::string_view key) const;
};

/// What the peer's segments looked like at the IP level, per connection (a SYN proxy
/// answers the handshake with its own TTL; a firewall's RST comes from another distance).
struct TtlMark {
    std::uint16_t port;
    Instant t;
    std::uint8_t ttl;
    enum class Kind : std::uint8_t { SynAck, Data, Rst } kind;
};

/// The largest data segment the peer sent on one connection, and whether more data
/// followed it (then it was cut at the peer's send MSS, not at the end of an answer).
/// Its size with its TCP options is the MSS the peer sends with (Linux: the MSS it
/// received, less the option bytes every segment carries): below the MSS of our SYN, the
/// peer either got another MSS (a middlebox clamped it) or caps its own.
struct PeerSegments {
    std::uint16_t port = 0;
    Instant at{};                ///< capture of the largest segment
    std::size_t payload = 0;     ///< its payload bytes
    std::size_t options = 0;     ///< its TCP option bytes (timestamps: 12)
    std::uint32_t end = 0;       ///< its SEG.SEQ + payload (raw)
    std::uint32_t highest = 0;   ///< the highest sequence end of any data segment (raw)
    bool segmented() const { return static_cast<std::int32_t>(highest - end) > 0; }
};

/// Builds the experiments into a session and reads them once the session is done.
class Profile {
public:
    explicit Profile(ProfileConfig cfg);
    const ProfileConfig& config() const { return cfg_; }
    /// The experiments this configuration runs, in the order they start.
    std::vector<Experiment> experiments() const;
    /// How many connections (source ports) build() needs.
    std::size_t connections() const;

    /// The connect configuration of connection i (its own source port, our full option
    /// set, its own ISN); the profile strips the options where an experiment needs that.
    using ConnectFor = std::function<ConnectConfig(std::size_t)>;
    /// Adds every experiment's flows, starting at `start`, and sets the session's pace.
    void build(Session& session, Instant start, const ConnectFor& connect_for);

    std::vector<ExperimentStatus> status(Instant now) const;
    /// One line per experiment, for the live progress display.
    std::string progress(Instant now) const;
    ProfileResult result() const;
    /// The connect verdict of the handshakes (open, closed, filtered, unreachable).
    Verdict connect_verdict() const;

private:
    struct Part {
        Experiment experiment;
        std::vector<const Flow*> flows;
    };
    Part& part(Experiment e);
    const Part* find(Experiment e) const;
    void add(Session& s, Instant at, Experiment e, std::unique_ptr<Flow> flow);
    std::size_t lifetime_slots(const LifetimeConfig& c) const;

    ProfileConfig cfg_;
    Instant start_{};
    std::vector<Part> parts_;
    std::shared_ptr<std::vector<TtlMark>> ttls_ = std::make_shared<std::vector<TtlMark>>();
    std::shared_ptr<std::vector<PeerSegments>> sizes_ = std::make_shared<std::vector<PeerSegments>>();
    std::optional<std::uint16_t> our_mss_;  ///< the MSS our SYNs offer
    std::shared_ptr<TwDuration> tw_;
    std::shared_ptr<LifetimeRun> fw2_, idle_;
    // typed views of the flows (owned by the session)
    const HandshakeFlow* full_ = nullptr;
    const HandshakeFlow* bare_ = nullptr;
    std::vector<const HandshakeFlow*> isn_;
    const CloseFlow* active_ = nullptr;
    const CloseFlow* simultaneous_ = nullptr;
    const CloseFlow* abort_ = nullptr;
    const CloseFlow* half_close_ = nullptr;
    std::vector<const RetransmitFlow*> synack_, fin_;
    const TimeWaitFlow* tw_duration_ = nullptr;
    const TimeWaitFlow* tw_reuse_ = nullptr;
    const TimeWaitFlow* tw_rst_ = nullptr;
    const TimeWaitFlow* tw_fin_ = nullptr;
    std::vector<const LifetimeFlow*> fw2_flows_, idle_flows_;
    const KeepaliveFlow* keepalive_ = nullptr;
};

/// The rows that describe the ISNs of several connections opened `interval` apart:
/// "random" (no relation, RFC 6528), "step N" (the same increment each time),
/// "repeated" (the same ISN), from the peer's IRSs in the order of our SYNs.
std::string isn_pattern(const std::vector<std::uint32_t>& isns);

/// The initial TTL a received TTL most likely started from (64, 128 or 255) and the hops.
std::pair<unsigned, unsigned> initial_ttl(std::uint8_t seen);

}  // namespace tcpprobe::probe
