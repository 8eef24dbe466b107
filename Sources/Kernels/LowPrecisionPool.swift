import CKernels

/// Threads for the low-precision kernels: the calling thread plus `threads - 1` workers.
///
/// Workers spin for ~0.3 ms after each job, so the ~60 small products of a decode step start
/// without a wake-up, then sleep. OpenBLAS must stay on one thread while this pool is busy, or the
/// two sets of threads fight over the cores: `Kernels.setThreadCount` and the pool-split
/// `Kernels.linear` keep it so.
/// One pool runs one job at a time; concurrent callers wait for each other.
public final class ComputePool: @unchecked Sendable {
    /// Threads taking part in each job, the caller included.
    public let threads: Int
    let raw: OpaquePointer?

    /// A pool of `threads` threads in total (at least 1; 1 means everything runs on the caller).
    public init(threads: Int) {
        let count = max(1, threads)
        self.threads = count
        // If the OS refuses a thread, degrade to running on the caller rather than fail.
        raw = count > 1 ? ck_pool_create(Int32(clamping: count)) : nil
    }

    deinit { if let raw { ck_pool_destroy(raw) } }

    /// Calls `body(i)` for every `i` in `0..<count`, spread over the pool's threads, and returns
    /// when all calls are done. `body` runs concurrently with itself.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        guard count > 0 else { return }
        withoutActuallyEscaping(body) { escaping in
            var box = TaskBox(body: escaping)
            withUnsafeMutablePointer(to: &box) { pointer in
                ck_pool_run(raw, { context, task, _ in
                    context!.assumingMemoryBound(to: TaskBox.self).pointee.body(task)
                }, pointer, count)
            }
        }
    }
}

private struct TaskBox {
    let body: (Int) -> Void
}
