import Spool
import Store

/// The seam between the daemon and the inference engine (continuous batching).
///
/// The daemon calls these methods from its one loop thread, never concurrently:
/// - `admit` hands over newly claimed, validated jobs. An implementation adds them to its running batch and
///   runs the images of all of them through the vision encoder together, first asking the
///   `VisionEmbeddingCache` it was built with (keyed by `JobImage.sha256`) and storing what it encodes.
///   It prefills their prompts. A job that cannot run (corrupt image, prompt longer than the context) is
///   returned at once as `.failed`; one that is already complete may be returned as `.answered`.
/// - `step` runs one decode step for every job in the batch (old and newly admitted alike) and returns the
///   jobs that finished or failed in it; those leave the batch. The daemon admits new jobs between steps,
///   so a job joins a running batch at the next step.
/// - `abandon` drops a job without a result (shutdown); it will be run again from scratch later.
///
/// Every job admitted ends in exactly one outcome or one `abandon`. Errors are per job: an executor never
/// throws for one bad job. `JobAnswer.cacheHits` counts the images that skipped the encoder.
public protocol JobExecutor: AnyObject {
    /// Recorded in each result row's `model` column (e.g. the model file name).
    var modelName: String { get }
    func admit(_ jobs: [JobRequest]) -> [JobOutcome]
    func step() -> [JobOutcome]
    func abandon(_ id: String)
}

/// How a job left the batch.
public enum JobOutcome: Sendable, Equatable {
    case answered(id: String, JobAnswer)
    /// `reason` lands in the `error` column and `error.txt`; say what was wrong and what to do.
    case failed(id: String, reason: String)

    public var id: String {
        switch self {
        case .answered(let id, _), .failed(let id, _): return id
        }
    }
}
