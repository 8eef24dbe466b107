import Formats

/// The named tensors of one input (checkpoint or vision folder), taken one by one while the
/// plan is built, so that missing, misshaped and left-over tensors are all reported by name.
struct TensorTable {
    /// File name for messages ("sft_vlm_64.pth").
    let source: String
    private var byName: [String: Tensor] = [:]
    private(set) var taken: Set<String> = []

    init(_ tensors: [Tensor], source: String, stripping prefixes: [String] = [], dropping isDropped: (String) -> Bool) {
        self.source = source
        for tensor in tensors {
            var name = tensor.name
            for prefix in prefixes where name.hasPrefix(prefix) { name.removeFirst(prefix.count) }
            if isDropped(name) { continue }
            var renamed = tensor
            renamed.name = name
            byName[name] = renamed
        }
    }

    var names: [String] { Array(byName.keys) }

    func has(_ name: String) -> Bool { byName[name] != nil }

    func peek(_ name: String) -> Tensor? { byName[name] }

    func missing(_ name: String, _ hint: String) -> FormatError {
        FormatError(.invalidModel, "tensor \(name) missing in \(source): \(hint)")
    }

    /// The tensor `name`, which must exist and (when given) have `shape`.
    mutating func take(_ name: String, shape: [Int]? = nil, hint: String) throws(FormatError) -> Tensor {
        guard let tensor = byName[name] else { throw missing(name, hint) }
        if let shape, tensor.shape != shape {
            throw FormatError(.invalidModel, "tensor \(name) in \(source) has shape \(tensor.shape), expected \(shape)\(hint.isEmpty ? "" : " (\(hint))")")
        }
        guard tensor.dtype.isFloatingPoint, !tensor.dtype.isQuantized else {
            throw FormatError(.invalidModel, "tensor \(name) in \(source) holds \(tensor.dtype.rawValue) values; weights must be float32, float16, bfloat16 or float64")
        }
        taken.insert(name)
        return tensor
    }

    /// The shape of `name`, which must exist and have `rank` dimensions.
    func shape(_ name: String, rank: Int, hint: String) throws(FormatError) -> [Int] {
        guard let tensor = byName[name] else { throw missing(name, hint) }
        guard tensor.shape.count == rank else {
            throw FormatError(.invalidModel, "tensor \(name) in \(source) has shape \(tensor.shape), expected \(rank) dimensions")
        }
        return tensor.shape
    }

    /// The indices N of names `prefix + N + "."...`, which must run 0..<count without gaps.
    func indices(under prefix: String) throws(FormatError) -> Int {
        var seen = Set<Int>()
        for name in byName.keys where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            if let dot = rest.firstIndex(of: "."), let n = Int(rest[..<dot]), n >= 0 { seen.insert(n) }
        }
        let count = seen.count
        for n in 0..<count where !seen.contains(n) {
            throw FormatError(.invalidModel, "\(source) has \(prefix)N tensors for \(count) indices but none for N = \(n)")
        }
        return count
    }

    /// Refuses tensors nothing took: a model we would silently run without some weights.
    func checkAllTaken() throws(FormatError) {
        let left = byName.keys.filter { !taken.contains($0) }.sorted()
        guard left.isEmpty else {
            let shown = left.prefix(5).joined(separator: ", ")
            throw FormatError(.invalidModel, "\(source) holds \(left.count) tensor(s) a MiniMind-V model does not use: \(shown)\(left.count > 5 ? ", ..." : ""); is this the right checkpoint?")
        }
    }
}

/// One tensor of the output: its GGUF name, type and shape, and the input tensors whose
/// elements, in order, make it up (several for stacked experts).
struct PlannedTensor {
    var info: GGUFTensorInfo
    var sources: [Tensor]
}

extension Array where Element == PlannedTensor {
    mutating func add(_ name: String, _ role: TensorRole, _ type: OutputType, _ sources: [Tensor], shape: [Int]? = nil) {
        let shape = shape ?? sources[0].shape
        append(PlannedTensor(info: GGUFTensorInfo(name: name, dtype: role.dtype(for: type, shape: shape), shape: shape), sources: sources))
    }

    mutating func add(_ name: String, _ role: TensorRole, _ type: OutputType, _ source: Tensor) {
        add(name, role, type, [source])
    }
}
