import ArgumentParser
import Foundation
import Store

struct Results: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List results from the daemon's SQLite database.",
        discussion: """
            Newest first. --json writes one JSON object per line with id, status, answer, error, images, \
            output_tokens, cache_hits, finished_at and every other column of the jobs table. --follow prints \
            results as they land (oldest first), until interrupted. The database is opened read-only; \
            the daemon is never blocked.
            """)

    @Option(help: "Results database (default ./results.sqlite).") var db = "./results.sqlite"
    @Option(help: "Only this job.") var id: String?
    @Option(help: "queued, running, done or failed.") var status: String?
    @Option(help: "Finished at or after: an ISO 8601 time (2026-11-30T16:00:00Z) or an age such as 90s, 15m, 2h, 7d.")
    var since: String?
    @Option(help: "At most this many rows.") var limit: Int?
    @Flag(help: "JSON lines instead of text.") var json = false
    @Flag(help: "Keep printing new results as they land.") var follow = false

    func run() async throws {
        guard FileManager.default.fileExists(atPath: db) else {
            throw SpoolCommandError("no results database at \(db) (is `minimindv serve --db \(db)` running?)")
        }
        let store: ResultStore
        do { store = try ResultStore(path: db, readOnly: true) } catch { throw SpoolCommandError("\(error)") }
        var query = JobQuery(id: id, since: try since.map(Results.timestamp), limit: limit)
        if let status {
            guard let parsed = JobStatus(rawValue: status) else {
                throw ValidationError("--status must be one of \(JobStatus.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            query.status = parsed
        }
        if !follow {
            for row in try store.records(query) { print(line(row)) }
            return
        }
        // Follow: finished rows in the order they land; each printed once.
        query.oldestFirst = true
        var printed = Set<String>()
        var watermark = query.since
        var first = true
        while true {
            var page = query
            page.since = watermark
            page.limit = first ? limit : nil
            let rows = try store.records(page).filter { ($0.status == .done || $0.status == .failed) && !printed.contains($0.id) }
            for row in rows {
                print(line(row))
                printed.insert(row.id)
                if let finished = row.finishedAt, finished > (watermark ?? "") { watermark = finished }
            }
            if !rows.isEmpty { fflush(nil) }
            first = false
            try await Task.sleep(for: .milliseconds(250))
        }
    }

    private func line(_ row: JobRecord) -> String {
        if json { return Results.jsonLine(row) }
        let answer = (row.status == .failed ? "error: " + (row.error ?? "") : row.answer ?? "")
            .replacingOccurrences(of: "\n", with: " ")
        return [row.id, row.status.rawValue, row.finishedAt ?? "-", row.outputTokens.map(String.init) ?? "-", answer]
            .joined(separator: "\t")
    }

    /// Every column, nulls included, in one line.
    static func jsonLine(_ row: JobRecord) -> String {
        func value<T>(_ x: T?) -> Any { x.map { $0 as Any } ?? NSNull() }
        let object: [String: Any] = [
            "id": row.id, "status": row.status.rawValue, "attempts": row.attempts, "question": value(row.question),
            "system": value(row.system), "images": row.images, "model": value(row.model),
            "parameters": value(row.parameters), "priority": row.priority, "answer": value(row.answer),
            "prompt_tokens": value(row.promptTokens), "output_tokens": value(row.outputTokens),
            "submitted_at": value(row.submittedAt), "started_at": value(row.startedAt),
            "finished_at": value(row.finishedAt), "vision_ms": value(row.visionMs), "prefill_ms": value(row.prefillMs),
            "decode_ms": value(row.decodeMs), "cache_hits": value(row.cacheHits), "error": value(row.error),
            "worker": value(row.worker),
        ]
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// An ISO 8601 time, or an age (`90s`, `15m`, `2h`, `7d`) before now, as a column timestamp.
    static func timestamp(_ text: String) throws -> String {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        if let unit = text.last, let scale = units[unit], let amount = Double(text.dropLast()), amount >= 0 {
            return Timestamp.string(Date().addingTimeInterval(-amount * scale))
        }
        let formatter = ISO8601DateFormatter()
        for options: ISO8601DateFormatter.Options in [[.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime], [.withFullDate]] {
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return Timestamp.string(date) }
        }
        throw ValidationError("--since \(text): give an ISO 8601 time such as 2026-11-30T16:00:00Z, a date, or an age such as 15m")
    }
}
