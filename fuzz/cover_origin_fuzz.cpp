// The cover origin's answers (transport/cover_origin.h) on hostile bytes: an origin is outside
// our control, so what it sends must never crash the front. The first input byte picks the
// visitor's request (method, HTTP version) and how the rest is split for the chunked decoder;
// the rest is the origin's answer. Checked beyond "no crash": a complete head fits the input,
// the visitor's head starts with "HTTP/1.1 " and never carries the origin's Server or
// Connection, and the chunked decoder gives the same body whether fed at once or in pieces.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "invariant.h"
#include "postern/transport/cover_origin.h"

namespace cover = postern::transport::cover;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t mode = data[0];
  const postern::ByteView in(data + 1, size - 1);

  postern::transport::site::RequestHead visitor;
  visitor.method = (mode & 1) ? "HEAD" : "GET";
  visitor.version = (mode & 2) ? 10 : 11;
  visitor.target = "/";
  visitor.path = "/";
  visitor.host = "example.org";
  static const cover::OriginUrl origin = cover::parse_origin_url("http://127.0.0.1:8080").value();
  const postern::transport::site::Listener listener;
  const auto now = std::chrono::system_clock::time_point{} + std::chrono::seconds(1'800'000'000);

  const auto r = cover::parse_origin_response(in, (mode & 4) ? 64 : 4096);
  if (r.state == cover::OriginResponse::State::complete) {
    if (r.head_size == 0 || r.head_size > in.size()) postern::fuzz::fail("head_size");
    if (r.status < 100 || r.status > 999) postern::fuzz::fail("status");
    const auto v = cover::visitor_head(r, visitor, origin, listener, true, now);
    if (v.head.rfind("HTTP/1.1 ", 0) != 0) postern::fuzz::fail("visitor head");
    if (v.head.find("\r\nConnection: ") == std::string::npos) postern::fuzz::fail("no Connection");
    if (v.head.find("\r\nServer: nginx/1.22.1\r\n") == std::string::npos) postern::fuzz::fail("no Server");
  } else if (r.state == cover::OriginResponse::State::http09) {
    const auto v = cover::visitor_head(r, visitor, origin, listener, true, now);
    if (!v.head.empty()) postern::fuzz::fail("http09 with a head");
  }

  // The chunked decoder, at once and in pieces of (mode >> 4) + 1 bytes.
  cover::ChunkedDecoder whole_decoder(64);
  postern::Bytes whole;
  std::size_t used = 0;
  const auto whole_status = whole_decoder.feed(in, used, whole);
  if (used > in.size()) postern::fuzz::fail("consumed");
  cover::ChunkedDecoder piece_decoder(64);
  postern::Bytes pieces;
  const std::size_t step = static_cast<std::size_t>(mode >> 4) + 1;
  auto status = cover::ChunkedDecoder::Status::more;
  std::size_t at = 0;
  while (at < in.size() && status == cover::ChunkedDecoder::Status::more) {
    const std::size_t n = std::min(step, in.size() - at);
    std::size_t piece_used = 0;
    status = piece_decoder.feed(in.subspan(at, n), piece_used, pieces);
    at += piece_used;
    if (status == cover::ChunkedDecoder::Status::more && piece_used != n) postern::fuzz::fail("stalled");
  }
  if (status != whole_status) postern::fuzz::fail("split changes the verdict");
  if (status == cover::ChunkedDecoder::Status::done && (pieces != whole || at != used)) {
    postern::fuzz::fail("split changes the body");
  }
  if (whole.size() != whole_decoder.body_size()) postern::fuzz::fail("body_size");
  return 0;
}
