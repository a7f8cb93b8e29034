// A profile as people and scripts read it: the text table, the JSON `profile` object
// (its schema is documented in the man page, "READING A PROFILE"), and --compare, the
// differences between this profile and one saved earlier.
//
// The JSON object, version 1:
//   {"version": 1, "target": "h:80", "quick": false, "experiments": ["time-wait-duration", ...],
//    "connections": 71, "duration_us": N,
//    "rows": [{"key": "synack.retransmissions", "experiment": "synack-schedule",
//              "behaviour": "...", "value": 2 | true | "3-way" | null,
//              "value_us": N, "tolerance_us": N,            (durations only)
//              "text": "...", "evidence": "...",
//              "marks": [{"flow": 40001, "t_us": N, "what": "SYN-ACK"}],
//              "inferred": {"sysctl": "tcp_synack_retries", "value": 2, "suspected": false} | null}],
//    "linux_settings": [{"sysctl": ..., "value": ..., "suspected": ...}],
//    "family": {"name": "Linux" | null, "matched": [...], "mismatched": [...]},
//    "middlebox": ["..."], "notes": ["..."]}
// A row's key never changes meaning; new rows may be added (a --compare against an older
// profile lists them as present on one side only).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tcpprobe/probe/profile.hpp"

namespace tcpprobe::app {

struct ProfileMeta {
    std::string target;
    bool quick = false;
    std::size_t connections = 0;
    Duration elapsed{};
    /// Added to a mark's time (since the profile started) to give the trace's t_us
    /// (since the run's first captured packet).
    Duration mark_offset{};
};

nlohmann::json profile_json(const probe::ProfileResult& r, const ProfileMeta& meta);
std::string profile_text(const probe::ProfileResult& r, const ProfileMeta& meta);

/// One difference: a row (or the family) whose value differs, or that one side lacks.
struct ProfileDifference {
    std::string key;
    std::string behaviour;
    std::string ours;    ///< the value as text, "(absent)" when this profile lacks the row
    std::string saved;
    nlohmann::json ours_json, saved_json;  ///< the row objects (null when absent)
};

/// The differences between two `profile` objects (profile_json's form): rows by key;
/// durations equal within the larger of the two rows' tolerances; other values equal
/// when identical; the family by name.
std::vector<ProfileDifference> compare_profiles(const nlohmann::json& ours, const nlohmann::json& saved);

/// The `profile` object of a saved run: the JSON Lines output of `tcpprobe profile -o
/// json` (its summary line), a summary object, or a bare profile object. Throws
/// io::UsageError naming `shown` when the text is none of these.
nlohmann::json parse_saved_profile(std::string_view text, std::string_view shown);
/// The same, read from a file as the invoking user.
nlohmann::json load_saved_profile(const std::string& path);

nlohmann::json differences_json(const std::vector<ProfileDifference>& d);
std::string differences_text(const std::vector<ProfileDifference>& d, const std::string& file);

}  // namespace tcpprobe::app
