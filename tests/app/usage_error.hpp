// The one helper the app and io tests share for errors thrown at the edge.
#pragma once

#include <string>

#include "tcpprobe/io/errors.hpp"

namespace tcpprobe::test {

/// Runs `f`, which must throw io::UsageError; returns its message ("" if it did not throw).
template <class F>
std::string usage_error(F&& f) {
    try {
        f();
    } catch (const io::UsageError& e) {
        return e.what();
    }
    return {};
}

}  // namespace tcpprobe::test
