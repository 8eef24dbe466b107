/// A pickle interpreter for PyTorch state dicts that never runs code.
///
/// Python's unpickler calls whatever callable a pickle names, which is why a `.pth` can
/// run anything. This machine knows a fixed list of globals (`PickleGlobal`) and builds
/// plain values for them; any other name stops the load with an error naming it.
///
/// Containers live in arenas and are referred to by index, so a hostile pickle cannot build
/// a nesting deep enough to overflow the stack on release, and shared references (the memo)
/// cost nothing to copy.
struct PickleMachine {
    /// Names the pickle in error messages ("sft_vlm_512/data.pkl").
    let source: String

    init(source: String) {
        self.source = source
    }

    /// Runs one pickle starting at `start` and returns its value with the offset just past STOP.
    func run(_ bytes: UnsafeRawBufferPointer, from start: Int = 0) throws(FormatError) -> PickleResult {
        var state = PickleState(source: source, bytes: bytes, position: start)
        return try state.run()
    }
}

/// The globals a PyTorch state dict needs; nothing else can be named.
enum PickleGlobal: Equatable {
    case orderedDict
    case rebuildTensor, rebuildTensorV2
    case rebuildParameter, rebuildParameterWithState
    case rebuildFromTypeV2
    /// `torch.FloatStorage` and friends: only ever a type tag inside a persistent id.
    case storageType(name: String)
    /// `torch.Tensor`, `torch.nn.parameter.Parameter`: type tags for `_rebuild_from_type_v2`.
    case tensorType
    case torchSize
    case torchDevice
    /// `_codecs.encode(text, "latin1")`: how protocol 2 spells a `bytes` value.
    case codecsEncode

    static let storageTypes: [String: (dtype: DType?, elementSize: Int)] = [
        "DoubleStorage": (.float64, 8), "FloatStorage": (.float32, 4), "HalfStorage": (.float16, 2),
        "BFloat16Storage": (.bfloat16, 2), "LongStorage": (.int64, 8), "IntStorage": (.int32, 4),
        "ShortStorage": (.int16, 2), "CharStorage": (.int8, 1), "ByteStorage": (.uint8, 1),
        "BoolStorage": (.bool, 1),
        "ComplexFloatStorage": (nil, 8), "ComplexDoubleStorage": (nil, 16),
        "QInt8Storage": (nil, 1), "QUInt8Storage": (nil, 1), "QInt32Storage": (nil, 4),
        "Float8_e4m3fnStorage": (nil, 1), "Float8_e5m2Storage": (nil, 1),
        "UInt16Storage": (nil, 2), "UInt32Storage": (nil, 4), "UInt64Storage": (nil, 8),
    ]

    /// The allow-list: module and name as the pickle spells them.
    init?(module: String, name: String) {
        switch (module, name) {
        case ("collections", "OrderedDict"): self = .orderedDict
        case ("torch._utils", "_rebuild_tensor"): self = .rebuildTensor
        case ("torch._utils", "_rebuild_tensor_v2"): self = .rebuildTensorV2
        case ("torch._utils", "_rebuild_parameter"): self = .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): self = .rebuildParameterWithState
        case ("torch._tensor", "_rebuild_from_type_v2"): self = .rebuildFromTypeV2
        case ("torch", "Tensor"), ("torch._tensor", "Tensor"), ("torch.nn.parameter", "Parameter"): self = .tensorType
        case ("torch", "Size"): self = .torchSize
        case ("torch", "device"): self = .torchDevice
        case ("_codecs", "encode"): self = .codecsEncode
        case ("torch", let storage) where Self.storageTypes[storage] != nil: self = .storageType(name: storage)
        default: return nil
        }
    }

    var qualifiedName: String {
        switch self {
        case .orderedDict: "collections.OrderedDict"
        case .rebuildTensor: "torch._utils._rebuild_tensor"
        case .rebuildTensorV2: "torch._utils._rebuild_tensor_v2"
        case .rebuildParameter: "torch._utils._rebuild_parameter"
        case .rebuildParameterWithState: "torch._utils._rebuild_parameter_with_state"
        case .rebuildFromTypeV2: "torch._tensor._rebuild_from_type_v2"
        case .storageType(let name): "torch.\(name)"
        case .tensorType: "torch.Tensor"
        case .torchSize: "torch.Size"
        case .torchDevice: "torch.device"
        case .codecsEncode: "_codecs.encode"
        }
    }
}

