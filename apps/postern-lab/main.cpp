// postern-lab: builds a small internet in network namespaces, puts a censor between an
// in-country user and the servers abroad, runs Postern and the tools a user would otherwise pick
// through it, and writes the table of what gets through (docs/censorship.md, "The lab").
//
//   postern-lab run [--profile NAME|all] [--quick] [--out DIR] [--system NAME ...] [--keep-going]
//   postern-lab list
//   postern-lab shell NODE [--profile NAME]
//
// Exit codes: 0 done, 1 the run failed, 2 usage, missing privileges or tools.
#include <sys/utsname.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "postern/lab/errors.h"
#include "postern/lab/profile.h"
#include "postern/lab/runner/process.h"
#include "postern/lab/runner/report.h"
#include "postern/lab/runner/scenarios.h"
#include "postern/lab/runner/systems.h"
#include "postern/lab/runner/topology.h"

namespace {

using namespace postern::lab;
using namespace postern::lab::runner;

bool has_net_admin() {
  if (::geteuid() == 0) return true;
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("CapEff:", 0) == 0) {
      const unsigned long long caps = std::stoull(line.substr(7), nullptr, 16);
      return (caps >> 12) & 1u;  // CAP_NET_ADMIN
    }
  }
  return false;
}

// What the censor knows in this lab (profile.h, LabKnowledge). ja4_deny stays empty: the
// tls-fingerprint profile runs in allow-list mode with the crowd a censor would not block on this
// system: curl (OpenSSL 3.0) with and without SNI and Chromium 156
// (/work/shared/reference/censorship-techniques.md, "TLS fingerprints on this system").
LabKnowledge knowledge_for(const std::string& profile) {
  LabKnowledge k;
  k.known_addresses = {addr::server, addr::whatsapp};
  k.known_names = {"postern.lab", "chat.whatsapp.lab"};
  k.forged_pool = {"10.66.0.1", "10.66.0.2"};
  if (profile == "tls-fingerprint") {
    k.ja4_allow = {"t13d3112h2_e8f1e7e78f70_b26ce05bbdd6", "t13i3111h2_e8f1e7e78f70_b26ce05bbdd6",
                   "t13d1517h2_8daaf6152771_cb7bf5808d99"};
  }
  return k;
}

std::string now_iso() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

std::string machine() {
  struct utsname u {};
  ::uname(&u);
  std::string cpu;
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  return std::string(u.nodename) + ", " + u.sysname + " " + u.release + ", " + cpu + ", " +
         std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)) + " cores";
}

struct Options {
  std::vector<std::string> profiles;
  std::vector<std::string> systems;
  std::string out = "lab-results";
  std::string bin_dir = POSTERN_LAB_BIN_DIR;
  std::string node;
  bool quick = false;
  bool keep_going = false;
  bool no_censor = false;
  std::string expect;            // docs/censorship.md: fail when a cell it says gets through is blocked
  bool skip_without_root = false;  // exit 77 (a skipped test) instead of 2 without CAP_NET_ADMIN
  int deadline_s = 0;              // per step; 0: 60 s, --quick 8 s
};

// Everything started for one run; the destructor tears it down (also after an interrupt).
class Lab {
 public:
  Lab(const Options& o, std::string run_dir)
      : o_(o),
        run_(std::move(run_dir)),
        topo_(Topology::make_prefix(static_cast<unsigned>(::getpid()))),
        bins_(find_binaries(o.bin_dir)),
        services_(topo_, run_, bins_, POSTERN_SHARE_DIR),
        meter_(topo_.ns(Node::censor)) {}
  ~Lab() { down(); }
  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  void down() {
    stop_censor();
    stop_all();
    topo_.down(run_);
  }

  const Binaries& bins() const { return bins_; }
  Services& services() { return services_; }
  const PathMeter& meter() const { return meter_; }
  const Topology& topology() const { return topo_; }

