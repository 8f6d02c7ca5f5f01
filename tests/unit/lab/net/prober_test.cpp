// The prober: comparing reactions (sans-I/O) and send_probe against loopback servers that close
// at once, reset, answer, or stay silent.
#include "postern/lab/net/prober.h"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/socket_base.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <future>
#include <thread>

namespace postern::lab::net {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

Reaction reaction(Reaction::End end, std::chrono::milliseconds after, std::string data = {}) {
  Reaction r;
  r.end = end;
  r.after = after;
  r.data.assign(data.begin(), data.end());
  return r;
}

TEST(LabProberCompare, NamesTheFirstDifferingProbe) {
  const std::vector<Probe> probes{{"R1", {1}}, {"R2", {2}}, {"NR2", {3}}};
  const std::vector<Reaction> nginx{reaction(Reaction::End::fin, 10ms), reaction(Reaction::End::fin, 10ms),
                                    reaction(Reaction::End::fin, 10ms)};
  std::vector<Reaction> server = nginx;
  auto same = compare_reactions(probes, server, nginx);
  EXPECT_FALSE(same.differs);
  EXPECT_NE(same.detail.find('3'), std::string::npos);

  server[1] = reaction(Reaction::End::open, 3000ms);
  server[2] = reaction(Reaction::End::rst, 10ms);
  auto diff = compare_reactions(probes, server, nginx);
  EXPECT_TRUE(diff.differs);
  EXPECT_EQ(diff.detail.rfind("R2: server=", 0), 0u) << diff.detail;
  EXPECT_NE(diff.detail.find(reaction_class(server[1])), std::string::npos);
  EXPECT_NE(diff.detail.find("baseline=" + reaction_class(nginx[1])), std::string::npos);
}

// A loopback server that does `behaviour` with each connection after reading a little.
enum class Behaviour { close_at_once, reset, answer_then_close, silent };

void serve_one(tcp::acceptor& acc, Behaviour b) {
  boost::system::error_code ec;
  tcp::socket s = acc.accept(ec);
  if (ec) return;
  std::array<char, 64> buf{};
  s.read_some(asio::buffer(buf), ec);
  switch (b) {
    case Behaviour::close_at_once: s.close(ec); break;
    case Behaviour::reset:
      s.set_option(asio::socket_base::linger(true, 0), ec);
      s.close(ec);
      break;
    case Behaviour::answer_then_close:
      asio::write(s, asio::buffer(std::string("HTTP/1.1 400 Bad Request\r\n\r\n")), ec);
      s.close(ec);
      break;
    case Behaviour::silent: std::this_thread::sleep_for(700ms); break;
  }
}

Reaction probe_loopback(Behaviour b, std::chrono::milliseconds window) {
  asio::io_context server_io;
  tcp::acceptor acc(server_io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  const auto ep = acc.local_endpoint();
  std::thread server([&] { serve_one(acc, b); });
  asio::io_context io;
  auto fut = asio::co_spawn(io, send_probe(io.get_executor(), asio::ip::address_v4::loopback(), ep, Bytes{1, 2, 3, 4},
                                           window, 16 * 1024),
                            asio::use_future);
  io.run();
  server.join();
  return fut.get();
}

TEST(LabProberSend, SeesFinRstDataAndSilence) {
  const auto fin = probe_loopback(Behaviour::close_at_once, 2000ms);
  EXPECT_EQ(fin.end, Reaction::End::fin);
  EXPECT_TRUE(fin.data.empty());
  EXPECT_LT(fin.after, 1000ms);

  const auto rst = probe_loopback(Behaviour::reset, 2000ms);
  EXPECT_EQ(rst.end, Reaction::End::rst);

  const auto data = probe_loopback(Behaviour::answer_then_close, 2000ms);
  EXPECT_EQ(data.end, Reaction::End::fin);
  EXPECT_EQ(std::string(data.data.begin(), data.data.end()), "HTTP/1.1 400 Bad Request\r\n\r\n");

  const auto open = probe_loopback(Behaviour::silent, 300ms);
  EXPECT_EQ(open.end, Reaction::End::open);
  EXPECT_EQ(open.after, 300ms);
}

TEST(LabProberSend, ConnectFailedOnAClosedPort) {
  asio::io_context io;
  tcp::acceptor acc(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  const auto ep = acc.local_endpoint();
  acc.close();
  auto fut = asio::co_spawn(io, send_probe(io.get_executor(), std::nullopt, ep, Bytes{1}, 500ms, 1024), asio::use_future);
  io.run();
  EXPECT_EQ(fut.get().end, Reaction::End::connect_failed);
}

}  // namespace
}  // namespace postern::lab::net
