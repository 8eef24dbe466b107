import Crypto
import Formats

extension Tensor {
    /// SHA-256 (hex) of the elements as contiguous little-endian bytes in the tensor's own
    /// dtype (bfloat16 as raw 16-bit words, Q8_0 as its blocks): equal for equal weights,
    /// whatever file holds them.
    public var sha256: String {
        let digest = bytes.withUnsafeBytes { SHA256.hash(data: $0) }
        return digest.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}
