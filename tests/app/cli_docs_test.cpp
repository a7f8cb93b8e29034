// The man page and the shell completions are written by hand; this test keeps them
// honest. It walks the CLI11 app that `tcpprobe` itself runs and fails, naming the item,
// when a command or an option is missing from man/tcpprobe.8 or from one of the three
// completion files (STYLE.md §4). It also checks the man page's sections, its exit
// status list against the codes the program returns, and its JSON OUTPUT section against
// the members the JSON renderer actually writes and the summary members every command
// writes (read from the command sources, and from the shared schedule writer itself), and
// the outcomes of time-wait (read from the probe) against JSON OUTPUT and EXIT STATUS.
// An option checked against a set of words (CLI::IsMember) must have those words offered
// by every completion, for the commands that take them only (time-wait's --isn and --ts
// are words, elsewhere a number and a flag).
//
// The checks look where a reader (or a shell) would look, not just anywhere in the file:
// a man page option must be the tag of a `.TP` paragraph in the right section, a bash
// option must be in the word list offered for its command, a zsh option must be an
// `_arguments` spec in its command's function, a fish option a `complete -l` line that
// applies to its command.
#include <doctest/doctest.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tcpprobe/app/cli.hpp"
#include "tcpprobe/app/verdict.hpp"
#include "tcpprobe/app/output.hpp"
#include "tcpprobe/app/report.hpp"
#include "tcpprobe/probe/schedule.hpp"
#include "tcpprobe/probe/time_wait.hpp"
#include "tcpprobe/probe/verdict.hpp"
#include "tcpprobe/wire/tcp_header.hpp"

