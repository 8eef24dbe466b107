/// A `.safetensors` file: an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range, then the data. Tensors are windows on the mapped file.
///
/// The header is checked before anything is trusted: its length against the file, every
/// byte range against the data area, ranges against each other (no overlap), and each
/// shape times its element size against its range.
public struct SafeTensorsFile: TensorSource, UnsupportedTensorListing {
    /// Headers beyond this are refused (the reference implementation uses the same bound).
    public static let maximumHeaderLength = 100_000_000

    public let path: String
    public let file: MappedFile
    /// Tensors of the types we convert, in data order.
    public let tensors: [Tensor]
    /// Tensors of other types (`F8_E4M3`, `U32`, ...), in data order.
    public let unsupportedTensors: [UnsupportedTensor]
    /// The header's `__metadata__` (e.g. `format: pt`).
    public let metadata: [String: String]

    public var sourceDescription: String { path }

    public init(path: String) throws(FormatError) {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws(FormatError) {
        self.path = file.path
        self.file = file
        let name = Self.displayName(file.path)
        guard file.count >= 8 else {
            throw FormatError(.malformed, "\(name) is too short (\(file.count) bytes) to be a safetensors file")
        }
        let declared = file.withBytes(0..<8) { $0.loadUnaligned(as: UInt64.self).littleEndian }
        guard declared <= UInt64(Self.maximumHeaderLength) else {
            throw FormatError(.malformed, "\(name): safetensors header length \(declared) exceeds the \(Self.maximumHeaderLength)-byte limit; the file is corrupt or not safetensors")
        }
        let headerLength = Int(declared)
        guard 8 + headerLength <= file.count else {
            throw FormatError(.malformed, "\(name): safetensors header claims \(headerLength) bytes but the file has only \(file.count - 8) after the length field; the file is truncated or not safetensors")
        }
        let header = try file.withBytes(8..<(8 + headerLength)) { (raw) throws(FormatError) in
            try HeaderJSON.parse(raw, what: "the safetensors header of \(name)")
        }
        let dataStart = 8 + headerLength
        let dataSize = file.count - dataStart

        guard case .object(let members) = header else {
            throw FormatError(.malformed, "\(name): the safetensors header is \(header.typeName), expected an object")
        }
        var metadata: [String: String] = [:]
        var entries: [Entry] = []
        for (key, value) in members {
            if key == "__metadata__" {
                guard case .object(let pairs) = value else {
                    throw FormatError(.malformed, "\(name): __metadata__ is \(value.typeName), expected an object of strings")
                }
                for (k, v) in pairs {
                    guard case .string(let s) = v else {
                        throw FormatError(.malformed, "\(name): __metadata__ value \"\(k)\" is \(v.typeName), expected a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            entries.append(try Entry(name: key, json: value, dataSize: dataSize, file: name))
        }

        // Overlap check on ranges sorted by start; empty tensors take no bytes and cannot overlap.
        let ordered = entries.sorted { ($0.range.lowerBound, $0.range.upperBound, $0.name) < ($1.range.lowerBound, $1.range.upperBound, $1.name) }
        var previous: Entry?
        for entry in ordered where !entry.range.isEmpty {
            if let previous, entry.range.lowerBound < previous.range.upperBound {
                throw FormatError(.malformed, "\(name): tensors \(previous.name) (bytes \(previous.range.lowerBound)..<\(previous.range.upperBound)) and \(entry.name) (bytes \(entry.range.lowerBound)..<\(entry.range.upperBound)) overlap; the header is corrupt")
            }
            previous = entry
        }

        var tensors: [Tensor] = []
        var unsupported: [UnsupportedTensor] = []
        for entry in ordered {
            let window = (dataStart + entry.range.lowerBound)..<(dataStart + entry.range.upperBound)
            let bytes = TensorBytes(file: file, range: window)
            if let dtype = entry.dtype {
                tensors.append(Tensor(name: entry.name, dtype: dtype, shape: entry.shape, bytes: bytes))
            } else {
                unsupported.append(UnsupportedTensor(name: entry.name, dtypeName: entry.dtypeName, shape: entry.shape, bytes: bytes))
            }
        }
        self.tensors = tensors
        self.unsupportedTensors = unsupported
        self.metadata = metadata
    }

    /// One header entry, validated against the data area.
    private struct Entry {
        let name: String
        let dtypeName: String
        let dtype: DType?
        let shape: [Int]
        let range: Range<Int>

        init(name: String, json: HeaderJSON, dataSize: Int, file: String) throws(FormatError) {
            func bad(_ what: String) -> FormatError {
                FormatError(.malformed, "\(file): tensor \(name): \(what)")
            }
            guard case .object = json else { throw bad("header entry is \(json.typeName), expected an object") }
            guard case .string(let dtypeName)? = json["dtype"] else { throw bad("no \"dtype\" string") }
            guard case .array(let dims)? = json["shape"] else { throw bad("no \"shape\" array") }
            guard case .array(let offsets)? = json["data_offsets"], offsets.count == 2,
                  case .integer(let begin) = offsets[0], case .integer(let end) = offsets[1] else {
                throw bad("\"data_offsets\" must be two integers")
            }
            var shape: [Int] = []
            var elements = 1
            for dim in dims {
                guard case .integer(let d) = dim, d >= 0 else { throw bad("shape \(dims.map(Self.text)) has a dimension that is not a non-negative integer") }
                shape.append(d)
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw bad("shape \(shape) is too large") }
                elements = product
            }
            guard begin >= 0, begin <= end else { throw bad("data_offsets [\(begin), \(end)] are not an increasing pair") }
            guard end <= dataSize else {
                throw bad("data_offsets [\(begin), \(end)] run past the end of the data (\(dataSize) bytes); the file is truncated or corrupt")
            }
            let dtype = DType(safetensorsName: dtypeName)
            let bitsPerElement: Int? = dtype.map { $0.isQuantized ? 0 : $0.byteSize * 8 } ?? Self.otherBitSizes[dtypeName]
            if let dtype, dtype.isQuantized {
                throw bad("dtype \(dtype.safetensorsName) is not a safetensors type")
            }
            if let bits = bitsPerElement {
                let (totalBits, overflow) = elements.multipliedReportingOverflow(by: bits)
                guard !overflow, totalBits % 8 == 0, totalBits / 8 == end - begin else {
                    throw bad("shape \(shape) of \(dtypeName) needs \(overflow ? "too many" : String(Double(totalBits) / 8)) bytes but data_offsets [\(begin), \(end)] give \(end - begin)")
                }
            }
            self.name = name
            self.dtypeName = dtypeName
            self.dtype = dtype
            self.shape = shape
            self.range = begin..<end
        }

        static func text(_ value: HeaderJSON) -> String {
            switch value {
            case .integer(let i): String(i)
            case .number(let d): String(d)
            default: value.typeName
            }
        }

        /// Sizes of safetensors types we read past without converting.
        static let otherBitSizes: [String: Int] = [
            "U16": 16, "U32": 32, "U64": 64, "C64": 64,
            "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F6_E2M3": 6, "F6_E3M2": 6, "F4": 4,
        ]
    }

    static func displayName(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }
}

/// A model split over several safetensors files, described by `model.safetensors.index.json`
/// (`weight_map`: tensor name -> shard file name, beside the index).
public struct ShardedSafeTensors: TensorSource, UnsupportedTensorListing {
    public let indexPath: String
    /// The shards in the order of their first appearance in `weight_map`.
    public let shards: [SafeTensorsFile]
    /// Every tensor the index names, shard by shard, in each shard's data order.
    public let tensors: [Tensor]
    public let unsupportedTensors: [UnsupportedTensor]
    /// The index's `metadata` (e.g. `total_size`), numbers written as text.
    public let metadata: [String: String]

    public var sourceDescription: String { indexPath }

    public init(path indexPath: String) throws(FormatError) {
        self.indexPath = indexPath
        let indexName = SafeTensorsFile.displayName(indexPath)
        let indexFile = try MappedFile(path: indexPath)
        guard indexFile.count <= SafeTensorsFile.maximumHeaderLength else {
            throw FormatError(.malformed, "\(indexName) is \(indexFile.count) bytes; an index this large is not a safetensors index")
        }
        let json = try indexFile.withBytes { (raw) throws(FormatError) in try HeaderJSON.parse(raw, what: indexName) }
        guard case .object(let weightMap)? = json["weight_map"] else {
            throw FormatError(.malformed, "\(indexName) has no \"weight_map\" object; is it a model.safetensors.index.json?")
        }
        var metadata: [String: String] = [:]
        if case .object(let pairs)? = json["metadata"] {
            for (k, v) in pairs {
                switch v {
                case .string(let s): metadata[k] = s
                case .integer(let i): metadata[k] = String(i)
                case .number(let d): metadata[k] = String(d)
                case .bool(let b): metadata[k] = String(b)
                default: break
                }
            }
        }
        let folder = indexPath.lastIndex(of: "/").map { String(indexPath[..<$0]) } ?? "."

        var shardOrder: [String] = []
        var namesByShard: [String: [String]] = [:]
        for (tensorName, value) in weightMap {
            guard case .string(let shardName) = value else {
                throw FormatError(.malformed, "\(indexName): weight_map entry \(tensorName) is \(value.typeName), expected a shard file name")
            }
            // Shards live beside the index; a path that climbs out of the folder is not a shard.
            guard !shardName.isEmpty, !shardName.hasPrefix("/"), !shardName.split(separator: "/").contains("..") else {
                throw FormatError(.malformed, "\(indexName): weight_map names shard \"\(shardName)\" for \(tensorName), which is not a file beside the index")
            }
            if namesByShard[shardName] == nil { shardOrder.append(shardName) }
            namesByShard[shardName, default: []].append(tensorName)
        }

        var shards: [SafeTensorsFile] = []
        var tensors: [Tensor] = []
        var unsupported: [UnsupportedTensor] = []
        for shardName in shardOrder {
            let wanted = namesByShard[shardName] ?? []
            let shard: SafeTensorsFile
            do {
                shard = try SafeTensorsFile(path: folder + "/" + shardName)
            } catch where error.kind == .io {
                throw FormatError(.io, "shard \(shardName) listed in \(indexName) (for \(wanted.first ?? "?") and \(wanted.count - 1) more) cannot be read: \(error.message)")
            }
            let wantedSet = Set(wanted)
            let present = Set(shard.tensors.map(\.name) + shard.unsupportedTensors.map(\.name))
            if let missing = wanted.first(where: { !present.contains($0) }) {
                throw FormatError(.malformed, "tensor \(missing) is missing from shard \(shardName), where \(indexName) says it is")
            }
            shards.append(shard)
            tensors += shard.tensors.filter { wantedSet.contains($0.name) }
            unsupported += shard.unsupportedTensors.filter { wantedSet.contains($0.name) }
        }
        self.shards = shards
        self.tensors = tensors
        self.unsupportedTensors = unsupported
        self.metadata = metadata
    }
}
