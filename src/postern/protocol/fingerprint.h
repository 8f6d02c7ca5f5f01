// Safety numbers: what two people compare (read aloud or scan) to be sure no one sits between
// them. Per party, h = SHA-512 iterated over its identity key and stable identifier; the
// displayable number is 60 digits, the scannable form a CombinedFingerprints protobuf.
#pragma once

#include <string>
#include <string_view>

#include "postern/crypto/curve.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::protocol {

inline constexpr int kFingerprintIterations = 5200;

struct Fingerprint {
  std::string displayable;  // 60 digits
  Bytes scannable;          // CombinedFingerprints
};

// scannable_version: 0 (keys and identifiers, libsignal-protocol-c) or 1 (32-byte hashes).
// Errors: invalid_version for another scannable version or iterations outside 1..1,000,000.
Result<Fingerprint> create_fingerprint(int iterations, int scannable_version, std::string_view local_id,
                                       const crypto::PublicKey& local_key, std::string_view remote_id,
                                       const crypto::PublicKey& remote_key);

// Whether their scannable fingerprint (as scanned from their screen) matches ours: our local part
// is their remote part and the other way round. Errors: fingerprint_version_mismatch,
// fingerprint_identity_mismatch (version 0, different identifiers), invalid_protobuf.
Result<bool> scannable_fingerprints_match(ByteView ours, ByteView theirs);

}  // namespace postern::protocol
