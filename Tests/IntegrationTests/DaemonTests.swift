import Foundation
import Store
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `minimindv serve` with a real (tiny) model, as a child process on a temporary spool: issue 5's
/// integration tests. Results are read from the SQLite database the daemon writes.
@Suite struct DaemonWithModel {
    static func database(_ root: URL) throws -> ResultStore {
        try ResultStore(path: root.appendingPathComponent("results.sqlite").path)
    }

    /// `minimindv ask --greedy --json` on the same question and images: what the daemon must answer.
    static func askGreedy(_ question: String, images: [URL], maxTokens: Int) async throws -> (text: String, promptTokens: Int) {
        var arguments = ["ask", "--model", try await DaemonModel.file(), "--greedy", "--max-tokens", "\(maxTokens)", "--json", "--threads", "1"]
        for image in images { arguments += ["--image", image.path] }
        let run = try await runMinimindv(arguments + [question], in: DaemonModel.folder)
        #expect(run.status == 0, "\(run.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        return (try #require(object["text"] as? String), try #require(object["prompt_ids"] as? [Int]).count)
    }

    @Test func jobsThroughTheDirectoryProtocolAndSubmitAreAnsweredAsAskAnswersThem() async throws {
        let root = try spoolFolder()
        let images = DaemonModel.images
        let jpeg = try Data(contentsOf: images[1])
        // Queued before the daemon starts, so that they are admitted together: one encoder pass.
        try submitDirectoryJob("a-two-images", in: root, question: "What differs between these pictures?",
                               images: [images[0], images[1]], maxTokens: 6)
        try submitInlineJob("b-inline", in: root, question: "Describe the scene.", images: [jpeg], maxTokens: 6)
        try submitDirectoryJob("c-text-only", in: root, question: "Say hello.", images: [], maxTokens: 6)
        let daemon = try await ServeProcess.start(root: root)
        let store = try Self.database(root)
        try await pollUntil("three answers", timeout: .seconds(60)) {
            try store.records(JobQuery(status: .done)).count == 3 || !daemon.isRunning
        }

        // Through `minimindv submit --wait` while the daemon runs.
        let submitted = try await runMinimindv(["submit", "--wait", "--timeout", "60", "--id", "submitted", "--image", images[2].path,
                                          "--max-tokens", "6", "--temperature", "0", "What bird is this?"], in: root)
        #expect(submitted.status == 0, "\(submitted.stderr)")
        #expect(try await daemon.terminate() == 0, "\(daemon.log)")

        let expected: [(id: String, question: String, images: [URL])] = [
            ("a-two-images", "What differs between these pictures?", [images[0], images[1]]),
            ("b-inline", "Describe the scene.", [images[1]]),
            ("c-text-only", "Say hello.", []),
            ("submitted", "What bird is this?", [images[2]]),
        ]
        for job in expected {
            let row = try #require(try store.record(id: job.id), "no row for \(job.id)")
            let ask = try await Self.askGreedy(job.question, images: job.images, maxTokens: 6)
            #expect(row.status == .done, "\(job.id): \(row.error ?? "")")
            #expect(row.answer == ask.text, "\(job.id) answered differently from ask")
            #expect(row.promptTokens == ask.promptTokens)
            #expect((1...6).contains(row.outputTokens ?? 0))
            #expect(row.images == (try job.images.map(sha256Hex)))
            #expect(row.model == "gen3-tiny.gguf")
            #expect(row.attempts == 1)
            #expect((row.prefillMs ?? 0) > 0 && (row.decodeMs ?? 0) > 0)
            #expect(row.finishedAt != nil && row.startedAt != nil)
        }
        // Admitted together (ids in order): the inline job's image is the two-image job's second one,
        // encoded once in the same pass and counted as a hit for the job that reused it.
        let inline = try #require(try store.record(id: "b-inline"))
        #expect(inline.cacheHits == 1)
        #expect(try store.record(id: "a-two-images")?.cacheHits == 0)
        #expect(try store.record(id: "c-text-only")?.visionMs ?? 1 < 1)
        #expect(submitted.stdout == "submitted\n\(try store.record(id: "submitted")?.answer ?? "?")\n")
        #expect(visible(root.appendingPathComponent("spool/done")) == ["a-two-images", "b-inline.json", "c-text-only", "submitted"])
        #expect(visible(root.appendingPathComponent("spool/active")).isEmpty)
    }

