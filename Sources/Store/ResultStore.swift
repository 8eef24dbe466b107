import CSQLite
import Foundation
import GRDB

/// Typed failures of the results database, with what to do about them.
public enum StoreError: Error, CustomStringConvertible {
    case notOurDatabase(path: String, applicationID: Int32)
    case newerSchema(path: String)
    case open(path: String, underlying: String)

    public var description: String {
        switch self {
        case .notOurDatabase(let path, let id):
            return "\(path) is a SQLite database of another application (application_id \(id)); give minimindv its own file"
        case .newerSchema(let path):
            return "\(path) was written by a newer minimindv (unknown migrations); upgrade this binary"
        case .open(let path, let why):
            return "cannot open results database \(path): \(why)"
        }
    }
}

/// The results database: one `jobs` row per job. WAL mode, so readers (`results`, `sqlite3`) never block
/// the daemon's writes; every write is one short `BEGIN IMMEDIATE` transaction.
public final class ResultStore: Sendable {
    /// `PRAGMA application_id`: "MMVR" (MiniMind-V Results), for tools that do not use GRDB.
    public static let applicationID: Int32 = 0x4D4D_5652
    /// `PRAGMA user_version`: the number of migrations applied.
    public static var schemaVersion: Int32 { Int32(ResultStore.migrationNames.count) }

    public let path: String
    let pool: DatabasePool

    /// Opens (creating and migrating) the database for writing, or read-only for listing results.
    public init(path: String, readOnly: Bool = false, busyTimeout: TimeInterval = 5) throws {
        self.path = path
        var config = Configuration()
        config.readonly = readOnly
        config.busyMode = .timeout(busyTimeout)
        config.label = "results"
        if !readOnly {
            config.prepareDatabase { db in
                // Keep -wal and -shm after the last writer closes, so read-only readers can always open the file.
                var persist: Int32 = 1
                _ = sqlite3_file_control(db.sqliteConnection, nil, SQLITE_FCNTL_PERSIST_WAL, &persist)
            }
        }
        pool = try Self.openPool(path: path, configuration: config, patience: busyTimeout)
        if readOnly {
            let applicationID = try pool.read { db in try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0 }
            if applicationID != 0 && applicationID != ResultStore.applicationID {
                throw StoreError.notOurDatabase(path: path, applicationID: applicationID)
            }
        } else {
            try migrate()
        }
    }

    /// Switching a new database to WAL takes an exclusive lock that SQLite's busy handler does not wait
    /// for, so daemons starting together on a new file can see SQLITE_BUSY here: wait and try again.
    private static func openPool(path: String, configuration: Configuration, patience: TimeInterval) throws -> DatabasePool {
        let deadline = Date().addingTimeInterval(patience)
        while true {
            do {
                return try DatabasePool(path: path, configuration: configuration)
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY && Date() < deadline {
                Thread.sleep(forTimeInterval: 0.02)
            } catch {
                throw StoreError.open(path: path, underlying: "\(error)")
            }
        }
    }

    static let migrationNames = ["v1-jobs"]

    private func migrate() throws {
        let existingID = try pool.read { db in try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0 }
        if existingID != 0 && existingID != ResultStore.applicationID {
            throw StoreError.notOurDatabase(path: path, applicationID: existingID)
        }
        var migrator = DatabaseMigrator()
        // A shipped migration is never edited; schema changes are new migrations appended here.
        migrator.registerMigration(ResultStore.migrationNames[0]) { db in
            try db.create(table: "jobs") { t in
                t.primaryKey("id", .text)
                t.column("status", .text).notNull()
                    .check(sql: "status IN ('queued','running','done','failed')")
                t.column("attempts", .integer).notNull().defaults(to: 0)
                t.column("question", .text)
                t.column("system", .text)
                t.column("images", .text).notNull().defaults(to: "[]")
                t.column("model", .text)
                t.column("parameters", .text)
                t.column("priority", .integer).notNull().defaults(to: 0)
                t.column("answer", .text)
                t.column("prompt_tokens", .integer)
                t.column("output_tokens", .integer)
                t.column("submitted_at", .text)
                t.column("started_at", .text)
                t.column("finished_at", .text)
                t.column("vision_ms", .double)
                t.column("prefill_ms", .double)
                t.column("decode_ms", .double)
                t.column("cache_hits", .integer)
                t.column("error", .text)
                t.column("worker", .text)
            }
            try db.create(index: "jobs_status", on: "jobs", columns: ["status"])
            try db.create(index: "jobs_finished_at", on: "jobs", columns: ["finished_at"])
        }
        if try pool.read({ db in try migrator.hasBeenSuperseded(db) }) {
            throw StoreError.newerSchema(path: path)
        }
        do {
            try migrator.migrate(pool)
        } catch {
            // Two daemons starting on a new file race to migrate it; the loser's CREATE fails because the
            // winner's committed. Then the schema is complete and there is nothing left to do.
            guard try pool.read({ db in try migrator.hasCompletedMigrations(db) }) else {
                try migrator.migrate(pool)
                return try finishMigration()
            }
        }
        try finishMigration()
    }

    private func finishMigration() throws {
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA application_id = \(ResultStore.applicationID)")
            try db.execute(sql: "PRAGMA user_version = \(ResultStore.schemaVersion)")
        }
    }

