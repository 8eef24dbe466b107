import CSystemd
import Foundation

/// Receives the daemon's state changes in sd_notify(3) form (`READY=1`, `STATUS=...`, `WATCHDOG=1`, `STOPPING=1`).
public protocol ServiceNotifier: Sendable {
    func notify(_ state: String)
    /// The watchdog period the service manager asked for, if any (`WatchdogSec=`).
    var watchdogPeriod: Duration? { get }
}

/// Sends to systemd through `$NOTIFY_SOCKET` (a no-op when the variable is unset, e.g. run by hand).
public struct SystemdNotifier: ServiceNotifier {
    public init() {}

    public func notify(_ state: String) {
        _ = sd_notify(0, state)
    }

    public var watchdogPeriod: Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(clamping: usec))
    }
}
