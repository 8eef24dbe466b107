import Dispatch
import Foundation
import Logging
import Spool
import Store

/// Settings of one daemon; `serve` fills them from flags and the config file.
public struct DaemonConfiguration: Sendable {
    public var spool: SpoolDirectory
    /// Jobs decoded together (continuous batching).
    public var batchSize: Int
    /// Move answered jobs to `done/` (true) or delete them (`--no-keep-done`).
    public var keepDone: Bool
    /// A job that was running when the daemon died this many times goes to `failed/` as poison.
    public var maxAttempts: Int
    /// The safety-net rescan of `incoming/` (and of dead peers' claims) besides inotify.
    public var rescanInterval: Duration
    /// How long a SIGTERM may wait for the running batch before unfinished jobs go back to `incoming/`.
    public var drainTimeout: Duration
    /// STATUS= is sent at most this often.
    public var statusInterval: Duration
    public var limits: JobLimits

    public init(spool: SpoolDirectory, batchSize: Int = 4, keepDone: Bool = true, maxAttempts: Int = 3,
                rescanInterval: Duration = .seconds(5), drainTimeout: Duration = .seconds(30),
                statusInterval: Duration = .seconds(2), limits: JobLimits = JobLimits()) {
        self.spool = spool
        self.batchSize = max(1, batchSize)
        self.keepDone = keepDone
        self.maxAttempts = max(1, maxAttempts)
        self.rescanInterval = rescanInterval
        self.drainTimeout = drainTimeout
        self.statusInterval = statusInterval
        self.limits = limits
    }
}

/// Counters shown in STATUS= and returned to tests.
public struct DaemonStatistics: Sendable, Equatable {
    public var queued = 0
    public var running = 0
    public var done = 0
    public var failed = 0
    public var outputTokens = 0
    /// Seconds spent inside the executor (admit + step).
    public var busySeconds = 0.0

    public var tokensPerSecond: Double { busySeconds > 0 ? Double(outputTokens) / busySeconds : 0 }

    public var statusLine: String {
        String(format: "queue %d, running %d, done %d, failed %d, %.1f tok/s", queued, running, done, failed, tokensPerSecond)
    }
}

/// The spool daemon: claims jobs from `incoming/`, runs them through a `JobExecutor` in a continuously
/// refilled batch, commits each result to the `ResultStore` and only then moves the job to `done/`.
/// `run()` blocks its thread until `requestStop()` (SIGTERM) and a drain; it never stops for bad input.
public final class SpoolDaemon: @unchecked Sendable {
    public let configuration: DaemonConfiguration
    private let store: ResultStore
    private let executor: any JobExecutor
    private let notifier: any ServiceNotifier
    private let logger: Logger
    private var spool: SpoolDirectory { configuration.spool }

    private let stopLock = NSLock()
    private var stopRequested = false
    private var watch: DirectoryWatch?

    // Loop-thread state.
    private struct RunningJob {
        let name: String
        let path: String
        let record: JobRecord
    }
    private var running: [String: RunningJob] = [:]
    private var pending: [String] = []
    private var priorities: [String: Int] = [:]
    private var stats = DaemonStatistics()
    private let statsLock = NSLock()
    private var claim: SpoolClaim?

    public init(configuration: DaemonConfiguration, store: ResultStore, executor: any JobExecutor,
                notifier: any ServiceNotifier = SystemdNotifier(), logger: Logger = Logger(label: "minimindv.serve")) {
        self.configuration = configuration
        self.store = store
        self.executor = executor
        self.notifier = notifier
        self.logger = logger
    }

    /// A snapshot of the counters (safe from any thread).
    public var statistics: DaemonStatistics { statsLock.withLock { stats } }

    /// Asks the loop to stop claiming, drain and return. Safe from any thread, any number of times.
    public func requestStop() {
        let watch = stopLock.withLock { () -> DirectoryWatch? in
            stopRequested = true
            return self.watch
        }
        watch?.wake()
    }