namespace {

using tcpprobe::app::CommandLine;

std::string read_source(const std::string& relative) {
    const std::string path = std::string(TCPPROBE_SOURCE_DIR) + "/" + relative;
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "cannot read " << path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

std::string joined(const std::vector<std::string>& words) {
    std::string out;
    for (const auto& w : words) out += w + " ";
    return out;
}

bool is_word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'; }

/// `token` occurs in `text` with no word character (letters, digits, '-', '_') on either side.
bool has_token(const std::string& text, const std::string& token) {
    for (auto at = text.find(token); at != std::string::npos; at = text.find(token, at + 1)) {
        const bool left_ok = at == 0 || !is_word_char(text[at - 1]);
        const std::size_t end = at + token.size();
        const bool right_ok = end == text.size() || !is_word_char(text[end]);
        if (left_ok && right_ok) return true;
    }
    return false;
}

// ---------------------------------------------------------------------------------------
// What the CLI defines.

struct OptionNames {
    std::vector<std::string> longs;   ///< "--output"
    std::vector<std::string> shorts;  ///< "-o"
    /// The words an option accepts, when it is checked against a set (CLI::IsMember):
    /// "--output" -> {"text", "json"}. Read from the type name CLI11 builds, "TEXT:{text,json}".
    std::map<std::string, std::vector<std::string>> choices;
};

struct Command {
    std::string name;
    OptionNames options;
};

std::vector<std::string> choices_of(const CLI::Option& o) {
    const std::string type = o.get_type_name();
    const auto open = type.find('{'), close = type.find('}', open == std::string::npos ? 0 : open);
    std::vector<std::string> words;
    if (open == std::string::npos || close == std::string::npos) return words;
    std::istringstream in(type.substr(open + 1, close - open - 1));
    for (std::string w; std::getline(in, w, ',');) words.push_back(w);
    return words;
}

OptionNames names_of(const CLI::App& app) {
    OptionNames n;
    for (const CLI::Option* o : app.get_options()) {
        for (const auto& l : o->get_lnames()) {
            n.longs.push_back("--" + l);
            if (auto words = choices_of(*o); !words.empty()) n.choices["--" + l] = words;
        }
        for (const auto& s : o->get_snames()) n.shorts.push_back("-" + s);
    }
    return n;
}

struct Cli {
    OptionNames global;
    std::vector<Command> commands;
};

Cli walk_cli() {
    CommandLine cli;
    CLI::App& app = cli.app();
    Cli c;
    c.global = names_of(app);
    for (CLI::App* sub : app.get_subcommands({})) c.commands.push_back({sub->get_name(), names_of(*sub)});
    return c;
}

// ---------------------------------------------------------------------------------------
// The man page, read as a reader sees it: sections, and the tags of `.TP` paragraphs.

/// Roff escapes that matter for matching: `\-` is a minus, font changes vanish.
std::string unroff(std::string s) {
    static const std::regex font(R"(\\f[BIRP])");
    s = std::regex_replace(s, font, "");
    static const std::pair<std::string, std::string> plain[] = {
        {"\\-", "-"}, {"\\&", ""}, {"\\(dq", "\""}, {"\\(aq", "'"}, {"\\~", " "}, {"\\ ", " "}};
    for (const auto& [from, to] : plain)
        for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
            s.replace(at, from.size(), to);
    return s;
}

struct ManPage {
    std::string th;                                         ///< the .TH line
    std::vector<std::string> order;                         ///< section names in order
    std::map<std::string, std::vector<std::string>> body;   ///< unroffed lines per section
};

ManPage read_man() {
    ManPage m;
    std::string section;
    for (const auto& raw : lines_of(read_source("man/tcpprobe.8"))) {
        if (raw.starts_with(".\\\"")) continue;  // comment
        std::string l = unroff(raw);
        if (l.starts_with(".TH ")) m.th = l;
        if (l.starts_with(".SH ")) {
            section = l.substr(4);
            if (section.size() >= 2 && section.front() == '"' && section.back() == '"')
                section = section.substr(1, section.size() - 2);
            m.order.push_back(section);
            continue;
        }
        if (!section.empty()) m.body[section].push_back(l);
    }
    return m;
}

/// The tag lines of a section: the line after each `.TP` (where options are defined).
std::string man_tags(const ManPage& m, const std::string& section) {
    std::string tags;
    auto it = m.body.find(section);
    if (it == m.body.end()) return tags;
    const auto& ls = it->second;
    for (std::size_t i = 0; i + 1 < ls.size(); ++i)
        if (ls[i] == ".TP") tags += ls[i + 1] + "\n";
    return tags;
}

std::string man_text(const ManPage& m, const std::string& section) {
    std::string text;
    if (auto it = m.body.find(section); it != m.body.end())
        for (const auto& l : it->second) text += l + "\n";
    return text;
}

/// The lines of a section set in bold (`.B`, `.BR`, `.RB`, `.BI`, `.IB`): where the man
/// page names a JSON member, as opposed to using the same word in prose.
std::string man_bold(const ManPage& m, const std::string& section) {
    std::string text;
    if (auto it = m.body.find(section); it != m.body.end())
        for (const auto& l : it->second)
            if (l.starts_with(".B ") || l.starts_with(".BR ") || l.starts_with(".RB ") || l.starts_with(".BI ") ||
                l.starts_with(".IB "))
                text += l + "\n";
    return text;
}

// ---------------------------------------------------------------------------------------
// The summary members the commands write, read from their sources: every key of a JSON
// object literal (`{"key", value}`) and every member assigned by name (`j["key"] = `).

std::set<std::string> json_keys_in(const std::string& source) {
    static const std::regex pair(R"re(\{\s*"([a-z][a-z0-9_]*)"\s*,)re");
    static const std::regex assign(R"re(\[\s*"([a-z][a-z0-9_]*)"\s*\]\s*=[^=])re");
    std::set<std::string> keys;
    for (const auto* re : {&pair, &assign})
        for (std::sregex_iterator m(source.begin(), source.end(), *re), e; m != e; ++m) keys.insert((*m)[1]);
    return keys;
}

/// src/app/*_cmd.cpp (one file per command, or per family of commands) and report.cpp.
std::vector<std::string> summary_sources() {
    std::vector<std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(std::string(TCPPROBE_SOURCE_DIR) + "/src/app")) {
        const std::string name = entry.path().filename().string();
        if (name.ends_with("_cmd.cpp") || name == "report.cpp") files.push_back("src/app/" + name);
    }
    std::sort(files.begin(), files.end());
    return files;
}

// ---------------------------------------------------------------------------------------
// The completion files.

std::string ident(std::string command) {
    for (auto& c : command)
        if (c == '-') c = '_';
    return command;
}

/// bash: the value of a variable assignment `NAME=...` at the start of a line, made of
/// single-quoted words (taken literally, newlines and all) and double-quoted words in
/// which `$OTHER` / `${OTHER}` is replaced by OTHER's value from the same file.
std::string bash_list(const std::string& file, const std::string& name, int depth = 0) {
    const std::string head = "\n" + name + "=";
    auto at = file.find(head);
    if (at == std::string::npos || depth > 8) return {};
    std::string value;
    for (std::size_t i = at + head.size(); i < file.size();) {
        const char q = file[i];
        if (q != '\'' && q != '"') break;  // end of the assignment word
        auto end = file.find(q, i + 1);
        if (end == std::string::npos) return {};
        std::string piece = file.substr(i + 1, end - i - 1);
        if (q == '"') {
            static const std::regex var(R"(\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?)");
            std::string expanded;
            auto last = piece.cbegin();
            for (std::sregex_iterator m(piece.begin(), piece.end(), var), e; m != e; ++m) {
                expanded.append(last, piece.cbegin() + m->position());
                expanded += bash_list(file, (*m)[1], depth + 1);
                last = piece.cbegin() + m->position() + m->length();
            }
            expanded.append(last, piece.cend());
            piece = expanded;
        }
        value += piece;
        i = end + 1;
    }
    return value;
}

/// zsh: the body of function NAME, from `NAME() {` to the next line that is just `}`.
std::string zsh_function(const std::string& file, const std::string& name) {
    const std::string head = "\n" + name + "() {";
    auto at = file.find(head);
    if (at == std::string::npos) return {};
    auto end = file.find("\n}", at + head.size());
    return file.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

/// zsh: the body of function NAME followed by the bodies of the `_tcpprobe_*` helper
/// functions it calls (shared option lists), recursively.
std::string zsh_function_with_helpers(const std::string& file, const std::string& name) {
    static const std::regex call(R"(\b(_tcpprobe_[A-Za-z0-9_]+)\b)");
    std::set<std::string> seen{name};
    std::vector<std::string> todo{name};
    std::string all;
    while (!todo.empty()) {
        std::string body = zsh_function(file, todo.back());
        todo.pop_back();
        all += body;
        for (std::sregex_iterator m(body.begin(), body.end(), call), e; m != e; ++m)
            if (seen.insert((*m)[1]).second) todo.push_back((*m)[1]);
    }
    return all;
}

/// zsh: `--name` or `-n` as an option spec (followed by `[`, `=`, `+`, `,` or `}`), not
/// as a member of an exclusion list like `(--mss)`.
bool zsh_has_spec(const std::string& body, const std::string& option) {
    for (auto at = body.find(option); at != std::string::npos; at = body.find(option, at + 1)) {
        const bool left_ok = at == 0 || !is_word_char(body[at - 1]);
        const std::size_t end = at + option.size();
        if (left_ok && end < body.size() && std::string("[=+,}").find(body[end]) != std::string::npos) return true;
    }
    return false;
}

/// fish: the `complete -c tcpprobe ...` statements of the file, each with the indented
/// lines that continue it (a quoted `-a` list of words and descriptions, or a line after
/// a trailing backslash).
std::vector<std::string> fish_statements(const std::string& file) {
    std::vector<std::string> out;
    bool in_complete = false;
    for (const auto& l : lines_of(file)) {
        if (l.starts_with("complete -c tcpprobe")) {
            out.push_back(l);
            in_complete = true;
        } else if (in_complete && !l.empty() && (l[0] == ' ' || l[0] == '\t')) {
            out.back() += "\n" + l;
        } else {
            in_complete = false;
        }
    }
    return out;
}

/// fish: the statements that define `option` (`-l name` / `-s n`) and apply to `command`
/// ("" = the global scope): either unconditional, or conditioned on that command directly
/// or through a variable set to a condition naming it
/// (`set -l close "__fish_seen_subcommand_from teardown half-close"`).
std::vector<std::string> fish_statements_for(const std::string& file, const std::string& option, const std::string& command) {
    const bool is_long = option.starts_with("--");
    const std::string spec = (is_long ? "-l " : "-s ") + option.substr(is_long ? 2 : 1);
    // Variables holding "__fish_seen_subcommand_from CMD".
    std::map<std::string, std::string> condition_vars;
    static const std::regex set_var(R"(^\s*set\s+-l\s+(\w+)\s+["']__fish_seen_subcommand_from\s+([\w\s-]+)["'])");
    for (const auto& l : lines_of(file)) {
        std::smatch m;
        if (std::regex_search(l, m, set_var)) condition_vars[m[1]] = " " + std::string(m[2]) + " ";
    }
    std::vector<std::string> found;
    for (const auto& st : fish_statements(file)) {
        const std::string l = st.substr(0, st.find('\n'));  // options and conditions are on the first line
        if (!has_token(l, spec)) continue;
        const bool conditional = has_token(l, "-n");
        bool applies = command.empty() || !conditional;
        if (l.find("__fish_seen_subcommand_from " + command) != std::string::npos &&
            l.find("not __fish_seen_subcommand_from") == std::string::npos)
            applies = true;
        for (const auto& [var, cmds] : condition_vars)
            if (cmds.find(" " + command + " ") != std::string::npos && has_token(l, "$" + var)) applies = true;
        if (applies) found.push_back(st);
    }
    return found;
}

bool fish_has(const std::string& file, const std::string& option, const std::string& command) {
    return !fish_statements_for(file, option, command).empty();
}

/// bash: the body of the `case` branch whose pattern list (`-o | --output)`) names
/// `option`, up to its `;;`.
std::string bash_branch(const std::string& file, const std::string& option) {
    const auto ls = lines_of(file);
    for (std::size_t i = 0; i < ls.size(); ++i) {
        std::string l = ls[i];
        l.erase(0, l.find_first_not_of(" \t"));
        if (l.empty() || l.back() != ')' || l.find('(') != std::string::npos) continue;
        // A pattern list may continue over lines ending in a backslash: only one-line
        // lists are searched here, which is how value-taking options are written.
        std::istringstream alts(l.substr(0, l.size() - 1));
        bool match = false;
        for (std::string a; std::getline(alts, a, '|');) {
            a.erase(0, a.find_first_not_of(" \t"));
            a.erase(a.find_last_not_of(" \t") + 1);
            match |= a == option;
        }
        if (!match) continue;
        std::string body;
        for (std::size_t j = i + 1; j < ls.size(); ++j) {
            std::string t = ls[j];
            t.erase(0, t.find_first_not_of(" \t"));
            if (t == ";;") break;
            body += ls[j] + "\n";
        }
        return body;
    }
    return {};
}

}  // namespace

