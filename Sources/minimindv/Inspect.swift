import ArgumentParser
import Conversion
import Foundation
import Formats

struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the metadata and tensors of a model or checkpoint file.",
        discussion: """
            --json prints one object: {"file", "format", "metadata", "tensors": [{"name", "dtype", "shape", "bytes"}]}, \
            dtype in PyTorch's words (float32, float16, bfloat16, ...; q8_0/q4_0 for GGUF Q8_0/Q4_0), shape outermost first. \
            Metadata strings over 4096 bytes and arrays over 64 elements are replaced by {"type", "count"}.
            --checksums adds each tensor's SHA-256 over its elements as contiguous little-endian bytes \
            in its own dtype, so that equal weights in different files give equal sums.
            """)

    @Argument(help: "A .gguf, .safetensors, .pth or .bin file (or a transformers folder).")
    var file: String

    @Flag(help: "Print JSON for scripts.")
    var json = false

    @Flag(help: "Add the SHA-256 of each tensor's elements.")
    var checksums = false

    func run() async throws {
        do {
            let listing = try TensorListing(path: file)
            if json {
                try printJSON(listing)
            } else {
                printTable(listing)
            }
        } catch let error as FormatError {
            FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
    }

    private func printTable(_ listing: TensorListing) {
        print("\(listing.path): \(listing.format), \(listing.tensors.count) tensors")
        if !listing.metadata.isEmpty {
            print("\nmetadata:")
            let width = listing.metadata.map(\.key.count).max() ?? 0
            for (key, value) in listing.metadata {
                print("  " + key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value.text)
            }
        }
        print("\ntensors:")
        let rows = listing.tensors.map { t in
            [t.name, t.dtype, "[" + t.shape.map(String.init).joined(separator: ", ") + "]", String(t.byteCount)]
                + (checksums ? [t.checksum() ?? "-"] : [])
        }
        let header = ["name", "type", "shape", "bytes"] + (checksums ? ["sha256"] : [])
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        for row in [header] + rows {
            print("  " + row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  "))
        }
        let total = listing.tensors.reduce(0) { $0 + $1.byteCount }
        print(String(format: "\n%d tensors, %.2f MB of data", listing.tensors.count, Double(total) / 1e6))
    }

    private func printJSON(_ listing: TensorListing) throws {
        var metadata: [String: Any] = [:]
        for (key, value) in listing.metadata { metadata[key] = value.json }
        let tensors: [[String: Any]] = listing.tensors.map { t in
            var entry: [String: Any] = ["name": t.name, "dtype": t.dtype, "shape": t.shape, "bytes": t.byteCount]
            if checksums { entry["sha256"] = t.checksum() ?? NSNull() }
            return entry
        }
        let object: [String: Any] = ["file": listing.path, "format": listing.format, "metadata": metadata, "tensors": tensors]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        FileHandle.standardOutput.write(data)
        print()
    }
}

/// The tensors and metadata of any file we read, in one shape for printing.
struct TensorListing {
    struct Entry {
        var name: String
        var dtype: String
        var shape: [Int]
        var byteCount: Int
        var tensor: Tensor?

        func checksum() -> String? { tensor?.sha256 }
    }

    struct Value {
        var text: String
        var json: Any
    }

    var path: String
    var format: String
    var metadata: [(key: String, value: Value)] = []
    var tensors: [Entry] = []

    init(path: String) throws(FormatError) {
        self.path = path
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue {
            let file = try MappedFile(path: path)
            if TensorFileKind.detect(file) == .gguf {
                let gguf = try GGUFFile(file: file)
                format = "GGUF v3"
                for (key, value) in gguf.metadata.entries {
                    metadata.append((key, Value(text: "\(value.type.name)\(Self.elementType(value)) \(value.summary())", json: Self.json(value))))
                }
                tensors = gguf.tensors.map(Self.entry)
                return
            }
        }
        let source = try openTensorFile(path: path)
        switch source {
        case let file as SafeTensorsFile:
            format = "safetensors"
            metadata = file.metadata.sorted { $0.key < $1.key }.map { ($0.key, Value(text: $0.value, json: $0.value)) }
        case let file as ShardedSafeTensors:
            format = "safetensors, \(file.shards.count) shards"
            metadata = file.metadata.sorted { $0.key < $1.key }.map { ($0.key, Value(text: $0.value, json: $0.value)) }
        case let file as PyTorchCheckpoint:
            format = "PyTorch \(file.layout.rawValue)"
            if let key = file.stateDictKey { metadata.append(("state_dict_key", Value(text: key, json: key))) }
        default:
            format = "tensors"
        }
        tensors = source.tensors.map(Self.entry)
        if let listing = source as? UnsupportedTensorListing {
            tensors += listing.unsupportedTensors.map {
                Entry(name: $0.name, dtype: $0.dtypeName, shape: $0.shape, byteCount: $0.bytes.count, tensor: nil)
            }
        }
    }

    static func entry(_ tensor: Tensor) -> Entry {
        Entry(name: tensor.name, dtype: tensor.dtype.rawValue, shape: tensor.shape, byteCount: tensor.bytes.count, tensor: tensor)
    }

    static func elementType(_ value: GGUFValue) -> String {
        if case .array(let type, _) = value { return "[\(type.name)]" }
        return ""
    }

    static func json(_ value: GGUFValue) -> Any {
        switch value {
        case .string(let s):
            return s.utf8.count > 4096 ? ["type": "string", "count": s.utf8.count] as [String: Any] : s
        case .array(let type, let values):
            if values.count > 64 { return ["type": "[\(type.name)]", "count": values.count] as [String: Any] }
            return values.map(json)
        case .bool(let b): return b
        case .float32(let f): return Double(f)
        case .float64(let f): return f
        default: return value.integer ?? NSNull()
        }
    }
}
