import Foundation
import GRDB

/// Where a job stands. `queued` is a job put back into `incoming/` (recovered or returned on shutdown).
public enum JobStatus: String, Codable, Sendable, CaseIterable, DatabaseValueConvertible {
    case queued, running, done, failed
}

/// One row of `jobs`: a job, its parameters and its answer or error. Column names are the coding keys.
public struct JobRecord: Codable, Equatable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "jobs"

    public var id: String
    public var status: JobStatus
    /// How many times a daemon has started this job (a crash in the middle leaves it raised).
    public var attempts: Int
    public var question: String?
    public var system: String?
    /// SHA-256 (hex) of each image's bytes, in order; JSON text in the database.
    public var images: [String]
    public var model: String?
    /// The sampling parameters the job asked for, as JSON text.
    public var parameters: String?
    public var priority: Int
    public var answer: String?
    public var promptTokens: Int?
    public var outputTokens: Int?
    /// ISO 8601 UTC with milliseconds, e.g. `2026-11-30T16:09:41.123Z` (sorts as text; SQLite's date functions read it).
    public var submittedAt: String?
    public var startedAt: String?
    public var finishedAt: String?
    public var visionMs: Double?
    public var prefillMs: Double?
    public var decodeMs: Double?
    /// Images whose embedding came from the cache instead of the vision encoder.
    public var cacheHits: Int?
    public var error: String?
    /// The daemon (`@host.pid.random`) that last ran the job.
    public var worker: String?

    public enum CodingKeys: String, CodingKey, ColumnExpression {
        case id, status, attempts, question, system, images, model, parameters, priority, answer
        case promptTokens = "prompt_tokens", outputTokens = "output_tokens"
        case submittedAt = "submitted_at", startedAt = "started_at", finishedAt = "finished_at"
        case visionMs = "vision_ms", prefillMs = "prefill_ms", decodeMs = "decode_ms"
        case cacheHits = "cache_hits", error, worker
    }

    public init(id: String, status: JobStatus, attempts: Int = 0, question: String? = nil, system: String? = nil,
                images: [String] = [], model: String? = nil, parameters: String? = nil, priority: Int = 0,
                submittedAt: String? = nil, worker: String? = nil) {
        self.id = id
        self.status = status
        self.attempts = attempts
        self.question = question
        self.system = system
        self.images = images
        self.model = model
        self.parameters = parameters
        self.priority = priority
        self.submittedAt = submittedAt
        self.worker = worker
    }
}

/// The timestamp format of every `*_at` column.
public enum Timestamp {
    public static func string(_ date: Date) -> String {
        let millis = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        let seconds = time_t(millis / 1000)
        var parts = tm()
        var copy = seconds
        gmtime_r(&copy, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(millis % 1000))
    }

    public static var now: String { string(Date()) }
}

/// Filters for listing results (the `results` command).
public struct JobQuery: Sendable {
    public var id: String?
    public var status: JobStatus?
    /// Rows finished (or, unfinished, submitted) at or after this timestamp.
    public var since: String?
    public var limit: Int?
    /// Oldest first (for `--follow`); newest first otherwise.
    public var oldestFirst: Bool

    public init(id: String? = nil, status: JobStatus? = nil, since: String? = nil, limit: Int? = nil, oldestFirst: Bool = false) {
        self.id = id
        self.status = status
        self.since = since
        self.limit = limit
        self.oldestFirst = oldestFirst
    }
}

/// What an answered job produced: the text, token counts, time spent per phase, and embedding-cache hits.
public struct JobAnswer: Sendable, Equatable {
    public var text: String
    public var promptTokens: Int
    public var outputTokens: Int
    public var visionMs: Double
    public var prefillMs: Double
    public var decodeMs: Double
    /// Images whose embedding came from the cache (the encoder did not run for them).
    public var cacheHits: Int
    /// Prompt positions whose keys and values came from an earlier prompt (not stored; logged).
    public var reusedPromptTokens: Int

    public init(text: String, promptTokens: Int, outputTokens: Int, visionMs: Double, prefillMs: Double,
                decodeMs: Double, cacheHits: Int, reusedPromptTokens: Int = 0) {
        self.reusedPromptTokens = reusedPromptTokens
        self.text = text
        self.promptTokens = promptTokens
        self.outputTokens = outputTokens
        self.visionMs = visionMs
        self.prefillMs = prefillMs
        self.decodeMs = decodeMs
        self.cacheHits = cacheHits
    }
}
