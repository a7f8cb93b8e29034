// The profile's text table, its JSON object and --compare (see profile_report.hpp).
#include "tcpprobe/app/profile_report.hpp"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/files.hpp"

namespace tcpprobe::app {

namespace {

constexpr int profile_version = 1;
/// A saved run (JSON Lines with its trace) of a full profile is a few MB; more is not one.
constexpr std::size_t max_saved_bytes = 64u << 20;

nlohmann::json value_json(const probe::ProfileValue& v) {
    return std::visit(
        [](const auto& x) -> nlohmann::json {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, std::monostate>) return nullptr;
            else if constexpr (std::is_same_v<T, Duration>) return nullptr;  // in value_us
            else return x;
        },
        v);
}

nlohmann::json setting_json(const probe::LinuxSetting& s) {
    return {{"sysctl", s.sysctl}, {"value", s.value}, {"suspected", s.suspected}};
}

std::string setting_text(const probe::LinuxSetting& s) {
    return fmt::format("{}={}{}", s.sysctl, s.value, s.suspected ? " (suspected)" : "");
}

/// A row's value as text for a difference: its "text" member, else the value itself.
std::string row_value_text(const nlohmann::json& row) {
    if (row.is_null()) return "(absent)";
    if (row.contains("text") && row["text"].is_string()) return row["text"].get<std::string>();
    return row.value("value", nlohmann::json(nullptr)).dump();
}

bool same_value(const nlohmann::json& a, const nlohmann::json& b) {
    const bool da = a.contains("value_us") && a["value_us"].is_number(), db = b.contains("value_us") && b["value_us"].is_number();
    if (da != db) return false;
    if (da) {
        const auto tol = std::max(a.value("tolerance_us", std::int64_t{0}), b.value("tolerance_us", std::int64_t{0}));
        return std::llabs(a["value_us"].get<std::int64_t>() - b["value_us"].get<std::int64_t>()) <= tol;
    }
    return a.value("value", nlohmann::json(nullptr)) == b.value("value", nlohmann::json(nullptr));
}

}  // namespace

nlohmann::json profile_json(const probe::ProfileResult& r, const ProfileMeta& meta) {
    auto rows = nlohmann::json::array();
    auto settings = nlohmann::json::array();
    for (const auto& w : r.rows) {
        auto marks = nlohmann::json::array();
        for (const auto& m : w.marks) marks.push_back({{"flow", m.port}, {"t_us", to_us(m.at + meta.mark_offset)}, {"what", m.what}});
        nlohmann::json j = {{"key", w.key},
                            {"experiment", probe::to_string(w.experiment)},
                            {"behaviour", w.behaviour},
                            {"value", value_json(w.value)},
                            {"text", w.text},
                            {"evidence", w.evidence},
                            {"marks", marks},
                            {"inferred", w.linux ? setting_json(*w.linux) : nlohmann::json(nullptr)}};
        if (const auto* d = std::get_if<Duration>(&w.value)) {
            j["value_us"] = to_us(*d);
            j["tolerance_us"] = to_us(w.tolerance);
        }
        rows.push_back(std::move(j));
        if (w.linux) settings.push_back(setting_json(*w.linux));
    }
    auto experiments = nlohmann::json::array();
    for (auto e : r.experiments) experiments.push_back(probe::to_string(e));
    return {{"version", profile_version},
            {"target", meta.target},
            {"quick", meta.quick},
            {"experiments", experiments},
            {"connections", meta.connections},
            {"duration_us", to_us(meta.elapsed)},
            {"rows", rows},
            {"linux_settings", settings},
            {"family",
             {{"name", r.family.family.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.family.family)},
              {"matched", r.family.matched},
              {"mismatched", r.family.mismatched}}},
            {"middlebox", r.middlebox},
            {"notes", r.notes}};
}

std::string profile_text(const probe::ProfileResult& r, const ProfileMeta& meta) {
    std::string t = fmt::format("\n--- {} profile ({}, {} connections, {:.1f} s) ---\n", meta.target, meta.quick ? "quick" : "full",
                                meta.connections, to_ms_f(meta.elapsed) / 1000.0);
    t += fmt::format("{:<56} {:<30} {}\n", "behaviour", "value", "Linux setting");
    for (const auto& w : r.rows) {
        t += fmt::format("{:<56} {:<30} {}\n", w.behaviour, w.text, w.linux ? setting_text(*w.linux) : "");
        std::string ev = w.evidence;
        // The first few capture times; the JSON has them all.
        constexpr std::size_t shown = 4;
        for (std::size_t i = 0; i < w.marks.size() && i < shown; ++i)
            ev += fmt::format("{}[{}] {:.6f} {}", ev.empty() ? "" : (i == 0 ? "; " : ", "), w.marks[i].port,
                              to_ms_f(w.marks[i].at + meta.mark_offset) / 1000.0, w.marks[i].what);
        if (w.marks.size() > shown) ev += fmt::format(" (+{} more)", w.marks.size() - shown);
        if (!ev.empty()) t += fmt::format("    evidence: {}\n", ev);
    }
    std::string settings;
    for (const auto& w : r.rows)
        if (w.linux) settings += (settings.empty() ? "" : ", ") + setting_text(*w.linux);
    t += fmt::format("Linux settings: {}\n", settings.empty() ? "none inferred" : settings);
    if (r.family.family.empty()) {
        t += "stack family: no known family";
    } else {
        t += fmt::format("stack family: {}", r.family.family);
    }
    std::string fam;
    for (const auto& m : r.family.matched) fam += (fam.empty() ? " (matched: " : "; ") + m;
    if (!fam.empty()) fam += ")";
    t += fam;
    std::string miss;
    for (const auto& m : r.family.mismatched) miss += (miss.empty() ? "; did not match: " : "; ") + m;
    t += miss + "\n";
    if (r.middlebox.empty()) t += "middlebox: none seen\n";
    for (const auto& m : r.middlebox) t += fmt::format("middlebox: {}\n", m);
    for (const auto& n : r.notes) t += fmt::format("note: {}\n", n);
    return t;
}

