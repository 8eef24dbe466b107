import Foundation

/// Failures that stop the daemon from starting (bad input never does: it ends in `failed/`).
public enum DaemonError: Error, CustomStringConvertible {
    case watch(String, Int32)
    case spool(String)

    public var description: String {
        switch self {
        case .watch(let path, let code):
            return "cannot watch \(path) with inotify: \(String(cString: strerror(code))) (raise fs.inotify.max_user_instances?)"
        case .spool(let why):
            return "spool unusable: \(why)"
        }
    }
}