TEST_CASE("cli docs: the CLI walk finds the commands and options the docs must cover") {
    // A guard against a walk that silently finds nothing (and so checks nothing).
    Cli cli = walk_cli();
    REQUIRE_FALSE(cli.commands.empty());
    CHECK(has_token(joined(cli.global.longs), "--output"));
    CHECK(has_token(joined(cli.global.longs), "--version"));
    for (const auto& c : cli.commands) {
        INFO("command " << c.name);
        CHECK(c.options.longs.size() > 1);
        if (c.name == "handshake") {
            // The negated half of "--df,!--no-df" must be walked too.
            const std::string all = joined(c.options.longs);
            CHECK(has_token(all, "--df"));
            CHECK(has_token(all, "--no-df"));
        }
    }
}

TEST_CASE("cli docs: man page: has every section, in the documented order") {
    ManPage m = read_man();
    const std::vector<std::string> required = {"NAME",   "SYNOPSIS",    "DESCRIPTION", "COMMANDS",
                                               "OPTIONS", "OUTPUT",     "JSON OUTPUT", "EXIT STATUS",
                                               "PRIVILEGES", "EXAMPLES", "SEE ALSO"};
    std::size_t last = 0;
    for (const auto& s : required) {
        auto it = std::find(m.order.begin(), m.order.end(), s);
        CHECK_MESSAGE(it != m.order.end(), "man/tcpprobe.8: section .SH " << s << " is missing");
        if (it == m.order.end()) continue;
        auto pos = static_cast<std::size_t>(it - m.order.begin());
        CHECK_MESSAGE(pos >= last, "man/tcpprobe.8: section " << s << " is out of order");
        last = pos;
    }
}

