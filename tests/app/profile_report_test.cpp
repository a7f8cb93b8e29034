// --compare: the differences between two profile objects (durations within tolerance,
// other values exactly, rows on one side only, the family), and reading a saved run.
#include <doctest/doctest.h>

#include "tcpprobe/app/profile_report.hpp"
#include "tcpprobe/io/errors.hpp"

using namespace tcpprobe;
using namespace tcpprobe::app;
using nlohmann::json;

namespace {

json profile_of(std::vector<json> rows, json family = "Linux") {
    return {{"version", 1}, {"rows", std::move(rows)}, {"family", {{"name", family}, {"matched", json::array()}, {"mismatched", json::array()}}}};
}

json row(const std::string& key, json value, const std::string& text) {
    return {{"key", key}, {"behaviour", key + " behaviour"}, {"value", value}, {"text", text}};
}

json duration_row(const std::string& key, std::int64_t us, std::int64_t tol_us) {
    return {{"key", key}, {"behaviour", key}, {"value", nullptr}, {"value_us", us}, {"tolerance_us", tol_us}, {"text", "d"}};
}

}  // namespace

TEST_CASE("compare: equal values and durations within the larger tolerance are no difference") {
    const json a = profile_of({row("synack.retransmissions", 2, "2"), duration_row("time_wait.duration", 60'400'000, 6'000'000)});
    const json b = profile_of({row("synack.retransmissions", 2, "2"), duration_row("time_wait.duration", 61'900'000, 500'000)});
    CHECK(compare_profiles(a, b).empty());
}

TEST_CASE("compare: a changed value, a duration beyond tolerance, rows on one side only and the family are listed with both values") {
    const json a = profile_of({row("synack.retransmissions", 1, "1"), row("time_wait.rfc1337", true, "yes"),
                               duration_row("fin_wait_2.lifetime", 8'000'000, 1'000'000), row("new.row", 1, "1")});
    const json b = profile_of({row("synack.retransmissions", 2, "2"), row("time_wait.rfc1337", true, "yes"),
                               duration_row("fin_wait_2.lifetime", 5'000'000, 1'000'000), row("old.row", "x", "x")},
                              nullptr);
    const auto d = compare_profiles(a, b);
    REQUIRE(d.size() == 5);
    CHECK(d[0].key == "synack.retransmissions");
    CHECK(d[0].ours == "1");
    CHECK(d[0].saved == "2");
    CHECK(d[1].key == "fin_wait_2.lifetime");
    CHECK(d[2].key == "new.row");
    CHECK(d[2].saved == "(absent)");
    CHECK(d[3].key == "old.row");
    CHECK(d[3].ours == "(absent)");
    CHECK(d[4].key == "family");
    CHECK(d[4].ours == "Linux");
    CHECK(d[4].saved == "no known family");
    CHECK(differences_json(d).size() == 5);
    CHECK(differences_text(d, "a.json").find("5 difference(s)") != std::string::npos);
}

TEST_CASE("compare: a measured value against 'not measured' is a difference; two unmeasured rows are not") {
    const json a = profile_of({row("x", nullptr, "not measured"), row("y", nullptr, "not measured")});
    const json b = profile_of({row("x", 3, "3"), row("y", nullptr, "not measured (connect: filtered)")});
    const auto d = compare_profiles(a, b);
    REQUIRE(d.size() == 1);
    CHECK(d[0].key == "x");
}

TEST_CASE("saved profile: the last line of a JSON Lines run, a summary object or a bare profile; anything else is a usage error") {
    const std::string run = "{\"type\":\"segment\",\"t_us\":0}\n{\"type\":\"summary\",\"command\":\"profile\",\"profile\":" +
                            profile_of({row("a", 1, "1")}).dump() + "}\n\n";
    CHECK(parse_saved_profile(run, "run.jsonl")["rows"].size() == 1);
    CHECK(parse_saved_profile(profile_of({}).dump(2), "p.json")["version"] == 1);
    CHECK_THROWS_AS(parse_saved_profile("", "empty.json"), io::UsageError);
    CHECK_THROWS_AS(parse_saved_profile("not json\n", "x"), io::UsageError);
    CHECK_THROWS_AS(parse_saved_profile("[1,2]", "x"), io::UsageError);
    CHECK_THROWS_WITH_AS(parse_saved_profile("{\"type\":\"summary\",\"command\":\"handshake\"}", "h.json"),
                         doctest::Contains("a summary of `handshake`, not of a profile"), io::UsageError);
    CHECK_THROWS_WITH_AS(parse_saved_profile("{\"version\":99,\"rows\":[]}", "v.json"), doctest::Contains("newer"), io::UsageError);
}
