import Foundation
import Testing
import TestSupport

/// Runs a tool and returns its exit status and everything it printed (stdout and stderr together).
func runTool(_ path: String, _ arguments: [String], stdin: Data? = nil) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    let input = Pipe()
    process.standardInput = input
    try process.run()
    if let stdin { input.fileHandleForWriting.write(stdin) }
    try input.fileHandleForWriting.close()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

@Suite(.serialized) struct SpoolSystemdFiles {
    static let units = Fixtures.packageRoot.appendingPathComponent("systemd")

    /// `systemd-analyze verify` exits 0 on many mistakes and only prints them, so any output fails.
    /// It also insists that ExecStart's binary exists: the unit names /usr/local/bin/minimindv (where the README
    /// installs it), so the check runs on a temporary copy pointing at the binary this build produced.
    @Test func theServiceUnitVerifiesWithoutAnyOutput() throws {
        let unit = try String(contentsOf: Self.units.appendingPathComponent("minimindv.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/minimindv serve "))
        let copy = try Fixtures.temporaryDirectory("unit-verify")
        let patched = unit.replacingOccurrences(of: "ExecStart=/usr/local/bin/minimindv ", with: "ExecStart=\(spoolTestBinary.path) ")
        let path = copy.appendingPathComponent("minimindv.service")
        try Data(patched.utf8).write(to: path)
        let run = try runTool("/usr/bin/systemd-analyze", ["verify", path.path])
        #expect(run.status == 0)
        #expect(run.output == "", "systemd-analyze verify printed:\n\(run.output)")

        // The settings issue 5 asks for are all there.
        for line in ["Type=notify", "NotifyAccess=main", "WatchdogSec=", "Restart=on-failure", "User=minimindv",
                     "StateDirectory=minimindv", "CacheDirectory=minimindv", "ReadWritePaths=/var/spool/minimindv",
                     "ProtectSystem=strict", "PrivateNetwork=yes", "NoNewPrivileges=yes", "ProtectHome=yes",
                     "PrivateTmp=yes", "SystemCallFilter=@system-service", "RestrictAddressFamilies=AF_UNIX"] {
            #expect(unit.contains("\n\(line)"), "missing \(line)")
        }
        // The stop timeout outlasts the drain bound given to serve.
        let stop = try #require(unit.firstMatch(of: /TimeoutStopSec=(\d+)s/).flatMap { Int($0.1) })
        let drain = try #require(unit.firstMatch(of: /--drain-seconds (\d+)/).flatMap { Int($0.1) })
        #expect(stop > drain)
    }

    @Test func sysusersAndTmpfilesCreateTheUserAndASpoolSubmittersCanWrite() throws {
        let root = try Fixtures.temporaryDirectory("sysroot")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("etc"), withIntermediateDirectories: true)
        for file in ["passwd", "group", "shadow", "gshadow"] {
            try Data().write(to: root.appendingPathComponent("etc/\(file)"))
        }
        let sysusers = try Data(contentsOf: Self.units.appendingPathComponent("minimindv.sysusers.conf"))
        let users = try runTool("/usr/bin/systemd-sysusers", ["--root=\(root.path)", "-"], stdin: sysusers)
        #expect(users.status == 0, "\(users.output)")
        let passwd = try String(contentsOf: root.appendingPathComponent("etc/passwd"), encoding: .utf8)
        let group = try String(contentsOf: root.appendingPathComponent("etc/group"), encoding: .utf8)
        let submitGID = try #require(group.firstMatch(of: /minimindv-submit:x:(\d+):/)?.1)
        #expect(passwd.contains(":\(submitGID):MiniMind-V spool daemon:/var/lib/minimindv:"))

        let tmpfilesDir = root.appendingPathComponent("etc/tmpfiles.d")
        try FileManager.default.createDirectory(at: tmpfilesDir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.units.appendingPathComponent("minimindv.tmpfiles.conf"),
                                         to: tmpfilesDir.appendingPathComponent("minimindv.conf"))
        let tmpfiles = try runTool("/usr/bin/systemd-tmpfiles", ["--root=\(root.path)", "--create"])
        #expect(tmpfiles.status == 0, "\(tmpfiles.output)")
        #expect(tmpfiles.output == "")
        func mode(_ sub: String) throws -> Int {
            let attributes = try FileManager.default.attributesOfItem(atPath: root.appendingPathComponent("var/spool/minimindv/\(sub)").path)
            return (attributes[.posixPermissions] as? Int) ?? -1
        }
        #expect(try mode("incoming") & 0o7777 == 0o3770)  // group-writable, setgid, sticky
        #expect(try mode("tmp") & 0o7777 == 0o3770)
        #expect(try mode("active") & 0o777 == 0o750)
        #expect(try mode("done") & 0o777 == 0o750)
        #expect(try mode("failed") & 0o777 == 0o750)
    }
}
