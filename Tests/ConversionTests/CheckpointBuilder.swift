import Foundation
import Formats
import TestSupport

/// Builds checkpoints for the tests from the shared fixtures: the real tiny weights, edited
/// (a tensor removed or reshaped, experts added) and saved as safetensors.
struct CheckpointBuilder {
    var tensors: [(name: String, dtype: DType, shape: [Int], bytes: [UInt8])]

    init(from path: String) throws {
        tensors = try openTensorFile(path: path).tensors.map { ($0.name, $0.dtype, $0.shape, $0.bytes.array) }
    }

    mutating func remove(_ name: String) {
        tensors.removeAll { $0.name == name }
    }

    mutating func replace(_ name: String, dtype: DType = .float16, shape: [Int], values: [Float]) {
        remove(name)
        add(name, shape: shape, values: values, dtype: dtype)
    }

    mutating func add(_ name: String, shape: [Int], values: [Float], dtype: DType = .float16) {
        var bytes = [UInt8](repeating: 0, count: values.count * dtype.byteSize)
        values.withUnsafeBufferPointer { src in
            bytes.withUnsafeMutableBytes { _ = Quantization.encode(src.baseAddress!, count: values.count, as: dtype, into: $0.baseAddress!) }
        }
        tensors.append((name, dtype, shape, bytes))
    }

    func values(_ name: String) throws -> [Float] {
        let t = try #require(tensors.first { $0.name == name })
        return try #require(t.bytes.withUnsafeBytes { Quantization.floats($0, dtype: t.dtype) })
    }

    /// Deterministic, finite, distinct values.
    static func pattern(_ count: Int, seed: Int) -> [Float] {
        (0..<count).map { Float(sin(Double($0) * 0.731 + Double(seed) * 1.37)) * 0.2 }
    }

    /// Turns the dense FFN of every layer into `experts` routed experts (+ `shared` shared ones).
    mutating func makeMoE(layers: Int, hidden: Int, ff: Int, experts: Int, shared: Int) {
        for n in 0..<layers {
            let p = "model.layers.\(n).mlp."
            for part in ["gate_proj", "up_proj", "down_proj"] { remove(p + part + ".weight") }
            add(p + "gate.weight", shape: [experts, hidden], values: Self.pattern(experts * hidden, seed: n))
            func ffn(_ prefix: String, seed: Int) {
                add(prefix + "gate_proj.weight", shape: [ff, hidden], values: Self.pattern(ff * hidden, seed: seed))
                add(prefix + "up_proj.weight", shape: [ff, hidden], values: Self.pattern(ff * hidden, seed: seed + 1))
                add(prefix + "down_proj.weight", shape: [hidden, ff], values: Self.pattern(ff * hidden, seed: seed + 2))
            }
            for e in 0..<experts { ffn(p + "experts.\(e).", seed: 100 * n + 10 * e) }
            for s in 0..<shared { ffn(p + "shared_experts.\(s).", seed: 1000 + 100 * n + 10 * s) }
        }
    }

    /// Writes a .safetensors file (tensor data in list order).
    func write(to path: String) throws {
        var header: [String: Any] = [:]
        var offset = 0
        for t in tensors {
            header[t.name] = ["dtype": t.dtype.safetensorsName, "shape": t.shape, "data_offsets": [offset, offset + t.bytes.count]]
            offset += t.bytes.count
        }
        var json = try JSONSerialization.data(withJSONObject: header)
        while json.count % 8 != 0 { json.append(0x20) }
        var data = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        for t in tensors { data.append(contentsOf: t.bytes) }
        try data.write(to: URL(fileURLWithPath: path))
    }
}

/// The fixture checkpoint sets of ../shared/minimind/fixtures.
enum FixtureSet: String, CaseIterable, CustomTestStringConvertible {
    case gen2Pth = "gen2 sft_vlm_64.pth"
    case gen2Bin = "gen2 hf-bin"
    case gen2Safetensors = "gen2 hf-safetensors"
    case gen3Pth = "gen3 sft_vlm_64.pth"
    case gen3Bin = "gen3 hf-bin"
    case gen3Safetensors = "gen3 hf-safetensors"

    var testDescription: String { rawValue }

    var generation: String { rawValue.hasPrefix("gen2") ? "gen2" : "gen3" }
    var root: URL { Fixtures.generation(generation) }
    var checkpoint: String {
        switch self {
        case .gen2Pth, .gen3Pth: root.appendingPathComponent("tiny/sft_vlm_64.pth").path
        case .gen2Bin, .gen3Bin: root.appendingPathComponent("tiny/hf-bin").path
        case .gen2Safetensors, .gen3Safetensors: root.appendingPathComponent("tiny/hf-safetensors").path
        }
    }
    var vision: String {
        root.appendingPathComponent(generation == "gen2" ? "clip-vit-base-patch16" : "siglip2-base-p32-256-ve").path
    }
    var tokenizer: String { root.appendingPathComponent("tiny").path }

    /// The tiny manifest's LLM config (what upstream built the fixture with).
    func llmConfig() throws -> [String: Any] {
        let data = try Data(contentsOf: root.appendingPathComponent("tiny/manifest.json"))
        let manifest = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try #require(manifest["llm_config"] as? [String: Any])
    }
}

import Testing
