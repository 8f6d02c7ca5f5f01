// The censor's DNS parts (docs/censorship.md).
// - parse_query and lab_resolver_answer (dns_query.h, sans-I/O and fuzzed): the question of a DNS
//   query from a user, and the lab resolver's answer to it.
// - DnsInjector: the firewall redirects the users' UDP/53 to it. Each query goes to the Censor
//   (on_dns_query): forged addresses are answered at once, and the query is forwarded to the real
//   resolver all the same, whose answer is relayed too and arrives second (on the GFW the forged
//   answer wins the race); otherwise the query is forwarded and the answer relayed. Answers leave
//   from the redirected socket, so connection tracking gives them the source address the user
//   asked.
// - LabResolver: the lab's own authoritative server abroad (A records given on the command line,
//   NXDOMAIN for the rest).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

#include "postern/lab/net/dns_query.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::lab::net {

class CensorRuntime;

class DnsInjector {
 public:
  // `resolver`: where queries are forwarded.
  DnsInjector(CensorRuntime& rt, std::uint16_t listen_port, boost::asio::ip::udp::endpoint resolver);
  // Errc::io_error when a socket cannot be opened or bound.
  Status open();
  void start();
  void close();

  static constexpr std::chrono::seconds kPendingTimeout{5};
  static constexpr std::size_t kMaxPending = 4096;

 private:
  boost::asio::awaitable<void> client_loop();
  boost::asio::awaitable<void> upstream_loop();
  void forward(ByteView query, const DnsQuestion& q, const boost::asio::ip::udp::endpoint& from);
  void expire_pending();

  CensorRuntime& rt_;
  std::uint16_t port_;
  boost::asio::ip::udp::endpoint resolver_;
  boost::asio::ip::udp::socket socket_;    // the redirected queries arrive here; answers leave from it
  boost::asio::ip::udp::socket upstream_;  // to the resolver
  struct Pending {
    boost::asio::ip::udp::endpoint client;
    std::uint16_t client_id = 0;
    std::chrono::steady_clock::time_point deadline;
  };
  std::map<std::uint16_t, Pending> pending_;  // by the id sent upstream
  std::uint16_t next_id_ = 1;
};

class LabResolver {
 public:
  // records: lower-case name -> IPv4 literal.
  LabResolver(boost::asio::io_context& io, boost::asio::ip::udp::endpoint listen,
              std::map<std::string, std::string> records);
  Status open();
  void start();
  void close();

 private:
  boost::asio::awaitable<void> loop();
  boost::asio::io_context& io_;
  boost::asio::ip::udp::endpoint listen_;
  std::map<std::string, std::string> records_;
  boost::asio::ip::udp::socket socket_;
};

}  // namespace postern::lab::net