TEST_CASE("cli docs: man page: title names section 8 and the program's version") {
    ManPage m = read_man();
    CHECK_MESSAGE(m.th.starts_with(".TH TCPPROBE 8 "), "man/tcpprobe.8: .TH line is '" << m.th << "'");
    CHECK_MESSAGE(m.th.find(std::string("tcpprobe ") + TCPPROBE_VERSION) != std::string::npos,
                  "man/tcpprobe.8: .TH does not carry version " << TCPPROBE_VERSION << ": '" << m.th << "'");
}

TEST_CASE("cli docs: man page: every command and every option is documented") {
    Cli cli = walk_cli();
    ManPage m = read_man();
    const std::string options_tags = man_tags(m, "OPTIONS");
    const std::string commands_tags = man_tags(m, "COMMANDS");
    const std::string synopsis = man_text(m, "SYNOPSIS");

    for (const auto& o : cli.global.longs)
        CHECK_MESSAGE(has_token(options_tags, o), "man/tcpprobe.8: global option " << o << " has no .TP entry in OPTIONS");
    for (const auto& o : cli.global.shorts)
        CHECK_MESSAGE(has_token(options_tags, o), "man/tcpprobe.8: global option " << o << " has no .TP entry in OPTIONS");

    for (const auto& c : cli.commands) {
        CHECK_MESSAGE(commands_tags.find(".B " + c.name) != std::string::npos,
                      "man/tcpprobe.8: command " << c.name << " has no .TP entry in COMMANDS");
        CHECK_MESSAGE(has_token(synopsis, c.name), "man/tcpprobe.8: command " << c.name << " is not in SYNOPSIS");
        for (const auto& o : c.options.longs)
            CHECK_MESSAGE(has_token(commands_tags, o),
                          "man/tcpprobe.8: option " << o << " of " << c.name << " has no .TP entry in COMMANDS");
        for (const auto& o : c.options.shorts)
            CHECK_MESSAGE(has_token(commands_tags, o),
                          "man/tcpprobe.8: option " << o << " of " << c.name << " has no .TP entry in COMMANDS");
    }
}

TEST_CASE("cli docs: man page: EXIT STATUS lists every code the program returns") {
    using namespace tcpprobe;
    ManPage m = read_man();
    const std::string tags = man_tags(m, "EXIT STATUS");
    std::set<int> codes = {app::exit_status::usage, app::exit_status::environment, app::exit_status::internal,
                           app::exit_status::privilege, app::exit_status::interrupted};
    // Every verdict word of every command (Interrupted is the last enumerator).
    for (int v = 0; v <= static_cast<int>(app::Verdict::Interrupted); ++v) codes.insert(app::exit_code(static_cast<app::Verdict>(v)));
    for (int code : codes)
        CHECK_MESSAGE(has_token(tags, ".B " + std::to_string(code)),
                      "man/tcpprobe.8: exit status " << code << " has no .TP entry in EXIT STATUS");
}

TEST_CASE("cli docs: man page: PRIVILEGES and SEE ALSO carry what the design requires") {
    ManPage m = read_man();
    const std::string priv = man_text(m, "PRIVILEGES");
    for (std::string item : {"CAP_NET_RAW", "CAP_NET_ADMIN", "setcap cap_net_raw,cap_net_admin,cap_setpcap+ep", "no_new_privs",
                             "tcpprobe_", "flags owner", "SIGKILL", "SO_MARK"})
        CHECK_MESSAGE(priv.find(item) != std::string::npos, "man/tcpprobe.8: PRIVILEGES does not mention " << item);
    const std::string see = man_text(m, "SEE ALSO");
    for (std::string item : {"tcpdump (8)", "nft (8)", "ss (8)", "hping3 (8)", "nping (1)", "RFC 9293", "RFC 5961", "RFC 7323"})
        CHECK_MESSAGE(see.find(item) != std::string::npos, "man/tcpprobe.8: SEE ALSO does not name " << item);
}

