import Foundation
import Formats
import Testing
import TestSupport

@Suite struct ShardedSafeTensorsReading {
    /// Writes two shards and an index into a fresh folder; `index` may be altered by the caller.
    func writeSet(index: String? = nil, skipSecondShard: Bool = false) throws -> String {
        let folder = try Fixtures.temporaryDirectory("sharded")
        let one = safetensorsBytes(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[1],"data_offsets":[8,10]}}"#,
                                   data: floatBytes([1, 2]) + [0x00, 0x3C])
        let two = safetensorsBytes(header: #"{"c":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#, data: [0x80, 0x3F, 0x00, 0xC0])
        try Data(one).write(to: folder.appendingPathComponent("model-00001-of-00002.safetensors"))
        if !skipSecondShard {
            try Data(two).write(to: folder.appendingPathComponent("model-00002-of-00002.safetensors"))
        }
        let text = index ?? #"{"metadata":{"total_size":14},"weight_map":{"a":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors","b":"model-00001-of-00002.safetensors"}}"#
        let path = folder.appendingPathComponent("model.safetensors.index.json")
        try Data(text.utf8).write(to: path)
        return path.path
    }

    func floatBytes(_ values: [Float]) -> [UInt8] {
        values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
    }

    @Test func indexGathersTheTensorsOfEveryShard() throws {
        let set = try ShardedSafeTensors(path: try writeSet())
        #expect(set.shards.count == 2)
        #expect(set.tensors.map(\.name) == ["a", "b", "c"])
        #expect(set.metadata == ["total_size": "14"])
        #expect(try set.tensor(named: "a")?.floatValues() == [1, 2])
        #expect(try set.tensor(named: "b")?.floatValues() == [1])
        #expect(try set.tensor(named: "c")?.floatValues() == [1, -2])
    }

    @Test func missingShardIsAnErrorNamingIt() throws {
        let path = try writeSet(skipSecondShard: true)
        let error = formatError { () throws(FormatError) in _ = try ShardedSafeTensors(path: path) }
        #expect(error?.kind == .io)
        #expect(error?.message.contains("model-00002-of-00002.safetensors") == true)
        #expect(error?.message.contains("for c") == true)
    }

    @Test func tensorMissingFromItsShardIsAnErrorNamingIt() throws {
        let path = try writeSet(index: #"{"weight_map":{"a":"model-00001-of-00002.safetensors","d":"model-00002-of-00002.safetensors"}}"#)
        let error = formatError { () throws(FormatError) in _ = try ShardedSafeTensors(path: path) }
        #expect(error?.message == "tensor d is missing from shard model-00002-of-00002.safetensors, where model.safetensors.index.json says it is")
    }

    @Test func shardNamesOutsideTheFolderAreRefused() throws {
        let path = try writeSet(index: #"{"weight_map":{"a":"../../etc/passwd"}}"#)
        let error = formatError { () throws(FormatError) in _ = try ShardedSafeTensors(path: path) }
        #expect(error?.message.contains("not a file beside the index") == true)
    }
}
