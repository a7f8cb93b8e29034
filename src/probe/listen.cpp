// The passive side (see listen.hpp).
#include "tcpprobe/probe/listen.hpp"

#include <fmt/format.h>

namespace tcpprobe::probe {

using namespace tcpprobe::wire;
using tcb::State;

ListenFlow::ListenFlow(ListenConfig config) : ConnectionFlow(config.connect), cfg_(std::move(config)) {
    flow_tag_ = tuple().remote.port;  // every client shares our port: tell them apart by theirs
}

void ListenFlow::begin(Instant now, Outbox& out) {
    (void)now;
    (void)out;
    set_phase(Phase::Connected);  // everything is driven by the client's segments
}

FormatContext ListenFlow::context_for(Direction d, const Segment& seg) const {
    FormatContext ctx = ConnectionFlow::context_for(d, seg);
    if (!ctx.irs) ctx.irs = client_isn_;
    return ctx;
}

void ListenFlow::on_connected_segment(Instant t, const Segment& seg, Outbox& out) {
    if (concluded_ && !answered_) return;
    const bool bare_syn = seg.has(flag::syn) && !seg.has_any(flag::ack | flag::rst);
    if (bare_syn && (!client_isn_ || seg.seq == *client_isn_)) {
        const bool first = !client_isn_;
        report_.syn_times.push_back(t);
        if (first) {
            client_isn_ = seg.seq;
            report_.syn_options = seg.options;
            report_.syn_window = seg.window;
            report_.syn_ttl = seg.ip.ttl;
            note(t, fmt::format("client SYN <{}>", format_options(seg.options)), out);
        } else {
            note(t, fmt::format("client SYN retransmission #{}: {:.3f} ms after the previous", report_.syn_times.size() - 1,
                                to_ms_f(report_.syn_times.back() - report_.syn_times[report_.syn_times.size() - 2])), out);
        }
        switch (cfg_.answer) {
            case ListenAnswer::None:
                return;
            case ListenAnswer::SynAck:
                if (first) {
                    answered_ = true;
                    apply(t, tcb_.open_passive(t), out);
                }
                feed(t, seg, out);  // SYN-RECEIVED answers with our SYN-ACK (again on a retransmission)
                return;
            case ListenAnswer::Syn:
                if (first) {
                    answered_ = true;
                    note(t, "answering with a bare SYN: a simultaneous open for the client", out);
                    apply(t, tcb_.open_active(t), out);
                }
                return;
        }
    }
    if (!answered_) {
        if (seg.has(flag::rst)) conclude(t, "rst", out);
        return;
    }
    const bool reset = feed(t, seg, out);
    if (tcb_.state() == State::CloseWait) apply(t, tcb_.close(t), out);  // the client closed: so do we
    if (reset) conclude(t, "rst", out);
    else if (tcb_.state() == State::Closed || tcb_.state() == State::TimeWait) conclude(t, "closed", out);
}

void ListenFlow::on_connected_timer(Instant now, Outbox& out) {
    if (answered_) {
        ConnectionFlow::on_connected_timer(now, out);
        if (tcb_.state() == State::Closed && !concluded_) conclude(now, "closed", out);
        return;
    }
    if (!concluded_ && !report_.syn_times.empty() &&
        now >= silence_deadline(report_.syn_times, cfg_.tolerance, cfg_.quiet_first))
        conclude(now, "silence", out);
}

std::optional<Instant> ListenFlow::connected_deadline() const {
    if (answered_) return tcb_.next_deadline();
    if (concluded_ || report_.syn_times.empty()) return std::nullopt;
    return silence_deadline(report_.syn_times, cfg_.tolerance, cfg_.quiet_first);
}

void ListenFlow::conclude(Instant now, std::string end, Outbox& out) {
    if (concluded_) return;
    concluded_ = true;
    report_.end = std::move(end);
    report_.fit = fit_schedule(report_.syn_times, cfg_.tolerance, report_.end == "silence" || report_.end == "rst",
                               RetryRule::SynTime);
    finish(now, Verdict::Open, out);
}

void ListenFlow::on_interrupt(Instant now, Outbox& out) {
    if (concluded_) return;
    // Leave nothing open on the client: reset a connection we answered.
    if (answered_ && !tcb::in_state(tcb_.state(), {State::Closed, State::TimeWait, State::Listen}))
        apply_with_cause(now, tcb_.abort(now), "stopped: RST to the client", out);
    concluded_ = true;
    report_.end = "interrupted";
    report_.fit = fit_schedule(report_.syn_times, cfg_.tolerance, false, RetryRule::SynTime);
}

void ListenFlow::stop(Instant now, Outbox& out) {
    if (answered_ && !tcb::in_state(tcb_.state(), {State::Closed, State::TimeWait, State::Listen}))
        apply_with_cause(now, tcb_.abort(now), "--max-wait: RST to the client", out);
    conclude(now, "max-wait", out);
}

std::string ListenFlow::progress(Instant) const {
    return fmt::format("{}:{}: {} SYN(s)", to_string(tuple().remote.addr), tuple().remote.port, report_.syn_times.size());
}

}  // namespace tcpprobe::probe