    private var isStopRequested: Bool { stopLock.withLock { stopRequested } }

    /// Runs until stopped. Throws only if the spool cannot be used at all (missing, unwritable).
    public func run() throws {
        do { try spool.create() } catch { throw DaemonError.spool("\(error)") }
        let claim: SpoolClaim
        do { claim = try SpoolClaim(spool: spool) } catch { throw DaemonError.spool("\(error)") }
        self.claim = claim
        defer {
            claim.release()
            self.claim = nil
        }
        let watch = try DirectoryWatch(path: spool.incoming)
        stopLock.withLock { self.watch = watch }
        defer { stopLock.withLock { self.watch = nil } }

        logger.info("starting", metadata: ["spool": "\(spool.root.path)", "claim": "\(claim.owner)",
                                           "batch": "\(configuration.batchSize)", "model": "\(executor.modelName)"])
        recoverAbandonedClaims()
        rejectStrayActiveEntries()

        let clock = ContinuousClock()
        let watchdogPeriod = notifier.watchdogPeriod
        var nextWatchdog = clock.now
        var nextRescan = clock.now
        var nextStatus = clock.now
        var needScan = true
        var drainDeadline: ContinuousClock.Instant?
        updateQueued()
        notifier.notify("READY=1\nSTATUS=\(statistics.statusLine)")
        logger.info("ready", metadata: ["status": "\(statistics.statusLine)"])

        while true {
            let now = clock.now
            if drainDeadline == nil && isStopRequested {
                drainDeadline = now + configuration.drainTimeout
                notifier.notify("STOPPING=1\nSTATUS=stopping: finishing \(running.count) running jobs")
                logger.info("stopping", metadata: ["running": "\(running.count)", "bound": "\(configuration.drainTimeout)"])
            }
            if let deadline = drainDeadline, running.isEmpty || now >= deadline { break }
            if let period = watchdogPeriod, now >= nextWatchdog {
                notifier.notify("WATCHDOG=1")
                nextWatchdog = now + period / 2
            }
            if drainDeadline == nil {
                if now >= nextRescan {
                    needScan = true
                    nextRescan = now + configuration.rescanInterval
                    recoverAbandonedClaims()
                    rejectStrayActiveEntries()
                    store.checkpoint()
                }
                if needScan {
                    scanIncoming()
                    needScan = false
                }
                if running.count < configuration.batchSize && !pending.isEmpty {
                    admitPending()
                }
            }
            if !running.isEmpty {
                if watch.drainEvents() { needScan = true }
                let started = clock.now
                let outcomes = executor.step()
                addBusy(clock.now - started)
                record(outcomes)
            } else if drainDeadline == nil && (pending.isEmpty || running.count >= configuration.batchSize) {
                var wake = nextRescan
                if watchdogPeriod != nil { wake = min(wake, nextWatchdog) }
                if clock.now < wake, watch.wait(timeout: wake - clock.now) { needScan = true }
            }
            if clock.now >= nextStatus {
                updateQueued()
                notifier.notify("STATUS=\(statistics.statusLine)")
                nextStatus = clock.now + configuration.statusInterval
            }
        }
        returnUnfinishedJobs()
        updateQueued()
        notifier.notify("STATUS=stopped; \(statistics.statusLine)")
        logger.info("stopped", metadata: ["status": "\(statistics.statusLine)"])
    }

    // MARK: - Claiming and admission

    private func scanIncoming() {
        let names: [String]
        do { names = try spool.incomingNames() } catch {
            logger.error("cannot list incoming/", metadata: ["error": "\(error)"])
            return
        }
        var known: [String: Int] = [:]
        for name in names { known[name] = priorities[name] ?? spool.peekPriority(ofIncoming: name) }
        priorities = known
        // Highest priority first, then oldest id (ids start with their submission time).
        pending = names.sorted { (known[$0] ?? 0, $1) > (known[$1] ?? 0, $0) }
        setStat { $0.queued = names.count }
    }

