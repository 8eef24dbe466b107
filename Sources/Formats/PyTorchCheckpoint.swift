/// A `torch.save` checkpoint (`.pth`, `pytorch_model.bin`): the ZIP form (`<prefix>/data.pkl`
/// plus raw storages under `<prefix>/data/`) or the legacy pre-ZIP stream.
///
/// The pickle is read by `PickleMachine`, which only knows the globals a state dict needs.
/// Contiguous tensors are windows on the mapped file; non-contiguous views and big-endian
/// files are materialised into owned bytes. Tensors sharing a storage (tied weights) each
/// get their own entry.
public struct PyTorchCheckpoint: TensorSource, UnsupportedTensorListing {
    public enum Layout: String, Sendable {
        /// `torch.save` since PyTorch 1.6: a ZIP archive of stored entries.
        case zip
        /// `_use_new_zipfile_serialization=False`: pickles and storages in one stream.
        case legacy
    }

    public let path: String
    public let file: MappedFile
    public let layout: Layout
    /// Tensors of the types we convert, in the state dict's order.
    public let tensors: [Tensor]
    /// Tensors of other types (complex, quantised, float8), in the state dict's order.
    public let unsupportedTensors: [UnsupportedTensor]
    /// The top-level key the state dict was found under (`model`, `state_dict`), or nil when
    /// the pickle is the state dict itself.
    public let stateDictKey: String?
    /// Whether the storages were written big-endian (their bytes are swapped on reading).
    public let isBigEndian: Bool

    public var sourceDescription: String { path }

    /// Keys under which training scripts nest the model's weights, most specific first.
    public static let stateDictKeys = ["state_dict", "model_state_dict", "model", "module", "net", "ema", "params"]

    /// How deep dicts may nest around the tensors.
    static let maximumNesting = 32

