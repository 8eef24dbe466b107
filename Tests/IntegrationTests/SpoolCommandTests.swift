import Foundation
import Store
import Testing
import TestSupport

/// The built `minimindv` binary, beside the test bundle in the build folder.
let spoolTestBinary: URL = {
    let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var folder = runner.deletingLastPathComponent()
    // swift-testing may run from inside the .xctest bundle on some platforms.
    while !FileManager.default.fileExists(atPath: folder.appendingPathComponent("minimindv").path), folder.path != "/" {
        folder.deleteLastPathComponent()
    }
    return folder.appendingPathComponent("minimindv")
}()

/// A finished child process's exit status and output.
struct CommandRun {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Starts `minimindv` with `arguments`; the caller waits or terminates.
func startMinimindv(_ arguments: [String], in folder: URL) throws -> (Process, Pipe, Pipe) {
    let process = Process()
    process.executableURL = spoolTestBinary
    process.arguments = arguments
    process.currentDirectoryURL = folder
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    return (process, out, err)
}

/// Runs `minimindv` to completion. The wait is a continuation, not a blocking call: Swift Testing's task
/// threads are as many as the cores (2 here) and must not be held by waits on children.
func runMinimindv(_ arguments: [String], in folder: URL) async throws -> CommandRun {
    let process = Process()
    process.executableURL = spoolTestBinary
    process.arguments = arguments
    process.currentDirectoryURL = folder
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        process.terminationHandler = { _ in continuation.resume() }
        do { try process.run() } catch {
            process.terminationHandler = nil
            continuation.resume()
        }
    }
    // The child has exited, so reading to the end cannot block (its output is far below a pipe's 64 KiB).
    let stdout = out.fileHandleForReading.readDataToEndOfFile()
    let stderr = err.fileHandleForReading.readDataToEndOfFile()
    return CommandRun(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                      stderr: String(decoding: stderr, as: UTF8.self))
}

func spoolFolder() throws -> URL {
    let root = try Fixtures.temporaryDirectory("spool-cli")
    for sub in ["tmp", "incoming", "active", "done", "failed"] {
        try FileManager.default.createDirectory(at: root.appendingPathComponent("spool/\(sub)"), withIntermediateDirectories: true)
    }
    return root
}

func answer(_ store: ResultStore, _ id: String, _ text: String, tokens: Int = 3) throws {
    _ = try store.start(JobRecord(id: id, status: .running, question: "q", images: ["00ff"], model: "m.gguf"))
    try store.finish(id: id, answer: JobAnswer(text: text, promptTokens: 70, outputTokens: tokens, visionMs: 5,
                                               prefillMs: 2, decodeMs: 3, cacheHits: 1))
}

func pollUntil(_ what: String, timeout: Duration = .seconds(60), _ condition: () throws -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while try !condition() {
        if clock.now > deadline { Issue.record("timed out waiting for \(what)"); return }
        try await Task.sleep(for: .milliseconds(20))
    }
}

