// `tcpprobe listen [ADDR:]PORT`: time a remote client's SYN retransmissions (or answer
// it with a SYN-ACK or a bare SYN and trace what it does), per client 4-tuple.
#include <fmt/format.h>

#include "tcpprobe/app/cli.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/app/runner.hpp"
#include "tcpprobe/app/verdict.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/probe/listen.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

constexpr std::size_t max_clients = 1024;  // bounded memory whatever the network sends

struct Endpoint {
    std::optional<Ipv4Addr> addr;
    std::uint16_t port = 0;
};

Endpoint parse_endpoint(const std::string& text) {
    Endpoint e;
    auto colon = text.rfind(':');
    std::string port = colon == std::string::npos ? text : text.substr(colon + 1);
    std::string host = colon == std::string::npos ? "" : text.substr(0, colon);
    if (host.starts_with("[")) throw io::UsageError(fmt::format("listen '{}': IPv6 is not supported yet", text));
    e.port = static_cast<std::uint16_t>(parse_number(port, fmt::format("listen '{}': port", text), 1, 65535));
    if (!host.empty()) {
        e.addr = io::resolve_ipv4(host);
        check_target_address(e.addr->value, text);
    }
    return e;
}

probe::ListenAnswer parse_answer(const std::string& a) {
    if (a == "none") return probe::ListenAnswer::None;
    if (a == "synack") return probe::ListenAnswer::SynAck;
    if (a == "syn") return probe::ListenAnswer::Syn;
    throw io::UsageError(fmt::format("--answer: '{}' is not none, synack or syn", a));
}

}  // namespace

int run_listen(const GlobalOptions& g, const ListenOptions& o) {
    const Endpoint ep = parse_endpoint(o.endpoint);
    const SynPlan syn = plan_syn(o.syn);
    const probe::ListenAnswer answer = parse_answer(o.answer);
    const Duration max_wait = parse_duration(o.max_wait, "--max-wait");
    const Duration rto = parse_duration(o.conn.rto, "--rto");
    auto tol = probe::parse_tolerance(o.tolerance);
    if (!tol) throw io::UsageError(fmt::format("--tolerance: '{}' is not e.g. 50ms, 10% or 50ms,10%", o.tolerance));
    if (o.count < 1) throw io::UsageError("--count: must be at least 1");

    auto edge = open_listen_edge(g, ep.addr, ep.port);
    auto renderer = make_renderer(g);
    renderer->set_multi_flow(true);

    probe::Session session;
    std::vector<const probe::ListenFlow*> clients;
    session.set_acceptor([&](Instant, const Segment& seg) -> std::unique_ptr<probe::Flow> {
        // A new client is a bare SYN to our port (on our address, if one was given).
        if (seg.dst.port != ep.port || (ep.addr && seg.dst.addr != *ep.addr)) return nullptr;
        if (!seg.has(flag::syn) || seg.has_any(flag::ack | flag::rst)) return nullptr;
        if (clients.size() >= std::max<std::size_t>(o.count, 1) || clients.size() >= max_clients) return nullptr;
        probe::ListenConfig lc;
        // Our answers' MSS comes from the interface that reaches the client.
        std::string via = edge->route.interface;
        if (via == "any") {
            try {
                via = io::select_route(seg.src.addr, seg.dst.addr, std::nullopt).interface;
            } catch (const std::exception&) {
                via = "";
            }
        }
        lc.connect.tcb = make_tcb_config(syn, {seg.dst, seg.src}, via, run_rng());
        lc.connect.tcb.rto.initial_rto = rto;
        lc.connect.tcb.rto.max_retries = o.conn.retries;
        lc.connect.timeout = max_wait;
        lc.answer = answer;
        lc.tolerance = *tol;
        auto flow = std::make_unique<probe::ListenFlow>(std::move(lc));
        clients.push_back(flow.get());
        return flow;
    });
    session.set_stop_when([&] {
        std::size_t finished = 0;
        for (const auto* c : clients) finished += c->concluded() ? 1 : 0;
        return finished >= o.count;
    });
    session.set_end(edge->clock().now() + max_wait);
    {
        std::string where = ep.addr ? to_string(*ep.addr) : std::string("any address");
        if (!g.quiet) fmt::print(stderr, "tcpprobe: listening on {} port {} (interface {}), answer {}, for up to {:.0f} s\n", where, ep.port,
                   edge->route.interface, o.answer, to_ms_f(max_wait) / 1000);
    }
    RunStats stats = run_session(session, *edge, *renderer);
    edge->flush();

    std::string text = fmt::format("\n--- listen {} (answer {}) ---\n", o.endpoint, o.answer);
    auto list = nlohmann::json::array();
    // The most telling client decides (inferred, then measured, no-retransmission,
    // inconclusive); answered clients were only observed.
    std::optional<ScheduleVerdict> best;
    for (const auto* c : clients) {
        const auto& r = c->report();
        std::string who = fmt::format("{}:{}", to_string(c->tuple().remote.addr), c->tuple().remote.port);
        text += fmt::format("client {}: SYN <{}> win {} ttl {}\n", who, format_options(r.syn_options), r.syn_window, r.syn_ttl);
        if (answer == probe::ListenAnswer::None) text += schedule_text(r.evidence, r.fit, "tcp_syn_retries", "SYN");
        else text += fmt::format("  answered with {}; final state {}; ended by {}\n", o.answer, c->connect_result().final_state, r.end);
        nlohmann::json j = schedule_json(r.evidence, r.fit, "tcp_syn_retries");
        j.update({{"client", who},
                  {"probes_sent", r.probes_sent},
                  {"syn_options", options_json(r.syn_options)},
                  {"syn_options_text", format_options(r.syn_options)},
                  {"syn_window", r.syn_window},
                  {"syn_ttl", r.syn_ttl},
                  {"end", r.end},
                  {"final_state", c->connect_result().final_state},
                  {"anomalies", c->connect_result().anomalies}});
        if (answer != probe::ListenAnswer::None) j["inferred"] = nullptr;  // the schedule was cut short by our answer
        list.push_back(j);
        if (answer == probe::ListenAnswer::None) {
            const ScheduleVerdict v = judge_schedule(r.fit);
            j["verdict"] = to_string(v);
            if (!best || static_cast<int>(v) < static_cast<int>(*best)) best = v;
        }
    }
    const Verdict verdict = clients.empty() ? Verdict::NoClient : best ? verdict_of(*best) : Verdict::Observed;
    if (clients.empty()) text += "no client connected\n";
    text += fmt::format("verdict {}\n", to_string(verdict));
    if (stats.interrupted) text += "interrupted\n";
    nlohmann::json summary = {{"command", "listen"},
                              {"target", o.endpoint},
                              {"endpoint", o.endpoint},
                              {"interface", edge->route.interface},
                              {"answer", o.answer},
                              {"verdict", to_string(verdict)},
                              {"interrupted", stats.interrupted},
                              {"clients", list},
                              {"inferred", list.empty() ? nlohmann::json(nullptr) : list[0]["inferred"]}};
    renderer->summary(text, summary);
    if (stats.interrupted) return exit_status::interrupted;
    return exit_code(verdict);
}

}  // namespace tcpprobe::app
