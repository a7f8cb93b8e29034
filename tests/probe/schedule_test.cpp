// Schedule fitting and Linux retry inference, from capture times given as data.
#include <doctest/doctest.h>

#include <fmt/format.h>

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
    // Timers fire late, never early: the gap closest to its model span, 2016 ms for two
    // RTOs, reads the RTO (the first gap came 4 ms late).
    CHECK(*f.initial_rto == 1008ms);
    REQUIRE(f.backoff);
    CHECK(*f.backoff == doctest::Approx(2016.0 / 1012.0));
    REQUIRE(f.inferred_retries);
    CHECK(*f.inferred_retries == 2);
    REQUIRE(f.give_up_after);
    CHECK(*f.give_up_after == 1008ms + 2016ms + 4032ms);  // model: 1 + 2 + 4 RTOs
}

TEST_CASE("schedule: without seeing the end, nothing is inferred") {
    ScheduleFit f = fit_schedule(at_ms({0, 1000, 3000}), Tolerance{}, false);
    CHECK(f.exponential);
    CHECK_FALSE(f.inferred_retries);
}

TEST_CASE("schedule: a gap beyond the tolerance breaks the doubling fit") {
    SUBCASE("2600 ms instead of 2000 is out of 50ms,10%, and no other model or lost copy explains it") {
        ScheduleFit f = fit_schedule(at_ms({0, 1000, 3600}), Tolerance{}, true);
        CHECK_FALSE(f.fitted);
        CHECK_FALSE(f.exponential);
        CHECK_FALSE(f.inferred_retries);
        CHECK_FALSE(f.linux_like);
    }
    SUBCASE("2150 ms instead of 2000 is within 200ms,0%") {
        ScheduleFit f = fit_schedule(at_ms({0, 1000, 3150}), Tolerance{200ms, 0}, true);
        CHECK(f.exponential);
    }
}

TEST_CASE("schedule: linear first gaps then doubling (Linux 6.7+ SYN) are one model") {
    // The first gap 16 ms shorter than the others: those came late, the model's RTO is 1008 ms.
    auto times = at_ms({0, 1008, 2032, 3056, 4080, 5104});
    ScheduleFit f = fit_schedule(times, Tolerance{}, true, RetryRule::SynTime);
    CHECK(f.linear_gaps == 5);
    CHECK(f.exponential);
    REQUIRE(f.next_gap);
    CHECK(*f.next_gap == 2016ms);  // after the linear phase the gap doubles
    REQUIRE(f.inferred_retries);
    CHECK(*f.inferred_retries == 2);  // 5.1 s of retransmissions < (2^3 - 1) s = 7 s
    // Silence ends it only after two model gaps (2016 then 4032 ms) and the tolerance.
    ScheduleEvidence ev;
    for (auto t : times) ev.copies.push_back(t - times.front());
    CHECK(silence_after(ev, Tolerance{}, RetryRule::SynTime) == 2016ms + 4032ms + 403200us);
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
    SUBCASE("an RTO of 235 ms (a loaded host): the expiry after copy #2 falls on N = 2's limit: N = 1 or 2, nothing") {
        // Bench at 0 % loss with the machine loaded: 'tcp_orphan_retries = 1' against a server set to 2.
        ScheduleFit g = fit_schedule(at_ms({0, 235, 705}), Tolerance{}, true, RetryRule::OrphanTime);
        CHECK_FALSE(g.inferred_retries);
        CHECK(g.linux_like);
        CHECK(g.retries_candidates == std::vector<unsigned>{1, 2});
    }
    SUBCASE("tcp_orphan_retries = 3: four retransmissions") {
        ScheduleFit g = fit_schedule(at_ms({0, 203.9, 611.9, 1427.9, 3059.9}), Tolerance{}, true, RetryRule::OrphanTime);
        CHECK(*g.inferred_retries == 3);
    }
}

TEST_CASE("schedule: a single transmission has no gaps; silence waits for RFC 1122's 3 s RTO plus one lost copy") {
    auto one = at_ms({0});
    ScheduleFit f = fit_schedule(one, Tolerance{}, true);
    CHECK(f.retransmissions == 0);
    CHECK_FALSE(f.initial_rto);
    ScheduleEvidence ev;
    ev.copies = {0ms};
    CHECK(silence_after(ev, Tolerance{}, RetryRule::Count) == 9s + 900ms);
    // The probe rounds after one copy: 1 s (RFC 6298), 3 s (RFC 1122, or a lost 1 s copy), 9 s (a lost 3 s copy).
    CHECK(next_expected(ev, Tolerance{}, RetryRule::Count, 3) == std::vector<Duration>{1s, 3s, 9s});
}

