import Foundation
import Logging
import Service
import Spool
import Store
import Testing
import TestSupport

/// A temporary spool and results database, and a daemon factory with test-sized timings.
struct Bench {
    let root: URL
    let spool: SpoolDirectory
    let store: ResultStore

    init() throws {
        root = try Fixtures.temporaryDirectory("daemon-test")
        spool = SpoolDirectory(root.appendingPathComponent("spool"))
        try spool.create()
        store = try ResultStore(path: root.appendingPathComponent("results.sqlite").path)
    }

    func daemon(_ executor: ScriptedExecutor, batch: Int = 4, keepDone: Bool = true, drain: Duration = .seconds(10),
                limits: JobLimits = JobLimits(), notifier: any ServiceNotifier = RecordingNotifier()) -> SpoolDaemon {
        var logger = Logger(label: "test.daemon")
        logger.logLevel = .error
        let configuration = DaemonConfiguration(spool: spool, batchSize: batch, keepDone: keepDone, maxAttempts: 3,
                                                rescanInterval: .milliseconds(100), drainTimeout: drain,
                                                statusInterval: .milliseconds(50), limits: limits)
        return SpoolDaemon(configuration: configuration, store: store, executor: executor, notifier: notifier, logger: logger)
    }

    @discardableResult
    func submit(_ question: String, images: [URL] = [], maxTokens: Int? = nil, id: String? = nil, priority: Int? = nil) throws -> String {
        try JobWriter(spool: spool).submit(JobSubmission(
            question: question, imageFiles: images, parameters: SamplingParameters(maxTokens: maxTokens), priority: priority, id: id))
    }

    /// Writes `incoming/<name>/` by hand (for malformed jobs the writer would not produce).
    func rawJob(_ name: String, json: String, files: [String: Data] = [:]) throws {
        let dir = root.appendingPathComponent("spool/tmp/\(name)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(json.utf8).write(to: dir.appendingPathComponent("job.json"))
        for (file, data) in files { try data.write(to: dir.appendingPathComponent(file)) }
        try FileManager.default.moveItem(atPath: dir.path, toPath: "\(spool.incoming)/\(name)")
    }

    func rawFile(_ name: String, _ text: String) throws {
        let tmp = "\(spool.tmp)/\(name)"
        try Data(text.utf8).write(to: URL(fileURLWithPath: tmp))
        try FileManager.default.moveItem(atPath: tmp, toPath: "\(spool.incoming)/\(name)")
    }

    func row(_ id: String) throws -> JobRecord? { try store.record(id: id) }

    func finished(_ ids: [String]) throws -> Bool {
        try ids.allSatisfy { id in
            guard let status = try store.record(id: id)?.status else { return false }
            return status == .done || status == .failed
        }
    }

    func names(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).sorted()
    }

    /// Everything under active/, claim folders included.
    func activeContents() -> [String] {
        names(spool.active).flatMap { name in
            name.hasPrefix("@") ? names("\(spool.active)/\(name)").map { "\(name)/\($0)" } : [name]
        }
    }
}

let birdJPEG = Fixtures.minimind.appendingPathComponent("images/bird-0.jpg")
let secondJPEG = Fixtures.minimind.appendingPathComponent("images/bird-1.jpg")
let largeJPEG = Fixtures.minimind.appendingPathComponent("images/v2-Bicycle-Flowers.jpg")  // 341 KB