  // The namespaces, the baseline, the resolver and the meter.
  bool up() {
    std::string why;
    const bool have_resolver = !bins_.censor.empty();
    std::cerr << "postern-lab: building the lab (" << topo_.prefix() << "-*)\n";
    if (!topo_.up(run_, !have_resolver, why).ok()) return fail("cannot build the namespaces: " + why);
    if (!services_.start_baseline(why).ok()) return fail(why);
    if (have_resolver && !services_.start_resolver(why).ok()) return fail(why);
    if (!meter_.install(run_).ok()) return fail("cannot install the nft counters in the censor node");
    return true;
  }

  bool start_censor(const std::string& profile) {
    if (o_.no_censor) return true;
    auto settings = make_profile(profile, knowledge_for(profile), 1);
    if (!settings.ok()) return fail("unknown profile " + profile);
    const std::string file = run_ + "/censor-" + profile + ".json";
    if (!write_file(file, to_json(*settings)).ok()) return fail("cannot write " + file);
    events_ = run_ + "/events-" + profile + ".jsonl";
    Argv argv{bins_.censor, "run", "--settings", file, "--user-if", "cu0", "--listen-port", "15001", "--dns-port",
              "15053", "--resolver", std::string(addr::resolver) + ":53"};
    for (const auto& p : prober_addresses()) {
      argv.push_back("--prober-address");
      argv.push_back(p);
    }
    argv.insert(argv.end(), {"--baseline", std::string(addr::baseline) + ":443", "--events", events_});
    const std::string name = "censor-" + profile;
    auto p = spawn(name, in_namespace(topo_.ns(Node::censor), argv), {}, run_ + "/" + name + ".out",
                   run_ + "/" + name + ".err");
    if (!p.ok()) return fail("cannot start postern-censor");
    censor_pid_ = p->pid;
    auto line = wait_for_line(p->out_path, "censor ready", p->pid, std::chrono::seconds(10));
    if (!line.ok()) {
      const std::string err = read_file(p->err_path, 2000);
      if (err.find("censor ready") != std::string::npos) return true;
      return fail("postern-censor (" + profile + ") did not report \"censor ready\": " + err.substr(0, 400));
    }
    return true;
  }

  void stop_censor() {
    if (censor_pid_ > 0) stop(censor_pid_);
    censor_pid_ = -1;
  }

  const std::string& events() const { return events_; }

  bool fail(const std::string& why) {
    std::cerr << "postern-lab: " << why << "\n";
    return false;
  }

 private:
  const Options& o_;
  std::string run_;
  Topology topo_;
  Binaries bins_;
  Services services_;
  PathMeter meter_;
  pid_t censor_pid_ = -1;
  std::string events_;
};

// Common checks of run and shell: privileges, tools, binaries. 0 when all is well, else the exit code.
int preflight(const Options& o, std::vector<std::string>& missing_systems_tools) {
  if (!has_net_admin()) {
    std::cerr << "postern-lab needs root or CAP_NET_ADMIN to create network namespaces\n";
    return o.skip_without_root ? 77 : 2;
  }
  for (const auto& t : base_tools()) {
    if (!find_program(t.program)) {
      std::cerr << "postern-lab: " << t.program << " is missing (install the Debian package " << t.package << ")\n";
      return 2;
    }
  }
  const Binaries b = find_binaries(o.bin_dir);
  for (const auto& [path, name] : {std::pair{b.postern, "postern"}, {b.server, "postern-server"}}) {
    if (path.empty()) {
      std::cerr << "postern-lab: " << name << " not found under " << o.bin_dir
                << " (build it, or give --bin-dir)\n";
      return 2;
    }
  }
  if (b.censor.empty() && !o.no_censor) {
    std::cerr << "postern-lab: postern-censor not found under " << o.bin_dir << " (build the target postern-censor)\n";
    return 2;
  }
  (void)missing_systems_tools;
  return 0;
}

