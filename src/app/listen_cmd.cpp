// `tcpprobe listen [ADDR:]PORT`: time a remote client's SYN retransmissions (or answer
// it with a SYN-ACK or a bare SYN and trace what it does), per client 4-tuple.
#include <fmt/format.h>

#include "tcpprobe/app/cli_options.hpp"
#include "tcpprobe/app/command.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/io/errors.hpp"
#include "tcpprobe/io/route.hpp"
#include "tcpprobe/probe/listen.hpp"

namespace tcpprobe::app {

using namespace tcpprobe::wire;

namespace {

constexpr std::size_t max_clients = 1024;  // bounded memory whatever the network sends

const Words<probe::ListenAnswer> answer_words =
    words_of({probe::ListenAnswer::None, probe::ListenAnswer::SynAck, probe::ListenAnswer::Syn});

void options(CLI::App& cmd, ListenOptions& l) {
    cmd.add_option("endpoint", l.endpoint, "[ADDR:]PORT to watch (no ADDR: any local address)")->required()->type_name("[ADDR:]PORT");
    add_syn_options(cmd, l.syn);
    cmd.add_option("--rto", l.conn.rto, "our retransmission timeout when answering (default 1s)")->type_name("DURATION");
    number(cmd, "--retries", l.conn.retries, "our retransmissions when answering (default 4)");
    choice(cmd, "--answer", l.answer, answer_words, "none (default): only time the SYNs; synack: answer the first SYN; syn: answer with a bare SYN");
    cmd.add_option("--max-wait", l.max_wait, "stop after this long (default 60s)")->type_name("DURATION");
    cmd.add_option("--tolerance", l.tolerance, "gap tolerance: absolute floor and/or percent (default 50ms,10%)")->type_name("FLOOR,PCT%");
    number(cmd, "-c,--count", l.count, "stop once this many clients are done (default 1)");
}

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

struct ListenResult {
    Verdict verdict = Verdict::Pending;
    std::string endpoint;
    std::string interface;
    std::string answer_word;
    probe::ListenAnswer answer = probe::ListenAnswer::None;
    std::vector<const probe::ListenFlow*> clients;
};

std::string client_name(const probe::ListenFlow& c) {
    return fmt::format("{}:{}", to_string(c.tuple().remote.addr), c.tuple().remote.port);
}

std::string to_text(const ListenResult& r) {
    std::string text = fmt::format("\n--- listen {} (answer {}) ---\n", r.endpoint, r.answer_word);
    for (const auto* c : r.clients) {
        const auto& rep = c->report();
        text += fmt::format("client {}: SYN <{}> win {} ttl {}\n", client_name(*c), format_options(rep.syn_options), rep.syn_window,
                            rep.syn_ttl);
        if (r.answer == probe::ListenAnswer::None) text += schedule_text(rep.evidence, rep.fit, "tcp_syn_retries", "SYN");
        else text += fmt::format("  answered with {}; final state {}; ended by {}\n", r.answer_word, c->connect_result().final_state, rep.end);
    }
    if (r.clients.empty()) text += "no client connected\n";
    text += fmt::format("verdict {}\n", to_string(r.verdict));
    return text;
}

nlohmann::json to_json(const ListenResult& r) {
    auto list = nlohmann::json::array();
    for (const auto* c : r.clients) {
        const auto& rep = c->report();
        nlohmann::json j = schedule_json(rep.evidence, rep.fit, "tcp_syn_retries");
        j.update({{"client", client_name(*c)},
                  {"probes_sent", rep.probes_sent},
                  {"syn_options", options_json(rep.syn_options)},
                  {"syn_options_text", format_options(rep.syn_options)},
                  {"syn_window", rep.syn_window},
                  {"syn_ttl", rep.syn_ttl},
                  {"end", rep.end},
                  {"final_state", c->connect_result().final_state},
                  {"anomalies", c->connect_result().anomalies}});
        if (r.answer != probe::ListenAnswer::None) j["inferred"] = nullptr;  // the schedule was cut short by our answer
        list.push_back(j);
    }
    return {{"command", "listen"},
            {"target", r.endpoint},
            {"endpoint", r.endpoint},
            {"interface", r.interface},
            {"answer", r.answer_word},
            {"verdict", to_string(r.verdict)},
            {"clients", list},
            {"inferred", list.empty() ? nlohmann::json(nullptr) : list[0]["inferred"]}};
}

class ListenJob final : public TypedJob<ListenResult> {
public:
    ListenJob(const GlobalOptions& g, const ListenOptions& o)
        : quiet_(g.quiet), o_(o), ep_(parse_endpoint(o.endpoint)), syn_(plan_syn(o.syn)), answer_(o.answer) {
        max_wait_ = parse_duration(o.max_wait, "--max-wait");
        rto_ = parse_duration(o.conn.rto, "--rto");
        tolerance_ = parse_tolerance(o.tolerance, "--tolerance");
        if (o.count < 1) throw io::UsageError("--count: must be at least 1");
    }