    private func admitPending() {
        guard let claim else { return }
        // Claim and read first, then record every start in one transaction: one commit to disk per
        // admission rather than per job.
        var claimed: [(name: String, path: String, request: JobRequest, record: JobRecord)] = []
        while running.count + claimed.count < configuration.batchSize, !pending.isEmpty {
            let name = pending.removeFirst()
            priorities[name] = nil
            let won: Bool
            do { won = try claim.claim(name) } catch {
                logger.error("cannot claim", metadata: ["job": "\(name)", "error": "\(error)"])
                continue
            }
            guard won else { continue }  // another daemon was faster
            let path = claim.pathOfClaimed(name)
            let id = SpoolDirectory.jobID(forEntry: name)
            let request: JobRequest
            do {
                request = try spool.readJob(atPath: path, name: name, limits: configuration.limits)
            } catch {
                reject(name: name, path: path, record: JobRecord(id: id, status: .failed, worker: claim.owner),
                       reason: error.description, replacing: [.queued])
                continue
            }
            let record = JobRecord(
                id: request.id, status: .running, question: request.question, system: request.system,
                images: request.images.map(\.sha256), model: executor.modelName, parameters: request.parameters.jsonText,
                priority: request.priority, submittedAt: Timestamp.string(request.submittedAt), worker: claim.owner)
            claimed.append((name, path, request, record))
        }
        var admitted: [JobRequest] = []
        if !claimed.isEmpty {
            do {
                for (job, start) in zip(claimed, try store.start(claimed.map(\.record))) {
                    switch start {
                    case .started(let attempt):
                        running[job.request.id] = RunningJob(name: job.name, path: job.path, record: job.record)
                        admitted.append(job.request)
                        logger.info("claimed", metadata: ["job": "\(job.request.id)", "attempt": "\(attempt)",
                                                          "images": "\(job.request.images.count)"])
                    case .duplicate(let existing):
                        reject(name: job.name, path: job.path, record: job.record,
                               reason: "duplicate id \"\(job.request.id)\": a job with this id was already submitted (it is \(existing.rawValue)); submit again under a new id",
                               replacing: [])
                    }
                }
            } catch {
                for job in claimed {
                    logger.error("cannot record the start of a job; returning it to incoming/",
                                 metadata: ["job": "\(job.request.id)", "error": "\(error)"])
                    _ = try? spool.requeue(job.path, name: job.name)
                }
            }
        }
        setStat { $0.running = running.count }
        guard !admitted.isEmpty else { return }
        let clock = ContinuousClock()
        let started = clock.now
        let outcomes = executor.admit(admitted)
        addBusy(clock.now - started)
        record(outcomes)
    }

    // MARK: - Results

    private func record(_ outcomes: [JobOutcome]) {
        var answered: [(job: RunningJob, id: String, answer: JobAnswer)] = []
        for outcome in outcomes {
            guard let job = running.removeValue(forKey: outcome.id) else {
                logger.warning("executor reported a job it was not running", metadata: ["job": "\(outcome.id)"])
                continue
            }
            switch outcome {
            case .answered(let id, let answer):
                answered.append((job, id, answer))
            case .failed(_, let reason):
                reject(name: job.name, path: job.path, record: job.record, reason: reason, replacing: [.running])
            }
        }
        if !answered.isEmpty {
            // The rows are committed (together: one commit to disk for the jobs of one step) before
            // the jobs leave active/: a crash in between is recovered by moving them to done/ without
            // computing them again.
            do {
                try store.finish(answered.map { ($0.id, $0.answer) })
            } catch {
                for (_, id, _) in answered {
                    logger.error("cannot commit a result; the job stays in active/ and is retried after a restart",
                                 metadata: ["job": "\(id)", "error": "\(error)"])
                }
                answered = []
            }
        }
        for (job, id, answer) in answered {
            do {
                try spool.retire(job.path, name: job.name, keep: configuration.keepDone)
            } catch {
                logger.error("result committed but the job could not leave active/", metadata: ["job": "\(id)", "error": "\(error)"])
            }
            setStat {
                $0.done += 1
                $0.outputTokens += answer.outputTokens
            }
            logger.info("done", metadata: ["job": "\(id)", "output_tokens": "\(answer.outputTokens)",
                                           "cache_hits": "\(answer.cacheHits)",
                                           "reused_prompt_tokens": "\(answer.reusedPromptTokens)",
                                           "prefill_ms": "\(Int(answer.prefillMs))",
                                           "decode_ms": "\(Int(answer.decodeMs))"])
        }
        setStat { $0.running = running.count }
    }