@Suite struct DaemonBadInput {
    /// Issue 5 point 6: every kind of bad input ends in failed/ with an error row saying what was wrong,
    /// and the daemon goes on to answer the good job queued behind them.
    @Test func everyBadInputEndsInFailedWithAClearErrorRowAndTheDaemonCarriesOn() async throws {
        let bench = try Bench()
        let bird = try Data(contentsOf: birdJPEG)
        let truncated = bird.prefix(bird.count / 2)
        let cases: [(id: String, error: String)] = [
            ("bad-json", "job.json is not valid JSON"),
            ("no-question", "has no \"question\" field"),
            ("wrong-type", "field \"max_tokens\" must be an integer"),
            ("unknown-field", "unknown field \"colour\""),
            ("missing-image", "image \"gone.jpg\" is listed in job.json but not in the job directory"),
            ("corrupt-image", "image \"half.jpg\" is corrupt"),
            ("unsupported-image", "image \"a.gif\" is neither JPEG nor PNG"),
            ("oversized-image", "image \"big.jpg\" is 341176 bytes; the limit is 300000 bytes"),
            ("too-long", "the prompt is 652 tokens but the model's context holds 512"),
            ("symlinked-image", "\"a.jpg\" is a symbolic link; links are refused"),
            ("dotdot-image", "image name \"../results.sqlite\" must be a plain file name"),
            ("absolute-image", "image name \"/etc/passwd\" must be a plain file name"),
            ("linked-job", "\"linked-job\" is a symbolic link"),
            ("inline-bad.json", "field \"temperature\" must be a number"),
            ("notes.txt", "a plain file not ending in .json"),
            ("by-hand", "was found directly in active/"),
        ]
        try bench.rawJob("bad-json", json: #"{"question": "q""#)
        try bench.rawJob("no-question", json: #"{"images": []}"#)
        try bench.rawJob("wrong-type", json: #"{"question": "q", "max_tokens": "many"}"#)
        try bench.rawJob("unknown-field", json: #"{"question": "q", "colour": 3}"#)
        try bench.rawJob("missing-image", json: #"{"question": "q", "images": ["gone.jpg"]}"#)
        try bench.rawJob("corrupt-image", json: #"{"question": "q", "images": ["half.jpg"]}"#, files: ["half.jpg": truncated])
        try bench.rawJob("unsupported-image", json: #"{"question": "q", "images": ["a.gif"]}"#, files: ["a.gif": Data("GIF89a..".utf8)])
        try bench.rawJob("oversized-image", json: #"{"question": "q", "images": ["big.jpg"]}"#,
                         files: ["big.jpg": try Data(contentsOf: largeJPEG)])
        let longQuestion = Array(repeating: "why", count: 588).joined(separator: " ")
        try bench.rawJob("too-long", json: #"{"question": "\#(longQuestion)", "images": ["a.jpg"]}"#, files: ["a.jpg": bird])
        try bench.rawJob("symlinked-image", json: #"{"question": "q", "images": ["a.jpg"]}"#)
        try FileManager.default.createSymbolicLink(atPath: "\(bench.spool.incoming)/symlinked-image/a.jpg", withDestinationPath: birdJPEG.path)
        try bench.rawJob("dotdot-image", json: #"{"question": "q", "images": ["../results.sqlite"]}"#)
        try bench.rawJob("absolute-image", json: #"{"question": "q", "images": ["/etc/passwd"]}"#)
        try FileManager.default.createSymbolicLink(atPath: "\(bench.spool.incoming)/linked-job",
                                                   withDestinationPath: "\(bench.spool.incoming)/wrong-type")
        try bench.rawFile("inline-bad.json", #"{"question": "q", "temperature": "hot"}"#)
        try bench.rawFile("notes.txt", "not a job")
        try FileManager.default.createDirectory(atPath: "\(bench.spool.active)/by-hand", withIntermediateDirectories: false)
        try Data(#"{"question": "q"}"#.utf8).write(to: URL(fileURLWithPath: "\(bench.spool.active)/by-hand/job.json"))
        let good = try bench.submit("and a good one", images: [birdJPEG], id: "zz-good")

        let executor = ScriptedExecutor(contextLength: 512)
        let running = RunningDaemon(bench.daemon(executor, limits: JobLimits(maxImageBytes: 300_000)))
        let ids = cases.map { SpoolDirectory.jobID(forEntry: $0.id) } + [good]
        try await waitUntil("every job to finish") { try bench.finished(ids) }

        for (entry, expected) in cases {
            let id = SpoolDirectory.jobID(forEntry: entry)
            let row = try #require(try bench.row(id), "no row for \(id)")
            #expect(row.status == .failed, "\(id)")
            #expect(row.error?.contains(expected) == true, "\(id): \(row.error ?? "nil")")
            // The entry is in failed/ with the same reason beside or inside it.
            let failedPath = "\(bench.spool.failed)/\(entry)"
            let isDirectory = (try? FileManager.default.destinationOfSymbolicLink(atPath: failedPath)) == nil
                && FileManager.default.fileExists(atPath: "\(failedPath)/error.txt")
            let errorFile = isDirectory ? "\(failedPath)/error.txt" : "\(failedPath).error.txt"
            let text = try String(contentsOfFile: errorFile, encoding: .utf8)
            #expect(text.contains(expected), "\(entry): \(text)")
        }
        #expect(try bench.row(good)?.status == .done)
        #expect(try bench.row(good)?.answer == "answer to: and a good one")
        // The linked-to directory was never touched through the link.
        #expect(try bench.row("wrong-type")?.error?.contains("max_tokens") == true)
        #expect(bench.names(bench.spool.incoming).isEmpty)

        // Duplicate id: a second job under an answered id fails under its own row; the answer stays.
        try bench.submit("asked again", id: good)
        try await waitUntil("the duplicate to be refused") {
            FileManager.default.fileExists(atPath: "\(bench.spool.failed)/\(good)~2/error.txt")
        }
        let duplicate = try #require(try bench.row("\(good)~2"))
        #expect(duplicate.status == .failed)
        #expect(duplicate.error?.contains("duplicate id \"zz-good\"") == true)
        #expect(try bench.row(good)?.answer == "answer to: and a good one")
        #expect(!executor.admittedIDs.contains("\(good)~2"))

        try await running.stop()
        #expect(bench.activeContents().isEmpty)
    }
}

@Suite struct DaemonBatching {
    @Test func aJobSubmittedWhileABatchRunsJoinsItAtTheNextStep() async throws {
        let bench = try Bench()
        let spool = bench.spool
        let executor = ScriptedExecutor(stepDelay: 0.002, onStep: { step in
            if step == 5 {
                _ = try? JobWriter(spool: spool).submit(JobSubmission(
                    question: "late", parameters: SamplingParameters(maxTokens: 3), id: "late"))
            }
        })
        try bench.submit("long", maxTokens: 60, id: "long")
        let running = RunningDaemon(bench.daemon(executor, batch: 4))
        try await waitUntil("both jobs") { try bench.finished(["long", "late"]) }
        try await running.stop()

        #expect(executor.admissions == [["long"], ["late"]])
        let steps = executor.steps
        let joined = try #require(steps.firstIndex { $0.contains("late") })
        let longLast = try #require(steps.lastIndex { $0.contains("long") })
        #expect(joined > 5)
        #expect(joined < longLast, "the late job ran alongside the long one")
        #expect(steps[joined] == ["late", "long"])
        // It joined at the first step after it was written (inotify), not at a rescan much later.
        #expect(joined - 5 < 20, "joined at step \(joined)")
        #expect(steps.filter { $0.contains("late") }.count == 3)
        #expect(try bench.row("late")?.outputTokens == 3)
        #expect(try bench.row("long")?.outputTokens == 60)
    }

    @Test func theBatchNeverExceedsItsSizeAndFinishedJobsMakeRoom() async throws {
        let bench = try Bench()
        let ids = try (0..<7).map { try bench.submit("job \($0)", maxTokens: 2 + $0, id: "j\($0)") }
        let executor = ScriptedExecutor()
        let running = RunningDaemon(bench.daemon(executor, batch: 3))
        try await waitUntil("all jobs") { try bench.finished(ids) }
        try await running.stop()
        #expect(executor.steps.allSatisfy { $0.count <= 3 })
        #expect(executor.steps.contains { $0.count == 3 })
        #expect(executor.admissions.first == ["j0", "j1", "j2"])
        #expect(Set(executor.admittedIDs) == Set(ids))
        #expect(try bench.store.records(JobQuery(status: .done)).count == 7)
        #expect(bench.names(bench.spool.done) == ids.sorted())
    }

    @Test func higherPriorityJobsAreClaimedFirst() async throws {
        let bench = try Bench()
        try bench.submit("low", id: "a-low")
        try bench.submit("high", id: "b-high", priority: 5)
        try bench.submit("normal", id: "c-normal")
        let executor = ScriptedExecutor()
        let running = RunningDaemon(bench.daemon(executor, batch: 1))
        try await waitUntil("all jobs") { try bench.finished(["a-low", "b-high", "c-normal"]) }
        try await running.stop()
        #expect(executor.admittedIDs == ["b-high", "a-low", "c-normal"])
    }

    /// Images of jobs admitted together go through the encoder together, each distinct image once; a job on
    /// a cached image runs no encoder (its row shows the hit), also after a restart with a new cache object.
    @Test func eachDistinctImageIsEncodedOnceAndTheCacheSurvivesARestart() async throws {
        let bench = try Bench()
        let cacheDir = bench.root.appendingPathComponent("cache")
        let birdHash = try JobImage(name: "b", bytes: Data(contentsOf: birdJPEG)).sha256
        let secondHash = try JobImage(name: "s", bytes: Data(contentsOf: secondJPEG)).sha256
        for i in 0..<3 { try bench.submit("same \(i)", images: [birdJPEG], id: "same\(i)") }
        try bench.submit("other", images: [secondJPEG], id: "other")

        let firstCache = EmbeddingCache(directory: cacheDir, fingerprint: "test-encoder", memoryBudgetBytes: 1 << 20)
        let first = ScriptedExecutor(cache: firstCache)
        let running = RunningDaemon(bench.daemon(first, batch: 8))
        try await waitUntil("four jobs") { try bench.finished(["same0", "same1", "same2", "other"]) }
        try await running.stop()
        #expect(first.admissions.count == 1)
        #expect(first.encoderRuns == [[secondHash, birdHash]])  // in admission order: "other" sorts first
        #expect(try bench.row("same0")?.cacheHits == 0)
        #expect(try bench.row("same1")?.cacheHits == 1)
        #expect(try bench.row("same2")?.cacheHits == 1)
        #expect(try bench.row("other")?.cacheHits == 0)
        #expect(try bench.row("same1")?.images == [birdHash])

        // A restarted daemon with a fresh cache object on the same directory still hits.
        let secondCache = EmbeddingCache(directory: cacheDir, fingerprint: "test-encoder", memoryBudgetBytes: 1 << 20)
        let second = ScriptedExecutor(cache: secondCache)
        try bench.submit("after restart", images: [birdJPEG], id: "again")
        let restarted = RunningDaemon(bench.daemon(second, batch: 8))
        try await waitUntil("the job after the restart") { try bench.finished(["again"]) }
        try await restarted.stop()
        #expect(second.encoderRuns.isEmpty)
        #expect(try bench.row("again")?.cacheHits == 1)
        #expect(try bench.row("again")?.visionMs == 0)
        #expect(secondCache.statistics.diskHits == 1)
    }
}

@Suite struct DaemonDurability {
    /// The row is committed before the job leaves active/: when the move to done/ is impossible, the answer
    /// is already in the database, and the next daemon moves the job on without computing it again.
    @Test func aResultIsCommittedBeforeTheJobLeavesActiveAndIsNotComputedAgain() async throws {
        let bench = try Bench()
        try bench.submit("q", id: "committed")
        // Once the job runs, make done/ unusable: a plain file in its place.
        let done = bench.spool.done
        let first = ScriptedExecutor(onStep: { step in
            guard step == 0 else { return }
            try? FileManager.default.removeItem(atPath: done)
            try? Data().write(to: URL(fileURLWithPath: done))
        })
        let running = RunningDaemon(bench.daemon(first))
        try await waitUntil("the answer") { try bench.finished(["committed"]) }
        try await running.stop()
        #expect(try bench.row("committed")?.status == .done)
        let claimFolders = bench.names(bench.spool.active)
        #expect(claimFolders.count == 1)
        #expect(bench.activeContents() == ["\(claimFolders[0])/committed"])

        try FileManager.default.removeItem(atPath: bench.spool.done)
        let second = ScriptedExecutor()
        let restarted = RunningDaemon(bench.daemon(second))
        try await waitUntil("the job to reach done/") { bench.names(bench.spool.done) == ["committed"] }
        try await restarted.stop()
        #expect(second.admissions.isEmpty)
        #expect(bench.activeContents().isEmpty)
        #expect(try bench.row("committed")?.attempts == 1)
    }

    @Test func withNoKeepDoneAnsweredJobsAreDeleted() async throws {
        let bench = try Bench()
        try bench.submit("q", images: [birdJPEG], id: "gone")
        let running = RunningDaemon(bench.daemon(ScriptedExecutor(), keepDone: false))
        try await waitUntil("the answer") { try bench.finished(["gone"]) }
        try await running.stop()
        #expect(bench.names(bench.spool.done).isEmpty)
        #expect(bench.activeContents().isEmpty)
        #expect(try bench.row("gone")?.status == .done)
    }

    /// A daemon that died leaves its claim folder behind; the next one returns the jobs with a raised attempt
    /// count, and a job that was running at 3 deaths goes to failed/ as poison instead of being run again.
    @Test func recoveryRequeuesInterruptedJobsAndRetiresPoisonJobs() async throws {
        let bench = try Bench()
        try bench.submit("interrupted", id: "interrupted")
        try bench.submit("poison", id: "poison")
        try bench.submit("answered", id: "answered")
        try bench.submit("never recorded", id: "unrecorded")
        // Simulate the dead daemon: claim, record starts, then drop the claim (as a kill -9 would).
        var dead: SpoolClaim? = try SpoolClaim(spool: bench.spool)
        for name in ["interrupted", "poison", "answered", "unrecorded"] { #expect(try dead!.claim(name)) }
        _ = try bench.store.start(JobRecord(id: "interrupted", status: .running, question: "interrupted"))
        for _ in 0..<3 {  // it was started three times and each time the daemon died
            _ = try bench.store.start(JobRecord(id: "poison", status: .running, question: "poison"))
            try bench.store.requeue(id: "poison", refundAttempt: false)
        }
        _ = try bench.store.start(JobRecord(id: "poison", status: .running, question: "poison"))
        try bench.store.requeue(id: "poison", refundAttempt: true)  // net: 3 attempts, status queued
        _ = try bench.store.start(JobRecord(id: "answered", status: .running, question: "answered"))
        try bench.store.finish(id: "answered", answer: JobAnswer(text: "done before the crash", promptTokens: 1,
                                                                 outputTokens: 1, visionMs: 0, prefillMs: 0, decodeMs: 0, cacheHits: 0))
        #expect(try bench.row("poison")?.attempts == 3)
        dead = nil

        let executor = ScriptedExecutor()
        let running = RunningDaemon(bench.daemon(executor))
        try await waitUntil("recovery") { try bench.finished(["interrupted", "poison", "answered", "unrecorded"]) }
        try await running.stop()

        #expect(try bench.row("interrupted")?.status == .done)
        #expect(try bench.row("interrupted")?.attempts == 2)
        #expect(try bench.row("unrecorded")?.status == .done)
        #expect(try bench.row("unrecorded")?.attempts == 1)
        let poison = try #require(try bench.row("poison"))
        #expect(poison.status == .failed)
        #expect(poison.error?.contains("poison job: the daemon stopped 3 times") == true)
        #expect(FileManager.default.fileExists(atPath: "\(bench.spool.failed)/poison/error.txt"))
        #expect(try bench.row("answered")?.answer == "done before the crash")
        #expect(Set(executor.admittedIDs) == ["interrupted", "unrecorded"])
        #expect(bench.names(bench.spool.done) == ["answered", "interrupted", "unrecorded"])
        #expect(bench.activeContents().isEmpty)
        #expect(bench.names(bench.spool.incoming).isEmpty)
    }

    /// SIGTERM's path: stop claiming, let the batch run within the bound, then return what is unfinished to
    /// incoming/ (its start not counted as an attempt) and leave nothing in active/.
    @Test func stoppingReturnsUnfinishedJobsToIncomingWithinTheDrainBound() async throws {
        let bench = try Bench()
        let ids = try (0..<4).map { try bench.submit("endless \($0)", maxTokens: 8000, id: "e\($0)") }
        let stop = StopSwitch()
        let executor = ScriptedExecutor(stepDelay: 0.001, onStep: { step in if step == 5 { stop.pull() } })
        let daemon = bench.daemon(executor, batch: 2, drain: .milliseconds(200))
        stop.attach(daemon)
        let running = RunningDaemon(daemon)
        try await waitUntil(timeout: .seconds(60), "the stop") { running.isFinished }
        try await running.stop()
        let took = try #require(running.returned) - #require(stop.pulled)
        #expect(took >= .milliseconds(200))
        #expect(took < .seconds(3))

        #expect(Set(executor.abandoned) == ["e0", "e1"])
        #expect(bench.names(bench.spool.incoming) == ids)
        #expect(bench.activeContents().isEmpty)
        #expect(bench.names(bench.spool.active).isEmpty, "the claim folder is removed")
        for id in ["e0", "e1"] {
            #expect(try bench.row(id)?.status == .queued)
            #expect(try bench.row(id)?.attempts == 0)
        }
        #expect(try bench.row("e2") == nil)

        // The next daemon answers all of them, each once; nothing was lost.
        let next = ScriptedExecutor()
        try FileManager.default.removeItem(atPath: bench.spool.incoming)
        try FileManager.default.createDirectory(atPath: bench.spool.incoming, withIntermediateDirectories: false)
        for id in ids { try bench.submit("short \(id)", maxTokens: 2, id: id) }
        let again = RunningDaemon(bench.daemon(next, batch: 2))
        try await waitUntil("the returned jobs") { try bench.finished(ids) }
        try await again.stop()
        #expect(next.admittedIDs.sorted() == ids)
        for id in ["e0", "e1"] { #expect(try bench.row(id)?.attempts == 1) }
    }

    @Test func aBatchThatFinishesWithinTheBoundIsCommittedOnStop() async throws {
        let bench = try Bench()
        try bench.submit("short", maxTokens: 300, id: "short")
        try bench.submit("waiting", id: "waiting")
        let stop = StopSwitch()
        let executor = ScriptedExecutor(stepDelay: 0.002, onStep: { step in if step == 0 { stop.pull() } })
        let daemon = bench.daemon(executor, batch: 1, drain: .seconds(15))
        stop.attach(daemon)
        let running = RunningDaemon(daemon)
        try await waitUntil(timeout: .seconds(60), "the stop") { running.isFinished }
        try await running.stop()
        #expect(try bench.row("short")?.status == .done)
        #expect(try bench.row("waiting") == nil, "no new claims after the stop request")
        #expect(bench.names(bench.spool.incoming) == ["waiting"])
        #expect(executor.abandoned.isEmpty)
    }
}
