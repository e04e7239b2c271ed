import Testing

@testable import Report

@Suite("Scales and ticks")
struct ScaleTests {
    @Test func linearTicksAreNice() {
        let scale = LinearScale(domain: 0...97, from: 0, to: 500)
        #expect(scale.tickValues() == [0, 20, 40, 60, 80])
        #expect(LinearScale.niceDomain(containing: [0, 97]) == 0...100)
        #expect(LinearScale(domain: 0...100, from: 0, to: 1).tickValues() == [0, 20, 40, 60, 80, 100])
        #expect(LinearScale(domain: 0...1, from: 0, to: 1).ticks().map(\.label) == ["0", "0.2", "0.4", "0.6", "0.8", "1"])
        #expect(LinearScale(domain: -7...13, from: 0, to: 1).tickValues() == [-5, 0, 5, 10])
        #expect(LinearScale(domain: 0...1910, from: 0, to: 1).ticks().map(\.label) == ["0", "500", "1k", "1.5k"])
    }

    @Test func stepsPreferTicksOnBothEnds() {
        #expect(LinearScale(domain: 0...160, from: 0, to: 1).step == 20)
        #expect(LinearScale(domain: 0...120, from: 0, to: 1).tickValues() == [0, 20, 40, 60, 80, 100, 120])
        #expect(LinearScale(domain: 0...2000, from: 0, to: 1).step == 500)
    }

    @Test func niceStepsAre125() {
        #expect(LinearScale.niceStep(19.4) == 20)
        #expect(LinearScale.niceStep(0.031) == 0.02)
        #expect(LinearScale.niceStep(38) == 50)
        #expect(LinearScale.niceStep(8) == 10)
    }

    @Test func niceDomainIncludesZeroWhenAsked() {
        #expect(LinearScale.niceDomain(containing: [12, 1910], includeZero: true) == 0...2000)
        #expect(LinearScale.niceDomain(containing: []) == 0...1)
        let single = LinearScale.niceDomain(containing: [5])
        #expect(single.lowerBound < 5 && single.upperBound > 5)
        #expect(LinearScale.tightDomain(containing: [1, 120]) == 0...120)
    }

    @Test func linearMapping() {
        let scale = LinearScale(domain: 0...10, from: 100, to: 0)
        #expect(scale.pixel(0) == 100)
        #expect(scale.pixel(10) == 0)
        #expect(scale.pixel(.nan) == nil)
        // An empty domain is widened, not divided by zero.
        let flat = LinearScale(domain: 3...3, from: 0, to: 100)
        #expect(flat.pixel(3)?.isFinite == true)
    }

    @Test func log10TicksAreDecades() {
        let scale = LogScale(domain: 0.3...3000, base: .ten, from: 0, to: 600)
        #expect(scale.majorTickValues() == [1, 10, 100, 1000])
        #expect(scale.ticks().map(\.label) == ["1", "10", "100", "1k"])
        let minor = scale.minorTicks()
        #expect(minor.contains(0.5) && minor.contains(2) && minor.contains(5) && minor.contains(2000))
        #expect(!minor.contains(10))
    }

    @Test func shortLog10RangesGetIntermediateTicks() {
        let scale = LogScale(domain: 3...40, base: .ten, from: 0, to: 600)
        let ticks = scale.majorTickValues()
        #expect(ticks.count >= 3)
        #expect(ticks.contains(10) && ticks.contains(5) && ticks.contains(20))
    }

    @Test func log2TicksArePowersOfTwo() {
        let scale = LogScale(domain: 1...256, base: .two, from: 0, to: 600)
        #expect(scale.majorTickValues() == [1, 2, 4, 8, 16, 32, 64, 128, 256])
        #expect(scale.ticks().map(\.label) == ["1", "2", "4", "8", "16", "32", "64", "128", "256"])
        // Many powers: every other one, aligned on even exponents.
        let bytes = LogScale(domain: 1024...1_073_741_824, base: .two, from: 0, to: 600)
        let labels = bytes.ticks(format: .bytes).map(\.label)
        #expect(labels.first == "1 KiB" && labels.contains("4 KiB") && labels.contains("1 MiB") && labels.last == "1 GiB")
        #expect(labels.count <= 12)
    }

    @Test func logScaleSkipsWhatItCannotShow() {
        let scale = LogScale(domain: 1...100, from: 0, to: 100)
        #expect(scale.pixel(0) == nil)
        #expect(scale.pixel(-5) == nil)
        #expect(scale.pixel(.nan) == nil)
        #expect(scale.pixel(10) == 50)
        // A domain that is not positive is repaired.
        let repaired = LogScale(domain: -1...0, from: 0, to: 100)
        #expect(repaired.domain.lowerBound > 0)
        #expect(!repaired.majorTickValues().isEmpty)
    }

    @Test func automaticDomains() {
        let log2 = AxisKind.log2.automaticDomain(for: [1, 2, 256, 0, -3, .nan])
        #expect(log2.lowerBound < 1 && log2.lowerBound > 0.5 && log2.upperBound > 256 && log2.upperBound < 512)
        let log10 = AxisKind.log10.automaticDomain(for: [])
        #expect(log10 == 1...10)
        #expect(AxisKind.linear.automaticDomain(for: [3, 97], includeZero: true) == 0...100)
    }
}