    /// Writes the error row, then moves the job to `failed/` with its `error.txt`.
    private func reject(name: String, path: String, record: JobRecord, reason: String, replacing: Set<JobStatus>) {
        var rowID = record.id
        do {
            rowID = try store.fail(record, error: reason, replacing: replacing)
        } catch {
            logger.error("cannot record a failure in the database", metadata: ["job": "\(record.id)", "error": "\(error)"])
        }
        var failedName = name
        if rowID != record.id {
            failedName = name.hasSuffix(".json") && !isDirectory(path) ? "\(rowID).json" : rowID
        }
        do {
            try spool.reject(path, name: failedName, reason: "\(rowID): \(reason)")
        } catch {
            logger.error("cannot move a failed job to failed/", metadata: ["job": "\(rowID)", "error": "\(error)"])
        }
        setStat { $0.failed += 1 }
        logger.warning("failed", metadata: ["job": "\(rowID)", "error": "\(reason)"])
    }

    private func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    // MARK: - Recovery and shutdown

    /// Jobs left in the claim folder of a dead daemon: already answered ones go to `done/` (not recomputed),
    /// ones that were running too often go to `failed/` as poison, the others back to `incoming/`.
    private func recoverAbandonedClaims() {
        let abandoned: [AbandonedClaim]
        do { abandoned = try SpoolClaim.abandoned(in: spool) } catch {
            logger.error("cannot look for abandoned jobs", metadata: ["error": "\(error)"])
            return
        }
        for dead in abandoned {
            let names = (try? dead.names()) ?? []
            if !names.isEmpty {
                logger.notice("recovering jobs of a daemon that stopped", metadata: ["claim": "\(dead.owner)", "jobs": "\(names.count)"])
            }
            for name in names {
                recover(name: name, path: dead.pathOf(name))
            }
            dead.finish()
        }
    }

    private func recover(name: String, path: String) {
        let id = SpoolDirectory.jobID(forEntry: name)
        let row: JobRecord?
        do { row = try store.record(id: id) } catch {
            logger.error("cannot read the database while recovering; leaving the job", metadata: ["job": "\(id)", "error": "\(error)"])
            return
        }
        do {
            switch row?.status {
            case .done?:
                try spool.retire(path, name: name, keep: configuration.keepDone)
                logger.info("recovered an answered job; not computed again", metadata: ["job": "\(id)"])
            case .failed?:
                try spool.reject(path, name: name, reason: "\(id): \(row?.error ?? "failed")")
            case .running?, .queued?:
                if let row, row.attempts >= configuration.maxAttempts {
                    reject(name: name, path: path, record: row,
                           reason: "poison job: the daemon stopped \(row.attempts) times while running it (limit \(configuration.maxAttempts)); check the input, then resubmit under a new id",
                           replacing: [.running, .queued])
                } else {
                    try store.requeue(id: id, refundAttempt: false)
                    try spool.requeue(path, name: name)
                    logger.notice("returned an interrupted job to incoming/", metadata: ["job": "\(id)", "attempts": "\(row?.attempts ?? 0)"])
                }
            case nil:
                try spool.requeue(path, name: name)
                logger.notice("returned an interrupted job to incoming/", metadata: ["job": "\(id)"])
            }
        } catch {
            logger.error("cannot recover a job", metadata: ["job": "\(id)", "error": "\(error)"])
        }
    }

