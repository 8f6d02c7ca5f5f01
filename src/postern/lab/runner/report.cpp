// Text of the lab's reports (see report.h).
#include "postern/lab/runner/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>

namespace postern::lab::runner {
namespace {

const char* status_name(Cell::Status s) {
  switch (s) {
    case Cell::Status::delivered: return "delivered";
    case Cell::Status::blocked: return "blocked";
    case Cell::Status::not_run: return "not-run";
  }
  return "?";
}

std::string fixed1(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// Markdown table cells: no '|' or newline inside.
std::string md_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n' || c == '\r') out += ' ';
    else out += c;
  }
  return out;
}

// gnuplot strings in double quotes.
std::string gp_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') continue;
    out += c;
  }
  return out + "\"";
}

const Cell* find(const std::vector<Cell>& cells, const std::string& p, const std::string& s, const std::string& pl) {
  for (const auto& c : cells)
    if (c.profile == p && c.system == s && c.payload == pl) return &c;
  return nullptr;
}

}  // namespace

std::string cell_text(const Cell& c) {
  switch (c.status) {
    case Cell::Status::delivered:
      return "ok " + fixed1(c.seconds) + " s";
    case Cell::Status::blocked: {
      std::vector<std::string> modules;
      for (const auto& f : c.flagged) {
        const std::string m = f.substr(0, f.find('/'));
        if (std::find(modules.begin(), modules.end(), m) == modules.end()) modules.push_back(m);
      }
      if (modules.empty()) return "BLOCKED";
      std::string out = "BLOCKED (";
      for (std::size_t i = 0; i < modules.size(); ++i) out += (i ? ", " : "") + modules[i];
      return out + ")";
    }
    case Cell::Status::not_run:
      return "not run: " + (c.note.empty() ? std::string("skipped") : c.note);
  }
  return "?";
}

std::string results_json(const RunInfo& info, const std::vector<Cell>& cells) {
  nlohmann::ordered_json j;
  j["machine"] = info.machine;
  j["date"] = info.date;
  j["command"] = info.command;
  j["profiles"] = info.profiles;
  j["systems"] = info.systems;
  j["payloads"] = info.payloads;
  auto arr = nlohmann::ordered_json::array();
  for (const auto& c : cells) {
    nlohmann::ordered_json o;
    o["profile"] = c.profile;
    o["system"] = c.system;
    o["payload"] = c.payload;
    o["status"] = status_name(c.status);
    o["delivered"] = c.delivered();
    if (c.delivered()) o["seconds"] = std::round(c.seconds * 1000.0) / 1000.0;
    else o["seconds"] = nullptr;
    o["path"] = c.path;
    o["flagged"] = c.flagged;
    o["note"] = c.note;
    arr.push_back(std::move(o));
  }
  j["cells"] = std::move(arr);
  auto late = nlohmann::ordered_json::array();
  for (const auto& l : info.after_steps) late.push_back({{"profile", l.profile}, {"system", l.system}, {"flags", l.flags}});
  j["after_steps"] = std::move(late);
  return j.dump(2) + "\n";
}

std::string results_markdown(const RunInfo& info, const std::vector<Cell>& cells) {
  std::string md = "# Censor lab results\n\n";
  md += "- machine: " + info.machine + "\n- date: " + info.date + "\n- command: `" + info.command + "`\n\n";
  md += "Each cell: `ok` and the seconds to deliver, `BLOCKED` and the censor modules that flagged the "
        "system's traffic, or why it did not run.\n";
  for (const auto& payload : info.payloads) {
    md += "\n## " + payload + "\n\n| profile |";
    for (const auto& s : info.systems) md += " " + md_escape(s) + " |";
    md += "\n|---|";
    for (std::size_t i = 0; i < info.systems.size(); ++i) md += "---|";
    md += "\n";
    for (const auto& p : info.profiles) {
      md += "| " + md_escape(p) + " |";
      for (const auto& s : info.systems) {
        const Cell* c = find(cells, p, s, payload);
        md += " " + (c ? md_escape(cell_text(*c)) : std::string("-")) + " |";
      }
      md += "\n";
    }
  }
  md += "\n## What the censor flagged\n\n";
  bool any = false;
  for (const auto& p : info.profiles) {
    for (const auto& s : info.systems) {
      std::vector<std::string> flags;
      std::set<std::string> paths;
      for (const auto& c : cells) {
        if (c.profile != p || c.system != s) continue;
        for (const auto& f : c.flagged)
          if (std::find(flags.begin(), flags.end(), f) == flags.end()) flags.push_back(f);
        if (!c.path.empty()) paths.insert(c.path);
      }
      const std::vector<std::string>* late = nullptr;
      for (const auto& l : info.after_steps)
        if (l.profile == p && l.system == s && !l.flags.empty()) late = &l.flags;
      if (flags.empty() && late == nullptr) continue;
      any = true;
      md += "- " + p + " / " + s + ": ";
      for (std::size_t i = 0; i < flags.size(); ++i) md += (i ? ", " : "") + md_escape(flags[i]);
      if (late != nullptr) {
        md += std::string(flags.empty() ? "" : "; ") + "after its last step: ";
        for (std::size_t i = 0; i < late->size(); ++i) md += (i ? ", " : "") + md_escape((*late)[i]);
      }
      if (!paths.empty()) {
        md += " (path:";
        for (const auto& x : paths) md += " " + x;
        md += ")";
      }
      md += "\n";
    }
  }
  if (!any) md += "Nothing.\n";
  return md;
}