namespace {
/// Linux SYN-ACK copies (1 s doubling, HZ skew) for tcp_synack_retries = 4, relative to the first.
const std::vector<Duration> linux4 = {0ms, 1012ms, 3028ms, 7060ms, 15124ms};

ScheduleEvidence evidence(std::vector<Duration> copies, std::vector<LivenessProbe> probes = {}) {
    ScheduleEvidence ev;
    ev.copies = std::move(copies);
    ev.probes = std::move(probes);
    return ev;
}
}  // namespace

TEST_CASE("schedule: one copy lost at any position is found, and the end probe keeps tcp_synack_retries right") {
    // Linux gives up at 1 + 2 + 4 + 8 + 16 = 31 s; the probe one tolerance later finds it gone.
    const LivenessProbe gone{31200ms, Liveness::Gone};
    for (std::size_t lost = 1; lost <= 4; ++lost) {
        CAPTURE(lost);
        std::vector<Duration> seen;
        for (std::size_t i = 0; i < linux4.size(); ++i)
            if (i != lost) seen.push_back(linux4[i]);
        std::vector<LivenessProbe> probes{{1300ms, Liveness::Alive}};
        // A lost last copy: the probe at its expected time (+ tolerance) finds the request still held.
        if (lost == 4) probes.push_back({16700ms, Liveness::Alive});
        probes.push_back(gone);
        ScheduleFit f = fit_schedule(evidence(seen, probes), Tolerance{}, RetryRule::Count);
        REQUIRE(f.fitted);
        CHECK(f.backoff_kind == Backoff::Doubling);
        REQUIRE(f.missing.size() == 1);
        CHECK(f.missing.front().index == lost);
        CHECK(f.missing.front().trailing == (lost == 4));
        CHECK(f.linux_like);
        REQUIRE(f.inferred_retries);
        CHECK(*f.inferred_retries == 4);
        CHECK(f.notes.front().find(fmt::format("copy #{} missing", lost)) == 0);
    }
}

TEST_CASE("schedule: without the end probe, a lost last copy is not mistaken for the end") {
    // Copies 0..3 of a tcp_synack_retries = 4 peer; copy #4 lost; the request was still held
    // at 16.7 s, and gone by 31.2 s: 4, not 3.
    std::vector<Duration> seen(linux4.begin(), linux4.end() - 1);
    ScheduleFit f = fit_schedule(evidence(seen, {{16700ms, Liveness::Alive}, {31200ms, Liveness::Gone}}), Tolerance{},
                                 RetryRule::Count);
    REQUIRE(f.inferred_retries);
    CHECK(*f.inferred_retries == 4);
    SUBCASE("a gone bracket spanning two expiries pins nothing") {
        ScheduleFit g = fit_schedule(evidence(seen, {{31200ms, Liveness::Gone}}), Tolerance{}, RetryRule::Count);
        CHECK_FALSE(g.copies_sent);
        CHECK_FALSE(g.inferred_retries);
        CHECK_FALSE(g.linux_like);
    }
    SUBCASE("silence with every probe unanswered is no confirmed end") {
        ScheduleFit g = fit_schedule(evidence(seen, {{16700ms, Liveness::Silent}}), Tolerance{}, RetryRule::Count);
        CHECK(g.end == ScheduleEnd::Silence);
        CHECK_FALSE(g.inferred_retries);
    }
}

TEST_CASE("schedule: a lost original is found from our SYN: the first copy one RTO after it is copy #1") {
    ScheduleEvidence ev = evidence({1005ms, 3021ms, 7053ms}, {{15200ms, Liveness::Gone}});
    ev.origin_is_first_copy = false;
    ev.rtt = 1ms;
    ScheduleFit f = fit_schedule(ev, Tolerance{}, RetryRule::Count);
    REQUIRE(f.fitted);
    REQUIRE(f.missing.size() == 1);
    CHECK(f.missing.front().index == 0);
    REQUIRE(f.inferred_retries);
    CHECK(*f.inferred_retries == 3);
}