std::vector<ProfileDifference> compare_profiles(const nlohmann::json& ours, const nlohmann::json& saved) {
    std::vector<ProfileDifference> out;
    auto rows_of = [](const nlohmann::json& p) {
        std::vector<std::pair<std::string, nlohmann::json>> v;
        if (p.contains("rows") && p["rows"].is_array())
            for (const auto& r : p["rows"])
                if (r.is_object() && r.contains("key") && r["key"].is_string()) v.emplace_back(r["key"].get<std::string>(), r);
        return v;
    };
    const auto a = rows_of(ours), b = rows_of(saved);
    auto find = [](const auto& v, const std::string& k) -> const nlohmann::json* {
        for (const auto& [key, row] : v)
            if (key == k) return &row;
        return nullptr;
    };
    auto behaviour = [](const nlohmann::json& row) { return row.value("behaviour", std::string()); };
    for (const auto& [key, row] : a) {
        const nlohmann::json* other = find(b, key);
        if (other && same_value(row, *other)) continue;
        out.push_back({key, behaviour(row), row_value_text(row), other ? row_value_text(*other) : "(absent)", row,
                       other ? *other : nlohmann::json(nullptr)});
    }
    for (const auto& [key, row] : b)
        if (!find(a, key)) out.push_back({key, behaviour(row), "(absent)", row_value_text(row), nullptr, row});
    auto family = [](const nlohmann::json& p) {
        return p.contains("family") && p["family"].is_object() ? p["family"].value("name", nlohmann::json(nullptr)) : nlohmann::json(nullptr);
    };
    if (family(ours) != family(saved)) {
        auto name = [](const nlohmann::json& n) { return n.is_string() ? n.get<std::string>() : std::string("no known family"); };
        out.push_back({"family", "stack family", name(family(ours)), name(family(saved)), family(ours), family(saved)});
    }
    return out;
}

nlohmann::json parse_saved_profile(std::string_view text, std::string_view shown) {
    auto bad = [&](std::string_view why) {
        return io::UsageError(fmt::format("--compare '{}': {} (expected the output of `tcpprobe profile -o json`)", shown, why));
    };
    // JSON Lines: the summary is the last non-empty line; a single object is one line
    // or a pretty-printed document.
    nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
    if (doc.is_discarded()) {
        std::size_t end = text.find_last_not_of(" \t\r\n");
        if (end == std::string_view::npos) throw bad("the file is empty");
        std::size_t begin = text.find_last_of('\n', end);
        begin = begin == std::string_view::npos ? 0 : begin + 1;
        doc = nlohmann::json::parse(text.substr(begin, end + 1 - begin), nullptr, false);
        if (doc.is_discarded()) throw bad("its last line is not JSON");
    }
    if (!doc.is_object()) throw bad("not a JSON object");
    if (doc.contains("profile")) doc = doc["profile"];
    else if (doc.contains("type") && doc["type"] == "summary") throw bad(fmt::format("a summary of `{}`, not of a profile", doc.value("command", std::string("?"))));
    if (!doc.is_object() || !doc.contains("rows") || !doc["rows"].is_array()) throw bad("no profile object with rows in it");
    if (!doc.contains("version") || !doc["version"].is_number_integer()) throw bad("the profile has no version");
    if (doc["version"].get<int>() > profile_version)
        throw bad(fmt::format("profile version {} is newer than this tcpprobe's {}", doc["version"].get<int>(), profile_version));
    return doc;
}

nlohmann::json load_saved_profile(const std::string& path) {
    const auto bytes = io::read_user_file(path, max_saved_bytes, fmt::format("--compare '{}'", path));
    return parse_saved_profile(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), path);
}

nlohmann::json differences_json(const std::vector<ProfileDifference>& d) {
    auto a = nlohmann::json::array();
    for (const auto& x : d)
        a.push_back({{"key", x.key}, {"behaviour", x.behaviour}, {"ours", x.ours}, {"saved", x.saved}, {"ours_row", x.ours_json},
                     {"saved_row", x.saved_json}});
    return a;
}

std::string differences_text(const std::vector<ProfileDifference>& d, const std::string& file) {
    if (d.empty()) return fmt::format("compared with {}: no difference\n", file);
    std::string t = fmt::format("compared with {}: {} difference(s)\n", file, d.size());
    t += fmt::format("{:<56} {:<30} {}\n", "behaviour", "this run", "saved");
    for (const auto& x : d) t += fmt::format("{:<56} {:<30} {}\n", x.behaviour.empty() ? x.key : x.behaviour, x.ours, x.saved);
    return t;
}

}  // namespace tcpprobe::app
