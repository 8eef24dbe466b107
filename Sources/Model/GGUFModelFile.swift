import Formats

extension GGUFFile: ModelFile {
    public func metadataValue(_ key: String) -> MetadataValue? {
        metadata[key].map(MetadataValue.init)
    }
}

extension MetadataValue {
    init(_ value: GGUFValue) {
        if let integer = value.integer, value.bool == nil {
            self = .integer(integer)
        } else if let float = value.float {
            self = .float(Double(float))
        } else if let bool = value.bool {
            self = .bool(bool)
        } else if let string = value.string {
            self = .string(string)
        } else if let items = value.array {
            self = .array(items.map(MetadataValue.init))
        } else {
            self = .string(value.summary())
        }
    }
}

extension VisionLanguageModel {
    /// Loads the model file at `path` (a GGUF written by `minimindv convert`).
    public convenience init(path: String) throws {
        let file = try GGUFFile(path: path)
        file.file.advise(sequential: false)
        try self.init(file: file)
    }
}
