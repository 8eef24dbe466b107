/// The central directory of a ZIP archive in a mapped file, as PyTorch writes them
/// (every entry stored, not compressed), so that entries are windows on the map.
struct ZipArchive {
    struct Entry {
        let name: String
        /// 0 = stored; anything else is compressed.
        let method: UInt16
        let flags: UInt16
        let compressedSize: Int
        let size: Int
        let localHeaderOffset: Int
    }

    let file: MappedFile
    let displayName: String
    /// Entries in central-directory order.
    let entries: [Entry]
    private let index: [String: Int]

    static func looksLikeZip(_ file: MappedFile) -> Bool {
        file.count >= 4 && file.withBytes(0..<4) { $0.loadUnaligned(as: UInt32.self).littleEndian } == 0x0403_4B50
    }

    init(file: MappedFile, displayName: String) throws(FormatError) {
        self.file = file
        self.displayName = displayName
        func bad(_ message: String) -> FormatError {
            FormatError(.malformed, "\(displayName) is not a readable ZIP archive: \(message); the file is truncated or corrupt")
        }
        let count = file.count
        guard count >= 22 else { throw bad("too short") }
        let parsed = try file.withBytes { (raw) throws(FormatError) -> [Entry] in
            func u16(_ at: Int) -> Int { Int(raw.loadUnaligned(fromByteOffset: at, as: UInt16.self).littleEndian) }
            func u32(_ at: Int) -> Int { Int(raw.loadUnaligned(fromByteOffset: at, as: UInt32.self).littleEndian) }
            func u64(_ at: Int) -> UInt64 { raw.loadUnaligned(fromByteOffset: at, as: UInt64.self).littleEndian }

            // The end-of-central-directory record sits before a comment of at most 65535 bytes.
            var eocd = -1
            var at = count - 22
            let lowest = max(0, count - 22 - 65535)
            while at >= lowest {
                if u32(at) == 0x0605_4B50, at + 22 + u16(at + 20) == count { eocd = at; break }
                at -= 1
            }
            guard eocd >= 0 else { throw bad("no end-of-central-directory record") }
            var entryCount = u16(eocd + 10)
            var directorySize = u32(eocd + 12)
            var directoryOffset = u32(eocd + 16)
            if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
                // ZIP64: a locator just before the record points at the 64-bit record.
                guard eocd >= 20, u32(eocd - 20) == 0x0706_4B50 else { throw bad("ZIP64 locator missing") }
                let record = u64(eocd - 12)
                guard record <= UInt64(count - 56), u32(Int(record)) == 0x0606_4B50 else { throw bad("ZIP64 record missing") }
                let r = Int(record)
                let entries64 = u64(r + 32), size64 = u64(r + 40), offset64 = u64(r + 48)
                guard entries64 <= UInt64(count), size64 <= UInt64(count), offset64 <= UInt64(count) else { throw bad("ZIP64 record out of range") }
                entryCount = Int(entries64)
                directorySize = Int(size64)
                directoryOffset = Int(offset64)
            }
            guard directoryOffset <= count, directorySize <= count - directoryOffset else {
                throw bad("central directory lies outside the file")
            }
            guard entryCount <= directorySize / 46 else { throw bad("central directory too small for \(entryCount) entries") }

            var entries: [Entry] = []
            entries.reserveCapacity(entryCount)
            var p = directoryOffset
            let end = directoryOffset + directorySize
            for _ in 0..<entryCount {
                guard p + 46 <= end, u32(p) == 0x0201_4B50 else { throw bad("central directory entry \(entries.count) is damaged") }
                let flags = UInt16(u16(p + 8))
                let method = UInt16(u16(p + 10))
                var compressed = UInt64(u32(p + 20))
                var size = UInt64(u32(p + 24))
                let nameLength = u16(p + 28), extraLength = u16(p + 30), commentLength = u16(p + 32)
                var local = UInt64(u32(p + 42))
                let variable = nameLength + extraLength + commentLength
                guard p + 46 + variable <= end else { throw bad("central directory entry \(entries.count) runs past the directory") }
                let name = String(decoding: UnsafeRawBufferPointer(rebasing: raw[(p + 46)..<(p + 46 + nameLength)]), as: UTF8.self)
                // ZIP64 extra field: the 64-bit values of whichever fields are saturated, in this order.
                var e = p + 46 + nameLength
                let extraEnd = e + extraLength
                while e + 4 <= extraEnd {
                    let id = u16(e), length = u16(e + 2)
                    guard e + 4 + length <= extraEnd else { break }
                    if id == 0x0001 {
                        var f = e + 4
                        if size == 0xFFFF_FFFF, f + 8 <= e + 4 + length { size = u64(f); f += 8 }
                        if compressed == 0xFFFF_FFFF, f + 8 <= e + 4 + length { compressed = u64(f); f += 8 }
                        if local == 0xFFFF_FFFF, f + 8 <= e + 4 + length { local = u64(f); f += 8 }
                    }
                    e += 4 + length
                }
                guard size <= UInt64(count), compressed <= UInt64(count), local <= UInt64(count) else {
                    throw bad("entry \(name) has sizes beyond the file")
                }
                entries.append(Entry(name: name, method: method, flags: flags, compressedSize: Int(compressed),
                                     size: Int(size), localHeaderOffset: Int(local)))
                p += 46 + variable
            }
            return entries
        }
        self.entries = parsed
        var index: [String: Int] = [:]
        for (i, entry) in parsed.enumerated() where index[entry.name] == nil { index[entry.name] = i }
        self.index = index
    }

    func entry(named name: String) -> Entry? {
        index[name].map { entries[$0] }
    }

    /// The bytes of a stored entry as a range of the file; compressed or encrypted entries are refused.
    func dataRange(of entry: Entry) throws(FormatError) -> Range<Int> {
        guard entry.flags & 1 == 0 else {
            throw FormatError(.unsupported, "\(displayName): entry \(entry.name) is encrypted")
        }
        guard entry.method == 0 else {
            throw FormatError(.unsupported, "\(displayName): entry \(entry.name) is compressed (ZIP method \(entry.method)); torch.save writes checkpoints uncompressed, so this archive was repacked: re-save it with torch.save, or unzip and re-zip with `zip -0`")
        }
        guard entry.compressedSize == entry.size else {
            throw FormatError(.malformed, "\(displayName): stored entry \(entry.name) has two different sizes")
        }
        let local = entry.localHeaderOffset
        let count = file.count
        guard local <= count - 30 else { throw FormatError(.malformed, "\(displayName): entry \(entry.name) points past the end of the file; the file is truncated") }
        let (signature, nameLength, extraLength) = file.withBytes(local..<(local + 30)) { raw in
            (raw.loadUnaligned(as: UInt32.self).littleEndian,
             Int(raw.loadUnaligned(fromByteOffset: 26, as: UInt16.self).littleEndian),
             Int(raw.loadUnaligned(fromByteOffset: 28, as: UInt16.self).littleEndian))
        }
        guard signature == 0x0403_4B50 else { throw FormatError(.malformed, "\(displayName): the local header of \(entry.name) is damaged") }
        let start = local + 30 + nameLength + extraLength
        guard start <= count, entry.size <= count - start else {
            throw FormatError(.malformed, "\(displayName): entry \(entry.name) runs past the end of the file; the file is truncated")
        }
        return start..<(start + entry.size)
    }
}
