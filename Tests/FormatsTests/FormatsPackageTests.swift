import Foundation
import Testing
import TestSupport

@Test func referenceArraysOfTheFixturesAreReadable() throws {
    let ids = try NPYArray(contentsOf: Fixtures.generation("gen3").appendingPathComponent("tiny/ref/cases/img1/input_ids.npy"))
    #expect(ids.count == 93)
    let logits = try NPYArray(contentsOf: Fixtures.generation("gen3").appendingPathComponent("tiny/ref/cases/img1/logits_last.npy"))
    #expect(logits.count == 6400)
}