    // MARK: - Reading

    public func record(id: String) throws -> JobRecord? {
        try pool.read { db in try JobRecord.fetchOne(db, key: id) }
    }

    public func records(_ query: JobQuery) throws -> [JobRecord] {
        try pool.read { db in
            var request = JobRecord.all()
            if let id = query.id { request = request.filter(JobRecord.CodingKeys.id == id) }
            if let status = query.status { request = request.filter(JobRecord.CodingKeys.status == status.rawValue) }
            if let since = query.since {
                request = request.filter(sql: "COALESCE(finished_at, submitted_at, started_at) >= ?", arguments: [since])
            }
            request = query.oldestFirst
                ? request.order(sql: "COALESCE(finished_at, submitted_at, started_at) ASC, id ASC")
                : request.order(sql: "COALESCE(finished_at, submitted_at, started_at) DESC, id DESC")
            if let limit = query.limit { request = request.limit(limit) }
            return try request.fetchAll(db)
        }
    }

    /// Counts per status, for the daemon's STATUS= line.
    public func countsByStatus() throws -> [JobStatus: Int] {
        try pool.read { db in
            var counts: [JobStatus: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status") {
                if let status = JobStatus(rawValue: row["status"]) { counts[status] = row["n"] }
            }
            return counts
        }
    }

    // MARK: - The daemon's writes

    public enum StartOutcome: Equatable, Sendable {
        /// The job is now `running`; this is its `attempt`-th start.
        case started(attempt: Int)
        /// A job with this id exists and is not waiting to be retried.
        case duplicate(existing: JobStatus)
    }

    /// Marks a claimed job as running: a new row, or a `queued` row (recovered or returned) raised by one attempt.
    public func start(_ job: JobRecord) throws -> StartOutcome {
        try start([job])[0]
    }

    /// Marks several claimed jobs as running in one transaction (one commit to disk for a whole
    /// admission); outcomes in the order of `jobs`. A job id twice in `jobs` is a duplicate the second time.
    public func start(_ jobs: [JobRecord]) throws -> [StartOutcome] {
        guard !jobs.isEmpty else { return [] }
        return try pool.write { db in
            try jobs.map { job in
                if let existing = try JobRecord.fetchOne(db, key: job.id) {
                    guard existing.status == .queued else { return .duplicate(existing: existing.status) }
                    var row = job
                    row.status = .running
                    row.attempts = existing.attempts + 1
                    row.startedAt = Timestamp.now
                    row.submittedAt = existing.submittedAt ?? job.submittedAt
                    try row.update(db)
                    return .started(attempt: row.attempts)
                }
                var row = job
                row.status = .running
                row.attempts = 1
                row.startedAt = Timestamp.now
                try row.insert(db)
                return .started(attempt: 1)
            }
        }
    }