TEST_CASE("schedule: foreign stacks are measured and named, never inferred as Linux") {
    SUBCASE("RFC 1122: 3 s initial RTO, doubling, ending with a RST") {
        ScheduleEvidence ev = evidence({0ms, 3000ms, 9000ms});
        ev.peer_rst = 21000ms;
        ScheduleFit f = fit_schedule(ev, Tolerance{}, RetryRule::Count);
        CHECK(f.backoff_kind == Backoff::Doubling);
        CHECK(*f.initial_rto == 3s);
        CHECK_FALSE(f.linux_like);
        CHECK_FALSE(f.inferred_retries);
        CHECK(f.family.find("RFC 1122") == 0);
    }
    SUBCASE("lwIP: 3 s, then x2, x3 (not doubling)") {
        ScheduleFit f = fit_schedule(evidence({0ms, 3000ms, 9000ms, 18000ms}, {{40s, Liveness::Gone}}), Tolerance{},
                                     RetryRule::Count);
        CHECK(f.backoff_kind == Backoff::Table);
        CHECK_FALSE(f.linux_like);
        CHECK(f.family.find("lwIP") == 0);
    }
    SUBCASE("a FIN every 2 s (constant) is not tcp_orphan_retries of anything") {
        ScheduleEvidence ev = evidence({0ms, 2000ms, 4000ms, 6000ms}, {{8300ms, Liveness::Gone}});
        ev.rtt = 1ms;
        ScheduleFit f = fit_schedule(ev, Tolerance{}, RetryRule::OrphanTime);
        CHECK(f.backoff_kind == Backoff::Constant);
        CHECK_FALSE(f.linux_like);
        CHECK_FALSE(f.inferred_retries);
        CHECK(f.family.find("constant") == 0);
    }
    SUBCASE("a 2 s FIN RTO, doubling, is outside Linux's RTT-based RTO") {
        ScheduleEvidence ev = evidence({0ms, 2000ms, 6000ms}, {{14300ms, Liveness::Gone}});
        ev.rtt = 1ms;
        ScheduleFit f = fit_schedule(ev, Tolerance{}, RetryRule::OrphanTime);
        CHECK(f.backoff_kind == Backoff::Doubling);
        CHECK_FALSE(f.linux_like);
        CHECK_FALSE(f.inferred_retries);
    }
}

TEST_CASE("schedule: with two copies 3 s apart the fewest-losses reading is a 3 s RTO, and nothing is inferred") {
    ScheduleFit f = fit_schedule(evidence({0ms, 3000ms}, {{9500ms, Liveness::Gone}}), Tolerance{}, RetryRule::Count);
    CHECK(*f.initial_rto == 3s);
    CHECK(f.missing.empty());
    CHECK_FALSE(f.linux_like);
    CHECK_FALSE(f.inferred_retries);
}

TEST_CASE("schedule: merged runs: a copy lost in one run is seen in another") {
    ScheduleEvidence a = evidence({0ms, 1010ms, 7050ms}, {{15200ms, Liveness::Gone}});   // lost #2
    ScheduleEvidence b = evidence({2ms, 3020ms, 7055ms}, {{15210ms, Liveness::Gone}});   // lost #1
    ScheduleEvidence m = merge_evidence({a, b}, Tolerance{});
    CHECK(m.copies == std::vector<Duration>{0ms, 1010ms, 3020ms, 7050ms});
    ScheduleFit f = fit_schedule(m, Tolerance{}, RetryRule::Count);
    CHECK(f.missing.empty());
    REQUIRE(f.inferred_retries);
    CHECK(*f.inferred_retries == 3);
}

TEST_CASE("schedule: tolerance of a gap: the floor on short gaps, the percentage on long ones") {
    const Tolerance t{50ms, 10.0};
    CHECK(t.for_gap(100ms) == 50ms);
    CHECK(t.for_gap(2s) == 200ms);
}

TEST_CASE("schedule: one copy, then gone after a retransmission could have been due: not 'no retransmission'") {
    // A SYN-ACK, then a RST to the liveness probe 300 ms later: the peer kept nothing.
    ScheduleFit quick = fit_schedule(evidence({0ms}, {{300ms, Liveness::Gone}}), Tolerance{}, RetryRule::Count);
    CHECK(quick.gone_before_first_rto);
    // Gone only at 7.3 s: copies at 1, 3 s (RFC 6298) may have been lost on the path.
    ScheduleFit late = fit_schedule(evidence({0ms}, {{1100ms, Liveness::Silent}, {7300ms, Liveness::Gone}}), Tolerance{},
                                    RetryRule::SynTime);
    CHECK(late.retransmissions == 0);
    CHECK(late.end == ScheduleEnd::Confirmed);
    CHECK_FALSE(late.gone_before_first_rto);
    // A FIN: Linux's RTO floor is 200 ms.
    ScheduleFit fin = fit_schedule(evidence({0ms}, {{900ms, Liveness::Gone}}), Tolerance{}, RetryRule::OrphanTime);
    CHECK_FALSE(fin.gone_before_first_rto);
}

