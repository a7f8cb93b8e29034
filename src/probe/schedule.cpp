// Schedule fitting (see schedule.hpp).
#include "tcpprobe/probe/schedule.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

#include <fmt/format.h>

namespace tcpprobe::probe {

using namespace std::chrono_literals;

Duration Tolerance::for_gap(Duration expected) const {
    auto pct = Duration{static_cast<std::int64_t>(static_cast<double>(expected.count()) * percent / 100.0)};
    return std::max(floor, pct);
}

Duration Tolerance::late_by(Duration gap) const {
    using namespace std::chrono_literals;
    const Duration wheel = gap < 2048ms ? 32ms : gap < 16384ms ? 256ms : 2048ms;
    return std::max(for_gap(gap), wheel);
}

std::string_view to_string(Backoff b) {
    switch (b) {
        case Backoff::Doubling: return "doubling";
        case Backoff::Linear: return "linear, then doubling";
        case Backoff::Table: return "linear multiples (x1, x2, x3, ...)";
        case Backoff::Constant: return "constant";
    }
    return "?";
}

std::string_view to_string(ScheduleEnd e) {
    switch (e) {
        case ScheduleEnd::Open: return "open";
        case ScheduleEnd::PeerRst: return "rst";
        case ScheduleEnd::Confirmed: return "confirmed";
        case ScheduleEnd::Silence: return "silence";
    }
    return "?";
}

namespace {

double secs(Duration d) { return to_ms_f(d) / 1000.0; }

Duration off_by(Duration a, Duration b) { return a > b ? a - b : b - a; }

/// Whether `d` lies within the tolerance of `want`.
bool within(Duration d, Duration want, const Tolerance& tol) { return off_by(d, want) <= tol.for_gap(want); }

/// A backoff model: gap j (between copy j-1 and copy j, j >= 1) is r0 x unit(j), capped.
struct Model {
    Backoff kind = Backoff::Doubling;
    Duration r0{};
    std::size_t linear = 1;  ///< Linear: gaps 1..linear are r0
    Duration cap{};

