// Liveness probing rounds (see liveness.hpp).
#include "tcpprobe/probe/liveness.hpp"

#include <algorithm>

namespace tcpprobe::probe {

void LivenessProber::plan(std::vector<Instant> due) {
    std::sort(due.begin(), due.end());
    due_ = std::move(due);
}

void LivenessProber::plan_one(Instant at) {
    due_.insert(std::upper_bound(due_.begin(), due_.end(), at), at);
}

bool LivenessProber::due(Instant now) {
    if (try_sent_) {
        if (now < *try_sent_ + cfg_.answer_wait) return false;
        try_sent_.reset();
        if (tries_ >= cfg_.tries) {
            results_.emplace_back(*round_started_, Liveness::Silent);
            round_started_.reset();
            tries_ = 0;
        } else {
            return true;  // retry
        }
    }
    if (round_started_) return true;
    if (due_.empty() || now < due_.front()) return false;
    // Every round already due collapses into this one.
    while (!due_.empty() && due_.front() <= now) due_.erase(due_.begin());
    round_started_ = now;
    tries_ = 0;
    return true;
}

void LivenessProber::sent(Instant now) {
    try_sent_ = now;
    ++tries_;
    ++sent_;
}

void LivenessProber::answered(Instant t, Liveness l) {
    if (!try_sent_) return;
    // The answer speaks for the moment the answered try reached the peer.
    results_.emplace_back(*try_sent_ + (t - *try_sent_) / 2, l);
    rtts_.push_back(t - *try_sent_);
    try_sent_.reset();
    round_started_.reset();
    tries_ = 0;
}

std::optional<Instant> LivenessProber::next_deadline() const {
    if (try_sent_) return *try_sent_ + cfg_.answer_wait;
    if (round_started_) return round_started_;
    if (!due_.empty()) return due_.front();
    return std::nullopt;
}

std::optional<Liveness> LivenessProber::last() const {
    if (results_.empty()) return std::nullopt;
    return results_.back().second;
}

std::optional<Duration> LivenessProber::rtt() const {
    if (rtts_.empty()) return std::nullopt;
    std::vector<Duration> v = rtts_;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
}

std::vector<LivenessProbe> LivenessProber::relative(Instant origin) const {
    std::vector<LivenessProbe> v;
    for (const auto& [at, l] : results_) v.push_back({at - origin, l});
    return v;
}

}  // namespace tcpprobe::probe
