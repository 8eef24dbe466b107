import Foundation
import Spool
import Testing
import TestSupport

@Suite struct Claiming {
    @Test func ofTwoDaemonsClaimingTheSameJobsEachJobIsWonExactlyOnce() async throws {
        let scratch = try ScratchSpool()
        let names = (0..<200).map { String(format: "job-%03d", $0) }
        for name in names { try scratch.directoryJob(name, json: #"{"question": "q"}"#) }
        let first = try SpoolClaim(spool: scratch.spool)
        let second = try SpoolClaim(spool: scratch.spool)
        #expect(first.path != second.path)

        // Both race over the same list, in the same order, on two threads.
        async let a = Task.detached { names.filter { (try? first.claim($0)) == true } }.value
        async let b = Task.detached { names.filter { (try? second.claim($0)) == true } }.value
        let (wonByFirst, wonBySecond) = await (a, b)

        #expect(Set(wonByFirst).isDisjoint(with: wonBySecond))
        #expect((wonByFirst + wonBySecond).sorted() == names)
        #expect(try first.claimedNames() == wonByFirst.sorted())
        #expect(try second.claimedNames() == wonBySecond.sorted())
        #expect(try scratch.spool.incomingNames().isEmpty)
    }

    @Test func aLiveDaemonsClaimIsNotAbandonedButADeadOnesIs() throws {
        let scratch = try ScratchSpool()
        try scratch.directoryJob("a", json: #"{"question": "q"}"#)
        try scratch.directoryJob("b", json: #"{"question": "q"}"#)
        var live: SpoolClaim? = try SpoolClaim(spool: scratch.spool)
        #expect(try live?.claim("a") == true)
        #expect(try SpoolClaim.abandoned(in: scratch.spool).isEmpty)

        // Dropping the claim closes its lock as a killed process would; the job stays in its folder.
        let folder = live!.path
        live = nil
        #expect(FileManager.default.fileExists(atPath: "\(folder)/a"))
        let dead = try SpoolClaim.abandoned(in: scratch.spool)
        #expect(dead.map(\.path) == [folder])
        #expect(try dead[0].names() == ["a"])
        // While one recoverer holds it, a second daemon starting up does not see it.
        #expect(try SpoolClaim.abandoned(in: scratch.spool).isEmpty)
        try scratch.spool.requeue(dead[0].pathOf("a"), name: "a")
        dead[0].finish()
        #expect(!FileManager.default.fileExists(atPath: folder))
        #expect(try scratch.spool.incomingNames() == ["a", "b"])
    }

    @Test func movesNeverOverwriteAnEarlierJob() throws {
        let scratch = try ScratchSpool()
        let spool = scratch.spool
        for round in 1...3 {
            let path = try scratch.fileJob("same.json", json: #"{"question": "round \#(round)"}"#)
            let used = try spool.reject(path, name: "same.json", reason: "bad \(round)")
            #expect(used == (round == 1 ? "same.json" : "same.json~\(round)"))
        }
        let failed = try FileManager.default.contentsOfDirectory(atPath: spool.failed).sorted()
        #expect(failed == ["same.json", "same.json.error.txt", "same.json~2", "same.json~2.error.txt",
                           "same.json~3", "same.json~3.error.txt"])
        #expect(try String(contentsOfFile: "\(spool.failed)/same.json~2.error.txt", encoding: .utf8) == "bad 2\n")

        let dir = try scratch.directoryJob("d", json: #"{"question": "q"}"#)
        try spool.reject(dir, name: "d", reason: "why")
        #expect(try String(contentsOfFile: "\(spool.failed)/d/error.txt", encoding: .utf8) == "why\n")
    }

    @Test func anErrorFileInsideAJobIsReplacedNotWrittenThroughALink() throws {
        let scratch = try ScratchSpool()
        let outside = scratch.spool.root.appendingPathComponent("victim.txt")
        try Data("keep me".utf8).write(to: outside)
        let dir = try scratch.directoryJob("evil", json: #"{"question": "q"}"#)
        try FileManager.default.createSymbolicLink(atPath: "\(dir)/error.txt", withDestinationPath: outside.path)
        try scratch.spool.reject(dir, name: "evil", reason: "refused")
        #expect(try String(contentsOf: outside, encoding: .utf8) == "keep me")
        #expect(try String(contentsOfFile: "\(scratch.spool.failed)/evil/error.txt", encoding: .utf8) == "refused\n")
    }
}

@Suite struct Submitting {
    @Test func aSubmittedJobAppearsWholeInIncomingAndReadsBack() throws {
        let scratch = try ScratchSpool()
        let writer = JobWriter(spool: scratch.spool)
        let id = try writer.submit(JobSubmission(
            question: "What is in the picture?", system: "Answer briefly.",
            imageFiles: [ScratchSpool.jpeg, ScratchSpool.otherJPEG],
            parameters: SamplingParameters(maxTokens: 16, temperature: 0, seed: 3), priority: 2))
        #expect(SpoolDirectory.isValidID(id))
        #expect(try scratch.spool.incomingNames() == [id])
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.spool.tmp).isEmpty)
        let job = try scratch.read(id)
        #expect(job.question == "What is in the picture?")
        #expect(job.system == "Answer briefly.")
        #expect(job.priority == 2)
        #expect(job.parameters == SamplingParameters(maxTokens: 16, temperature: 0, seed: 3))
        #expect(job.images.map(\.sha256) == [try sha256Hex(ScratchSpool.jpeg), try sha256Hex(ScratchSpool.otherJPEG)])
    }

    @Test func aSecondJobUnderAWaitingIdIsRefused() throws {
        let scratch = try ScratchSpool()
        let writer = JobWriter(spool: scratch.spool)
        _ = try writer.submit(JobSubmission(question: "first", id: "fixed"))
        #expect(throws: JobWriter.Failure.self) { try writer.submit(JobSubmission(question: "second", id: "fixed")) }
        #expect(try scratch.read("fixed").question == "first")
        #expect(throws: JobWriter.Failure.self) { try writer.submit(JobSubmission(question: "q", id: "../x")) }
    }

    @Test func priorityIsPeekedWithoutClaiming() throws {
        let scratch = try ScratchSpool()
        try scratch.directoryJob("urgent", json: #"{"question": "q", "priority": 9}"#)
        try scratch.fileJob("plain.json", json: #"{"question": "q"}"#)
        #expect(scratch.spool.peekPriority(ofIncoming: "urgent") == 9)
        #expect(scratch.spool.peekPriority(ofIncoming: "plain.json") == 0)
    }
}
