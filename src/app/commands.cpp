// The registry of commands and the one runner (see command.hpp).
#include "tcpprobe/app/command.hpp"

#include "tcpprobe/app/cli.hpp"

namespace tcpprobe::app {

std::vector<CommandSpec> commands() {
    return {handshake_command(), teardown_command(), half_close_command(), retransmit_command(),
            listen_command(),    time_wait_command(), ping_command(),      fin_wait_2_command(),
            keepalive_command(), idle_command(),       profile_command()};
}

int run_job(const GlobalOptions& g, Job& job) {
    auto edge = job.open(g);
    auto renderer = make_renderer(g);
    probe::Session session;
    job.build(session, *edge, *renderer);
    RunStats stats = run_session(session, *edge, *renderer);
    edge->flush();
    Summary s = job.summarize(*edge, stats, renderer->json());
    if (renderer->json())
        s.json["interrupted"] = stats.interrupted;
    else if (stats.interrupted)
        s.text += "interrupted\n";
    renderer->summary(s.text, std::move(s.json), s.list);
    return stats.interrupted ? exit_status::interrupted : exit_code(s.verdict);
}

}  // namespace tcpprobe::app