    /// A corrupt image or a prompt longer than the context fails its own job, with the reason; the
    /// jobs admitted with it are answered.
    @Test func aBadJobFailsAloneWithAClearReason() async throws {
        let root = try spoolFolder()
        let good = DaemonModel.images[0]
        let truncated = root.appendingPathComponent("truncated.jpg")
        try Data(contentsOf: good).prefix(3000).write(to: truncated)
        try submitDirectoryJob("a-good", in: root, question: "What is this?", images: [good])
        try submitDirectoryJob("b-truncated", in: root, question: "What is this?", images: [good, truncated])
        // 12000 four-byte emoji and spaces: under the 64 KiB question limit, about 48000 tokens.
        let long = String(repeating: "\u{1F99C} ", count: 12000)
        let job = try JSONSerialization.data(withJSONObject: ["question": long, "max_tokens": 4])
        try job.write(to: root.appendingPathComponent("spool/tmp/c-long.json"))
        try FileManager.default.moveItem(at: root.appendingPathComponent("spool/tmp/c-long.json"),
                                         to: root.appendingPathComponent("spool/incoming/c-long.json"))
        try submitDirectoryJob("d-good", in: root, question: "And this?", images: [DaemonModel.images[1]])

        let daemon = try await ServeProcess.start(root: root)
        let store = try Self.database(root)
        try await pollUntil("four rows", timeout: .seconds(60)) {
            try store.records(JobQuery()).filter { $0.status == .done || $0.status == .failed }.count == 4
        }
        #expect(daemon.isRunning, "the daemon stopped (status \(daemon.waitStatus.map { String($0) } ?? "-")): \(daemon.log)")
        #expect(try await daemon.terminate() == 0)

        #expect(try store.record(id: "a-good")?.status == .done)
        #expect(try store.record(id: "d-good")?.status == .done)
        let broken = try #require(try store.record(id: "b-truncated"))
        #expect(broken.status == .failed)
        #expect(broken.error?.contains(#"image "image2.jpg": the JPEG file is truncated"#) == true, "\(broken.error ?? "")")
        let overlong = try #require(try store.record(id: "c-long"))
        #expect(overlong.status == .failed)
        #expect(overlong.error?.contains("tokens but the model's context holds 32768") == true, "\(overlong.error ?? "")")
        let failed = root.appendingPathComponent("spool/failed")
        #expect(visible(failed) == ["b-truncated", "c-long.json", "c-long.json.error.txt"])
        let errorText = try String(contentsOf: failed.appendingPathComponent("b-truncated/error.txt"), encoding: .utf8)
        #expect(errorText.contains("truncated"))
    }

    /// Under systemd (Type=notify): READY=1 once the model is loaded, STATUS= lines, WATCHDOG=1 at half
    /// the period set by WATCHDOG_USEC, and STOPPING=1 on SIGTERM, then a clean exit.
    @Test func theNotifySocketReceivesReadyStatusWatchdogAndStopping() async throws {
        let root = try spoolFolder()
        let socket = try NotifyDatagrams()
        defer { socket.close() }
        let daemon = try await ServeProcess.start(root: root, environment: ["NOTIFY_SOCKET": socket.path, "WATCHDOG_USEC": "200000"])
        try await pollUntil("READY=1", timeout: .seconds(30)) { socket.lines.contains("READY=1") }
        try submitDirectoryJob("watched", in: root, question: "What is this?", images: [DaemonModel.images[0]])
        let store = try Self.database(root)
        try await pollUntil("the answer", timeout: .seconds(30)) { try store.record(id: "watched")?.status == .done }
        try await pollUntil("several watchdog pings", timeout: .seconds(10)) {
            socket.lines.filter { $0 == "WATCHDOG=1" }.count >= 4
        }
        #expect(try await daemon.terminate() == 0)
        try await pollUntil("STOPPING=1", timeout: .seconds(5)) { socket.lines.contains("STOPPING=1") }

        let lines = socket.lines
        let ready = try #require(lines.firstIndex(of: "READY=1"))
        let stopping = try #require(lines.firstIndex(of: "STOPPING=1"))
        #expect(ready < stopping)
        // READY comes only once the model is loaded: the log says so first.
        let log = daemon.log
        #expect(log.contains("model loaded"))
        #expect(lines.contains { $0.hasPrefix("STATUS=queue ") && $0.contains(" tok/s") })
        #expect(lines.contains { $0.hasPrefix("STATUS=") && $0.contains("done 1") })
        #expect(lines[ready...].contains("WATCHDOG=1"))
    }

