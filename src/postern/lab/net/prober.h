// The censor's active prober (Alice et al., IMC 2020; docs/censorship.md). For each ProbeRequest
// of the Censor, once its not_before has come: the replay probes of the first flight that
// triggered it and the random probes (probes.h), each sent from one of the prober's own
// addresses (round robin, as the GFW's probes come from many addresses) to the suspected server
// and, with the same bytes, to the lab's stock nginx; each reaction watched for the probe window.
// The first probe whose reactions differ in class makes the server "unlike nginx", and the
// Censor hears of it (on_probe_result), which may block the address.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address_v4.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "postern/lab/censor.h"
#include "postern/lab/probes.h"

namespace postern::lab::net {

class CensorRuntime;

struct ProberConfig {
  std::vector<boost::asio::ip::address_v4> sources;  // empty: the kernel picks the source
  boost::asio::ip::tcp::endpoint baseline;           // the stock nginx
  std::size_t parallel = 8;                          // probes in flight at once, per request
  std::size_t max_reaction = 16 * 1024;              // bytes of a reaction kept
};

// Sends `payload` to `target` from `source` (when given) and records the reaction within
// `window` (from the last byte sent): data, then FIN, RST or still open; connect_failed when the
// connection is not up within the window.
boost::asio::awaitable<Reaction> send_probe(boost::asio::any_io_executor ex,
                                            std::optional<boost::asio::ip::address_v4> source,
                                            boost::asio::ip::tcp::endpoint target, Bytes payload,
                                            std::chrono::milliseconds window, std::size_t max_reaction);

struct ProbeVerdict {
  bool differs = false;
  std::string detail;  // "NR2: server=<class> baseline=<class>", or how many probes were alike
};
// The first probe (in order) whose two reactions differ (same_reaction), sans-I/O.
ProbeVerdict compare_reactions(const std::vector<Probe>& probes, const std::vector<Reaction>& server,
                               const std::vector<Reaction>& baseline);

class Prober {
 public:
  Prober(CensorRuntime& rt, ProberConfig config) : rt_(rt), config_(std::move(config)) {}
  // Runs the request's probes in the background and reports to the Censor.
  void submit(ProbeRequest r);

 private:
  boost::asio::awaitable<void> run(ProbeRequest r);
  std::optional<boost::asio::ip::address_v4> next_source();
  CensorRuntime& rt_;
  ProberConfig config_;
  std::size_t next_ = 0;
};

}  // namespace postern::lab::net
