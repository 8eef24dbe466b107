import CKernels
import COpenBLAS
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// 0 until `setThreadCount`; read on every product (`DecodePool.shared`), hence an atomic.
private let configuredThreads = Atomic<Int>(0)

extension Kernels {
    /// Processor cores available to this process (the OpenBLAS default), read once: glibc answers
    /// `sysconf(_SC_NPROCESSORS_ONLN)` by opening and parsing /sys/devices/system/cpu/online, and
    /// `threadCount` is read on every product (it was 8 % of a batch-8 decode step's samples).
    public static let coreCount: Int = {
        #if canImport(Glibc)
        let n = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        return max(1, n)
        #else
        return 1
        #endif
    }()

    /// Threads of the compute pools that run every product, split by output columns (all cores
    /// unless set). Process-wide.
    public static var threadCount: Int {
        let configured = configuredThreads.load(ordering: .relaxed)
        return configured > 0 ? configured : coreCount
    }

    /// Sets the compute thread count (process-wide); values below 1 mean "all cores". OpenBLAS
    /// itself is made single-threaded: each pool thread calls it on its share of a product.
    public static func setThreadCount(_ count: Int) {
        configuredThreads.store(count >= 1 ? count : coreCount, ordering: .relaxed)
        openblas_set_num_threads(1)
    }

    /// OpenBLAS on one thread for the calls of our pool threads. Its own worker threads spin for a
    /// long while after each product, taking the second core from our pool's norms, attention and
    /// activations in between (sched_yield ping-pong: 10 % of the vision encoder's samples).
    static func useSingleThreadedBLAS() {
        if openblas_get_num_threads() != 1 { openblas_set_num_threads(1) }
    }

    /// Runs `body` with OpenBLAS's own threading on `threads` threads (`bench`'s sgemm bound, which
    /// measures OpenBLAS as it runs alone), then single-threaded again.
    public static func withBLASThreads<T>(_ threads: Int, _ body: () throws -> T) rethrows -> T {
        openblas_set_num_threads(Int32(max(1, threads)))
        defer { openblas_set_num_threads(1) }
        return try body()
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
