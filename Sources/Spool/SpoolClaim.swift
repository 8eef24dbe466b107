import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One daemon's claim folder `active/@<owner>/`, held under an exclusive `flock` for the daemon's life.
/// A job is claimed by renaming it from `incoming/` into this folder: of several daemons, exactly one
/// rename succeeds. When the daemon dies the kernel drops the lock, which is how a later daemon knows
/// the folder's jobs were abandoned.
public final class SpoolClaim: @unchecked Sendable {
    public let spool: SpoolDirectory
    /// `@<host>.<pid>.<random>`.
    public let owner: String
    public let path: String
    private var lockFD: Int32

    /// Creates and locks a fresh claim folder. It is built under a hidden name and renamed into place
    /// already locked, so no other daemon can mistake it for an abandoned one.
    public init(spool: SpoolDirectory) throws(SpoolError) {
        self.spool = spool
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        let safeHost = String(host.unicodeScalars.filter { CharacterSet.alphanumerics.contains($0) || $0 == "-" })
        owner = "@\(safeHost.isEmpty ? "host" : safeHost).\(getpid()).\(String(UInt32.random(in: 0...UInt32.max), radix: 36))"
        path = "\(spool.active)/\(owner)"
        let building = "\(spool.active)/.\(owner)"
        guard mkdir(building, 0o755) == 0 else { throw .system(operation: "create", path: building, errno: errno) }
        lockFD = open(building, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard lockFD >= 0 else { throw .system(operation: "open", path: building, errno: errno) }
        guard flock(lockFD, LOCK_EX | LOCK_NB) == 0 else { throw .system(operation: "lock", path: building, errno: errno) }
        try SpoolFiles.rename(building, path)
    }

    deinit { release() }

    /// Removes the (empty) claim folder and drops the lock. Jobs still inside stay for recovery.
    public func release() {
        guard lockFD >= 0 else { return }
        rmdir(path)
        close(lockFD)
        lockFD = -1
    }

    /// Claims `incoming/<name>`; false if another daemon took it first (or it vanished).
    public func claim(_ name: String) throws(SpoolError) -> Bool {
        try SpoolFiles.rename("\(spool.incoming)/\(name)", "\(path)/\(name)")
    }

    /// Where a claimed job lives while it runs.
    public func pathOfClaimed(_ name: String) -> String { "\(path)/\(name)" }

    /// Jobs in this claim folder.
    public func claimedNames() throws(SpoolError) -> [String] { try SpoolFiles.visibleNames(in: path) }

    /// Claim folders of daemons that are gone (their lock can be taken), now locked by the caller.
    public static func abandoned(in spool: SpoolDirectory) throws(SpoolError) -> [AbandonedClaim] {
        var found: [AbandonedClaim] = []
        for name in try SpoolFiles.visibleNames(in: spool.active) where name.hasPrefix("@") {
            let folder = "\(spool.active)/\(name)"
            guard SpoolFiles.kind(of: folder) == .directory else { continue }
            let fd = open(folder, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { continue }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 {
                found.append(AbandonedClaim(spool: spool, owner: name, path: folder, lockFD: fd))
            } else {
                close(fd)
            }
        }
        return found
    }
}

/// The claim folder of a daemon that died, locked by the daemon recovering it.
public final class AbandonedClaim: @unchecked Sendable {
    public let spool: SpoolDirectory
    public let owner: String
    public let path: String
    private var lockFD: Int32

    init(spool: SpoolDirectory, owner: String, path: String, lockFD: Int32) {
        self.spool = spool
        self.owner = owner
        self.path = path
        self.lockFD = lockFD
    }

    deinit { finish() }

    public func names() throws(SpoolError) -> [String] { try SpoolFiles.visibleNames(in: path) }

    public func pathOf(_ name: String) -> String { "\(path)/\(name)" }

    /// Removes the folder once emptied and unlocks it.
    public func finish() {
        guard lockFD >= 0 else { return }
        if (try? names().isEmpty) == true {
            // Hidden leftovers (never valid jobs) go with the folder.
            for leftover in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
                SpoolFiles.removeTree("\(path)/\(leftover)")
            }
            rmdir(path)
        }
        close(lockFD)
        lockFD = -1
    }
}
