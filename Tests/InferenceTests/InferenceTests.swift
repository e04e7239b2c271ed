import Testing

@testable import Inference

@Suite("Inference")
struct InferenceSmokeTests {
    @Test func moduleLinks() { _ = Inference.self }
}
