import Foundation
import Store
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The gen3 tiny fixture (64-wide decoder, 2-layer SigLIP2) converted once per test process by the
/// built binary, as a user would: small enough that a job takes milliseconds even in a debug build.
enum DaemonModel {
    static let gen3 = Fixtures.generation("gen3")
    static let images = [
        gen3.appendingPathComponent("images/image-01-golden-dog-balloons.jpg"),
        gen3.appendingPathComponent("images/image-02-rainbow-umbrella-street.jpg"),
        Fixtures.minimind.appendingPathComponent("images/bird-0.jpg"),
        Fixtures.minimind.appendingPathComponent("images/bird-1.jpg"),
    ]

    static let folder = FileManager.default.temporaryDirectory.appendingPathComponent("minimindv-daemon-model-\(getpid())")

    /// Started at first use, awaited by every test; the folder goes when the test process exits.
    private static let conversion = Task<String, any Error> {
        atexit { try? FileManager.default.removeItem(at: DaemonModel.folder) }
        let output = folder.appendingPathComponent("gen3-tiny.gguf").path
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let run = try await runMinimindv([
            "convert", "--checkpoint", gen3.appendingPathComponent("tiny/sft_vlm_64.pth").path,
            "--vision", gen3.appendingPathComponent("siglip2-base-p32-256-ve").path,
            "--tokenizer", gen3.appendingPathComponent("tiny").path, "--type", "f32", "--output", output,
        ], in: folder)
        guard run.status == 0 else { throw TimedOut(what: "converting the gen3 tiny fixture failed: \(run.stderr)") }
        return output
    }

    static func file() async throws -> String { try await conversion.value }
}

/// `minimindv serve` as a child process on `root/spool`, `root/results.sqlite` and `root/cache`, its
/// log (stderr) in a file. Spawned and reaped with posix_spawn and waitpid, like `DaemonProcess`, so
/// that no wait holds one of Swift Testing's threads.
final class ServeProcess: @unchecked Sendable {
    let pid: pid_t
    let logURL: URL
    private(set) var waitStatus: Int32?

    /// `model`: a model file to serve instead of the converted gen3 tiny fixture.
    static func start(root: URL, model: String? = nil, batch: Int = 4, name: String = "serve", logLevel: String = "info",
                      environment: [String: String] = [:]) async throws -> ServeProcess {
        var file = model
        if file == nil { file = try await DaemonModel.file() }
        return try ServeProcess(root: root, model: file ?? "", batch: batch, name: name, logLevel: logLevel,
                                environment: environment)
    }

    private init(root: URL, model: String, batch: Int, name: String, logLevel: String, environment: [String: String]) throws {
        logURL = root.appendingPathComponent("\(name).log")
        let arguments = [
            spoolTestBinary.path, "serve", "--spool", root.appendingPathComponent("spool").path,
            "--db", root.appendingPathComponent("results.sqlite").path, "--cache-dir", root.appendingPathComponent("cache").path,
            "--model", model, "--batch", "\(batch)", "--threads", "1", "--log-level", logLevel, "--drain-seconds", "20",
        ]
        var env = ProcessInfo.processInfo.environment
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] { env[key] = nil }
        env.merge(environment) { $1 }
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in argv + envp { free(pointer) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, logURL.path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        var child: pid_t = 0
        let result = posix_spawn(&child, spoolTestBinary.path, &actions, nil, &argv, &envp)
        guard result == 0 else { throw TimedOut(what: "spawning \(spoolTestBinary.path): error \(result)") }
        pid = child
    }

    var log: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// True until the child has exited (and has been reaped).
    var isRunning: Bool {
        if waitStatus != nil { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { waitStatus = status }
        return waitStatus == nil
    }

    /// The exit code, or nil while running or if a signal ended it.
    var exitCode: Int32? { waitStatus.flatMap { $0 & 0x7f == 0 ? ($0 >> 8) & 0xff : nil } }

    func kill9() async throws {
        kill(pid, SIGKILL)
        try await pollUntil("serve \(pid) to die", timeout: .seconds(30)) { !isRunning }
    }

    /// SIGTERM and wait; the exit code (nil if a signal ended it).
    func terminate() async throws -> Int32? {
        kill(pid, SIGTERM)
        try await pollUntil("serve \(pid) to exit", timeout: .seconds(60)) { !isRunning }
        return exitCode
    }

    deinit {
        if waitStatus == nil {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
    }
}

/// A directory job (`<id>/job.json` + image files) built in tmp/ and renamed into incoming/.
func submitDirectoryJob(_ id: String, in root: URL, question: String, images: [URL], maxTokens: Int = 4,
                        extra: String = #", "temperature": 0"#) throws {
    let tmp = root.appendingPathComponent("spool/tmp/\(id)")
    try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    var names: [String] = []
    for (index, image) in images.enumerated() {
        let name = "image\(index + 1).\(image.pathExtension)"
        try FileManager.default.copyItem(at: image, to: tmp.appendingPathComponent(name))
        names.append(name)
    }
    let list = names.map { "\"\($0)\"" }.joined(separator: ", ")
    let json = #"{"question": "\#(question)", "images": [\#(list)], "max_tokens": \#(maxTokens)\#(extra)}"#
    try Data(json.utf8).write(to: tmp.appendingPathComponent("job.json"))
    try FileManager.default.moveItem(at: tmp, to: root.appendingPathComponent("spool/incoming/\(id)"))
}

/// A single-file job with its images inline as base64.
func submitInlineJob(_ id: String, in root: URL, question: String, images: [Data], maxTokens: Int = 4) throws {
    let list = images.map { #"{"base64": "\#($0.base64EncodedString())"}"# }.joined(separator: ", ")
    let json = #"{"question": "\#(question)", "images": [\#(list)], "max_tokens": \#(maxTokens), "temperature": 0}"#
    let tmp = root.appendingPathComponent("spool/tmp/\(id).json")
    try Data(json.utf8).write(to: tmp)
    try FileManager.default.moveItem(at: tmp, to: root.appendingPathComponent("spool/incoming/\(id).json"))
}

func sha256Hex(of url: URL) throws -> String {
    let run = try runTool("/usr/bin/sha256sum", [url.path])
    return String(run.output.prefix(64))
}

/// An AF_UNIX datagram socket in place of systemd's notification socket; a thread collects what arrives.
final class NotifyDatagrams: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private var thread: Thread?

    init() throws {
        // sun_path holds 108 bytes: keep the path short.
        let folder = URL(fileURLWithPath: "/tmp").appendingPathComponent("mmv-notify-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        path = folder.appendingPathComponent("notify").path
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
        guard fd >= 0, bound == 0 else { throw TimedOut(what: "cannot bind \(path): errno \(errno)") }
        var timeout = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let thread = Thread { [weak self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while let self, !Thread.current.isCancelled {
                let got = recv(self.fd, &buffer, buffer.count, 0)
                if got > 0 {
                    let message = String(decoding: buffer[0..<got], as: UTF8.self)
                    self.lock.withLock { self.received.append(message) }
                }
            }
        }
        self.thread = thread
        thread.start()
    }

    /// Every datagram so far, in arrival order.
    var messages: [String] { lock.withLock { received } }

    /// Every `KEY=value` line of every datagram so far.
    var lines: [String] { messages.flatMap { $0.split(separator: "\n").map(String.init) } }

    func close() {
        thread?.cancel()
        Thread.sleep(forTimeInterval: 0.15)
        Glibc.close(fd)
        try? FileManager.default.removeItem(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }
}
