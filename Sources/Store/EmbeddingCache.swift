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
/// never sees an old model's embeddings. A damaged file is deleted and started afresh.
public final class EmbeddingCache: VisionEmbeddingCache, @unchecked Sendable {
    public let fingerprint: String
    public let memoryBudgetBytes: Int
    public let fileURL: URL?

    public struct Statistics: Sendable, Equatable {
        public var memoryHits = 0
        public var diskHits = 0
        public var misses = 0
        public var evictions = 0
    }

    private let lock = NSLock()
    private var entries: [String: (embedding: VisionEmbedding, lastUse: UInt64)] = [:]
    private var clock: UInt64 = 0
    private var residentBytes = 0
    private var stats = Statistics()
    private let disk: DatabaseQueue?

    /// `directory` nil keeps the cache in memory only.
    public init(directory: URL?, fingerprint: String, memoryBudgetBytes: Int) {
        self.fingerprint = fingerprint
        self.memoryBudgetBytes = max(0, memoryBudgetBytes)
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
    }

    private static func open(_ url: URL) throws -> DatabaseQueue {
        var config = Configuration()
        config.busyMode = .timeout(2)
        let queue = try DatabaseQueue(path: url.path, configuration: config)
        try queue.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_mode = WAL")
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS embeddings (
                  fingerprint TEXT NOT NULL, image_sha256 TEXT NOT NULL, shape TEXT NOT NULL, data BLOB NOT NULL,
                  created_at TEXT NOT NULL, PRIMARY KEY (fingerprint, image_sha256)) WITHOUT ROWID
                """)
            _ = try Row.fetchAll(db, sql: "SELECT fingerprint FROM embeddings LIMIT 1")
        }
        return queue
    }

    public var statistics: Statistics { lock.withLock { stats } }
    /// Bytes of embeddings held in memory now.
    public var memoryBytes: Int { lock.withLock { residentBytes } }
    public var memoryCount: Int { lock.withLock { entries.count } }

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
        _ = try? disk.write { db in
            try db.execute(sql: """
                INSERT OR REPLACE INTO embeddings (fingerprint, image_sha256, shape, data, created_at) VALUES (?, ?, ?, ?, ?)
                """, arguments: [fingerprint, sha256, shape, data, Timestamp.now])
        }
    }
}
