// Pieces of a summary that several commands print the same way: the connect part of a
// flow (verdict, RTT, peer options, negotiation, ICMP, anomalies) and RTT statistics.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tcpprobe/app/commands.hpp"
#include "tcpprobe/app/edge.hpp"
#include "tcpprobe/app/parse.hpp"
#include "tcpprobe/app/syn.hpp"
#include "tcpprobe/probe/connection.hpp"
#include "tcpprobe/probe/schedule.hpp"

namespace tcpprobe::app {

std::string negotiated_text(const tcb::Negotiated& n);
nlohmann::json negotiated_json(const tcb::Negotiated& n);

/// JSON of a flow's connect result (sport, verdict, rtt_us, negotiated, peer options, ...).
nlohmann::json connect_json(const probe::Connection& f);
/// "verdict open, rtt 0.042 ms" plus ICMP and filtered details, one line.
std::string connect_line(const probe::ConnectResult& r);
/// "anomaly: TEXT" lines (with "(N times)" for repeats, and how many were only counted).
std::string anomaly_lines(const probe::ConnectResult& r, const std::string& head = "");

/// A retransmission schedule as JSON: times_us (from the first copy), gaps_us, the
/// model's gaps, per-gap tolerance verdicts, initial RTO, backoff, lost copies, the
/// liveness probes and the end, the Linux signature check, the family, and the
/// inferred setting (only when Linux-like and the end is pinned).
nlohmann::json schedule_json(const probe::ScheduleEvidence& ev, const probe::ScheduleFit& fit, const std::string& sysctl);
/// The same as text: one line per transmission (lost ones marked), then the fit, the
/// end, and the inference or the family.
std::string schedule_text(const probe::ScheduleEvidence& ev, const probe::ScheduleFit& fit, const std::string& sysctl,
                          const std::string& what);

// The schedule verdict (inferred, measured, no-retransmission, inconclusive) lives in
// probe/schedule.hpp: the profile judges schedules in the core too.
using probe::ScheduleVerdict;
using probe::judge_schedule;

struct RttStats {
    double min_us = 0, avg_us = 0, max_us = 0, mdev_us = 0;
};
RttStats rtt_stats(const std::vector<double>& us);

/// A target and SYN plan validated before anything is opened (bad input sends nothing).
struct PreparedTarget {
    Target target;
    wire::Ipv4Addr addr;
    SynPlan syn;
    Duration timeout{};
    Duration rto{};
    unsigned retries = 1;
};
PreparedTarget prepare_target(const std::string& target, const SynOptions& syn, const ConnectOptions& conn);

/// The connect configuration of flow `i` of a run.
probe::ConnectConfig make_connect_config(const PreparedTarget& p, const Edge& edge, std::size_t i);

/// The summary's common head: command, target, address, source, interface, guard.
struct RunHead {
    std::string command;
    std::string target;  ///< as the user wrote it
    wire::Ipv4Addr address;
    wire::Ipv4Addr source;
    std::string interface;
    bool rst_guard = false;
    std::string rst_guard_kind;  ///< "socket" or "nft"; empty without the guard
};
RunHead run_head(const std::string& command, const std::string& target_text, const PreparedTarget& p, const Edge& edge);
nlohmann::json to_json(const RunHead& h);

}  // namespace tcpprobe::app
