// Files named on the command line (-w FILE, --request @FILE). tcpprobe starts with rights
// its user may not have: root under sudo, or file capabilities. A path the user typed is
// opened with the user's rights, never root's: under sudo the file-system ids switch to
// the user who ran sudo for the open (setfsuid/setfsgid and the user's groups), so a file
// only root may read or write stays out of reach, and a file we create belongs to the
// user. A file we write is never reached through a symbolic link, never a device, and is
// created with mode 0600.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tcpprobe::io {

/// The user who asked for the run, when it is not the process's own identity: under sudo
/// (effective uid 0 and SUDO_UID set to another user), that user and SUDO_GID (or the
/// user's primary group). Otherwise nullopt: the process's ids are the user's already.
struct Invoker {
    uid_t uid = 0;
    gid_t gid = 0;
};
std::optional<Invoker> invoking_user();

/// The bytes of a regular file of at most `max_bytes`, read as the invoking user. Throws
/// UsageError, its message starting with `shown` (e.g. "--request '@req.txt'"): the file
/// cannot be opened, is not a regular file (a directory, /dev/zero, a FIFO) or is larger.
std::vector<std::uint8_t> read_user_file(const std::string& path, std::size_t max_bytes, std::string_view shown);

/// Opens `path` for writing as the invoking user and returns the descriptor (close-on-
/// exec, blocking): a new file gets mode 0600 (less the umask); an existing regular file
/// with no other hard link is truncated; a FIFO with a reader is written to. A symbolic
/// link as the last component, anything else (a device, a directory) and a FIFO with no
/// reader are refused. Throws UsageError, its message starting with `shown`.
int create_user_file(const std::string& path, std::string_view shown);

}  // namespace tcpprobe::io
