#include "postern/protocol/fingerprint.h"

#include <algorithm>
#include <cstdio>

#include "postern/crypto/hash.h"
#include "postern/protocol/detail/record_io.h"
#include "postern/protocol/errors.h"
#include "postern/protocol/proto/wire.pb.h"

namespace postern::protocol {
namespace {

crypto::Sha512Digest iterated_hash(int iterations, std::string_view id, const crypto::PublicKey& key) {
  const auto k = key.serialize();
  static constexpr std::uint8_t kVersion[2] = {0, 0};
  crypto::Sha512 sha;  // finish() resets it, so one context serves every iteration
  crypto::Sha512Digest h = sha.update(kVersion).update(k).update(as_bytes(id)).update(k).finish();
  for (int i = 1; i < iterations; ++i) h = sha.update(h).update(k).finish();
  return h;
}

std::string display_half(const crypto::Sha512Digest& h) {
  std::string out;
  out.reserve(30);
  for (int chunk = 0; chunk < 6; ++chunk) {
    std::uint64_t v = 0;
    for (int i = 0; i < 5; ++i) v = (v << 8) | h[static_cast<std::size_t>(chunk * 5 + i)];
    char digits[8];
    std::snprintf(digits, sizeof digits, "%05u", static_cast<unsigned>(v % 100000));
    out += digits;
  }
  return out;
}

}  // namespace

Result<Fingerprint> create_fingerprint(int iterations, int scannable_version, std::string_view local_id,
                                       const crypto::PublicKey& local_key, std::string_view remote_id,
                                       const crypto::PublicKey& remote_key) {
  if (scannable_version != 0 && scannable_version != 1) return Errc::invalid_version;
  if (iterations < 1 || iterations > 1'000'000) return Errc::invalid_version;
  const crypto::Sha512Digest local = iterated_hash(iterations, local_id, local_key);
  const crypto::Sha512Digest remote = iterated_hash(iterations, remote_id, remote_key);

  Fingerprint f;
  const std::string a = display_half(local);
  const std::string b = display_half(remote);
  f.displayable = a < b ? a + b : b + a;

  wire::CombinedFingerprints pb;
  pb.set_version(static_cast<std::uint32_t>(scannable_version));
  if (scannable_version == 0) {
    pb.mutable_local_fingerprint()->set_content(detail::to_string(local_key.serialize()));
    pb.mutable_local_fingerprint()->set_identifier(std::string(local_id));
    pb.mutable_remote_fingerprint()->set_content(detail::to_string(remote_key.serialize()));
    pb.mutable_remote_fingerprint()->set_identifier(std::string(remote_id));
  } else {
    pb.mutable_local_fingerprint()->set_content(detail::to_string(ByteView(local.data(), 32)));
    pb.mutable_remote_fingerprint()->set_content(detail::to_string(ByteView(remote.data(), 32)));
  }
  f.scannable = detail::serialize_message(pb);
  return f;
}

Result<bool> scannable_fingerprints_match(ByteView ours, ByteView theirs) {
  wire::CombinedFingerprints a, b;
  if (ours.size() > 4096 || theirs.size() > 4096) return Errc::invalid_protobuf;
  if (!a.ParseFromArray(ours.data(), static_cast<int>(ours.size())) ||
      !b.ParseFromArray(theirs.data(), static_cast<int>(theirs.size()))) {
    return Errc::invalid_protobuf;
  }
  if (!a.has_version() || !b.has_version() || a.version() != b.version())
    return Errc::fingerprint_version_mismatch;
  if (!a.has_local_fingerprint() || !a.has_remote_fingerprint() || !b.has_local_fingerprint() ||
      !b.has_remote_fingerprint()) {
    return Errc::invalid_protobuf;
  }
  if (a.version() == 0 && (a.local_fingerprint().identifier() != b.remote_fingerprint().identifier() ||
                           a.remote_fingerprint().identifier() != b.local_fingerprint().identifier())) {
    return Errc::fingerprint_identity_mismatch;
  }
  return a.local_fingerprint().content() == b.remote_fingerprint().content() &&
         a.remote_fingerprint().content() == b.local_fingerprint().content();
}

}  // namespace postern::protocol
