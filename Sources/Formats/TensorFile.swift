#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The kinds of weight files `openTensorFile` recognises by their first bytes.
public enum TensorFileKind: String, Sendable {
    case safetensors
    case safetensorsIndex = "safetensors index"
    case pytorchZip = "PyTorch ZIP checkpoint"
    case pytorchLegacy = "PyTorch legacy checkpoint"
    case gguf = "GGUF"

    /// Looks at the content, never at the file name.
    public static func detect(_ file: MappedFile) -> TensorFileKind? {
        let count = file.count
        guard count >= 2 else { return nil }
        // safetensors first: a header length of 640 starts with the bytes 0x80 0x02, like a pickle.
        if count >= 9 {
            let (length, first) = file.withBytes(0..<9) { ($0.loadUnaligned(as: UInt64.self).littleEndian, $0[8]) }
            if first == UInt8(ascii: "{"), length <= UInt64(count - 8) { return .safetensors }
        }
        if ZipArchive.looksLikeZip(file) { return .pytorchZip }
        if PyTorchCheckpoint.looksLikePickle(file) { return .pytorchLegacy }
        if count >= 4, file.withBytes(0..<4, { Array($0) }) == Array("GGUF".utf8) { return .gguf }
        let firstText = file.withBytes(0..<min(count, 64)) { raw in raw.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) } }
        if firstText == UInt8(ascii: "{") { return .safetensorsIndex }
        return nil
    }
}

/// Opens any weight file by its content: safetensors (or a shard index), a PyTorch checkpoint
/// in either layout, or a folder holding one (`model.safetensors.index.json`,
/// `model.safetensors`, `pytorch_model.bin`, in that order of preference).
///
/// GGUF files are recognised but opened by `GGUFFile`, which lives beside this reader.
public func openTensorFile(path: String) throws(FormatError) -> any TensorSource {
    var info = stat()
    if stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
        for candidate in ["model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin"] {
            let full = path + "/" + candidate
            if access(full, F_OK) == 0 {
                if candidate == "pytorch_model.bin.index.json" {
                    throw FormatError(.unsupported, "\(path) holds a sharded pytorch_model.bin set; convert it to safetensors with transformers (save_pretrained(safe_serialization=True)) first")
                }
                return try openTensorFile(path: full)
            }
        }
        throw FormatError(.invalidModel, "\(path) is a folder without model.safetensors, model.safetensors.index.json or pytorch_model.bin")
    }
    return try openTensorFile(file: try MappedFile(path: path))
}

/// Opens an already mapped weight file by its content (see `openTensorFile(path:)`).
public func openTensorFile(file: MappedFile) throws(FormatError) -> any TensorSource {
    let path = file.path
    switch TensorFileKind.detect(file) {
    case .safetensors: return try SafeTensorsFile(file: file)
    case .safetensorsIndex: return try ShardedSafeTensors(path: path)
    case .pytorchZip, .pytorchLegacy: return try PyTorchCheckpoint(file: file)
    case .gguf:
        throw FormatError(.unsupported, "\(path) is GGUF: use GGUFFile to read it")
    case nil:
        if file.count >= 262, file.withBytes(257..<262, { Array($0) }) == Array("ustar".utf8) {
            throw FormatError(.unsupported, "\(path) is a tar archive, the checkpoint format of PyTorch before 0.4: load it with an old PyTorch and re-save it with torch.save")
        }
        throw FormatError(.malformed, "\(path) is not a safetensors file, a PyTorch checkpoint or GGUF (its first bytes match none of them)")
    }
}
