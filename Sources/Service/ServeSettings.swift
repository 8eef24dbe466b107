import Foundation

/// Everything `minimindv serve` can be told, with defaults that work from the project folder.
/// Precedence: defaults, then the `--config` TOML file, then command-line flags.
public struct ServeSettings: Equatable, Sendable {
    public var spool = "./spool"
    public var database = "./results.sqlite"
    public var model: String?
    public var batch = 4
    /// Compute threads for the engine; nil lets the engine decide (all cores).
    public var threads: Int?
    /// Memory budget of the vision-embedding LRU.
    public var cacheMB = 256
    /// Bound of the persistent embedding cache file.
    public var cacheDiskMB = 1024
    /// Memory for the keys and values of recent prompts, reused by prompts beginning the same way
    /// (the same image asked again); 0 turns reuse off.
    public var prefixMB = 128
    /// KV cache precision: "auto" (the model file decides), "f32", "f16" or "int8".
    public var kvCache = "auto"
    /// Folder of the persistent embedding cache (`embeddings.sqlite`); nil keeps it in memory only.
    public var cacheDirectory: String? = "./cache"
    public var keepDone = true
    public var logLevel = "info"
    public var drainSeconds = 30.0
    public var rescanSeconds = 5.0
    public var maxAttempts = 3
    public var maxImageMB = 20

    public init() {}

    /// The keys a config file may set (the flag names with `_` for `-`).
    public static let keys: [String] = [
        "spool", "db", "model", "batch", "threads", "cache_mb", "cache_disk_mb", "cache_dir", "prefix_mb", "kv_cache",
        "keep_done", "log_level", "drain_seconds", "rescan_seconds", "max_attempts", "max_image_mb",
    ]

    /// Applies a config file: `key = value` lines, optionally under a `[serve]` table.
    public mutating func apply(configText text: String, path: String) throws(ConfigError) {
        let table = try TOMLSubset.parse(text, path: path)
        for (key, entry) in table.sorted(by: { $0.key < $1.key }) {
            let (value, line) = entry
            let at = ConfigError.Location(path: path, line: line)
            switch key {
            case "spool": spool = try value.string(key, at)
            case "db": database = try value.string(key, at)
            case "model": model = try value.string(key, at)
            case "batch": batch = try value.integer(key, at, min: 1)
            case "threads": threads = try value.integer(key, at, min: 1)
            case "cache_mb": cacheMB = try value.integer(key, at, min: 0)
            case "cache_disk_mb": cacheDiskMB = try value.integer(key, at, min: 0)
            case "prefix_mb": prefixMB = try value.integer(key, at, min: 0)
            case "kv_cache":
                let precision = try value.string(key, at)
                guard ServeSettings.kvCaches.contains(precision) else {
                    throw ConfigError(at, "kv_cache must be one of \(ServeSettings.kvCaches.joined(separator: ", "))")
                }
                kvCache = precision
            case "cache_dir":
                let dir = try value.string(key, at)
                cacheDirectory = dir.isEmpty ? nil : dir
            case "keep_done": keepDone = try value.boolean(key, at)
            case "log_level":
                let level = try value.string(key, at)
                guard ServeSettings.logLevels.contains(level) else {
                    throw ConfigError(at, "log_level must be one of \(ServeSettings.logLevels.joined(separator: ", "))")
                }
                logLevel = level
            case "drain_seconds": drainSeconds = try value.number(key, at, min: 0)
            case "rescan_seconds": rescanSeconds = try value.number(key, at, min: 0.05)
            case "max_attempts": maxAttempts = try value.integer(key, at, min: 1)
            case "max_image_mb": maxImageMB = try value.integer(key, at, min: 1)
            default:
                throw ConfigError(at, "unknown key \"\(key)\"; known keys: \(ServeSettings.keys.joined(separator: ", "))")
            }
        }
    }

    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    public static let kvCaches = ["auto", "f32", "f16", "int8"]
}

/// A config file problem, with file and line.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public struct Location: Equatable, Sendable {
        public let path: String
        public let line: Int
    }

    public let location: Location
    public let message: String

    init(_ location: Location, _ message: String) {
        self.location = location
        self.message = message
    }

    public var description: String { "\(location.path):\(location.line): \(message)" }
}

/// The part of TOML a flat settings file needs: comments, `key = value` with basic and literal strings,
/// integers, floats and booleans, and one optional `[serve]` table. Anything else is reported, not guessed.
/// (TOMLKit would pull a C++ TOML library into the build for these dozen keys.)
enum TOMLSubset {
    enum Value: Equatable {
        case string(String), integer(Int), float(Double), boolean(Bool)