TEST_CASE("schedule: a client's lost first SYNs: tcp_syn_retries only when every origin they allow gives one N") {
    // Linux 6.18, tcp_syn_retries = 2, tcp_syn_linear_timeouts = 4: SYNs at 0..5 s, gone at 7 s
    // (measured in the lab: the probe at 7.34 s drew the RST).
    SUBCASE("all seen") {
        ScheduleFit f = fit_schedule(evidence({0ms, 1013ms, 2037ms, 3061ms, 4087ms, 5109ms}, {{7340ms, Liveness::Gone}}),
                                     Tolerance{}, RetryRule::SynTime);
        REQUIRE(f.inferred_retries);
        CHECK(*f.inferred_retries == 2);
    }
    SUBCASE("the first SYN lost: the axis starts 1 s late, the limit still pins N = 2") {
        ScheduleFit f = fit_schedule(evidence({0ms, 1024ms, 2043ms, 3072ms, 4092ms}, {{6348ms, Liveness::Gone}}),
                                     Tolerance{}, RetryRule::SynTime);
        REQUIRE(f.inferred_retries);
        CHECK(*f.inferred_retries == 2);
    }
    SUBCASE("the first three lost (bench, 30 % loss): N = 1 from the first SYN seen, N = 2 from three lost: nothing") {
        // Before: tcp_syn_retries = 1 (gone 4.3 s after the first SYN seen, limit 3 s).
        ScheduleFit f = fit_schedule(evidence({0ms, 1023ms, 2052ms}, {{4316ms, Liveness::Gone}}), Tolerance{},
                                     RetryRule::SynTime);
        CHECK_FALSE(f.inferred_retries);
        CHECK_FALSE(f.linux_like);
    }
    SUBCASE("the first four lost (bench, 10 % loss): only #4 and #5 seen, N = 1 from the first seen, N = 2 from four lost: nothing") {
        // Before: tcp_syn_retries = 1, wrong (the client's connect() failed after 7.1 s).
        ScheduleFit f = fit_schedule(evidence({0ms, 1024054us}, {{3277430us, Liveness::Gone}}), Tolerance{}, RetryRule::SynTime);
        CHECK_FALSE(f.inferred_retries);
        CHECK_FALSE(f.linux_like);
    }
    SUBCASE("a late RST (its rounds lost) after five SYNs: 15 s fits if three were lost, 7 s if none: nothing") {
        // Before: tcp_syn_retries = 3 (bench, 30 % loss; the truth was 2 with the first SYN lost).
        ScheduleFit f = fit_schedule(evidence({0ms, 1020ms, 2048ms, 3068ms, 4096ms},
                                              {{6341ms, Liveness::Silent}, {8557ms, Liveness::Silent},
                                               {10626ms, Liveness::Silent}, {12232ms, Liveness::Gone}}),
                                     Tolerance{}, RetryRule::SynTime);
        CHECK_FALSE(f.inferred_retries);
    }
}

TEST_CASE("schedule: a FIN run that lost its original backs or contradicts another run's tcp_orphan_retries") {
    // tcp_orphan_retries = 2 on a 208 ms RTO: copies at 0, 0.208, 0.624, 1.456 s, gone at 3.12 s.
    // Without its original the run starts at copy #1: it infers nothing by itself.
    ScheduleEvidence lost_first = evidence({0ms, 416ms, 1248ms}, {{250ms, Liveness::Alive}, {3079ms, Liveness::Gone}});
    lost_first.rtt = 1ms;
    ScheduleFit alone = fit_schedule(lost_first, Tolerance{}, RetryRule::OrphanTime);
    CHECK_FALSE(alone.inferred_retries);
    CHECK(linux_setting_explains(lost_first, Tolerance{}, RetryRule::OrphanTime, 2));
    // Under tcp_orphan_retries = 1 Linux stops after copy #2: the copy at 1.248 s contradicts it.
    CHECK_FALSE(linux_setting_explains(lost_first, Tolerance{}, RetryRule::OrphanTime, 1));
    // Under 3 it would send copy #4 and give up at ~6.4 s, not by 3.1 s.
    CHECK_FALSE(linux_setting_explains(lost_first, Tolerance{}, RetryRule::OrphanTime, 3));
    // In a vote it backs a run that pins 2, and it does not veto a run that pins 1.
    const ScheduleFit two = fit_schedule(at_ms({0, 204, 612, 1428}), Tolerance{}, true, RetryRule::OrphanTime);
    const ScheduleFit one = fit_schedule(at_ms({0, 204, 612}), Tolerance{}, true, RetryRule::OrphanTime);
    const ScheduleEvidence none;
    REQUIRE(alone.retries_candidates.empty());
    const SettingVote backed = vote_setting({{&none, &two}, {&lost_first, &alone}}, Tolerance{}, RetryRule::OrphanTime);
    CHECK(backed.backing_runs == 1);
    REQUIRE(backed.inferred);
    CHECK(*backed.inferred == 2);
    const SettingVote not_vetoed = vote_setting({{&none, &one}, {&lost_first, &alone}}, Tolerance{}, RetryRule::OrphanTime);
    CHECK(not_vetoed.backing_runs == 0);
    CHECK(not_vetoed.values == std::vector<unsigned>{1});
    CHECK_FALSE(not_vetoed.inferred);  // one run alone is not enough
    // Without a confirmed end nothing is backed.
    ScheduleEvidence open = evidence({0ms, 416ms, 1248ms});
    open.rtt = 1ms;
    CHECK_FALSE(linux_setting_explains(open, Tolerance{}, RetryRule::OrphanTime, 2));
}

