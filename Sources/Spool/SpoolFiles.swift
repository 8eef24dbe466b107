import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The kind of a directory entry as `lstat` sees it (links are never followed).
enum EntryKind: Equatable {
    case directory, regularFile, symbolicLink, other, missing
}

/// File operations that never follow a symbolic link out of the spool. Unsafe pointers stay in here.
enum SpoolFiles {
    static func kind(of path: String) -> EntryKind {
        var info = stat()
        guard lstat(path, &info) == 0 else { return .missing }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: return .directory
        case S_IFREG: return .regularFile
        case S_IFLNK: return .symbolicLink
        default: return .other
        }
    }

    static func modificationDate(of path: String) -> Date {
        var info = stat()
        guard lstat(path, &info) == 0 else { return Date() }
        return Date(timeIntervalSince1970: Double(info.st_mtim.tv_sec) + Double(info.st_mtim.tv_nsec) / 1e9)
    }

    /// Opens a directory without following a link, for `openat`-relative reads inside it.
    static func openDirectory(_ path: String, displayName: String) throws(SpoolError) -> Int32 {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ELOOP || code == ENOTDIR, kind(of: path) == .symbolicLink { throw .symbolicLink(displayName) }
            throw .system(operation: "open", path: path, errno: code)
        }
        return fd
    }

    /// Reads a regular file named `name` inside the directory `directory`, refusing links, fifos and devices.
    /// `missing` is thrown when the file does not exist; `tooLarge` when it is over `limit` bytes.
    static func readFile(in directory: Int32, name: String, limit: Int,
                         missing: SpoolError, notRegular: SpoolError,
                         tooLarge: (Int) -> SpoolError) throws(SpoolError) -> Data {
        let fd = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            let code = errno
            switch code {
            case ENOENT: throw missing
            case ELOOP: throw .symbolicLink(name)
            default: throw .system(operation: "open", path: name, errno: code)
            }
        }
        defer { close(fd) }
        return try readAll(fd, name: name, limit: limit, notRegular: notRegular, tooLarge: tooLarge)
    }

    /// Reads a regular file by path, refusing a link at the last component.
    static func readFile(atPath path: String, displayName: String, limit: Int,
                         tooLarge: (Int) -> SpoolError) throws(SpoolError) -> Data {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            let code = errno
            if code == ELOOP { throw .symbolicLink(displayName) }
            throw .system(operation: "open", path: path, errno: code)
        }
        defer { close(fd) }
        return try readAll(fd, name: displayName, limit: limit,
                           notRegular: .notAJob(name: displayName, detail: "not a regular file"), tooLarge: tooLarge)
    }

    private static func readAll(_ fd: Int32, name: String, limit: Int, notRegular: SpoolError,
                                tooLarge: (Int) -> SpoolError) throws(SpoolError) -> Data {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .system(operation: "stat", path: name, errno: errno) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw notRegular }
        let size = Int(info.st_size)
        guard size <= limit else { throw tooLarge(size) }
        var data = Data(count: size)
        var filled = 0
        while filled < size {
            let got = data.withUnsafeMutableBytes { buffer in
                read(fd, buffer.baseAddress! + filled, size - filled)
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw .system(operation: "read", path: name, errno: errno)
            }
            if got == 0 { break }
            filled += got
        }
        return data.prefix(filled)
    }

    /// Writes `data` to a new file `name` inside `directory` (replacing a plain file, never writing through a link) and syncs it.
    static func writeFile(in directory: String, name: String, data: Data) throws(SpoolError) {
        let dirfd = try openDirectory(directory, displayName: directory)
        defer { close(dirfd) }
        unlinkat(dirfd, name, 0)
        let fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .system(operation: "create", path: "\(directory)/\(name)", errno: errno) }
        defer { close(fd) }
        var written = 0
        while written < data.count {
            let put = data.withUnsafeBytes { buffer in
                write(fd, buffer.baseAddress! + written, data.count - written)
            }
            if put < 0 {
                if errno == EINTR { continue }
                throw .system(operation: "write", path: "\(directory)/\(name)", errno: errno)
            }
            written += put
        }
        fsync(fd)
    }

    static func sync(directory path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    /// `rename(2)`; returns false if the source is gone (someone else moved it first).
    @discardableResult
    static func rename(_ from: String, _ to: String) throws(SpoolError) -> Bool {
        if Glibc.rename(from, to) == 0 { return true }
        let code = errno
        if code == ENOENT, kind(of: from) == .missing { return false }
        throw .system(operation: "rename \(from) to", path: to, errno: code)
    }

    /// Moves an entry to `directory/name`, or `name~2`, `name~3`, ... if that is taken: nothing is ever overwritten.
    /// Returns the name used. Files are moved by link+unlink (which refuses an existing target);
    /// directories by rename (which refuses a non-empty target, and a job directory is never empty).
    static func moveWithoutReplacing(_ from: String, into directory: String, name: String,
                                     reserved: (String) -> Bool = { _ in false }) throws(SpoolError) -> String {
        let isDirectory = kind(of: from) == .directory
        for attempt in 1...1000 {
            let candidate = attempt == 1 ? name : "\(name)~\(attempt)"
            let target = "\(directory)/\(candidate)"
            if kind(of: target) != .missing || reserved(candidate) { continue }
            if isDirectory {
                if Glibc.rename(from, target) == 0 { return candidate }
                if errno == EEXIST || errno == ENOTEMPTY || errno == ENOTDIR || errno == EISDIR { continue }
                throw .system(operation: "rename \(from) to", path: target, errno: errno)
            } else {
                if link(from, target) == 0 {
                    unlink(from)
                    return candidate
                }
                if errno == EEXIST { continue }
                // Hard links can be refused (e.g. protected_hardlinks on foreign files); fall back to rename.
                if Glibc.rename(from, target) == 0 { return candidate }
                throw .system(operation: "rename \(from) to", path: target, errno: errno)
            }
        }
        throw .system(operation: "find a free name for", path: "\(directory)/\(name)", errno: EEXIST)
    }

    /// Names in a directory, hidden ones (starting with '.') left out, sorted.
    static func visibleNames(in path: String) throws(SpoolError) -> [String] {
        guard let dir = opendir(path) else { throw .system(operation: "list", path: path, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasPrefix(".") { continue }
            names.append(name)
        }
        return names.sorted()
    }

    /// Removes a file or a whole directory tree without following links.
    static func removeTree(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }
}