TEST_CASE("cli docs: man page: JSON OUTPUT names every member the JSON renderer writes") {
    using namespace tcpprobe;
    // Render one event of each kind, and a summary, through the real renderer.
    std::FILE* f = std::tmpfile();
    REQUIRE(f != nullptr);
    {
        auto r = app::make_json_renderer(f);
        wire::Segment seg;
        seg.flags = wire::flag::syn;
        seg.options = {wire::opt::Mss{1460}};
        const Instant t0 = instant_from_ns(1'000'000);
        std::vector<probe::Event> evs = {
            {t0, 40000, probe::SegmentEvent{wire::Direction::Out, seg, "> S 0:0(0) win 0 <mss 1460>", true}},
            {t0, 40000, probe::StateEvent{"local", "CLOSED", "SYN-SENT", "open"}},
            {t0, 40000, probe::IcmpEvent{wire::IcmpError{}, "port-unreachable"}},
            {t0, 40000, probe::NoteEvent{probe::Severity::Anomaly, "text"}},
        };
        r->events(evs);
        r->summary("", nlohmann::json::object(), {});
    }
    std::rewind(f);
    std::string out;
    for (int ch; (ch = std::fgetc(f)) != EOF;) out.push_back(static_cast<char>(ch));
    std::fclose(f);

    ManPage m = read_man();
    const std::string section = man_text(m, "JSON OUTPUT");
    std::set<std::string> types;
    for (const auto& line : lines_of(out)) {
        auto j = nlohmann::json::parse(line);
        const std::string type = j.at("type").get<std::string>();
        types.insert(type);
        CHECK_MESSAGE(section.find("\"type\":\"" + type + "\"") != std::string::npos,
                      "man/tcpprobe.8: JSON OUTPUT does not describe objects of type " << type);
        for (const auto& [key, value] : j.items())
            CHECK_MESSAGE(has_token(section, key),
                          "man/tcpprobe.8: JSON OUTPUT does not name member " << key << " of " << type << " objects");
    }
    CHECK(types == std::set<std::string>{"segment", "state", "icmp", "note", "summary"});
}

TEST_CASE("cli docs: bash completion: every command and option is offered") {
    Cli cli = walk_cli();
    const std::string file = read_source("completions/tcpprobe.bash");
    CHECK_MESSAGE(file.find("complete -F _tcpprobe tcpprobe") != std::string::npos,
                  "completions/tcpprobe.bash: does not register _tcpprobe for tcpprobe");
    const std::string global = bash_list(file, "_tcpprobe_global_opts");
    const std::string commands = bash_list(file, "_tcpprobe_commands");
    for (const auto& o : cli.global.longs)
        CHECK_MESSAGE(has_token(global, o), "completions/tcpprobe.bash: global option " << o << " is missing");
    for (const auto& o : cli.global.shorts)
        CHECK_MESSAGE(has_token(global, o), "completions/tcpprobe.bash: global option " << o << " is missing");
    for (const auto& c : cli.commands) {
        CHECK_MESSAGE(has_token(commands, c.name), "completions/tcpprobe.bash: command " << c.name << " is missing");
        CHECK_MESSAGE(has_token(file, c.name + ")"),
                      "completions/tcpprobe.bash: command " << c.name << " has no case branch");
        const std::string list = bash_list(file, "_tcpprobe_" + ident(c.name) + "_opts");
        for (const auto& o : c.options.longs)
            CHECK_MESSAGE(has_token(list, o), "completions/tcpprobe.bash: option " << o << " of " << c.name << " is missing");
        for (const auto& o : c.options.shorts)
            CHECK_MESSAGE(has_token(list, o), "completions/tcpprobe.bash: option " << o << " of " << c.name << " is missing");
    }
    CHECK_MESSAGE(std::regex_search(file, std::regex(R"(-o \| --output\)\s*\n\s*mapfile[^\n]*compgen -W 'text json')")),
                  "completions/tcpprobe.bash: -o/--output does not offer text and json");
    CHECK_MESSAGE(std::regex_search(file, std::regex(R"(-w \| --write\)(\s*\n[^\n]*){0,2}compgen -f)")),
                  "completions/tcpprobe.bash: -w/--write does not complete file names");
}

TEST_CASE("cli docs: zsh completion: every command and option is offered") {
    Cli cli = walk_cli();
    const std::string file = read_source("completions/_tcpprobe");
    CHECK(file.starts_with("#compdef tcpprobe"));
    const std::string global = zsh_function(file, "_tcpprobe_global_args") + zsh_function(file, "_tcpprobe");
    const std::string top = zsh_function(file, "_tcpprobe");
    for (const auto& o : cli.global.longs)
        CHECK_MESSAGE(zsh_has_spec(global, o), "completions/_tcpprobe: global option " << o << " is missing");
    for (const auto& o : cli.global.shorts)
        CHECK_MESSAGE(zsh_has_spec(global, o), "completions/_tcpprobe: global option " << o << " is missing");
    for (const auto& c : cli.commands) {
        CHECK_MESSAGE(top.find("'" + c.name + ":") != std::string::npos,
                      "completions/_tcpprobe: command " << c.name << " is not described in _tcpprobe");
        CHECK_MESSAGE(has_token(top, c.name + ")"), "completions/_tcpprobe: command " << c.name << " has no case branch");
        const std::string body = zsh_function_with_helpers(file, "_tcpprobe_" + ident(c.name));
        CHECK_MESSAGE(!zsh_function(file, "_tcpprobe_" + ident(c.name)).empty(),
                      "completions/_tcpprobe: no function _tcpprobe_" << ident(c.name));
        for (const auto& o : c.options.longs)
            CHECK_MESSAGE(zsh_has_spec(body, o), "completions/_tcpprobe: option " << o << " of " << c.name << " is missing");
        for (const auto& o : c.options.shorts)
            CHECK_MESSAGE(zsh_has_spec(body, o), "completions/_tcpprobe: option " << o << " of " << c.name << " is missing");
    }
    CHECK_MESSAGE(std::regex_search(global, std::regex(R"(--output=\}'\[[^\]]*\]:[^:]*:\(text json\))")),
                  "completions/_tcpprobe: -o/--output does not offer text and json");
    CHECK_MESSAGE(std::regex_search(global, std::regex(R"(--write=\}'\[[^\]]*\]:[^:]*:_files)")),
                  "completions/_tcpprobe: -w/--write does not complete file names");
}

