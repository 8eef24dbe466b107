import Foundation
import Testing
import TestSupport

@Test func sharedFixturesAreReachable() {
    #expect(FileManager.default.fileExists(atPath: Fixtures.minimind.path))
}
