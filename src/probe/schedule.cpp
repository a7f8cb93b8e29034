// Schedule fitting (see schedule.hpp).
#include "tcpprobe/probe/schedule.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace tcpprobe::probe {

Duration Tolerance::for_gap(Duration expected) const {
    auto pct = Duration{static_cast<std::int64_t>(static_cast<double>(expected.count()) * percent / 100.0)};
    return std::max(floor, pct);
}

std::optional<Tolerance> parse_tolerance(const std::string& text) {
    Tolerance t{Duration::zero(), 0.0};
    bool any = false;
    std::size_t at = 0;
    while (at <= text.size()) {
        auto comma = text.find(',', at);
        std::string part = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
        if (part.empty()) return std::nullopt;
        if (part.back() == '%') {
            double v = 0;
            auto [end, ec] = std::from_chars(part.data(), part.data() + part.size() - 1, v);
            if (ec != std::errc{} || end != part.data() + part.size() - 1 || v < 0 || v > 1000) return std::nullopt;
            t.percent = v;
        } else {
            double scale = 0;
            std::size_t digits = part.size();
            if (part.ends_with("ms")) scale = 1e6, digits -= 2;
            else if (part.ends_with("us")) scale = 1e3, digits -= 2;
            else if (part.ends_with("s")) scale = 1e9, digits -= 1;
            else return std::nullopt;
            double v = 0;
            auto [end, ec] = std::from_chars(part.data(), part.data() + digits, v);
            if (ec != std::errc{} || end != part.data() + digits || v < 0 || v * scale > 1e13) return std::nullopt;
            t.floor = Duration{static_cast<std::int64_t>(v * scale)};
        }
        any = true;
        if (comma == std::string::npos) break;
        at = comma + 1;
    }
    if (!any) return std::nullopt;
    return t;
}

namespace {
Duration model_gap(Duration rto0, std::size_t i, Duration max_rto) {
    // rto0 * 2^i without overflow, capped at the maximum RTO.
    Duration g = rto0;
    for (std::size_t k = 0; k < i && g < max_rto; ++k) g *= 2;
    return std::min(g, max_rto);
}
}  // namespace

namespace {
/// (2^(n+1) - 1) x base: Linux's tcp_model_timeout() below the linear-backoff threshold.
Duration model_timeout(unsigned n, Duration base) { return base * ((std::int64_t{2} << n) - 1); }

std::optional<unsigned> infer(RetryRule rule, const std::vector<Instant>& times, const ScheduleFit& f) {
    const unsigned n = f.retransmissions;
    switch (rule) {
        case RetryRule::Count:
            return n;
        case RetryRule::SynTime: {
            // The client gives up at the first timer expiry at least (2^(N+1) - 1) s after its
            // first SYN (TCP_TIMEOUT_INIT = 1 s), however its gaps were spaced (Linux 6.7+
            // spaces the first tcp_syn_linear_timeouts + 1 of them linearly).
            const Duration last = times.back() - times.front();
            for (unsigned b = 0; b < 16; ++b)
                if (model_timeout(b, std::chrono::seconds{1}) > last) return b;
            return std::nullopt;
        }
        case RetryRule::OrphanTime: {
            if (n == 0 || !f.next_gap) return std::nullopt;
            constexpr Duration rto_min = std::chrono::milliseconds{200};
            const Duration last = times.back() - times[1];            // since the first retransmission
            const Duration next_expiry = last + *f.next_gap;            // when the peer gave up
            for (unsigned b = 0; b < 16; ++b) {
                Duration limit = model_timeout(b, rto_min);
                if (limit > last) return limit <= next_expiry ? std::optional<unsigned>(b) : std::nullopt;
            }
            return std::nullopt;
        }
    }
    return std::nullopt;
}
}  // namespace

ScheduleFit fit_schedule(const std::vector<Instant>& times, const Tolerance& tol, bool ended, RetryRule rule,
                         Duration max_rto) {
    ScheduleFit f;
    f.ended = ended;
    if (times.size() < 2) {
        f.retransmissions = 0;
        return f;
    }
    for (std::size_t i = 1; i < times.size(); ++i) f.gaps.push_back(times[i] - times[i - 1]);
    f.retransmissions = static_cast<unsigned>(f.gaps.size());
    f.initial_rto = f.gaps.front();
    std::vector<double> ratios;
    for (std::size_t i = 1; i < f.gaps.size(); ++i)
        if (f.gaps[i - 1] > Duration::zero())
            ratios.push_back(static_cast<double>(f.gaps[i].count()) / static_cast<double>(f.gaps[i - 1].count()));
    if (!ratios.empty()) {
        std::sort(ratios.begin(), ratios.end());
        std::size_t n = ratios.size();
        f.backoff = n % 2 ? ratios[n / 2] : (ratios[n / 2 - 1] + ratios[n / 2]) / 2;
    }
    // Leading gaps equal to the first (a linear phase, as Linux 6.7+ does for SYNs), then
    // doubling: model gap i is rto0 for i < linear, rto0 * 2^(i - linear + 1) after.
    f.linear_gaps = 1;
    while (f.linear_gaps < f.gaps.size()) {
        Duration g = f.gaps[f.linear_gaps];
        Duration off = g > *f.initial_rto ? g - *f.initial_rto : *f.initial_rto - g;
        if (off > tol.for_gap(*f.initial_rto)) break;
        ++f.linear_gaps;
    }
    auto gap_model = [&](std::size_t i) {
        return i < f.linear_gaps ? *f.initial_rto : model_gap(*f.initial_rto, i - f.linear_gaps + 1, max_rto);
    };
    f.exponential = true;
    for (std::size_t i = 0; i < f.gaps.size(); ++i) {
        Duration want = gap_model(i);
        f.expected.push_back(want);
        Duration off = f.gaps[i] > want ? f.gaps[i] - want : want - f.gaps[i];
        bool ok = off <= tol.for_gap(want);
        f.within_tolerance.push_back(ok);
        f.exponential = f.exponential && ok;
    }
    f.next_gap = gap_model(f.gaps.size());
    if (ended && f.exponential) {
        f.inferred_retries = infer(rule, times, f);
        Duration total = *f.next_gap;
        for (auto g : f.expected) total += g;
        f.give_up_after = total;
    }
    return f;
}

Instant silence_deadline(const std::vector<Instant>& times, const Tolerance& tol, Duration first_wait, Duration max_rto) {
    if (times.empty()) return Instant{};
    if (times.size() == 1) return times.front() + first_wait;
    ScheduleFit f = fit_schedule(times, tol, false, RetryRule::Count, max_rto);
    return times.back() + *f.next_gap + tol.for_gap(*f.next_gap);
}

}  // namespace tcpprobe::probe