TEST_CASE("cli docs: fish completion: every command and option is offered") {
    Cli cli = walk_cli();
    const std::string file = read_source("completions/tcpprobe.fish");
    for (const auto& o : cli.global.longs)
        CHECK_MESSAGE(fish_has(file, o, ""), "completions/tcpprobe.fish: global option " << o << " is missing");
    for (const auto& o : cli.global.shorts)
        CHECK_MESSAGE(fish_has(file, o, ""), "completions/tcpprobe.fish: global option " << o << " is missing");
    for (const auto& c : cli.commands) {
        CHECK_MESSAGE(std::regex_search(file, std::regex("complete -c tcpprobe [^\\n]*-a '?" + c.name + "'?( |$)")),
                      "completions/tcpprobe.fish: command " << c.name << " is missing");
        for (const auto& o : c.options.longs)
            CHECK_MESSAGE(fish_has(file, o, c.name), "completions/tcpprobe.fish: option " << o << " of " << c.name << " is missing");
        for (const auto& o : c.options.shorts)
            CHECK_MESSAGE(fish_has(file, o, c.name), "completions/tcpprobe.fish: option " << o << " of " << c.name << " is missing");
    }
    CHECK_MESSAGE(std::regex_search(file, std::regex(R"(-s o -l output -x -a 'text json')")),
                  "completions/tcpprobe.fish: -o/--output does not offer text and json");
    CHECK_MESSAGE(std::regex_search(file, std::regex(R"(-s w -l write -r -F)")),
                  "completions/tcpprobe.fish: -w/--write does not complete file names");
}

TEST_CASE("cli docs: man page: JSON OUTPUT names every summary member the commands write") {
    ManPage m = read_man();
    const std::string named = man_bold(m, "JSON OUTPUT");
    const std::vector<std::string> files = summary_sources();
    // A guard against a scan that silently finds nothing (and so checks nothing).
    for (std::string expected : {"src/app/report.cpp", "src/app/handshake_cmd.cpp", "src/app/close_cmd.cpp",
                                 "src/app/retransmit_cmd.cpp", "src/app/listen_cmd.cpp", "src/app/time_wait_cmd.cpp",
                                 "src/app/ping_cmd.cpp"})
        REQUIRE_MESSAGE(std::find(files.begin(), files.end(), expected) != files.end(), "no " << expected);
    for (const auto& file : files) {
        const std::set<std::string> keys = json_keys_in(read_source(file));
        if (file.ends_with("_cmd.cpp"))
            CHECK_MESSAGE(keys.contains("verdict"), file << ": the scan found no \"verdict\" member; is the pattern stale?");
        for (const auto& key : keys)
            CHECK_MESSAGE(has_token(named, key),
                          "man/tcpprobe.8: JSON OUTPUT does not name member " << key << " (written in " << file << ")");
    }
    // The members retransmit and listen summaries must carry (DESIGN §2, the man page).
    const std::set<std::string> retransmit = json_keys_in(read_source("src/app/retransmit_cmd.cpp"));
    for (std::string key : {"segment", "peer_closes_first", "tolerance", "floor_us", "percent", "runs", "spread", "end",
                            "trailing_rst", "cleanup_sent", "no_retransmission_causes", "connect", "inferred"})
        CHECK_MESSAGE(retransmit.contains(key), "src/app/retransmit_cmd.cpp: the scan did not find member " << key);
    const std::set<std::string> listen = json_keys_in(read_source("src/app/listen_cmd.cpp"));
    for (std::string key : {"endpoint", "interface", "answer", "clients", "client", "syn_options", "syn_options_text",
                            "syn_window", "syn_ttl", "end", "final_state", "anomalies", "inferred"})
        CHECK_MESSAGE(listen.contains(key), "src/app/listen_cmd.cpp: the scan did not find member " << key);
    // ... and those of handshake's probes, the close commands' TIME-WAIT, time-wait and ping.
    CHECK_MESSAGE(json_keys_in(read_source("src/app/handshake_cmd.cpp")).contains("target"),
                  "src/app/handshake_cmd.cpp: the scan did not find member target");
    const std::set<std::string> close = json_keys_in(read_source("src/app/close_cmd.cpp"));
    for (std::string key : {"time_wait", "side", "observed", "duration_us"})
        CHECK_MESSAGE(close.contains(key), "src/app/close_cmd.cpp: the scan did not find member " << key);
    const std::set<std::string> time_wait = json_keys_in(read_source("src/app/time_wait_cmd.cpp"));
    for (std::string key : {"test", "tests", "outcome", "isn", "ts", "answer", "peer_closed_first", "duration_us",
                            "resolution_us", "probes", "unanswered", "end_confirmed", "new_isn", "isn_distance",
                            "time_wait_alive_after", "connect", "time_wait", "side", "observed"})
        CHECK_MESSAGE(time_wait.contains(key), "src/app/time_wait_cmd.cpp: the scan did not find member " << key);
    const std::set<std::string> ping = json_keys_in(read_source("src/app/ping_cmd.cpp"));
    for (std::string key : {"target", "source", "interface", "lanes", "kernel_rsts", "late", "undecodable", "capture_drops",
                            "elapsed_us", "destinations", "address", "port", "sent", "answered", "syn_ack", "rst", "icmp",
                            "silence", "loss_pct", "rtt", "min_us", "avg_us", "max_us", "mdev_us", "p50_us", "p90_us",
                            "p99_us"})
        CHECK_MESSAGE(ping.contains(key), "src/app/ping_cmd.cpp: the scan did not find member " << key);
}

