// Output renderers: text (tcpdump/packetdrill-like lines, then a summary) and JSON Lines
// (one object per event, the summary object always last). Results go to stdout only.
#pragma once

#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tcpprobe/probe/event.hpp"

namespace tcpprobe::app {

inline constexpr int json_schema_version = 1;

/// A summary member too long to build whole: `size` items, each made when written.
struct JsonList {
    std::string key;  ///< empty: none
    std::size_t size = 0;
    std::function<nlohmann::json(std::size_t)> item;
};

class Renderer {
public:
    virtual ~Renderer() = default;
    /// Events in order; times are shown relative to the first captured packet.
    void events(const std::vector<probe::Event>& evs);
    /// The summary; `text` is the human form, `json` the object (type/schema added here),
    /// `list` a member of the object written item by item (JSON only).
    virtual void summary(const std::string& text, nlohmann::json json, const JsonList& list = {}) = 0;
    /// The run's time origin (first captured packet), once known.
    std::optional<Instant> origin() const { return origin_; }
    /// Prints events held back because no packet had been captured yet.
    void flush_pending();
    /// A packet was captured at t: the first one sets the time origin (scenarios that
    /// report only notes, like ping, still get live lines).
    void captured(Instant t);

protected:
    virtual void render(const probe::Event& e, std::int64_t t_us) = 0;
    bool multi_flow_ = false;

public:
    void set_multi_flow(bool m) { multi_flow_ = m; }
    /// Off: events set the time origin but are not printed (a profile's text shows its
    /// table only; its JSON keeps the trace the table's evidence points into).
    void set_show_events(bool s) { show_events_ = s; }
    bool json() const { return json_; }

protected:
    bool show_events_ = true;
    bool json_ = false;

public:

private:
    std::optional<Instant> origin_;
    std::vector<probe::Event> pending_;
};

struct TextStyle {
    bool color = false;
};

std::unique_ptr<Renderer> make_text_renderer(std::FILE* out, TextStyle style);
std::unique_ptr<Renderer> make_json_renderer(std::FILE* out);

/// JSON of an option list: [{"kind":"mss","value":1460}, {"kind":"nop"}, ...].
nlohmann::json options_json(const wire::OptionList& options);

}  // namespace tcpprobe::app
