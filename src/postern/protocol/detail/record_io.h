// Helpers for the protobuf-encoded records (prekeys) and wire messages: protobuf <-> bytes, keys
// <-> 32-byte strings. Private to the protocol layer.
#pragma once

#include <google/protobuf/message_lite.h>

#include <algorithm>
#include <array>
#include <string>

#include "postern/crypto/curve.h"
#include "postern/crypto/secret.h"
#include "postern/protocol/errors.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::protocol::detail {

inline constexpr std::uint32_t kRecordFormatVersion = 1;

inline std::string to_string(ByteView b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

inline Bytes serialize_message(const google::protobuf::MessageLite& m) {
  Bytes out(m.ByteSizeLong());
  m.SerializeWithCachedSizesToArray(out.data());
  return out;
}

inline Status parse_record(google::protobuf::MessageLite& m, ByteView bytes) {
  if (bytes.size() > static_cast<std::size_t>(INT32_MAX)) return Errc::corrupt_record;
  if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return Errc::corrupt_record;
  return {};
}

inline Status check_format_version(std::uint32_t v) {
  if (v == 0) return Errc::corrupt_record;
  if (v > kRecordFormatVersion) return Errc::invalid_version;
  return {};
}

inline void wipe_string(std::string& s) {
  if (!s.empty()) crypto::wipe(s.data(), s.size());
}

inline Result<crypto::KeyPair> key_pair_from(const std::string& pub, const std::string& priv) {
  if (pub.size() != 32) return Errc::corrupt_record;
  std::array<std::uint8_t, 32> u;
  std::copy(pub.begin(), pub.end(), u.begin());
  auto k = crypto::PrivateKey::deserialize(as_bytes(priv));
  if (!k) return Errc::corrupt_record;
  return crypto::KeyPair{crypto::PublicKey(u), std::move(k).value()};
}

}  // namespace postern::protocol::detail