    /// Issue 5's crash test: 50 jobs, the daemon killed with SIGKILL at three moments (while the first
    /// batch runs, after about a third and after two thirds), restarted each time: in the end every job
    /// has exactly one row, answered, nothing is left in incoming/ or active/, and answers agree.
    @Test func killingTheDaemonAtSeveralMomentsLosesNoJobAndAnswersEachOnce() async throws {
        let root = try spoolFolder()
        let ids = (0..<50).map { String(format: "crash-%02d", $0) }
        for (n, id) in ids.enumerated() {
            try submitDirectoryJob(id, in: root, question: "Describe picture \(n % 3).", images: [DaemonModel.images[n % 4]],
                                   maxTokens: 24)
        }
        let store = try Self.database(root)
        func count(_ status: JobStatus) throws -> Int { try store.countsByStatus()[status] ?? 0 }

        var kills = 0
        var doneAtKill: [Int] = []
        let moments: [(String, () throws -> Bool)] = [
            ("the first batch running", { try count(.running) > 0 }),
            ("15 answers", { try count(.done) >= 15 }),
            ("33 answers", { try count(.done) >= 33 }),
        ]
        for (moment, reached) in moments {
            let daemon = try await ServeProcess.start(root: root, name: "killed-\(kills)")
            try await pollUntil(moment, timeout: .seconds(60)) { try reached() }
            try await daemon.kill9()
            kills += 1
            doneAtKill.append(try count(.done))
        }
        #expect(doneAtKill.last ?? 50 < 50, "the last kill came while work remained: \(doneAtKill)")
        let last = try await ServeProcess.start(root: root, name: "last")
        try await pollUntil("50 answers", timeout: .seconds(90)) { try count(.done) == 50 }
        #expect(try await last.terminate() == 0)

        let rows = try store.records(JobQuery())
        #expect(rows.count == 50)
        #expect(rows.map(\.id).sorted() == ids)
        #expect(rows.allSatisfy { $0.status == .done && ($0.outputTokens ?? 0) > 0 })
        #expect(rows.allSatisfy { $0.attempts >= 1 && $0.attempts <= 1 + kills })
        #expect(visible(root.appendingPathComponent("spool/incoming")).isEmpty)
        #expect(visible(root.appendingPathComponent("spool/active")).isEmpty)
        #expect(visible(root.appendingPathComponent("spool/failed")).isEmpty)
        #expect(visible(root.appendingPathComponent("spool/done")) == ids)
        // Greedy decoding: the same question on the same image gets the same answer, whichever
        // daemon ran it, in whatever batch.
        var answers: [String: Set<String>] = [:]
        for (n, id) in ids.enumerated() {
            answers["\(n % 3)/\(n % 4)", default: []].insert(rows.first { $0.id == id }?.answer ?? "")
        }
        #expect(answers.values.allSatisfy { $0.count == 1 }, "\(answers)")
    }

