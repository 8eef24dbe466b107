import Foundation
import Spool
import Testing
import TestSupport

/// A scratch spool with helpers to drop jobs into `incoming/` the way writers do.
struct ScratchSpool {
    let spool: SpoolDirectory

    init() throws {
        spool = SpoolDirectory(try Fixtures.temporaryDirectory("spool-test"))
        try spool.create()
    }

    static let jpeg = Fixtures.minimind.appendingPathComponent("images/bird-0.jpg")
    static let otherJPEG = Fixtures.minimind.appendingPathComponent("images/bird-1.jpg")

    /// Writes `incoming/<name>/job.json` (raw text) plus the given files.
    @discardableResult
    func directoryJob(_ name: String, json: String, files: [String: Data] = [:]) throws -> String {
        let dir = spool.root.appendingPathComponent("incoming/\(name)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(json.utf8).write(to: dir.appendingPathComponent("job.json"))
        for (file, data) in files { try data.write(to: dir.appendingPathComponent(file)) }
        return dir.path
    }

    @discardableResult
    func fileJob(_ name: String, json: String) throws -> String {
        let url = spool.root.appendingPathComponent("incoming/\(name)")
        try Data(json.utf8).write(to: url)
        return url.path
    }

    func read(_ name: String, limits: JobLimits = JobLimits()) throws -> JobRequest {
        try spool.readJob(atPath: "\(spool.incoming)/\(name)", name: name, limits: limits)
    }
}

func sha256Hex(_ url: URL) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    process.arguments = [url.path]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    process.waitUntilExit()
    let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return String(text.prefix(64))
}