    double unit(std::size_t j) const {
        switch (kind) {
            case Backoff::Doubling: return std::ldexp(1.0, static_cast<int>(std::min<std::size_t>(j - 1, 40)));
            case Backoff::Linear:
                return j <= linear ? 1.0 : std::ldexp(1.0, static_cast<int>(std::min<std::size_t>(j - linear, 40)));
            case Backoff::Table: return static_cast<double>(std::min<std::size_t>(j, 7));
            case Backoff::Constant: return 1.0;
        }
        return 1.0;
    }
    Duration gap(std::size_t j) const {
        const double ns = static_cast<double>(r0.count()) * unit(j);
        if (ns >= static_cast<double>(cap.count())) return cap;
        return Duration{static_cast<std::int64_t>(ns)};
    }
    /// Time of copy k after copy `from` (k >= from).
    Duration span(std::size_t from, std::size_t k) const {
        Duration t{};
        for (std::size_t j = from + 1; j <= k; ++j) t += gap(j);
        return t;
    }
    double unit_span(std::size_t from, std::size_t k) const {
        double u = 0;
        for (std::size_t j = from + 1; j <= k; ++j) u += unit(j);
        return u;
    }
};

struct Alignment {
    Model model;
    std::vector<unsigned> index;  ///< model position of each observed copy
    unsigned lost = 0;            ///< skipped positions (leading ones included)
    double error = 0;             ///< sum of relative gap errors
    bool end_fits = false;        ///< an expiry of the model lies where the peer gave up
};

/// Where the peer gave up, on the model's axis: after the last sign of life (`held`), by
/// the first sign of death (`gone`, absent while the end is not seen).
struct EndBracket {
    std::optional<Duration> held, gone;
};

constexpr unsigned max_lost_in_a_row = 2;  // a gap may stand for up to three model gaps

/// The most lost copies a reading of `seen` copies may assume: more than half of those
/// seen is no explanation (any gaps fit then), but three seen may have lost two between
/// them: a client's SYNs 1 s apart, #1 and #2 lost, leave 0, 3 and 4 s (10 % loss: about
/// 1 % of runs), and the two gaps, three model gaps and one, still pin the model.
std::size_t max_lost_for(std::size_t seen) { return std::max<std::size_t>(seen >= 3 ? 2 : 1, seen / 2); }

/// Copy times on the model's axis: relative to the origin, minus the path's RTT when the
/// origin is our own segment (the original then leaves the peer about one RTT later).
std::vector<Duration> axis(const ScheduleEvidence& ev) {
    std::vector<Duration> v = ev.copies;
    if (!ev.origin_is_first_copy && ev.rtt)
        for (auto& c : v) c = std::max(Duration::zero(), c - *ev.rtt);
    return v;
}

/// The end: the latest sign of life against the earliest sign of death, on the axis.
EndBracket end_bracket(const ScheduleEvidence& ev) {
    EndBracket e;
    if (!ev.copies.empty()) e.held = ev.copies.back();
    for (const auto& p : ev.probes) {
        if (p.answer == Liveness::Alive && (!e.held || p.at > *e.held)) e.held = p.at;
        if (p.answer == Liveness::Gone && (!e.gone || p.at < *e.gone)) e.gone = p.at;
    }
    if (ev.peer_rst && (!e.gone || *ev.peer_rst < *e.gone)) e.gone = ev.peer_rst;
    if (!ev.origin_is_first_copy && ev.rtt) {
        if (e.gone) e.gone = std::max(Duration::zero(), *e.gone - *ev.rtt);
        if (e.held) e.held = std::max(Duration::zero(), *e.held - *ev.rtt);
    }
    return e;
}

/// Aligns the observed copies with `m`, the first copy at model position `start`.
std::optional<Alignment> align(const std::vector<Duration>& c, const Model& m, unsigned start, const Tolerance& tol) {
    Alignment a{m, {start}, start, 0};
    std::size_t pos = start;
    for (std::size_t i = 1; i < c.size(); ++i) {
        const Duration g = c[i] - c[i - 1];
        bool ok = false;
        for (unsigned k = 1; k <= max_lost_in_a_row + 1; ++k) {
            const Duration want = m.span(pos, pos + k);
            const Duration off = off_by(g, want);
            if (off <= tol.for_gap(want)) {
                a.error += static_cast<double>(off.count()) / static_cast<double>(std::max<std::int64_t>(want.count(), 1));
                a.lost += k - 1;
                pos += k;
                ok = true;
                break;
            }
        }
        if (!ok) return std::nullopt;
        a.index.push_back(static_cast<unsigned>(pos));
    }
    return a;
}

/// Timers fire late, never early: the gap that came closest to its model span (relative to
/// it) is the best reading of the initial RTO. That reading is kept when it places the
/// copies the same way within tolerance.
Alignment tighten(const std::vector<Duration>& c, const Alignment& a, const Tolerance& tol) {
    double scale = 0;
    for (std::size_t i = 1; i < c.size(); ++i) {
        bool capped = false;
        for (unsigned j = a.index[i - 1] + 1; j <= a.index[i]; ++j) capped = capped || a.model.gap(j) >= a.model.cap;
        if (capped) continue;
        const double s = static_cast<double>((c[i] - c[i - 1]).count()) /
                         static_cast<double>(std::max<std::int64_t>(a.model.span(a.index[i - 1], a.index[i]).count(), 1));
        if (scale == 0 || s < scale) scale = s;
    }
    if (scale == 0 || scale >= 1.0) return a;
    Model m = a.model;
    m.r0 = Duration{static_cast<std::int64_t>(static_cast<double>(m.r0.count()) * scale)};
    auto t = align(c, m, a.index.front(), tol);
    if (!t || t->index != a.index) return a;
    return *t;
}

/// How long after an expiry `gap` after the previous one the peer may still be seen
/// holding the state: its timer fired late (the end check and the rounds that test it).
Duration expiry_lateness(Duration gap, const Tolerance& tol) { return std::max(tol.for_gap(gap) / 2, tol.late_by(gap)); }

/// Whether the model's expiry after copy `r` (the original at `zero_at` on the axis) lies
/// inside a seen end bracket, within half a tolerance either way.
bool expiry_in_end(const Model& m, Duration zero_at, unsigned r, const EndBracket& end, const Tolerance& tol) {
    const Duration expiry = zero_at + m.span(0, r + 1);
    const Duration slack = tol.for_gap(m.gap(r + 1)) / 2;
    return expiry + expiry_lateness(m.gap(r + 1), tol) >= *end.held && expiry <= *end.gone + slack;
}

/// The copies (model positions from the last one seen) after which the model's next
/// expiry falls inside the end bracket: the peer gives up at an expiry, silently.
std::vector<unsigned> end_expiries(const std::vector<Duration>& c, const Alignment& a, const EndBracket& end,
                                   const Tolerance& tol) {
    std::vector<unsigned> fits;
    if (!end.held || !end.gone) return fits;
    const Duration zero_at = c.front() - a.model.span(0, a.index.front());  // the original's time on the axis
    for (unsigned r = a.index.back(); r < a.index.back() + 8; ++r)
        if (expiry_in_end(a.model, zero_at, r, end, tol)) fits.push_back(r);
    return fits;
}

/// An alignment whose model also explains where the peer gave up is preferred to one
/// that explains the gaps with fewer lost copies but not the end (e.g. a client's SYNs
/// at 0, 1, 2 and 5 s: five 1 s gaps with two copies lost, then the give-up 2 s later, or
/// three linear gaps and one lost copy with no expiry where the peer gave up).
bool better(const Alignment& a, const std::optional<Alignment>& best) {
    if (!best) return true;
    if (a.end_fits != best->end_fits) return a.end_fits;
    if (a.lost != best->lost) return a.lost < best->lost;
    return a.error + 1e-9 < best->error;
}

/// Every reading of the copies: each backoff kind, initial RTO candidate and leading loss
/// that aligns them with at most half as many lost copies as seen, in order of preference.
std::vector<Alignment> readings(const ScheduleEvidence& ev, const EndBracket& end, const Tolerance& tol, RetryRule rule,
                                Duration cap) {
    std::vector<Alignment> out;
    const std::vector<Duration> c = axis(ev);
    if (c.size() < 2) return out;
    const Duration g1 = c[1] - c[0];
    if (g1 <= Duration::zero()) return out;
    // In order of preference when two fit equally well (Linux's client SYNs are linear first).
    std::vector<Model> shapes{{Backoff::Doubling, {}, 1, cap}};
    if (rule == RetryRule::SynTime)
        for (std::size_t l = 2; l <= 8; ++l) shapes.push_back({Backoff::Linear, {}, l, cap});
    shapes.push_back({Backoff::Table, {}, 1, cap});
    shapes.push_back({Backoff::Constant, {}, 1, cap});
    const auto max_lost = static_cast<unsigned>(max_lost_for(c.size()));
    const unsigned max_start = ev.origin_is_first_copy ? 0 : max_lost_in_a_row;
    for (const Model& shape : shapes) {
        for (unsigned start = 0; start <= max_start; ++start) {
            // The initial RTO from the first gap, or from the second (a timer fires late by
            // up to its granularity, Linux's timer wheel up to 1/8 of the timeout: a late
            // first gap scales every later model gap by its lateness).
            std::vector<Duration> r0s;
            for (unsigned k1 = 1; k1 <= max_lost_in_a_row + 1; ++k1) {
                r0s.push_back(Duration{static_cast<std::int64_t>(static_cast<double>(g1.count()) / shape.unit_span(start, start + k1))});
                for (unsigned k2 = 1; c.size() > 2 && k2 <= max_lost_in_a_row + 1; ++k2)
                    r0s.push_back(Duration{static_cast<std::int64_t>(static_cast<double>((c[2] - c[1]).count()) /
                                                                     shape.unit_span(start + k1, start + k1 + k2))});
            }
            for (const Duration r0 : r0s) {
                Model m = shape;
                m.r0 = r0;
                if (m.r0 <= Duration::zero()) continue;
                if (!ev.origin_is_first_copy) {
                    // The first copy's distance from our segment must fit its position:
                    // about zero for the original, one or more model gaps for a later copy.
                    const Duration want = m.span(0, start);
                    const Duration d = c[0];
                    // The original leaves about when our segment arrives: with the RTT
                    // subtracted that is within tolerance of zero; without it, well
                    // under one RTO.
                    const Duration slack = start != 0 ? tol.for_gap(want) : ev.rtt ? tol.for_gap(m.r0) : m.r0 / 4;
                    if (start == 0 ? d > slack : (d > want + slack || d + slack < want)) continue;
                }
                auto a = align(c, m, start, tol);
                if (a) a = tighten(c, *a, tol);
                if (a) a->end_fits = !end_expiries(c, *a, end, tol).empty();
                if (a && a->lost <= max_lost) out.push_back(std::move(*a));
            }
        }
    }
    return out;
}

/// The best reading (better(): the end fits, fewest lost copies, least error).
std::optional<Alignment> best_alignment(const ScheduleEvidence& ev, const EndBracket& end, const Tolerance& tol,
                                       RetryRule rule, Duration cap) {
    std::optional<Alignment> best;
    for (auto& a : readings(ev, end, tol, rule, cap))
        if (better(a, best)) best = std::move(a);
    return best;
}

/// (2^(n+1) - 1) x base: Linux's tcp_model_timeout() below the linear-backoff threshold.
Duration model_timeout(unsigned n, Duration base) { return base * ((std::int64_t{2} << n) - 1); }

/// Every value of Linux's setting that explains the copies it sent (model positions
/// 0..sent) and its give-up expiry (`expiry`, relative to the original copy). One value:
/// inferred; more: the schedule cannot tell them apart; none: not Linux's rule.
std::vector<unsigned> linux_settings(RetryRule rule, const Model& m, unsigned sent, Duration expiry, Duration margin) {
    std::vector<unsigned> fits;
    switch (rule) {
        case RetryRule::Count:
            fits.push_back(sent);
            break;
        case RetryRule::SynTime: {
            const Duration last = m.span(0, sent);
            for (unsigned b = 0; b < 16; ++b) {
                const Duration limit = model_timeout(b, 1s);
                if (limit > last) {
                    if (limit <= expiry) fits.push_back(b);
                    break;
                }
            }
            break;
        }
        case RetryRule::OrphanTime: {
            if (sent == 0) break;
            const Duration last = m.span(1, sent);          // since the first retransmission
            const Duration until = expiry - m.span(0, 1);
            // N fits when its limit lies after the last copy's time and by the give-up
            // expiry. A limit within `margin` of either end fits as well as not (the
            // peer's timers run on its clock, ours measure copies a few ms apart): with
            // an RTO of 235 ms, 1.4 s (N = 2) and the expiry at 1.41 s are one reading,
            // 0.6 s (N = 1) another, and the schedule is the same for both.
            for (unsigned b = 0; b < 16; ++b) {
                const Duration limit = model_timeout(b, 200ms);
                if (limit + margin > last && limit <= until + margin) fits.push_back(b);
            }
            break;
        }
    }
    return fits;
}

/// Families from public descriptions of their stacks (the man page carries the table).
struct Family {
    const char* name;
    Backoff kind;
    Duration r0_min, r0_max;
    std::optional<unsigned> retransmissions;
    bool applies_synack, applies_fin, applies_syn;
};

const std::vector<Family>& families() {
    static const std::vector<Family> f = {
        {"FreeBSD syncache (1 s, doubling, 3 retransmissions)", Backoff::Doubling, 900ms, 1100ms, 3, true, false, false},
        {"RFC 6298 (1 s initial RTO, doubling: Linux, BSD, macOS, Windows 8+)", Backoff::Doubling, 900ms, 1100ms,
         std::nullopt, true, false, true},
        {"RFC 1122 (3 s initial RTO, doubling: older Windows, many embedded stacks)", Backoff::Doubling, 2700ms, 3300ms,
         std::nullopt, true, true, true},
        {"lwIP (3 s initial RTO, backoff table x1, x2, x3, ...)", Backoff::Table, 2700ms, 3300ms, std::nullopt, true, true,
         true},
        {"RTT-based RTO, doubling (RFC 6298 data timer: BSD, Windows)", Backoff::Doubling, 1ms, 1500ms, std::nullopt, false,
         true, false},
        {"constant RTO (no backoff: some embedded and user-space stacks)", Backoff::Constant, 1ms, 600s, std::nullopt, true,
         true, true},
    };
    return f;
}

bool applies(const Family& f, RetryRule rule) {
    switch (rule) {
        case RetryRule::Count: return f.applies_synack;
        case RetryRule::OrphanTime: return f.applies_fin;
        case RetryRule::SynTime: return f.applies_syn;
    }
    return false;
}

/// Whether a Linux-shaped model, from any starting copy and with up to two lost copies
/// per gap, explains the observed copies too.
bool linux_explains(const std::vector<Duration>& c, const Model& fitted, RetryRule rule, const Tolerance& tol, Duration cap) {
    std::vector<Model> linux;
    switch (rule) {
        case RetryRule::Count:
            linux.push_back({Backoff::Doubling, 1s, 1, cap});
            break;
        case RetryRule::SynTime:
            for (std::size_t l = 1; l <= 8; ++l) linux.push_back({l == 1 ? Backoff::Doubling : Backoff::Linear, 1s, l, cap});
            break;
        case RetryRule::OrphanTime:
            // The RTO is RTT-based: the fitted one halved once or more (lost first copies).
            for (int k = 1; k <= 4; ++k) linux.push_back({Backoff::Doubling, fitted.r0 / (1 << k), 1, cap});
            break;
    }
    for (const Model& m : linux)
        for (unsigned start = 0; start <= 3; ++start)
            if (align(c, m, start, tol)) return true;
    return false;
}

/// RTO = SRTT + max(RTTVAR term, 200 ms): at least the RTT plus 200 ms (the peer's RTT
/// samples include how late our ACKs left, which `rtt` carries), a few RTTs above it at most.
std::pair<Duration, Duration> linux_fin_rto_range(const ScheduleEvidence& ev, const Tolerance& tol) {
    const Duration rtt = ev.rtt.value_or(Duration::zero());
    return {rtt + 200ms - tol.for_gap(200ms), 200ms + rtt * 4 + tol.for_gap(200ms) + 50ms};
}

/// The last copy Linux sends under `setting` (model positions 0..n), from its rule.
std::optional<unsigned> linux_copies(RetryRule rule, const Model& m, unsigned setting, Duration limit_shift = {}) {
    switch (rule) {
        case RetryRule::Count:
            return setting;
        case RetryRule::OrphanTime:
        case RetryRule::SynTime: {
            // At each expiry k the time since the first retransmission (FIN) or since the
            // original (SYN) is checked against the limit: below it, copy k goes out.
            const Duration limit =
                (rule == RetryRule::OrphanTime ? model_timeout(setting, 200ms) : model_timeout(setting, 1s)) + limit_shift;
            for (unsigned k = 1; k < 64; ++k) {
                const Duration elapsed = rule == RetryRule::OrphanTime ? m.span(1, k) : m.span(0, k);
                if (elapsed >= limit) return k - 1;
            }
            return std::nullopt;
        }
    }
    return std::nullopt;
}

void check_linux(ScheduleFit& f, const Model& m, RetryRule rule, const ScheduleEvidence& ev, const Tolerance& tol) {
    auto miss = [&](std::string s) { f.linux_mismatch.push_back(std::move(s)); };
    const bool shape_ok = m.kind == Backoff::Doubling || (rule == RetryRule::SynTime && m.kind == Backoff::Linear);
    if (!shape_ok) miss(fmt::format("backoff is {}, Linux doubles", to_string(m.kind)));
    // An RTT-based initial RTO is a range, not a value: the doubling itself must be seen.
    if (rule == RetryRule::OrphanTime && f.gaps.size() < 2)
        miss("fewer than three copies: the doubling is not shown (a FIN RTO is a range, not a value)");
    if (rule == RetryRule::OrphanTime) {
        const auto [lo, hi] = linux_fin_rto_range(ev, tol);
        if (m.r0 < lo)
            miss(fmt::format("initial RTO {:.3f} s, below the RTT plus Linux's 200 ms floor ({:.0f} ms)", secs(m.r0), to_ms_f(lo)));
        else if (m.r0 > hi) {
            f.rto_above_rtt = true;
            // Linux starts a connection from the RTT it cached for the address when that is
            // longer (tcp_metrics: RTO = c + max(2c, 200 ms)): one ACK of a client's lost on
            // the path, its data retransmitted 200 ms later completes the handshake, and the
            // server caches a ~200 ms RTT. Such an RTO is Linux's too, but nothing in this
            // run tells it from another stack's RTT-based doubling timer: no claim either
            // way, unless a follow-up past the cache showed the RTO following the RTT.
            if (ev.cache_rto && within(m.r0, *ev.cache_rto, tol))
                f.notes.push_back(fmt::format("initial RTO {:.3f} s, above the {:.0f}-{:.0f} ms Linux derives from this RTT: "
                                              "Linux's from a longer RTT it cached for our address (tcp_metrics), as the "
                                              "follow-up run's RTO, which followed the RTT our late ACK gave, shows",
                                              secs(m.r0), to_ms_f(lo), to_ms_f(hi)));
            else
                miss(fmt::format("initial RTO {:.3f} s, above the {:.0f}-{:.0f} ms Linux derives from this RTT: a Linux peer "
                                 "shows that only when it starts from a longer RTT cached for our address (tcp_metrics), "
                                 "which cannot be told from another stack's timer",
                                 secs(m.r0), to_ms_f(lo), to_ms_f(hi)));
        }
        const bool moved = ev.past_cache_rto && m.r0 > *ev.past_cache_rto + tol.for_gap(*ev.past_cache_rto);
        if (ev.past_cache_rto && !moved)
            miss(fmt::format("initial RTO {:.3f} s, not above the first runs' {:.3f} s and its tolerance: it did not follow "
                             "the longer RTT our late ACK gave the peer, as Linux's does",
                             secs(m.r0), secs(*ev.past_cache_rto)));
        f.rto_followed_rtt = moved && m.r0 >= lo && m.r0 <= hi;
    } else {
        const Duration off = off_by(m.r0, 1s);
        if (off > tol.for_gap(1s) + 32ms)
            miss(fmt::format("initial RTO {:.3f} s, Linux's is 1 s (TCP_TIMEOUT_INIT)", secs(m.r0)));
    }
    if (f.end == ScheduleEnd::PeerRst) miss("the peer ended with a RST; Linux gives up silently");
    if (f.end == ScheduleEnd::Silence) miss("the end was not confirmed: the peer answered none of the liveness probes");
    if (f.end == ScheduleEnd::Open) miss("the end was not seen");
    if (f.end == ScheduleEnd::Confirmed && !f.copies_sent && !(rule == RetryRule::SynTime && f.time_pinned))
        miss("the end falls on no single model expiry (Linux gives up exactly one RTO after its last copy)");
}

/// A client's SYN: Linux stops at the first expiry at or after (2^(N+1) - 1) s from its
/// first SYN, whatever its copies (lost ones included) were. N fits when its limit lies
/// after the last copy seen (a copy goes out only while the time is below the limit),
/// the last sign of life is less than one 1 s gap after it (the give-up expiry lags the
/// limit by less than a gap), and the first sign of death is not before it. A RST that
/// comes late (its rounds lost) leaves several limits in the bracket: no single N.
std::vector<unsigned> syn_limits_in(Duration last_copy, Duration held, Duration gone, const Tolerance& tol) {
    std::vector<unsigned> n;
    for (unsigned b = 0; b < 12; ++b) {
        const Duration limit = model_timeout(b, 1s);
        if (limit > last_copy && limit + 1s + tol.floor > held && limit <= gone + tol.for_gap(1s)) n.push_back(b);
    }
    return n;
}

/// A client's SYN schedule has no anchor: the first SYN seen may follow lost ones. In a
/// linear phase (1 s gaps) each lost leading SYN moves the origin one gap earlier and
/// leaves the gaps seen as they are, so the limit is read under each such origin (up to
/// `max_leading_lost` lost SYNs) and stands only when every reading that fits gives the
/// same N. A doubling schedule with Linux's 1 s first gap has no such twin: its origin is
/// the first copy seen.
std::optional<unsigned> syn_limit_pinned(Duration last_copy, Duration held, Duration gone, const Model& m,
                                         bool shiftable, const Tolerance& tol) {
    // Linux's default linear phase (tcp_syn_linear_timeouts = 4) is six SYNs 1 s apart; a
    // flat series of two or more seen starts at #4 at the latest. Four leading SYNs lost is
    // 1e-4 at 10 % loss and 0.8 % at 30 %: the bench met it (four were read as none).
    constexpr unsigned max_leading_lost = 4;
    std::optional<unsigned> pinned;
    for (unsigned s = 0; s <= (shiftable ? max_leading_lost : 0); ++s) {
        const Duration shift = m.r0 * s;
        const auto fits = syn_limits_in(last_copy + shift, held + shift, gone + shift, tol);
        if (fits.size() > 1) return std::nullopt;
        if (fits.empty()) continue;
        if (pinned && *pinned != fits.front()) return std::nullopt;
        pinned = fits.front();
    }
    return pinned;
}

void match_family(ScheduleFit& f, const Model& m, RetryRule rule) {
    for (const Family& fam : families()) {
        if (!applies(fam, rule) || fam.kind != m.kind) continue;
        if (m.r0 < fam.r0_min || m.r0 > fam.r0_max) continue;
        if (fam.retransmissions && f.copies_sent && *fam.retransmissions != *f.copies_sent) continue;
        f.family = fam.name;
        f.family_matched.push_back(fmt::format("backoff {}", to_string(m.kind)));
        f.family_matched.push_back(fmt::format("initial RTO {:.3f} s", secs(m.r0)));
        if (fam.retransmissions && f.copies_sent) f.family_matched.push_back(fmt::format("{} retransmissions", *f.copies_sent));
        if (fam.retransmissions && !f.copies_sent)
            f.family_mismatched.push_back("retransmission count not pinned (end not confirmed)");
        return;
    }
    f.family_mismatched.push_back(fmt::format("no known family has backoff {} with an initial RTO of {:.3f} s",
                                              to_string(m.kind), secs(m.r0)));
}

}  // namespace

bool linux_setting_explains(const ScheduleEvidence& ev, const Tolerance& tol, RetryRule rule, unsigned setting,
                            Duration max_rto) {
    const std::vector<Duration> c = axis(ev);
    if (c.size() < 2 || ev.peer_rst) return false;  // nothing to compare; Linux gives up silently
    const EndBracket end = end_bracket(ev);
    if (!end.gone) return false;  // the end was not seen: nothing to check the setting against
    const Duration g1 = c[1] - c[0];
    for (unsigned start = 0; start <= max_lost_in_a_row; ++start) {
        for (unsigned k1 = 1; k1 <= max_lost_in_a_row + 1; ++k1) {
            Model m{Backoff::Doubling, {}, 1, max_rto};
            m.r0 = rule == RetryRule::OrphanTime
                       ? Duration{static_cast<std::int64_t>(static_cast<double>(g1.count()) / m.unit_span(start, start + k1))}
                       : 1s;
            if (rule == RetryRule::OrphanTime) {
                const auto [lo, hi] = linux_fin_rto_range(ev, tol);
                if (m.r0 < lo || (m.r0 > hi && !(ev.cache_rto && within(m.r0, *ev.cache_rto, tol)))) continue;
                // A follow-up past the cache: its RTO must have moved.
                if (ev.past_cache_rto && m.r0 <= *ev.past_cache_rto + tol.for_gap(*ev.past_cache_rto)) continue;
            }
            if (rule == RetryRule::SynTime) continue;  // linear phases: not needed by any caller yet
            auto a = align(c, m, start, tol);
            if (!a || a->index.front() != start || a->lost > max_lost_for(c.size())) continue;
            // The RTO as the fit reads it (a late first gap does not stand for it), and the
            // limit within the tolerance floor of an expiry read both ways, as
            // linux_settings does: the peer's timers fire late, so its elapsed time at an
            // expiry may lie on either side of the limit when the model's lies near it.
            a = tighten(c, *a, tol);
            const Model& mt = a->model;
            const auto fewest = linux_copies(rule, mt, setting, -tol.floor);
            const auto most = linux_copies(rule, mt, setting, tol.floor);
            if (!fewest || !most) continue;
            const Duration zero_at = c.front() - mt.span(0, start);
            for (unsigned sent = std::max(*fewest, a->index.back()); sent <= *most; ++sent)
                if (expiry_in_end(mt, zero_at, sent, end, tol)) return true;
        }
    }
    return false;
}

std::vector<unsigned> linux_settings_explaining(const ScheduleEvidence& ev, const Tolerance& tol, RetryRule rule) {
    std::vector<unsigned> fits;
    for (unsigned n = 0; n <= 15; ++n)
        if (linux_setting_explains(ev, tol, rule, n)) fits.push_back(n);
    return fits;
}

namespace {
/// Linux's RTO after a single RTT sample (tcp_rtt_estimator's first measurement).
Duration linux_first_rto(Duration sample) { return sample + std::max<Duration>(2 * sample, 200ms); }

/// Whether every tcp_orphan_retries value in `candidates` sends a different number of
/// copies at an initial RTO of `rto`.
bool orphan_copies_differ(const std::vector<unsigned>& candidates, Duration rto) {
    std::vector<unsigned> copies;
    for (unsigned n : candidates) {
        const auto sent = linux_copies(RetryRule::OrphanTime, Model{Backoff::Doubling, rto, 1, 120s}, n);
        if (!sent || std::find(copies.begin(), copies.end(), *sent) != copies.end()) return false;
        copies.push_back(*sent);
    }
    return true;
}
}  // namespace

std::optional<Duration> ack_delay_to_split(const std::vector<unsigned>& candidates, Duration rto, Duration path_rtt,
                                           Duration delayed) {
    if (candidates.size() < 2) return std::nullopt;
    // The seen RTO's excess over the formula is timer granularity (it stays as it is), a
    // longer RTT the peer measured than ours, e.g. a loaded host (it grows with the RTO:
    // 3x once the sample passes 100 ms), or an RTT the peer cached for our address (our
    // sample replaces it once longer). The delay must work under all three readings.
    const Duration excess = std::max(Duration::zero(), rto - linux_first_rto(path_rtt + delayed));
    const Duration peer_sample = rto <= 300ms ? rto - 200ms : rto / 3;  // the sample that gives `rto`
    const Duration peer_extra = std::max(Duration::zero(), peer_sample - path_rtt - delayed);
    auto splits = [&](Duration r) { return orphan_copies_differ(candidates, r); };
    constexpr Duration step = 5ms;
    // When no delay works under all three readings (an excess near 100 ms spreads them
    // too far), the RTT-beyond-ours one is dropped: on a path whose RTT we measured short
    // the peer rarely measures tens of ms more, while a cache or timer granularity is
    // common. A follow-up pins a value only by its own copies (as any run does), so a
    // delay chosen under fewer readings costs at most a follow-up that pins nothing.
    for (const bool with_high : {true, false}) {
        std::optional<Duration> first, last;
        for (Duration d = 20ms; d <= 900ms; d += step) {
            const Duration low = excess + linux_first_rto(path_rtt + d);        // the excess is granularity
            const Duration cached = linux_first_rto(std::max(peer_sample, path_rtt + d));  // the excess is a cache
            const Duration high = with_high ? linux_first_rto(path_rtt + peer_extra + d) : low;  // the excess is RTT
            const bool ok = splits(std::min({low, high, cached}) * 85 / 100) && splits(low) && splits(high) &&
                            splits(cached) && splits(std::max({low, high, cached}) * 115 / 100);
            if (ok && !first) first = d;
            if (ok) last = d;
            if (!ok && first) break;
        }
        if (first) return *first + (*last - *first) / 2 / step * step;
    }
    return std::nullopt;
}

std::optional<Duration> ack_delay_past_cache(Duration rto, Duration path_rtt, const Tolerance& tol,
                                             const std::vector<unsigned>& candidates) {
    const Duration seen = rto + tol.for_gap(rto);
    // The longest cached RTT c whose RTO c + max(2c, 200 ms) is `seen`.
    const Duration cached = seen >= 300ms ? seen / 3 : seen - 200ms;
    constexpr Duration step = 5ms;
    std::optional<Duration> past, first, last;
    for (Duration d = 20ms; d <= 900ms; d += step) {
        const Duration sample = path_rtt + d;
        const Duration want = linux_first_rto(sample);
        if (sample * 5 < cached * 6 || want - tol.for_gap(want) <= seen) continue;
        if (!past) past = d;
        if (candidates.size() < 2) break;
        // The peer's sample may exceed ours (its own delays): 15 % either way.
        const bool ok = orphan_copies_differ(candidates, want * 85 / 100) && orphan_copies_differ(candidates, want) &&
                        orphan_copies_differ(candidates, want * 115 / 100);
        if (ok && !first) first = d;
        if (ok) last = d;
        if (!ok && first) break;
    }
    if (first) return *first + (*last - *first) / 2 / step * step;
    return past;
}

SettingVote vote_setting(const std::vector<RunFit>& runs, const Tolerance& tol, RetryRule rule) {
    SettingVote v;
    std::optional<std::vector<unsigned>> allowed;
    auto offer = [&](const std::vector<unsigned>& values) {
        if (!allowed) {
            allowed = values;
            return;
        }
        std::erase_if(*allowed, [&](unsigned n) { return std::find(values.begin(), values.end(), n) == values.end(); });
    };
    for (const auto& r : runs) {
        if (r.fit->linux_like && !r.fit->retries_candidates.empty()) {
            ++v.signature_runs;
            if (r.fit->rto_above_rtt) ++v.cached_runs;
            offer(r.fit->retries_candidates);
        }
    }
    if (v.signature_runs == 0) return v;
    for (const auto& r : runs) {
        const ScheduleFit& f = *r.fit;
        if ((f.linux_like && !f.retries_candidates.empty()) || f.retransmissions < 1 || f.end != ScheduleEnd::Confirmed)
            continue;
        std::vector<unsigned> fits = linux_settings_explaining(*r.evidence, tol, rule);
        // A FIN run above Linux's RTO range for its RTT has two kinds of reading: started
        // from a longer RTT the peer cached (no copy lost), and shorter RTOs with copies
        // lost. The cached one is likelier (every run from us meets the same cache) and
        // linux_settings_explaining leaves it out until a follow-up shows it: a run backs
        // only what its readings allow together, so the values the cached reading allows
        // are added here.
        if (f.rto_above_rtt && !r.evidence->cache_rto && f.initial_rto) {
            ScheduleEvidence cached = *r.evidence;
            cached.cache_rto = f.initial_rto;
            for (unsigned n : linux_settings_explaining(cached, tol, rule))
                if (std::find(fits.begin(), fits.end(), n) == fits.end()) fits.push_back(n);
            std::sort(fits.begin(), fits.end());
        }
        // A run that lost copies is read through a model of what was lost: it backs the
        // values it shares with the signature runs and narrows them, but a run that shares
        // none is a misreading more likely than a veto (on a clean lab path such a run
        // once left nothing inferred): it neither backs nor contradicts.
        const bool shares = std::any_of(fits.begin(), fits.end(), [&](unsigned n) {
            return std::find(allowed->begin(), allowed->end(), n) != allowed->end();
        });
        if (!shares) continue;
        ++v.backing_runs;
        if (r.evidence->cache_rto || f.rto_above_rtt) ++v.cached_runs;
        offer(fits);
    }
    v.values = *allowed;
    const bool enough = v.signature_runs + v.backing_runs >= std::min<std::size_t>(2, runs.size());
    if (v.values.size() == 1 && enough) v.inferred = v.values.front();
    return v;
}

ScheduleFit fit_schedule(const ScheduleEvidence& ev, const Tolerance& tol, RetryRule rule, Duration max_rto) {
    ScheduleFit f;
    const std::vector<Duration> c = axis(ev);
    for (std::size_t i = 1; i < c.size(); ++i) f.gaps.push_back(ev.copies[i] - ev.copies[i - 1]);
    f.retransmissions = c.empty() ? 0 : static_cast<unsigned>(c.size() - 1);
    if (!c.empty()) f.first_copy_at = c.front();

    const EndBracket end = end_bracket(ev);
    f.held_until = end.held;
    f.gone_by = end.gone;
    if (ev.peer_rst) f.end = ScheduleEnd::PeerRst;
    else if (f.gone_by) f.end = ScheduleEnd::Confirmed;
    else if (!ev.stopped_early && !c.empty()) f.end = ScheduleEnd::Silence;
    f.ended = f.end != ScheduleEnd::Open;

    if (c.size() == 1 && f.gone_by) {
        // One copy and then gone: "no retransmission" only if the peer was gone before any
        // retransmission could have been due (RFC 6298's 1 s initial RTO for SYN and
        // SYN-ACK, Linux's 200 ms floor for a FIN). Later, retransmissions lost on the path
        // would look the same.
        const Duration earliest = rule == RetryRule::OrphanTime ? Duration{200ms} : Duration{1s};
        f.gone_before_first_rto = *f.gone_by <= c.front() + earliest + tol.for_gap(earliest);
    }
    auto best = best_alignment(ev, end, tol, rule, max_rto);
    if (!best) {
        if (c.size() >= 2) f.notes.push_back("no backoff model explains these gaps, even with lost copies");
        f.linux_mismatch.push_back(c.size() < 2 ? "fewer than two copies: no schedule to compare"
                                                : "no backoff model explains the gaps");
        return f;
    }
    const Model& m = best->model;
    f.fitted = true;
    f.backoff_kind = m.kind;
    f.exponential = m.kind == Backoff::Doubling || m.kind == Backoff::Linear;
    f.initial_rto = m.r0;
    f.linear_gaps = m.kind == Backoff::Linear ? m.linear : 1;
    f.copy_index = best->index;
    for (std::size_t i = 1; i < c.size(); ++i) {
        const Duration want = m.span(best->index[i - 1], best->index[i]);
        f.expected.push_back(want);
        const Duration off = off_by(f.gaps[i - 1], want);
        f.within_tolerance.push_back(off <= tol.for_gap(want));
    }
    // The backoff factor as observed: ratios of consecutive gaps that each span one model
    // gap (a gap with a lost copy inside says nothing about the factor by itself).
    std::vector<double> ratios;
    const unsigned last = best->index.back();
    for (std::size_t i = 2; i < best->index.size(); ++i)
        if (best->index[i] - best->index[i - 1] == 1 && best->index[i - 1] - best->index[i - 2] == 1)
            ratios.push_back(static_cast<double>(f.gaps[i - 1].count()) / static_cast<double>(f.gaps[i - 2].count()));
    if (ratios.empty())
        for (std::size_t j = 2; j <= last; ++j)
            ratios.push_back(static_cast<double>(m.gap(j).count()) / static_cast<double>(m.gap(j - 1).count()));
    std::sort(ratios.begin(), ratios.end());
    if (!ratios.empty())
        f.backoff = ratios.size() % 2 ? ratios[ratios.size() / 2] : (ratios[ratios.size() / 2 - 1] + ratios[ratios.size() / 2]) / 2;

    // Copies the path lost inside the schedule (and before the first one seen).
    const Duration base = m.span(0, best->index.front());
    for (unsigned k = 0, i = 0; k <= last; ++k) {
        if (i < best->index.size() && best->index[i] == k) {
            ++i;
            continue;
        }
        const Duration at = c.front() - base + m.span(0, k);
        f.missing.push_back({k, at, false});
        f.notes.push_back(fmt::format("copy #{} missing at ~{:.3f} s, probably lost on the path", k, secs(at)));
    }

    // Where the end lies in the model: the peer gives up at the expiry after its last
    // copy; the expiry must fall after the last sign of life and by the first of death.
    const Duration zero_at = c.front() - base;  // the original's time on the axis
    bool end_at_expiry = false;
    if (f.gone_by && f.held_until) {
        const std::vector<unsigned> fits = end_expiries(c, *best, end, tol);
        if (fits.size() == 1) {
            end_at_expiry = true;
            f.copies_sent = fits.front();
            f.give_up_after = m.span(0, *f.copies_sent + 1);
            for (unsigned k = last + 1; k <= *f.copies_sent; ++k) {
                const Duration at = zero_at + m.span(0, k);
                f.missing.push_back({k, at, true});
                f.notes.push_back(fmt::format(
                    "copy #{} missing at ~{:.3f} s, probably lost: the peer still held the state at {:.3f} s", k, secs(at),
                    secs(*f.held_until)));
            }
        } else if (fits.empty() && *f.gone_by + tol.for_gap(m.gap(last + 1)) / 2 < zero_at + m.span(0, last + 1)) {
            // Gone before its next copy was due: every copy was seen; it did not wait for
            // an expiry to give up (not Linux's way).
            f.copies_sent = last;
            f.notes.push_back(fmt::format("the peer gave up between {:.3f} s and {:.3f} s, before its next copy was due "
                                          "and at no expiry of the model", secs(*f.held_until), secs(*f.gone_by)));
        } else if (fits.empty()) {
            f.notes.push_back(fmt::format("the peer gave up between {:.3f} s and {:.3f} s, at no expiry of this model",
                                          secs(*f.held_until), secs(*f.gone_by)));
        } else {
            f.notes.push_back(fmt::format("the peer gave up between {:.3f} s and {:.3f} s: {} expiries fit, so {} to {} "
                                          "retransmissions (copies at the end may have been lost)",
                                          secs(*f.held_until), secs(*f.gone_by), fits.size(), fits.front(), fits.back()));
        }
    }
    f.next_gap = m.gap((f.copies_sent ? *f.copies_sent : last) + 1);

    if (rule == RetryRule::SynTime && f.end == ScheduleEnd::Confirmed && f.gone_by && f.held_until) {
        // Every gap seen so far one initial RTO (a linear phase, or a single first gap):
        // lost leading SYNs would leave the same gaps.
        bool flat = true;
        for (unsigned j = 1; j <= last; ++j) flat = flat && m.unit(j) == 1.0;
        f.time_pinned = syn_limit_pinned(c.back() - zero_at, *f.held_until - zero_at, *f.gone_by - zero_at, m, flat, tol);
    }
    check_linux(f, m, rule, ev, tol);
    if (f.copies_sent && !end_at_expiry)
        f.linux_mismatch.push_back("the peer gave up before its next copy was due, at no model expiry "
                                   "(Linux gives up exactly one RTO after its last copy)");
    f.linux_like = f.linux_mismatch.empty();
    if (f.linux_like && f.time_pinned) {
        // A client's SYN: the rule is a time limit, so the give-up time is the evidence
        // (the copies' count depends on the linear phase and on copies lost at the end).
        f.inferred_retries = f.time_pinned;
    } else if (f.linux_like && rule == RetryRule::SynTime) {
        // The copies' count cannot stand in for the time: lost leading SYNs shift it.
        f.linux_like = false;
        f.linux_mismatch.push_back("the give-up time pins no single limit (lost first SYNs would shift it)");
    } else if (f.linux_like) {
        f.retries_candidates = linux_settings(rule, m, *f.copies_sent, m.span(0, *f.copies_sent + 1), tol.floor);
        if (f.retries_candidates.size() == 1) f.inferred_retries = f.retries_candidates.front();
        if (f.retries_candidates.empty()) {
            f.linux_like = false;
            f.linux_mismatch.push_back("the give-up time matches no value of the Linux setting");
        }
    }
    // A described foreign schedule needs its shape shown, and no Linux schedule that lost
    // copies may explain the same copies: without an anchor for the original (a FIN, a
    // client's SYN), a Linux schedule whose first or middle copies were lost can look like
    // a slower or flatter stack.
    const bool origin_doubt = !f.linux_like && (ev.origin_is_first_copy || rule != RetryRule::Count) &&
                              linux_explains(c, m, rule, tol, max_rto);
    if (origin_doubt)
        f.notes.push_back("a Linux schedule that lost copies on the path would look the same: no other stack is named");
    f.describable = f.gaps.size() >= 2 && !origin_doubt;
    if (f.linux_like) {
        f.family = "Linux";
        f.family_matched = {fmt::format("initial RTO {:.3f} s", secs(m.r0)), std::string(to_string(m.kind)),
                            "gave up at the expiry after its last copy, silently"};
    } else if (f.describable) {
        match_family(f, m, rule);
    } else {
        f.family_mismatched.push_back(f.gaps.size() < 2 ? "one gap shows no backoff: no family named"
                                                        : "the original copy is not certain: no family named");
    }
    return f;
}

ScheduleFit fit_schedule(const std::vector<Instant>& times, const Tolerance& tol, bool ended, RetryRule rule,
                         Duration max_rto) {
    ScheduleEvidence ev;
    for (auto t : times) ev.copies.push_back(t - times.front());
    ev.stopped_early = !ended;
    if (ended && times.size() >= 2) {
        // A confirmed end one model gap after the last copy, as a probe there would see it.
        ScheduleEvidence probe_free = ev;
        probe_free.stopped_early = true;
        ScheduleFit pre = fit_schedule(probe_free, tol, rule, max_rto);
        if (pre.next_gap)
            ev.probes.push_back({ev.copies.back() + *pre.next_gap + tol.for_gap(*pre.next_gap) / 4, Liveness::Gone});
    }
    return fit_schedule(ev, tol, rule, max_rto);
}

std::vector<Duration> next_expected(const ScheduleEvidence& ev, const Tolerance& tol, RetryRule rule, std::size_t n,
                                    Duration max_rto) {
    std::vector<Duration> out;
    if (ev.copies.empty()) return out;
    auto best = best_alignment(ev, end_bracket(ev), tol, rule, max_rto);
    const Duration first = ev.copies.front();
    if (!best) {
        if (ev.copies.size() >= 2) return out;
        // One copy: the common initial RTOs and, for each, the copy after a lost one.
        std::vector<Duration> c = rule == RetryRule::OrphanTime
                                      ? std::vector<Duration>{200ms, 600ms, 1s, 3s, 9s, 21s}
                                      : std::vector<Duration>{1s, 3s, 9s, 21s, 45s};
        for (auto d : c)
            if (out.size() < n) out.push_back(first + d);
        return out;
    }
    const Model& m = best->model;
    const unsigned last = best->index.back();
    const Duration zero_at = ev.copies.back() - m.span(0, last);
    for (std::size_t k = last + 1; out.size() < n; ++k) out.push_back(zero_at + m.span(0, k));
    return out;
}

std::vector<Duration> probe_times(const ScheduleEvidence& ev, const Tolerance& tol, RetryRule rule, std::size_t n,
                                  Duration max_rto) {
    // Just after each moment the best reading expects a copy, allowing for a late timer.
    std::vector<Duration> out;
    if (ev.copies.empty()) return out;
    Duration prev = ev.copies.back();
    for (Duration at : next_expected(ev, tol, rule, n, max_rto)) {
        out.push_back(at + tol.late_by(at - prev));
        prev = at;
    }
    if (rule != RetryRule::Count || ev.copies.size() < 2) return out;
    // SYN-ACK copies may have several readings: 0 and 3 s are RFC 6298's 3 s initial RTO
    // (next expiry 9 s), a constant 3 s timer (6 s), or Linux's 1 s doubling with copy #1
    // lost (7 s: a copy, or its end). Rounds from the best reading alone can leave the end
    // between the others' expiries, where every reading fits it. A round after each
    // reading's next two expiries, past the lateness the end check allows for that timer
    // (expiry_in_end) and the tolerance floor, splits them: a peer still holding the state
    // and silent then is not that reading.
    // Only where Linux's reading needs a lost copy: a schedule Linux's timer explains
    // without loss is read as Linux's, and more rounds would only meet the peer's rate
    // limit on answers to out-of-window segments (500 ms in Linux).
    const EndBracket end = end_bracket(ev);
    const std::vector<Duration> c = axis(ev);
    const auto linux_reading = align(c, Model{Backoff::Doubling, 1s, 1, max_rto}, 0, tol);
    if (!linux_reading || linux_reading->lost == 0 || c.front() > tol.for_gap(1s)) return out;
    const Duration shift = ev.copies.back() - c.back();  // axis -> origin-relative
    for (const auto& a : readings(ev, end, tol, rule, max_rto)) {
        const unsigned last = a.index.back();
        const Duration zero_at = c.back() - a.model.span(0, last);
        for (std::size_t k = last + 1; k <= last + 2; ++k)
            out.push_back(zero_at + a.model.span(0, k) + shift + expiry_lateness(a.model.gap(k), tol) + tol.floor);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end(), [&](Duration x, Duration y) { return y - x <= tol.floor; }), out.end());
    return out;
}