        func string(_ key: String, _ at: ConfigError.Location) throws(ConfigError) -> String {
            guard case .string(let text) = self else { throw ConfigError(at, "\(key) must be a string (in quotes)") }
            return text
        }

        func integer(_ key: String, _ at: ConfigError.Location, min: Int) throws(ConfigError) -> Int {
            guard case .integer(let number) = self else { throw ConfigError(at, "\(key) must be an integer") }
            guard number >= min else { throw ConfigError(at, "\(key) must be at least \(min)") }
            return number
        }

        func number(_ key: String, _ at: ConfigError.Location, min: Double) throws(ConfigError) -> Double {
            let number: Double
            switch self {
            case .integer(let whole): number = Double(whole)
            case .float(let real): number = real
            default: throw ConfigError(at, "\(key) must be a number")
            }
            guard number >= min else { throw ConfigError(at, "\(key) must be at least \(min)") }
            return number
        }

        func boolean(_ key: String, _ at: ConfigError.Location) throws(ConfigError) -> Bool {
            guard case .boolean(let flag) = self else { throw ConfigError(at, "\(key) must be true or false") }
            return flag
        }
    }

    static func parse(_ text: String, path: String) throws(ConfigError) -> [String: (Value, Int)] {
        var table: [String: (Value, Int)] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let at = ConfigError.Location(path: path, line: index + 1)
            var line = Substring(rawLine.trimmingCharacters(in: .whitespaces))
            if line.hasSuffix("\r") { line = line.dropLast() }
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("[") {
                let header = stripComment(line).trimmingCharacters(in: .whitespaces)
                guard header == "[serve]" else {
                    throw ConfigError(at, "only a [serve] table is understood here, not \(header)")
                }
                continue
            }
            guard let equals = line.firstIndex(of: "=") else { throw ConfigError(at, "expected key = value") }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
                throw ConfigError(at, "\"\(key)\" is not a bare key")
            }
            guard table[key] == nil else { throw ConfigError(at, "\(key) is set twice") }
            let rest = line[line.index(after: equals)...].drop(while: { $0 == " " || $0 == "\t" })
            table[key] = (try value(rest, at), index + 1)
        }
        return table
    }

    private static func value(_ text: Substring, _ at: ConfigError.Location) throws(ConfigError) -> Value {
        if text.hasPrefix("\"") { return .string(try basicString(text.dropFirst(), at)) }
        if text.hasPrefix("'") {
            let body = text.dropFirst()
            guard let end = body.firstIndex(of: "'") else { throw ConfigError(at, "unterminated string") }
            try expectNothingAfter(body[body.index(after: end)...], at)
            return .string(String(body[..<end]))
        }
        let token = stripComment(text).trimmingCharacters(in: .whitespaces)
        if token == "true" { return .boolean(true) }
        if token == "false" { return .boolean(false) }
        let digits = token.replacingOccurrences(of: "_", with: "")
        if let whole = Int(digits) { return .integer(whole) }
        if let real = Double(digits), digits.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }) { return .float(real) }
        throw ConfigError(at, "cannot read value \(token); strings need quotes")
    }

    private static func basicString(_ body: Substring, _ at: ConfigError.Location) throws(ConfigError) -> String {
        var result = ""
        var index = body.startIndex
        while index < body.endIndex {
            let character = body[index]
            if character == "\"" {
                try expectNothingAfter(body[body.index(after: index)...], at)
                return result
            }
            if character == "\\" {
                index = body.index(after: index)
                guard index < body.endIndex else { break }
                switch body[index] {
                case "\"": result.append("\"")
                case "\\": result.append("\\")
                case "n": result.append("\n")
                case "t": result.append("\t")
                case "u", "U":
                    let count = body[index] == "u" ? 4 : 8
                    let start = body.index(after: index)
                    guard let end = body.index(start, offsetBy: count, limitedBy: body.endIndex),
                          let scalar = UInt32(body[start..<end], radix: 16).flatMap(Unicode.Scalar.init) else {
                        throw ConfigError(at, "bad \\u escape")
                    }
                    result.unicodeScalars.append(scalar)
                    index = body.index(before: end)
                default: throw ConfigError(at, "unknown escape \\\(body[index])")
                }
            } else {
                result.append(character)
            }
            index = body.index(after: index)
        }
        throw ConfigError(at, "unterminated string")
    }

    private static func expectNothingAfter(_ rest: Substring, _ at: ConfigError.Location) throws(ConfigError) {
        let tail = stripComment(rest).trimmingCharacters(in: .whitespaces)
        guard tail.isEmpty else { throw ConfigError(at, "unexpected \(tail) after the value") }
    }

    private static func stripComment(_ text: Substring) -> Substring {
        guard let hash = text.firstIndex(of: "#") else { return text }
        return text[..<hash]
    }
}
