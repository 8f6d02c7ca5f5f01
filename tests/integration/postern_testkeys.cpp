// postern-testkeys: fresh keys for the integration test, which (standard-library Python) has
// neither X25519 nor XEdDSA. Prints one JSON object on stdout:
//   {"identity_key": "<hex 33 bytes>",
//    "signed_pre_key": {"id": 1, "public_key": "<hex>", "signature": "<hex 64 bytes>"},
//    "signed_pre_key_2": {"id": 2, ...},   (a second one, for rotation)
//    "other_signature": "<hex>",   (signed_pre_key signed by an unrelated identity key)
//    "one_time_pre_keys": [{"id": 1, "public_key": "<hex>"}, ...]}
// Usage: postern-testkeys [N one-time prekeys, default 0] [first one-time prekey id, default 1]
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>

#include "postern/crypto/curve.h"
#include "postern/crypto/random.h"
#include "postern/crypto/xeddsa.h"
#include "postern/util/bytes.h"

namespace {

std::uint32_t parse_arg(const char* text, std::uint32_t fallback) {
  if (text == nullptr) return fallback;
  const std::string_view s(text);
  std::uint32_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size()) return fallback;
  return v;
}

std::string hex_of(const postern::crypto::PublicKey& key) {
  const auto bytes = key.serialize();
  return postern::to_hex(postern::ByteView(bytes.data(), bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  using namespace postern;
  const std::uint32_t count = parse_arg(argc > 1 ? argv[1] : nullptr, 0);
  const std::uint32_t first_id = parse_arg(argc > 2 ? argv[2] : nullptr, 1);
  crypto::SystemRng rng;
  const auto identity = crypto::KeyPair::generate(rng);
  const auto other = crypto::KeyPair::generate(rng);
  const auto signed_pre_key = [&](std::uint32_t id) {
    const auto key = crypto::KeyPair::generate(rng);
    const auto serialized = key.public_key.serialize();
    const auto signature =
        crypto::xeddsa_sign(identity.private_key, ByteView(serialized.data(), serialized.size()), rng);
    const auto other_signature =
        crypto::xeddsa_sign(other.private_key, ByteView(serialized.data(), serialized.size()), rng);
    return std::pair{"{\"id\": " + std::to_string(id) + ", \"public_key\": \"" + hex_of(key.public_key) +
                         "\", \"signature\": \"" + to_hex(ByteView(signature.data(), signature.size())) + "\"}",
                     to_hex(ByteView(other_signature.data(), other_signature.size()))};
  };
  const auto [first, other_signature] = signed_pre_key(1);
  const auto second = signed_pre_key(2).first;

  std::string out = "{\"identity_key\": \"" + hex_of(identity.public_key) + "\", ";
  out += "\"signed_pre_key\": " + first + ", \"signed_pre_key_2\": " + second + ", ";
  out += "\"other_signature\": \"" + other_signature + "\", ";
  out += "\"one_time_pre_keys\": [";
  for (std::uint32_t i = 0; i < count; ++i) {
    if (i > 0) out += ", ";
    const auto k = crypto::KeyPair::generate(rng);
    out += "{\"id\": " + std::to_string(first_id + i) + ", \"public_key\": \"" + hex_of(k.public_key) + "\"}";
  }
  out += "]}\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}