    /// Commits an answer in one transaction. This happens before the job leaves `active/`.
    public func finish(id: String, answer: JobAnswer) throws {
        try finish([(id, answer)])
    }

    /// Commits several answers in one transaction (the jobs that finished in the same decode step:
    /// one commit to disk instead of one each); all or none are stored.
    public func finish(_ answers: [(id: String, answer: JobAnswer)]) throws {
        guard !answers.isEmpty else { return }
        try pool.write { db in
            let finishedAt = Timestamp.now
            for (id, answer) in answers {
                try db.execute(sql: """
                    UPDATE jobs SET status = 'done', answer = ?, prompt_tokens = ?, output_tokens = ?, vision_ms = ?,
                      prefill_ms = ?, decode_ms = ?, cache_hits = ?, finished_at = ?, error = NULL WHERE id = ?
                    """, arguments: [answer.text, answer.promptTokens, answer.outputTokens, answer.visionMs,
                                     answer.prefillMs, answer.decodeMs, answer.cacheHits, finishedAt, id])
            }
        }
    }

    /// Records a failure and returns the id of the row written. The row `job.id` is updated if it is absent or
    /// in one of `replacing`; otherwise (a duplicate id) a new row `id~N` is inserted, so an earlier result is never lost.
    @discardableResult
    public func fail(_ job: JobRecord, error: String, replacing: Set<JobStatus>) throws -> String {
        try pool.write { db in
            var row = job
            row.status = .failed
            row.error = error
            row.finishedAt = Timestamp.now
            if let existing = try JobRecord.fetchOne(db, key: job.id) {
                if replacing.contains(existing.status) {
                    row.attempts = max(row.attempts, existing.attempts)
                    row.submittedAt = row.submittedAt ?? existing.submittedAt
                    row.startedAt = row.startedAt ?? existing.startedAt
                    row.question = row.question ?? existing.question
                    try row.update(db)
                    return row.id
                }
                var suffix = 2
                while try JobRecord.exists(db, key: "\(job.id)~\(suffix)") { suffix += 1 }
                row.id = "\(job.id)~\(suffix)"
            }
            try row.insert(db)
            return row.id
        }
    }

    /// Marks a job as waiting again (it went back to `incoming/`). `refundAttempt` undoes the count of a start
    /// that ended by a clean shutdown rather than a crash.
    public func requeue(id: String, refundAttempt: Bool) throws {
        try pool.write { db in
            try db.execute(sql: """
                UPDATE jobs SET status = 'queued', attempts = MAX(0, attempts - ?) WHERE id = ? AND status IN ('queued','running')
                """, arguments: [refundAttempt ? 1 : 0, id])
        }
    }

    /// Runs `body` inside a write transaction (tests use it to hold the write lock).
    public func withWriteTransaction<T: Sendable>(_ body: @Sendable () throws -> T) throws -> T {
        try pool.write { _ in try body() }
    }

    /// `PRAGMA` values a non-GRDB reader would check.
    public func pragmas() throws -> (journalMode: String, userVersion: Int32, applicationID: Int32, busyTimeout: Int) {
        try pool.read { db in
            (try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "",
             try Int32.fetchOne(db, sql: "PRAGMA user_version") ?? 0,
             try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0,
             try Int.fetchOne(db, sql: "PRAGMA busy_timeout") ?? 0)
        }
    }

    /// Folds the WAL back into the database; long readers can keep it from shrinking, so the daemon calls this now and then.
    public func checkpoint() {
        _ = try? pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(PASSIVE)") }
    }
}
