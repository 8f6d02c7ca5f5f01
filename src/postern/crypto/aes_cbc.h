// AES-CBC with PKCS#7 padding over OpenSSL 3. The protocol uses AES-256; 128- and 192-bit keys are
// accepted so that the whole Wycheproof AES-CBC set can be run against this code.
#pragma once

#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::crypto {

// key: 16, 24 or 32 bytes; iv: 16 bytes.
Result<Bytes> aes_cbc_encrypt(ByteView key, ByteView iv, ByteView plaintext);
// Fails with bad_length (not a positive multiple of 16) or bad_padding.
Result<Bytes> aes_cbc_decrypt(ByteView key, ByteView iv, ByteView ciphertext);

}  // namespace postern::crypto
