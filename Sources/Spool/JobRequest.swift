import Crypto
import Foundation

/// Sampling settings a job may override; `nil` means "the daemon's default".
public struct SamplingParameters: Codable, Equatable, Sendable {
    public var maxTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    public var topK: Int?
    public var repetitionPenalty: Double?
    public var seed: UInt64?

    public init(maxTokens: Int? = nil, temperature: Double? = nil, topP: Double? = nil, topK: Int? = nil,
                repetitionPenalty: Double? = nil, seed: UInt64? = nil) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.repetitionPenalty = repetitionPenalty
        self.seed = seed
    }

    enum CodingKeys: String, CodingKey {
        case maxTokens = "max_tokens", temperature, topP = "top_p", topK = "top_k"
        case repetitionPenalty = "repetition_penalty", seed
    }

    /// The settings as a compact JSON object with sorted keys (the `parameters` column).
    public var jsonText: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(self) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// One image of a job, read and checked; `sha256` (lowercase hex of the bytes) keys the embedding cache.
public struct JobImage: Equatable, Sendable {
    public enum Format: String, Sendable { case jpeg, png }

    public let name: String
    public let bytes: Data
    public let format: Format
    public let sha256: String

    public init(name: String, bytes: Data) throws(SpoolError) {
        guard !bytes.isEmpty else { throw .emptyImage(name) }
        guard let format = JobImage.sniff(bytes) else {
            let leading = bytes.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw .unsupportedImage(name: name, leadingBytes: leading)
        }
        self.name = name
        self.bytes = bytes
        self.format = format
        self.sha256 = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    static func sniff(_ bytes: Data) -> Format? {
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        return nil
    }
}

/// A validated job: what `job.json` (or `<id>.json`) asked for, with its images loaded.
public struct JobRequest: Equatable, Sendable {
    /// The job's id: its name in the spool (without `.json`).
    public let id: String
    public let question: String
    public let system: String?
    public let images: [JobImage]
    public let parameters: SamplingParameters
    /// Higher runs first among jobs waiting in `incoming/`.
    public let priority: Int
    /// When the job reached the spool (mtime of the entry), for the `submitted_at` column.
    public let submittedAt: Date

    public init(id: String, question: String, system: String? = nil, images: [JobImage] = [],
                parameters: SamplingParameters = SamplingParameters(), priority: Int = 0, submittedAt: Date = Date()) {
        self.id = id
        self.question = question
        self.system = system
        self.images = images
        self.parameters = parameters
        self.priority = priority
        self.submittedAt = submittedAt
    }

    static let knownFields: Set<String> = [
        "question", "images", "system", "max_tokens", "temperature", "top_p", "top_k",
        "repetition_penalty", "seed", "priority", "id",
    ]
}

/// Limits applied while reading a job; the defaults suit a small VLM on one machine.
public struct JobLimits: Sendable {
    public var maxImageBytes: Int
    public var maxImages: Int
    public var maxQuestionBytes: Int
    public var maxTokens: Int

    public init(maxImageBytes: Int = 20 << 20, maxImages: Int = 8, maxQuestionBytes: Int = 64 << 10, maxTokens: Int = 8192) {
        self.maxImageBytes = maxImageBytes
        self.maxImages = maxImages
        self.maxQuestionBytes = maxQuestionBytes
        self.maxTokens = maxTokens
    }

    /// `job.json` itself: inline base64 costs 4/3 of the images, plus room for the text.
    var maxJobFileBytes: Int { maxImages * maxImageBytes / 3 * 4 + (1 << 20) }
}

/// A JSON value as written, so that types can be checked strictly (a `true` is not a number, `"3"` is not an integer).
enum JSONValue: Decodable, Equatable {
    case null, bool(Bool), integer(Int64), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int64.self) { self = .integer(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }
}

/// Reads the fields of a job object and checks each one; images come from `loadImage`.
struct JobParser {
    let id: String
    let limits: JobLimits
    /// Reads an image file of a directory job by name; `nil` for single-file jobs.
    let loadImage: ((String) throws(SpoolError) -> Data)?

    static func object(from data: Data, file: String) throws(SpoolError) -> [String: JSONValue] {
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw .invalidJSON(file: file, detail: JobParser.summary(of: error))
        }
        guard case .object(let object) = value else { throw .notAnObject(file: file) }
        return object
    }

    func parse(_ object: [String: JSONValue], submittedAt: Date) throws(SpoolError) -> JobRequest {
        for key in object.keys.sorted() where !JobRequest.knownFields.contains(key) && !key.hasPrefix("x_") {
            throw .unknownField(key)
        }
        if let value = object["id"] {
            guard case .string(let given) = value else { throw .wrongType(field: "id", expected: "a string") }
            guard given == id else { throw .idMismatch(field: given, name: id) }
        }
        guard let questionValue = object["question"] else { throw .missingQuestion }
        guard case .string(let question) = questionValue else { throw .wrongType(field: "question", expected: "a string") }
        guard !question.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw .emptyQuestion }
        guard question.utf8.count <= limits.maxQuestionBytes else {
            throw .outOfRange(field: "question", detail: "is longer than \(limits.maxQuestionBytes) bytes")
        }
        let system = try string("system", in: object)