TEST_CASE("schedule: FIN runs vote; runs at another RTO pin what one run cannot") {
    const ScheduleEvidence none;
    // RTO 235 ms: N = 1 and N = 2 both give up at the expiry after copy #2.
    const ScheduleFit slow = fit_schedule(at_ms({0, 235, 705}), Tolerance{}, true, RetryRule::OrphanTime);
    // RTO 204 ms: N = 2 sends copy #3 (its limit, 1.4 s, is not reached at 1.224 s), N = 1 does not.
    const ScheduleFit fast = fit_schedule(at_ms({0, 204, 612, 1428}), Tolerance{}, true, RetryRule::OrphanTime);
    REQUIRE(fast.retries_candidates == std::vector<unsigned>{2});
    // N = 1 at 204 ms: copies at 0, 0.204, 0.612 s, then the give-up.
    const ScheduleFit one = fit_schedule(at_ms({0, 204, 612}), Tolerance{}, true, RetryRule::OrphanTime);
    REQUIRE(one.retries_candidates == std::vector<unsigned>{1});

    SUBCASE("one ambiguous run alone: both values stand, nothing inferred") {
        const SettingVote v = vote_setting({{&none, &slow}}, Tolerance{}, RetryRule::OrphanTime);
        CHECK(v.values == std::vector<unsigned>{1, 2});
        CHECK_FALSE(v.inferred);
    }
    SUBCASE("two ambiguous runs: still both") {
        const SettingVote v = vote_setting({{&none, &slow}, {&none, &slow}}, Tolerance{}, RetryRule::OrphanTime);
        CHECK(v.values == std::vector<unsigned>{1, 2});
        CHECK_FALSE(v.inferred);
    }
    SUBCASE("an ambiguous run and one at 204 ms: 2") {
        const SettingVote v = vote_setting({{&none, &slow}, {&none, &fast}, {&none, &slow}}, Tolerance{}, RetryRule::OrphanTime);
        CHECK(v.signature_runs == 3);
        REQUIRE(v.inferred);
        CHECK(*v.inferred == 2);
    }
    SUBCASE("the 204 ms run alone among several is not enough") {
        const ScheduleFit open = fit_schedule(at_ms({0, 204}), Tolerance{}, false, RetryRule::OrphanTime);
        const SettingVote v = vote_setting({{&none, &fast}, {&none, &open}}, Tolerance{}, RetryRule::OrphanTime);
        CHECK(v.values == std::vector<unsigned>{2});
        CHECK_FALSE(v.inferred);
    }
    SUBCASE("runs that pin different values disagree") {
        const SettingVote v = vote_setting({{&none, &one}, {&none, &fast}}, Tolerance{}, RetryRule::OrphanTime);
        CHECK(v.values.empty());
        CHECK_FALSE(v.inferred);
    }
}