int cmd_list() {
  std::cout << "Profiles (the censor's techniques):\n";
  for (const auto& p : profiles()) std::cout << "  " << p.name << "  " << p.technique << "\n";
  std::cout << "Quick set: ";
  for (const auto& q : quick_profiles()) std::cout << q << " ";
  std::cout << "\n\nSystems (how alice's client reaches the server):\n";
  for (const auto& s : systems()) std::cout << "  " << s.name << (s.quick ? " (quick)" : "") << "  " << s.description << "\n";
  std::cout << "\nNodes (postern-lab shell NODE): user censor server relay recipient\n";
  return 0;
}

int cmd_run(const Options& o, const std::string& command_line) {
  std::vector<std::string> unused;
  // Which profiles and systems.
  std::vector<std::string> profile_names;
  if (o.profiles.empty() || std::find(o.profiles.begin(), o.profiles.end(), "all") != o.profiles.end()) {
    if (o.quick && o.profiles.empty()) profile_names = quick_profiles();
    else
      for (const auto& p : profiles()) profile_names.push_back(p.name);
  } else {
    for (const auto& p : o.profiles) {
      if (!make_profile(p, {}, 1).ok()) {
        std::cerr << "postern-lab: unknown profile " << p << " (postern-lab list)\n";
        return 2;
      }
      profile_names.push_back(p);
    }
  }
  std::vector<const SystemInfo*> chosen;
  if (o.systems.empty()) {
    for (const auto& s : systems())
      if (!o.quick || s.quick) chosen.push_back(&s);
  } else {
    for (const auto& n : o.systems) {
      const SystemInfo* s = find_system(n);
      if (s == nullptr) {
        std::cerr << "postern-lab: unknown system " << n << " (postern-lab list)\n";
        return 2;
      }
      chosen.push_back(s);
    }
  }
  if (const int rc = preflight(o, unused); rc != 0) return rc;

  std::error_code ec;
  const std::string out = std::filesystem::absolute(o.out, ec).string();
  const std::string run_dir = out + "/run";
  std::filesystem::remove_all(run_dir, ec);
  std::filesystem::create_directories(run_dir + "/client-logs", ec);
  if (ec) {
    std::cerr << "postern-lab: cannot create " << run_dir << "\n";
    return 2;
  }
  install_signal_handlers();

  RunInfo info{machine(), now_iso(), command_line, profile_names, {}, payloads(o.quick), {}};
  for (const auto* s : chosen) info.systems.push_back(s->name);
  std::vector<Cell> cells;
  int rc = 0;
  {
    Lab lab(o, run_dir);
    std::map<std::string, std::string> not_run;  // system -> why
    bool ok = lab.up();
    std::string why;
    Media media;
    if (ok) {
      auto m = make_media(run_dir, o.quick);
      if (m.ok()) media = *m;
      else ok = lab.fail("cannot write the picture and the video");
    }
    if (ok) {
      const std::string first = o.no_censor ? "" : "open";
      ok = first.empty() || lab.start_censor(first);
      if (ok && !lab.services().start_postern(why).ok()) ok = lab.fail(why);
      for (const auto* s : chosen) {
        if (!ok || interrupted()) break;
        std::cerr << "postern-lab: preparing " << s->name << "\n";
        const auto st = lab.services().prepare(*s, why);
        if (!st.ok()) {
          not_run[s->name] = st.error() == make_error_code(Errc::tool_missing) ? why : "setup failed: " + why;
          std::cerr << "postern-lab: " << s->name << " not run: " << not_run[s->name] << "\n";
          if (st.error() != make_error_code(Errc::tool_missing) && !o.keep_going) ok = false;
        }
      }
      lab.stop_censor();
    }
    if (ok && not_run.size() == chosen.size()) ok = lab.fail("no system can run");
    const auto deadline = o.deadline_s > 0 ? std::chrono::seconds(o.deadline_s)
                                           : (o.quick ? std::chrono::seconds(5) : std::chrono::seconds(60));
    const ScenarioOptions so{deadline, o.quick, run_dir, "", 0};
    for (const auto& profile : profile_names) {
      if (!ok || interrupted()) break;
      if (!lab.start_censor(profile)) {
        if (!o.keep_going) {
          ok = false;
          break;
        }
        for (const auto* s : chosen)
          for (const auto& pl : info.payloads) {
            Cell c{profile, s->name, pl};
            c.note = "the censor did not start";
            cells.push_back(c);
          }
        continue;
      }
      ScenarioOptions po = so;
      po.events_path = o.no_censor ? "" : lab.events();
      const auto settings = make_profile(profile, knowledge_for(profile), 1);
      std::map<std::string, std::uintmax_t> steps_from;  // system -> where its steps begin in the event log
      for (const auto* s : chosen) {
        if (interrupted()) break;
        if (not_run.count(s->name) || !lab.services().prepared(s->name)) {
          for (const auto& pl : info.payloads) {
            Cell c{profile, s->name, pl};
            c.note = not_run.count(s->name) ? not_run[s->name] : "not prepared";
            cells.push_back(c);
          }
          continue;
        }
        std::cerr << "postern-lab: " << profile << " / " << s->name << "\n";
        po.events_from = events_offset(po.events_path);
        lab.services().refresh(*s, deadline);
        steps_from[s->name] = events_offset(po.events_path);
        for (auto& c : run_scenarios(lab.services(), *s, profile, media, lab.meter(), po)) {
          if (!o.no_censor && settings.ok()) {
            for (auto& f : static_flags(*settings, *s)) {
              if (std::find(c.flagged.begin(), c.flagged.end(), f) == c.flagged.end()) c.flagged.push_back(f);
            }
          }
          std::cerr << "  " << c.payload << ": " << cell_text(c) << (c.path.empty() ? "" : " via " + c.path)
                    << (c.note.empty() || c.status != Cell::Status::blocked ? "" : " (" + c.note + ")") << "\n";
          cells.push_back(std::move(c));
        }
        lab.services().park(*s);
      }
      // Verdicts that came after a system's last step (probes answer seconds later).
      for (const auto* s : chosen) {
        if (po.events_path.empty() || steps_from.count(s->name) == 0) continue;
        std::vector<std::string> seen;
        for (const auto& c : cells)
          if (c.profile == profile && c.system == s->name) seen.insert(seen.end(), c.flagged.begin(), c.flagged.end());
        auto late = flags_after_steps(po.events_path, steps_from[s->name], *s, seen);
        if (!late.empty()) info.after_steps.push_back({profile, s->name, std::move(late)});
      }
      lab.stop_censor();
    }
    if (!ok || interrupted()) rc = 1;
    lab.down();
  }
  // The reports (also after a failure: what ran is written).
  bool wrote = write_file(out + "/results.json", results_json(info, cells)).ok() &&
               write_file(out + "/results.md", results_markdown(info, cells)).ok() &&
               write_file(run_dir + "/heatmap.dat", heatmap_data(info, cells)).ok() &&
               write_file(run_dir + "/heatmap.gp", heatmap_script(info, run_dir + "/heatmap.dat", out + "/results.png")).ok();
  if (wrote) {
    auto g = run("gnuplot", {"gnuplot", run_dir + "/heatmap.gp"}, {}, run_dir, std::chrono::seconds(30), false);
    if (!g.ok() || g->exit_code != 0) {
      std::cerr << "postern-lab: gnuplot failed: " << (g.ok() ? g->err : g.error().message()) << "\n";
      wrote = false;
    }
  }
  if (!wrote) rc = 1;
  std::cerr << "postern-lab: results in " << out << "/results.{json,md,png}\n";
  if (!o.expect.empty()) {
    std::string problem;
    const auto expected = read_expectations(o.expect, problem);
    if (!problem.empty()) {
      std::cerr << "postern-lab: " << o.expect << ": " << problem << "\n";
      rc = 1;
    }
    for (const auto& miss : unmet_expectations(expected, cells)) {
      std::cerr << "postern-lab: EXPECTED TO GET THROUGH (" << o.expect << "): " << miss << "\n";
      rc = 1;
    }
  }
  if (interrupted()) std::cerr << "postern-lab: interrupted; the lab is torn down\n";
  return rc;
}