@Suite struct JobParsing {
    @Test func aJobDirectoryWithEveryFieldIsReadWithItsImagesAndTheirHashes() throws {
        let scratch = try ScratchSpool()
        let jpeg = try Data(contentsOf: ScratchSpool.jpeg)
        try scratch.directoryJob("job-1", json: """
            {"question": "What bird is this?", "images": ["a.jpg"], "system": "Be brief.", "max_tokens": 32,
             "temperature": 0.7, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1, "seed": 7, "priority": 5,
             "id": "job-1", "x_client": {"anything": [1, 2]}}
            """, files: ["a.jpg": jpeg])
        let job = try scratch.read("job-1")
        #expect(job.id == "job-1")
        #expect(job.question == "What bird is this?")
        #expect(job.system == "Be brief.")
        #expect(job.priority == 5)
        #expect(job.parameters == SamplingParameters(maxTokens: 32, temperature: 0.7, topP: 0.9, topK: 40,
                                                     repetitionPenalty: 1.1, seed: 7))
        #expect(job.images.count == 1)
        #expect(job.images[0].format == .jpeg)
        #expect(job.images[0].bytes == jpeg)
        #expect(job.images[0].sha256 == (try sha256Hex(ScratchSpool.jpeg)))
    }

    @Test func aSingleFileJobCarriesInlineBase64Images() throws {
        let scratch = try ScratchSpool()
        let jpeg = try Data(contentsOf: ScratchSpool.otherJPEG)
        try scratch.fileJob("inline.json", json: """
            {"question": "Describe it.", "images": [{"base64": "\(jpeg.base64EncodedString())", "name": "bird.jpg"}]}
            """)
        let job = try scratch.read("inline.json")
        #expect(job.id == "inline")
        #expect(job.images.map(\.name) == ["bird.jpg"])
        #expect(job.images[0].sha256 == (try sha256Hex(ScratchSpool.otherJPEG)))
        #expect(job.parameters == SamplingParameters())
    }

    /// Every malformed job.json of issue 5 point 6 is refused with an error naming the problem.
    @Test(arguments: [
        (#"{"question": "x","#, "not valid JSON"),
        (#"["question"]"#, "must hold one JSON object"),
        (#"{"images": []}"#, "no \"question\" field"),
        (#"{"question": "   "}"#, "\"question\" is empty"),
        (#"{"question": 3}"#, "field \"question\" must be a string"),
        (#"{"question": "q", "max_tokens": "5"}"#, "field \"max_tokens\" must be an integer"),
        (#"{"question": "q", "max_tokens": 2.5}"#, "field \"max_tokens\" must be an integer"),
        (#"{"question": "q", "temperature": true}"#, "field \"temperature\" must be a number"),
        (#"{"question": "q", "top_p": 0}"#, "field \"top_p\" is 0.0"),
        (#"{"question": "q", "seed": -1}"#, "field \"seed\" is -1"),
        (#"{"question": "q", "topk": 5}"#, "unknown field \"topk\""),
        (#"{"question": "q", "images": "a.jpg"}"#, "field \"images\" must be an array"),
        (#"{"question": "q", "images": [7]}"#, "field \"images[0]\" must be a file name"),
        (#"{"question": "q", "images": ["missing.jpg"]}"#, "image \"missing.jpg\" is listed in job.json but not in the job directory"),
        (#"{"question": "q", "images": ["../escape.jpg"]}"#, "image name \"../escape.jpg\" must be a plain file name"),
        (#"{"question": "q", "images": ["/etc/passwd"]}"#, "image name \"/etc/passwd\" must be a plain file name"),
        (#"{"question": "q", "images": [".hidden.jpg"]}"#, "image name \".hidden.jpg\" must be a plain file name"),
        (#"{"question": "q", "images": [{"base64": "!!!"}]}"#, "not valid base64"),
        (#"{"question": "q", "images": [{"data": "AAAA"}]}"#, "unknown field \"images[0].data\""),
        (#"{"question": "q", "id": "other"}"#, "field \"id\" is \"other\" but the job is named \"bad\""),
    ])
    func malformedJobsAreRefusedWithAClearError(json: String, expected: String) throws {
        let scratch = try ScratchSpool()
        try scratch.directoryJob("bad", json: json)
        let error = try #require(throws: SpoolError.self) { try scratch.read("bad") }
        #expect(error.description.contains(expected), "\(error.description)")
    }

    @Test func imagesThatAreNotJPEGOrPNGAreRefused() throws {
        let scratch = try ScratchSpool()
        try scratch.directoryJob("gif", json: #"{"question": "q", "images": ["a.gif"]}"#,
                                 files: ["a.gif": Data("GIF89a\u{1}\u{0}".utf8)])
        let error = try #require(throws: SpoolError.self) { try scratch.read("gif") }
        #expect(error.description.contains("neither JPEG nor PNG (it starts with 47 49 46 38)"))

        try scratch.directoryJob("empty", json: #"{"question": "q", "images": ["a.jpg"]}"#, files: ["a.jpg": Data()])
        #expect(throws: SpoolError.emptyImage("a.jpg")) { try scratch.read("empty") }
    }

    @Test func oversizedImagesAndTooManyImagesAreRefused() throws {
        let scratch = try ScratchSpool()
        let jpeg = try Data(contentsOf: ScratchSpool.jpeg)
        let limits = JobLimits(maxImageBytes: 1000, maxImages: 2)
        try scratch.directoryJob("big", json: #"{"question": "q", "images": ["a.jpg"]}"#, files: ["a.jpg": jpeg])
        #expect(throws: SpoolError.oversizedImage(name: "a.jpg", bytes: jpeg.count, limit: 1000)) {
            try scratch.read("big", limits: limits)
        }
        try scratch.fileJob("big-inline.json", json: """
            {"question": "q", "images": [{"base64": "\(jpeg.base64EncodedString())"}]}
            """)
        let inline = try #require(throws: SpoolError.self) { try scratch.read("big-inline.json", limits: limits) }
        #expect(inline.description.contains("the limit is 1000 bytes"))
        try scratch.directoryJob("many", json: #"{"question": "q", "images": ["a", "b", "c"]}"#)
        #expect(throws: SpoolError.tooManyImages(count: 3, limit: 2)) { try scratch.read("many", limits: limits) }
    }

    @Test func symbolicLinksAreNeverFollowed() throws {
        let scratch = try ScratchSpool()
        let fm = FileManager.default
        // An image that is a link to a file outside the spool.
        let dir = try scratch.directoryJob("link-image", json: #"{"question": "q", "images": ["a.jpg"]}"#)
        try fm.createSymbolicLink(atPath: "\(dir)/a.jpg", withDestinationPath: ScratchSpool.jpeg.path)
        #expect(throws: SpoolError.symbolicLink("a.jpg")) { try scratch.read("link-image") }

        // job.json itself a link.
        let other = try scratch.directoryJob("link-json", json: "{}")
        try fm.removeItem(atPath: "\(other)/job.json")
        let outside = scratch.spool.root.appendingPathComponent("outside.json")
        try Data(#"{"question": "q"}"#.utf8).write(to: outside)
        try fm.createSymbolicLink(atPath: "\(other)/job.json", withDestinationPath: outside.path)
        #expect(throws: SpoolError.symbolicLink("job.json")) { try scratch.read("link-json") }

        // The job entry itself a link (to a directory and to a file).
        let target = try scratch.directoryJob("real", json: #"{"question": "q"}"#)
        try fm.createSymbolicLink(atPath: "\(scratch.spool.incoming)/linked", withDestinationPath: target)
        #expect(throws: SpoolError.symbolicLink("linked")) { try scratch.read("linked") }
        try fm.createSymbolicLink(atPath: "\(scratch.spool.incoming)/linked.json", withDestinationPath: outside.path)
        #expect(throws: SpoolError.symbolicLink("linked.json")) { try scratch.read("linked.json") }
    }

    @Test func entriesThatAreNotJobsAreRefused() throws {
        let scratch = try ScratchSpool()
        try scratch.fileJob("notes.txt", json: "hello")
        #expect(try #require(throws: SpoolError.self) { try scratch.read("notes.txt") }.description.contains("not ending in .json"))
        try FileManager.default.createDirectory(atPath: "\(scratch.spool.incoming)/empty", withIntermediateDirectories: false)
        #expect(try #require(throws: SpoolError.self) { try scratch.read("empty") }.description.contains("has no job.json"))
        try scratch.directoryJob("bad name", json: #"{"question": "q"}"#)
        #expect(throws: SpoolError.invalidJobName("bad name")) { try scratch.read("bad name") }
        try scratch.fileJob("list.json", json: #"{"question": "q", "images": ["a.jpg"]}"#)
        #expect(try #require(throws: SpoolError.self) { try scratch.read("list.json") }.description.contains("single-file job"))
    }

    @Test func idsAreRestrictedToSafeFileNames() {
        #expect(SpoolDirectory.isValidID("20261130T161200.123Z-0a1b2c3d4e5f"))
        #expect(SpoolDirectory.isValidID(SpoolDirectory.newID()))
        for bad in ["", ".hidden", "a/b", "a b", "..", "x~2", String(repeating: "a", count: 129), "é"] {
            #expect(!SpoolDirectory.isValidID(bad), "\(bad)")
        }
        #expect(SpoolDirectory.jobID(forEntry: "abc.json") == "abc")
        #expect(SpoolDirectory.jobID(forEntry: "abc") == "abc")
    }
}
