// Setup failures thrown at the edge; main maps each kind to its documented exit code.
#pragma once

#include <stdexcept>
#include <string>

namespace tcpprobe::io {

/// Bad command-line value (exit 64).
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// The environment cannot do what is asked: no route, interface down, nft missing (exit 69).
struct EnvironmentError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
/// A capability is missing (exit 77).
struct PrivilegeError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace tcpprobe::io