@Suite(.serialized) struct SpoolCommands {
    @Test func submitWritesAWholeJobIntoIncomingAndPrintsItsID() async throws {
        let root = try spoolFolder()
        let bird = Fixtures.minimind.appendingPathComponent("images/bird-0.jpg")
        let run = try await runMinimindv(["submit", "--image", bird.path, "--max-tokens", "12", "--temperature", "0",
                                    "--priority", "3", "What bird is this?"], in: root)
        #expect(run.status == 0, "\(run.stderr)")
        let id = run.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let job = root.appendingPathComponent("spool/incoming/\(id)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: job.appendingPathComponent("job.json"))) as? [String: Any])
        #expect(object["question"] as? String == "What bird is this?")
        #expect(object["images"] as? [String] == ["image1.jpg"])
        #expect(object["max_tokens"] as? Int == 12)
        #expect(object["priority"] as? Int == 3)
        #expect(try Data(contentsOf: job.appendingPathComponent("image1.jpg")) == Data(contentsOf: bird))
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("spool/tmp").path).isEmpty)
    }

    @Test func submitIntoAFolderThatIsNotASpoolFailsWithAHint() async throws {
        let root = try Fixtures.temporaryDirectory("spool-cli")
        let run = try await runMinimindv(["submit", "--spool", "nowhere", "q"], in: root)
        #expect(run.status != 0)
        #expect(run.stderr.contains("is not a spool"))
    }

    @Test func submitWaitPrintsTheAnswerOnceItsRowIsCommitted() async throws {
        let root = try spoolFolder()
        let db = root.appendingPathComponent("results.sqlite").path
        let (process, out, _) = try startMinimindv(["submit", "--wait", "--id", "waited", "Is it a bird?"], in: root)
        try await pollUntil("the job in incoming/") {
            FileManager.default.fileExists(atPath: root.appendingPathComponent("spool/incoming/waited/job.json").path)
        }
        // The daemon's side: the database appears later than the job, then the answer lands.
        try await Task.sleep(for: .milliseconds(300))
        #expect(process.isRunning)
        let store = try ResultStore(path: db)
        try answer(store, "waited", "Yes, a small bird.")
        try await pollUntil("submit --wait to exit") { !process.isRunning }
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 0)
        #expect(stdout == "waited\nYes, a small bird.\n")
    }

    @Test func submitWaitReportsAFailedJobOnStderr() async throws {
        let root = try spoolFolder()
        let store = try ResultStore(path: root.appendingPathComponent("results.sqlite").path)
        let (process, _, err) = try startMinimindv(["submit", "--wait", "--id", "doomed", "q"], in: root)
        try await pollUntil("the job in incoming/") {
            FileManager.default.fileExists(atPath: root.appendingPathComponent("spool/incoming/doomed").path)
        }
        _ = try store.start(JobRecord(id: "doomed", status: .running))
        try store.fail(JobRecord(id: "doomed", status: .running), error: "image \"a.jpg\" is corrupt", replacing: [.running])
        try await pollUntil("submit --wait to exit") { !process.isRunning }
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus == 2)
        #expect(stderr.contains("job doomed failed: image \"a.jpg\" is corrupt"))
    }

    @Test func resultsWritesJSONLinesWithEveryRequiredFieldAndFilters() async throws {
        let root = try spoolFolder()
        let store = try ResultStore(path: root.appendingPathComponent("results.sqlite").path)
        try answer(store, "first", "one", tokens: 4)
        try await Task.sleep(for: .milliseconds(10))
        try answer(store, "second", "two\nlines")
        _ = try store.start(JobRecord(id: "third", status: .running))
        try store.fail(JobRecord(id: "third", status: .running), error: "bad", replacing: [.running])

        let all = try await runMinimindv(["results", "--json"], in: root)
        #expect(all.status == 0, "\(all.stderr)")
        let rows = try all.stdout.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(rows.count == 3)
        for row in rows {
            for key in ["id", "status", "answer", "error", "images", "output_tokens", "cache_hits", "finished_at"] {
                #expect(row.keys.contains(key), "missing \(key)")
            }
        }
        #expect(rows.map { $0["id"] as? String } == ["third", "second", "first"])  // newest first
        let first = try #require(rows.last)
        #expect(first["answer"] as? String == "one")
        #expect(first["error"] is NSNull)
        #expect(first["images"] as? [String] == ["00ff"])
        #expect(first["output_tokens"] as? Int == 4)
        #expect(first["cache_hits"] as? Int == 1)

        let done = try await runMinimindv(["results", "--json", "--status", "done", "--limit", "1"], in: root)
        #expect(done.stdout.split(separator: "\n").count == 1)
        #expect(done.stdout.contains(#""id":"second""#))
        let one = try await runMinimindv(["results", "--id", "third"], in: root)
        #expect(one.stdout.hasPrefix("third\tfailed\t"))
        #expect(one.stdout.contains("error: bad"))
        let text = try await runMinimindv(["results", "--id", "second"], in: root)
        #expect(text.stdout.hasSuffix("\ttwo lines\n"))
        let recent = try await runMinimindv(["results", "--since", "1h"], in: root)
        #expect(recent.stdout.split(separator: "\n").count == 3)
        let future = try await runMinimindv(["results", "--since", "2999-01-01T00:00:00Z"], in: root)
        #expect(future.status == 0)
        #expect(future.stdout.isEmpty)
        let bad = try await runMinimindv(["results", "--status", "lost"], in: root)
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("--status must be one of queued, running, done, failed"))
    }

    @Test func resultsFollowPrintsEachNewResultOnceAsItLands() async throws {
        let root = try spoolFolder()
        let store = try ResultStore(path: root.appendingPathComponent("results.sqlite").path)
        try answer(store, "old", "before")
        let (process, out, _) = try startMinimindv(["results", "--follow", "--json"], in: root)
        let reader = out.fileHandleForReading
        let lines = LineCollector()
        reader.readabilityHandler = { handle in lines.append(handle.availableData) }
        try await pollUntil("the existing row") { lines.lines.count == 1 }
        try answer(store, "new1", "after")
        try answer(store, "new2", "after again")
        try await pollUntil("the new rows") { lines.lines.count == 3 }
        try await Task.sleep(for: .milliseconds(600))
        process.terminate()
        try await pollUntil("results --follow to exit") { !process.isRunning }
        reader.readabilityHandler = nil
        let ids = lines.lines.compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["id"] as? String
        }
        #expect(ids == ["old", "new1", "new2"])
    }

    @Test func resultsWithoutADatabaseSaysWhere() async throws {
        let root = try spoolFolder()
        let run = try await runMinimindv(["results"], in: root)
        #expect(run.status != 0)
        #expect(run.stderr.contains("no results database at ./results.sqlite"))
    }

    @Test func serveReportsConfigFileMistakesWithFileAndLine() async throws {
        let root = try spoolFolder()
        try Data("# settings\n[serve]\nbatch = 8\ncache_mb = \"lots\"\n".utf8).write(to: root.appendingPathComponent("a.toml"))
        let typed = try await runMinimindv(["serve", "--config", "a.toml", "--model", "m.gguf"], in: root)
        #expect(typed.status != 0)
        #expect(typed.stderr.contains("a.toml:4: cache_mb must be an integer"))
        try Data("batch = 2\nbacth = 3\n".utf8).write(to: root.appendingPathComponent("b.toml"))
        let unknown = try await runMinimindv(["serve", "--config", "b.toml", "--model", "m.gguf"], in: root)
        #expect(unknown.stderr.contains("b.toml:2: unknown key \"bacth\""))
        // Run outside the project folder, the shipped default model is not there: say what to pass.
        let noModel = try await runMinimindv(["serve"], in: root)
        #expect(noModel.status != 0)
        #expect(noModel.stderr.contains("models/minimind-demo.gguf not found: pass --model"))
    }
}

/// Gathers a child's stdout into lines as it arrives.
final class LineCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer = Data()

    func append(_ data: Data) { lock.withLock { buffer.append(data) } }

    var lines: [String] {
        lock.withLock { String(decoding: buffer, as: UTF8.self).split(separator: "\n").map(String.init) }
    }
}
