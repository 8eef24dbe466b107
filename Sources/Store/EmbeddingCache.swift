import Foundation
import GRDB

/// The vision tower's output for one image: `values.count == shape.reduce(1, *)`, float32, row-major.
public struct VisionEmbedding: Sendable, Equatable {
    public let shape: [Int]
    public let values: [Float]

    public init(shape: [Int], values: [Float]) {
        self.shape = shape
        self.values = values
    }

    public var byteCount: Int { values.count * MemoryLayout<Float>.size }
}

/// The cache seam the inference engine sees: look up or store the embedding of an image by the SHA-256
/// of its bytes. The model/preprocessing fingerprint is fixed when the cache is opened.
public protocol VisionEmbeddingCache: AnyObject, Sendable {
    func embedding(forImage sha256: String) -> VisionEmbedding?
    func store(_ embedding: VisionEmbedding, forImage sha256: String)
}

/// An in-memory LRU bounded by bytes in front of a disposable SQLite file (`embeddings.sqlite` under the
/// cache directory), so a restarted daemon still skips the encoder. Entries are keyed by
/// (fingerprint of the encoder, projector and preprocessing; SHA-256 of the image bytes): a new model
/// never sees an old model's embeddings. The file is bounded too: past `diskBudgetBytes` of embedding data
/// the entries least recently stored or read from disk go first (an old model's entries, never read
/// again, are the first to leave). A damaged file, or one of an older layout, is deleted and started afresh.
public final class EmbeddingCache: VisionEmbeddingCache, @unchecked Sendable {
    public let fingerprint: String
    public let memoryBudgetBytes: Int
    public let diskBudgetBytes: Int
    public let fileURL: URL?

    public struct Statistics: Sendable, Equatable {
        public var memoryHits = 0
        public var diskHits = 0
        public var misses = 0
        public var evictions = 0
        public var diskEvictions = 0
    }

    private let lock = NSLock()
    private var entries: [String: (embedding: VisionEmbedding, lastUse: UInt64)] = [:]
    private var clock: UInt64 = 0
    private var residentBytes = 0
    private var stats = Statistics()
    private let disk: DatabaseQueue?
    /// Bytes of embedding data in the file; read at open, then kept by every insert and eviction.
    private var diskBytes = 0

    /// The default bound of the cache file.
    public static let defaultDiskBudgetBytes = 1 << 30

    /// `directory` nil keeps the cache in memory only.
    public init(directory: URL?, fingerprint: String, memoryBudgetBytes: Int,
                diskBudgetBytes: Int = EmbeddingCache.defaultDiskBudgetBytes) {
        self.fingerprint = fingerprint
        self.memoryBudgetBytes = max(0, memoryBudgetBytes)
        self.diskBudgetBytes = max(0, diskBudgetBytes)
        guard let directory else {
            fileURL = nil
            disk = nil
            return
        }
        let url = directory.appendingPathComponent("embeddings.sqlite")
        fileURL = url
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if let queue = try? EmbeddingCache.open(url) {
            disk = queue
        } else {
            // Disposable by design: a file we cannot use is removed and rebuilt.
            for suffix in ["", "-wal", "-shm", "-journal"] {
                try? FileManager.default.removeItem(atPath: url.path + suffix)
            }
            disk = try? EmbeddingCache.open(url)
        }
        diskBytes = (try? disk?.read { db in
            try Int.fetchOne(db, sql: "SELECT coalesce(sum(length(data)), 0) FROM embeddings")
        } ?? 0) ?? 0
    }

    /// Bumped when the table changes; a file of another layout is rebuilt rather than migrated (it is a cache).
    private static let layoutVersion = 2

