/// Kernels: GEMM through OpenBLAS, norms, RoPE, softmax, activations, precision conversions.
///
/// Every kernel works on raw float32 rows (`UnsafePointer<Float>`), row-major, so that the model
/// code can hand it views into its activation buffers without copies. Nothing here knows about
/// models or files.
import COpenBLAS

public enum Kernels {}