    public init(path: String) throws(FormatError) {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws(FormatError) {
        self.path = file.path
        self.file = file
        let name = SafeTensorsFile.displayName(file.path)
        var reader: StorageReader
        let pickled: PickleResult
        if ZipArchive.looksLikeZip(file) {
            layout = .zip
            let archive = try ZipArchive(file: file, displayName: name)
            let prefix = try Self.archivePrefix(archive, name: name)
            var bigEndian = false
            if let entry = archive.entry(named: prefix + "byteorder") {
                let range = try archive.dataRange(of: entry)
                let text = String(decoding: file.bytes(range), as: UTF8.self)
                switch text {
                case "little": bigEndian = false
                case "big": bigEndian = true
                default: throw FormatError(.malformed, "\(name): \(prefix)byteorder says \"\(text.prefix(20))\", expected little or big")
                }
            }
            guard let dataEntry = archive.entry(named: prefix + "data.pkl") else {
                throw FormatError(.malformed, "\(name): \(prefix)data.pkl is missing from the archive")
            }
            let pickleRange = try archive.dataRange(of: dataEntry)
            let machine = PickleMachine(source: "\(name) (\(prefix)data.pkl)")
            pickled = try file.withBytes(pickleRange) { (raw) throws(FormatError) in try machine.run(raw) }
            guard pickled.end == pickleRange.count else {
                throw FormatError(.malformed, "\(name): \(prefix)data.pkl has \(pickleRange.count - pickled.end) bytes after its STOP")
            }
            reader = StorageReader(file: file, displayName: name, bigEndian: bigEndian, lookup: .zip(archive, prefix))
        } else if Self.looksLikePickle(file) {
            layout = .legacy
            let (result, storages, bigEndian) = try Self.readLegacyStream(file, name: name)
            pickled = result
            reader = StorageReader(file: file, displayName: name, bigEndian: bigEndian, lookup: .legacy(storages))
        } else {
            throw FormatError(.malformed, "\(name) is neither a ZIP archive nor a pickle stream: not a PyTorch checkpoint, or truncated at the start")
        }
        isBigEndian = reader.bigEndian

        let (entries, key) = try Self.stateDict(in: pickled, name: name)
        var tensors: [Tensor] = []
        var unsupported: [UnsupportedTensor] = []
        for (tensorName, index) in entries {
            let pickledTensor = pickled.tensors[index]
            let storage = pickled.storages[pickledTensor.storage]
            let (shape, bytes) = try reader.bytes(of: pickledTensor, storage: storage, tensorName: tensorName)
            if let dtype = storage.dtype {
                tensors.append(Tensor(name: tensorName, dtype: dtype, shape: shape, bytes: bytes))
            } else {
                unsupported.append(UnsupportedTensor(name: tensorName, dtypeName: storage.typeName, shape: shape, bytes: bytes))
            }
        }
        self.tensors = tensors
        self.unsupportedTensors = unsupported
        self.stateDictKey = key
    }

    static func looksLikePickle(_ file: MappedFile) -> Bool {
        guard file.count >= 2 else { return false }
        return file.withBytes(0..<2) { $0[0] == 0x80 && (2...5).contains($0[1]) }
    }

    /// The folder every entry lives in (`sft_vlm_512/`), found from its `data.pkl`.
    private static func archivePrefix(_ archive: ZipArchive, name: String) throws(FormatError) -> String {
        let candidates = archive.entries.map(\.name).filter { entry in
            entry == "data.pkl" || (entry.hasSuffix("/data.pkl") && entry.dropLast(9).split(separator: "/", omittingEmptySubsequences: false).count == 1)
        }
        if archive.entries.contains(where: { $0.name.hasSuffix("/constants.pkl") }) {
            throw FormatError(.unsupported, "\(name) is a TorchScript module, not a state dict: in Python, save model.state_dict() with torch.save instead")
        }
        guard let first = candidates.first else {
            throw FormatError(.malformed, "\(name) is a ZIP archive without a data.pkl: not a PyTorch checkpoint")
        }
        guard candidates.count == 1 else {
            throw FormatError(.malformed, "\(name) holds several data.pkl (\(candidates.prefix(3).joined(separator: ", "))): not a single PyTorch checkpoint")
        }
        return String(first.dropLast(8))
    }

    // MARK: legacy stream

    /// The legacy layout: magic number, protocol version and system info pickles, the data
    /// pickle, the list of storage keys, then each storage as an 8-byte element count and its bytes.
    private static func readLegacyStream(_ file: MappedFile, name: String)
        throws(FormatError) -> (PickleResult, [String: Range<Int>], Bool)
    {
        try file.withBytes { (raw) throws(FormatError) -> (PickleResult, [String: Range<Int>], Bool) in
            let magic = try PickleMachine(source: "\(name) (magic number)").run(raw, from: 0)
            // 0x1950a86a20f9469cfc6c, little-endian, as LONG1 stores it.
            guard magic.root == .bigInt([0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]) else {
                throw FormatError(.malformed, "\(name) starts with a pickle but not PyTorch's magic number: not a PyTorch checkpoint")
            }
            let version = try PickleMachine(source: "\(name) (protocol version)").run(raw, from: magic.end)
            guard version.root == .int(1001) else {
                throw FormatError(.unsupported, "\(name) uses legacy serialization protocol \(version.root); only 1001 (PyTorch 0.4 to today) is supported")
            }
            let info = try PickleMachine(source: "\(name) (system info)").run(raw, from: version.end)
            var bigEndian = false
            if case .dict(let d) = info.root, case .bool(let little)? = info.dicts[d].value(forString: "little_endian") {
                bigEndian = !little
            }
            let data = try PickleMachine(source: "\(name) (data)").run(raw, from: info.end)
            let keys = try PickleMachine(source: "\(name) (storage keys)").run(raw, from: data.end)
            guard case .list(let keyList) = keys.root else {
                throw FormatError(.malformed, "\(name): the storage key list of the legacy stream is missing")
            }
            var elementSizes: [String: (size: Int, count: Int)] = [:]
            for storage in data.storages { elementSizes[storage.key] = (storage.elementSize, storage.rootElementCount) }
            var ranges: [String: Range<Int>] = [:]
            var position = keys.end
            for item in keys.lists[keyList] {
                guard case .string(let key) = item else { throw FormatError(.malformed, "\(name): a storage key is not a string") }
                guard let (size, expected) = elementSizes[key] else {
                    throw FormatError(.malformed, "\(name): storage \(key) is in the stream but no tensor uses it")
                }
                guard position <= raw.count - 8 else {
                    throw FormatError(.malformed, "\(name): storage \(key) is cut off; the file is truncated")
                }
                let count = raw.loadUnaligned(fromByteOffset: position, as: UInt64.self).littleEndian
                position += 8
                guard count == UInt64(expected) else {
                    throw FormatError(.malformed, "\(name): storage \(key) holds \(count) elements but the pickle says \(expected)")
                }
                let (byteCount, overflow) = Int(count).multipliedReportingOverflow(by: size)
                guard !overflow, byteCount <= raw.count - position else {
                    throw FormatError(.malformed, "\(name): storage \(key) runs past the end of the file; the file is truncated")
                }
                ranges[key] = position..<(position + byteCount)
                position += byteCount
            }
            return (data, ranges, bigEndian)
        }
    }

    // MARK: finding the state dict

    private static func stateDict(in result: PickleResult, name: String)
        throws(FormatError) -> ([(String, Int)], String?)
    {
        guard case .dict(let root) = result.root else {
            throw FormatError(.invalidModel, "\(name) holds a single \(describe(result.root)), not a state dict (a dict of named tensors)")
        }
        let hasDirectTensors = result.dicts[root].values.contains { if case .tensor = $0 { true } else { false } }
        if !hasDirectTensors {
            for key in stateDictKeys {
                if case .dict(let nested)? = result.dicts[root].value(forString: key) {
                    let found = try flatten(result, nested, prefix: "", name: name)
                    if !found.isEmpty { return (found, key) }
                }
            }
        }
        let found = try flatten(result, root, prefix: "", name: name)
        guard !found.isEmpty else {
            throw FormatError(.invalidModel, "\(name) holds no tensors: is it a model checkpoint?")
        }
        return (found, nil)
    }

    /// Tensors of a dict and of the dicts nested in it, named with dotted prefixes.
    private static func flatten(_ result: PickleResult, _ dict: Int, prefix: String, name: String)
        throws(FormatError) -> [(String, Int)]
    {
        var found: [(String, Int)] = []
        var names = Set<String>()
        var visited = Set<Int>()
        // Explicit work list: a hostile pickle may nest dicts arbitrarily deep.
        var pending: [(dict: Int, prefix: String, depth: Int)] = [(dict, prefix, 0)]
        while let (current, currentPrefix, depth) = pending.popLast().map({ ($0.dict, $0.prefix, $0.depth) }) {
            guard visited.insert(current).inserted else { continue }
            // Real checkpoints nest a few levels (checkpoint -> model -> state dict); names
            // built from thousands of levels would cost quadratic time for nothing.
            guard depth <= maximumNesting else {
                throw FormatError(.malformed, "\(name): the pickle nests dicts more than \(maximumNesting) levels deep; not a checkpoint")
            }
            var nested: [(Int, String)] = []
            let entries = result.dicts[current]
            for (key, value) in zip(entries.keys, entries.values) {
                let keyText: String
                switch key {
                case .string(let s): keyText = s
                case .int(let n): keyText = String(n)
                default: continue
                }
                switch value {
                case .tensor(let t):
                    let full = currentPrefix + keyText
                    guard names.insert(full).inserted else {
                        throw FormatError(.invalidModel, "\(name) holds two tensors named \(full)")
                    }
                    found.append((full, t))
                case .dict(let d):
                    nested.append((d, currentPrefix + keyText + "."))
                default:
                    continue
                }
            }
            // Depth-first, keeping file order: push nested dicts in reverse.
            pending += nested.reversed().map { ($0.0, $0.1, depth + 1) }
        }
        return found
    }

    private static func describe(_ value: PickleValue) -> String {
        switch value {
        case .none: "None"
        case .bool: "bool"
        case .int, .bigInt: "int"
        case .float: "float"
        case .string: "string"
        case .bytes: "bytes"
        case .list: "list"
        case .tuple: "tuple"
        case .dict: "dict"
        case .global(let g): g.qualifiedName
        case .storage: "storage"
        case .tensor: "tensor"
        }
    }
}

/// Turns a pickled tensor view into bytes: a window when it is a contiguous run of its
/// storage, an owned copy otherwise.
private struct StorageReader {
    enum Lookup {
        case zip(ZipArchive, String)
        case legacy([String: Range<Int>])
    }

