import Foundation
import Store
import Testing
import TestSupport

/// A 64x8 embedding whose values depend on `seed`, 2 KiB each.
func embedding(_ seed: Int) -> VisionEmbedding {
    VisionEmbedding(shape: [64, 8], values: (0..<512).map { Float(seed) + Float($0) / 1024 })
}

func key(_ seed: Int) -> String { String(format: "%064x", seed) }

@Suite struct EmbeddingCacheTests {
    @Test func theMemoryLRUStaysWithinItsByteBudgetAndDropsTheLeastRecentlyUsed() {
        let cache = EmbeddingCache(directory: nil, fingerprint: "f", memoryBudgetBytes: 3 * 2048)
        for seed in 0..<3 { cache.store(embedding(seed), forImage: key(seed)) }
        #expect(cache.memoryCount == 3)
        #expect(cache.embedding(forImage: key(0)) == embedding(0))   // 0 is now the most recent
        cache.store(embedding(3), forImage: key(3))                   // evicts 1, the least recent
        #expect(cache.memoryBytes <= 3 * 2048)
        #expect(cache.memoryCount == 3)
        #expect(cache.embedding(forImage: key(1)) == nil)
        #expect(cache.embedding(forImage: key(0)) == embedding(0))
        #expect(cache.embedding(forImage: key(2)) == embedding(2))
        #expect(cache.embedding(forImage: key(3)) == embedding(3))
        #expect(cache.statistics.evictions == 1)
        #expect(cache.statistics.misses == 1)

        // A budget smaller than one entry keeps nothing in memory.
        let tiny = EmbeddingCache(directory: nil, fingerprint: "f", memoryBudgetBytes: 100)
        tiny.store(embedding(0), forImage: key(0))
        #expect(tiny.memoryCount == 0)
    }

    @Test func embeddingsSurviveReopeningAndAreBoundToTheirFingerprint() throws {
        let dir = try Fixtures.temporaryDirectory("cache-test")
        do {
            let cache = EmbeddingCache(directory: dir, fingerprint: "encoder-a", memoryBudgetBytes: 1 << 20)
            cache.store(embedding(7), forImage: key(7))
        }
        let reopened = EmbeddingCache(directory: dir, fingerprint: "encoder-a", memoryBudgetBytes: 1 << 20)
        #expect(reopened.embedding(forImage: key(7)) == embedding(7))
        #expect(reopened.statistics.diskHits == 1)
        #expect(reopened.embedding(forImage: key(7)) == embedding(7))
        #expect(reopened.statistics.memoryHits == 1)

        let otherModel = EmbeddingCache(directory: dir, fingerprint: "encoder-b", memoryBudgetBytes: 1 << 20)
        #expect(otherModel.embedding(forImage: key(7)) == nil)
    }

    @Test func aDamagedCacheFileIsReplacedNotFatal() throws {
        let dir = try Fixtures.temporaryDirectory("cache-test")
        try Data("this is not a database, just garbage bytes".utf8).write(to: dir.appendingPathComponent("embeddings.sqlite"))
        let cache = EmbeddingCache(directory: dir, fingerprint: "f", memoryBudgetBytes: 0)
        cache.store(embedding(1), forImage: key(1))
        let reopened = EmbeddingCache(directory: dir, fingerprint: "f", memoryBudgetBytes: 0)
        #expect(reopened.embedding(forImage: key(1)) == embedding(1))
    }

    @Test func theCacheFileStaysWithinItsBudgetAndKeepsTheRecentlyUsed() throws {
        let dir = try Fixtures.temporaryDirectory("cache-test")
        // Room for three 2 KiB entries on disk, none in memory: every read goes to the file.
        let cache = EmbeddingCache(directory: dir, fingerprint: "f", memoryBudgetBytes: 0, diskBudgetBytes: 3 * 2048)
        for seed in 0..<3 { cache.store(embedding(seed), forImage: key(seed)) }
        #expect(cache.fileBytes == 3 * 2048)
        #expect(cache.embedding(forImage: key(0)) == embedding(0))   // read from disk: 0 is now the most recent
        cache.store(embedding(3), forImage: key(3))                   // evicts 1
        #expect(cache.fileBytes <= 3 * 2048)
        #expect(cache.statistics.diskEvictions == 1)

        let reopened = EmbeddingCache(directory: dir, fingerprint: "f", memoryBudgetBytes: 0, diskBudgetBytes: 3 * 2048)
        #expect(reopened.fileBytes == 3 * 2048)
        #expect(reopened.embedding(forImage: key(1)) == nil)
        for seed in [0, 2, 3] { #expect(reopened.embedding(forImage: key(seed)) == embedding(seed)) }

        // Another model's entries are never read again, so they are the first to go.
        let newModel = EmbeddingCache(directory: dir, fingerprint: "g", memoryBudgetBytes: 0, diskBudgetBytes: 3 * 2048)
        for seed in 10..<13 { newModel.store(embedding(seed), forImage: key(seed)) }
        #expect(newModel.fileBytes <= 3 * 2048)
        for seed in 10..<13 { #expect(newModel.embedding(forImage: key(seed)) == embedding(seed)) }
        for seed in [0, 2, 3] { #expect(reopened.embedding(forImage: key(seed)) == nil) }
    }

    @Test func anEmbeddingLargerThanTheFileBudgetIsNotWritten() throws {
        let dir = try Fixtures.temporaryDirectory("cache-test")
        let cache = EmbeddingCache(directory: dir, fingerprint: "f", memoryBudgetBytes: 0, diskBudgetBytes: 1000)
        cache.store(embedding(1), forImage: key(1))
        #expect(cache.fileBytes == 0)
        #expect(cache.embedding(forImage: key(1)) == nil)
    }

    @Test func aCacheFileOfTheOldLayoutIsRebuilt() throws {
        let dir = try Fixtures.temporaryDirectory("cache-test")
        let url = dir.appendingPathComponent("embeddings.sqlite")
        // Session 1's layout: no used_at column, user_version 0.
        let sqlite = Process()
        sqlite.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        sqlite.arguments = [url.path, """
            CREATE TABLE embeddings (fingerprint TEXT NOT NULL, image_sha256 TEXT NOT NULL, shape TEXT NOT NULL,
            data BLOB NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (fingerprint, image_sha256)) WITHOUT ROWID;
            INSERT INTO embeddings VALUES ('f', 'x', '1', x'00000000', '2026-01-01');
            """]
        try sqlite.run()
        sqlite.waitUntilExit()
        #expect(sqlite.terminationStatus == 0)
        let cache = EmbeddingCache(directory: dir, fingerprint: "f", memoryBudgetBytes: 0)
        cache.store(embedding(2), forImage: key(2))
        let reopened = EmbeddingCache(directory: dir, fingerprint: "f", memoryBudgetBytes: 0)
        #expect(reopened.embedding(forImage: key(2)) == embedding(2))
        #expect(reopened.fileBytes == 2048)
    }
}