    /// SIGTERM while a batch runs: the daemon finishes or returns what it holds, exits 0, and a
    /// restart answers the rest: no job lost.
    @Test func sigtermExitsCleanlyAndLosesNoJob() async throws {
        let root = try spoolFolder()
        let ids = (0..<24).map { String(format: "term-%02d", $0) }
        for (n, id) in ids.enumerated() {
            try submitDirectoryJob(id, in: root, question: "What is shown?", images: [DaemonModel.images[n % 4]], maxTokens: 24)
        }
        let store = try Self.database(root)
        let first = try await ServeProcess.start(root: root, name: "first")
        try await pollUntil("5 answers", timeout: .seconds(60)) { try store.countsByStatus()[.done] ?? 0 >= 5 }
        #expect(try await first.terminate() == 0, "\(first.log)")
        #expect(first.log.contains("stopped"))
        #expect(visible(root.appendingPathComponent("spool/active")).isEmpty)
        let answered = Set(visible(root.appendingPathComponent("spool/done")))
        let waiting = Set(visible(root.appendingPathComponent("spool/incoming")))
        #expect(answered.isDisjoint(with: waiting))
        #expect(answered.union(waiting) == Set(ids))
        #expect(answered.count < ids.count, "the daemon stopped with work left")
        for row in try store.records(JobQuery()) {
            #expect(row.status == (answered.contains(row.id) ? .done : .queued), "\(row.id) is \(row.status)")
        }

        let second = try await ServeProcess.start(root: root, name: "second")
        try await pollUntil("all answers", timeout: .seconds(60)) { try store.countsByStatus()[.done] ?? 0 == ids.count }
        #expect(try await second.terminate() == 0)
        let rows = try store.records(JobQuery())
        #expect(rows.map(\.id).sorted() == ids)
        #expect(rows.allSatisfy { $0.status == .done && $0.attempts == 1 })
        #expect(visible(root.appendingPathComponent("spool/done")) == ids)
    }

    /// Two daemons on one spool (and one cache folder): 100 jobs, each claimed by one of them and answered once.
    @Test func twoDaemonsOnOneSpoolAnswerEachOfAHundredJobsOnce() async throws {
        let root = try spoolFolder()
        let first = try await ServeProcess.start(root: root, name: "first")
        let second = try await ServeProcess.start(root: root, name: "second")
        try await pollUntil("both daemons ready", timeout: .seconds(30)) {
            first.log.contains("ready") && second.log.contains("ready")
        }
        let ids = (0..<100).map { String(format: "shared-%03d", $0) }
        for (n, id) in ids.enumerated() {
            try submitInlineJob(id, in: root, question: "What is in picture \(n)?", images: [try Data(contentsOf: DaemonModel.images[n % 4])],
                                maxTokens: 8)
        }
        let store = try Self.database(root)
        try await pollUntil("100 answers", timeout: .seconds(90)) { try store.countsByStatus()[.done] ?? 0 == 100 }
        #expect(try await first.terminate() == 0)
        #expect(try await second.terminate() == 0)

        func claimed(_ log: String) -> [String] { log.matches(of: /job=(\S+) \[Service\] claimed/).map { String($0.1) } }
        let byFirst = claimed(first.log), bySecond = claimed(second.log)
        #expect(Set(byFirst).isDisjoint(with: bySecond))
        #expect((byFirst + bySecond).sorted() == ids)
        #expect(!byFirst.isEmpty && !bySecond.isEmpty, "both took work: \(byFirst.count) and \(bySecond.count)")
        let rows = try store.records(JobQuery())
        #expect(rows.count == 100)
        #expect(rows.allSatisfy { $0.status == .done && $0.attempts == 1 })
        #expect(Set(rows.compactMap(\.worker)).count == 2)
        #expect(visible(root.appendingPathComponent("spool/done")).count == 100)
        #expect(visible(root.appendingPathComponent("spool/incoming")).isEmpty)
        #expect(visible(root.appendingPathComponent("spool/active")).isEmpty)
    }

