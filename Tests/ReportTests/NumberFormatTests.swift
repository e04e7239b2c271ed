import Testing

@testable import Report

@Suite("Number formatting")
struct NumberFormatTests {
    @Test func fixedDecimalsHaveNoNoise() {
        #expect(NumberFormat.fixed(3.14159, decimals: 2) == "3.14")
        #expect(NumberFormat.fixed(2.5000001, decimals: 2) == "2.5")
        #expect(NumberFormat.fixed(0.1 + 0.2, decimals: 2) == "0.3")
        #expect(NumberFormat.fixed(1.0000000002e-05, decimals: 2) == "0")
        #expect(NumberFormat.fixed(-0.0001, decimals: 2) == "0")
        #expect(NumberFormat.fixed(-12.345, decimals: 1) == "-12.3")
        #expect(NumberFormat.fixed(100, decimals: 2) == "100")
        #expect(NumberFormat.fixed(.nan) == "0")
        #expect(NumberFormat.fixed(.infinity) == "0")
        #expect(NumberFormat.fixed(0.005, decimals: 2) == "0.01")
    }

    @Test func decimalsNeededAndSignificantDigits() {
        #expect(NumberFormat.decimalsNeeded(for: 20) == 0)
        #expect(NumberFormat.decimalsNeeded(for: 0.25) == 2)
        #expect(NumberFormat.decimalsNeeded(for: 0.0125) == 4)
        #expect(NumberFormat.significantDigits(0.0123456, 3) == "0.0123")
        #expect(NumberFormat.significantDigits(1234.5, 3) == "1235")
        #expect(NumberFormat.significantDigits(38.5, 3) == "38.5")
    }

    @Test func compactTickLabels() {
        let f = TickFormat.compact
        #expect(f.label(0) == "0")
        #expect(f.label(0.25) == "0.25")
        #expect(f.label(1) == "1")
        #expect(f.label(16) == "16")
        #expect(f.label(1000) == "1k")
        #expect(f.label(4000) == "4k")
        #expect(f.label(1_500_000) == "1.5M")
        #expect(f.label(2e9) == "2G")
        #expect(f.label(1024) == "1024", "powers of two stay exact rather than 1.02k")
        #expect(f.label(0.1) == "0.1")
        #expect(f.label(0.00002) == "2e-5")
        #expect(f.label(-3000) == "-3k")
    }

    @Test func linearLabelsCarryTheStepsPrecision() {
        let f = TickFormat.compact
        #expect(f.label(1.0125, step: 0.0125) == "1.0125")
        #expect(f.label(1500, step: 500) == "1.5k")
        #expect(f.label(500, step: 500) == "500")
        #expect(f.label(0.30000000000000004, step: 0.1) == "0.3")
    }

    @Test func byteAndPercentLabels() {
        #expect(TickFormat.bytes.label(512) == "512 B")
        #expect(TickFormat.bytes.label(32 * 1024) == "32 KiB")
        #expect(TickFormat.bytes.label(1.5 * 1_048_576) == "1.5 MiB")
        #expect(TickFormat.bytes.label(2 * 1_073_741_824) == "2 GiB")
        #expect(TickFormat.percent.label(0.62) == "62%")
        #expect(TickFormat.percent.label(0.055) == "5.5%")
        #expect(TickFormat.plain(decimals: 1).label(2.25) == "2.3")
        #expect(TickFormat.custom { "<\($0)>" }.label(1) == "<1.0>")
    }
}