TEST_CASE("schedule: the ACK delay that moves a FIN RTO to where ambiguous tcp_orphan_retries values differ") {
    // Linux's orphan rule gives up at the first RTO expiry at least (2^(N+1) - 1) x 200 ms
    // after the first retransmission; those expiries fall at 2r, 6r, 14r. N = 1 (0.6 s) and
    // N = 2 (1.4 s) part when one of them lies in [0.6, 1.4) s: r in [0.3, 0.7) s. With
    // 15 % margin either way the RTO must land in [353, 608] ms. After one RTT sample m,
    // Linux's RTO is m + max(2m, 200 ms): 3m above 100 ms.
    SUBCASE("RTO 236 ms on a 0.1 ms path: its 36 ms above the formula read both ways") {
        const auto d = ack_delay_to_split({1, 2}, 236ms, 100us, 0ms);
        REQUIRE(d);
        // As timer granularity the 36 ms stay: RTO 36 + 3 (0.1 + D); as RTT the peer saw
        // beyond ours they triple: 3 (36 + D). Both in [353, 608] ms: D in [106, 166] ms,
        // in 5 ms steps 110-165; the middle is taken.
        CHECK(*d >= 130ms);
        CHECK(*d <= 140ms);
    }
    SUBCASE("an RTO seen with our ACKs already 50 ms late") {
        const auto d = ack_delay_to_split({1, 2}, 268ms, 100us, 50ms);
        REQUIRE(d);
        // The excess is 268 - (50.1 + 200) = 18 ms: 18 + 3 (0.1 + D) and 3 (18 + D) in
        // [353, 608] ms: D in [112, 184] ms, steps 115-180.
        CHECK(*d >= 140ms);
        CHECK(*d <= 150ms);
    }
    SUBCASE("2 and 3 (limits 1.4 s and 3.0 s) part at an RTO in [0.7, 1.5) s") {
        const auto d = ack_delay_to_split({2, 3}, 600ms, 150ms, 0ms);
        REQUIRE(d);
        const Duration rto = 150ms + 3 * (150ms + *d);  // the excess over 3 x 150 ms is 150 ms
        CHECK(rto * 85 / 100 >= 700ms);
        CHECK(rto * 115 / 100 < 1500ms);
    }
    SUBCASE("RTO 296 ms on a 0.2 ms path: no delay fits all three readings of its 96 ms, one fits the cache and granularity") {
        // Loss bench, 10 % loss: a cached RTT of about 96 ms (RTO 96 + 200 ms). As RTT
        // beyond ours the excess triples past 700 ms wherever the cache reading reaches 353.
        const auto d = ack_delay_to_split({1, 2}, 296ms, 200us, 0ms);
        REQUIRE(d);
        const Duration cached = std::max<Duration>(96ms, 200us + *d) * 3;  // Linux: the longer RTT, x3 above 100 ms
        const Duration granular = 96ms + 3 * (200us + *d);
        for (Duration rto : {cached, granular}) {
            CAPTURE(rto);
            CHECK(rto * 85 / 100 >= 300ms);  // N = 1 stops after copy #2, N = 2 sends copy #3
            CHECK(rto * 115 / 100 < 700ms);
        }
    }
    SUBCASE("nothing to split") {
        CHECK_FALSE(ack_delay_to_split({2}, 236ms, 100us, 0ms));
        CHECK_FALSE(ack_delay_to_split({}, 236ms, 100us, 0ms));
    }
}

TEST_CASE("schedule: a first gap late by the peer's timer granularity does not skew the model") {
    // Linux at HZ=250 rounds a 256 ms timer up to its wheel's 32 ms buckets: the first
    // expiry comes up to 32 ms late, the next ones (armed on a bucket edge, multiples of
    // 32 ms) on time. Seen on the lab: an orphaned FIN's gaps 285 and 512 ms (RTO 256 ms).
    // Read from the first gap the RTO would be 285 ms and the second gap 10 % short of
    // its 570 ms: no doubling, no Linux signature.
    ScheduleEvidence ev = evidence({300us, 285300us, 797300us}, {{250ms, Liveness::Alive}, {2100ms, Liveness::Gone}});
    ev.rtt = 300us;
    ScheduleFit f = fit_schedule(ev, Tolerance{}, RetryRule::OrphanTime);
    REQUIRE(f.fitted);
    CHECK(f.backoff_kind == Backoff::Doubling);
    REQUIRE(f.initial_rto);
    CHECK(*f.initial_rto == 256ms);
    CHECK(f.linux_like);
    // RTO 256 ms: expiries 512 ms and 1,536 ms after the first retransmission; 1 (0.6 s)
    // and 2 (1.4 s) both give up at the second: the runs at a longer RTO decide.
    CHECK(f.retries_candidates == std::vector<unsigned>{1, 2});
    SUBCASE("a client's SYNs at HZ=250: the first linear gap 8 ms late, the rest 1024 ms") {
        ScheduleFit g = fit_schedule(at_ms({0, 1032, 2056, 3080, 4104, 5128}), Tolerance{}, true, RetryRule::SynTime);
        REQUIRE(g.initial_rto);
        CHECK(*g.initial_rto == 1024ms);
        CHECK(g.linear_gaps == 5);
    }
}

