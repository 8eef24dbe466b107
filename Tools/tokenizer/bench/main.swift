// Encode throughput of our tokenizer, built outside SwiftPM so that only the Tokenizer sources
// are compiled (Tools/tokenizer/bench_encode.py builds and runs it):
//   swiftc -O Sources/Tokenizer/*.swift Sources/Tokenizer/Jinja/*.swift \
//       Tools/tokenizer/bench/main.swift -o /tmp/minimindv-tokbench
//   /tmp/minimindv-tokbench <tokenizer folder> <corpus.jsonl>
import Foundation

let arguments = CommandLine.arguments
guard arguments.count == 3 else {
    FileHandle.standardError.write(Data("usage: tokbench TOKENIZER_FOLDER CORPUS.jsonl\n".utf8))
    exit(2)
}
do {
    let model = try ModelTokenizer(folder: URL(fileURLWithPath: arguments[1]))
    var texts: [String] = []
    for line in try String(contentsOfFile: arguments[2], encoding: .utf8).split(separator: "\n") {
        if let t = try OrderedJSON.parse(String(line))["text"]?.stringValue { texts.append(t) }
    }
    let bytes = texts.reduce(0) { $0 + $1.utf8.count }
    // CPU time of this process: the machine is shared, wall time measures the neighbours too.
    func cpuSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }
    let wallStart = Date()
    let start = cpuSeconds()
    var tokens = 0
    for t in texts { tokens += model.encode(t).count }
    let seconds = cpuSeconds() - start
    let wall = Date().timeIntervalSince(wallStart)
    print(String(format: "swift: %d strings, %.2f MB, %d tokens in %.3f s CPU (%.3f s wall): %.2f MB/s", texts.count,
                 Double(bytes) / 1e6, tokens, seconds, wall, Double(bytes) / 1e6 / seconds))
} catch {
    FileHandle.standardError.write(Data("tokbench: \(error)\n".utf8))
    exit(1)
}
