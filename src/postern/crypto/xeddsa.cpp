#include "postern/crypto/xeddsa.h"

#include <openssl/bn.h>
#include <sodium.h>

#include <algorithm>
#include <memory>

#include "postern/crypto/errors.h"
#include "postern/crypto/hash.h"

namespace postern::crypto {
namespace {

using Scalar = std::array<std::uint8_t, 32>;

void reduce_scalar(std::uint8_t* out32, const std::uint8_t* in64) {
  crypto_core_ed25519_scalar_reduce(out32, in64);
}

// a = k mod L, negated when requested.
void signing_scalar(const PrivateKey& key, bool negative, SecretArray<32>& a) {
  SecretArray<64> wide;
  std::copy_n(key.scalar().data(), 32, wide.data());
  SecretArray<32> k_mod_l;
  reduce_scalar(k_mod_l.data(), wide.data());
  if (negative) {
    crypto_core_ed25519_scalar_negate(a.data(), k_mod_l.data());
  } else {
    a = k_mod_l;
  }
}

// A = |kB| (sign bit forced to 0); a = k mod L, negated when kB had sign bit 1. Returns that sign.
bool derive_signing_pair(const PrivateKey& key, SecretArray<32>& a, Scalar& A) {
  ensure_sodium();
  crypto_scalarmult_ed25519_base_noclamp(A.data(), key.scalar().data());
  const bool negative = (A[31] & 0x80) != 0;
  A[31] &= 0x7f;
  signing_scalar(key, negative, a);
  return negative;
}

Signature sign_with(const SecretArray<32>& a, const Scalar& A, ByteView message, Rng& rng) {
  SecretArray<64> z;
  rng.fill(z.span());

  static constexpr std::array<std::uint8_t, 32> kHash1Prefix = [] {
    std::array<std::uint8_t, 32> p{};
    p.fill(0xff);
    p[0] = 0xfe;
    return p;
  }();
  SecretArray<64> r_wide;
  {
    Sha512 h;
    h.update(kHash1Prefix).update(a.view()).update(message).update(z.view());
    Sha512Digest d = h.finish();
    std::copy(d.begin(), d.end(), r_wide.data());
    wipe(d.data(), d.size());
  }
  SecretArray<32> r;
  reduce_scalar(r.data(), r_wide.data());

  Signature sig{};
  crypto_scalarmult_ed25519_base_noclamp(sig.data(), r.data());  // R

  Sha512Digest hd = Sha512().update(ByteView(sig.data(), 32)).update(A).update(message).finish();
  Scalar h;
  reduce_scalar(h.data(), hd.data());

  SecretArray<32> ha;
  crypto_core_ed25519_scalar_mul(ha.data(), h.data(), a.data());
  crypto_core_ed25519_scalar_add(sig.data() + 32, r.data(), ha.data());  // S = r + h a
  return sig;
}

struct BnDeleter {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
struct BnCtxDeleter {
  void operator()(BN_CTX* c) const { BN_CTX_free(c); }
};
using BnPtr = std::unique_ptr<BIGNUM, BnDeleter>;

const BIGNUM* field_prime() {
  static BIGNUM* const p = [] {
    BIGNUM* v = BN_new();
    BN_set_bit(v, 255);
    BN_sub_word(v, 19);
    return v;
  }();
  return p;
}

}  // namespace

Signature xeddsa_sign(const PrivateKey& key, ByteView message, Rng& rng) {
  SecretArray<32> a;
  Scalar A;
  derive_signing_pair(key, a, A);
  return sign_with(a, A, message, rng);
}

XeddsaSigner::XeddsaSigner(const PrivateKey& key) {
  negated_ = derive_signing_pair(key, a_, A_);
}

XeddsaSigner::XeddsaSigner(const PrivateKey& key, const std::array<std::uint8_t, 32>& edwards_public,
                           bool negated)
    : A_(edwards_public), negated_(negated) {
  ensure_sodium();
  signing_scalar(key, negated, a_);
}

Signature XeddsaSigner::sign(ByteView message, Rng& rng) const {
  return sign_with(a_, A_, message, rng);
}

Result<std::array<std::uint8_t, 32>> montgomery_to_edwards_y(const PublicKey& key) {
  std::array<std::uint8_t, 32> u = key.raw();
  u[31] &= 0x7f;  // as libsignal: the top bit of u is ignored
  const BIGNUM* p = field_prime();
  std::unique_ptr<BN_CTX, BnCtxDeleter> ctx(BN_CTX_new());
  BnPtr bu(BN_lebin2bn(u.data(), 32, nullptr));
  BnPtr num(BN_new()), den(BN_new()), y(BN_new());
  if (!ctx || !bu || !num || !den || !y) return Errc::backend_failure;
  if (BN_nnmod(bu.get(), bu.get(), p, ctx.get()) != 1) return Errc::backend_failure;
  BnPtr one(BN_new());
  BN_one(one.get());
  if (BN_mod_sub(num.get(), bu.get(), one.get(), p, ctx.get()) != 1 ||
      BN_mod_add(den.get(), bu.get(), one.get(), p, ctx.get()) != 1) {
    return Errc::backend_failure;
  }
  if (BN_is_zero(den.get())) return Errc::bad_key_type;  // u = -1 has no Edwards form
  if (BN_mod_inverse(den.get(), den.get(), p, ctx.get()) == nullptr) return Errc::backend_failure;
  if (BN_mod_mul(y.get(), num.get(), den.get(), p, ctx.get()) != 1) return Errc::backend_failure;
  std::array<std::uint8_t, 32> out{};
  if (BN_bn2lebinpad(y.get(), out.data(), 32) != 32) return Errc::backend_failure;
  return out;
}

bool xeddsa_verify_with_edwards(const std::array<std::uint8_t, 32>& edwards_y, ByteView message,
                                ByteView signature) {
  if (signature.size() != kSignatureSize) return false;
  ensure_sodium();
  std::array<std::uint8_t, 32> A = edwards_y;
  A[31] = static_cast<std::uint8_t>((A[31] & 0x7f) | (signature[63] & 0x80));
  Signature sig;
  std::copy(signature.begin(), signature.end(), sig.begin());
  sig[63] &= 0x7f;
  if ((sig[63] & 0xe0) != 0) return false;
  return crypto_sign_ed25519_verify_detached(sig.data(), message.data(), message.size(), A.data()) == 0;
}

bool xeddsa_verify(const PublicKey& key, ByteView message, ByteView signature) {
  if (signature.size() != kSignatureSize) return false;
  auto y = montgomery_to_edwards_y(key);
  if (!y) return false;
  return xeddsa_verify_with_edwards(*y, message, signature);
}

}  // namespace postern::crypto
