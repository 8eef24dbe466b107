// A `serve` stand-in for the integration tests: the real daemon loop (Service.SpoolDaemon) driven by a
// paced fake executor, so crash, restart and two-daemon behaviour can be tested on real processes
// before the inference engine exists. Not shipped; `minimindv serve` is the product.
//
//   SpoolTestDaemon <spool> <db> <batch> <step-ms> <admissions-log> [<die-after>]
//
// Each job decodes `max_tokens` (default 4) steps of <step-ms>. A question starting with "CRASH" kills
// the process (SIGKILL) at its second step: the poison job of issue 5 point 7. With <die-after> N > 0 the
// process kills itself inside the step that completes its N-th answer, before that answer is returned
// (so computed but never committed): a crash at an exact point of the work, whatever the machine's load.
import Foundation
import Logging
import Service
import Spool
import Store

final class PacedExecutor: JobExecutor {
    let modelName = "paced-test-executor"
    let stepDelay: TimeInterval
    let log: FileHandle
    let dieAfter: Int
    private var answered = 0
    private var batch: [String: (request: JobRequest, produced: Int)] = [:]

    init(stepDelay: TimeInterval, log: FileHandle, dieAfter: Int) {
        self.stepDelay = stepDelay
        self.log = log
        self.dieAfter = dieAfter
    }

    func admit(_ jobs: [JobRequest]) -> [JobOutcome] {
        for job in jobs {
            batch[job.id] = (job, 0)
            log.write(Data("\(job.id)\n".utf8))
        }
        return []
    }

    func step() -> [JobOutcome] {
        Thread.sleep(forTimeInterval: stepDelay)
        var finished: [JobOutcome] = []
        for id in batch.keys.sorted() {
            guard var slot = batch[id] else { continue }
            slot.produced += 1
            if slot.request.question.hasPrefix("CRASH") && slot.produced == 2 { kill(getpid(), SIGKILL) }
            if slot.produced >= (slot.request.parameters.maxTokens ?? 4) {
                answered += 1
                if answered == dieAfter { kill(getpid(), SIGKILL) }
                batch[id] = nil
                finished.append(.answered(id: id, JobAnswer(
                    text: "answer to: \(slot.request.question)", promptTokens: 10, outputTokens: slot.produced,
                    visionMs: 0, prefillMs: 0, decodeMs: Double(slot.produced) * stepDelay * 1000, cacheHits: 0)))
            } else {
                batch[id] = slot
            }
        }
        return finished
    }

    func abandon(_ id: String) { batch[id] = nil }
}

let arguments = CommandLine.arguments
guard arguments.count == 6 || arguments.count == 7, let batch = Int(arguments[3]), let stepMs = Double(arguments[4]) else {
    FileHandle.standardError.write(Data("usage: SpoolTestDaemon <spool> <db> <batch> <step-ms> <admissions-log> [<die-after>]\n".utf8))
    exit(64)
}
let dieAfter = arguments.count == 7 ? Int(arguments[6]) ?? 0 : 0
_ = FileManager.default.createFile(atPath: arguments[5], contents: nil)
guard let log = FileHandle(forWritingAtPath: arguments[5]) else { exit(66) }
log.seekToEndOfFile()

LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .warning
    return handler
}
do {
    let store = try ResultStore(path: arguments[2])
    let configuration = DaemonConfiguration(
        spool: SpoolDirectory(URL(fileURLWithPath: arguments[1])), batchSize: batch, maxAttempts: 3,
        rescanInterval: .milliseconds(100), drainTimeout: .seconds(5))
    let daemon = SpoolDaemon(configuration: configuration, store: store,
                             executor: PacedExecutor(stepDelay: stepMs / 1000, log: log, dieAfter: dieAfter),
                             logger: Logger(label: "spool-test-daemon"))
    let signals = StopSignals { _ in daemon.requestStop() }
    try daemon.run()
    withExtendedLifetime(signals) {}
} catch {
    FileHandle.standardError.write(Data("SpoolTestDaemon: \(error)\n".utf8))
    exit(1)
}