Duration silence_after(const ScheduleEvidence& ev, const Tolerance& tol, RetryRule rule, Duration max_rto) {
    auto next = next_expected(ev, tol, rule, 2, max_rto);
    if (ev.copies.size() < 2 || next.size() < 2) return 9s + tol.for_gap(9s);
    return next[1] - ev.copies.back() + tol.for_gap(next[1] - next[0]);
}

ScheduleEvidence merge_evidence(const std::vector<ScheduleEvidence>& runs, const Tolerance& tol) {
    ScheduleEvidence m;
    if (runs.empty()) return m;
    m.origin_is_first_copy = runs.front().origin_is_first_copy;
    std::vector<Duration> all, rtts;
    m.stopped_early = true;
    for (const auto& r : runs) {
        all.insert(all.end(), r.copies.begin(), r.copies.end());
        m.probes.insert(m.probes.end(), r.probes.begin(), r.probes.end());
        if (r.rtt) rtts.push_back(*r.rtt);
        if (r.peer_rst && (!m.peer_rst || *r.peer_rst < *m.peer_rst)) m.peer_rst = r.peer_rst;
        m.stopped_early = m.stopped_early && r.stopped_early;
    }
    std::sort(all.begin(), all.end());
    for (auto t : all)
        if (m.copies.empty() || t - m.copies.back() > tol.floor) m.copies.push_back(t);
    std::sort(m.probes.begin(), m.probes.end(), [](const LivenessProbe& a, const LivenessProbe& b) { return a.at < b.at; });
    if (!rtts.empty()) {
        std::sort(rtts.begin(), rtts.end());
        m.rtt = rtts[rtts.size() / 2];
    }
    return m;
}

ScheduleVerdict judge_schedule(const ScheduleFit& fit) {
    if (fit.inferred_retries) return ScheduleVerdict::Inferred;
    const bool end_known = fit.end == ScheduleEnd::Confirmed || fit.end == ScheduleEnd::PeerRst;
    if (fit.retransmissions == 0 && end_known && fit.missing.empty() && fit.gone_before_first_rto)
        return ScheduleVerdict::NoRetransmission;
    if (fit.fitted && end_known && !fit.linux_like && fit.describable && fit.copies_sent) return ScheduleVerdict::Measured;
    return ScheduleVerdict::Inconclusive;
}

std::string_view to_string(ScheduleVerdict v) {
    switch (v) {
        case ScheduleVerdict::Inferred: return "inferred";
        case ScheduleVerdict::Measured: return "measured";
        case ScheduleVerdict::NoRetransmission: return "no-retransmission";
        case ScheduleVerdict::Inconclusive: return "inconclusive";
    }
    return "?";
}

}  // namespace tcpprobe::probe
