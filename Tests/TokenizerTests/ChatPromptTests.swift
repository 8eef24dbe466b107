import Foundation
import Testing
import TestSupport
@testable import Tokenizer

/// Prompts as upstream's evaluation builds them, checked against the fixtures' input_ids.npy.
@Suite struct ChatPromptTests {
    struct Case {
        let name: String
        let promptTemplate: String
        let images: Int
    }

    func cases(_ generation: String) throws -> [Case] {
        let url = Fixtures.generation(generation).appendingPathComponent("tiny/manifest.json")
        let manifest = try OrderedJSON.parse(Data(contentsOf: url))
        guard case .object(let pairs)? = manifest["cases"] else { throw TokenizerError("no cases in \(url.path)") }
        return pairs.map { Case(name: $0.0, promptTemplate: $0.1["prompt_template"]?.stringValue ?? "", images: $0.1["images"]?.arrayValue?.count ?? 0) }
    }

    func expectedIDs(_ generation: String, _ name: String) throws -> [Int] {
        try NPYArray(contentsOf: Fixtures.generation(generation).appendingPathComponent("tiny/ref/cases/\(name)/input_ids.npy")).ints
    }

    @Test func gen2PromptsEqualUpstreamInputIDs() throws {
        let tokenizer = try SharedTokenizers.model("gen2")
        let all = try cases("gen2")
        #expect(Set(all.map(\.name)) == ["img1", "img2", "text", "multi"])
        for c in all {
            // The question as a user types it; the images are separate.
            let question = c.promptTemplate.replacingOccurrences(of: "{img}\n", with: "")
            let prompt = try tokenizer.chatPrompt([ChatMessage(role: "user", content: question, imageCount: c.images)], image: .minimind2)
            #expect(prompt.ids == (try expectedIDs("gen2", c.name)), "\(c.name)")
            #expect(prompt.imageRuns.count == c.images)
            for run in prompt.imageRuns { #expect(prompt.ids[run].allSatisfy { $0 == 34 }) }
        }
    }

    @Test func gen3PromptsEqualUpstreamInputIDsWithAndWithoutMarkers() throws {
        let tokenizer = try SharedTokenizers.model("gen3")
        for c in try cases("gen3") {
            let expected = try expectedIDs("gen3", c.name)
            let marked = try tokenizer.chatPrompt([ChatMessage(role: "user", content: c.promptTemplate, imageCount: c.images)], image: .minimind3)
            #expect(marked.ids == expected, "\(c.name)")
            let question = c.promptTemplate.replacingOccurrences(of: "<image>\n", with: "")
            let unmarked = try tokenizer.chatPrompt([ChatMessage(role: "user", content: question, imageCount: c.images)], image: .minimind3)
            #expect(unmarked.ids == expected, "\(c.name)")
            #expect(marked.imageRuns.count == c.images)
            for run in marked.imageRuns { #expect(marked.ids[run].allSatisfy { $0 == 12 }) }
        }
    }

    @Test func markerCountMustMatchImageCount() throws {
        let tokenizer = try SharedTokenizers.model("gen3")
        #expect(throws: TokenizerError.self) {
            try tokenizer.chatPrompt([ChatMessage(role: "user", content: "<image> and <image>", imageCount: 1)], image: .minimind3)
        }
    }

    @Test func placeholderParametersComeFromTheCaller() throws {
        let tokenizer = try SharedTokenizers.model("gen2")
        let custom = ImagePlaceholder(placeholder: "@", tokenCount: 5, promptMarker: "[img]")
        let prompt = try tokenizer.chatPrompt([ChatMessage(role: "user", content: "a [img] b", imageCount: 1)], image: custom)
        #expect(prompt.text.contains("a @@@@@ b"))
        #expect(prompt.imageRuns.count == 1 && prompt.imageRuns[0].count == 5)
    }
}

@Suite struct MalformedTokenizerTests {
    func gen3JSON() throws -> OrderedJSON {
        try OrderedJSON.parse(Data(contentsOf: SharedTokenizers.folder("gen3").appendingPathComponent("tokenizer.json")))
    }

    func replacing(_ root: OrderedJSON, _ key: String, _ value: OrderedJSON?) -> OrderedJSON {
        guard case .object(var pairs) = root else { return root }
        pairs.removeAll { $0.0 == key }
        if let value { pairs.append((key, value)) }
        return .object(pairs)
    }

    @Test func missingModelIsAClearError() throws {
        let root = replacing(try gen3JSON(), "model", nil)
        #expect(throws: TokenizerError("tokenizer.json has no \"model\": is this a Hugging Face tokenizer.json?")) {
            try BPETokenizer(root: root)
        }
    }

    @Test func mergeNamingAnUnknownTokenIsAClearError() throws {
        let root = try gen3JSON()
        guard let model = root["model"] else { throw TokenizerError("no model") }
        let merges = (model["merges"]?.arrayValue ?? []) + [.array([.string("t"), .string("zzz-not-a-token")])]
        let broken = replacing(root, "model", replacing(model, "merges", .array(merges)))
        #expect(throws: TokenizerError("tokenizer.json: merge #\(merges.count - 1) names \"zzz-not-a-token\", which is not in the vocabulary")) {
            try BPETokenizer(root: broken)
        }
    }

    @Test func notJSONAndUnsupportedPartsAreClearErrors() throws {
        #expect(throws: TokenizerError.self) { try BPETokenizer(json: Data("{\"model\": ".utf8)) }
        let root = replacing(try gen3JSON(), "normalizer", .object([("type", .string("NFC"))]))
        #expect(throws: TokenizerError("tokenizer.json: normalizer NFC is not supported (byte-level BPE without normalizer only)")) {
            try BPETokenizer(root: root)
        }
    }

    @Test func malformedTemplateInConfigIsAClearError() throws {
        let json = try Data(contentsOf: SharedTokenizers.folder("gen2").appendingPathComponent("tokenizer.json"))
        let config = Data(#"{"chat_template": "{% for m in messages %}{{ m.content }}"}"#.utf8)
        #expect(throws: TokenizerError("chat template: missing {% endfor %} at the end of the template")) {
            try ModelTokenizer(tokenizerJSON: json, tokenizerConfigJSON: config)
        }
    }
}

@Suite struct StreamingDecoderTests {
    @Test func bytesOfAnUnfinishedCharacterAreHeldBack() throws {
        let tokenizer = try SharedTokenizers.bpe("gen3")
        // "你" is E4 BD A0: feed it as three single-byte tokens.
        let byteIDs = [0xE4, 0xBD, 0xA0].map { b in tokenizer.id(of: String(Character(ByteLevelAlphabet.byteToScalar[b])))! }
        var decoder = tokenizer.streamingDecoder()
        #expect(decoder.push(byteIDs[0]) == "")
        #expect(decoder.push(byteIDs[1]) == "")
        #expect(decoder.push(byteIDs[2]) == "你")
        // A lead byte followed by ASCII cannot complete: it becomes U+FFFD at once, as in a full decode.
        #expect(decoder.push(byteIDs[0]) == "")
        #expect(decoder.push(tokenizer.encode("a")[0]) == "\u{FFFD}a")
        #expect(decoder.push(byteIDs[0]) == "")
        #expect(decoder.finish() == "\u{FFFD}")
    }
}
