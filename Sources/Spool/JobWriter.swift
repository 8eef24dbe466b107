import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a submitter wants answered; written as a job directory by `JobWriter`.
public struct JobSubmission: Sendable {
    public var question: String
    public var system: String?
    /// Image files to copy into the job.
    public var imageFiles: [URL]
    public var parameters: SamplingParameters
    public var priority: Int?
    /// Chosen by the writer if nil.
    public var id: String?

    public init(question: String, system: String? = nil, imageFiles: [URL] = [],
                parameters: SamplingParameters = SamplingParameters(), priority: Int? = nil, id: String? = nil) {
        self.question = question
        self.system = system
        self.imageFiles = imageFiles
        self.parameters = parameters
        self.priority = priority
        self.id = id
    }
}

/// Writes jobs the way the protocol asks: build `tmp/<id>/`, sync it, rename it into `incoming/`.
/// The daemon therefore never sees a half-written job.
public struct JobWriter: Sendable {
    public let spool: SpoolDirectory

    public init(spool: SpoolDirectory) { self.spool = spool }

    public enum Failure: Error, CustomStringConvertible {
        case invalidID(String)
        case unreadableImage(URL, String)
        case spoolMissing(String)
        case alreadySubmitted(String)
        case io(String)

        public var description: String {
            switch self {
            case .invalidID(let id): return "id \"\(id)\" is not valid: use 1-128 of A-Z a-z 0-9 . _ - and do not start with '.'"
            case .unreadableImage(let url, let why): return "cannot read image \(url.path): \(why)"
            case .spoolMissing(let path): return "\(path) is not a spool (no tmp/ and incoming/ inside); start `minimindv serve` once or create them"
            case .alreadySubmitted(let id): return "a job named \(id) is already waiting in incoming/; choose another id"
            case .io(let why): return why
            }
        }
    }

    /// Writes the job and returns its id.
    public func submit(_ job: JobSubmission) throws(Failure) -> String {
        let id = job.id ?? SpoolDirectory.newID()
        guard SpoolDirectory.isValidID(id) else { throw .invalidID(id) }
        guard SpoolFiles.kind(of: spool.tmp) == .directory, SpoolFiles.kind(of: spool.incoming) == .directory else {
            throw .spoolMissing(spool.root.path)
        }
        var imageNames: [String] = []
        var imageData: [Data] = []
        for (index, url) in job.imageFiles.enumerated() {
            let data: Data
            do { data = try Data(contentsOf: url) } catch { throw .unreadableImage(url, error.localizedDescription) }
            let ext = url.pathExtension.lowercased().filter { $0.isLetter || $0.isNumber }
            imageNames.append("image\(index + 1)" + (ext.isEmpty ? "" : ".\(ext)"))
            imageData.append(data)
        }
        var object: [String: Any] = ["question": job.question]
        if !imageNames.isEmpty { object["images"] = imageNames }
        if let system = job.system { object["system"] = system }
        if let priority = job.priority { object["priority"] = priority }
        let p = job.parameters
        if let v = p.maxTokens { object["max_tokens"] = v }
        if let v = p.temperature { object["temperature"] = v }
        if let v = p.topP { object["top_p"] = v }
        if let v = p.topK { object["top_k"] = v }
        if let v = p.repetitionPenalty { object["repetition_penalty"] = v }
        if let v = p.seed { object["seed"] = v }
        let json: Data
        do { json = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) } catch {
            throw .io("cannot encode job.json: \(error)")
        }

        let building = "\(spool.tmp)/\(id).\(getpid())"
        do {
            SpoolFiles.removeTree(building)
            guard mkdir(building, 0o770) == 0 else { throw SpoolError.system(operation: "create", path: building, errno: errno) }
            // Group-writable whatever the umask: a daemon running as another user of the spool's group must be
            // able to rename the folder (which rewrites its "..") and write error.txt into it.
            chmod(building, 0o770)
            for (name, data) in zip(imageNames, imageData) {
                try SpoolFiles.writeFile(in: building, name: name, data: data)
            }
            try SpoolFiles.writeFile(in: building, name: "job.json", data: json)
            SpoolFiles.sync(directory: building)
        } catch {
            SpoolFiles.removeTree(building)
            throw .io("\(error)")
        }
        let target = "\(spool.incoming)/\(id)"
        // rename(2) onto a non-empty directory fails, so an existing job is never replaced.
        if SpoolFiles.kind(of: target) != .missing || Glibc.rename(building, target) != 0 {
            SpoolFiles.removeTree(building)
            throw .alreadySubmitted(id)
        }
        SpoolFiles.sync(directory: spool.incoming)
        return id
    }
}