int cmd_shell(const Options& o) {
  Node node{};
  if (!parse_node(o.node, node)) {
    std::cerr << "postern-lab: unknown node " << o.node << " (user, censor, server, relay, recipient)\n";
    return 2;
  }
  const std::string profile = o.profiles.empty() ? "open" : o.profiles.front();
  if (!make_profile(profile, {}, 1).ok()) {
    std::cerr << "postern-lab: unknown profile " << profile << "\n";
    return 2;
  }
  std::vector<std::string> unused;
  if (const int rc = preflight(o, unused); rc != 0) return rc;
  std::error_code ec;
  const std::string run_dir = std::filesystem::absolute(o.out, ec).string() + "/shell-run";
  std::filesystem::remove_all(run_dir, ec);
  std::filesystem::create_directories(run_dir + "/client-logs", ec);
  install_signal_handlers();
  Lab lab(o, run_dir);
  std::string why;
  if (!lab.up() || !lab.start_censor(profile)) return 1;
  if (!lab.services().start_postern(why).ok()) {
    lab.fail(why);
    return 1;
  }
  const char* sh = std::getenv("SHELL");
  const std::string shell = sh != nullptr && *sh != '\0' ? sh : "/bin/bash";
  std::cerr << "postern-lab: shell in " << lab.topology().ns(node) << " (profile " << profile
            << "); Postern's invite is in " << run_dir << "/invite.txt; exit the shell to tear the lab down\n";
  const int rc = run_interactive(in_namespace(lab.topology().ns(node), {shell}),
                                 {{"POSTERN_LAB_NODE", o.node}, {"POSTERN_LAB_RUN", run_dir}});
  lab.down();
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"postern-lab: Postern and other circumvention tools through a simulated national firewall"};
  app.require_subcommand(1);
  Options o;
  app.add_option("--bin-dir", o.bin_dir, "where postern, postern-server, postern-relay and postern-censor are")
      ->capture_default_str();
  auto* run_cmd = app.add_subcommand("run", "run the scenarios through the censor and write the results");
  run_cmd->add_option("--profile", o.profiles, "a censor profile, or all (default: all; --quick: the quick set)");
  run_cmd->add_flag("--quick", o.quick, "5 s deadlines, no video, the quick profiles and systems");
  run_cmd->add_option("--expect", o.expect,
                      "fail (exit 1) when a cell this file's \"Where Postern gets through\" table lists is blocked "
                      "(docs/censorship.md)");
  run_cmd->add_option("--deadline", o.deadline_s, "seconds each step may take (default 60; --quick 5)")
      ->check(CLI::Range(1, 3600));
  run_cmd->add_flag("--skip-without-root", o.skip_without_root, "exit 77 instead of 2 without CAP_NET_ADMIN (tests)");
  run_cmd->add_option("--out", o.out, "results directory")->capture_default_str();
  run_cmd->add_option("--system", o.systems, "only these systems (postern-lab list)");
  run_cmd->add_flag("--keep-going", o.keep_going, "carry on after a system or a profile fails to start");
  run_cmd->add_flag("--no-censor", o.no_censor, "no censor at all: the censor node only routes")->group("");
  app.add_subcommand("list", "the profiles and the systems");
  auto* shell_cmd = app.add_subcommand("shell", "build the lab and open a shell inside a node");
  shell_cmd->add_option("NODE", o.node, "user, censor, server, relay or recipient")->required();
  shell_cmd->add_option("--profile", o.profiles, "the censor's profile (default open)");
  shell_cmd->add_option("--out", o.out, "where the run files go")->capture_default_str();
  shell_cmd->add_flag("--no-censor", o.no_censor, "no censor")->group("");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  std::string command_line = "postern-lab";
  for (int i = 1; i < argc; ++i) command_line += std::string(" ") + argv[i];
  if (app.got_subcommand("list")) return cmd_list();
  if (app.got_subcommand("shell")) return cmd_shell(o);
  return cmd_run(o, command_line);
}