    let file: MappedFile
    let displayName: String
    let bigEndian: Bool
    let lookup: Lookup
    /// Bytes we may still copy: bounds what stride-0 (broadcast) views can make us allocate.
    var copyBudget: Int
    var ranges: [String: Range<Int>] = [:]

    init(file: MappedFile, displayName: String, bigEndian: Bool, lookup: Lookup) {
        self.file = file
        self.displayName = displayName
        self.bigEndian = bigEndian
        self.lookup = lookup
        self.copyBudget = 2 * file.count + (64 << 20)
    }

    mutating func storageRange(_ storage: PickleStorage, tensorName: String) throws(FormatError) -> Range<Int> {
        if let cached = ranges[storage.key] { return cached }
        let range: Range<Int>
        switch lookup {
        case .zip(let archive, let prefix):
            let entryName = prefix + "data/" + storage.key
            guard let entry = archive.entry(named: entryName) else {
                throw FormatError(.malformed, "\(displayName): tensor \(tensorName): its storage \(entryName) is missing from the archive; the file is incomplete")
            }
            range = try archive.dataRange(of: entry)
            let (expected, overflow) = storage.rootElementCount.multipliedReportingOverflow(by: storage.elementSize)
            guard !overflow, range.count == expected else {
                throw FormatError(.malformed, "\(displayName): tensor \(tensorName): storage \(entryName) holds \(range.count) bytes but the pickle says \(storage.rootElementCount) elements of \(storage.typeName)")
            }
        case .legacy(let known):
            guard let found = known[storage.key] else {
                throw FormatError(.malformed, "\(displayName): tensor \(tensorName): its storage \(storage.key) is not in the stream; the file is incomplete")
            }
            range = found
        }
        ranges[storage.key] = range
        return range
    }

