// The lab's results (docs/censorship.md, "Results"): one cell per (profile, system, payload),
// written as results.json (everything), results.md (one table per payload, profile rows x
// system columns, then what the censor flagged) and results.png (a gnuplot heat map: green
// delivered, red blocked, grey not run). Pure text functions; the lab writes the files.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace postern::lab::runner {

struct Cell {
  Cell() = default;
  Cell(std::string p, std::string s, std::string pl)
      : profile(std::move(p)), system(std::move(s)), payload(std::move(pl)) {}
  std::string profile, system, payload;
  enum class Status { delivered, blocked, not_run } status = Status::not_run;
  double seconds = 0;                  // to deliver (delivered cells)
  std::string path;                    // "direct", "relay", "proxy", "" (nothing carried)
  std::vector<std::string> flagged;    // "module/action" from the censor's events, unique, in order
  std::string note;                    // not_run: why ("ss-server missing"); blocked: the failing step
  bool delivered() const { return status == Status::delivered; }
};

// What the censor decided about a system in a profile after its last step (a probe's verdict
// that came late): no cell shows it, the report lists it.
struct LateFlags {
  std::string profile, system;
  std::vector<std::string> flags;
};

struct RunInfo {
  std::string machine, date, command;
  std::vector<std::string> profiles, systems, payloads;  // in table order
  std::vector<LateFlags> after_steps;
};

// "ok 1.2 s", "BLOCKED (fet, probe)", "BLOCKED", "not run: ss-server missing".
std::string cell_text(const Cell& c);

std::string results_json(const RunInfo& info, const std::vector<Cell>& cells);
std::string results_markdown(const RunInfo& info, const std::vector<Cell>& cells);

// The heat map: rows profiles, columns systems, each square the share of payloads delivered
// (-1 when nothing ran), labelled "n/m". The data file is "x y value label" lines; the script
// reads `data_path` and writes `png_path`.
std::string heatmap_data(const RunInfo& info, const std::vector<Cell>& cells);
std::string heatmap_script(const RunInfo& info, const std::string& data_path, const std::string& png_path);

// The cells a document says Postern gets through: the rows of the Markdown table under its
// heading "## Where Postern gets through" (until the next heading), "| profile | system |
// payload, payload |". `problem` is set when the file cannot be read or has no such table.
struct Expectation {
  std::string profile, system, payload;
};
std::vector<Expectation> read_expectations(const std::string& path, std::string& problem);
std::vector<Expectation> parse_expectations(const std::string& markdown, std::string& problem);
// The expected cells of this run that were not delivered ("profile / system / payload: what
// happened"); cells the run did not include are not checked.
std::vector<std::string> unmet_expectations(const std::vector<Expectation>& expected, const std::vector<Cell>& cells);

}  // namespace postern::lab::runner
