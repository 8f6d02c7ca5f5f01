// Helpers shared by the record (de)serialisers: protobuf <-> bytes, keys <-> 32-byte strings.
// Private to the protocol layer.
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

inline Result<std::array<std::uint8_t, 32>> array32(const std::string& s) {
  if (s.size() != 32) return Errc::corrupt_record;
  std::array<std::uint8_t, 32> a;
  std::copy(s.begin(), s.end(), a.begin());
  return a;
}

inline Result<crypto::PublicKey> public_from(const std::string& s) {
  POSTERN_TRY(auto a, array32(s));
  return crypto::PublicKey(a);
}

inline Result<crypto::PrivateKey> private_from(const std::string& s) {
  auto k = crypto::PrivateKey::deserialize(as_bytes(s));
  if (!k) return Errc::corrupt_record;
  return std::move(k).value();
}

inline Result<crypto::KeyPair> key_pair_from(const std::string& pub, const std::string& priv) {
  POSTERN_TRY(crypto::PublicKey p, public_from(pub));
  POSTERN_TRY(crypto::PrivateKey k, private_from(priv));
  return crypto::KeyPair{p, std::move(k)};
}

template <std::size_t N>
Status copy_secret(const std::string& s, crypto::SecretArray<N>& out) {
  if (s.size() != N) return Errc::corrupt_record;
  std::copy(s.begin(), s.end(), out.data());
  return {};
}

}  // namespace postern::protocol::detail
