import Foundation
import Store
import Testing
import TestSupport

func scratchDatabase() throws -> String {
    try Fixtures.temporaryDirectory("store-test").appendingPathComponent("results.sqlite").path
}

func sampleRecord(_ id: String) -> JobRecord {
    JobRecord(id: id, status: .running, question: "What is this?", images: ["ab" + String(repeating: "0", count: 62)],
              model: "tiny.gguf", parameters: #"{"max_tokens":8}"#, submittedAt: Timestamp.now, worker: "@test.1.a")
}

@Suite struct ResultStoreTests {
    @Test func aNewDatabaseIsInWALModeWithItsSchemaVersionAndApplicationID() throws {
        let path = try scratchDatabase()
        let store = try ResultStore(path: path)
        let pragmas = try store.pragmas()
        #expect(pragmas.journalMode == "wal")
        #expect(pragmas.userVersion == ResultStore.schemaVersion)
        #expect(pragmas.userVersion >= 1)
        #expect(pragmas.applicationID == ResultStore.applicationID)
        #expect(pragmas.busyTimeout >= 5000)

        // Reopening runs no migration twice and keeps the data.
        _ = try store.start(sampleRecord("kept"))
        let again = try ResultStore(path: path)
        #expect(try again.record(id: "kept")?.status == .running)
        #expect(try again.pragmas().userVersion == ResultStore.schemaVersion)
    }

    @Test func theJobsTableHasEveryColumnTheIssueAsksFor() throws {
        let path = try scratchDatabase()
        _ = try ResultStore(path: path)
        let columns = try sqlite3(path, "SELECT name FROM pragma_table_info('jobs') ORDER BY cid")
            .split(separator: "\n").map(String.init)
        for column in ["id", "status", "attempts", "question", "images", "model", "parameters", "answer",
                       "prompt_tokens", "output_tokens", "submitted_at", "started_at", "finished_at",
                       "vision_ms", "prefill_ms", "decode_ms", "cache_hits", "error"] {
            #expect(columns.contains(column), "missing column \(column)")
        }
        // A reader without GRDB sees the markers.
        #expect(try sqlite3(path, "PRAGMA application_id") == "\(ResultStore.applicationID)")
        #expect(try sqlite3(path, "PRAGMA user_version") == "\(ResultStore.schemaVersion)")
    }

    @Test func aDatabaseOfAnotherApplicationIsRefused() throws {
        let path = try scratchDatabase()
        _ = try sqlite3(path, "PRAGMA application_id = 1234; CREATE TABLE t(x)")
        #expect(throws: StoreError.self) { try ResultStore(path: path) }
    }

    @Test func aJobStartsAnswersAndAnIdCannotBeStartedTwice() throws {
        let store = try ResultStore(path: try scratchDatabase())
        #expect(try store.start(sampleRecord("j")) == .started(attempt: 1))
        #expect(try store.start(sampleRecord("j")) == .duplicate(existing: .running))
        try store.finish(id: "j", answer: JobAnswer(text: "A bird.", promptTokens: 80, outputTokens: 3, visionMs: 12.5,
                                                    prefillMs: 4, decodeMs: 9, cacheHits: 1))
        let row = try #require(try store.record(id: "j"))
        #expect(row.status == .done)
        #expect(row.answer == "A bird.")
        #expect(row.outputTokens == 3)
        #expect(row.cacheHits == 1)
        #expect(row.attempts == 1)
        #expect(row.finishedAt != nil)
        #expect(row.images == sampleRecord("j").images)
        #expect(try store.start(sampleRecord("j")) == .duplicate(existing: .done))
    }

    @Test func anAdmissionStartsAndAStepAnswersSeveralJobsInOneTransactionEach() throws {
        let store = try ResultStore(path: try scratchDatabase())
        _ = try store.start(sampleRecord("old"))
        let starts = try store.start([sampleRecord("a"), sampleRecord("b"), sampleRecord("a"), sampleRecord("old")])
        #expect(starts == [.started(attempt: 1), .started(attempt: 1), .duplicate(existing: .running), .duplicate(existing: .running)])
        func answer(_ text: String) -> JobAnswer {
            JobAnswer(text: text, promptTokens: 5, outputTokens: 2, visionMs: 1, prefillMs: 1, decodeMs: 1, cacheHits: 0)
        }
        try store.finish([("a", answer("first")), ("b", answer("second"))])
        let a = try #require(try store.record(id: "a")), b = try #require(try store.record(id: "b"))
        #expect(a.status == .done && a.answer == "first")
        #expect(b.status == .done && b.answer == "second")
        #expect(a.finishedAt == b.finishedAt, "one transaction, one time")
        #expect(try store.record(id: "old")?.status == .running)
    }

    @Test func aRequeuedJobCountsItsNextStartAsAnotherAttempt() throws {
        let store = try ResultStore(path: try scratchDatabase())
        _ = try store.start(sampleRecord("r"))
        try store.requeue(id: "r", refundAttempt: false)   // a crash: the start counts
        #expect(try store.record(id: "r")?.status == .queued)
        #expect(try store.start(sampleRecord("r")) == .started(attempt: 2))
        try store.requeue(id: "r", refundAttempt: true)    // a clean shutdown: it does not
        #expect(try store.record(id: "r")?.attempts == 1)
        #expect(try store.start(sampleRecord("r")) == .started(attempt: 2))
    }

    @Test func aFailureUnderAnAnsweredIdGetsItsOwnRowAndTheAnswerIsKept() throws {
        let store = try ResultStore(path: try scratchDatabase())
        _ = try store.start(sampleRecord("d"))
        try store.finish(id: "d", answer: JobAnswer(text: "kept", promptTokens: 1, outputTokens: 1, visionMs: 0,
                                                    prefillMs: 0, decodeMs: 0, cacheHits: 0))
        let second = try store.fail(sampleRecord("d"), error: "duplicate id", replacing: [])
        let third = try store.fail(sampleRecord("d"), error: "duplicate id", replacing: [])
        #expect(second == "d~2")
        #expect(third == "d~3")
        #expect(try store.record(id: "d")?.answer == "kept")
        #expect(try store.record(id: "d~2")?.error == "duplicate id")
        // A running job's own failure replaces its row.
        _ = try store.start(sampleRecord("e"))
        #expect(try store.fail(sampleRecord("e"), error: "prompt too long", replacing: [.running]) == "e")
        #expect(try store.record(id: "e")?.status == .failed)
    }

    @Test func queriesFilterByIdStatusAndTimeAndLimit() throws {
        let store = try ResultStore(path: try scratchDatabase())
        for i in 0..<5 {
            _ = try store.start(sampleRecord("q\(i)"))
            if i % 2 == 0 {
                try store.finish(id: "q\(i)", answer: JobAnswer(text: "a\(i)", promptTokens: 1, outputTokens: i,
                                                                visionMs: 0, prefillMs: 0, decodeMs: 0, cacheHits: 0))
            }
            Thread.sleep(forTimeInterval: 0.002)
        }
        #expect(try store.records(JobQuery(status: .done)).map(\.id).sorted() == ["q0", "q2", "q4"])
        #expect(try store.records(JobQuery(id: "q3")).map(\.id) == ["q3"])
        #expect(try store.records(JobQuery(limit: 2)).count == 2)
        let all = try store.records(JobQuery(status: .done, oldestFirst: true))
        #expect(all.map(\.id) == ["q0", "q2", "q4"])
        let since = try #require(all[1].finishedAt)
        #expect(try store.records(JobQuery(status: .done, since: since, oldestFirst: true)).map(\.id) == ["q2", "q4"])
        #expect(try store.countsByStatus() == [.done: 3, .running: 2])
    }

    /// WAL: a reader in another connection (and another process) reads while a write transaction is open.
    @Test func readersAreNotBlockedByAnOpenWriteTransaction() throws {
        let path = try scratchDatabase()
        let writer = try ResultStore(path: path)
        _ = try writer.start(sampleRecord("before"))
        let reader = try ResultStore(path: path, readOnly: true, busyTimeout: 0)

        // The writer holds its transaction on a thread of its own (never on the test's task threads, which a
        // blocking wait could starve).
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            _ = try? writer.withWriteTransaction {
                entered.signal()
                release.wait()
            }
            finished.signal()
        }
        #expect(entered.wait(timeout: .now() + 30) == .success)
        let clock = ContinuousClock()
        let started = clock.now
        // With busy timeout 0 a blocked read would fail at once instead of waiting.
        #expect(try reader.record(id: "before")?.status == .running)
        #expect(try sqlite3(path, "SELECT status FROM jobs WHERE id = 'before'") == "running")
        #expect(clock.now - started < .seconds(2))
        release.signal()
        #expect(finished.wait(timeout: .now() + 30) == .success)
    }
}

/// Runs the `sqlite3` shell (a reader that knows nothing of GRDB); returns its trimmed output.
func sqlite3(_ path: String, _ sql: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    process.arguments = ["-batch", path, sql]
    let out = Pipe()
    process.standardOutput = out
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}