    /// Anything put straight into `active/` bypassed the protocol: refuse it rather than guess.
    private func rejectStrayActiveEntries() {
        for name in (try? spool.strayActiveNames()) ?? [] {
            let id = SpoolDirectory.jobID(forEntry: name)
            reject(name: name, path: "\(spool.active)/\(name)", record: JobRecord(id: id, status: .failed, worker: claim?.owner),
                   reason: "\"\(name)\" was found directly in active/, which only daemons write; submit jobs by renaming them from tmp/ into incoming/",
                   replacing: [.queued])
        }
    }

    /// On shutdown: unfinished jobs go back to `incoming/` and their start is not counted as an attempt.
    private func returnUnfinishedJobs() {
        for (id, job) in running.sorted(by: { $0.key < $1.key }) {
            executor.abandon(id)
            do {
                try store.requeue(id: id, refundAttempt: true)
                try spool.requeue(job.path, name: job.name)
                logger.info("returned to incoming/", metadata: ["job": "\(id)"])
            } catch {
                logger.error("cannot return a job to incoming/; it is recovered at the next start",
                             metadata: ["job": "\(id)", "error": "\(error)"])
            }
        }
        running.removeAll()
        setStat { $0.running = 0 }
    }

    // MARK: - Counters

    private func setStat(_ change: (inout DaemonStatistics) -> Void) { statsLock.withLock { change(&stats) } }

    private func addBusy(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        setStat { $0.busySeconds += Double(seconds) + Double(attoseconds) / 1e18 }
    }

    private func updateQueued() {
        let count = (try? spool.incomingNames().count) ?? 0
        setStat { $0.queued = count }
    }
}

/// Write end of the pipe the signal handler reports to (a C handler cannot capture context).
nonisolated(unsafe) private var stopSignalPipe: Int32 = -1

/// Turns SIGTERM and SIGINT into a call of `onSignal` (the daemon's `requestStop()`), on a thread of its own.
/// The handler is installed synchronously, so there is no moment in which a signal is lost: before it,
/// the default action ends the process; after it, the daemon drains. Keep the value alive while serving.
public final class StopSignals: @unchecked Sendable {
    private let signals: [Int32]
    private let writeFD: Int32

    public init(signals: [Int32] = [SIGTERM, SIGINT], onSignal: @escaping @Sendable (Int32) -> Void) {
        self.signals = signals
        var fds: [Int32] = [-1, -1]
        _ = pipe(&fds)
        let readFD = fds[0]
        writeFD = fds[1]
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        _ = fcntl(writeFD, F_SETFL, fcntl(writeFD, F_GETFL) | O_NONBLOCK)
        Thread.detachNewThread {
            var byte: UInt8 = 0
            while true {
                let got = read(readFD, &byte, 1)
                if got < 0 && errno == EINTR { continue }
                if got <= 0 || byte == 0 { break }
                onSignal(Int32(byte))
            }
            close(readFD)
        }
        stopSignalPipe = writeFD
        // A parent may hand us these signals blocked (a blocked mask is inherited across exec); a blocked
        // SIGTERM would never reach the handler and systemd would have to SIGKILL us.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for number in signals { sigaddset(&unblock, number) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        for number in signals {
            // Only async-signal-safe work in the handler: one write(2).
            _ = signal(number) { received in
                var byte = UInt8(truncatingIfNeeded: received)
                _ = write(stopSignalPipe, &byte, 1)
            }
        }
    }

    deinit {
        for number in signals { _ = signal(number, SIG_DFL) }
        var stop: UInt8 = 0
        _ = write(writeFD, &stop, 1)
        close(writeFD)
    }
}