    /// The second job on an image runs no vision encoder (cache_hits, vision_ms and the encoder's own
    /// debug line show it), and a restarted daemon still hits: the cache is persisted under --cache-dir.
    @Test func aCachedImageSkipsTheEncoderAndARestartKeepsTheHit() async throws {
        let root = try spoolFolder()
        let image = DaemonModel.images[2], other = DaemonModel.images[3]
        let store = try Self.database(root)
        func encoderPasses(_ daemon: ServeProcess) -> Int { daemon.log.components(separatedBy: "encoded images").count - 1 }

        let first = try await ServeProcess.start(root: root, name: "first", logLevel: "debug")
        try submitDirectoryJob("first-look", in: root, question: "What bird is this?", images: [image])
        try await pollUntil("the first answer", timeout: .seconds(30)) { try store.record(id: "first-look")?.status == .done }
        #expect(encoderPasses(first) == 1)
        try submitDirectoryJob("second-look", in: root, question: "What colour is it?", images: [image])
        try await pollUntil("the second answer", timeout: .seconds(30)) { try store.record(id: "second-look")?.status == .done }
        #expect(encoderPasses(first) == 1, "the encoder ran again for a cached image")
        #expect(try await first.terminate() == 0)

        let miss = try #require(try store.record(id: "first-look"))
        let hit = try #require(try store.record(id: "second-look"))
        #expect(miss.cacheHits == 0)
        #expect(hit.cacheHits == 1)
        #expect((hit.visionMs ?? 1) < (miss.visionMs ?? 0), "hit \(hit.visionMs ?? -1) ms, miss \(miss.visionMs ?? -1) ms")
        #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("cache/embeddings.sqlite").path))

        let second = try await ServeProcess.start(root: root, name: "second", logLevel: "debug")
        try submitInlineJob("after-restart", in: root, question: "Where is it?", images: [try Data(contentsOf: image)])
        try await pollUntil("the answer after the restart", timeout: .seconds(30)) {
            try store.record(id: "after-restart")?.status == .done
        }
        #expect(encoderPasses(second) == 0, "the restarted daemon encoded a cached image")
        #expect(try store.record(id: "after-restart")?.cacheHits == 1)
        // A new image still goes through the encoder (the log line this test counts does appear).
        try submitInlineJob("new-image", in: root, question: "Where is it?", images: [try Data(contentsOf: other)])
        try await pollUntil("the new image's answer", timeout: .seconds(30)) { try store.record(id: "new-image")?.status == .done }
        #expect(encoderPasses(second) == 1)
        #expect(try store.record(id: "new-image")?.cacheHits == 0)
        #expect(try await second.terminate() == 0)
    }

    /// A job whose prompt begins like a recent one (same system prompt, same image) prefills only
    /// the rest: its `done` log line counts the reused positions, and its answer is still exactly
    /// what `ask` answers from a full prefill.
    @Test func aPromptBeginningLikeARecentOnePrefillsOnlyTheRest() async throws {
        let root = try spoolFolder()
        let image = DaemonModel.images[2]
        let store = try Self.database(root)
        let daemon = try await ServeProcess.start(root: root, name: "prefixes")
        func reused(_ id: String) -> Int? {
            daemon.log.split(separator: "\n").first { $0.contains("job=\(id) ") && $0.contains(" done") }
                .flatMap { line in line.firstMatch(of: /reused_prompt_tokens=(\d+)/).flatMap { Int($0.1) } }
        }
        let jobs = [("first", "What bird is this?"), ("other-question", "What colour is it?"), ("same-again", "What bird is this?")]
        for (id, question) in jobs {
            try submitDirectoryJob(id, in: root, question: question, images: [image], maxTokens: 5)
            try await pollUntil("the answer of \(id)", timeout: .seconds(30)) { try store.record(id: id)?.status == .done }
        }
        #expect(try await daemon.terminate() == 0)

        // The image's placeholder run and its newline: what an image adds to a prompt.
        let imageRun = try await Self.askGreedy("What bird is this?", images: [image], maxTokens: 1).promptTokens
            - (try await Self.askGreedy("What bird is this?", images: [], maxTokens: 1).promptTokens)
        #expect(reused("first") == 0, "\(daemon.log)")
        for (id, question) in jobs {
            let row = try #require(try store.record(id: id))
            let ask = try await Self.askGreedy(question, images: [image], maxTokens: 5)
            #expect(row.answer == ask.text, "\(id) answered differently from a full prefill")
            if id == "other-question" {
                // Everything up to the question: at least the system turn and the image's run.
                let count = try #require(reused(id), "\(daemon.log)")
                #expect(count > imageRun && count < ask.promptTokens, "reused \(count) of \(ask.promptTokens)")
            }
            if id == "same-again" {
                #expect(reused(id) == ask.promptTokens - 1, "an identical prompt recomputes only its last position")
            }
        }
    }
}
