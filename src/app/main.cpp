// tcpprobe's entry point: everything happens in app::CommandLine.
#include "tcpprobe/app/cli.hpp"

int main(int argc, char** argv) {
    tcpprobe::app::CommandLine cli;
    return cli.run(argc, argv);
}
