import Foundation
import Service
import Spool
import Store
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// An AF_UNIX datagram socket standing in for systemd's notification socket.
final class NotifySocketListener: @unchecked Sendable {
    let path: String
    private let fd: Int32

    init() throws {
        path = try Fixtures.temporaryDirectory("notify").appendingPathComponent("notify.sock").path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() where i < raw.count - 1 { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, bound == 0 else { throw TimedOut(what: "binding \(path): errno \(errno)") }
    }

    deinit { close(fd) }

    /// Every datagram received so far (non-blocking).
    func receive() -> [String] {
        var messages: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let got = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if got <= 0 { break }
            messages.append(String(decoding: buffer[0..<got], as: UTF8.self))
        }
        return messages
    }
}

/// These tests set NOTIFY_SOCKET / WATCHDOG_USEC and signal dispositions, which are process-wide.
@Suite(.serialized) struct SystemdProtocol {
    @Test func theDaemonSendsReadyStatusWatchdogAndStoppingDatagrams() async throws {
        let listener = try NotifySocketListener()
        setenv("NOTIFY_SOCKET", listener.path, 1)
        setenv("WATCHDOG_USEC", "100000", 1)
        unsetenv("WATCHDOG_PID")
        defer {
            unsetenv("NOTIFY_SOCKET")
            unsetenv("WATCHDOG_USEC")
        }
        let notifier = SystemdNotifier()
        #expect(notifier.watchdogPeriod == .milliseconds(100))

        let bench = try Bench()
        try bench.submit("one", maxTokens: 3, id: "one")
        try bench.submit("two", maxTokens: 3, id: "two")
        let running = RunningDaemon(bench.daemon(ScriptedExecutor(), notifier: notifier))
        var received: [String] = []
        try await waitUntil("answers and several watchdog pings") {
            received += listener.receive()
            return try bench.finished(["one", "two"]) && received.filter { $0 == "WATCHDOG=1" }.count >= 3
                && received.contains { $0.hasPrefix("STATUS=") && $0.contains("done 2") }
        }
        try await running.stop()
        received += listener.receive()

        let ready = try #require(received.firstIndex { $0.hasPrefix("READY=1\n") })
        let stopping = try #require(received.firstIndex { $0.hasPrefix("STOPPING=1") })
        #expect(ready < stopping)
        #expect(received[ready].contains("STATUS=queue 2, running 0, done 0, failed 0"))
        let status = try #require(received.first { $0.hasPrefix("STATUS=") && $0.contains("done 2") })
        #expect(status.contains("tok/s"))
        #expect(received.contains("WATCHDOG=1"))
        // (Datagrams can be dropped when the listener falls behind, so no assertion relies on the exact tail.)
        #expect(received.contains { $0.hasPrefix("STATUS=stopped") })
        #expect(received.allSatisfy { !$0.isEmpty })
    }

    @Test func withoutNotifySocketNotifyingIsANoOp() {
        unsetenv("NOTIFY_SOCKET")
        unsetenv("WATCHDOG_USEC")
        let notifier = SystemdNotifier()
        notifier.notify("READY=1")
        #expect(notifier.watchdogPeriod == nil)
    }

    @Test func sigtermAsksTheDaemonToStopAndItExitsCleanly() async throws {
        let bench = try Bench()
        try bench.submit("endless", maxTokens: 8000, id: "endless")
        let executor = ScriptedExecutor(stepDelay: 0.005)
        let daemon = bench.daemon(executor, batch: 1, drain: .milliseconds(100))
        let signals = StopSignals { _ in daemon.requestStop() }
        let running = RunningDaemon(daemon)
        try await waitUntil("the job to run") { executor.steps.count > 3 }
        kill(getpid(), SIGTERM)
        try await waitUntil("the daemon to stop after SIGTERM") { running.isFinished }
        try await running.stop()
        withExtendedLifetime(signals) {}
        #expect(executor.abandoned == ["endless"])
        #expect(bench.names(bench.spool.incoming) == ["endless"])
        #expect(try bench.row("endless")?.status == .queued)
    }
}