TEST_CASE("cli docs: man page: every outcome of time-wait is explained, with its exit status") {
    using namespace tcpprobe;
    // The outcomes a TIME-WAIT test concludes with: every TwOutcome but the two a user
    // never sees (pending; connect-failed, reported as the connect verdict instead).
    // ReAcked is the last enumerator.
    std::set<std::string> outcomes;
    for (int i = 0; i <= static_cast<int>(probe::TwOutcome::ReAcked); ++i) {
        const auto o = static_cast<probe::TwOutcome>(i);
        if (o != probe::TwOutcome::Pending && o != probe::TwOutcome::ConnectFailed) outcomes.insert(std::string(probe::to_string(o)));
    }
    ManPage m = read_man();
    const std::string json = man_text(m, "JSON OUTPUT");
    const std::string exits = man_text(m, "EXIT STATUS");
    for (const auto& o : outcomes) {
        CHECK_MESSAGE(json.find("\"" + o + "\"") != std::string::npos,
                      "man/tcpprobe.8: JSON OUTPUT does not list the time-wait outcome \"" << o << "\"");
        // Interruption has an exit status of its own (130), listed under EXIT STATUS anyway.
        if (o != "interrupted")
            CHECK_MESSAGE(has_token(exits, o), "man/tcpprobe.8: EXIT STATUS does not say what outcome " << o << " returns");
    }
}

TEST_CASE("cli docs: man page: EXIT STATUS speaks of every command") {
    Cli cli = walk_cli();
    ManPage m = read_man();
    const std::string exits = man_text(m, "EXIT STATUS");
    for (const auto& c : cli.commands)
        CHECK_MESSAGE(has_token(exits, c.name), "man/tcpprobe.8: EXIT STATUS does not mention " << c.name);
}

TEST_CASE("cli docs: completions offer every word of an option that takes a fixed set") {
    Cli cli = walk_cli();
    const std::string bash = read_source("completions/tcpprobe.bash");
    const std::string zsh = read_source("completions/_tcpprobe");
    const std::string fish = read_source("completions/tcpprobe.fish");
    auto has_all = [](const std::string& text, const std::vector<std::string>& words) {
        return std::all_of(words.begin(), words.end(), [&](const std::string& w) { return has_token(text, w); });
    };
    // Whether `option` means something else (other words, a number, a flag) in another command.
    auto shared = [&](const std::string& option, const std::string& command, const std::vector<std::string>& words) {
        for (const auto& c : cli.commands) {
            if (c.name == command) continue;
            const auto& l = c.options.longs;
            if (std::find(l.begin(), l.end(), option) == l.end()) continue;
            auto it = c.options.choices.find(option);
            if (it == c.options.choices.end() || it->second != words) return true;
        }
        return false;
    };
    // The scan itself: the sets this CLI is known to have.
    REQUIRE(cli.global.choices.contains("--output"));
    bool found_time_wait_isn = false;
    for (const auto& c : cli.commands)
        if (c.name == "time-wait") found_time_wait_isn = c.options.choices.contains("--isn");
    REQUIRE(found_time_wait_isn);

    auto check = [&](const std::string& option, const std::vector<std::string>& words, const std::string& command,
                     const std::string& zsh_body, const std::string& zsh_own) {
        const std::string where = command.empty() ? std::string("global option ") + option
                                                  : "option " + option + " of " + command;
        const bool is_shared = !command.empty() && shared(option, command, words);
        // bash: the case branch of the option offers the words (and, when the name is
        // shared, only for this command).
        const std::string branch = bash_branch(bash, option);
        CHECK_MESSAGE((branch.find("compgen -W") != std::string::npos && has_all(branch, words)),
                      "completions/tcpprobe.bash: " << where << " does not offer " << joined(words));
        if (is_shared)
            CHECK_MESSAGE((branch.find("$command == " + command) != std::string::npos),
                          "completions/tcpprobe.bash: " << where << " offers its words without checking the command");
        // zsh: a spec of the option lists the words; a shared spec from a helper is
        // removed from the command's list (`${reply:#--isn=*}`).
        bool zsh_ok = false;
        for (const auto& l : lines_of(zsh_body)) zsh_ok |= zsh_has_spec(l, option) && has_all(l, words);
        CHECK_MESSAGE(zsh_ok, "completions/_tcpprobe: " << where << " does not offer " << joined(words));
        // Only a spec that comes from a shared helper has to be removed; a command's own
        // function (listen's --answer beside keepalive's) is already apart.
        const auto body_lines = lines_of(zsh_body);
        const auto own_lines = lines_of(zsh_own);
        const auto in_helpers =
            std::count_if(body_lines.begin(), body_lines.end(), [&](const std::string& l) { return zsh_has_spec(l, option); }) -
            std::count_if(own_lines.begin(), own_lines.end(), [&](const std::string& l) { return zsh_has_spec(l, option); });
        if (is_shared && in_helpers > 0)
            CHECK_MESSAGE(zsh_own.find(":#" + option) != std::string::npos,
                          "completions/_tcpprobe: " << where << ": the shared spec is not removed from the command's list");
        // fish: every statement that applies offers the words.
        const auto statements = fish_statements_for(fish, option, command);
        CHECK_MESSAGE(!statements.empty(), "completions/tcpprobe.fish: " << where << " is missing");
        for (const auto& st : statements)
            CHECK_MESSAGE((st.find(" -a ") != std::string::npos && has_all(st, words)),
                          "completions/tcpprobe.fish: " << where << " has a completion without " << joined(words) << ": "
                                                        << st.substr(0, st.find('\n')));
    };
    const std::string zsh_global = zsh_function(zsh, "_tcpprobe_global_args") + zsh_function(zsh, "_tcpprobe");
    for (const auto& [option, words] : cli.global.choices) check(option, words, "", zsh_global, zsh_global);
    for (const auto& c : cli.commands)
        for (const auto& [option, words] : c.options.choices)
            check(option, words, c.name, zsh_function_with_helpers(zsh, "_tcpprobe_" + ident(c.name)),
                  zsh_function(zsh, "_tcpprobe_" + ident(c.name)));
}

