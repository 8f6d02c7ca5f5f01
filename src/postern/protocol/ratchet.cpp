#include "postern/protocol/ratchet.h"

#include <algorithm>

#include "postern/crypto/hash.h"
#include "postern/crypto/hkdf.h"
#include "postern/protocol/errors.h"

namespace postern::protocol {
namespace {

constexpr std::string_view kRatchetInfo = "WhisperRatchet";
constexpr std::string_view kMessageKeysInfo = "WhisperMessageKeys";

void finish_into(crypto::HmacSha256& mac, std::uint8_t label, crypto::SecretArray<32>& out) {
  crypto::Hmac256Tag t = mac.update(label).finish();
  std::copy(t.begin(), t.end(), out.data());
  crypto::wipe(t.data(), t.size());
}

}  // namespace

ChainStep chain_step(const ChainKey& chain_key) {
  crypto::HmacSha256 mac(chain_key.view());
  ChainStep step;
  finish_into(mac, 0x01, step.seed);
  finish_into(mac, 0x02, step.next);
  return step;
}

MessageKeys derive_message_keys(const MessageKeySeed& seed) {
  crypto::SecretArray<80> okm;
  // Cannot fail: the output length is fixed and far below HKDF's limit.
  (void)crypto::hkdf_sha256(seed.view(), {}, as_bytes(kMessageKeysInfo), okm.span());
  MessageKeys k;
  std::copy_n(okm.data(), 32, k.cipher_key.data());
  std::copy_n(okm.data() + 32, 32, k.mac_key.data());
  std::copy_n(okm.data() + 64, 16, k.iv.data());
  return k;
}

Result<MessageKeyLookup> MessageKeyLookup::find(const ChainKey& key, std::uint32_t chain_index,
                                                const std::vector<SkippedKey>& skipped, std::uint32_t index) {
  // The last index would wrap the chain's counter; no honest chain gets there.
  if (index == UINT32_MAX) return Errc::invalid_message;
  MessageKeyLookup l;
  l.index_ = index;
  if (index < chain_index) {
    auto it =
        std::find_if(skipped.begin(), skipped.end(), [&](const SkippedKey& k) { return k.index == index; });
    if (it == skipped.end()) return Errc::duplicate_message;
    l.seed_ = it->seed;
    l.skipped_slot_ = static_cast<std::size_t>(it - skipped.begin());
    return l;
  }
  if (index - chain_index > kMaxForwardJump) return Errc::invalid_message;
  ChainKey k = key;
  l.new_skipped_.reserve(index - chain_index);
  for (std::uint32_t i = chain_index; i < index; ++i) {
    ChainStep step = chain_step(k);
    l.new_skipped_.push_back(SkippedKey{i, step.seed});
    k = step.next;
  }
  ChainStep last = chain_step(k);
  l.seed_ = last.seed;
  l.next_key_ = last.next;
  return l;
}

void MessageKeyLookup::commit(ChainCursor chain) && {
  if (skipped_slot_) {
    chain.skipped.erase(chain.skipped.begin() + static_cast<std::ptrdiff_t>(*skipped_slot_));
    return;
  }
  for (SkippedKey& k : new_skipped_) chain.skipped.push_back(std::move(k));
  if (chain.skipped.size() > kMaxSkippedMessageKeys) {  // drop the oldest
    chain.skipped.erase(chain.skipped.begin(),
                        chain.skipped.end() - static_cast<std::ptrdiff_t>(kMaxSkippedMessageKeys));
  }
  chain.key = next_key_;
  chain.index = index_ + 1;
}

Result<RootStep> root_step(const RootKey& root_key, const crypto::PrivateKey& ours,
                           const crypto::PublicKey& theirs) {
  auto shared = crypto::agreement(ours, theirs);
  if (!shared) return Errc::invalid_key;
  crypto::SecretArray<64> okm;
  (void)crypto::hkdf_sha256(shared->view(), root_key.view(), as_bytes(kRatchetInfo), okm.span());
  RootStep step;
  std::copy_n(okm.data(), 32, step.root_key.data());
  std::copy_n(okm.data() + 32, 32, step.chain_key.data());
  return step;
}

}  // namespace postern::protocol