TEST_CASE("schedule: a FIN RTO below the RTT plus Linux's 200 ms floor is no Linux reading") {
    // A follow-up run on the lab, our ACKs 155 ms late, tcp_orphan_retries = 1: the FIN, one
    // retransmission 483.5 ms later, gone at 1.537 s. Read as a lost original and an RTO of
    // 242 ms it would also fit N = 2, but the peer's RTO is at least its RTT sample (155 ms,
    // our late ACK included) plus 200 ms.
    ScheduleEvidence ev = evidence({300us, 483800us}, {{250ms, Liveness::Alive}, {1537ms, Liveness::Gone}});
    ev.rtt = 155100us;
    CHECK(linux_setting_explains(ev, Tolerance{}, RetryRule::OrphanTime, 1));
    CHECK_FALSE(linux_setting_explains(ev, Tolerance{}, RetryRule::OrphanTime, 2));
    SUBCASE("on a path of 0.1 ms the same lost-original reading stands (an RTO of 242 ms is Linux's there)") {
        ev.rtt = 100us;
        CHECK(linux_setting_explains(ev, Tolerance{}, RetryRule::OrphanTime, 2));
    }
}

TEST_CASE("schedule: a FIN RTO above what the RTT gives Linux infers nothing and rules nothing out (a cached RTT)") {
    // Lab, 0.05 ms path: one ACK of ours to the server lost, our request retransmitted 200 ms
    // later completed its handshake, and the server cached a 153 ms RTT for us; the next
    // connection's FIN went at RTO 464 ms (3 x 153 + a little), doubling, tcp_orphan_retries = 2:
    // copies 464 and 928 ms apart, gone by 3.5 s.
    ScheduleEvidence ev = evidence({0ms, 463978us, 1391978us}, {{3500ms, Liveness::Gone}});
    ev.rtt = 50us;
    ScheduleFit f = fit_schedule(ev, Tolerance{}, RetryRule::OrphanTime);
    CHECK(f.backoff_kind == Backoff::Doubling);
    CHECK_FALSE(f.linux_like);
    CHECK_FALSE(f.inferred_retries);
    REQUIRE_FALSE(f.linux_mismatch.empty());
    const std::string why = fmt::format("{}", fmt::join(f.linux_mismatch, "; "));
    CHECK(why.find("above the 150-300 ms Linux derives from this RTT") != std::string::npos);
    CHECK(why.find("cached for our address") != std::string::npos);
}

TEST_CASE("schedule: the reading that also explains the give-up wins over one with fewer lost copies") {
    // Loss bench, 10 % loss, a Linux 6.18 client with tcp_syn_retries = 2 (SYNs at 0..5 s,
    // 1 s apart, gone at 7 s): SYNs seen at 0, 1.0, 2.0 and 5.1 s, gone by 7.23 s. Three
    // linear gaps and one lost copy explain the gaps but put the next expiry at 9.1 s;
    // five linear gaps with copies #3 and #4 lost put it at 7.1 s, where the peer gave up.
    ScheduleEvidence ev = evidence({0ms, 1001531us, 2025576us, 5097559us}, {{7232324us, Liveness::Gone}});
    ScheduleFit f = fit_schedule(ev, Tolerance{}, RetryRule::SynTime);
    CHECK(f.backoff_kind == Backoff::Linear);
    CHECK(f.linear_gaps == 5);
    REQUIRE(f.missing.size() == 2);
    CHECK(f.missing[0].index == 3);
    CHECK(f.missing[1].index == 4);
    CHECK(f.linux_like);
    REQUIRE(f.inferred_retries);
    CHECK(*f.inferred_retries == 2);
    SUBCASE("without the end seen, the fewest lost copies stay the reading") {
        ScheduleFit g = fit_schedule(evidence({0ms, 1001531us, 2025576us, 5097559us}), Tolerance{}, RetryRule::SynTime);
        CHECK(g.missing.size() == 1);
        CHECK_FALSE(g.inferred_retries);
    }
}

TEST_CASE("schedule: a FIN run that lost its original backs a value whose limit lies near an expiry") {
    // Loss bench, 10 % loss, server tcp_orphan_retries = 2, RTO 224 ms: the original FIN lost,
    // copies #1-#3 seen 472 and 896 ms apart (the first gap 24 ms late), gone by 3.34 s. The
    // peer sent #3 at 448 + 896 = 1,344 ms after #1 (< 1.4 s, N = 2's limit). Read with the RTO
    // from the first gap (236 ms) the second expiry came at 1,416 ms and N = 2 was ruled out,
    // which left N = 3 alone against the other runs' {2, 3}: a wrong inference.
    ScheduleEvidence ev = evidence({0us, 471988us, 1368000us}, {{250190us, Liveness::Alive}, {3339377us, Liveness::Gone}});
    ev.rtt = 100us;
    CHECK(linux_setting_explains(ev, Tolerance{}, RetryRule::OrphanTime, 2));
    CHECK(linux_setting_explains(ev, Tolerance{}, RetryRule::OrphanTime, 3));
    CHECK_FALSE(linux_setting_explains(ev, Tolerance{}, RetryRule::OrphanTime, 1));
}

