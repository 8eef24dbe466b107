/// Kernels: GEMM through OpenBLAS, norms, RoPE, softmax, activations, precision conversions.
import COpenBLAS
public enum Kernels {}
