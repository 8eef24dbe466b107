import Foundation

/// Why a job was refused or a spool operation failed. The description is what lands in `error.txt`
/// and in the `error` column, so it names the offending file or field and says what to do.
public enum SpoolError: Error, Equatable, CustomStringConvertible, Sendable {
    case invalidJSON(file: String, detail: String)
    case notAnObject(file: String)
    case missingQuestion
    case emptyQuestion
    case wrongType(field: String, expected: String)
    case outOfRange(field: String, detail: String)
    case unknownField(String)
    case idMismatch(field: String, name: String)
    case invalidJobName(String)
    case notAJob(name: String, detail: String)
    case symbolicLink(String)
    case badImageName(String)
    case missingImage(String)
    case imageNotRegularFile(String)
    case emptyImage(String)
    case oversizedImage(name: String, bytes: Int, limit: Int)
    case unsupportedImage(name: String, leadingBytes: String)
    case invalidBase64(image: Int)
    case imageNamesNeedDirectory(String)
    case tooManyImages(count: Int, limit: Int)
    case oversizedJobFile(bytes: Int, limit: Int)
    case system(operation: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case .invalidJSON(let file, let detail):
            return "\(file) is not valid JSON (\(detail)); write it with a JSON encoder"
        case .notAnObject(let file):
            return "\(file) must hold one JSON object such as {\"question\": \"...\"}"
        case .missingQuestion:
            return "the job has no \"question\" field; it is required"
        case .emptyQuestion:
            return "\"question\" is empty; ask something"
        case .wrongType(let field, let expected):
            return "field \"\(field)\" must be \(expected)"
        case .outOfRange(let field, let detail):
            return "field \"\(field)\" \(detail)"
        case .unknownField(let field):
            return "unknown field \"\(field)\"; known fields are \(JobRequest.knownFields.sorted().joined(separator: ", ")) (put your own annotations under keys starting with \"x_\")"
        case .idMismatch(let field, let name):
            return "field \"id\" is \"\(field)\" but the job is named \"\(name)\"; the id is the job's name in the spool, leave \"id\" out or make them equal"
        case .invalidJobName(let name):
            return "job name \"\(name)\" is not a valid id: use 1-128 of A-Z a-z 0-9 . _ - and do not start with '.'"
        case .notAJob(let name, let detail):
            return "\"\(name)\" is not a job (\(detail)); a job is a directory holding job.json or a single <id>.json file"
        case .symbolicLink(let name):
            return "\"\(name)\" is a symbolic link; links are refused, copy the file into the job instead"
        case .badImageName(let name):
            return "image name \"\(name)\" must be a plain file name inside the job directory (no '/', no '..', not absolute, not hidden)"
        case .missingImage(let name):
            return "image \"\(name)\" is listed in job.json but not in the job directory"
        case .imageNotRegularFile(let name):
            return "image \"\(name)\" is not a regular file"
        case .emptyImage(let name):
            return "image \"\(name)\" is empty"
        case .oversizedImage(let name, let bytes, let limit):
            return "image \"\(name)\" is \(bytes) bytes; the limit is \(limit) bytes, scale it down first"
        case .unsupportedImage(let name, let leading):
            return "image \"\(name)\" is neither JPEG nor PNG (it starts with \(leading))"
        case .invalidBase64(let index):
            return "image \(index + 1): \"base64\" is not valid base64"
        case .imageNamesNeedDirectory(let name):
            return "image \"\(name)\" is a file name, but a single-file job can only carry inline {\"base64\": ...} images; use a job directory for image files"
        case .tooManyImages(let count, let limit):
            return "the job has \(count) images; at most \(limit) are allowed"
        case .oversizedJobFile(let bytes, let limit):
            return "the job file is \(bytes) bytes; the limit is \(limit) bytes"
        case .system(let operation, let path, let code):
            return "\(operation) \(path): \(String(cString: strerror(code)))"
        }
    }
}