/// A value on the pickle stack. Containers, storages and tensors are indices into the
/// arenas of `PickleResult`, so values are flat and cheap to copy.
enum PickleValue: Equatable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer too wide for Int: little-endian two's complement bytes, as LONG1 stores it.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case list(Int)
    case tuple(Int)
    case dict(Int)
    case global(PickleGlobal)
    case storage(Int)
    case tensor(Int)
}

/// A dict in insertion order; string and int keys are indexed so that SETITEM stays O(1).
struct PickleDict {
    var keys: [PickleValue] = []
    var values: [PickleValue] = []
    private var stringIndex: [String: Int] = [:]
    private var intIndex: [Int: Int] = [:]

    mutating func set(_ key: PickleValue, _ value: PickleValue) {
        switch key {
        case .string(let s):
            if let i = stringIndex[s] { values[i] = value; return }
            stringIndex[s] = keys.count
        case .int(let n):
            if let i = intIndex[n] { values[i] = value; return }
            intIndex[n] = keys.count
        default: break
        }
        keys.append(key)
        values.append(value)
    }

    func value(forString key: String) -> PickleValue? {
        stringIndex[key].map { values[$0] }
    }
}

/// A storage named by a persistent id: `('storage', torch.HalfStorage, '0', 'cpu', numel)`
/// in ZIP checkpoints, with a trailing view `(view_key, offset, size)` in legacy ones.
struct PickleStorage: Equatable {
    var key: String
    var typeName: String
    var dtype: DType?
    var elementSize: Int
    var elementCount: Int
    /// Elements to skip at the start of the root storage (legacy storage views).
    var elementOffset: Int = 0
    /// Elements of the whole storage under `key` (differs from `elementCount` for views).
    var rootElementCount: Int
}

/// What `torch._utils._rebuild_tensor_v2` would build: a view on a storage.
struct PickleTensor: Equatable {
    var storage: Int
    var storageOffset: Int
    var shape: [Int]
    var strides: [Int]
}

struct PickleResult {
    var root: PickleValue
    var lists: [[PickleValue]]
    var tuples: [[PickleValue]]
    var dicts: [PickleDict]
    var storages: [PickleStorage]
    var tensors: [PickleTensor]
    /// The offset just past STOP.
    var end: Int
}

private struct PickleState {
    let source: String
    let bytes: UnsafeRawBufferPointer
    var position: Int

    var stack: [PickleValue] = []
    var marks: [Int] = []
    var memo: [Int: PickleValue] = [:]
    var lists: [[PickleValue]] = []
    var tuples: [[PickleValue]] = []
    var dicts: [PickleDict] = []
    var storages: [PickleStorage] = []
    var tensors: [PickleTensor] = []

    init(source: String, bytes: UnsafeRawBufferPointer, position: Int) {
        self.source = source
        self.bytes = bytes
        self.position = position
    }

    func malformed(_ message: String) -> FormatError {
        FormatError(.malformed, "\(source) is not a valid pickle: \(message) (at byte \(position))")
    }

    // MARK: reading

    mutating func read(_ count: Int) throws(FormatError) -> UnsafeRawBufferPointer {
        guard count >= 0, count <= bytes.count - position else {
            throw malformed("truncated: needs \(count) more bytes, \(bytes.count - position) left")
        }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }

    mutating func readByte() throws(FormatError) -> UInt8 { try read(1)[0] }

    mutating func readUInt(_ count: Int) throws(FormatError) -> UInt64 {
        let raw = try read(count)
        var value: UInt64 = 0
        for i in (0..<count).reversed() { value = value << 8 | UInt64(raw[i]) }
        return value
    }

