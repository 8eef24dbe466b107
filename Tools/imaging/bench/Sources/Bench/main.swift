import Foundation
import Imaging
// Thread CPU time: the machine is shared, wall time mostly measures waiting for a core.
struct CPUClock { var now: Double { var t = timespec(); clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return Double(t.tv_sec) * 1000 + Double(t.tv_nsec) / 1e6 } }
let clock = CPUClock()
func ms(_ d: Double) -> Double { d }
for path in CommandLine.arguments.dropFirst() {
    let bytes = [UInt8](try! Data(contentsOf: URL(fileURLWithPath: path)))
    for (name, settings) in [("clip", PreprocessSettings.clip), ("siglip", PreprocessSettings.siglip)] {
        let p = try! ImagePreprocessor(settings: settings)
        var dec: [Double] = [], res: [Double] = [], norm: [Double] = []
        for _ in 0..<15 {
            let t0 = clock.now
            let image = try! ImageDecoder.decode(bytes)
            let t1 = clock.now
            let r = try! p.resizedImage(image)
            let t2 = clock.now
            _ = p.pixelValues(ofResized: r)
            let t3 = clock.now
            dec.append(ms(t1 - t0)); res.append(ms(t2 - t1)); norm.append(ms(t3 - t2))
        }
        func med(_ a: [Double]) -> String { String(format: "%.1f", a.sorted()[a.count / 2]) }
        print("\((path as NSString).lastPathComponent) \(name): decode \(med(dec)) ms, resize+crop \(med(res)) ms, normalize \(med(norm)) ms (thread CPU time, median of 15)")
    }
}