std::string heatmap_data(const RunInfo& info, const std::vector<Cell>& cells) {
  std::string out;
  for (std::size_t y = 0; y < info.profiles.size(); ++y) {
    for (std::size_t x = 0; x < info.systems.size(); ++x) {
      unsigned ran = 0, ok = 0;
      for (const auto& c : cells) {
        if (c.profile != info.profiles[y] || c.system != info.systems[x]) continue;
        if (c.status == Cell::Status::not_run) continue;
        ++ran;
        if (c.delivered()) ++ok;
      }
      char buf[96];
      if (ran == 0) std::snprintf(buf, sizeof buf, "%zu %zu -1 \"-\"\n", x, y);
      else std::snprintf(buf, sizeof buf, "%zu %zu %.3f \"%u/%u\"\n", x, y, static_cast<double>(ok) / ran, ok, ran);
      out += buf;
    }
  }
  return out;
}

std::string heatmap_script(const RunInfo& info, const std::string& data_path, const std::string& png_path) {
  const std::size_t w = std::max<std::size_t>(info.systems.size(), 1);
  const std::size_t h = std::max<std::size_t>(info.profiles.size(), 1);
  std::string s;
  s += "set terminal pngcairo size " + std::to_string(220 + 130 * w) + "," + std::to_string(140 + 34 * h) +
       " font \"DejaVu Sans,10\"\n";
  s += "set output " + gp_quote(png_path) + "\n";
  s += "set title \"Postern censor lab: payloads delivered per profile and system\"\n";
  s += "unset key\nunset colorbox\n";
  s += "set cbrange [-1:1]\n";
  // grey for "not run" (-1), red (0) to green (1) for the share delivered
  s += "set palette defined (-1 \"#b0b0b0\", -0.01 \"#b0b0b0\", 0 \"#d73027\", 0.5 \"#fee08b\", 1 \"#1a9850\")\n";
  s += "set xrange [-0.5:" + std::to_string(w) + "-0.5]\n";
  s += "set yrange [" + std::to_string(h) + "-0.5:-0.5]\n";
  s += "set xtics rotate by 30 right (";
  for (std::size_t i = 0; i < info.systems.size(); ++i)
    s += (i ? ", " : "") + gp_quote(info.systems[i]) + " " + std::to_string(i);
  s += ")\nset ytics (";
  for (std::size_t i = 0; i < info.profiles.size(); ++i)
    s += (i ? ", " : "") + gp_quote(info.profiles[i]) + " " + std::to_string(i);
  s += ")\nset tics scale 0\n";
  s += "set style fill solid 1.0 border lc rgb \"white\"\n";
  s += "plot " + gp_quote(data_path) +
       " using 1:2:(0.5):(0.5):3 with boxxyerror fillcolor palette, '' using 1:2:4 with labels\n";
  return s;
}

namespace {

std::string trimmed(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r')) v.remove_suffix(1);
  return std::string(v);
}

std::vector<std::string> split(std::string_view v, char sep) {
  std::vector<std::string> out;
  std::size_t at = 0;
  for (;;) {
    const auto next = v.find(sep, at);
    out.push_back(trimmed(v.substr(at, next == std::string_view::npos ? std::string_view::npos : next - at)));
    if (next == std::string_view::npos) break;
    at = next + 1;
  }
  return out;
}

}  // namespace

std::vector<Expectation> parse_expectations(const std::string& markdown, std::string& problem) {
  std::vector<Expectation> out;
  std::istringstream in(markdown);
  std::string line;
  bool inside = false, found = false;
  while (std::getline(in, line)) {
    if (line.rfind("## ", 0) == 0) {
      inside = line.rfind("## Where Postern gets through", 0) == 0;
      found = found || inside;
      continue;
    }
    if (!inside || line.rfind("|", 0) != 0) continue;
    auto cols = split(std::string_view(line).substr(1), '|');
    if (!cols.empty() && cols.back().empty()) cols.pop_back();
    if (cols.size() != 3 || cols[0] == "profile" || cols[0].find("---") != std::string::npos) continue;
    for (const auto& payload : split(cols[2], ',')) {
      if (!payload.empty()) out.push_back({cols[0], cols[1], payload});
    }
  }
  if (!found) problem = "no \"## Where Postern gets through\" section";
  else if (out.empty()) problem = "the \"Where Postern gets through\" table is empty";
  return out;
}

std::vector<Expectation> read_expectations(const std::string& path, std::string& problem) {
  std::ifstream f(path);
  if (!f) {
    problem = "cannot read it";
    return {};
  }
  std::stringstream buffer;
  buffer << f.rdbuf();
  return parse_expectations(buffer.str(), problem);
}

std::vector<std::string> unmet_expectations(const std::vector<Expectation>& expected, const std::vector<Cell>& cells) {
  std::vector<std::string> out;
  for (const auto& e : expected) {
    for (const auto& c : cells) {
      if (c.profile != e.profile || c.system != e.system || c.payload != e.payload) continue;
      if (c.status != Cell::Status::delivered) {
        out.push_back(e.profile + " / " + e.system + " / " + e.payload + ": " + cell_text(c) +
                      (c.note.empty() ? "" : " (" + c.note + ")"));
      }
    }
  }
  return out;
}

}  // namespace postern::lab::runner