    /// A length field: refused when it exceeds what is left, so that no allocation trusts it.
    mutating func readLength(_ count: Int) throws(FormatError) -> Int {
        let value = try readUInt(count)
        guard value <= UInt64(bytes.count - position) else {
            throw malformed("length \(value) runs past the end")
        }
        return Int(value)
    }

    mutating func readLine() throws(FormatError) -> String {
        let start = position
        while position < bytes.count, bytes[position] != 0x0A { position += 1 }
        guard position < bytes.count else { throw malformed("unterminated line") }
        let line = UnsafeRawBufferPointer(rebasing: bytes[start..<position])
        position += 1
        return String(decoding: line, as: UTF8.self)
    }

    // MARK: stack

    mutating func pop() throws(FormatError) -> PickleValue {
        guard let value = stack.popLast(), stack.count >= (marks.last ?? 0) else { throw malformed("stack underflow") }
        return value
    }

    func top() throws(FormatError) -> PickleValue {
        guard let value = stack.last, stack.count > (marks.last ?? 0) else { throw malformed("stack underflow") }
        return value
    }

    /// Pops everything above the topmost MARK, and the mark.
    mutating func popMark() throws(FormatError) -> [PickleValue] {
        guard let mark = marks.popLast() else { throw malformed("no MARK on the stack") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    mutating func push(_ value: PickleValue) { stack.append(value) }

    mutating func newTuple(_ items: [PickleValue]) -> PickleValue {
        tuples.append(items)
        return .tuple(tuples.count - 1)
    }

    mutating func newDict() -> PickleValue {
        dicts.append(PickleDict())
        return .dict(dicts.count - 1)
    }

    func items(of value: PickleValue) -> [PickleValue]? {
        switch value {
        case .tuple(let i): tuples[i]
        case .list(let i): lists[i]
        default: nil
        }
    }

    // MARK: the machine

    mutating func run() throws(FormatError) -> PickleResult {
        while true {
            let opcode = try readByte()
            switch opcode {
            case 0x80: // PROTO
                let version = try readByte()
                guard version <= 5 else { throw FormatError(.unsupported, "\(source) uses pickle protocol \(version); this reader understands protocols 2 to 5") }
            case 0x95: // FRAME: a length hint only
                _ = try readUInt(8)
            case 0x2E: // STOP
                guard stack.count == 1, marks.isEmpty else { throw malformed("STOP with \(stack.count) values on the stack") }
                return PickleResult(root: stack[0], lists: lists, tuples: tuples, dicts: dicts,
                                    storages: storages, tensors: tensors, end: position)
            case 0x28: marks.append(stack.count) // MARK
            case 0x31: _ = try popMark() // POP_MARK
            case 0x30: _ = try pop() // POP
            case 0x32: push(try top()) // DUP
            case 0x4E: push(.none)
            case 0x88: push(.bool(true))
            case 0x89: push(.bool(false))
            case 0x4A: push(.int(Int(Int32(bitPattern: UInt32(try readUInt(4)))))) // BININT
            case 0x4B: push(.int(Int(try readByte()))) // BININT1
            case 0x4D: push(.int(Int(try readUInt(2)))) // BININT2
            case 0x8A: push(try readLong(length: Int(try readByte()))) // LONG1
            case 0x8B: // LONG4
                let length = Int32(bitPattern: UInt32(try readUInt(4)))
                guard length >= 0 else { throw malformed("negative LONG4 length") }
                push(try readLong(length: Int(length)))
            case 0x47: push(.float(Double(bitPattern: UInt64(bigEndian: try read(8).loadUnaligned(as: UInt64.self))))) // BINFLOAT
            case 0x58: push(.string(try readText(try readLength(4)))) // BINUNICODE
            case 0x8C: push(.string(try readText(Int(try readByte())))) // SHORT_BINUNICODE
            case 0x8D: push(.string(try readText(try readLength(8)))) // BINUNICODE8
            case 0x54: // BINSTRING (Python 2 str): bytes as Latin-1
                let length = Int32(bitPattern: UInt32(try readUInt(4)))
                guard length >= 0, Int(length) <= bytes.count - position else { throw malformed("bad BINSTRING length") }
                push(.string(String(try read(Int(length)).map { Character(Unicode.Scalar($0)) })))
            case 0x55: push(.string(String(try read(Int(try readByte())).map { Character(Unicode.Scalar($0)) }))) // SHORT_BINSTRING
            case 0x42: push(.bytes(Array(try read(try readLength(4))))) // BINBYTES
            case 0x43: push(.bytes(Array(try read(Int(try readByte()))))) // SHORT_BINBYTES
            case 0x8E, 0x96: push(.bytes(Array(try read(try readLength(8))))) // BINBYTES8, BYTEARRAY8
            case 0x7D: push(newDict()) // EMPTY_DICT
            case 0x5D, 0x8F: // EMPTY_LIST, EMPTY_SET (a set is kept as a list)
                lists.append([])
                push(.list(lists.count - 1))
            case 0x29: push(newTuple([])) // EMPTY_TUPLE
            case 0x85: let a = try pop(); push(newTuple([a])) // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); push(newTuple([a, b])) // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); push(newTuple([a, b, c])) // TUPLE3
            case 0x74, 0x91: push(newTuple(try popMark())) // TUPLE, FROZENSET
            case 0x6C: // LIST
                lists.append(try popMark())
                push(.list(lists.count - 1))
            case 0x64: // DICT
                let items = try popMark()
                guard items.count % 2 == 0 else { throw malformed("DICT with an odd number of items") }
                let dict = newDict()
                try setItems(dict, items)
                push(dict)
            case 0x73: // SETITEM
                let value = try pop(), key = try pop()
                try setItems(try top(), [key, value])
            case 0x75: // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0 else { throw malformed("SETITEMS with an odd number of items") }
                try setItems(try top(), items)
            case 0x61: // APPEND
                let value = try pop()
                try append(to: try top(), [value])
            case 0x65, 0x90: // APPENDS, ADDITEMS
                let items = try popMark()
                try append(to: try top(), items)
            case 0x71: memo[Int(try readByte())] = try top() // BINPUT
            case 0x72: memo[Int(try readUInt(4))] = try top() // LONG_BINPUT
            case 0x94: memo[memo.count] = try top() // MEMOIZE
            case 0x68: push(try memoValue(Int(try readByte()))) // BINGET
            case 0x6A: push(try memoValue(Int(try readUInt(4)))) // LONG_BINGET
            case 0x63: // GLOBAL
                let module = try readLine()
                let name = try readLine()
                push(.global(try resolve(module: module, name: name)))
            case 0x93: // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard case .string(let n) = name, case .string(let m) = module else { throw malformed("STACK_GLOBAL needs two strings") }
                push(.global(try resolve(module: m, name: n)))
            case 0x69: // INST: module, name, then the arguments since MARK
                let module = try readLine()
                let name = try readLine()
                let global = try resolve(module: module, name: name)
                let args = try popMark()
                push(try call(global, args))
            case 0x6F: // OBJ: MARK, class, arguments
                let items = try popMark()
                guard let first = items.first, case .global(let global) = first else { throw malformed("OBJ without a class") }
                push(try call(global, Array(items.dropFirst())))
            case 0x52: // REDUCE
                let args = try pop(), callable = try pop()
                guard case .global(let global) = callable else { throw malformed("REDUCE on something that is not a global") }
                guard let list = items(of: args) else { throw malformed("REDUCE arguments are not a tuple") }
                push(try call(global, list))
            case 0x81: // NEWOBJ
                let args = try pop(), cls = try pop()
                guard case .global(let global) = cls, let list = items(of: args) else { throw malformed("NEWOBJ needs a class and a tuple") }
                push(try construct(global, list))
            case 0x92: // NEWOBJ_EX
                _ = try pop() // keyword arguments: none of our classes takes any
                let args = try pop(), cls = try pop()
                guard case .global(let global) = cls, let list = items(of: args) else { throw malformed("NEWOBJ_EX needs a class and a tuple") }
                push(try construct(global, list))
            case 0x62: // BUILD
                _ = try pop()
                switch try top() {
                // OrderedDict keeps `_metadata` here; a tensor its Python attributes. Neither holds weights.
                case .dict, .tensor: break
                default: throw malformed("BUILD on a value that takes no state")
                }
            case 0x51: // BINPERSID
                push(try persistentLoad(try pop()))
            case 0x50: // PERSID (text): not written by torch
                throw FormatError(.unsupported, "\(source) uses text persistent ids (PERSID), which torch.save never writes")
            case 0x82, 0x83, 0x84:
                throw FormatError(.refused, "refusing to load \(source): it uses the copyreg extension registry (EXT opcodes), which a state dict never needs")
            case 0x97, 0x98:
                throw FormatError(.unsupported, "\(source) uses out-of-band buffers (pickle protocol 5), which torch.save never writes")
            default:
                throw FormatError(.unsupported, "\(source): pickle opcode 0x\(String(opcode, radix: 16)) at byte \(position - 1) is not one torch.save writes (text protocols 0 and 1 are not supported)")
            }
        }
    }

    mutating func readLong(length: Int) throws(FormatError) -> PickleValue {
        let raw = try read(length)
        if length == 0 { return .int(0) }
        if length <= 8 {
            var value: UInt64 = 0
            for i in (0..<length).reversed() { value = value << 8 | UInt64(raw[i]) }
            // Sign-extend from the top byte.
            if length < 8, raw[length - 1] & 0x80 != 0 { value |= ~0 << UInt64(8 * length) }
            return .int(Int(Int64(bitPattern: value)))
        }
        return .bigInt(Array(raw))
    }

    mutating func readText(_ count: Int) throws(FormatError) -> String {
        let raw = try read(count)
        return String(decoding: raw, as: UTF8.self)
    }

    func memoValue(_ index: Int) throws(FormatError) -> PickleValue {
        guard let value = memo[index] else { throw malformed("memo entry \(index) read before it was written") }
        return value
    }

    mutating func setItems(_ target: PickleValue, _ items: [PickleValue]) throws(FormatError) {
        guard case .dict(let index) = target else { throw malformed("SETITEM on a value that is not a dict") }
        var i = 0
        while i + 1 < items.count {
            dicts[index].set(items[i], items[i + 1])
            i += 2
        }
    }

    mutating func append(to target: PickleValue, _ items: [PickleValue]) throws(FormatError) {
        guard case .list(let index) = target else { throw malformed("APPEND on a value that is not a list") }
        lists[index].append(contentsOf: items)
    }

    func resolve(module: String, name: String) throws(FormatError) -> PickleGlobal {
        guard let global = PickleGlobal(module: module, name: name) else {
            throw FormatError(.refused, "refusing to load global \(module).\(name) from \(source): a state dict never needs it; the file may be malicious (if you trust it, re-save its state dict with torch.save or as safetensors)")
        }
        return global
    }

    // MARK: the allow-listed callables

    mutating func construct(_ global: PickleGlobal, _ args: [PickleValue]) throws(FormatError) -> PickleValue {
        guard global == .orderedDict else {
            throw FormatError(.refused, "refusing to construct \(global.qualifiedName) in \(source): a state dict never needs it")
        }
        return newDict()
    }

    mutating func call(_ global: PickleGlobal, _ args: [PickleValue]) throws(FormatError) -> PickleValue {
        func argumentError(_ expected: String) -> FormatError {
            malformed("\(global.qualifiedName) called with \(args.count) arguments; expected \(expected)")
        }
        switch global {
        case .orderedDict:
            let dict = newDict()
            if let pairs = args.first {
                guard let list = items(of: pairs) else { throw argumentError("a list of pairs") }
                for pair in list {
                    guard let kv = items(of: pair), kv.count == 2 else { throw argumentError("a list of pairs") }
                    try setItems(dict, kv)
                }
            }
            return dict
        case .rebuildTensorV2, .rebuildTensor:
            guard args.count >= 4 else { throw argumentError("(storage, offset, size, stride, ...)") }
            guard case .storage(let storage) = args[0] else { throw malformed("\(global.qualifiedName): the first argument is not a storage") }
            guard case .int(let offset) = args[1], offset >= 0 else { throw malformed("\(global.qualifiedName): bad storage offset") }
            guard let shape = intTuple(args[2]), let strides = intTuple(args[3]), shape.count == strides.count else {
                throw malformed("\(global.qualifiedName): size and stride must be tuples of integers of one length")
            }
            tensors.append(PickleTensor(storage: storage, storageOffset: offset, shape: shape, strides: strides))
            return .tensor(tensors.count - 1)
        case .rebuildParameter, .rebuildParameterWithState:
            guard let data = args.first, case .tensor = data else { throw argumentError("(tensor, requires_grad, hooks)") }
            return data
        case .rebuildFromTypeV2:
            // (func, type, args, state): only a plain tensor or Parameter rebuilt by an allowed function.
            guard args.count >= 3, case .global(let function) = args[0], case .global(.tensorType) = args[1],
                  let inner = items(of: args[2]) else {
                throw argumentError("(rebuild function, torch.Tensor or Parameter, arguments, state)")
            }
            // Only the rebuild functions proper: nesting _rebuild_from_type_v2 would let a file
            // drive our recursion as deep as it likes.
            switch function {
            case .rebuildTensor, .rebuildTensorV2, .rebuildParameter, .rebuildParameterWithState:
                return try call(function, inner)
            default:
                throw malformed("\(global.qualifiedName) asked to call \(function.qualifiedName), which does not rebuild a tensor")
            }
        case .torchSize:
            guard args.count == 1, let dims = items(of: args[0]) else { throw argumentError("one tuple") }
            return newTuple(dims)
        case .torchDevice:
            guard let first = args.first, case .string = first else { throw argumentError("a device name") }
            return first
        case .codecsEncode:
            guard args.count == 2, case .string(let text) = args[0], case .string(let encoding) = args[1],
                  ["latin1", "latin-1", "iso-8859-1"].contains(encoding.lowercased()) else {
                throw argumentError("(text, \"latin1\")")
            }
            var result: [UInt8] = []
            for scalar in text.unicodeScalars {
                guard scalar.value < 256 else { throw malformed("_codecs.encode: character outside Latin-1") }
                result.append(UInt8(scalar.value))
            }
            return .bytes(result)
        case .storageType, .tensorType:
            throw FormatError(.refused, "refusing to call \(global.qualifiedName) in \(source): torch.save never does; the file may be malicious")
        }
    }

    func intTuple(_ value: PickleValue) -> [Int]? {
        guard let list = items(of: value) else { return nil }
        var result: [Int] = []
        for item in list {
            guard case .int(let n) = item else { return nil }
            result.append(n)
        }
        return result
    }

    mutating func persistentLoad(_ pid: PickleValue) throws(FormatError) -> PickleValue {
        guard let fields = items(of: pid), fields.count >= 5, case .string("storage") = fields[0] else {
            throw malformed("persistent id is not ('storage', type, key, location, size)")
        }
        guard case .global(.storageType(let typeName)) = fields[1], let info = PickleGlobal.storageTypes[typeName] else {
            throw malformed("persistent id names no storage type")
        }
        let key: String
        switch fields[2] {
        case .string(let s): key = s
        case .int(let n): key = String(n)
        default: throw malformed("persistent id has no storage key")
        }
        guard case .int(let count) = fields[4], count >= 0 else { throw malformed("storage \(key) has no element count") }
        var storage = PickleStorage(key: key, typeName: typeName, dtype: info.dtype, elementSize: info.elementSize,
                                    elementCount: count, rootElementCount: count)
        // Legacy files: ('storage', type, root_key, location, root_size, (view_key, offset, view_size)).
        if fields.count >= 6, let view = items(of: fields[5]) {
            guard view.count == 3, case .int(let offset) = view[1], case .int(let size) = view[2],
                  offset >= 0, size >= 0, offset <= count, size <= count - offset else {
                throw malformed("storage view of \(key) lies outside its storage")
            }
            storage.elementOffset = offset
            storage.elementCount = size
        }
        storages.append(storage)
        return .storage(storages.count - 1)
    }
}
