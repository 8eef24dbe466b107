import Foundation
import Service
import Spool
import Store

/// A deterministic stand-in for the inference engine: every job "decodes" one token per step until it has
/// `max_tokens` (default 4) of them. It keeps the engine's contract (batch membership, encoder runs
/// through the embedding cache, per-job errors) and records what happened for the tests to check.
final class ScriptedExecutor: JobExecutor, @unchecked Sendable {
    let modelName = "scripted-test-model"
    let cache: (any VisionEmbeddingCache)?
    let contextLength: Int
    let stepDelay: TimeInterval
    /// Called at the start of every step with its index (0-based), on the daemon's thread.
    let onStep: (@Sendable (Int) -> Void)?

    static let imageTokens = 64

    private struct Slot {
        let request: JobRequest
        var produced = 0
        let promptTokens: Int
        let cacheHits: Int
        let visionMs: Double
    }

    private let lock = NSLock()
    private var batch: [String: Slot] = [:]
    private var _admissions: [[String]] = []
    private var _steps: [[String]] = []
    private var _encoderRuns: [[String]] = []
    private var _abandoned: [String] = []

    init(cache: (any VisionEmbeddingCache)? = nil, contextLength: Int = 512, stepDelay: TimeInterval = 0,
         onStep: (@Sendable (Int) -> Void)? = nil) {
        self.cache = cache
        self.contextLength = contextLength
        self.stepDelay = stepDelay
        self.onStep = onStep
    }

    /// Ids handed over by each `admit` call.
    var admissions: [[String]] { lock.withLock { _admissions } }
    /// The batch (sorted ids) at each step.
    var steps: [[String]] { lock.withLock { _steps } }
    /// Image hashes run through the "vision encoder", one array per `admit` call that encoded anything.
    var encoderRuns: [[String]] { lock.withLock { _encoderRuns } }
    var abandoned: [String] { lock.withLock { _abandoned } }
    var admittedIDs: [String] { admissions.flatMap { $0 } }

    func admit(_ jobs: [JobRequest]) -> [JobOutcome] {
        var outcomes: [JobOutcome] = []
        var toEncode: [String] = []
        lock.withLock { _admissions.append(jobs.map(\.id)) }
        for job in jobs {
            let words = job.question.split(separator: " ").count + (job.system?.split(separator: " ").count ?? 0)
            let promptTokens = words + ScriptedExecutor.imageTokens * job.images.count
            if promptTokens > contextLength {
                outcomes.append(.failed(id: job.id, reason: "the prompt is \(promptTokens) tokens but the model's context holds \(contextLength); shorten the question or send fewer images"))
                continue
            }
            if let corrupt = job.images.first(where: { $0.format == .jpeg && !$0.bytes.suffix(2).elementsEqual([0xFF, 0xD9]) }) {
                outcomes.append(.failed(id: job.id, reason: "image \"\(corrupt.name)\" is corrupt: the JPEG data ends early"))
                continue
            }
            var hits = 0
            for image in job.images {
                if toEncode.contains(image.sha256) || cache?.embedding(forImage: image.sha256) != nil {
                    hits += 1
                } else {
                    toEncode.append(image.sha256)
                }
            }
            lock.withLock {
                batch[job.id] = Slot(request: job, promptTokens: promptTokens, cacheHits: hits,
                                     visionMs: Double(job.images.count - hits) * 10)
            }
        }
        if !toEncode.isEmpty {
            lock.withLock { _encoderRuns.append(toEncode) }
            for sha in toEncode {
                cache?.store(VisionEmbedding(shape: [ScriptedExecutor.imageTokens, 2],
                                             values: (0..<(ScriptedExecutor.imageTokens * 2)).map(Float.init)), forImage: sha)
            }
        }
        return outcomes
    }

    func step() -> [JobOutcome] {
        let index = lock.withLock { _steps.count }
        onStep?(index)
        if stepDelay > 0 { Thread.sleep(forTimeInterval: stepDelay) }
        return lock.withLock {
            _steps.append(batch.keys.sorted())
            var finished: [JobOutcome] = []
            for id in batch.keys.sorted() {
                guard var slot = batch[id] else { continue }
                slot.produced += 1
                batch[id] = slot
                if slot.produced >= (slot.request.parameters.maxTokens ?? 4) {
                    batch[id] = nil
                    finished.append(.answered(id: id, JobAnswer(
                        text: "answer to: \(slot.request.question)", promptTokens: slot.promptTokens,
                        outputTokens: slot.produced, visionMs: slot.visionMs, prefillMs: 1,
                        decodeMs: Double(slot.produced), cacheHits: slot.cacheHits)))
                }
            }
            return finished
        }
    }

    func abandon(_ id: String) {
        lock.withLock {
            batch[id] = nil
            _abandoned.append(id)
        }
    }
}

/// Collects notifications in memory (the datagram test uses the real `SystemdNotifier`).
final class RecordingNotifier: ServiceNotifier, @unchecked Sendable {
    private let lock = NSLock()
    private var _messages: [String] = []
    let watchdogPeriod: Duration?

    init(watchdogPeriod: Duration? = nil) { self.watchdogPeriod = watchdogPeriod }

    func notify(_ state: String) { lock.withLock { _messages.append(state) } }
    var messages: [String] { lock.withLock { _messages } }
}

/// A daemon running on its own thread, as `serve` runs it on the main thread.
final class RunningDaemon: @unchecked Sendable {
    let daemon: SpoolDaemon
    private let lock = NSLock()
    private var finished = false
    private var failure: (any Error)?

    private var returnedAt: ContinuousClock.Instant?

    init(_ daemon: SpoolDaemon) {
        self.daemon = daemon
        Thread.detachNewThread { [self] in
            do { try daemon.run() } catch { lock.withLock { failure = error } }
            lock.withLock {
                finished = true
                returnedAt = ContinuousClock().now
            }
        }
    }

    /// When `run()` returned, taken on the daemon's own thread (test threads can be slow to notice).
    var returned: ContinuousClock.Instant? { lock.withLock { returnedAt } }

    var isFinished: Bool { lock.withLock { finished } }

    /// SIGTERM's path: request a stop and wait for `run()` to return.
    func stop(timeout: Duration = .seconds(20)) async throws {
        daemon.requestStop()
        try await waitUntil(timeout: timeout, "the daemon to stop") { self.isFinished }
        if let failure = lock.withLock({ failure }) { throw failure }
    }
}

struct TimedOut: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

func waitUntil(timeout: Duration = .seconds(60), _ what: String, _ condition: () throws -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while try !condition() {
        guard clock.now < deadline else { throw TimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Lets an executor hook (which exists before the daemon) stop the daemon from inside a step, at an exact
/// point of the work rather than whenever a busy test thread gets round to it.
final class StopSwitch: @unchecked Sendable {
    private let lock = NSLock()
    private var daemon: SpoolDaemon?
    private var pulledAt: ContinuousClock.Instant?

    func attach(_ daemon: SpoolDaemon) { lock.withLock { self.daemon = daemon } }

    func pull() {
        let daemon = lock.withLock { () -> SpoolDaemon? in
            pulledAt = ContinuousClock().now
            return self.daemon
        }
        daemon?.requestStop()
    }

    var pulled: ContinuousClock.Instant? { lock.withLock { pulledAt } }
}