    mutating func bytes(of tensor: PickleTensor, storage: PickleStorage, tensorName: String)
        throws(FormatError) -> ([Int], TensorBytes)
    {
        func bad(_ message: String) -> FormatError {
            FormatError(.malformed, "\(displayName): tensor \(tensorName): \(message)")
        }
        let shape = tensor.shape
        guard shape.allSatisfy({ $0 >= 0 }), tensor.strides.allSatisfy({ $0 >= 0 }) else {
            throw bad("negative size or stride in \(shape) / \(tensor.strides)")
        }
        // A dimension of size 1 is never stepped over; its stride may be anything, so ignore it.
        let strides = zip(shape, tensor.strides).map { $0 == 1 ? 0 : $1 }
        var count = 1
        for d in shape {
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o else { throw bad("shape \(shape) is too large") }
            count = p
        }
        let root = try storageRange(storage, tensorName: tensorName)
        let size = storage.elementSize
        if count == 0 { return (shape, TensorBytes([])) }

        // The last element the view touches must lie inside the storage (view).
        var last = tensor.storageOffset
        for (d, s) in zip(shape, strides) {
            let (step, o1) = (d - 1).multipliedReportingOverflow(by: s)
            let (sum, o2) = last.addingReportingOverflow(step)
            guard !o1, !o2 else { throw bad("strides \(tensor.strides) reach beyond any storage") }
            last = sum
        }
        guard last < storage.elementCount else {
            throw bad("shape \(shape), strides \(tensor.strides) and offset \(tensor.storageOffset) reach element \(last) of a storage of \(storage.elementCount)")
        }
        let base = root.lowerBound + (storage.elementOffset + tensor.storageOffset) * size

        var contiguous = true
        var expected = 1
        for (d, s) in zip(shape, strides).reversed() {
            if d != 1, s != expected { contiguous = false; break }
            expected *= d
        }
        let (byteCount, tooLarge) = count.multipliedReportingOverflow(by: size)
        guard !tooLarge else { throw bad("shape \(shape) is too large") }
        if contiguous && (!bigEndian || size == 1) {
            return (shape, TensorBytes(file: file, range: base..<(base + byteCount)))
        }

        guard byteCount <= copyBudget else {
            throw bad("materialising this \(contiguous ? "big-endian" : "strided") view would take \(byteCount) bytes, more than the checkpoint could hold; the file is corrupt or hostile")
        }
        copyBudget -= byteCount
        var output = [UInt8](repeating: 0, count: byteCount)
        let swapUnit = bigEndian ? (storage.dtype == nil && size >= 8 ? size / 2 : size) : 1
        file.withBytes { raw in
            output.withUnsafeMutableBytes { out in
                guard let input = raw.baseAddress, let destination = out.baseAddress else { return }
                var index = [Int](repeating: 0, count: shape.count)
                let rank = shape.count
                let innerSize = rank > 0 ? shape[rank - 1] : 1
                let innerStride = rank > 0 ? strides[rank - 1] : 0
                var written = 0
                var source = base
                while written < byteCount {
                    // Copy one innermost row.
                    if innerStride == 1 {
                        destination.advanced(by: written).copyMemory(from: input.advanced(by: source), byteCount: innerSize * size)
                    } else {
                        for i in 0..<innerSize {
                            destination.advanced(by: written + i * size)
                                .copyMemory(from: input.advanced(by: source + i * innerStride * size), byteCount: size)
                        }
                    }
                    written += innerSize * size
                    // Advance the odometer over the outer dimensions.
                    var dim = rank - 2
                    while dim >= 0 {
                        index[dim] += 1
                        source += strides[dim] * size
                        if index[dim] < shape[dim] { break }
                        source -= shape[dim] * strides[dim] * size
                        index[dim] = 0
                        dim -= 1
                    }
                }
                if swapUnit > 1 {
                    var p = 0
                    while p < byteCount {
                        var lo = p, hi = p + swapUnit - 1
                        while lo < hi { out.swapAt(lo, hi); lo += 1; hi -= 1 }
                        p += swapUnit
                    }
                }
            }
        }
        return (shape, TensorBytes(output))
    }
}
