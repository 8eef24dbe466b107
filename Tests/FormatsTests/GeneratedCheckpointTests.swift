import Foundation
import Formats
import Testing
import TestSupport

/// The checkpoints in Tests/Data/formats, written by real torch.save (Tools/formats/make_test_data.py),
/// against the values torch recorded in expected.json.
@Suite struct GeneratedCheckpoints {
    struct Expectation {
        let file: String
        let order: [String]
        let tensors: [String: [String: Any]]
        let layout: String
        let stateDictKey: String?
    }

    static func expectations() -> [Expectation] {
        guard let json = try? Files.json(Files.data("expected.json")),
              let checkpoints = json["checkpoints"] as? [String: [String: Any]] else { return [] }
        return checkpoints.keys.sorted().compactMap { file in
            guard let entry = checkpoints[file], let order = entry["order"] as? [String],
                  let tensors = entry["tensors"] as? [String: [String: Any]], let layout = entry["layout"] as? String else { return nil }
            return Expectation(file: file, order: order, tensors: tensors, layout: layout, stateDictKey: entry["state_dict_key"] as? String)
        }
    }

    static let files: [String] = expectations().map(\.file)

    @Test func everyGeneratedCheckpointIsListed() {
        #expect(Self.files.count == 10)
    }

    @Test(arguments: files)
    func checkpointHoldsTheTensorsTorchSaved(file: String) throws {
        let expectation = try #require(Self.expectations().first { $0.file == file })
        let source = try openTensorFile(path: Files.data(file))
        if expectation.layout == "sharded" {
            #expect(source is ShardedSafeTensors)
            #expect(Set(source.tensors.map(\.name)) == Set(expectation.order))
        } else {
            let checkpoint = try #require(source as? PyTorchCheckpoint)
            #expect(checkpoint.layout.rawValue == expectation.layout)
            #expect(checkpoint.stateDictKey == expectation.stateDictKey)
            #expect(checkpoint.isBigEndian == (file == "big-endian.pth"))
            #expect(checkpoint.tensors.map(\.name) == expectation.order)
        }
        for tensor in source.tensors {
            let expected = try #require(expectation.tensors[tensor.name])
            #expect(tensor.dtype.rawValue == expected["dtype"] as? String, "\(tensor.name)")
            #expect(tensor.shape == expected["shape"] as? [Int], "\(tensor.name)")
            let values = try #require(expected["values"] as? [NSNumber])
            #expect(tensor.bytes.count == tensor.elementCount * tensor.dtype.byteSize, "\(tensor.name)")
            if tensor.dtype.isFloatingPoint {
                #expect(try tensor.floatValues() == values.map { Float($0.doubleValue) }, "\(tensor.name)")
            } else {
                #expect(integers(tensor) == values.map(\.intValue), "\(tensor.name)")
            }
        }
    }

    /// Integer elements decoded from little-endian bytes.
    func integers(_ tensor: Tensor) -> [Int] {
        let bytes = tensor.bytes.array
        let size = tensor.dtype.byteSize
        return stride(from: 0, to: bytes.count, by: size).map { start in
            var value: UInt64 = 0
            for i in (0..<size).reversed() { value = value << 8 | UInt64(bytes[start + i]) }
            let shift = UInt64(64 - 8 * size)
            return tensor.dtype == .uint8 || tensor.dtype == .bool ? Int(value) : Int(Int64(bitPattern: value << shift) >> Int64(shift))
        }
    }

    @Test(arguments: ["views.pth", "views-legacy.pth"])
    func contiguousViewsStayMappedAndStridedOnesAreCopied(file: String) throws {
        let checkpoint = try PyTorchCheckpoint(path: Files.data(file))
        func tensor(_ name: String) throws -> Tensor { try #require(checkpoint.tensor(named: name)) }
        #expect(try tensor("row_slice").bytes.isMapped)
        #expect(try tensor("tied_view").bytes.isMapped)
        #expect(try !tensor("transposed").bytes.isMapped)
        #expect(try !tensor("column").bytes.isMapped)
        #expect(try !tensor("expanded").bytes.isMapped)
        // Tied names point at the same bytes of the file.
        #expect(try checkpoint.file.range(of: tensor("tied_a")) == checkpoint.file.range(of: tensor("tied_b")))
        let tiedView = try #require(checkpoint.file.range(of: try tensor("tied_view")))
        let tied = try #require(checkpoint.file.range(of: try tensor("tied_a")))
        #expect(tiedView.lowerBound == tied.lowerBound + 3 * 2)
    }

    @Test func missingStorageIsAnErrorNamingTheTensorAndEntry() throws {
        let error = formatError { () throws(FormatError) in _ = try PyTorchCheckpoint(path: Files.data("missing-storage.pth")) }
        #expect(error?.kind == .malformed)
        #expect(error?.message.contains("tensor bias") == true)
        #expect(error?.message.contains("data/1 is missing from the archive") == true)
    }

    @Test func compressedArchiveIsRefusedWithAFix() throws {
        let error = formatError { () throws(FormatError) in _ = try PyTorchCheckpoint(path: Files.data("deflated.pth")) }
        #expect(error?.kind == .unsupported)
        #expect(error?.message.contains("is compressed") == true)
        #expect(error?.message.contains("torch.save") == true)
    }
}
