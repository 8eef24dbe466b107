import ArgumentParser
import Foundation
import Spool
import Store

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Queue a question (and images) in a spool folder; print the job's id.",
        discussion: """
            The job is built in <spool>/tmp/ and renamed into <spool>/incoming/, so the daemon never sees it \
            half-written. With --wait, the answer is printed once its row is in the results database.
            """)

    @Argument(help: "The question.") var question: String
    @Option(help: "Spool folder (default ./spool).") var spool = "./spool"
    @Option(name: .customLong("image"), help: "An image file (JPEG or PNG); repeat for several.") var images: [String] = []
    @Option(help: "System prompt.") var system: String?
    @Option(name: .customLong("max-tokens")) var maxTokens: Int?
    @Option var temperature: Double?
    @Option(name: .customLong("top-p")) var topP: Double?
    @Option(name: .customLong("top-k")) var topK: Int?
    @Option(name: .customLong("repetition-penalty")) var repetitionPenalty: Double?
    @Option var seed: UInt64?
    @Option(help: "Higher is claimed first (default 0).") var priority: Int?
    @Option(help: "The job's id (default: time-ordered and random).") var id: String?
    @Flag(help: "Wait for the answer and print it.") var wait = false
    @Option(help: "Results database to wait on (default ./results.sqlite).") var db = "./results.sqlite"
    @Option(help: "With --wait, give up after this many seconds.") var timeout: Double?

    func run() async throws {
        for image in images where !FileManager.default.isReadableFile(atPath: image) {
            throw ValidationError("cannot read image \(image)")
        }
        let submission = JobSubmission(
            question: question, system: system, imageFiles: images.map { URL(fileURLWithPath: $0) },
            parameters: SamplingParameters(maxTokens: maxTokens, temperature: temperature, topP: topP, topK: topK,
                                           repetitionPenalty: repetitionPenalty, seed: seed),
            priority: priority, id: id)
        let jobID: String
        do { jobID = try JobWriter(spool: SpoolDirectory(URL(fileURLWithPath: spool))).submit(submission) } catch {
            throw SpoolCommandError(error.description)
        }
        print(jobID)
        fflush(nil)
        guard wait else { return }

        let clock = ContinuousClock()
        let deadline = timeout.map { clock.now + .milliseconds(Int64($0 * 1000)) }
        var store: ResultStore?
        while true {
            if store == nil, FileManager.default.fileExists(atPath: db) {
                store = try? ResultStore(path: db, readOnly: true)
            }
            if let row = try? store?.record(id: jobID) {
                switch row.status {
                case .done:
                    print(row.answer ?? "")
                    return
                case .failed:
                    FileHandle.standardError.write(Data("job \(jobID) failed: \(row.error ?? "no reason recorded")\n".utf8))
                    throw ExitCode(2)
                case .queued, .running:
                    break
                }
            }
            if let deadline, clock.now >= deadline {
                FileHandle.standardError.write(Data("no answer for \(jobID) yet; it stays queued (see `minimindv results --id \(jobID)`)\n".utf8))
                throw ExitCode(3)
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