TEST_CASE("cli docs: man page: JSON OUTPUT names every member of a retransmission schedule") {
    using namespace tcpprobe;
    // A Linux-like SYN-ACK schedule (1 s, 2 s), ended: every member, the inference included, is filled.
    const Instant t0 = instant_from_ns(1'000'000'000);
    const std::vector<Instant> times = {t0, t0 + std::chrono::milliseconds{1012}, t0 + std::chrono::milliseconds{3028}};
    const probe::ScheduleFit fit = probe::fit_schedule(times, probe::Tolerance{}, true);
    REQUIRE(fit.inferred_retries.has_value());
    probe::ScheduleEvidence ev;
    for (auto t : times) ev.copies.push_back(t - t0);
    ev.probes = {{std::chrono::milliseconds{7300}, probe::Liveness::Gone}};
    const nlohmann::json j = app::schedule_json(ev, fit, "tcp_synack_retries");
    REQUIRE(j.is_object());
    REQUIRE(j.at("inferred").is_object());

    ManPage m = read_man();
    const std::string named = man_bold(m, "JSON OUTPUT");
    for (const auto& [key, value] : j.items())
        CHECK_MESSAGE(has_token(named, key), "man/tcpprobe.8: JSON OUTPUT does not name schedule member " << key);
    for (const auto& [key, value] : j.at("inferred").items())
        CHECK_MESSAGE(has_token(named, key), "man/tcpprobe.8: JSON OUTPUT does not name member inferred." << key);
    // The sysctls the inference names.
    for (std::string sysctl : {"tcp_synack_retries", "tcp_orphan_retries"})
        CHECK_MESSAGE(man_text(m, "JSON OUTPUT").find(sysctl) != std::string::npos,
                      "man/tcpprobe.8: JSON OUTPUT does not name " << sysctl);
    for (std::string sysctl : {"tcp_synack_retries", "tcp_orphan_retries", "tcp_syn_retries", "tcp_syn_linear_timeouts"})
        CHECK_MESSAGE(man_text(m, "COMMANDS").find(sysctl) != std::string::npos,
                      "man/tcpprobe.8: COMMANDS does not explain " << sysctl);
}

TEST_CASE("cli docs: completions offer the values of --segment and --answer") {
    const std::string bash = read_source("completions/tcpprobe.bash");
    CHECK_MESSAGE(std::regex_search(bash, std::regex(R"(--segment\)\s*\n\s*mapfile[^\n]*compgen -W 'synack fin')")),
                  "completions/tcpprobe.bash: --segment does not offer synack and fin");
    CHECK_MESSAGE(std::regex_search(bash, std::regex(R"(--answer\)\s*\n\s*mapfile[^\n]*compgen -W 'none synack syn')")),
                  "completions/tcpprobe.bash: --answer does not offer none, synack and syn");
    const std::string zsh = read_source("completions/_tcpprobe");
    CHECK_MESSAGE(std::regex_search(zsh_function(zsh, "_tcpprobe_retransmit"),
                                    std::regex(R"(--segment=\[[^\]]*\]:[^:]*:\(\(synack\\:[^\n]*fin\\:)")),
                  "completions/_tcpprobe: --segment does not offer synack and fin");
    CHECK_MESSAGE(std::regex_search(zsh_function(zsh, "_tcpprobe_listen"),
                                    std::regex(R"(--answer=\[[^\]]*\]:[^:]*:\(\(none\\:[^\n]*synack\\:[^\n]*syn\\:)")),
                  "completions/_tcpprobe: --answer does not offer none, synack and syn");
    const std::string fish = read_source("completions/tcpprobe.fish");
    CHECK_MESSAGE(std::regex_search(fish, std::regex(R"(-l segment -x[^\n]*-a '\s*synack\\t[^']*fin\\t)")),
                  "completions/tcpprobe.fish: --segment does not offer synack and fin");
    CHECK_MESSAGE(std::regex_search(fish, std::regex(R"(-l answer -x[^\n]*-a '\s*none\\t[^']*synack\\t[^']*syn\\t)")),
                  "completions/tcpprobe.fish: --answer does not offer none, synack and syn");
}