    private static func open(_ url: URL) throws -> DatabaseQueue {
        var config = Configuration()
        config.busyMode = .timeout(2)
        let queue = try DatabaseQueue(path: url.path, configuration: config)
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            let version = try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
            if version != layoutVersion {
                try db.execute(sql: "DROP TABLE IF EXISTS embeddings")
                try db.execute(sql: "PRAGMA user_version = \(layoutVersion)")
            }
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS embeddings (
                  fingerprint TEXT NOT NULL, image_sha256 TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL,
                  created_at TEXT NOT NULL, used_at INTEGER NOT NULL, PRIMARY KEY (fingerprint, image_sha256)) WITHOUT ROWID
                """)
            try db.execute(sql: "CREATE INDEX IF NOT EXISTS embeddings_by_use ON embeddings (used_at)")
            _ = try Row.fetchAll(db, sql: "SELECT fingerprint, used_at FROM embeddings LIMIT 1")
        }
        return queue
    }

    public var statistics: Statistics { lock.withLock { stats } }
    /// Bytes of embeddings held in memory now.
    public var memoryBytes: Int { lock.withLock { residentBytes } }
    public var memoryCount: Int { lock.withLock { entries.count } }
    /// Bytes of embedding data in the cache file now.
    public var fileBytes: Int { lock.withLock { diskBytes } }

    /// A strictly increasing use stamp that survives restarts (microseconds since 1970, bumped past the
    /// last one handed out so that two uses in one microsecond keep their order).
    private var lastStamp: Int64 = 0
    private func nextStamp() -> Int64 {
        lock.withLock {
            lastStamp = max(lastStamp + 1, Int64(Date().timeIntervalSince1970 * 1_000_000))
            return lastStamp
        }
    }

    public func embedding(forImage sha256: String) -> VisionEmbedding? {
        let cached: VisionEmbedding? = lock.withLock {
            guard let hit = entries[sha256] else { return nil }
            clock += 1
            entries[sha256] = (hit.embedding, clock)
            stats.memoryHits += 1
            return hit.embedding
        }
        if let cached { return cached }
        guard let fromDisk = loadFromDisk(sha256) else {
            lock.withLock { stats.misses += 1 }
            return nil
        }
        lock.withLock {
            stats.diskHits += 1
            remember(fromDisk, for: sha256)
        }
        return fromDisk
    }

    public func store(_ embedding: VisionEmbedding, forImage sha256: String) {
        lock.withLock { remember(embedding, for: sha256) }
        saveToDisk(embedding, for: sha256)
    }

    /// Inserts into the LRU and evicts least recently used entries until the budget holds. Lock held.
    private func remember(_ embedding: VisionEmbedding, for key: String) {
        guard embedding.byteCount <= memoryBudgetBytes else { return }
        if let old = entries[key] { residentBytes -= old.embedding.byteCount }
        clock += 1
        entries[key] = (embedding, clock)
        residentBytes += embedding.byteCount
        while residentBytes > memoryBudgetBytes,
              let oldest = entries.min(by: { $0.value.lastUse < $1.value.lastUse }) {
            entries[oldest.key] = nil
            residentBytes -= oldest.value.embedding.byteCount
            stats.evictions += 1
        }
    }

    private func loadFromDisk(_ sha256: String) -> VisionEmbedding? {
        guard let disk else { return nil }
        let row = try? disk.read { db in
            try Row.fetchOne(db, sql: "SELECT shape, data FROM embeddings WHERE fingerprint = ? AND image_sha256 = ?",
                             arguments: [fingerprint, sha256])
        }
        guard let row = row ?? nil else { return nil }
        let stamp = nextStamp()
        _ = try? disk.write { db in
            try db.execute(sql: "UPDATE embeddings SET used_at = ? WHERE fingerprint = ? AND image_sha256 = ?",
                           arguments: [stamp, fingerprint, sha256])
        }
        let shapeText: String = row["shape"]
        let data: Data = row["data"]
        let shape = shapeText.split(separator: "x").compactMap { Int($0) }
        let count = shape.reduce(1, *)
        guard !shape.isEmpty, count * MemoryLayout<Float>.size == data.count else { return nil }
        let values = data.withUnsafeBytes { raw in
            (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
        return VisionEmbedding(shape: shape, values: values)
    }

    private func saveToDisk(_ embedding: VisionEmbedding, for sha256: String) {
        guard let disk else { return }
        var data = Data(capacity: embedding.byteCount)
        for value in embedding.values {
            withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) }
        }
        let shape = embedding.shape.map(String.init).joined(separator: "x")
        let stamp = nextStamp()
        guard data.count <= diskBudgetBytes else { return }
        let added = (try? disk.write { db -> Int in
            let replaced = try Int.fetchOne(db, sql: "SELECT length(data) FROM embeddings WHERE fingerprint = ? AND image_sha256 = ?",
                                            arguments: [fingerprint, sha256]) ?? 0
            try db.execute(sql: """
                INSERT OR REPLACE INTO embeddings (fingerprint, image_sha256, shape, data, created_at, used_at) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [fingerprint, sha256, shape, data, Timestamp.now, stamp])
            return data.count - replaced
        }) ?? 0
        let over = lock.withLock { () -> Bool in
            diskBytes += added
            return diskBytes > diskBudgetBytes
        }
        if over { evictFromDisk() }
    }

    /// Deletes the least recently used rows until the file's data fits the budget. The total is counted
    /// again inside the transaction because other daemons sharing the cache directory write to it too.
    private func evictFromDisk() {
        guard let disk else { return }
        let budget = diskBudgetBytes
        guard let (remaining, count) = try? disk.write({ db -> (Int, Int) in
            var total = try Int.fetchOne(db, sql: "SELECT coalesce(sum(length(data)), 0) FROM embeddings") ?? 0
            var victims: [(fingerprint: String, image: String)] = []
            let rows = try Row.fetchCursor(db, sql: "SELECT fingerprint, image_sha256, length(data) AS size FROM embeddings ORDER BY used_at")
            while total > budget, let row = try rows.next() {
                victims.append((row["fingerprint"], row["image_sha256"]))
                total -= row["size"] as Int
            }
            for victim in victims {
                try db.execute(sql: "DELETE FROM embeddings WHERE fingerprint = ? AND image_sha256 = ?",
                               arguments: [victim.fingerprint, victim.image])
            }
            return (total, victims.count)
        }) else { return }
        lock.withLock {
            diskBytes = remaining
            stats.diskEvictions += count
        }
    }
}
