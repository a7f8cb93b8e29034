// Schedule fitting and Linux retry inference, from capture times given as data.
#include <doctest/doctest.h>

#include "tcpprobe/probe/schedule.hpp"

using namespace tcpprobe;
using namespace tcpprobe::probe;
using namespace std::chrono_literals;

namespace {
std::vector<Instant> at_ms(std::initializer_list<double> ms) {
    std::vector<Instant> v;
    for (double m : ms) v.push_back(instant_from_ns(static_cast<std::int64_t>(m * 1e6)));
    return v;
}
}  // namespace

TEST_CASE("schedule: Linux SYN-ACK gaps of 1012 and 2016 ms fit doubling within 50ms,10% and give tcp_synack_retries = 2") {
    auto times = at_ms({0, 1012, 3028});
    ScheduleFit f = fit_schedule(times, Tolerance{}, true, RetryRule::Count);
    CHECK(f.retransmissions == 2);
    CHECK(f.exponential);
    REQUIRE(f.initial_rto);
    CHECK(*f.initial_rto == 1012ms);
    REQUIRE(f.backoff);
    CHECK(*f.backoff == doctest::Approx(2016.0 / 1012.0));
    REQUIRE(f.inferred_retries);
    CHECK(*f.inferred_retries == 2);
    REQUIRE(f.give_up_after);
    CHECK(*f.give_up_after == 1012ms + 2024ms + 4048ms);  // model: 1 + 2 + 4 RTOs
}

TEST_CASE("schedule: without seeing the end, nothing is inferred") {
    ScheduleFit f = fit_schedule(at_ms({0, 1000, 3000}), Tolerance{}, false);
    CHECK(f.exponential);
    CHECK_FALSE(f.inferred_retries);
}

TEST_CASE("schedule: a gap beyond the tolerance breaks the doubling fit") {
    SUBCASE("2600 ms instead of 2000 is out of 50ms,10%") {
        ScheduleFit f = fit_schedule(at_ms({0, 1000, 3600}), Tolerance{}, true);
        CHECK_FALSE(f.exponential);
        CHECK(f.within_tolerance == std::vector<bool>{true, false});
        CHECK_FALSE(f.inferred_retries);
    }
    SUBCASE("2150 ms instead of 2000 is within 200ms,0%") {
        ScheduleFit f = fit_schedule(at_ms({0, 1000, 3150}), Tolerance{200ms, 0}, true);
        CHECK(f.exponential);
    }
}

TEST_CASE("schedule: linear first gaps then doubling (Linux 6.7+ SYN) are one model") {
    auto times = at_ms({0, 1008, 2032, 3056, 4080, 5104});
    ScheduleFit f = fit_schedule(times, Tolerance{}, true, RetryRule::SynTime);
    CHECK(f.linear_gaps == 5);
    CHECK(f.exponential);
    REQUIRE(f.next_gap);
    CHECK(*f.next_gap == 2016ms);  // after the linear phase the gap doubles
    REQUIRE(f.inferred_retries);
    CHECK(*f.inferred_retries == 2);  // 5.1 s of retransmissions < (2^3 - 1) s = 7 s
    CHECK(silence_deadline(times, Tolerance{}, 3s) == times.back() + 2016ms + 201600us);
}

TEST_CASE("schedule: client SYNs with classic doubling: the limit (2^(N+1) - 1) s decides N") {
    // N = 2: expiries at 1 and 3 s retransmit, the one at 7 s (= 7 s limit) gives up.
    ScheduleFit two = fit_schedule(at_ms({0, 1000, 3000}), Tolerance{}, true, RetryRule::SynTime);
    CHECK(*two.inferred_retries == 2);
    // N = 3: the expiry at 7 s is still below the 15 s limit: a third retransmission.
    ScheduleFit three = fit_schedule(at_ms({0, 1000, 3000, 7000}), Tolerance{}, true, RetryRule::SynTime);
    CHECK(*three.inferred_retries == 3);
    ScheduleFit four = fit_schedule(at_ms({0, 1000, 3000, 7000, 15000}), Tolerance{}, true, RetryRule::SynTime);
    CHECK(*four.inferred_retries == 4);
}

TEST_CASE("schedule: orphaned FIN retransmissions stop on time from the first retransmission") {
    // tcp_orphan_retries = 2: limit (2^3 - 1) x 200 ms = 1.4 s after the first retransmission,
    // so on a 200 ms RTO path there are 3 retransmissions (as measured on Linux 6.18).
    auto times = at_ms({0, 203.6, 619.7, 1451.7});
    ScheduleFit f = fit_schedule(times, Tolerance{}, true, RetryRule::OrphanTime);
    CHECK(f.retransmissions == 3);
    REQUIRE(f.inferred_retries);
    CHECK(*f.inferred_retries == 2);
    SUBCASE("tcp_orphan_retries = 1: two retransmissions") {
        ScheduleFit g = fit_schedule(at_ms({0, 203.7, 611.5}), Tolerance{}, true, RetryRule::OrphanTime);
        CHECK(*g.inferred_retries == 1);
    }
    SUBCASE("tcp_orphan_retries = 3: four retransmissions") {
        ScheduleFit g = fit_schedule(at_ms({0, 203.9, 611.9, 1427.9, 3059.9}), Tolerance{}, true, RetryRule::OrphanTime);
        CHECK(*g.inferred_retries == 3);
    }
}

TEST_CASE("schedule: a single transmission has no gaps; silence is judged after the first wait") {
    auto one = at_ms({0});
    ScheduleFit f = fit_schedule(one, Tolerance{}, true);
    CHECK(f.retransmissions == 0);
    CHECK_FALSE(f.initial_rto);
    CHECK(silence_deadline(one, Tolerance{}, 3s) == one.front() + 3s);
}

TEST_CASE("schedule: tolerance text") {
    auto t = parse_tolerance("50ms,10%");
    REQUIRE(t);
    CHECK(t->floor == 50ms);
    CHECK(t->percent == doctest::Approx(10.0));
    CHECK(t->for_gap(100ms) == 50ms);    // the floor wins on short gaps
    CHECK(t->for_gap(2s) == 200ms);      // the percentage on long ones
    CHECK(parse_tolerance("2s")->floor == 2s);
    CHECK(parse_tolerance("5%")->percent == doctest::Approx(5.0));
    CHECK_FALSE(parse_tolerance(""));
    CHECK_FALSE(parse_tolerance("50"));
    CHECK_FALSE(parse_tolerance("ms"));
    CHECK_FALSE(parse_tolerance("10%,"));
    CHECK_FALSE(parse_tolerance("-5%"));
}
