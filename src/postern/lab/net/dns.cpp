// See dns.h (the parsing is in dns_query.cpp). The injector keeps one table of forwarded queries keyed by the id it used upstream
// (fresh ids, so two users' equal ids never mix), each entry naming the user's address and id;
// entries older than kPendingTimeout are dropped.
#include "postern/lab/net/dns.h"

#include <array>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "postern/lab/errors.h"
#include "postern/lab/net/middlebox.h"
#include "postern/transport/dns_message.h"

namespace postern::lab::net {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using error_code = boost::system::error_code;
using udp = asio::ip::udp;

namespace {

constexpr std::size_t kMaxDatagram = 4096;

}  // namespace

// ---- DnsInjector ----

DnsInjector::DnsInjector(CensorRuntime& rt, std::uint16_t listen_port, udp::endpoint resolver)
    : rt_(rt), port_(listen_port), resolver_(std::move(resolver)), socket_(rt.io()), upstream_(rt.io()) {}

Status DnsInjector::open() {
  error_code ec;
  socket_.open(udp::v4(), ec);
  if (!ec) socket_.bind(udp::endpoint(asio::ip::address_v4::any(), port_), ec);
  if (!ec) upstream_.open(udp::v4(), ec);
  if (!ec) upstream_.bind(udp::endpoint(asio::ip::address_v4::any(), 0), ec);
  if (ec) {
    rt_.log(3, "dns: cannot bind port " + std::to_string(port_) + ": " + ec.message());
    return Errc::io_error;
  }
  next_id_ = static_cast<std::uint16_t>(rt_.rng()());
  return {};
}

void DnsInjector::start() {
  asio::co_spawn(rt_.io(), client_loop(), asio::detached);
  asio::co_spawn(rt_.io(), upstream_loop(), asio::detached);
}

void DnsInjector::close() {
  error_code ignored;
  socket_.close(ignored);
  upstream_.close(ignored);
}

void DnsInjector::expire_pending() {
  const auto now = std::chrono::steady_clock::now();
  for (auto it = pending_.begin(); it != pending_.end();) {
    it = it->second.deadline <= now ? pending_.erase(it) : std::next(it);
  }
}

void DnsInjector::forward(ByteView query, const DnsQuestion& q, const udp::endpoint& from) {
  expire_pending();
  if (pending_.size() >= kMaxPending) return;  // a flood: the user retries
  std::uint16_t id = next_id_++;
  while (pending_.contains(id)) id = next_id_++;
  pending_[id] = Pending{from, q.id, std::chrono::steady_clock::now() + kPendingTimeout};
  Bytes out(query.begin(), query.end());
  out[0] = static_cast<std::uint8_t>(id >> 8);
  out[1] = static_cast<std::uint8_t>(id);
  error_code ec;
  upstream_.send_to(asio::buffer(out), resolver_, 0, ec);
  if (ec) {
    pending_.erase(id);
    rt_.log(2, "dns: forwarding failed: " + ec.message());
  }
}

awaitable<void> DnsInjector::client_loop() {
  std::vector<std::uint8_t> buf(kMaxDatagram);
  const std::string resolver = resolver_.address().to_string();
  while (socket_.is_open()) {
    udp::endpoint from;
    auto [ec, n] = co_await socket_.async_receive_from(asio::buffer(buf), from, asio::as_tuple(use_awaitable));
    if (ec == asio::error::operation_aborted || !socket_.is_open()) break;
    if (ec) continue;
    const ByteView query(buf.data(), n);
    auto q = parse_query(query);
    if (!q) {
      // Dropped, as a resolver would (debug only: anyone can send such datagrams).
      rt_.log(0, "dns: datagram from " + from.address().to_string() + " dropped: " + q.error().message());
      continue;
    }
    const auto forged = rt_.censor().on_dns_query(from.address().to_string(), resolver, q->name, Clock::now());
    rt_.pump();
    if (!forged.empty() && q->qtype == transport::dns::kTypeA) {
      auto answer = transport::dns::build_response(query, forged, 300);
      if (answer) {
        error_code sec;
        socket_.send_to(asio::buffer(*answer), from, 0, sec);
      }
    }
    forward(query, *q, from);
  }
}

awaitable<void> DnsInjector::upstream_loop() {
  std::vector<std::uint8_t> buf(kMaxDatagram);
  while (upstream_.is_open()) {
    udp::endpoint from;
    auto [ec, n] = co_await upstream_.async_receive_from(asio::buffer(buf), from, asio::as_tuple(use_awaitable));
    if (ec == asio::error::operation_aborted || !upstream_.is_open()) break;
    if (ec || from != resolver_) continue;
    const auto id = message_id(ByteView(buf.data(), n));
    if (!id) continue;
    const auto it = pending_.find(*id);
    if (it == pending_.end()) continue;
    const Pending p = it->second;
    pending_.erase(it);
    buf[0] = static_cast<std::uint8_t>(p.client_id >> 8);
    buf[1] = static_cast<std::uint8_t>(p.client_id);
    error_code sec;
    socket_.send_to(asio::buffer(buf.data(), n), p.client, 0, sec);
  }
}

// ---- LabResolver ----

LabResolver::LabResolver(asio::io_context& io, udp::endpoint listen, std::map<std::string, std::string> records)
    : io_(io), listen_(std::move(listen)), records_(std::move(records)), socket_(io) {}

Status LabResolver::open() {
  error_code ec;
  socket_.open(listen_.protocol(), ec);
  if (!ec) socket_.bind(listen_, ec);
  if (ec) return Errc::io_error;
  return {};
}

void LabResolver::start() { asio::co_spawn(io_, loop(), asio::detached); }

void LabResolver::close() {
  error_code ignored;
  socket_.close(ignored);
}

awaitable<void> LabResolver::loop() {
  std::vector<std::uint8_t> buf(kMaxDatagram);
  while (socket_.is_open()) {
    udp::endpoint from;
    auto [ec, n] = co_await socket_.async_receive_from(asio::buffer(buf), from, asio::as_tuple(use_awaitable));
    if (ec == asio::error::operation_aborted || !socket_.is_open()) break;
    if (ec) continue;
    auto answer = lab_resolver_answer(ByteView(buf.data(), n), records_);
    if (!answer) continue;
    error_code sec;
    socket_.send_to(asio::buffer(*answer), from, 0, sec);
  }
}

}  // namespace postern::lab::net
