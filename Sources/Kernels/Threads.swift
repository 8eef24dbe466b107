import COpenBLAS
#if canImport(Glibc)
import Glibc
#endif

extension Kernels {
    /// Processor cores available to this process (the OpenBLAS default).
    public static var coreCount: Int {
        #if canImport(Glibc)
        let n = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        return max(1, n)
        #else
        return 1
        #endif
    }

    /// Threads OpenBLAS uses for each product. Process-wide.
    public static var threadCount: Int { Int(openblas_get_num_threads()) }

    /// Sets the OpenBLAS thread count (process-wide); values below 1 mean "all cores".
    public static func setThreadCount(_ count: Int) {
        openblas_set_num_threads(Int32(count >= 1 ? count : coreCount))
    }

    /// The OpenBLAS kernel family chosen for this CPU (for `bench`).
    public static var blasCoreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }
}
