import ArgumentParser
import Model

/// `--kv-cache`: how sequences keep their keys and values.
enum CacheOption: String, ExpressibleByArgument, CaseIterable {
    /// float16 for Q8_0 and BF16 model files, int8 for Q4_0, float32 for F32 and F16 ones.
    case auto
    case f32
    case f16
    case int8

    static let help: ArgumentHelp = """
        KV cache precision: f32, f16, int8 (a scale per position and head), or auto: f16 for Q8_0 and BF16 \
        model files (half the memory and of the bytes a batched decode step reads), int8 for Q4_0 (a quarter), \
        f32 for F32 and F16 files, which reproduce upstream. See README, "KV cache".
        """

    /// nil: the model file decides.
    var precision: KVCache.Precision? {
        switch self {
        case .auto: nil
        case .f32: .float32
        case .f16: .float16
        case .int8: .int8
        }
    }
}