    std::unique_ptr<Edge> open(const GlobalOptions& g) override { return open_listen_edge(g, ep_.addr, ep_.port); }

    void build(probe::Session& session, Edge& edge, Renderer& renderer) override {
        renderer.set_multi_flow(true);
        session.set_acceptor([this, &edge](Instant, const Segment& seg) { return accept(edge, seg); });
        session.set_stop_when([this] {
            std::size_t finished = 0;
            for (const auto* c : clients_) finished += c->concluded() ? 1 : 0;
            return finished >= o_.count;
        });
        session.set_end(edge.clock().now() + max_wait_);
        std::string where = ep_.addr ? to_string(*ep_.addr) : std::string("any address");
        if (!quiet_)
            fmt::print(stderr, "tcpprobe: listening on {} port {} (interface {}), answer {}, for up to {:.0f} s\n", where, ep_.port,
                       edge.route.interface, word_of(answer_words, o_.answer), to_ms_f(max_wait_) / 1000);
    }

    ListenResult result(const Edge& edge, const RunStats&) override {
        ListenResult r;
        r.endpoint = o_.endpoint;
        r.interface = edge.route.interface;
        r.answer_word = word_of(answer_words, o_.answer);
        r.answer = answer_;
        r.clients = clients_;
        // The most telling client decides (inferred, then measured, no-retransmission,
        // inconclusive); answered clients were only observed.
        std::optional<ScheduleVerdict> best;
        if (answer_ == probe::ListenAnswer::None)
            for (const auto* c : clients_) {
                const ScheduleVerdict v = judge_schedule(c->report().fit);
                if (!best || static_cast<int>(v) < static_cast<int>(*best)) best = v;
            }
        r.verdict = clients_.empty() ? Verdict::NoClient : best ? verdict_of(*best) : Verdict::Observed;
        return r;
    }

private:
    /// A new client is a bare SYN to our port (on our address, if one was given).
    std::unique_ptr<probe::Flow> accept(const Edge& edge, const Segment& seg) {
        if (seg.dst.port != ep_.port || (ep_.addr && seg.dst.addr != *ep_.addr)) return nullptr;
        if (!seg.has(flag::syn) || seg.has_any(flag::ack | flag::rst)) return nullptr;
        if (clients_.size() >= std::max<std::size_t>(o_.count, 1) || clients_.size() >= max_clients) return nullptr;
        probe::ListenConfig lc;
        // Our answers' MSS comes from the interface that reaches the client.
        std::string via = edge.route.interface;
        if (via == "any") {
            try {
                via = io::select_route(seg.src.addr, seg.dst.addr, std::nullopt).interface;
            } catch (const std::exception&) {
                via = "";
            }
        }
        lc.connect.tcb = make_tcb_config(syn_, {seg.dst, seg.src}, via, run_rng());
        lc.connect.tcb.rto.initial_rto = rto_;
        lc.connect.tcb.rto.max_retries = o_.conn.retries;
        lc.connect.timeout = max_wait_;
        lc.answer = answer_;
        lc.tolerance = tolerance_;
        auto flow = std::make_unique<probe::ListenFlow>(std::move(lc));
        clients_.push_back(flow.get());
        return flow;
    }

    bool quiet_;
    ListenOptions o_;
    Endpoint ep_;
    SynPlan syn_;
    probe::ListenAnswer answer_;
    Duration max_wait_{}, rto_{};
    probe::Tolerance tolerance_;
    std::vector<const probe::ListenFlow*> clients_;
};

}  // namespace

CommandSpec listen_command() {
    return make_command<ListenOptions>("listen", "time a remote client's SYN retransmissions to a local port nothing answers", options,
                                       [](const GlobalOptions& g, const ListenOptions& o) { return std::make_unique<ListenJob>(g, o); });
}

}  // namespace tcpprobe::app
