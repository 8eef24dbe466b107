import ArgumentParser
import Model

/// `--kv-cache`: how sequences keep their keys and values.
enum CacheOption: String, ExpressibleByArgument, CaseIterable {
    /// float32 for a float32 model file, float16 otherwise.
    case auto
    case f32
    case f16

    static let help: ArgumentHelp = """
        KV cache precision: f32, f16, or auto (f32 for an f32 model file, else f16: half the memory \
        and the bytes a batched decode step reads).
        """

    /// nil: the model file decides.
    var precision: KVCache.Precision? {
        switch self {
        case .auto: nil
        case .f32: .float32
        case .f16: .float16
        }
    }
}
