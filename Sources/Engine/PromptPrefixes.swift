import Model

/// Keys and values of recently prefilled prompts, so that a prompt sharing a beginning with one of
/// them prefills only the rest: the same picture asked another question, or the same question
/// again. A daemon sees this all the time (several users, or one user's follow-up questions, on
/// one image), and an image prompt's beginning is its expensive part (64-256 placeholder
/// positions before a question of a dozen tokens).
///
/// A beginning is shared when the tokens are equal and every image whose placeholder run starts
/// inside it is the same image (by the key the caller gives, e.g. the SHA-256 of its bytes). The
/// reused positions are bit-for-bit the keys and values the earlier prefill computed for them.
/// Bounded by bytes; the least recently used prompt goes first.
final class PromptPrefixes {
    private struct Entry {
        let tokens: [Int]
        let imageKeys: [String]
        let runs: [Int]          // placeholder run starts
        let cache: KVCache       // exactly the prompt's positions
        var lastUse: UInt64
    }

    let byteLimit: Int
    private let placeholder: Int
    private let runLength: Int
    private var entries: [Entry] = []
    private var clock: UInt64 = 0

    init(byteLimit: Int, placeholder: Int, runLength: Int) {
        self.byteLimit = byteLimit
        self.placeholder = placeholder
        self.runLength = runLength
    }

    var byteCount: Int { entries.reduce(0) { $0 + $1.cache.byteCount } }
    var count: Int { entries.count }

    /// The longest remembered beginning of `tokens` (at most `limit` positions) and its cache.
    func longestPrefix(of tokens: [Int], imageKeys: [String], limit: Int) -> (cache: KVCache, length: Int)? {
        let runs = PlaceholderRuns(tokens: tokens, placeholder: placeholder, length: runLength).starts
        guard runs.count == imageKeys.count else { return nil }
        var best: (index: Int, length: Int)?
        for (index, entry) in entries.enumerated() {
            var length = 0
            let most = min(limit, entry.tokens.count, tokens.count)
            while length < most, entry.tokens[length] == tokens[length] { length += 1 }
            // Equal tokens up to `length`: cut before the first image that differs.
            for (k, start) in runs.enumerated() where start < length {
                if k >= entry.imageKeys.count || entry.runs[k] != start || entry.imageKeys[k] != imageKeys[k] {
                    length = start
                    break
                }
            }
            if length > (best?.length ?? 0) { best = (index, length) }
        }
        guard let best else { return nil }
        clock += 1
        entries[best.index].lastUse = clock
        return (entries[best.index].cache, best.length)
    }

    /// Remembers the first `tokens.count` positions of `cache` (copied) for later prompts.
    func remember(_ tokens: [Int], imageKeys: [String], cache: KVCache) {
        let runs = PlaceholderRuns(tokens: tokens, placeholder: placeholder, length: runLength).starts
        guard runs.count == imageKeys.count, cache.count >= tokens.count, !tokens.isEmpty else { return }
        clock += 1
        if let same = entries.firstIndex(where: { $0.tokens == tokens && $0.imageKeys == imageKeys }) {
            entries[same].lastUse = clock
            return
        }
        let copy = cache.copy(prefix: tokens.count, capacity: tokens.count)
        guard copy.byteCount <= byteLimit else { return }
        entries.append(Entry(tokens: tokens, imageKeys: imageKeys, runs: runs, cache: copy, lastUse: clock))
        var total = byteCount
        while total > byteLimit, let oldest = entries.indices.min(by: { entries[$0].lastUse < entries[$1].lastUse }) {
            total -= entries[oldest].cache.byteCount
            entries.remove(at: oldest)
        }
    }
}