TEST_CASE("schedule: a give-up expiry 2 s or more after the last copy may fire up to 256 ms late (Linux's timer wheel)") {
    // Loss bench, 10 % loss, a follow-up run at RTO 521 ms (our ACKs 170 ms late), server
    // tcp_orphan_retries = 2: copies at 0, 0.52 and 1.58 s, the give-up expiry 2.08 s later
    // (3.64 s); a probe at 3.87 s still found the state held, the next (8.25 s) found it
    // gone. A 2.08 s timer sits on the wheel's 256 ms level at HZ=250 and fired past the
    // 208 ms tolerance: read without that, N = 2's give-up came too early and N = 4 alone
    // was left (a wrong value, which only the other runs' vote stopped).
    ScheduleEvidence ev = evidence({0ms, 521339us, 1577000us},
                                   {{1051ms, Liveness::Alive}, {3872ms, Liveness::Alive}, {8252ms, Liveness::Gone}});
    ev.rtt = 170041us;
    const ScheduleFit f = fit_schedule(ev, Tolerance{}, RetryRule::OrphanTime);
    CHECK(f.retries_candidates != std::vector<unsigned>{4});
    CHECK_FALSE(f.inferred_retries);
    CHECK(linux_setting_explains(ev, Tolerance{}, RetryRule::OrphanTime, 2));
    CHECK(Tolerance{}.late_by(2080ms) == 256ms);
    CHECK(Tolerance{}.late_by(1040ms) == 104ms);  // the 10 % tolerance is more there
}

TEST_CASE("schedule: a client's SYNs with two copies lost between three seen are still read (listen, 10 % loss)") {
    // Loss bench, 10 % loss, tcp_syn_retries 2 (Linux 6.7+: SYNs 1 s apart at 0..5 s, gone
    // at 7 s): SYNs #1, #2 and #5 lost, so 0, 3.072 and 4.096 s seen. Three linear gaps and
    // one: two copies lost of five positions. Before, at most one lost copy was allowed
    // for three seen, nothing fitted, no liveness round was planned and the run ended in
    // silence: inconclusive.
    ScheduleEvidence ev = evidence({0ms, 3072056us, 4096038us}, {{1100ms, Liveness::Silent}, {7300ms, Liveness::Gone}});
    const ScheduleFit f = fit_schedule(ev, Tolerance{}, RetryRule::SynTime);
    REQUIRE(f.fitted);
    CHECK(f.copy_index == std::vector<unsigned>{0, 3, 4});
    REQUIRE(f.inferred_retries);
    CHECK(*f.inferred_retries == 2);
    ev.probes.pop_back();
    ev.stopped_early = true;
    CHECK_FALSE(next_expected(ev, Tolerance{}, RetryRule::SynTime, 4).empty());
    SUBCASE("three clean copies keep their no-loss reading though two lost copies would fit as well") {
        // tcp_syn_retries 1 (Linux 6.7+): SYNs at 0, 1 and 2 s, gone at 3 s. Linear 500 ms
        // gaps with #1 and #3 lost align the same three copies exactly. (No N is inferred:
        // a SYN seen first may follow lost ones, which would move the give-up's limit.)
        const ScheduleFit clean = fit_schedule(evidence({0ms, 1001ms, 2002ms}, {{2300ms, Liveness::Alive}, {3400ms, Liveness::Gone}}),
                                               Tolerance{}, RetryRule::SynTime);
        REQUIRE(clean.fitted);
        CHECK(clean.copy_index == std::vector<unsigned>{0, 1, 2});
        CHECK(clean.missing.empty());
        REQUIRE(clean.initial_rto);
        CHECK(*clean.initial_rto >= 950ms);
        REQUIRE(clean.copies_sent);
        CHECK(*clean.copies_sent == 2);  // a reading with two lost would make it 4
        CHECK_FALSE(clean.inferred_retries);
    }
    SUBCASE("two seen with two lost between them stay unread: any gap fits three model gaps") {
        const ScheduleFit two = fit_schedule(evidence({0ms, 3072056us}, {{7300ms, Liveness::Gone}}), Tolerance{},
                                             RetryRule::SynTime);
        CHECK_FALSE(two.inferred_retries);
    }
}
