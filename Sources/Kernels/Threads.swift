import CKernels
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

extension Kernels {
    /// Keeps freed activation buffers in the process for the next forward pass instead of
    /// returning them to the kernel. glibc hands blocks over 128 KiB to mmap and trims the heap
    /// top above 128 KiB, so every layer's buffers (megabytes at prefill and vision batch sizes)
    /// came back as fresh pages: 258k page faults for 5 MiniMind2-V prefills (8 % of the CPU
    /// samples), 97k with this. Process-wide and idempotent; memory stays at the peak the
    /// process reached, which it touched anyway.
    public static func keepFreedActivationMemory() {
        ck_keep_freed_memory(32 << 20, 512 << 20)   // 32 MiB: glibc's ceiling for the mmap threshold
    }
}