        var parameters = SamplingParameters()
        parameters.maxTokens = try integer("max_tokens", in: object, range: 1...Int64(limits.maxTokens)).map { Int($0) }
        parameters.temperature = try number("temperature", in: object, range: 0...100)
        parameters.topP = try number("top_p", in: object, range: 0...1, excludingLower: true)
        parameters.topK = try integer("top_k", in: object, range: 0...1_000_000).map { Int($0) }
        parameters.repetitionPenalty = try number("repetition_penalty", in: object, range: 0...100, excludingLower: true)
        parameters.seed = try integer("seed", in: object, range: 0...Int64.max).map { UInt64($0) }
        let priority = try integer("priority", in: object, range: -1_000_000...1_000_000).map { Int($0) } ?? 0

        var images: [JobImage] = []
        if let value = object["images"] {
            guard case .array(let entries) = value else {
                throw .wrongType(field: "images", expected: "an array of file names or {\"base64\": ...} objects")
            }
            guard entries.count <= limits.maxImages else { throw .tooManyImages(count: entries.count, limit: limits.maxImages) }
            for (index, entry) in entries.enumerated() {
                images.append(try image(entry, index: index))
            }
        }
        return JobRequest(id: id, question: question, system: system, images: images, parameters: parameters,
                          priority: priority, submittedAt: submittedAt)
    }

    private func image(_ entry: JSONValue, index: Int) throws(SpoolError) -> JobImage {
        switch entry {
        case .string(let name):
            guard JobParser.isPlainFileName(name) else { throw .badImageName(name) }
            guard let loadImage else { throw .imageNamesNeedDirectory(name) }
            let bytes = try loadImage(name)
            guard bytes.count <= limits.maxImageBytes else {
                throw .oversizedImage(name: name, bytes: bytes.count, limit: limits.maxImageBytes)
            }
            return try JobImage(name: name, bytes: bytes)
        case .object(let fields):
            for key in fields.keys.sorted() where key != "base64" && key != "name" {
                throw .unknownField("images[\(index)].\(key)")
            }
            guard case .string(let encoded)? = fields["base64"] else {
                throw .wrongType(field: "images[\(index)].base64", expected: "a base64 string")
            }
            var name = "image \(index + 1)"
            if let value = fields["name"] {
                guard case .string(let given) = value else { throw .wrongType(field: "images[\(index)].name", expected: "a string") }
                name = given
            }
            guard encoded.utf8.count / 4 * 3 <= limits.maxImageBytes + 3 else {
                throw .oversizedImage(name: name, bytes: encoded.utf8.count / 4 * 3, limit: limits.maxImageBytes)
            }
            guard let bytes = Data(base64Encoded: encoded, options: .ignoreUnknownCharacters) else {
                throw .invalidBase64(image: index)
            }
            guard bytes.count <= limits.maxImageBytes else {
                throw .oversizedImage(name: name, bytes: bytes.count, limit: limits.maxImageBytes)
            }
            return try JobImage(name: name, bytes: bytes)
        default:
            throw .wrongType(field: "images[\(index)]", expected: "a file name or a {\"base64\": ...} object")
        }
    }

    private func string(_ field: String, in object: [String: JSONValue]) throws(SpoolError) -> String? {
        guard let value = object[field], value != .null else { return nil }
        guard case .string(let text) = value else { throw .wrongType(field: field, expected: "a string") }
        return text
    }

    private func integer(_ field: String, in object: [String: JSONValue], range: ClosedRange<Int64>) throws(SpoolError) -> Int64? {
        guard let value = object[field], value != .null else { return nil }
        guard case .integer(let number) = value else { throw .wrongType(field: field, expected: "an integer") }
        guard range.contains(number) else {
            throw .outOfRange(field: field, detail: "is \(number); it must be in \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    private func number(_ field: String, in object: [String: JSONValue], range: ClosedRange<Double>,
                        excludingLower: Bool = false) throws(SpoolError) -> Double? {
        guard let value = object[field], value != .null else { return nil }
        let number: Double
        switch value {
        case .integer(let whole): number = Double(whole)
        case .number(let real): number = real
        default: throw .wrongType(field: field, expected: "a number")
        }
        guard range.contains(number), !(excludingLower && number == range.lowerBound) else {
            let lower = excludingLower ? "above \(range.lowerBound)" : "at least \(range.lowerBound)"
            throw .outOfRange(field: field, detail: "is \(number); it must be \(lower) and at most \(range.upperBound)")
        }
        return number
    }

    /// One path component, not hidden, not `.`/`..`: a name can never leave the job directory.
    static func isPlainFileName(_ name: String) -> Bool {
        !name.isEmpty && !name.hasPrefix(".") && !name.contains("/") && !name.contains("\0") && name.utf8.count <= 255
    }

    static func summary(of error: any Error) -> String {
        if case DecodingError.dataCorrupted(let context) = error {
            if let underlying = context.underlyingError { return "\(underlying.localizedDescription)" }
            return context.debugDescription
        }
        return "\(error)"
    }
}
