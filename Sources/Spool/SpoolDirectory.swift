import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A spool folder: `tmp/` (writers build jobs here), `incoming/` (complete jobs, by atomic rename),
/// `active/@<daemon>/` (claimed by one daemon), `done/` and `failed/`. See spool/README.md.
public struct SpoolDirectory: Sendable {
    public let root: URL

    public init(_ root: URL) { self.root = root }

    public var tmp: String { path("tmp") }
    public var incoming: String { path("incoming") }
    public var active: String { path("active") }
    public var done: String { path("done") }
    public var failed: String { path("failed") }

    private func path(_ folder: String) -> String { root.appendingPathComponent(folder).path }

    /// Creates any missing folder of the layout (permissions of existing ones are left alone:
    /// systemd-tmpfiles or the administrator sets them).
    public func create() throws(SpoolError) {
        for folder in [tmp, incoming, active, done, failed] where SpoolFiles.kind(of: folder) != .directory {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            } catch {
                throw .system(operation: "create", path: folder, errno: EACCES)
            }
        }
    }

    /// Waiting jobs: the visible names in `incoming/`, oldest id first.
    public func incomingNames() throws(SpoolError) -> [String] {
        try SpoolFiles.visibleNames(in: incoming)
    }

    /// The job id an entry name stands for: the name of a directory, or a file's name without `.json`.
    public static func jobID(forEntry name: String) -> String {
        name.hasSuffix(".json") && name.count > 5 ? String(name.dropLast(5)) : name
    }

    /// Ids are 1-128 of `A-Z a-z 0-9 . _ -`, not starting with `.`, so they are safe as file names and in logs.
    public static func isValidID(_ id: String) -> Bool {
        guard !id.isEmpty, id.utf8.count <= 128, !id.hasPrefix(".") else { return false }
        return id.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2E || byte == 0x5F || byte == 0x2D
        }
    }

    /// A new id: UTC time (so names sort by submission) and 48 random bits.
    public static func newID(now: Date = Date()) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .nanosecond], from: now)
        let stamp = String(format: "%04d%02d%02dT%02d%02d%02d.%03dZ", c.year ?? 0, c.month ?? 0, c.day ?? 0,
                           c.hour ?? 0, c.minute ?? 0, c.second ?? 0, (c.nanosecond ?? 0) / 1_000_000)
        let random = (0..<6).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        return "\(stamp)-\(random)"
    }

    /// Reads and validates the job at `path` (a job directory or a `.json` file); `name` is its entry name.
    public func readJob(atPath path: String, name: String, limits: JobLimits = JobLimits()) throws(SpoolError) -> JobRequest {
        let id = SpoolDirectory.jobID(forEntry: name)
        let submittedAt = SpoolFiles.modificationDate(of: path)
        switch SpoolFiles.kind(of: path) {
        case .symbolicLink:
            throw .symbolicLink(name)
        case .directory:
            guard SpoolDirectory.isValidID(id) else { throw .invalidJobName(name) }
            let dirfd = try SpoolFiles.openDirectory(path, displayName: name)
            defer { close(dirfd) }
            let text = try SpoolFiles.readFile(
                in: dirfd, name: "job.json", limit: limits.maxJobFileBytes,
                missing: .notAJob(name: name, detail: "the directory has no job.json"),
                notRegular: .notAJob(name: name, detail: "job.json is not a regular file"),
                tooLarge: { .oversizedJobFile(bytes: $0, limit: limits.maxJobFileBytes) })
            let object = try JobParser.object(from: text, file: "job.json")
            let parser = JobParser(id: id, limits: limits) { (image: String) throws(SpoolError) -> Data in
                try SpoolFiles.readFile(
                    in: dirfd, name: image, limit: limits.maxImageBytes,
                    missing: .missingImage(image), notRegular: .imageNotRegularFile(image),
                    tooLarge: { .oversizedImage(name: image, bytes: $0, limit: limits.maxImageBytes) })
            }
            return try parser.parse(object, submittedAt: submittedAt)
        case .regularFile:
            guard name.hasSuffix(".json") else { throw .notAJob(name: name, detail: "a plain file not ending in .json") }
            guard SpoolDirectory.isValidID(id) else { throw .invalidJobName(name) }
            let text = try SpoolFiles.readFile(atPath: path, displayName: name, limit: limits.maxJobFileBytes,
                                               tooLarge: { .oversizedJobFile(bytes: $0, limit: limits.maxJobFileBytes) })
            let object = try JobParser.object(from: text, file: name)
            return try JobParser(id: id, limits: limits, loadImage: nil).parse(object, submittedAt: submittedAt)
        case .other:
            throw .notAJob(name: name, detail: "neither a directory nor a regular file")
        case .missing:
            throw .system(operation: "read", path: path, errno: ENOENT)
        }
    }

    /// The `priority` a waiting job asks for, read cheaply (small job.json only) to order claims; 0 if unknown.
    public func peekPriority(ofIncoming name: String) -> Int {
        let base = "\(incoming)/\(name)"
        let file = SpoolFiles.kind(of: base) == .directory ? "\(base)/job.json" : base
        guard SpoolFiles.kind(of: file) == .regularFile,
              let data = try? SpoolFiles.readFile(atPath: file, displayName: name, limit: 256 << 10, tooLarge: { _ in .missingQuestion }),
              let object = try? JobParser.object(from: data, file: name),
              case .integer(let priority)? = object["priority"] else { return 0 }
        return Int(clamping: priority)
    }

    // MARK: - Moves shared by a live worker and the recovery of a dead one

    /// Moves a finished job to `done/` (or deletes it when `keep` is false). Returns the name in `done/`.
    @discardableResult
    public func retire(_ path: String, name: String, keep: Bool) throws(SpoolError) -> String? {
        guard keep else {
            SpoolFiles.removeTree(path)
            return nil
        }
        return try SpoolFiles.moveWithoutReplacing(path, into: done, name: name)
    }

    /// Moves a refused or failed job to `failed/` under `name` (or `name~N` if taken), with the reason in
    /// `error.txt` inside a job directory or in `<name>.error.txt` beside anything else. Returns the name used.
    @discardableResult
    public func reject(_ path: String, name: String, reason: String) throws(SpoolError) -> String {
        let text = Data((reason.hasSuffix("\n") ? reason : reason + "\n").utf8)
        if SpoolFiles.kind(of: path) == .directory {
            try SpoolFiles.writeFile(in: path, name: "error.txt", data: text)
            return try SpoolFiles.moveWithoutReplacing(path, into: failed, name: name)
        }
        let used = try SpoolFiles.moveWithoutReplacing(path, into: failed, name: name, reserved: { candidate in
            SpoolFiles.kind(of: "\(self.failed)/\(candidate).error.txt") != .missing
        })
        try SpoolFiles.writeFile(in: failed, name: "\(used).error.txt", data: text)
        return used
    }

    /// Puts a claimed job back into `incoming/` for another try. Returns its name there.
    @discardableResult
    public func requeue(_ path: String, name: String) throws(SpoolError) -> String {
        try SpoolFiles.moveWithoutReplacing(path, into: incoming, name: name)
    }

    /// Entries sitting directly in `active/` (not inside a daemon's `@...` claim folder): placed by hand.
    public func strayActiveNames() throws(SpoolError) -> [String] {
        try SpoolFiles.visibleNames(in: active).filter { name in
            !name.hasPrefix("@") || SpoolFiles.kind(of: "\(active)/\(name)") != .directory
        }
    }
}
