import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// inotify on one folder (jobs renamed in, or files closed after writing), plus a pipe that wakes the wait
/// early (used to stop the daemon). inotify is the fast path; the daemon still rescans periodically,
/// because events can overflow and do not work on network file systems.
final class DirectoryWatch: @unchecked Sendable {
    private let inotifyFD: Int32
    private let wakeRead: Int32
    private let wakeWrite: Int32

    init(path: String) throws {
        inotifyFD = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard inotifyFD >= 0 else { throw DaemonError.watch(path, errno) }
        let mask = UInt32(IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR)
        guard inotify_add_watch(inotifyFD, path, mask) >= 0 else {
            let code = errno
            close(inotifyFD)
            throw DaemonError.watch(path, code)
        }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            let code = errno
            close(inotifyFD)
            throw DaemonError.watch(path, code)
        }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
    }

    deinit {
        close(inotifyFD)
        close(wakeRead)
        close(wakeWrite)
    }

    /// Waits up to `timeout` for an event or a wake-up; returns true if the folder changed.
    func wait(timeout: Duration) -> Bool {
        let (seconds, attoseconds) = timeout.components
        let millis = max(0, min(Int64(Int32.max), seconds * 1000 + attoseconds / 1_000_000_000_000_000))
        var fds = [pollfd(fd: inotifyFD, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
        _ = poll(&fds, 2, Int32(millis))
        drainWake()
        return drainEvents()
    }

    /// Reads pending events without waiting; true if there were any.
    func drainEvents() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var sawEvent = false
        while true {
            let got = read(inotifyFD, &buffer, buffer.count)
            if got <= 0 { break }
            sawEvent = true
        }
        return sawEvent
    }

    private func drainWake() {
        var byte: UInt8 = 0
        while read(wakeRead, &byte, 1) > 0 {}
    }

    /// Interrupts a `wait` from any thread.
    func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }
}
